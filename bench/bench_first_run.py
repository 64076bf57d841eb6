"""First-run cost of an installed gep_raster: numba compiling its kernels into the cache (issue 22, item 4).

Builds sdist + wheel from the source tree (``python -m build``, warnings as errors), installs the wheel into fresh
virtual environments (``pip install -c requirements.lock``, the same index as ``make setup``) and times ``gep run``
of the embedded sample from a folder outside the repository:

* ``writable``: package folder writable, numba caches next to the modules (site-packages ``__pycache__``): run 1
  (cold cache) and run 2 (warm);
* ``warmup``: the same after ``gep warmup`` (cache filled by the warmup, not by a run): warmup time, run 1, run 2;
* ``read_only``: site-packages made read-only (``chmod -R a-w``), as in a shared or container install: numba cannot
  write next to the modules; with :mod:`gep_raster.numba_cache` the cache goes to ``$XDG_CACHE_HOME/gep_raster/numba``
  (a fresh folder per case), so only the first run pays.

Every run gets its own output folder. Writes ``bench/results/first_run.json`` (seconds, ratios first/warm, the
sample's ``gep_r_yuan`` total of each run, which must agree). ``make bench-first-run`` runs it (about 5 minutes on
2 cores, most of it the installs and the cold runs).

The helpers (:func:`build_dists`, :func:`make_venv`, :func:`sample_config`, :func:`gep`) are reused by
``tests/test_packaging.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
#: what a build must not print (setuptools' deprecations come as SetuptoolsDeprecationWarning, build's as
#: BuildBackendWarning); matched case-insensitively against the whole build output
BAD_BUILD_OUTPUT = re.compile(r"deprecat|BuildBackendWarning", re.IGNORECASE)
#: top-level entries of the tree that a build needs (the rest, .venv, out, bench/results..., is left out)
_SKIP = {".git", ".venv", "out", "outputs", ".peer", ".pytest_cache", "build", "dist", "notebooks"}


def source_copy(src: Path, dest: Path) -> Path:
    """Copy the files of the tree ``src`` that git tracks or would track (else: all but caches and outputs).

    The build runs on the copy, so it never writes ``*.egg-info`` or ``build/`` into the working tree."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        files = subprocess.run(["git", "-C", str(src), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                               check=True, capture_output=True).stdout.decode().split("\0")
        files = [f for f in files if f and (src / f).is_file()]
    except (OSError, subprocess.CalledProcessError):
        files = None
    if not files:
        caches = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        top = Path(src).resolve()

        def ignore(folder, names):  # caches anywhere, _SKIP only at the top (gep_raster/outputs is a package)
            return set(caches(folder, names)) | (set(names) & _SKIP if Path(folder).resolve() == top else set())

        shutil.copytree(src, dest, ignore=ignore, dirs_exist_ok=True)
        return dest
    for f in files:
        if f.split("/", 1)[0] in _SKIP:
            continue
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / f, dest / f)
    return dest


def build_dists(outdir: Path, src: Path = REPO, python: str = sys.executable) -> tuple[Path, Path, str]:
    """sdist and wheel of ``src`` built with ``python -m build`` and ``PYTHONWARNINGS=error``.

    Returns (wheel, sdist, build output). Raises ``RuntimeError`` (with the output) if the build fails."""
    outdir = Path(outdir)
    work = Path(tempfile.mkdtemp(prefix="gep_build_"))
    try:
        tree = source_copy(Path(src), work / "src")
        env = dict(os.environ, PYTHONWARNINGS="error")
        proc = subprocess.run([python, "-m", "build", "--outdir", str(outdir), str(tree)], env=env,
                              capture_output=True, text=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"python -m build failed (exit {proc.returncode}):\n{log[-6000:]}")
    wheel = max(outdir.glob("gep_raster-*.whl"), key=lambda p: p.stat().st_mtime)
    sdist = max(outdir.glob("gep_raster-*.tar.gz"), key=lambda p: p.stat().st_mtime)
    return wheel, sdist, log


def make_venv(venv: Path, wheel: Path, lock: Path = REPO / "requirements.lock") -> Path:
    """A fresh virtual environment with ``wheel`` installed under the versions of ``lock``; returns its bin folder."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bin_ = Path(venv) / "bin"
    proc = subprocess.run([str(bin_ / "python"), "-m", "pip", "install", "--quiet", "-c", str(lock), str(wheel)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pip install of {wheel.name} failed:\n{(proc.stdout + proc.stderr)[-6000:]}")
    return bin_


def _absolute(value, base: Path):
    """``value`` resolved against ``base`` when it is a relative path of an existing file, folder or glob."""
    if not isinstance(value, str) or not value or os.path.isabs(value) or "://" in value:
        return value
    cand = (base / value)
    parent = cand.parent
    if cand.exists() or ("*" in cand.name and parent.is_dir()):
        return str(cand.resolve()) + ("/" if value.endswith("/") else "")
    return value


def _rewrite(node, base: Path):
    if isinstance(node, dict):
        return {k: _rewrite(v, base) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v, base) for v in node]
    return _absolute(node, base)


def sample_config(folder: Path, out_dir: Path, src_config: Path = REPO / "pipelines" / "sample.yaml") -> Path:
    """``pipelines/sample.yaml`` copied into ``folder`` with every relative path made absolute (into the repository's
    ``sample_tiles/`` and ``pipelines/``) and the output into ``out_dir``; returns the new config's path."""
    raw = yaml.safe_load(Path(src_config).read_text(encoding="utf-8"))
    raw = _rewrite(raw, Path(src_config).resolve().parent)
    raw.setdefault("output", {})["dir"] = str(Path(out_dir).resolve())
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / Path(src_config).name
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return cfg


