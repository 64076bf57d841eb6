"""Benchmarks (`make bench`, `make bench-quick`): the "province scale" targets, measured.

Cases (``--cases``, comma-separated; default: all of them)

``sample``, ``gura``, ``willamette``
    the repository's pipelines (Gura and Willamette only when ``$GEP_SHARED_DATA`` has their data);
``s<N>`` (record ``synthetic_<N>``)
    a synthetic N x N px run (``bench/make_synthetic.py``: land cover + DEM tiles, 1 km climate,
    townships, square hydrological units; generated on demand in ``bench/data/s<N>``, reused while
    complete). Default sizes 2048, 8192, 16384, 32768 (``--sizes``);
``s<N>_w<K>`` (record ``synthetic_<N>_w<K>``)
    the same run with ``workers=K`` threads (default: 16384 with 1 and 2 workers);
``zonal`` (record ``zonal_4x2000``)
    ``bench/bench_zonal.py``: 4 rasters summed over 2,000 polygons, ours vs exactextract called once per
    raster (``--zonal-size``, default 8192).

Every raster case is two subprocesses (so each peak RSS, ``ru_maxrss`` of the child, is its own):

1. **engine**: ``gep_raster.pipeline.run(cfg, progress=False, force=True)`` into a scratch folder; the
   manifest gives the chunk size, layout, memory budget, threads and stage timings;
2. **IO baseline**: the time to just read every input and write every output with the same codec,
   writer functions, layout and threads: every input source of the run (``open_inputs`` + land cover,
   + economic weight rasters) is read block by block (``source.read``) for the chunk size the run chose;
   per block, as many float32 tiles as the run wrote rasters are written with
   the engine's own :class:`gep_raster.outputs.block_store.BlockStore` (tile per output and block, overview raster for
   the tiles layout, the run's DEFLATE level),
   output i = the block of input number i (cycling over the inputs: terrain, classes, climate) times a
   per-output factor, so DEFLATE sees real data of a similar mix (the record's
   ``io_bytes_over_engine_bytes`` compares the bytes written); blocks are spread over a ThreadPoolExecutor of
   the run's threads; then ``BlockStore.publish`` per output, one output after the other as the engine does
   (tiles layout: the VRT; cog layout: the COG assembled from the blocks' spooled COG tiles, or GDAL's COG
   driver when the blocks are off the 512 px lattice).

``ratio_to_io`` = engine wall / IO-baseline wall. At the sizes of the ratio target (8192², 16384²) each case runs
two (engine, baseline) pairs, alternating, and the record keeps the faster of each (``--repeat N`` for N pairs
in every raster case): the wall time of the same code varies by 10-20 % between runs on the shared
development machine, and the minimum is the timing least disturbed by other load; every run's time is kept
(``wall_s_runs``, ``io_baseline_s_runs``, ``ratio_to_io_per_pair``). Records go to ``bench/results/latest.json`` (merged by
case with the records already there unless ``--fresh``; each record says when and on which commit it
was measured), with a ``targets`` summary, and a table is printed. Progress lines go to stderr; each
child's log goes to ``bench/results/logs/``.

``s<N>_w2`` reuses the ``s<N>`` record of the same invocation when that run used 2 threads (identical
configuration; ``--no-reuse`` measures it again).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench/results"
DATA = REPO / "bench/data"
DEFAULT_SIZES = (2048, 8192, 16384, 32768)
SCALING_SIZE = 16384
QUICK = "sample,s2048,zonal"

# targets of the "province scale" issue
TARGET_RATIO_IO = 1.5          # end-to-end <= 1.5 x IO baseline at 8k and 16k
RATIO_SIZES = (8192, 16384)
RATIO_REPEATS = 2              # (engine, baseline) pairs at those sizes: the ratio is min / min
TARGET_RSS_MB = 3 * 1024       # peak RSS <= 3 GiB at 32k with the default memory budget
DEFAULT_BUDGET_MB = 2048
TARGET_TPP_TOL = 0.20          # time per pixel within +-20 % from 2k to 32k
TARGET_ZONAL_SPEEDUP = 5.0     # >= 5 x exactextract once per raster
TARGET_ZONAL_REL = 1e-9        # sums equal to 1e-9 relative
TARGET_WORKER_SPEEDUP = 1.6    # 2 workers >= 1.6 x 1 worker at 16k


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ======================================================================================
# children (run in their own process: python bench/run_bench.py --child MODE ARGS.json)
# ======================================================================================
def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _cpu_s() -> float:
    """CPU seconds (user + system, all threads) of this process and of its finished child processes so far."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    rc = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime + rc.ru_utime + rc.ru_stime


