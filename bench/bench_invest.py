"""Peer benchmark (not a test): InVEST 3.20.2 against ``gep run`` doing the same work on the same inputs.

``python bench/bench_invest.py [--sizes 2000,4000] [--repeats 3] [--peer /path/to/peer/venv]``

Work: Carbon (stock change between two land covers), Annual Water Yield and SDR's RUSLE part with D8 routing,
in one process each: InVEST runs the three models one after the other (``bench/invest_runner.py``, arguments as
in ``bench/crosscheck_invest.py``), ``gep run`` computes ``carbon_sequestration`` (``stock_change``),
``water_conservation`` (``invest_awy``) and ``soil_retention`` (``ls_method: invest_3_20``, ``routing: d8``, the
InVEST stream threshold) with its default chunking and memory budget; the other services of gep_raster are off.
Each engine starts in a fresh process with an empty workspace (InVEST's taskgraph and gep_raster's resume would
otherwise skip the work); numba's on-disk cache is warm (a first gep run outside the timings), as it is for a
user after the first run.

Inputs (``--work``, default ``bench/data/invest_peer/s<size>``): the closed-form synthetic terrain of
``bench/make_synthetic.py`` (rounded to 0.5 m, with dug pits, a flat basin and a nodata hole, as the SDR
cross-check), its 12-class land cover and a future land cover (forest classes 1-2 turned to cropland 7 in one band
of rows), smooth synthetic R, K, annual precipitation and ET0 fields, constant root-restricting depth 1000 mm and
PAWC 0.2; one biophysical table (USLE C, P and Kc from ``sample_tiles/legend.csv``; root depth, vegetation flag and
the four carbon pools synthetic). All of it is synthetic: it measures speed and memory, not numbers.

Measured per run: process wall time (``time.perf_counter`` around the child process, import included) and peak
RSS of the child (``ru_maxrss`` of the waited-for children of a one-run wrapper). Runs alternate (InVEST, gep;
then gep, InVEST; ...), ``--repeats`` pairs per size. Writes ``bench/results/invest.json``: every run (case,
engine, pixels, wall_s, peak_rss_mb), and per size the medians and the median of the per-pair ratios
InVEST wall / gep wall.

The peer: ``PEER_VENV=/path bash ../shared/tools/invest-peer/setup.sh`` (natcap.invest 3.20.2 from its sdist,
about 5 minutes); found from ``--peer``, ``$INVEST_PEER_VENV`` or ``../invest-venv``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.crosscheck_invest import (NODATA, SDR_THRESHOLD, find_peer, prepare_synthetic, smooth,  # noqa: E402
                                     write)

#: wraps one child process: prints its wall time and the peak RSS of the children it waited for
_WRAPPER = (
    "import json, resource, subprocess, sys, time\n"
    "t0 = time.perf_counter()\n"
    "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "wall = time.perf_counter() - t0\n"
    "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0\n"
    "print(json.dumps({'rc': p.returncode, 'wall_s': wall, 'peak_rss_mb': rss, 'stderr': p.stderr[-3000:]}))\n")

#: synthetic per-class values of the classes of sample_tiles/legend.csv (codes 1-12): root depth (mm), vegetated
#: (InVEST LULC_veg) and carbon pools (Mg C/ha: above, below, soil, dead); invented for the benchmark
_ROOT_DEPTH = {1: 5000, 2: 5000, 3: 4000, 4: 3000, 5: 2000, 6: 1500, 7: 1200, 8: 1000, 9: 500, 10: 300, 11: 200,
               12: 300}
_NOT_VEG = {9, 10, 11, 12}


def prepare(n: int, d: Path) -> dict:
    """Every input of the three models on one n x n grid (written once; reused when ``inputs.json`` exists)."""
    import pandas as pd
    import rasterio

    marker = d / "inputs.json"
    if marker.exists():
        return json.loads(marker.read_text())
    case = prepare_synthetic(n, d)  # dem, lulc, erosivity, erodibility, watershed, biophysical (usle_c, usle_p)
    with rasterio.open(d / "lulc.tif") as ds:
        lc = ds.read(1)
        t, crs = ds.transform, ds.crs
    bad = lc == 255
    alt = lc.copy()
    band = slice(n // 3, n // 3 + n // 10)
    alt[band][np.isin(alt[band], (1, 2))] = 7
    write(d / "lulc_alt.tif", alt, t, crs, 255)
    for name, lo, hi, seed in (("precip", 900.0, 1900.0, 11), ("eto", 700.0, 1200.0, 12)):
        a = smooth((n, n), seed, lo, hi)
        a[bad] = NODATA
        write(d / f"{name}.tif", a, t, crs, NODATA)
    write(d / "depth.tif", np.where(bad, NODATA, 1000.0).astype(np.float32), t, crs, NODATA)
    write(d / "pawc.tif", np.where(bad, NODATA, 0.2).astype(np.float32), t, crs, NODATA)
    leg = pd.read_csv(REPO / "sample_tiles" / "legend.csv")
    codes = leg["code"].astype(int)
    bio = pd.DataFrame({
        "lucode": codes, "usle_c": leg["usle_c"], "usle_p": leg["usle_p"], "Kc": leg["kc"],
        "root_depth": [_ROOT_DEPTH[c] for c in codes], "LULC_veg": [0 if c in _NOT_VEG else 1 for c in codes],
        "C_above": [120.0 if c <= 2 else 40.0 if c <= 6 else 5.0 for c in codes],
        "C_below": [30.0 if c <= 2 else 10.0 if c <= 6 else 2.0 for c in codes],
        "C_soil": [90.0 if c <= 6 else 50.0 for c in codes],
        "C_dead": [12.0 if c <= 2 else 3.0 for c in codes]})
    bio.to_csv(d / "biophysical.csv", index=False)
    out = {"dir": str(d.resolve()), "pixels": int(n * n), "size": n, "legend": str(case["legend"])}
    marker.write_text(json.dumps(out))
    return out


def invest_spec(case: dict, ws: Path) -> dict:
    """The three InVEST models' arguments (workspaces below ``ws``)."""
    d = Path(case["dir"])
    common = {"results_suffix": "", "n_workers": -1}
    return {"models": [
        {"model": "carbon", "args": {**common, "workspace_dir": str(ws / "carbon"),
                                     "lulc_bas_path": str(d / "lulc.tif"), "lulc_alt_path": str(d / "lulc_alt.tif"),
                                     "carbon_pools_path": str(d / "biophysical.csv"), "calc_sequestration": True,
                                     "lulc_bas_year": 2020, "lulc_alt_year": 2030, "do_valuation": False}},
        {"model": "annual_water_yield", "args": {
            **common, "workspace_dir": str(ws / "awy"), "lulc_path": str(d / "lulc.tif"),
            "depth_to_root_rest_layer_path": str(d / "depth.tif"), "precipitation_path": str(d / "precip.tif"),
            "pawc_path": str(d / "pawc.tif"), "eto_path": str(d / "eto.tif"),
            "watersheds_path": str(d / "watershed.gpkg"), "biophysical_table_path": str(d / "biophysical.csv"),
            "seasonality_constant": 5}},
        {"model": "sdr", "args": {
            **common, "workspace_dir": str(ws / "sdr"), "dem_path": str(d / "dem.tif"),
            "erosivity_path": str(d / "erosivity.tif"), "erodibility_path": str(d / "erodibility.tif"),
            "lulc_path": str(d / "lulc.tif"), "watersheds_path": str(d / "watershed.gpkg"),
            "biophysical_table_path": str(d / "biophysical.csv"), "threshold_flow_accumulation": SDR_THRESHOLD,
            "k_param": 2, "sdr_max": 0.8, "ic_0_param": 0.5, "l_max": 122, "flow_dir_algorithm": "d8"}},
    ]}


