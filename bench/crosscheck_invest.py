"""Cross-check gep_raster's InVEST-compatible methods against InVEST 3.20.2 itself, on identical inputs.

``python bench/crosscheck_invest.py [--cases sdr500,sdr2000,gura] [--peer /path/to/peer/venv]`` prepares each
case's inputs on one grid (written once to ``--work``, default ``bench/data/crosscheck``), runs InVEST in the
peer's Python (``bench/invest_runner.py``) and ``gep run`` in this one, and compares the rasters pixel by pixel:

* SDR (``ls_method: invest_3_20``, ``slope_length_cap: false``, ``exclude_ecosystems: []``,
  ``threshold_flow_accumulation`` as InVEST), routing ``d8`` and ``mfd``: pit-filled DEM, slope, flow
  accumulation, stream, ``ls.tif``, ``rkls.tif``, ``usle.tif``, ``avoided_erosion.tif``.
  Cases: ``sdr500`` and ``sdr2000`` (the closed-form terrain of ``bench/make_synthetic.py``, rounded to 0.5 m
  so that it has flats, with 40 dug pits, a flat-floored basin and a nodata hole), ``gura`` (the real Gura DEM,
  integer metres, with the real land cover and biophysical table; R from the CHELSA annual rainfall by Renard
  & Freimund 1994 and a K field, both synthetic but identical for both engines);
* ``carbon`` (Willamette current/future land cover and pools, InVEST Carbon ``c_change_bas_alt``) and ``awy``
  (Gura land cover, CHELSA annual P, annual ET0, constant depth and PAWC rasters, Z = 5; InVEST AWY
  ``wyield.tif``): the per-pixel agreement that must stay at float32 precision.

A pixel agrees when ``|ours − InVEST| ≤ 1e-4·|InVEST|`` (or both ≤ 1e-9); the statistics are over pixels valid in
both, and the pixels valid in only one are counted. Writes ``bench/results/invest_crosscheck.json`` and prints a
Markdown table (copied into docs/invest_methods.md).

The peer: ``PEER_VENV=/path bash ../shared/tools/invest-peer/setup.sh`` (natcap.invest 3.20.2 from its sdist, about
5 minutes); found from ``--peer``, ``$INVEST_PEER_VENV`` or ``../invest-venv``.
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TOL = 1e-4
NODATA = -9999.0
SDR_THRESHOLD = 1000  # cells (InVEST SDR sample runs use 1000)
SDR_CASES = ("sdr500", "sdr2000", "gura")
ALL_CASES = SDR_CASES + ("carbon", "awy")


def shared_data() -> Path:
    return Path(os.environ.get("GEP_SHARED_DATA", REPO.parent / "shared" / "data"))


def find_peer(arg: str | None) -> Path | None:
    for cand in (arg, os.environ.get("INVEST_PEER_VENV"), str(REPO.parent / "invest-venv")):
        if cand and (Path(cand) / "bin" / "python").exists():
            return Path(cand) / "bin" / "python"
    return None


# --------------------------------------------------------------------------------------
# input preparation (every raster of a case on one grid, one shared nodata mask)
# --------------------------------------------------------------------------------------
def write(path: Path, arr: np.ndarray, transform, crs, nodata):
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0], count=1,
                       dtype=arr.dtype, crs=crs, transform=transform, nodata=nodata, tiled=True, blockxsize=256,
                       blockysize=256, compress="deflate") as ds:
        ds.write(arr, 1)


def write_box(path: Path, transform, shape, crs):
    import geopandas as gpd
    import shapely

    h, w = shape
    x0, y1 = transform.c, transform.f
    box = shapely.box(x0, y1 + h * transform.e, x0 + w * transform.a, y1)
    gpd.GeoDataFrame({"ws_id": [1]}, geometry=[box], crs=crs).to_file(path)


def smooth(shape, seed, lo, hi):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    rng = np.random.default_rng(seed)
    f = np.zeros(shape)
    for _ in range(4):
        kx, ky, ph = rng.uniform(0.002, 0.02), rng.uniform(0.002, 0.02), rng.uniform(0, 6.3)
        f += np.sin(kx * xx + ky * yy + ph)
    f = (f - f.min()) / (np.ptp(f) or 1)
    return (lo + (hi - lo) * f).astype(np.float32)


def prepare_synthetic(n: int, d: Path) -> dict:
    from affine import Affine

    from bench.make_synthetic import CRS, RES, X0, Y0, tile_arrays

    dem, lc = tile_arrays(0, 0, n, n)
    dem = np.round(dem * 2.0) / 2.0  # 0.5 m steps: flats on gentle ground
    rng = np.random.default_rng(n)
    for r, c in rng.integers(5, n - 5, size=(40, 2)):  # dug pits
        dem[r - 1:r + 2, c - 1:c + 2] -= rng.uniform(1, 6)
    b0, b1 = n // 5, n // 5 + n // 12
    dem[b0:b1, b0:b1] = np.minimum(dem[b0:b1, b0:b1], float(dem[b0:b1, b0:b1].min()))  # a flat-floored basin
    yy, xx = np.mgrid[0:n, 0:n]
    hole = (yy - 0.6 * n) ** 2 + (xx - 0.7 * n) ** 2 < (0.04 * n) ** 2  # a nodata hole (a masked lake)
    dem = dem.astype(np.float32)
    dem[hole] = np.nan
    r_fac = smooth((n, n), 1, 2000.0, 6000.0)
    k_fac = smooth((n, n), 2, 0.015, 0.045)
    t = Affine(RES, 0, X0, 0, -RES, Y0)
    legend = REPO / "sample_tiles" / "legend.csv"
    import pandas as pd

    leg = pd.read_csv(legend)
    bio = pd.DataFrame({"lucode": leg["code"], "usle_c": leg["usle_c"], "usle_p": leg["usle_p"]})
    return finish_sdr(d, dem, lc.astype(np.uint8), r_fac, k_fac, t, CRS, bio, legend, "code", join=False)


def prepare_gura(d: Path) -> dict:
    import pandas as pd
    import rasterio
    from rasterio.warp import Resampling, reproject

    from gep_raster.kernels.soil import r_factor_from_annual_precip_kernel

    g = shared_data() / "invest_gura_kenya"
    with rasterio.open(g / "DEM_gura.tif") as ds:
        raw = ds.read(1)
        dem = np.where(raw == ds.nodata, np.nan, raw).astype(np.float32)
        t, crs = ds.transform, ds.crs
    with rasterio.open(g / "land_use_gura_float.tif") as ds:
        lcf = ds.read(1)
        lc = np.where(lcf < -1e30, 255, lcf).astype(np.uint8)
    p = np.empty(dem.shape, np.float32)
    with rasterio.open(g / "derived" / "precip_annual_gura_chelsa_sum.tif") as ds:
        reproject(ds.read(1), p, src_transform=ds.transform, src_crs=ds.crs, dst_transform=t, dst_crs=crs,
                  resampling=Resampling.nearest, src_nodata=ds.nodata, dst_nodata=np.nan)
    r_fac = r_factor_from_annual_precip_kernel(p)
    k_fac = smooth(dem.shape, 3, 0.02, 0.04)
    bio = pd.read_csv(g / "tables" / "biophysical_table_gura.csv")[["lucode", "usle_c", "usle_p"]]
    return finish_sdr(d, dem, lc, r_fac, k_fac, t, crs, bio, REPO / "pipelines" / "legends" / "gura_legend.csv",
                      "lucode", join=True)


def finish_sdr(d, dem, lc, r_fac, k_fac, t, crs, bio, legend, code_col, *, join):
    """Apply one nodata mask to every input (InVEST masks all inputs by their mutual mask), write them."""
    d.mkdir(parents=True, exist_ok=True)
    bad = ~np.isfinite(dem) | (lc == 255) | ~np.isfinite(r_fac) | ~np.isfinite(k_fac)
    for a in (dem, r_fac, k_fac):
        a[bad] = NODATA
    lc = lc.copy()
    lc[bad] = 255
    write(d / "dem.tif", dem, t, crs, NODATA)
    write(d / "lulc.tif", lc, t, crs, 255)
    write(d / "erosivity.tif", r_fac, t, crs, NODATA)
    write(d / "erodibility.tif", k_fac, t, crs, NODATA)
    write_box(d / "watershed.gpkg", t, dem.shape, crs)
    bio.to_csv(d / "biophysical.csv", index=False)
    return {"dir": d, "legend": legend, "code_column": code_col, "join": join, "cell": abs(t.a),
            "shape": dem.shape}


def prepare_carbon(d: Path) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    w = shared_data() / "invest_willamette_oregon"
    return {"dir": d, "bas": w / "lulc_current_willamette.tif", "alt": w / "lulc_future_willamette.tif",
            "pools": w / "tables" / "carbon_pools_willamette.csv", "legend": REPO / "pipelines" / "legends" /
            "willamette_legend.csv", "years": 50}


def prepare_awy(d: Path) -> dict:
    import rasterio
    from rasterio.warp import Resampling, reproject

    d.mkdir(parents=True, exist_ok=True)
    g = shared_data() / "invest_gura_kenya"
    with rasterio.open(g / "land_use_gura_float.tif") as ds:
        lcf = ds.read(1)
        t, crs = ds.transform, ds.crs
    lc = np.where(lcf < -1e30, 255, lcf).astype(np.uint8)
    out = {}
    for key, name in (("precip", "precip_annual_gura_chelsa_sum.tif"), ("eto", "et0_annual_gura_sum.tif")):
        a = np.empty(lc.shape, np.float32)
        with rasterio.open(g / "derived" / name) as ds:
            reproject(ds.read(1), a, src_transform=ds.transform, src_crs=ds.crs, dst_transform=t, dst_crs=crs,
                      resampling=Resampling.nearest, src_nodata=ds.nodata, dst_nodata=np.nan)
        out[key] = a
    bad = (lc == 255) | ~np.isfinite(out["precip"]) | ~np.isfinite(out["eto"])
    lc[bad] = 255
    for key, a in out.items():
        a[bad] = NODATA
        write(d / f"{key}.tif", a, t, crs, NODATA)
    write(d / "lulc.tif", lc, t, crs, 255)
    write(d / "depth.tif", np.where(bad, NODATA, 1000.0).astype(np.float32), t, crs, NODATA)
    write(d / "pawc.tif", np.where(bad, NODATA, 0.2).astype(np.float32), t, crs, NODATA)
    write_box(d / "watershed.gpkg", t, lc.shape, crs)
    import pandas as pd

    bio = pd.read_csv(g / "tables" / "biophysical_table_gura.csv")[["lucode", "root_depth", "Kc", "LULC_veg"]]
    bio.rename(columns={"Kc": "kc", "LULC_veg": "lulc_veg"}).to_csv(d / "biophysical.csv", index=False)
    return {"dir": d, "cell": abs(t.a)}


# --------------------------------------------------------------------------------------
# the two engines
# --------------------------------------------------------------------------------------
def run_invest(peer: Path, model: str, args: dict, ws: Path) -> float:
    shutil.rmtree(ws, ignore_errors=True)  # a rerun in the same workspace would be a taskgraph cache hit
    ws.mkdir(parents=True)
    args = {"workspace_dir": str(ws), "results_suffix": "", "n_workers": -1, **args}
    spec = ws.parent / f"{ws.name}.args.json"
    spec.write_text(json.dumps({"model": model, "args": args}, default=str))
    t0 = time.perf_counter()
    proc = subprocess.run([str(peer), str(REPO / "bench" / "invest_runner.py"), str(spec)], capture_output=True,
                          text=True)
    if proc.returncode:
        raise RuntimeError(f"InVEST {model} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def run_gep(yaml_text: str, folder: Path, out: Path) -> float:
    from gep_raster.config import load_config
    from gep_raster.pipeline import run

    shutil.rmtree(out, ignore_errors=True)
    cfg_path = folder / f"{out.name}.yaml"
    cfg_path.write_text(yaml_text)
    t0 = time.perf_counter()
    run(load_config(cfg_path), progress=False)
    return time.perf_counter() - t0


def sdr_yaml(case: dict, routing: str, out: Path) -> str:
    join = ("  join:\n    - {path: biophysical.csv, code_column: lucode, columns: {usle_c: usle_c, usle_p: usle_p}}\n"
            if case["join"] else "")
    return f"""name: crosscheck_sdr