def _dir_bytes(path: Path) -> int:
    n = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                n += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return n


def _raster_outputs(manifest: dict) -> list[str]:
    return [o["path"] for o in manifest["outputs"] if o["path"].endswith((".tif", ".vrt"))
            and o.get("kind") not in ("table", "figure")]


def child_run(a: dict) -> dict:
    """Engine case: the whole run, as `gep run --force` does it (no progress display)."""
    from gep_raster.config import load_config
    from gep_raster.pipeline import run

    cfg = load_config(a["config"], overrides={"output": {"dir": a["out"]}})
    t0 = time.perf_counter()
    res = run(cfg, workers=a.get("workers"), progress=False, force=True)
    wall = time.perf_counter() - t0
    m = res.manifest
    g = m["grid"]
    rasters = _raster_outputs(m)
    return {"wall_s": wall, "pixels": int(g["width"]) * int(g["height"]), "n_outputs": len(rasters),
            "chunk_size": m.get("chunk_size"), "layout": m.get("layout"), "memory": m.get("memory"),
            "execution": m.get("execution"), "routing": m.get("routing"), "timings": m.get("timings_s", {}),
            "stage_cpu": m.get("cpu_s", {}), "allocator": m.get("allocator"),
            "output_bytes": _dir_bytes(Path(a["out"]) / "rasters"), "peak_rss_mb": _peak_rss_mb(),
            "cpu_s": _cpu_s()}


