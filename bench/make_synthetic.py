"""Scalable synthetic tile set for benchmarks: land cover + DEM tiles, 1 km climate, township polygons.

``python bench/make_synthetic.py --size 8192 --tile 4096 --out bench/data/s8192`` writes

* ``land_cover/lc_<r>_<c>.tif`` (uint8, 12 classes of sample_tiles/legend.csv, nodata 255) and
  ``dem/dem_<r>_<c>.tif`` (float32 m, nodata -9999): tiles of ``--tile`` pixels, 30 m, EPSG:32650,
  DEFLATE + predictor, 512 px blocks. Every value is a closed-form function of the pixel position
  (sums of sinusoids with seeded phases), so tiles are seamless and a tile is generated without its
  neighbours, in bounded memory, for any size;
* ``climate/precip_annual.tif`` and ``climate/et_annual.tif`` on a coarse 1 km grid (mm/a);
* ``polygons/townships.gpkg`` (``--townships`` Voronoi cells clipped to the extent, ids ``T00001``...)
  and ``polygons/county.gpkg`` (the extent);
* ``run.yaml``: a run configuration of the four services using the sample legend.

Nothing here is real data; it exists to measure speed and memory.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RES = 30.0
X0, Y0 = 500000.0, 3500000.0
CRS = "EPSG:32650"


def _waves(seed: int, n: int, wl_min: float, wl_max: float):
    rng = np.random.default_rng(seed)
    wl = np.exp(rng.uniform(np.log(wl_min), np.log(wl_max), n))  # wavelengths in pixels
    ang = rng.uniform(0, np.pi, n)
    ph = rng.uniform(0, 2 * np.pi, n)
    amp = wl / wl.max()
    return [(2 * np.pi / w * math.cos(a), 2 * np.pi / w * math.sin(a), p, m) for w, a, p, m in zip(wl, ang, ph, amp)]


def _field(waves, r0, c0, h, w):
    rr = np.arange(r0, r0 + h, dtype=np.float64)[:, None]
    cc = np.arange(c0, c0 + w, dtype=np.float64)[None, :]
    out = np.zeros((h, w), np.float64)
    for kx, ky, ph, amp in waves:
        out += amp * np.sin(kx * cc + ky * rr + ph)
    return out


def tile_arrays(r0, c0, h, w):
    """DEM (float32, m) and land cover (uint8) of a window, closed-form in the pixel position."""
    relief = _field(_waves(1, 10, 80, 3000), r0, c0, h, w)
    rough = _field(_waves(2, 6, 8, 60), r0, c0, h, w)
    dem = 600 + 220 * relief + 12 * rough
    mix = _field(_waves(3, 6, 30, 600), r0, c0, h, w)
    lc = np.full((h, w), 1, np.uint8)  # broadleaf forest
    lc[mix > 0.4] = 2
    lc[(mix < -0.4)] = 3
    lc[(mix > 1.2)] = 4
    lc[dem > 1000] = 5
    lc[dem > 1150] = 6
    lc[(dem < 380) & (mix > -0.2)] = 7
    lc[(dem < 380) & (mix <= -0.2)] = 8
    lc[(dem >= 380) & (dem < 430) & (mix > 0.8)] = 9
    lc[dem < 250] = 10
    lc[(dem < 330) & (np.abs(rough) > 1.4)] = 11
    lc[(dem > 1250) & (rough > 1.2)] = 12
    return dem.astype(np.float32), lc


def write_tile(path, array, r0, c0, nodata):
    import rasterio
    from affine import Affine

    t = Affine(RES, 0, X0 + c0 * RES, 0, -RES, Y0 - r0 * RES)
    with rasterio.open(path, "w", driver="GTiff", width=array.shape[1], height=array.shape[0], count=1,
                       dtype=array.dtype, crs=CRS, transform=t, nodata=nodata, tiled=True, blockxsize=512,
                       blockysize=512, compress="DEFLATE", predictor=3 if array.dtype.kind == "f" else 2,
                       num_threads="ALL_CPUS", BIGTIFF="IF_SAFER") as ds:
        ds.write(array, 1)


def make(size: int, tile: int, out: Path, townships: int) -> Path:
    import geopandas as gpd
    import rasterio
    import shapely
    from affine import Affine

    out.mkdir(parents=True, exist_ok=True)
    for sub in ("land_cover", "dem", "climate", "polygons"):
        (out / sub).mkdir(exist_ok=True)
    for r0 in range(0, size, tile):
        for c0 in range(0, size, tile):
            h, w = min(tile, size - r0), min(tile, size - c0)
            lcp = out / f"land_cover/lc_{r0 // tile:03d}_{c0 // tile:03d}.tif"
            dmp = out / f"dem/dem_{r0 // tile:03d}_{c0 // tile:03d}.tif"
            if lcp.exists() and dmp.exists():
                continue
            dem, lc = tile_arrays(r0, c0, h, w)
            write_tile(dmp, dem, r0, c0, -9999.0)
            write_tile(lcp, lc, r0, c0, 255)
    # climate on a 1 km grid with a 1 km margin
    n = int(math.ceil(size * RES / 1000)) + 2
    rr, cc = np.mgrid[0:n, 0:n]
    p = (1500 + 300 * np.sin(rr / 7.0) * np.cos(cc / 9.0)).astype(np.float32)
    et = (800 + 80 * np.cos(rr / 5.0)).astype(np.float32)
    t = Affine(1000, 0, X0 - 1000, 0, -1000, Y0 + 1000)
    for name, arr in (("precip_annual", p), ("et_annual", et)):
        with rasterio.open(out / f"climate/{name}.tif", "w", driver="GTiff", width=n, height=n, count=1,
                           dtype="float32", crs=CRS, transform=t, nodata=-9999.0) as ds:
            ds.write(arr, 1)
    # townships: Voronoi cells of seeded points, clipped to the extent; county = extent
    ext = shapely.box(X0, Y0 - size * RES, X0 + size * RES, Y0)
    rng = np.random.default_rng(7)
    pts = shapely.points(rng.uniform(X0, X0 + size * RES, townships), rng.uniform(Y0 - size * RES, Y0, townships))
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=ext))
    cells = [shapely.intersection(c, ext) for c in cells]
    gpd.GeoDataFrame({"town_id": [f"T{i:05d}" for i in range(len(cells))],
                      "town_name": [f"township {i}" for i in range(len(cells))]},
                     geometry=cells, crs=CRS).to_file(out / "polygons/townships.gpkg")
    gpd.GeoDataFrame({"county_id": ["C1"], "county_name": ["synthetic county"]}, geometry=[ext],
                     crs=CRS).to_file(out / "polygons/county.gpkg")
    cfg = out / "run.yaml"
    cfg.write_text(f"""name: synthetic_{size}
inputs:
  land_cover: {{path: land_cover/}}
  dem: {{path: dem/}}
  precipitation: {{path: climate/precip_annual.tif}}
  et: {{path: climate/et_annual.tif}}
  carbon: {{method: rates}}
legend: {{path: {REPO / 'sample_tiles/legend.csv'}, code_column: code}}
layers:
  county: {{path: polygons/county.gpkg, id_field: county_id, name_field: county_name}}
  township: {{path: polygons/townships.gpkg, id_field: town_id, name_field: town_name, nests_in: county}}
output: {{dir: out, chunk_size: 2048}}
""")
    return cfg


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--tile", type=int, default=2048)
    ap.add_argument("--townships", type=int, default=200)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    print(make(a.size, a.tile, a.out, a.townships))


if __name__ == "__main__":
    main()
