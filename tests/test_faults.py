"""Faults during a run: SIGKILL and SIGINT at exact points, a full disk, a file size limit, two runs at once.

Every interrupted run is run again with the same command; its final files (rasters, tables, figures) must be
byte-identical (sha256) to those of an uninterrupted run of the same config into the same folder, and no final
file may be partial at any moment (they are written to temporary names and renamed). The kills are made by the
run itself at named points (:mod:`gep_raster.faults`, env ``GEP_FAULT``), so they land at the same place on
every machine. ``SOURCE_DATE_EPOCH`` fixes the GeoPackage timestamp (the only clock value in a final file).
"""
from __future__ import annotations

import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rasterio

from gep_raster.config import load_config
from gep_raster.outputs.io_write import OutputError
from gep_raster.pipeline import run

from conftest import REPO, sample_config

pytestmark = pytest.mark.slow

EPOCH = "1700000000"
OUT = "out"


def _finals(out: Path) -> dict[str, str]:
    """sha256 of every final file of a run folder (not the resume state, not the manifest with its timings, not
    the report: it is written anew from the finished run after the manifest, names the run folder and carries
    Chromium's PDF creation date; tests/test_report.py checks its content)."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and ".gep_state" not in p.parts
            and "report" not in p.relative_to(out).parts and p.name != "manifest.json"}


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "SOURCE_DATE_EPOCH": EPOCH, **extra}


def _gep_run(cfg: Path, env: dict, preexec=None, timeout=300) -> subprocess.CompletedProcess:
    def child():
        # SIGINT back to its default in the child: a suite started in the background of a non-interactive shell
        # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler (the INT cases would
        # depend on how pytest was launched)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if preexec is not None:
            preexec()

    return subprocess.run([sys.executable, "-m", "gep_raster.cli", "run", str(cfg), "-q"], env=env,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=child)


def _no_partial_final(out: Path) -> None:
    """Every final raster in the folder opens and reads to the end (none is half-written); no temporary file
    of a final output is left beside them."""
    for p in out.rglob("*"):
        if not p.is_file() or ".gep_state" in p.parts:
            continue
        assert ".tmp" not in p.name, f"temporary file left in the output folder: {p}"
        if p.suffix == ".tif":
            with rasterio.open(p) as ds:
                ds.read()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the sample (128 px blocks: 20 blocks), its config and its final files' sha256.
    The folder is moved aside afterwards so each test runs into the very same output path."""
    d = tmp_path_factory.mktemp("faults")
    cfg = sample_config(d, "run", chunk=128, out_name=OUT)
    res = _gep_run(cfg, _env())
    assert res.returncode == 0, res.stderr[-3000:]
    finals = _finals(d / OUT)
    assert len(finals) > 30  # rasters, tables (CSV + GPKG per layer), figures
    totals = load_manifest(d / OUT)["totals"]
    shutil.move(d / OUT, d / "reference")
    return {"dir": d, "cfg": cfg, "finals": finals, "totals": totals}


def load_manifest(out: Path) -> dict:
    import json

    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture
def fresh(reference):
    """The output folder of the reference config, empty at the start of the test and removed after it."""
    out = reference["dir"] / OUT
    shutil.rmtree(out, ignore_errors=True)
    yield out
    shutil.rmtree(out, ignore_errors=True)


# (fault point, signal): early (first block computed), mid-blocks, during finalize (some final rasters in
# place), at the start of the tables, after the first table
POINTS = [("compute@1", "KILL"), ("block@7", "KILL"), ("raster@5", "KILL"), ("stage.tables@1", "KILL"),
          ("table@1", "KILL"), ("block@7", "INT"), ("raster@5", "INT"), ("table@1", "INT")]


@pytest.mark.parametrize("point,sig", POINTS, ids=[f"{p}:{s}" for p, s in POINTS])
def test_interrupted_run_resumes_to_identical_files(reference, fresh, point, sig):
    killed = _gep_run(reference["cfg"], _env(GEP_FAULT=f"{point}:{sig}"))
    if sig == "KILL":
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    else:  # SIGINT: KeyboardInterrupt, our message, exit 130, no traceback
        assert killed.returncode == 130, killed.stderr[-2000:]
        assert "interrupted" in killed.stderr and "run the same command again to resume" in killed.stderr
        assert "Traceback" not in killed.stderr
    assert not (fresh / "manifest.json").exists()  # the run did not finish
    _no_partial_final(fresh)
    # what was already final when the run died is already the final content
    before = _finals(fresh)
    assert all(reference["finals"][k] == v for k, v in before.items()), sorted(before)
    again = _gep_run(reference["cfg"], _env())
    assert again.returncode == 0, again.stderr[-3000:]
    assert _finals(fresh) == reference["finals"]
    m = load_manifest(fresh)
    assert m["totals"] == reference["totals"]
    assert not (fresh / ".gep_state" / "blocks" / "journal").exists()