def child_io(a: dict) -> dict:
    """IO baseline: read every input block by block, write n_outputs float32 outputs the engine's way."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import rasterio

    from gep_raster.allocator import tune_for_blocks
    from gep_raster.budget import gdal_cache_bytes
    from gep_raster.config import load_config
    from gep_raster.grid.io_read import GridSource
    from gep_raster.outputs.block_store import BlockStore
    from gep_raster.grid.run_inputs import open_inputs, raster_source, reference_grid
    from gep_raster.services import ServiceModel
    from gep_raster.tables import PriceBook, load_legend
    from gep_raster.services.registry import required_legend_columns

    cfg = load_config(a["config"], overrides={"output": {"dir": a["out"]}})
    chunk, layout, n_out, threads = int(a["chunk"]), a["layout"], int(a["n_outputs"]), int(a["threads"])
    budget = int(a.get("budget_mb") or DEFAULT_BUDGET_MB)
    allocator = tune_for_blocks()  # the allocator settings of the engine's run (gep_raster.allocator)
    t0 = time.perf_counter()
    grid = reference_grid(cfg)
    legend = load_legend(cfg, required_legend_columns(cfg))
    model = ServiceModel.from_config(cfg, legend, PriceBook.from_config(cfg), cell_size=grid.res[0],
                                     geographic=grid.is_geographic)
    src = open_inputs(cfg, grid, model.input_keys(), model.input_requests())
    src["lc"] = raster_source(cfg, "land_cover", cfg.inputs.land_cover, grid, "categorical")
    if cfg.economic_accounts is not None:
        for name, spec in cfg.economic_accounts.weight_rasters.items():
            key = f"economic_accounts.weight_rasters.{name}"
            src[f"econ_weight.{name}"] = GridSource(key, cfg.resolve_many(spec.path, f"{key}.path"), grid,
                                                    "continuous", band=spec.band, nodata=spec.nodata,
                                                    scale=spec.scale, resampling=spec.resampling)
    # values written: output i = input number i (cycling over the inputs, sorted by key) x a per-output
    # factor, so the codec sees a mix like the engine's (noisy terrain-based fields, class-based
    # piecewise-constant fields, smooth climate fields), never zeros
    keys = sorted(src)
    base_of = [keys[i % len(keys)] for i in range(n_out)]
    out = Path(a["out"])
    names = [f"io_{i:02d}" for i in range(n_out)]
    ext = ".vrt" if layout == "tiles" else ".tif"
    import dask.array as da

    chunks = da.core.normalize_chunks((chunk, chunk), shape=grid.shape)
    # the engine's own writer: one tile per output and block (+ overview raster for the tiles layout),
    # the same DEFLATE level, journal entry per block, then VRT or COG per output
    store = BlockStore(out / ".gep_state" / "blocks", out, grid, [(n, f"rasters/{n}{ext}") for n in names],
                       "io-baseline", chunks, layout, deflate_level=cfg.output.deflate_level, threads=threads)
    factors = [np.float32(1.0 + 0.173 * i) for i in range(n_out)]
    windows = list(grid.block_windows(chunk))
    t_open = time.perf_counter() - t0
    empty = (np.zeros(n_out), np.zeros(n_out, np.int64), {})

    def block(win):
        r0, r1, c0, c1 = win
        ta = time.perf_counter()
        vals = {k: s.read(r0, r1, c0, c1) for k, s in src.items()}
        tb = time.perf_counter()
        for k in keys:
            v = vals[k].astype(np.float32)
            if src[k].kind == "categorical":
                v[vals[k] < 0] = np.nan
            vals[k] = v
        stack = np.stack([vals[k] * f for f, k in zip(factors, base_of)])
        store.commit(r0, c0, stack, list(range(n_out)), empty)
        return tb - ta, time.perf_counter() - tb

    t1 = time.perf_counter()
    with rasterio.Env(GDAL_CACHEMAX=gdal_cache_bytes(budget)):
        with ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(block, windows))
    t_blocks = time.perf_counter() - t1
    t2 = time.perf_counter()
    for n in names:
        store.publish(n, tags={}, description="io baseline", units="-")
    store.close()
    t_fin = time.perf_counter() - t2
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "pixels": grid.width * grid.height, "n_outputs": n_out, "chunk_size": chunk,
            "layout": layout, "threads": threads, "inputs": keys, "written_values_from": base_of,
            "allocator": allocator,
            "timings": {"open": round(t_open, 3), "read_write_blocks": round(t_blocks, 3),
                        "finalize_rasters": round(t_fin, 3),
                        "read_thread_s": round(sum(p[0] for p in parts), 3),
                        "write_thread_s": round(sum(p[1] for p in parts), 3)},
            "output_bytes": _dir_bytes(out / "rasters"), "peak_rss_mb": _peak_rss_mb(), "cpu_s": _cpu_s()}


def child_main(mode: str, args_path: str) -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    a = json.loads(Path(args_path).read_text())
    res = {"run": child_run, "io": child_io}[mode](a)
    Path(a["result"]).write_text(json.dumps(res, default=str))


# ======================================================================================
# parent
# ======================================================================================
def _spawn(cmd: list[str], label: str, log_path: Path, status=None) -> float:
    """Run ``cmd`` (stdout+stderr to ``log_path``) with a progress line every minute (every 5 minutes
    after 10 minutes; ``status()`` adds to it); returns seconds."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log_path, "w") as fh:
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
        while True:
            el = time.perf_counter() - t0
            try:
                p.wait(timeout=60 if el < 600 else 300)
                break
            except subprocess.TimeoutExpired:
                extra = ""
                if status is not None:
                    try:
                        extra = status() or ""
                    except OSError:
                        extra = ""
                log(f"  {label}: still running ({time.perf_counter() - t0:.0f} s{'; ' + extra if extra else ''}; "
                    f"load {os.getloadavg()[0]:.1f})")
    if p.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{label} failed (exit {p.returncode}); log {log_path}:\n{tail}")
    return time.perf_counter() - t0


