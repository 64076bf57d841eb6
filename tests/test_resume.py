"""Kill-and-resume: a run killed with SIGKILL and started again redoes only unfinished blocks and ends
with outputs identical to an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio

from gep_raster.config import load_config
from gep_raster.pipeline import run

from conftest import sample_config

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, name: str, layout: str) -> Path:
    """pipelines/sample.yaml with small blocks (64 px: 80 blocks) and the output in tmp_path."""
    return sample_config(tmp_path, name, layout=layout, chunk=64)


def _rasters(res) -> dict:
    out = {}
    for o in res.manifest["outputs"]:
        if o["kind"] in ("table", "figure"):
            continue
        with rasterio.open(res.output_dir / o["path"]) as ds:
            out[o["path"]] = ds.read(1)
    return out


@pytest.mark.parametrize("layout", ["cog", "tiles"])
def test_sigkill_then_rerun_gives_identical_outputs(tmp_path, layout):
    ref = run(load_config(_config(tmp_path, "ref", layout)), progress=False)

    cfg_path = _config(tmp_path, "killed", layout)
    journal = tmp_path / "killed" / ".gep_state" / "blocks" / "journal"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "gep_raster.cli", "run", str(cfg_path), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    n_blocks = 10 * 8  # 600 x 480 px in 64 px blocks
    deadline = time.monotonic() + 240
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        n = len(list(journal.glob("b*.npz"))) if journal.exists() else 0
        if n >= 6:
            proc.send_signal(signal.SIGKILL)
            killed_at = n
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert killed_at is not None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    left = len(list(journal.glob("b*.npz")))
    assert killed_at <= left < n_blocks  # killed mid-run: some blocks finished, not all
    assert not (tmp_path / "killed" / "manifest.json").exists()

    res = run(load_config(cfg_path), progress=False)
    ex = res.manifest["execution"]
    # only the unfinished blocks were computed (a block being written at the kill may or may not count)
    assert ex["blocks"] == n_blocks
    assert ex["blocks_resumed"] == left
    assert not journal.exists()  # the journal is dropped once the run is published

    a, b = _rasters(ref), _rasters(res)
    assert a.keys() == b.keys() and len(a) > 20
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=True), k
    for name in ("county", "township", "special_units"):
        ta = (ref.output_dir / "tables" / f"{name}.csv").read_bytes()
        tb = (res.output_dir / "tables" / f"{name}.csv").read_bytes()
        assert ta == tb, name
    assert ref.manifest["totals"] == res.manifest["totals"]
    assert np.isfinite(a["rasters/gep_r_yuan." + ("tif" if layout == "cog" else "vrt")]).sum() > 200_000
    county = pd.read_csv(res.output_dir / "tables" / "county.csv")["gep_r_yuan"].iloc[0]
    towns = pd.read_csv(res.output_dir / "tables" / "township.csv")["gep_r_yuan"].sum()
    assert county == pytest.approx(towns, rel=1e-9) and county > 1e9


def test_changed_config_does_not_reuse_blocks(tmp_path):
    """A journal of another run (other config or inputs: other run key) is discarded: all blocks are computed."""
    p = _config(tmp_path, "run", "cog")
    cfg = load_config(p)
    store_root = cfg.output_dir / ".gep_state" / "blocks"
    # simulate an interrupted run: a journal entry of another run key
    store_root.mkdir(parents=True)
    (store_root / "store.json").write_text(json.dumps({"run_key": "other"}))
    (store_root / "journal").mkdir()
    (store_root / "journal" / "b0000000.npz").write_bytes(b"junk")
    res = run(cfg, progress=False)
    assert res.manifest["execution"]["blocks_resumed"] == 0
    # same config again: nothing recomputed at all (identical finished run)
    again = run(load_config(p), progress=False)
    assert again.manifest["resumed_rasters"] is True