accounting_year: 2020
inputs:
  land_cover: {{path: lulc.tif}}
  dem: {{path: dem.tif}}
  r_factor: {{path: erosivity.tif}}
  k_factor: {{path: erodibility.tif}}
legend:
  path: {case['legend']}
  code_column: {case['code_column']}
{join}services:
  water_conservation: {{enabled: false}}
  carbon_sequestration: {{enabled: false}}
  air_purification: {{enabled: false}}
  soil_retention: {{ls_method: invest_3_20, routing: {routing}, threshold_flow_accumulation: {SDR_THRESHOLD},
                   l_max: 122, slope_length_cap: false, exclude_ecosystems: []}}
output: {{dir: {out}, chunk_size: 512}}
"""


# --------------------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------------------
def read(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as ds:
        a = ds.read(1).astype(np.float64)
        nd = ds.nodata
    if nd is not None and not np.isnan(nd):
        a[np.isclose(a, nd, rtol=1e-6, atol=0)] = np.nan
    return a


def agreement(ours: np.ndarray, ref: np.ndarray) -> dict:
    vo, vr = np.isfinite(ours), np.isfinite(ref)
    both = vo & vr
    a, b = ours[both], ref[both]
    err = np.abs(a - b)
    rel = np.where(np.abs(b) > 1e-9, err / np.maximum(np.abs(b), 1e-300), np.where(err <= 1e-9, 0.0, np.inf))
    n = int(both.sum())
    return {"valid_both": n, "only_ours": int((vo & ~vr).sum()), "only_invest": int((vr & ~vo).sum()),
            "within_tol": float((rel <= TOL).mean()) if n else None,
            "max_rel": float(rel.max()) if n else None,
            "p999_rel": float(np.quantile(rel, 0.999)) if n else None,
            "sum_ratio": float(a.sum() / b.sum()) if n and b.sum() else None}


def compare_sdr(case: dict, routing: str, ws: Path, gep: Path) -> dict:
    inter = gep / "rasters" / "intermediate"
    ha = case["cell"] ** 2 / 1e4
    routed = sorted((gep / ".gep_state" / "routing").glob("routing-*.tif"))
    import rasterio

    with rasterio.open(routed[0]) as ds:
        bands = {n: ds.read(i + 1).astype(np.float64) for i, n in enumerate(json.loads(
            routed[0].with_suffix(".json").read_text())["bands"])}
    io = ws / "intermediate_outputs"
    return {
        "pit_filled_dem": agreement(bands["filled_dem"], read(io / "pit_filled_dem.tif")),
        "flow_accumulation": agreement(bands["upslope"], read(io / "flow_accumulation.tif")),
        "stream": agreement(bands["stream"], read(ws / "stream.tif")),
        "ls": agreement(read(inter / "ls_factor.tif"), read(io / "ls.tif")),
        "rkls": agreement(read(inter / "potential_erosion.tif"), read(ws / "rkls.tif")),
        "usle": agreement(read(inter / "actual_erosion.tif"), read(ws / "usle.tif")),
        "avoided_erosion": agreement(read(gep / "rasters" / "physical" / "soil_retention_t.tif") / ha,
                                     read(ws / "avoided_erosion.tif")),
    }


def do_sdr(name: str, peer: Path, work: Path) -> dict:
    d = work / name
    case = prepare_gura(d) if name == "gura" else prepare_synthetic(int(name[3:]), d)
    res = {"pixels": int(np.prod(case["shape"])), "routing": {}}
    for routing in ("d8", "mfd"):
        ws = d / f"invest_{routing}"
        t_inv = run_invest(peer, "sdr", {
            "dem_path": d / "dem.tif", "erosivity_path": d / "erosivity.tif", "erodibility_path": d / "erodibility.tif",
            "lulc_path": d / "lulc.tif", "watersheds_path": d / "watershed.gpkg",
            "biophysical_table_path": d / "biophysical.csv", "threshold_flow_accumulation": SDR_THRESHOLD,
            "k_param": 2, "sdr_max": 0.8, "ic_0_param": 0.5, "l_max": 122, "flow_dir_algorithm": routing}, ws)
        out = d / f"gep_{routing}"
        t_gep = run_gep(sdr_yaml(case, routing, out), d, out)
        res["routing"][routing] = {"invest_wall_s": round(t_inv, 2), "gep_wall_s": round(t_gep, 2),
                                   "rasters": compare_sdr(case, routing, ws, out)}
    return res


def do_carbon(peer: Path, work: Path) -> dict:
    case = prepare_carbon(work / "carbon")
    d = case["dir"]
    ws = d / "invest"
    t_inv = run_invest(peer, "carbon", {
        "lulc_bas_path": case["bas"], "lulc_alt_path": case["alt"], "carbon_pools_path": case["pools"],
        "calc_sequestration": True, "lulc_bas_year": 2000, "lulc_alt_year": 2000 + case["years"],
        "do_valuation": False}, ws)
    out = d / "gep"
    t_gep = run_gep(f"""name: crosscheck_carbon
