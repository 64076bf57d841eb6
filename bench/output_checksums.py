"""Checksums of every output of the three pipelines, to show that a refactoring changed no number.

Runs ``pipelines/sample.yaml``, ``pipelines/gura.yaml`` and ``pipelines/willamette.yaml`` (with the package found
first on ``sys.path``: this checkout, or another one given with ``--code``) into a scratch folder, with
``SOURCE_DATE_EPOCH`` set so GeoPackages carry a fixed timestamp, and writes the SHA-256 of every output file
(rasters, their tiles, tables, figures) and of the manifest with its run-dependent fields removed (creation
time, timings, CPU seconds, machine, absolute paths of the inputs and folders, paths of the scratch folder,
validation seconds, execution seconds).

Usage::

    python bench/output_checksums.py -o /tmp/after.json                 # this checkout
    git worktree add /tmp/base <commit>
    python bench/output_checksums.py --code /tmp/base -o /tmp/before.json
    python bench/output_checksums.py --compare /tmp/before.json /tmp/after.json

``--compare`` lists every file whose checksum differs or that exists in one run only, and exits 1 if any.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PIPELINES = ("sample", "gura", "willamette")
#: manifest fields that depend on when, where and how fast a run ran (not on its numbers); ``abs_path`` (absolute
#: input paths) and ``paths`` (config, base and run folders) depend on where the checkout and the scratch folder lie;
#: the inputs' ``path`` fields (relative to the config's folder) and ``input_checksums`` (keyed by them) are kept
VOLATILE = {"created_utc", "timings_s", "cpu_s", "machine", "config_file", "allocator", "abs_path", "paths"}

_RUNNER = r"""
import os, sys, json
sys.path.insert(0, sys.argv[1])
import gep_raster
from gep_raster.config import load_config
from gep_raster.pipeline import run
cfg = load_config(sys.argv[2])
cfg.output.dir = sys.argv[3]
run(cfg, workers=2, progress=False, force=True)
print(gep_raster.__file__)
"""


def _scrub(obj, scratch: str):
    """The manifest without its volatile fields; the scratch folder's path replaced by ``<out>``."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in VOLATILE or k == "seconds":
                continue
            out[k] = _scrub(v, scratch)
        return out
    if isinstance(obj, list):
        return [_scrub(v, scratch) for v in obj]
    if isinstance(obj, str):
        return obj.replace(scratch, "<out>")
    return obj


def checksums(out_dir: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file of a finished run folder (``.gep_state`` left out)."""
    res = {}
    for p in sorted(out_dir.rglob("*")):
        rel = p.relative_to(out_dir).as_posix()
        if not p.is_file() or rel.startswith(".gep_state"):
            continue
        if rel == "manifest.json":
            data = json.dumps(_scrub(json.loads(p.read_text()), str(out_dir)), sort_keys=True).encode()
        else:
            data = p.read_bytes()
        res[rel] = hashlib.sha256(data).hexdigest()
    return res


def run_all(code: Path, pipelines=PIPELINES) -> dict:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1767225600", "PYTHONPATH": str(code)}
    env.setdefault("GEP_SHARED_DATA", str(REPO.parent / "shared" / "data"))
    result = {"code": str(code)}
    # a fixed scratch folder: the output folder is part of the config, hence of the run hash in every raster
    scratch = Path(tempfile.gettempdir()) / "gep-output-checksums"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        for name in pipelines:
            out = scratch / name
            # the config of *this* checkout's pipelines folder: the same inputs for both commits
            cfg = REPO / "pipelines" / f"{name}.yaml"
            proc = subprocess.run([sys.executable, "-c", _RUNNER, str(code), str(cfg), str(out)], env=env,
                                  capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"{name}: run failed\n{proc.stderr[-3000:]}")
            result[name] = {"package": proc.stdout.strip().splitlines()[-1], "files": checksums(out)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def compare(a: dict, b: dict) -> list[str]:
    diffs = []
    for name in PIPELINES:
        fa, fb = a.get(name, {}).get("files", {}), b.get(name, {}).get("files", {})
        for rel in sorted(set(fa) | set(fb)):
            if fa.get(rel) != fb.get(rel):
                what = "only in the second" if rel not in fa else "only in the first" if rel not in fb else "differs"
                diffs.append(f"{name}/{rel}: {what}")
    return diffs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", type=Path, default=REPO, help="checkout whose gep_raster runs (default: this one)")
    ap.add_argument("-o", "--output", type=Path, help="JSON file of the checksums")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args(argv)
    if args.compare:
        a, b = (json.loads(p.read_text()) for p in args.compare)
        diffs = compare(a, b)
        n = sum(len(a[name]["files"]) for name in PIPELINES)
        for d in diffs:
            print(d)
        print(f"{n} files compared over {', '.join(PIPELINES)}: {len(diffs)} differ")
        return 1 if diffs else 0
    res = run_all(args.code.resolve())
    text = json.dumps(res, indent=1, sort_keys=True)
    if args.output:
        args.output.write_text(text)
    else:
        print(text)
    print(", ".join(f"{n}: {len(res[n]['files'])} files" for n in PIPELINES), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
