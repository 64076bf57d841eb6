"""Bench of ``gep serve``'s parcel query on a large run: 20 queries of a 10 km² parcel on a 16384² grid.

Builds (once, reused when present) a synthetic run folder: a 16384 × 16384 grid of 10 m pixels in EPSG:32650
(163.84 km × 163.84 km, 26,844 km²), five single-band float32 COGs (GDAL's COG driver, ZSTD, 512-px tiles, NaN
nodata; a smooth field plus a little noise, a NaN corner) -- ``gep_r_yuan``, two service values and two physical
quantities -- and a minimal ``manifest.json`` that :func:`gep_raster.analysis.change.load_run` accepts. Then times
20 queries of a 10 km² parcel (an irregular 12-gon, a new position each time, so no query reuses another's cache)
through :func:`gep_raster.serve.parcel.parcel_account` and through the HTTP API (``POST /api/parcel`` with
``fastapi.testclient.TestClient``), prints the medians and writes ``bench/results/parcel.json``.

Usage::

    .venv/bin/python bench/bench_parcel.py [--dir /tmp/gep_bench_parcel] [--size 16384] [--queries 20]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
KEYS = [("water_conservation_m3", "water_conservation", "physical", "m3/a per pixel"),
        ("water_conservation_yuan", "water_conservation", "value", "yuan/a per pixel"),
        ("carbon_sequestration_tco2", "carbon_sequestration", "physical", "t CO2/a per pixel"),
        ("carbon_sequestration_yuan", "carbon_sequestration", "value", "yuan/a per pixel"),
        ("gep_r_yuan", "gep_r", "gep_r", "yuan/a per pixel")]
PIXEL = 10.0
X0, Y0 = 400000.0, 3300000.0
CRS = "EPSG:32650"


def _field(r0: int, h: int, size: int, seed: int) -> np.ndarray:
    """Rows r0:r0+h of a smooth positive float32 field (sines of two wavelengths, a little noise), NaN in a
    corner triangle."""
    rng = np.random.default_rng(seed * 100003 + r0)
    y = np.arange(r0, r0 + h, dtype=np.float64)[:, None]
    x = np.arange(size, dtype=np.float64)[None, :]
    v = (50.0 + 20.0 * np.sin(x / (700.0 + 37 * seed)) * np.cos(y / 900.0)
         + 10.0 * np.sin((x + 2 * y) / 150.0) + rng.normal(0.0, 0.5, (h, size)))
    v = v.astype(np.float32)
    v[(x + y) < size * 0.05] = np.nan
    return v


def build_run(folder: Path, size: int) -> Path:
    """Write the synthetic run folder (skipped when its manifest exists for the same size)."""
    import rasterio
    from affine import Affine
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy as rio_copy

    man = folder / "manifest.json"
    if man.is_file() and json.loads(man.read_text()).get("grid", {}).get("width") == size:
        return folder
    (folder / "rasters" / "value").mkdir(parents=True, exist_ok=True)
    (folder / "rasters" / "physical").mkdir(parents=True, exist_ok=True)
    transform = Affine(PIXEL, 0.0, X0, 0.0, -PIXEL, Y0)
    outputs = []
    for j, (key, service, kind, unit) in enumerate(KEYS):
        rel = (f"rasters/{key}.tif" if kind == "gep_r" else f"rasters/{'value' if kind == 'value' else 'physical'}/"
               f"{key}.tif")
        t0 = time.perf_counter()
        prof = dict(driver="GTiff", width=size, height=size, count=1, dtype="float32", crs=CRS, transform=transform,
                    nodata=float("nan"), tiled=True, blockxsize=512, blockysize=512)
        with MemoryFile() as mem:
            with mem.open(**prof) as ds:
                for r0 in range(0, size, 512):
                    h = min(512, size - r0)
                    ds.write(_field(r0, h, size, j) * np.float32(1 + j), 1,
                             window=rasterio.windows.Window(0, r0, size, h))
            with mem.open() as src:
                rio_copy(src, folder / rel, driver="COG", COMPRESS="ZSTD", LEVEL=1, PREDICTOR="YES", BLOCKSIZE=512,
                         OVERVIEWS="NONE", NUM_THREADS="ALL_CPUS")
        print(f"  wrote {rel} in {time.perf_counter() - t0:.1f} s", flush=True)
        outputs.append({"path": rel, "service": service, "kind": kind, "unit": unit,
                        "description": f"synthetic {key} (bench)"})
    manifest = {"run_name": "bench16k", "accounting_year": 2024, "description": "synthetic bench run",
                "grid": {"crs": CRS, "transform": list(transform)[:6], "width": size, "height": size,
                         "res": [PIXEL, PIXEL], "geographic": False},
                "outputs": outputs, "config": {"layers": {}}}
    man.write_text(json.dumps(manifest, indent=1))
    return folder


def parcel(i: int, size: int, area_km2: float = 10.0):
    """An irregular 12-gon of ``area_km2`` (lon/lat GeoJSON) at the i-th position of a spiral over the grid."""
    import shapely
    from pyproj import Transformer

    rng = np.random.default_rng(i)
    ext = size * PIXEL
    cx = X0 + ext * (0.3 + 0.4 * ((i * 0.618) % 1.0))
    cy = Y0 - ext * (0.3 + 0.4 * ((i * 0.382) % 1.0))
    ang = np.sort(rng.uniform(0, 2 * np.pi, 12))
    rad = rng.uniform(0.8, 1.2, 12)
    poly = shapely.Polygon(np.column_stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)]))
    poly = shapely.affinity.scale(poly, *(2 * [np.sqrt(area_km2 * 1e6 / poly.area)]), origin=(cx, cy))
    tr = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    ring = [list(tr.transform(x, y)) for x, y in poly.exterior.coords]
    return {"type": "Polygon", "coordinates": [ring]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/gep_bench_parcel", help="run folder to build / reuse")
    ap.add_argument("--size", type=int, default=16384, help="grid side, px")
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--out", default=str(HERE / "results" / "parcel.json"))
    a = ap.parse_args(argv)
    sys.path.insert(0, str(HERE.parent))
    from fastapi.testclient import TestClient

    from gep_raster.analysis.change import load_run
    from gep_raster.serve import create_app
    from gep_raster.serve.parcel import parcel_account

    t0 = time.perf_counter()
    folder = build_run(Path(a.dir), a.size)
    build_s = time.perf_counter() - t0
    print(f"run folder {folder} ready in {build_s:.1f} s")
    run = load_run(folder)
    parcel_account(run, parcel(10_000, a.size))  # warm-up: imports, numba kernels (cached on disk)
    direct, areas, windows = [], [], []
    for i in range(a.queries):
        g = parcel(i, a.size)
        t = time.perf_counter()
        acc = parcel_account(run, g)
        direct.append(time.perf_counter() - t)
        areas.append(acc["parcel"]["area_km2"])
        windows.append(acc["parcel"]["window"]["height"] * acc["parcel"]["window"]["width"])
    client = TestClient(create_app([folder]))
    client.post("/api/parcel", json={"run": "0", "geometry": parcel(10_001, a.size)})
    http = []
    for i in range(a.queries):
        g = parcel(100 + i, a.size)
        t = time.perf_counter()
        r = client.post("/api/parcel", json={"run": "0", "geometry": g})
        http.append(time.perf_counter() - t)
        if r.status_code != 200:
            raise SystemExit(f"HTTP {r.status_code}: {r.text}")
    res = {
        "bench": "parcel query (gep serve)", "grid": f"{a.size}x{a.size} px of {PIXEL:g} m, {CRS}",
        "rasters": [k for k, *_ in KEYS], "parcel_area_km2_median": statistics.median(areas),
        "window_px_median": statistics.median(windows), "queries": a.queries,
        "parcel_account_s": {"median": statistics.median(direct), "min": min(direct), "max": max(direct)},
        "http_api_s": {"median": statistics.median(http), "min": min(http), "max": max(http)},
        "build_run_s": build_s,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"{a.queries} queries of a {res['parcel_area_km2_median']:.2f} km2 parcel on {res['grid']} "
          f"(window {res['window_px_median']:.0f} px): parcel_account median {res['parcel_account_s']['median']:.3f} s, "
          f"HTTP API median {res['http_api_s']['median']:.3f} s -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