accounting_year: 2020
inputs:
  land_cover: {{path: {case['bas']}}}
  carbon:
    method: stock_change
    pools_table: {case['pools']}
    code_column: lucode
    pool_columns: [C_above, C_below, C_soil, C_dead]
    alternate_land_cover: {{path: {case['alt']}}}
    years: {case['years']}
legend: {{path: {case['legend']}, code_column: lucode}}
services:
  water_conservation: {{enabled: false}}
  soil_retention: {{enabled: false}}
  air_purification: {{enabled: false}}
  carbon_sequestration: {{negative_values: keep}}
output: {{dir: {out}, chunk_size: 1024}}
""", d, out)
    import rasterio

    with rasterio.open(case["bas"]) as ds:
        ha = abs(ds.transform.a * ds.transform.e) / 1e4
    ours = read(out / "rasters" / "physical" / "carbon_sequestration_tco2.tif") * case["years"] * 12.0 / 44.0 / ha
    return {"invest_wall_s": round(t_inv, 2), "gep_wall_s": round(t_gep, 2),
            "rasters": {"c_change_bas_alt": agreement(ours, read(ws / "c_change_bas_alt.tif"))}}


def do_awy(peer: Path, work: Path) -> dict:
    case = prepare_awy(work / "awy")
    d = case["dir"]
    ws = d / "invest"
    t_inv = run_invest(peer, "annual_water_yield", {
        "lulc_path": d / "lulc.tif", "depth_to_root_rest_layer_path": d / "depth.tif",
        "precipitation_path": d / "precip.tif", "pawc_path": d / "pawc.tif", "eto_path": d / "eto.tif",
        "watersheds_path": d / "watershed.gpkg", "biophysical_table_path": d / "biophysical.csv",
        "seasonality_constant": 5}, ws)
    out = d / "gep"
    legend = REPO / "pipelines" / "legends" / "gura_legend.csv"
    t_gep = run_gep(f"""name: crosscheck_awy