def _child(mode: str, args: dict, label: str, log_path: Path, status=None) -> dict:
    work = Path(args["out"]).parent
    work.mkdir(parents=True, exist_ok=True)
    args = {**args, "result": str(work / f"{mode}.result.json")}
    ap = work / f"{mode}.args.json"
    ap.write_text(json.dumps(args))
    load0 = os.getloadavg()[0]
    _spawn([sys.executable, str(Path(__file__).resolve()), "--child", mode, str(ap)], label, log_path, status)
    res = json.loads(Path(args["result"]).read_text())
    # 1-minute load average before and after: > the case's own threads means CPU was shared
    res["load_avg_1min"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    return res


def _engine_status(out: Path):
    """Progress of an engine run from its block journal (entries = blocks written)."""
    def status():
        j = out / ".gep_state" / "blocks" / "journal"
        if (out / ".gep_state" / "routing").is_dir() and not j.is_dir():
            return "routing"
        n = sum(1 for _ in j.glob("b*.npz")) if j.is_dir() else 0
        return f"{n} blocks written" if j.is_dir() else "preparing"
    return status


def raster_case(name: str, cfg: Path, workdir: Path, workers: int | None = None, keep: bool = False,
                repeats: int = 1) -> dict:
    """Engine run, then the IO baseline with the run's chunk size, layout, outputs and threads; ``repeats``
    times, alternating (engine, baseline, engine, baseline, ...). The record keeps the fastest engine run and
    the fastest baseline (the minimum of repeated timings is the least disturbed by other load on the
    machine), every run's wall time, and the largest peak RSS of the engine runs."""
    work = workdir / name
    logs = RESULTS / "logs"
    runs, ios = [], []
    for rep in range(repeats):
        shutil.rmtree(work, ignore_errors=True)
        tag = f" (pair {rep + 1}/{repeats})" if repeats > 1 else ""
        try:
            log(f"{name}: engine run{tag} ({cfg.relative_to(REPO) if cfg.is_relative_to(REPO) else cfg}"
                f"{f', workers={workers}' if workers else ''})")
            r = _child("run", {"config": str(cfg), "out": str(work / "run"), "workers": workers},
                       f"{name} engine", logs / f"{name}.run.log", _engine_status(work / "run"))
            threads = (r.get("execution") or {}).get("threads") or workers or os.cpu_count()
            budget = (r.get("memory") or {}).get("memory_budget_mb")
            log(f"{name}: engine {r['wall_s']:.1f} s, {r['pixels'] / 1e6 / r['wall_s']:.2f} Mpx/s, "
                f"peak RSS {r['peak_rss_mb']:.0f} MB, chunk {r['chunk_size']}, layout {r['layout']}, "
                f"{r['n_outputs']} rasters, {threads} threads, {r['output_bytes'] / 2**30:.2f} GiB written")
            if not keep:
                shutil.rmtree(work / "run", ignore_errors=True)  # disk: a 32k run writes tens of GB
            log(f"{name}: IO baseline{tag}")
            io = _child("io", {"config": str(cfg), "out": str(work / "io"), "chunk": r["chunk_size"],
                               "layout": r["layout"], "n_outputs": r["n_outputs"], "threads": threads,
                               "budget_mb": budget}, f"{name} IO baseline", logs / f"{name}.io.log")
            log(f"{name}: IO baseline {io['wall_s']:.1f} s (ratio {r['wall_s'] / io['wall_s']:.2f}), "
                f"peak RSS {io['peak_rss_mb']:.0f} MB")
        finally:
            if not keep:
                shutil.rmtree(work, ignore_errors=True)
        runs.append(r)
        ios.append(io)
    r = min(runs, key=lambda x: x["wall_s"])
    io = min(ios, key=lambda x: x["wall_s"])
    peak_rss = max(x["peak_rss_mb"] for x in runs)
    timings = r["timings"] or {}
    dom = max(timings, key=timings.get) if timings else None
    return {"case": name, "pixels": r["pixels"], "wall_s": round(r["wall_s"], 3),
            "mpx_per_s": round(r["pixels"] / 1e6 / r["wall_s"], 3),
            "ns_per_px": round(r["wall_s"] / r["pixels"] * 1e9, 1),
            "peak_rss_mb": round(peak_rss, 1),
            "io_baseline_s": round(io["wall_s"], 3), "ratio_to_io": round(r["wall_s"] / io["wall_s"], 3),
            # every (engine, baseline) pair in the order run; wall_s / io_baseline_s above are the minima
            "repeats": repeats, "wall_s_runs": [round(x["wall_s"], 3) for x in runs],
            "io_baseline_s_runs": [round(x["wall_s"], 3) for x in ios],
            "ratio_to_io_per_pair": [round(x["wall_s"] / y["wall_s"], 3) for x, y in zip(runs, ios)],
            "n_outputs": r["n_outputs"], "chunk_size": r["chunk_size"], "layout": r["layout"],
            "memory_budget_mb": budget, "threads": threads, "workers_arg": workers,
            # CPU seconds / wall of the engine process; load average before/after each child (CPU shared
            # with other work when it exceeds the threads)
            "cpu_s": round(r["cpu_s"], 1), "cpu_utilization": round(r["cpu_s"] / r["wall_s"], 2),
            "load_avg_1min": {"engine": r["load_avg_1min"], "io_baseline": io["load_avg_1min"]},
            "memory": r.get("memory"), "execution": r.get("execution"), "routing": r.get("routing"),
            "allocator": {"engine": r.get("allocator"), "io_baseline": io.get("allocator")},
            "stage_timings_s": timings, "stage_cpu_s": r.get("stage_cpu"), "dominant_stage": dom,
            "output_gib": round(r["output_bytes"] / 2**30, 3),
            # > 1: the baseline's data compress worse than the engine's (its writes cost more), < 1: better
            "io_bytes_over_engine_bytes": round(io["output_bytes"] / max(r["output_bytes"], 1), 3),
            "io_baseline": {"timings_s": io["timings"], "peak_rss_mb": round(io["peak_rss_mb"], 1),
                            "cpu_s": round(io["cpu_s"], 1), "cpu_utilization": round(io["cpu_s"] / io["wall_s"], 2),
                            "inputs": io["inputs"], "written_values_from": io["written_values_from"],
                            "output_gib": round(io["output_bytes"] / 2**30, 3)},
            "config": str(cfg)}


def zonal_case(workdir: Path, size: int) -> dict:
    name = "zonal_4x2000"
    work = workdir / name
    work.mkdir(parents=True, exist_ok=True)
    out = work / "zonal.json"
    log(f"{name}: bench/bench_zonal.py --size {size} --polygons 2000")
    try:
        _spawn([sys.executable, str(REPO / "bench/bench_zonal.py"), "--size", str(size), "--polygons", "2000",
                "--json", str(out)], name, RESULTS / "logs" / f"{name}.log")
        z = json.loads(out.read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    px = z["size"] ** 2
    ok = z["speedup"] >= TARGET_ZONAL_SPEEDUP and z["max_rel_diff"] <= TARGET_ZONAL_REL
    log(f"{name}: ours {z['ours_s']:.2f} s vs exactextract {z['exactextract_s']:.2f} s = {z['speedup']:.1f}x, "
        f"max rel diff {z['max_rel_diff']:.1e}")
    return {"case": name, "pixels": px, "wall_s": z["ours_s"], "mpx_per_s": round(px / 1e6 / z["ours_s"], 3),
            "ns_per_px": round(z["ours_s"] / px * 1e9, 1),
            "peak_rss_mb": z["peak_rss_mb_after_exactextract"], "io_baseline_s": None, "ratio_to_io": None,
            "n_outputs": None, "chunk_size": z["block"], "layout": None,
            "stage_timings_s": {"build": z["ours_build_s"], "accumulate": z["ours_accumulate_s"],
                                "block_copy": z["ours_block_copy_s"]},
            "rasters": z["rasters"], "polygons": z["polygons"], "exactextract_s": z["exactextract_s"],
            "speedup": z["speedup"], "max_rel_diff": z["max_rel_diff"], "target_met": ok, "zonal": z}


def ensure_synthetic(size: int) -> Path:
    out = DATA / f"s{size}"
    log(f"synthetic {size}x{size}: checking / generating {out.relative_to(REPO)}")
    _spawn([sys.executable, str(REPO / "bench/make_synthetic.py"), "--size", str(size), "--out", str(out)],
           f"make_synthetic {size}", RESULTS / "logs" / f"make_synthetic_{size}.log")
    return out / "run.yaml"


# --------------------------------------------------------------------------------------
def parse_case(token: str):
    """('real', name) | ('synthetic', size, workers|None) | ('zonal',)."""
    t = token.strip()
    if t in ("sample", "gura", "willamette"):
        return ("real", t)
    if t in ("zonal", "zonal_4x2000"):
        return ("zonal",)
    s = t[len("synthetic_"):] if t.startswith("synthetic_") else (t[1:] if t.startswith("s") else None)
    if s:
        size, _, w = s.partition("_w")
        if size.isdigit() and (not w or w.isdigit()):
            return ("synthetic", int(size), int(w) if w else None)
    raise SystemExit(f"unknown case {token!r} (sample, gura, willamette, s<size>, s<size>_w<workers>, zonal)")


def case_name(c) -> str:
    if c[0] == "real":
        return c[1]
    if c[0] == "zonal":
        return "zonal_4x2000"
    return f"synthetic_{c[1]}" + (f"_w{c[2]}" if c[2] else "")


def default_cases(sizes) -> list[str]:
    cases = ["sample", "gura", "willamette"] + [f"s{s}" for s in sizes]
    if SCALING_SIZE in sizes:
        cases += [f"s{SCALING_SIZE}_w1", f"s{SCALING_SIZE}_w2"]
    return cases + ["zonal"]


def _git() -> dict:
    def q(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    dirty = q("status", "--porcelain", "--", "gep_raster")
    return {"commit": q("rev-parse", "--short", "HEAD") or None, "gep_raster_uncommitted_changes": bool(dirty)}


# --------------------------------------------------------------------------------------
def _slowest(rec: dict) -> float:
    """The slowest engine run of a record: the worker speedup compares one run of each worker count, so a
    case measured twice (the 2-worker run is the 16384² ratio case) counts its slower run."""
    return max(rec.get("wall_s_runs") or [rec["wall_s"]])


def summarize(records: dict) -> dict:
    """Each target of the province-scale issue: measured value, threshold and pass/fail (None: not measured)."""
    t = {}

    for size in (8192, 16384):
        r = records.get(f"synthetic_{size}")
        v = r.get("ratio_to_io") if r else None
        t[f"ratio_to_io_{size}"] = {"target": f"end-to-end <= {TARGET_RATIO_IO}x IO baseline at {size}^2",
                                     "measured": v, "threshold": TARGET_RATIO_IO,
                                     "pass": None if v is None else v <= TARGET_RATIO_IO}
    r = records.get("synthetic_32768")
    v = r.get("peak_rss_mb") if r else None
    b = r.get("memory_budget_mb") if r else None
    t["peak_rss_32768"] = {"target": f"peak RSS <= {TARGET_RSS_MB} MB at 32768^2 with the default budget "
                                     f"({DEFAULT_BUDGET_MB} MB)", "measured": v, "memory_budget_mb": b,
                           "threshold": TARGET_RSS_MB,
                           "pass": None if v is None else (v <= TARGET_RSS_MB and b == DEFAULT_BUDGET_MB)}
    tpp = {r["case"]: r["wall_s"] / r["pixels"] * 1e9 for r in records.values()
           if r["case"].startswith("synthetic_") and "_w" not in r["case"]}
    cw = {r["case"]: (r["stage_timings_s"] or {}).get("compute_write", float("nan")) / r["pixels"] * 1e9
          for r in records.values() if r["case"] in tpp}
    if len(tpp) >= 2:
        import statistics

        med = statistics.median(tpp.values())
        dev = {k: round(v / med - 1, 3) for k, v in tpp.items()}
        worst = max(abs(d) for d in dev.values())
        have = sorted(int(k.split("_")[1]) for k in tpp)
        t["time_per_pixel_constant"] = {
            "target": f"wall time per pixel within +-{TARGET_TPP_TOL:.0%} from 2048^2 to 32768^2 "
                      "(here: each size vs the median of the sizes measured)",
            "ns_per_px": {k: round(v, 1) for k, v in tpp.items()},
            "compute_write_ns_per_px": {k: round(v, 1) for k, v in cw.items()},
            "deviation_from_median": dev, "measured": round(worst, 3), "threshold": TARGET_TPP_TOL,
            "max_over_min": round(max(tpp.values()) / min(tpp.values()), 3), "sizes": have,
            "complete": have[0] <= 2048 and have[-1] >= 32768,
            "pass": worst <= TARGET_TPP_TOL}
    else:
        t["time_per_pixel_constant"] = {"target": "wall time per pixel within +-20% from 2048^2 to 32768^2",
                                        "measured": None, "pass": None}
    z = records.get("zonal_4x2000")
    t["zonal_speedup"] = {"target": f"4 rasters x 2,000 polygons >= {TARGET_ZONAL_SPEEDUP}x exactextract once per "
                                    f"raster, sums equal to {TARGET_ZONAL_REL} relative",
                          "measured": z.get("speedup") if z else None,
                          "max_rel_diff": z.get("max_rel_diff") if z else None,
                          "threshold": TARGET_ZONAL_SPEEDUP, "pass": z.get("target_met") if z else None}
    # at SCALING_SIZE; failing that, the largest size measured with 1 and 2 workers (marked partial)
    pairs = sorted(int(c.split("_")[1]) for c in records if c.startswith("synthetic_") and c.endswith("_w1")
                   and c[:-1] + "2" in records)
    size = SCALING_SIZE if SCALING_SIZE in pairs else (pairs[-1] if pairs else SCALING_SIZE)
    w1, w2 = records.get(f"synthetic_{size}_w1"), records.get(f"synthetic_{size}_w2")
    sp = round(_slowest(w1) / _slowest(w2), 3) if w1 and w2 else None
    t["worker_speedup"] = {"target": f"2 workers >= {TARGET_WORKER_SPEEDUP}x the throughput of 1 worker at "
                                     f"{SCALING_SIZE}^2", "measured": sp, "threshold": TARGET_WORKER_SPEEDUP,
                           "size": size, "complete": size == SCALING_SIZE,
                           "chunks": [w1.get("chunk_size"), w2.get("chunk_size")] if w1 and w2 else None,
                           "compute_write_speedup": round(w1["stage_timings_s"]["compute_write"]
                                                          / w2["stage_timings_s"]["compute_write"], 3)
                           if w1 and w2 and "compute_write" in (w1.get("stage_timings_s") or {})
                           and "compute_write" in (w2.get("stage_timings_s") or {}) else None,
                           "pass": None if sp is None else sp >= TARGET_WORKER_SPEEDUP}
    return t


def print_table(records: list[dict], targets: dict) -> None:
    hdr = (f"{'case':22s} {'Mpx':>8s} {'wall s':>8s} {'Mpx/s':>7s} {'ns/px':>7s} {'RSS MB':>7s} {'IO s':>8s} "
           f"{'x IO':>6s} {'chunk':>6s} {'layout':>6s} {'thr':>3s} {'cpu/s':>5s} {'outs':>4s}  dominant stage")
    print(hdr)
    print("-" * len(hdr))
    for r in records:
        io = f"{r['io_baseline_s']:8.2f}" if r.get("io_baseline_s") is not None else f"{'-':>8s}"
        ratio = f"{r['ratio_to_io']:6.2f}" if r.get("ratio_to_io") is not None else f"{'-':>6s}"
        st = r.get("stage_timings_s") or {}
        dom = r.get("dominant_stage") or (max(st, key=st.get) if st else "")
        dom_s = f"{dom} {st[dom]:.1f} s ({st[dom] / r['wall_s']:.0%})" if dom in st else ""
        if r["case"].startswith("zonal"):
            dom_s = f"exactextract {r['exactextract_s']:.1f} s -> {r['speedup']:.1f}x, rel diff {r['max_rel_diff']:.1e}"
        print(f"{r['case']:22s} {r['pixels'] / 1e6:8.1f} {r['wall_s']:8.2f} {r['mpx_per_s']:7.2f} "
              f"{r.get('ns_per_px', r['wall_s'] / r['pixels'] * 1e9):7.0f} {r['peak_rss_mb']:7.0f} {io} {ratio} "
              f"{str(r.get('chunk_size') or '-'):>6s} {str(r.get('layout') or '-'):>6s} "
              f"{str(r.get('threads') or '-'):>3s} {r.get('cpu_utilization') or '-':>5} "
              f"{str(r.get('n_outputs') or '-'):>4s}  {dom_s}")
    print()
    print("targets:")
    for k, v in targets.items():
        status = {True: "PASS", False: "FAIL", None: "not measured"}[v.get("pass")]
        if v.get("complete") is False and v.get("pass") is not None:
            status += " (partial)"
        m = v.get("measured")
        extra = ""
        if k == "time_per_pixel_constant" and m is not None:
            extra = " (ns/px " + ", ".join(f"{c.split('_')[1]}: {x:.0f}" for c, x in v["ns_per_px"].items()) + \
                    f"; max/min {v['max_over_min']:.2f}" + ("" if v.get("complete") else "; sizes incomplete") + ")"
        if k == "worker_speedup" and m is not None:
            extra = (f" (at {v['size']}^2; compute_write stage {v['compute_write_speedup']}x; "
                     f"chunks {v['chunks']})")
        if k == "zonal_speedup" and m is not None:
            extra = f" (max rel diff {v['max_rel_diff']:.1e})"
        if k == "peak_rss_32768" and m is not None:
            extra = f" (budget {v.get('memory_budget_mb')} MB)"
        mtxt = "-" if m is None else (f"{m:.3g}" if isinstance(m, float) else str(m))
        print(f"  {status:14s} {k:24s} measured {mtxt:>8s}  threshold {v.get('threshold')}{extra}  [{v['target']}]")


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child_main(sys.argv[2], sys.argv[3])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--cases", default=None,
                    help="comma-separated cases (default: all); e.g. sample,s2048,s8192,s16384_w1,zonal; "
                         f"'quick' = {QUICK}; 'synthetic' = s<size> for every --sizes; 'all' = every case")
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                    help="synthetic sizes of the default case list (and of 'synthetic' in --cases)")
    ap.add_argument("--zonal-size", type=int, default=8192, help="grid side of the zonal benchmark")
    ap.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    ap.add_argument("--fresh", action="store_true", help="do not keep the records of other cases in --out")
    ap.add_argument("--no-reuse", action="store_true",
                    help=f"measure s{SCALING_SIZE}_w2 even when s{SCALING_SIZE} ran with 2 threads")
    ap.add_argument("--workdir", type=Path, default=DATA / "_work", help="scratch folder of the runs")
    ap.add_argument("--keep", action="store_true", help="keep the runs' outputs in --workdir")
    ap.add_argument("--repeat", type=int, default=None,
                    help=f"(engine, IO baseline) pairs per raster case; default {RATIO_REPEATS} for the sizes of the "
                         f"ratio target ({', '.join(map(str, RATIO_SIZES))}) and 1 for the others")
    a = ap.parse_args(argv)

    from gep_raster.config import default_shared_data

    sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    expand = {"quick": QUICK.split(","), "synthetic": [f"s{s}" for s in sizes], "all": default_cases(sizes)}
    tokens = []
    for t in (a.cases or "all").split(","):
        for x in expand.get(t.strip(), [t.strip()]):
            if x and x not in tokens:
                tokens.append(x)
    cases = [parse_case(t) for t in tokens]
    shared = default_shared_data()
    real_cfg = {"sample": REPO / "pipelines/sample.yaml", "gura": REPO / "pipelines/gura.yaml",
                "willamette": REPO / "pipelines/willamette.yaml"}
    real_data = {"gura": shared / "invest_gura_kenya", "willamette": shared / "invest_willamette_oregon"}

    old = {}
    if a.out.exists() and not a.fresh:
        try:
            old = {r["case"]: r for r in json.loads(a.out.read_text()).get("records", [])}
        except (OSError, ValueError, KeyError):
            old = {}
    git = _git()
    new: dict[str, dict] = {}
    failures = []
    log(f"cases: {', '.join(case_name(c) for c in cases)}")
    for i, c in enumerate(cases, 1):
        name = case_name(c)
        log(f"--- case {i}/{len(cases)}: {name}")
        t0 = time.perf_counter()
        try:
            if c[0] == "real":
                if c[1] in real_data and not real_data[c[1]].is_dir():
                    log(f"{name}: skipped ({real_data[c[1]]} not found; set GEP_SHARED_DATA)")
                    continue
                rec = raster_case(name, real_cfg[c[1]], a.workdir, keep=a.keep, repeats=a.repeat or 1)
            elif c[0] == "zonal":
                rec = zonal_case(a.workdir, a.zonal_size)
            else:
                size, workers = c[1], c[2]
                base = new.get(f"synthetic_{size}")
                if workers and base and not a.no_reuse and base.get("threads") == workers:
                    rec = {**base, "case": name, "workers_arg": workers, "reused_from": base["case"]}
                    log(f"{name}: same configuration as {base['case']} ({workers} threads): record reused")
                else:
                    cfg = ensure_synthetic(size)
                    reps = a.repeat or (RATIO_REPEATS if size in RATIO_SIZES and not workers else 1)
                    rec = raster_case(name, cfg, a.workdir, workers=workers, keep=a.keep, repeats=reps)
        except Exception as exc:  # noqa: BLE001 - one failed case must not lose the others
            log(f"{name}: FAILED: {exc}")
            failures.append({"case": name, "error": str(exc)[-2000:]})
            continue
        rec.update(measured_at=time.strftime("%Y-%m-%dT%H:%M:%S"), case_seconds=round(time.perf_counter() - t0, 1),
                   git=git)
        new[name] = rec
        log(f"{name}: done in {rec['case_seconds']:.0f} s")
    for c in list(new):  # throughput of 2 workers / 1 worker, on both records of each size measured so
        if c.startswith("synthetic_") and c.endswith("_w1") and c[:-1] + "2" in new:
            w1, w2 = new[c], new[c[:-1] + "2"]
            w2["speedup"] = w1["speedup"] = round(_slowest(w1) / _slowest(w2), 3)

    merged = {**old, **new}
    def sort_key(r):
        c = parse_case(r["case"])
        if c[0] == "real":
            return (0, ["sample", "gura", "willamette"].index(c[1]), 0)
        if c[0] == "synthetic":
            return (1 if not c[2] else 2, c[1], c[2] or 0)
        return (3, 0, 0)

    records = sorted(merged.values(), key=sort_key)
    targets = summarize({r["case"]: r for r in records})
    import platform

    import psutil

    meta = {"machine": {"cpus": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
                        "platform": platform.platform()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "git": git,
            "cases_this_invocation": list(new), "kept_from_earlier": sorted(set(old) - set(new)),
            "failures": failures}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(a.out.name + ".tmp")
    tmp.write_text(json.dumps({"meta": meta, "records": records, "targets": targets}, indent=2, default=str))
    os.replace(tmp, a.out)
    print_table(records, targets)
    if meta["kept_from_earlier"]:
        print(f"(records kept from earlier invocations: {', '.join(meta['kept_from_earlier'])}; --fresh drops them)")
    print(f"written {a.out}")
    if failures:
        print(f"FAILED cases: {', '.join(f['case'] for f in failures)} (see bench/results/logs/)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
