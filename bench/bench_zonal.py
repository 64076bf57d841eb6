"""Benchmark (not a test): zonal sums of 4 rasters over 2,000 polygons, ours vs exactextract.

Synthetic data, all in memory: four float32 rasters of ``--size``² pixels (30 m, EPSG:32650;
gamma-distributed values, 1 % NaN = nodata in the last one) and ``--polygons`` Voronoi polygons
(``shapely.voronoi_polygons`` of seeded uniform random points, clipped to the grid extent).

(a) exactextract: ``exact_extract(NumPyRasterSource(raster), polygons, "sum")`` once per raster, on
    the in-memory numpy arrays (``exactextract.raster.NumPyRasterSource``, no GeoTIFF, no I/O).
(b) gep_raster: ``CoverageIndex.build`` once, then ``accumulate`` of the 4 rasters stacked block by
    block (``--block``² windows; each block is copied into a contiguous (4, h, w) array, as a
    reader would deliver it, and the copy is timed).

Prints both times, the speed-up, the maximum relative difference of the sums (over polygons and
rasters, polygons with a zero sum excluded), the index's memory and the peak RSS
(``resource.getrusage``) after data creation, after (b) and after (a). numba compilation is done
on a tiny layer before timing (the kernels are cached on disk anyway).

Usage::

    .venv/bin/python bench/bench_zonal.py [--size 8192] [--polygons 2000] [--block 2048]
                                          [--engine native|exactextract] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def rss_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_data(size: int, n_polygons: int, seed: int):
    import geopandas as gpd
    import shapely
    from affine import Affine
    from rasterio.crs import CRS

    from gep_raster.grid import RefGrid

    res, left, top = 30.0, 400_000.0, 3_500_000.0
    grid = RefGrid(CRS.from_epsg(32650), Affine(res, 0, left, 0, -res, top), size, size)
    extent = shapely.box(*grid.bounds)
    rng = np.random.default_rng(seed)
    l, b, r, t = grid.bounds
    pts = shapely.multipoints(np.c_[rng.uniform(l, r, n_polygons), rng.uniform(b, t, n_polygons)])
    cells = np.asarray(shapely.voronoi_polygons(pts, extend_to=extent).geoms)
    polys = gpd.GeoDataFrame({"id": np.arange(len(cells))},
                             geometry=shapely.intersection(cells, extent), crs="EPSG:32650")
    rasters = []
    for k in range(4):  # float32 throughout, row chunk by row chunk (small temporaries)
        a = np.empty((size, size), np.float32)
        for r0 in range(0, size, 1024):
            blk = rng.standard_gamma(2.0, size=(min(1024, size - r0), size), dtype=np.float32)
            blk *= np.float32(10.0 * (k + 1))
            if k == 3:
                blk[rng.random(blk.shape, dtype=np.float32) < 0.01] = np.nan
            a[r0:r0 + blk.shape[0]] = blk
        rasters.append(a)
    return grid, polys, rasters


def warm_up(engine: str) -> None:
    """Compile the numba kernels on a tiny layer (outside the timings)."""
    import geopandas as gpd
    import shapely
    from affine import Affine
    from rasterio.crs import CRS

    from gep_raster.grid import RefGrid
    from gep_raster.accounts.zonal import CoverageIndex

    g = RefGrid(CRS.from_epsg(32650), Affine(30.0, 0, 0.0, 0, -30.0, 960.0), 32, 32)
    lay = gpd.GeoDataFrame(geometry=[shapely.Point(480, 480).buffer(300.0),
                                     shapely.box(0, 0, 500, 500)], crs="EPSG:32650")
    ci = CoverageIndex.build(lay, g, layer_name="warm", engine=engine)
    ci.accumulate(np.ones((4, 32, 32), np.float32), 0, 0, np.zeros((2, 4)), np.zeros(2))
    ci.entries(0, 32, 0, 32)


def run_ours(grid, polys, rasters, block: int, engine: str):
    from gep_raster.accounts.zonal import CoverageIndex

    t0 = time.perf_counter()
    ci = CoverageIndex.build(polys, grid, layer_name="voronoi", engine=engine)
    t_build = time.perf_counter() - t0
    out = np.zeros((ci.n_polygons, len(rasters)))
    t_copy = 0.0
    t0 = time.perf_counter()
    for r0, r1, c0, c1 in grid.block_windows(block):
        t1 = time.perf_counter()
        stack = np.empty((len(rasters), r1 - r0, c1 - c0), np.float32)
        for k, a in enumerate(rasters):
            stack[k] = a[r0:r1, c0:c1]
        t_copy += time.perf_counter() - t1
        ci.accumulate(stack, r0, c0, out)
    t_acc = time.perf_counter() - t0
    return ci, out, t_build, t_acc, t_copy


def run_exactextract(grid, polys, rasters):
    from exactextract import exact_extract
    from exactextract.raster import NumPyRasterSource

    l, b, r, t = grid.bounds
    wkt = grid.crs.to_wkt()
    sums, times = [], []
    for a in rasters:
        t0 = time.perf_counter()
        src = NumPyRasterSource(a, l, b, r, t, srs_wkt=wkt)
        df = exact_extract(src, polys, "sum", output="pandas")
        times.append(time.perf_counter() - t0)
        sums.append(df["sum"].to_numpy(dtype=np.float64))
    return np.stack(sums, axis=1), times


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192, help="grid width = height (pixels)")
    ap.add_argument("--polygons", type=int, default=2000, help="number of Voronoi seed points")
    ap.add_argument("--block", type=int, default=2048, help="accumulation block size (pixels)")
    ap.add_argument("--engine", default="native", choices=("native", "exactextract"),
                    help="CoverageIndex engine for the boundary cells")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    import exactextract

    warm_up(args.engine)
    t0 = time.perf_counter()
    grid, polys, rasters = make_data(args.size, args.polygons, args.seed)
    t_data = time.perf_counter() - t0
    rss_data = rss_mb()

    ci, ours, t_build, t_acc, t_copy = run_ours(grid, polys, rasters, args.block, args.engine)
    rss_ours = rss_mb()
    ref, t_ee = run_exactextract(grid, polys, rasters)
    rss_ee = rss_mb()

    nz = ref != 0
    rel = np.abs(ours[nz] - ref[nz]) / np.abs(ref[nz])
    t_ours = t_build + t_acc
    res = {
        "size": args.size, "polygons": int(ci.n_polygons), "rasters": len(rasters),
        "block": args.block, "engine": args.engine,
        "exactextract_version": getattr(exactextract, "__version__", "?"),
        "exactextract_input": "in-memory numpy arrays (exactextract.raster.NumPyRasterSource)",
        "data_s": round(t_data, 3),
        "exactextract_s": round(sum(t_ee), 3),
        "exactextract_per_raster_s": [round(x, 3) for x in t_ee],
        "ours_build_s": round(t_build, 3), "ours_accumulate_s": round(t_acc, 3),
        "ours_block_copy_s": round(t_copy, 3),
        "ours_s": round(t_ours, 3), "speedup": round(sum(t_ee) / t_ours, 2),
        "max_rel_diff": float(rel.max()), "n_compared": int(nz.sum()),
        "n_entries": ci.n_entries, "n_runs": ci.n_runs, "n_partial": ci.n_partial,
        "index_mb": round(ci.nbytes / 2**20, 2),
        "explicit_entries_mb": round(20 * ci.n_entries / 2**20, 1),
        "peak_rss_mb_after_data": round(rss_data, 1), "peak_rss_mb_after_ours": round(rss_ours, 1),
        "peak_rss_mb_after_exactextract": round(rss_ee, 1),
    }
    print(f"grid {args.size}x{args.size} (30 m, EPSG:32650), {ci.n_polygons} Voronoi polygons, "
          f"{len(rasters)} float32 rasters (data {t_data:.1f} s)")
    print(f"(a) exactextract {res['exactextract_version']} 'sum', once per raster, "
          f"in-memory NumPyRasterSource: {sum(t_ee):.2f} s  "
          f"({', '.join(f'{x:.2f}' for x in t_ee)})")
    print(f"(b) CoverageIndex [{args.engine}]: build {t_build:.2f} s + accumulate 4 rasters in "
          f"{args.block}² blocks {t_acc:.2f} s (of which block copies {t_copy:.2f} s) "
          f"= {t_ours:.2f} s")
    print(f"speed-up (a)/(b): {res['speedup']:.1f}x")
    print(f"max relative difference of the sums: {res['max_rel_diff']:.2e} "
          f"({res['n_compared']} polygon x raster sums)")
    print(f"index: {ci.n_entries:,} covered (polygon, cell) pairs stored as {ci.n_runs:,} runs "
          f"(16 B) + {ci.n_partial:,} partial cells (12 B) = {res['index_mb']} MiB "
          f"(explicit 20-byte entries: {res['explicit_entries_mb']} MiB)")
    print(f"peak RSS: {rss_data:.0f} MB after data, {rss_ours:.0f} MB after (b), "
          f"{rss_ee:.0f} MB after (a)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
