"""``gep warmup``: compile every numba kernel once, so that the first real run does not pay for it.

The kernels are ``@njit(cache=True)``: compiled at their first call for the argument types of that call, then
loaded from numba's cache (:mod:`gep_raster.numba_cache` says where). A fresh install therefore spends its first
run compiling (25-50 s on the sample, most of it the zonal engine). :func:`warmup` runs the whole pipeline once on
a tiny synthetic county written to a temporary folder (160 x 192 px in 2 x 2 blocks of 128 px: full and partial
blocks, so the kernels whose argument layout depends on the block shape see both): the same input types as the
embedded sample (uint8 land-cover tiles, float32 DEM tiles, 12 monthly float32 precipitation rasters on a coarser
grid, an NEP raster in EPSG:4326, townships nested in a county, overlapping and sub-pixel special units) and every
regulating service enabled, so each kernel is compiled for the argument types a run gives it and stored.

Run it once after installing (for example in the image build of a container); it is harmless to repeat (a warm
cache makes it take a few seconds).
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional

from . import numba_cache

__all__ = ["warmup", "register"]

log = logging.getLogger("gep_raster")

_H, _W, _RES = 160, 192, 30.0
_X0, _Y1 = 600000.0, 3130000.0
_CRS = "EPSG:32650"

# the classes of the sample's legend (sample_tiles/legend.csv + pipelines/legends/sample_extra.csv), values only
_LEGEND = """code,name,ecosystem,runoff_coef,usle_c,usle_p,kc,carbon_tco2_ha,so2_kg_ha,nox_kg_ha,dust_kg_ha,storm_runoff_coef,cod_kg_ha,nh3n_kg_ha,tp_kg_ha
1,evergreen broadleaf forest,forest,0.0267,0.006,1,1,9,88.65,6,10110,0.15,0,0,0
2,evergreen needleleaf forest,forest,0.0302,0.006,1,1,8,215.6,6,33200,0.15,0,0,0
5,shrub,shrub,0.0426,0.05,1,0.9,3,92.1,5,11400,0.25,0,0,0
6,grassland,grassland,0.0937,0.08,1,0.85,1.5,20,3,1000,0.35,0,0,0
7,paddy,cropland,0.1,0.15,0.15,1.1,1,45,2,1000,0.5,0,0,0
10,water,water,0,0,1,1.05,0,0,0,0,0.0,600,40,6
11,built-up,urban,0.6,0,1,0.2,0,0,0,0,0.85,0,0,0
"""

_CONFIG = """\
name: warmup
description: gep warmup, tiny synthetic county (compiles the numba kernels)
accounting_year: 2024
reference: land_cover
inputs:
  land_cover: {path: lc/}
  dem: {path: dem/*.tif}
  precipitation: {monthly: climate/precip_monthly_*.tif}
  et: {path: climate/et_annual.tif}
  carbon: {method: nep, path: nep_tc_ha.tif, unit: t_c_per_ha}
legend: {path: legend.csv, code_column: code}
services:
  water_conservation: {negative_values: clip}
  soil_retention: {exclude_ecosystems: [water, urban]}
  carbon_sequestration: {negative_values: keep}
  air_purification: {pollutants: [so2, nox, dust]}
  oxygen_release: {enabled: true}
  water_purification: {enabled: true, pollutants: [cod, nh3n, tp]}
  climate_regulation: {enabled: true, hot_days: 75}
  flood_regulation: {enabled: true, vegetation_storm: true, storm_precip_mm: 400}
  pest_control: {enabled: true}
  sand_fixation:
    enabled: true
    wind_speed: {path: wind/wind_speed_daily_10m.tif}
    air_temperature_c: 16.0
    soil:
      sand: {path: wind/sand.tif}
      silt: {path: wind/silt.tif}
      clay: {path: wind/clay.tif}
      organic_matter: {path: wind/om.tif}
    fvc: {path: wind/fvc.tif}
layers:
  county: {path: county.gpkg, id_field: county_code, name_field: county_name}
  township: {path: townships.gpkg, id_field: town_code, name_field: town_name, nests_in: county}
  special_units: {path: special_units.gpkg, id_field: unit_id, name_field: unit_name, role: special_unit}
output: {dir: out, chunk_size: 128, report: "off"}
processing: {workers: 1}
"""


def _write_raster(path: Path, array, transform, crs=_CRS, nodata=None) -> None:
    import rasterio

    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=array.shape[1], height=array.shape[0], count=1,
                       dtype=array.dtype, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(array, 1)


def _landscape():
    """Deterministic DEM (a valley with a river and a pit), land cover and fields of the tiny county."""
    import numpy as np

    yy, xx = np.mgrid[0:_H, 0:_W].astype(np.float64)
    valley = np.abs(yy - _H / 2 - 8 * np.sin(xx / 15.0))
    dem = 200 + 6.0 * valley + 0.8 * xx + 20 * np.sin(xx / 9.0) * np.cos(yy / 11.0)
    dem[60:63, 30:33] -= 25.0                                  # a pit: depression filling has work to do
    dem = dem.astype(np.float32)
    lc = np.full((_H, _W), 1, np.uint8)
    lc[dem > 330] = 2
    lc[(dem > 290) & (dem <= 330)] = 5
    lc[(valley < 12) & (lc == 1)] = 7
    lc[valley < 2.5] = 10
    lc[:10, :16] = 11
    lc[80:, 100:] = 6
    lc[0, 0] = 255                                             # a nodata pixel
    return dem, lc


def _write_inputs(folder: Path) -> Path:
    """The rasters, polygons, legend and config of the synthetic county in ``folder``; returns the config."""
    import geopandas as gpd
    import numpy as np
    import shapely
    from affine import Affine

    dem, lc = _landscape()
    half_h, half_w = _H // 2, _W // 2
    for r in range(2):                                         # 2 x 2 abutting tiles, as the sample
        for c in range(2):
            t = Affine(_RES, 0, _X0 + c * half_w * _RES, 0, -_RES, _Y1 - r * half_h * _RES)
            win = (slice(r * half_h, (r + 1) * half_h), slice(c * half_w, (c + 1) * half_w))
            _write_raster(folder / "lc" / f"lc_r{r}_c{c}.tif", lc[win], t, nodata=255)
            _write_raster(folder / "dem" / f"dem_r{r}_c{c}.tif", dem[win], t, nodata=-9999.0)
    # climate on an unaligned 300 m grid with a margin (bilinear onto the 30 m grid)
    ch, cw, cres = 18, 21, 300.0
    ct = Affine(cres, 0, _X0 - 437.0, 0, -cres, _Y1 + 437.0)
    cy, cx = np.mgrid[0:ch, 0:cw]
    season = np.array([40, 60, 110, 170, 220, 300, 210, 180, 100, 60, 50, 35], np.float64)
    for m in range(12):
        p = (season[m] * (1 + 0.01 * cx + 0.005 * cy)).astype(np.float32)
        _write_raster(folder / "climate" / f"precip_monthly_{m + 1:02d}.tif", p, ct, nodata=-9999.0)
    _write_raster(folder / "climate" / "et_annual.tif", (780 + 3.0 * cy).astype(np.float32), ct, nodata=-9999.0)
    # RWEQ inputs of sand fixation: 366 daily 10-m wind speeds (2024 is a leap year) and topsoil on the climate
    # grid, FVC on the 30 m grid
    import rasterio

    wind = (4.0 + 3.0 * np.sin(np.arange(366) / 9.0)[:, None, None] + 0.05 * cx[None]).astype(np.float32)
    (folder / "wind").mkdir(parents=True, exist_ok=True)
    with rasterio.open(folder / "wind" / "wind_speed_daily_10m.tif", "w", driver="GTiff", width=cw, height=ch,
                       count=366, dtype="float32", crs=_CRS, transform=ct, nodata=-9999.0) as ds:
        ds.write(wind)
    for name, v in (("sand", 45.0), ("silt", 30.0), ("clay", 25.0), ("om", 2.0)):
        _write_raster(folder / "wind" / f"{name}.tif", np.full((ch, cw), v, np.float32), ct, nodata=-9999.0)
    _write_raster(folder / "wind" / "fvc.tif", np.where(lc == 6, 0.4, 0.8).astype(np.float32),
                  Affine(_RES, 0, _X0, 0, -_RES, _Y1), nodata=-9999.0)
    # NEP in geographic coordinates (warped onto the grid)
    from pyproj import Transformer

    tr = Transformer.from_crs(_CRS, "EPSG:4326", always_xy=True)
    lon0, lat1 = tr.transform(_X0 - 300, _Y1 + 300)
    lon1, lat0 = tr.transform(_X0 + _W * _RES + 300, _Y1 - _H * _RES - 300)
    nres = 0.0003
    nh, nw = int(np.ceil((lat1 - lat0) / nres)), int(np.ceil((lon1 - lon0) / nres))
    ny, nx = np.mgrid[0:nh, 0:nw]
    nep = (1.5 + 0.5 * np.sin(nx / 7.0) - 0.2 * np.cos(ny / 5.0)).astype(np.float32)
    _write_raster(folder / "nep_tc_ha.tif", nep, Affine(nres, 0, lon0, 0, -nres, lat1), crs="EPSG:4326",
                  nodata=-9999.0)
    # polygons: a county slightly inside the grid, two townships nested in it, special units that overlap and one
    # smaller than a pixel
    x1, y0 = _X0 + _W * _RES, _Y1 - _H * _RES
    county = shapely.Polygon([(_X0 + 20, y0 + 35), (x1 - 15, y0 + 20), (x1 - 40, _Y1 - 25), (_X0 + 35, _Y1 - 10)])
    cut = shapely.LineString([(_X0 + 1900.5, y0 - 10), (_X0 + 2000.3, _Y1 + 10)]).buffer(0.01)
    towns = [g for g in shapely.get_parts(shapely.difference(county, cut))]
    towns.sort(key=lambda g: g.centroid.x)
    gpd.GeoDataFrame({"county_code": ["339999"], "county_name": ["warmup county"]}, geometry=[county],
                     crs=_CRS).to_file(folder / "county.gpkg")
    gpd.GeoDataFrame({"town_code": [f"33999910{i}" for i in range(len(towns))],
                      "town_name": [f"town {i}" for i in range(len(towns))]}, geometry=towns,
                     crs=_CRS).to_file(folder / "townships.gpkg")
    units = [shapely.Point(_X0 + 1000, _Y1 - 1200).buffer(420), shapely.box(_X0 + 1200, _Y1 - 1900, _X0 + 2600,
                                                                             _Y1 - 900),
             shapely.box(_X0 + 3001, _Y1 - 1501, _X0 + 3011, _Y1 - 1491)]
    gpd.GeoDataFrame({"unit_id": ["W-1", "W-2", "W-3"], "unit_name": ["disc", "overlapping box", "sub-pixel"]},
                     geometry=units, crs=_CRS).to_file(folder / "special_units.gpkg")
    (folder / "legend.csv").write_text(_LEGEND, encoding="utf-8")
    cfg = folder / "warmup.yaml"
    cfg.write_text(_CONFIG, encoding="utf-8")
    return cfg


def _count_cache_files(folder: Path) -> int:
    return sum(1 for _ in Path(folder).rglob("*.nbi")) if Path(folder).exists() else 0


def warmup(folder: Path | None = None, *, keep: bool = False) -> dict:
    """Run the pipeline once on the tiny synthetic county so every kernel is compiled into numba's cache.

    Parameters
    ----------
    folder : Path, optional
        Work folder (inputs and outputs of the synthetic run); default: a temporary folder.
    keep : bool
        Keep the work folder (default: removed at the end).

    Returns
    -------
    dict
        ``seconds`` (wall time), ``cache_dir`` (where numba caches), ``cache_files`` (number of ``*.nbi`` index
        files there after the run, gep_raster's and, with NUMBA_CACHE_DIR, anything else cached there),
        ``folder`` (the work folder, removed unless ``keep``).
    """
    t0 = time.perf_counter()
    work = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="gep_warmup_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        from .config import load_config
        from .pipeline import run as run_pipeline

        cfg = load_config(_write_inputs(work))
        run_pipeline(cfg, workers=1, progress=False, force=True, accept_warnings=True)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    cache = numba_cache.cache_dir()
    return {"seconds": time.perf_counter() - t0, "cache_dir": str(cache), "cache_files": _count_cache_files(cache),
            "folder": str(work)}


def register(app) -> None:
    """Add ``gep warmup [--keep DIR]`` to the typer ``app``."""
    import typer

    from .errors import GepError

    @app.command("warmup")
    def warmup_cmd(keep: Optional[Path] = typer.Option(
                       None, "--keep", metavar="DIR",
                       help="Write the synthetic run into DIR and keep it (default: a temporary folder, removed)."),
                   debug: bool = typer.Option(False, "--debug", help="Show tracebacks.")):
        """Compile every numba kernel once (a run on a tiny synthetic county) so that the first real run is fast.

        Run it once after installing, e.g. when building a container image. Prints the time it took and the
        folder numba caches in (NUMBA_CACHE_DIR, else the package's __pycache__ folders)."""
        # the pipeline logs its plausibility flags about the synthetic data: not the user's concern here
        level = log.level
        log.setLevel(logging.ERROR)
        try:
            res = warmup(keep, keep=keep is not None)
        except GepError as exc:
            if debug:
                raise
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(3)
        finally:
            log.setLevel(level)
        typer.echo(f"warmup finished in {res['seconds']:.1f} s; numba cache: {res['cache_dir']} "
                   f"({res['cache_files']} kernel index files)")