def gep_yaml(case: dict, out: Path) -> str:
    """The gep_raster run doing the same three computations."""
    d = Path(case["dir"])
    return f"""name: bench_invest_{case['size']}
accounting_year: 2020
inputs:
  land_cover: {{path: {d / 'lulc.tif'}}}
  dem: {{path: {d / 'dem.tif'}}}
  r_factor: {{path: {d / 'erosivity.tif'}}}
  k_factor: {{path: {d / 'erodibility.tif'}}}
  precipitation: {{path: {d / 'precip.tif'}}}
  et0: {{path: {d / 'eto.tif'}}}
  carbon:
    method: stock_change
    pools_table: {d / 'biophysical.csv'}
    code_column: lucode
    pool_columns: [C_above, C_below, C_soil, C_dead]
    alternate_land_cover: {{path: {d / 'lulc_alt.tif'}}}
    years: 10
legend:
  path: {case['legend']}
  code_column: code
  join:
    - {{path: {d / 'biophysical.csv'}, code_column: lucode, columns: {{root_depth: root_depth, lulc_veg: LULC_veg}}}}
services:
  water_conservation: {{method: invest_awy, seasonality_z: 5, depth_to_root_restricting_layer: {{path: {d / 'depth.tif'}}},
                       pawc: {{path: {d / 'pawc.tif'}}}}}
  soil_retention: {{ls_method: invest_3_20, routing: d8, threshold_flow_accumulation: {SDR_THRESHOLD}, l_max: 122,
                   slope_length_cap: false, exclude_ecosystems: []}}
  carbon_sequestration: {{negative_values: keep}}
  air_purification: {{enabled: false}}
output: {{dir: {out}, report: 'off'}}  # InVEST writes no report: the same work without it
"""