accounting_year: 2020
inputs:
  land_cover: {{path: lulc.tif}}
  precipitation: {{path: precip.tif}}
  et0: {{path: eto.tif}}
legend:
  path: {legend}
  code_column: lucode
  join:
    - {{path: biophysical.csv, code_column: lucode, columns: {{kc: kc, root_depth: root_depth, lulc_veg: lulc_veg}}}}
services:
  water_conservation: {{method: invest_awy, seasonality_z: 5, depth_to_root_restricting_layer: {{path: depth.tif}},
                       pawc: {{path: pawc.tif}}}}
  soil_retention: {{enabled: false}}
  carbon_sequestration: {{enabled: false}}
  air_purification: {{enabled: false}}
output: {{dir: {out}, chunk_size: 512}}
""", d, out)
    mm = read(out / "rasters" / "physical" / "water_conservation_m3.tif") / (case["cell"] ** 2) * 1000.0
    return {"invest_wall_s": round(t_inv, 2), "gep_wall_s": round(t_gep, 2),
            "rasters": {"wyield": agreement(mm, read(ws / "output" / "per_pixel" / "wyield.tif"))}}


def table(results: dict) -> str:
    rows = ["| case | routing | raster | pixels valid in both | within 1e-4 | max rel. diff | only gep / only InVEST | "
            "sum ratio |", "|---|---|---|---|---|---|---|---|"]

    def fmt(name, routing, r, a):
        w = "-" if a["within_tol"] is None else f"{100 * a['within_tol']:.3f} %"
        m = "-" if a["max_rel"] is None else f"{a['max_rel']:.1e}"
        s = "-" if a["sum_ratio"] is None else f"{a['sum_ratio']:.7f}"
        rows.append(f"| {name} | {routing} | {r} | {a['valid_both']:,} | {w} | {m} | {a['only_ours']} / "
                    f"{a['only_invest']} | {s} |")

    for name, res in results["cases"].items():
        if "routing" in res:
            for routing, rr in res["routing"].items():
                for r, a in rr["rasters"].items():
                    fmt(name, routing, r, a)
        else:
            for r, a in res["rasters"].items():
                fmt(name, "-", r, a)
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=",".join(ALL_CASES), help=f"comma-separated subset of {ALL_CASES}")
    ap.add_argument("--peer", help="InVEST peer virtualenv (default $INVEST_PEER_VENV or ../invest-venv)")
    ap.add_argument("--work", default=str(REPO / "bench" / "data" / "crosscheck"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "invest_crosscheck.json"))
    a = ap.parse_args(argv)
    peer = find_peer(a.peer)
    if peer is None:
        print("no InVEST peer found: build it with PEER_VENV=/path bash ../shared/tools/invest-peer/setup.sh and "
              "pass --peer /path (or set INVEST_PEER_VENV)", file=sys.stderr)
        return 2
    work = Path(a.work)
    results = {"invest": subprocess.run([str(peer), "-c", "import natcap.invest as n; print(n.__version__)"],
                                        capture_output=True, text=True).stdout.strip(),
               "tolerance": TOL, "threshold_flow_accumulation": SDR_THRESHOLD, "cases": {}}
    for name in [c for c in a.cases.split(",") if c]:
        if name not in ALL_CASES:
            raise SystemExit(f"unknown case {name!r}; choose from {ALL_CASES}")
        print(f"== {name}", flush=True)
        if name in SDR_CASES:
            results["cases"][name] = do_sdr(name, peer, work)
        elif name == "carbon":
            results["cases"][name] = do_carbon(peer, work)
        else:
            results["cases"][name] = do_awy(peer, work)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