def clean_env(extra: dict | None = None) -> dict:
    """The environment of a run in a fresh venv: no NUMBA_* or GEP_* settings of the caller, no virtualenv."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NUMBA_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONWARNINGS"))}
    env.update(extra or {})
    return env


def gep(bin_: Path, args: list[str], cwd: Path, env: dict, timeout: float = 900) -> tuple[float, str]:
    """Run ``gep ARGS`` of the venv ``bin_`` in ``cwd``; returns (seconds, output). Raises on a non-zero exit."""
    t0 = time.perf_counter()
    proc = subprocess.run([str(Path(bin_) / "gep"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    dt = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"gep {' '.join(args)} exited {proc.returncode}:\n{out[-6000:]}")
    return dt, out


def manifest_totals(out_dir: Path) -> dict:
    """``{column: sum}`` of the ``totals`` of the run's manifest.json."""
    m = json.loads((Path(out_dir) / "manifest.json").read_text(encoding="utf-8"))
    return {k: v["sum"] for k, v in m["totals"].items()}


def site_packages(bin_: Path) -> Path:
    out = subprocess.run([str(Path(bin_) / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    return Path(out)


def _chmod_tree(root: Path, writable: bool) -> None:
    for p in [root, *root.rglob("*")]:
        if p.is_symlink():
            continue
        mode = p.stat().st_mode
        mode = (mode | stat.S_IWUSR) if writable else (mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        os.chmod(p, mode)


def _has_warmup(bin_: Path, env: dict) -> bool:
    proc = subprocess.run([str(Path(bin_) / "gep"), "--help"], env=env, capture_output=True, text=True)
    return "warmup" in proc.stdout


def _runs(bin_: Path, cfg_dir: Path, tag: str, env: dict, n: int = 2) -> list[dict]:
    rows = []
    for i in range(1, n + 1):
        out_dir = cfg_dir / f"out_{tag}_{i}"
        cfg = sample_config(cfg_dir / f"cfg_{tag}_{i}", out_dir)
        dt, _ = gep(bin_, ["run", str(cfg), "-q"], cwd=cfg_dir, env=env)
        tot = manifest_totals(out_dir)
        rows.append({"run": i, "seconds": round(dt, 2), "gep_r_yuan": tot.get("gep_r_yuan")})
        print(f"  {tag:10s} run {i}: {dt:6.1f} s", flush=True)
    return rows


def _case(name: str, wheel: Path, work: Path, *, warmup: bool, read_only: bool) -> dict:
    venv = work / f"venv_{name}"
    t0 = time.perf_counter()
    bin_ = make_venv(venv, wheel)
    print(f"{name}: venv in {time.perf_counter() - t0:.0f} s", flush=True)
    cache_home = work / f"xdg_cache_{name}"
    env = clean_env({"XDG_CACHE_HOME": str(cache_home)})
    row: dict = {"case": name, "warmup_before": warmup, "package_read_only": read_only}
    sp = site_packages(bin_)
    if read_only:
        _chmod_tree(sp, writable=False)
    try:
        if warmup:
            if not _has_warmup(bin_, env):
                row["skipped"] = "this build has no `gep warmup` command (not registered in gep_raster/cli.py)"
                print(f"  {name}: {row['skipped']}")
                return row
            dt, out = gep(bin_, ["warmup"], cwd=work, env=env)
            row["warmup_seconds"] = round(dt, 2)
            row["warmup_output"] = out.strip().splitlines()[-3:]
            print(f"  {name:10s} warmup: {dt:6.1f} s", flush=True)
        row["runs"] = _runs(bin_, work / name, name, env)
    finally:
        if read_only:
            _chmod_tree(sp, writable=True)
    row["numba_cache_files_in_package"] = len(list((sp / "gep_raster").rglob("*.nbi")))
    row["numba_cache_files_in_user_cache"] = len(list(cache_home.rglob("*.nbi"))) if cache_home.exists() else 0
    runs = row["runs"]
    row["first_over_warm"] = round(runs[0]["seconds"] / runs[1]["seconds"], 2)
    if warmup:
        row["first_over_warm_incl_warmup"] = round((row["warmup_seconds"] + runs[0]["seconds"]) / runs[1]["seconds"], 2)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, default=REPO, help="source tree to build (default: this repository)")
    ap.add_argument("--wheel", type=Path, help="use this wheel instead of building one")
    ap.add_argument("--cases", default="writable,warmup,read_only",
                    help="comma-separated subset of writable, warmup, read_only")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "first_run.json")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (venvs, outputs)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gep_first_run_"))
    try:
        if args.wheel:
            wheel, build_s = args.wheel.resolve(), None
        else:
            t0 = time.perf_counter()
            wheel, _, _ = build_dists(work / "dist", src=args.src)
            build_s = round(time.perf_counter() - t0, 1)
            print(f"built {wheel.name} in {build_s} s", flush=True)
        cases = {"writable": dict(warmup=False, read_only=False), "warmup": dict(warmup=True, read_only=False),
                 "read_only": dict(warmup=False, read_only=True)}
        rows = [_case(c, wheel, work, **cases[c]) for c in args.cases.split(",")]
        result = {"what": "gep run of pipelines/sample.yaml in a fresh venv from the wheel: run 1 = cold numba cache",
                  "date": time.strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(),
                  "cpus": os.cpu_count(), "machine": platform.machine(), "wheel": wheel.name,
                  "build_seconds": build_s, "cases": rows}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"-> {args.out}")
        for r in rows:
            if "runs" in r:
                extra = f", warmup {r['warmup_seconds']} s" if "warmup_seconds" in r else ""
                print(f"{r['case']:10s} first {r['runs'][0]['seconds']} s, warm {r['runs'][1]['seconds']} s, "
                      f"ratio {r['first_over_warm']}{extra}")
        return 0
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