def timed(cmd: list[str]) -> dict:
    """Run ``cmd`` in a fresh wrapper process; its wall time (s) and peak RSS (MB)."""
    p = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True, check=True)
    rec = json.loads(p.stdout.strip().splitlines()[-1])
    if rec["rc"]:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed:\n{rec['stderr']}")
    return rec


def run_invest(peer: Path, case: dict, work: Path) -> dict:
    ws = work / "invest_ws"
    shutil.rmtree(ws, ignore_errors=True)
    ws.mkdir(parents=True)
    spec = work / "invest_args.json"
    spec.write_text(json.dumps(invest_spec(case, ws)))
    return timed([str(peer), str(REPO / "bench" / "invest_runner.py"), str(spec)])


def run_gep(case: dict, work: Path) -> dict:
    out = work / "gep_out"
    shutil.rmtree(out, ignore_errors=True)
    cfg = work / "gep.yaml"
    cfg.write_text(gep_yaml(case, out))
    return timed([str(Path(sys.executable).parent / "gep"), "run", str(cfg), "-q", "--force"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="2000,4000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer", default=None)
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "data" / "invest_peer")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "invest.json")
    args = ap.parse_args(argv)
    peer = find_peer(args.peer)
    if peer is None:
        print("InVEST peer not found: build it with PEER_VENV=/path bash ../shared/tools/invest-peer/setup.sh and "
              "give --peer /path or set INVEST_PEER_VENV", file=sys.stderr)
        return 2
    runs, summary = [], {}
    for n in (int(s) for s in args.sizes.split(",")):
        work = args.work / f"s{n}"
        t0 = time.perf_counter()
        case = prepare(n, work)
        print(f"{n}²: inputs ready ({time.perf_counter() - t0:.1f} s)", flush=True)
        run_gep(case, work)  # numba cache warm-up, outside the timings
        pairs = []
        for rep in range(args.repeats):
            order = ("invest", "gep") if rep % 2 == 0 else ("gep", "invest")
            rec = {}
            for engine in order:
                r = run_invest(peer, case, work) if engine == "invest" else run_gep(case, work)
                rec[engine] = r
                runs.append({"case": f"s{n}", "engine": engine, "repeat": rep, "pixels": case["pixels"],
                             "wall_s": round(r["wall_s"], 3), "peak_rss_mb": round(r["peak_rss_mb"], 1)})
                print(f"{n}² {engine:6s} rep {rep}: {r['wall_s']:.2f} s, {r['peak_rss_mb']:.0f} MB", flush=True)
            pairs.append(rec["invest"]["wall_s"] / rec["gep"]["wall_s"])
        inv = [r for r in runs if r["case"] == f"s{n}" and r["engine"] == "invest"]
        gep = [r for r in runs if r["case"] == f"s{n}" and r["engine"] == "gep"]
        summary[f"s{n}"] = {
            "pixels": case["pixels"], "repeats": args.repeats,
            "invest_wall_s_median": statistics.median(r["wall_s"] for r in inv),
            "gep_wall_s_median": statistics.median(r["wall_s"] for r in gep),
            "ratio_median": round(statistics.median(pairs), 2), "ratios": [round(x, 2) for x in pairs],
            "invest_peak_rss_mb_median": statistics.median(r["peak_rss_mb"] for r in inv),
            "gep_peak_rss_mb_median": statistics.median(r["peak_rss_mb"] for r in gep)}
        print(json.dumps(summary[f"s{n}"]), flush=True)
    import platform

    import gep_raster

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "what": "InVEST 3.20.2 (Carbon + AWY + SDR D8, one process) vs gep run (same three services)",
        "gep_raster_version": gep_raster.__version__, "machine": platform.platform(),
        "cpu_count": __import__("os").cpu_count(), "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": runs, "summary": summary}, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
