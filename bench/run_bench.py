"""Benchmarks (`make bench`): wall time, Mpx/s, peak RSS and an IO baseline per case.

Each case runs in its own subprocess (so peak RSS is that run's own). The IO baseline reads every
input of the run window by window on the reference grid and writes as many float32 COGs as the
run writes, with the same codec and writer: the time the run could not beat.
Writes bench/results/latest.json (one record per case) and prints a table.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
from gep_raster.config import load_config
from gep_raster.pipeline import run, reference_grid, open_inputs
cfg_path, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = load_config(cfg_path, overrides={"output": {"dir": out}})
t0 = time.perf_counter()
if mode == "run":
    res = run(cfg, progress=False, force=True)
    n_out = sum(1 for o in res.manifest["outputs"] if o["path"].endswith(".tif"))
    timings = res.manifest["timings_s"]
else:
    from gep_raster.io_write import BlockRasterWriter
    from gep_raster.services import ServiceModel
    from gep_raster.tables import PriceBook, load_legend, required_legend_columns
    grid = reference_grid(cfg)
    legend = load_legend(cfg, required_legend_columns(cfg))
    model = ServiceModel.from_config(cfg, legend, PriceBook.from_config(cfg), cell_size=grid.res[0],
                                     geographic=grid.is_geographic)
    src = open_inputs(cfg, grid, model.input_keys(), model.input_requests())
    n_out = sum(1 for o in model.outputs if o.write)
    Path(out).mkdir(parents=True, exist_ok=True)
    writers = [BlockRasterWriter(Path(out) / f"io_{i}.tif", grid) for i in range(n_out)]
    ch = cfg.output.chunk_size
    for r0, r1, c0, c1 in grid.block_windows(ch):
        blk = None
        for s in src.values():
            a = s.read(r0, r1, c0, c1)
            blk = a.astype(np.float32)
        for w in writers:
            w.write(r0, c0, blk)
    for w in writers:
        w.finalize(description="io baseline", units="-")
    timings = {}
wall = time.perf_counter() - t0
grid = reference_grid(cfg)
print(json.dumps({"wall_s": wall, "pixels": grid.width * grid.height, "n_outputs": n_out,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "timings": timings}))
"""


def run_case(name: str, cfg: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        rec = {}
        for mode in ("run", "io"):
            p = subprocess.run([sys.executable, "-c", CHILD, str(cfg), str(Path(tmp) / mode), mode],
                               capture_output=True, text=True, cwd=REPO)
            if p.returncode != 0:
                raise SystemExit(f"bench case {name} ({mode}) failed:\n{p.stderr[-3000:]}")
            rec[mode] = json.loads(p.stdout.strip().splitlines()[-1])
    r, io = rec["run"], rec["io"]
    return {"case": name, "pixels": r["pixels"], "wall_s": round(r["wall_s"], 3),
            "mpx_per_s": round(r["pixels"] / 1e6 / r["wall_s"], 3), "peak_rss_mb": round(r["peak_rss_mb"], 1),
            "io_baseline_s": round(io["wall_s"], 3), "ratio_to_io": round(r["wall_s"] / io["wall_s"], 2),
            "n_outputs": r["n_outputs"], "stage_timings_s": r["timings"]}


def main():
    from gep_raster.config import default_shared_data

    cases = [("sample", REPO / "pipelines/sample.yaml")]
    if (default_shared_data() / "invest_gura_kenya").is_dir():
        cases.append(("gura", REPO / "pipelines/gura.yaml"))
        cases.append(("willamette", REPO / "pipelines/willamette.yaml"))
    records = [run_case(n, c) for n, c in cases]
    out = REPO / "bench/results/latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    import platform

    import psutil

    meta = {"machine": {"cpus": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
                        "platform": platform.platform()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out.write_text(json.dumps({"meta": meta, "records": records}, indent=2))
    print(f"{'case':12s} {'Mpx':>8s} {'wall s':>8s} {'Mpx/s':>8s} {'RSS MB':>8s} {'IO s':>8s} {'x IO':>6s}")
    for r in records:
        print(f"{r['case']:12s} {r['pixels'] / 1e6:8.2f} {r['wall_s']:8.2f} {r['mpx_per_s']:8.2f} "
              f"{r['peak_rss_mb']:8.0f} {r['io_baseline_s']:8.2f} {r['ratio_to_io']:6.2f}")
    print(f"written {out}")


if __name__ == "__main__":
    main()