def test_file_size_limit_is_a_clear_error_and_the_rerun_resumes(reference, fresh):
    """RLIMIT_FSIZE (works without privileges): a write beyond 1 MB fails with EFBIG, as on a full disk."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    failed = _gep_run(reference["cfg"], _env(), preexec=limit)
    assert failed.returncode == 3, failed.stderr[-3000:]
    msg = failed.stderr
    assert "error:" in msg and str(fresh) in msg and "writing the run's outputs failed" in msg
    assert "run the same command again" in msg and "Traceback" not in msg
    assert not (fresh / "manifest.json").exists()
    _no_partial_final(fresh)
    again = _gep_run(reference["cfg"], _env())
    assert again.returncode == 0, again.stderr[-3000:]
    assert _finals(fresh) == reference["finals"]


def test_full_disk_is_a_clear_error_and_the_rerun_resumes(reference, fresh):
    """A 6 MB tmpfs as the output folder (the run needs about 30 MB at its peak), then grown to 256 MB."""
    fresh.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(fresh)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        failed = _gep_run(reference["cfg"], _env())
        assert failed.returncode == 3, failed.stderr[-3000:]
        assert "writing the run's outputs failed" in failed.stderr and str(fresh) in failed.stderr
        assert "MB free there now" in failed.stderr and "Traceback" not in failed.stderr
        assert not (fresh / "manifest.json").exists()
        _no_partial_final(fresh)
        assert subprocess.run(["mount", "-o", "remount,size=256m", str(fresh)]).returncode == 0
        again = _gep_run(reference["cfg"], _env())
        assert again.returncode == 0, again.stderr[-3000:]
        assert _finals(fresh) == reference["finals"]
    finally:
        subprocess.run(["umount", "-l", str(fresh)])


def test_second_run_into_the_same_folder_is_refused(reference, fresh):
    """A run stopped (SIGSTOP) in its block stage holds the folder's lock: a second run stops at once with a
    message; the first, continued, finishes with the reference files."""
    env = _env(GEP_FAULT="stage.compute_write@1:STOP")
    first = subprocess.Popen([sys.executable, "-m", "gep_raster.cli", "run", str(reference["cfg"]), "-q"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until it has stopped itself (state T in /proc)
            stat = Path(f"/proc/{first.pid}/stat").read_text() if Path(f"/proc/{first.pid}").exists() else ""
            if stat.split(") ")[-1].startswith("T") or first.poll() is not None:
                break
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read()[-3000:]
        with pytest.raises(OutputError, match="another gep run is writing this output folder") as err:
            run(load_config(reference["cfg"]), progress=False)
        assert str(first.pid) in str(err.value) and str(fresh) in str(err.value)
        second = _gep_run(reference["cfg"], _env())
        assert second.returncode == 3 and "another gep run is writing this output folder" in second.stderr
    finally:
        os.kill(first.pid, signal.SIGCONT)
        _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-3000:]
    assert _finals(fresh) == reference["finals"]
    # the lock goes with its holder: after a SIGKILL the next run takes it
    killed = _gep_run(reference["cfg"], _env(GEP_FAULT="stage.prepare@1:KILL"))
    assert killed.returncode == -signal.SIGKILL
    assert _gep_run(reference["cfg"], _env()).returncode == 0


def test_fault_spec_is_checked():
    from gep_raster import faults

    assert faults._parse("block@6:KILL") == ("block", 6, int(signal.SIGKILL))
    assert faults._parse("stage.tables@2:INT") == ("stage.tables", 2, int(signal.SIGINT))
    for bad in ("block", "block@0:KILL", "block@x:KILL", "block@1:NOPE", "@1:KILL"):
        with pytest.raises(ValueError, match="GEP_FAULT"):
            faults._parse(bad)
