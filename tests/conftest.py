"""Shared fixtures: location of the real datasets, a tiny synthetic run, config writers."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    from gep_raster.config import default_shared_data

    return default_shared_data()


@pytest.fixture(scope="session")
def shared() -> Path:
    p = shared_data()
    if not (p / "invest_gura_kenya").is_dir():
        pytest.skip(f"real datasets not found at {p} (set GEP_SHARED_DATA)")
    return p


LEGEND_CSV = """code,name,ecosystem,runoff_coef,usle_c,usle_p,kc,carbon_tco2_ha,so2_kg_ha,nox_kg_ha,dust_kg_ha,notes
1,broadleaf forest,forest,0.0267,0.006,1,1.0,9.0,88.65,6.0,10110,test
2,paddy,cropland,0.10,0.15,0.15,1.1,1.0,45,3,1000,test
3,water,water,0.0,0.0,1,1.05,0,0,0,0,test
4,town,urban,0.60,0.0,1,0.2,0,0,0,0,test
"""


def write_raster(path: Path, array: np.ndarray, *, crs="EPSG:32650", transform=None, nodata=None):
    array = np.asarray(array)
    transform = transform or Affine(30, 0, 500000, 0, -30, 3000000)
    with rasterio.open(path, "w", driver="GTiff", width=array.shape[1], height=array.shape[0], count=1,
                       dtype=array.dtype, crs=crs, transform=transform, nodata=nodata) as ds:
        ds.write(array, 1)
    return path


def write_config(folder: Path, body: str, name: str = "run.yaml") -> Path:
    p = folder / name
    p.write_text(textwrap.dedent(body), encoding="utf-8")
    return p


@pytest.fixture
def tiny(tmp_path):
    """A 40 x 50 px, 30 m synthetic run folder (land cover, DEM, P, ET, polygons) and its config path."""
    return make_tiny(tmp_path)


def make_tiny(tmp_path: Path) -> Path:
    """Write the files of the :func:`tiny` run into ``tmp_path``; returns the config path."""
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng(42)
    h, w = 40, 50
    yy, xx = np.mgrid[0:h, 0:w]
    dem = (300 + 4.0 * xx + 2.5 * yy + 15 * np.sin(xx / 5.0) * np.cos(yy / 7.0)).astype(np.float32)
    lc = np.ones((h, w), np.uint8)
    lc[:, :12] = 2
    lc[18:22, :] = 3
    lc[:6, 40:] = 4
    lc[0, 0] = 255  # nodata pixel
    p = (1500 + 2 * xx + rng.normal(0, 5, (h, w))).astype(np.float32)
    et = (800 + yy).astype(np.float32)
    (tmp_path / "legend.csv").write_text(LEGEND_CSV)
    write_raster(tmp_path / "lc.tif", lc, nodata=255)
    write_raster(tmp_path / "dem.tif", dem, nodata=-9999.0)
    write_raster(tmp_path / "p.tif", p, nodata=-9999.0)
    write_raster(tmp_path / "et.tif", et, nodata=-9999.0)
    x0, y1 = 500000, 3000000
    county = shapely.box(x0 + 15, y1 - h * 30 + 15, x0 + w * 30 - 15, y1 - 15)
    halves = [shapely.box(x0 + 15, y1 - h * 30 + 15, x0 + 700.5, y1 - 15),
              shapely.box(x0 + 700.5, y1 - h * 30 + 15, x0 + w * 30 - 15, y1 - 15)]
    gpd.GeoDataFrame({"county_code": ["330000"], "county_name": ["测试县"]}, geometry=[county],
                     crs="EPSG:32650").to_file(tmp_path / "county.gpkg")
    gpd.GeoDataFrame({"town_code": ["330000001", "330000002"], "town_name": ["东镇", "西乡"]},
                     geometry=halves, crs="EPSG:32650").to_file(tmp_path / "towns.gpkg")
    gpd.GeoDataFrame({"unit_id": ["VEP-1"], "unit_name": ["tiny parcel"]},
                     geometry=[shapely.box(x0 + 300, y1 - 300, x0 + 310, y1 - 290)],
                     crs="EPSG:32650").to_file(tmp_path / "units.gpkg")
    cfg = write_config(tmp_path, f"""
        name: tiny
        inputs:
          land_cover: {{path: lc.tif}}
          dem: {{path: dem.tif}}
          precipitation: {{path: p.tif}}
          et: {{path: et.tif}}
          carbon: {{method: rates}}
        legend: {{path: legend.csv}}
        # annual precipitation only: R by the US annual regression (the default monthly formula needs 12 rasters)
        services:
          soil_retention: {{r_method: renard_freimund_1994}}
        layers:
          county: {{path: county.gpkg, id_field: county_code, name_field: county_name}}
          township: {{path: towns.gpkg, id_field: town_code, name_field: town_name, nests_in: county}}
          special_units: {{path: units.gpkg, id_field: unit_id, name_field: unit_name, role: special_unit}}
        output: {{dir: out, chunk_size: 64}}
        """)
    return cfg


def sample_config(folder: Path, name: str, *, layout: str = "cog", chunk: int = 64, workers: int = 1,
                  out_name: str | None = None, source: str = "sample.yaml") -> Path:
    """pipelines/``source`` (sample.yaml) with paths made absolute, blocks of ``chunk`` px, ``processing.workers``
    and the output in ``folder / (out_name or name)``; written to ``folder / f"{name}.yaml"``."""
    import yaml

    sample = REPO / "pipelines" / source
    cfg = yaml.safe_load(sample.read_text(encoding="utf-8"))
    base = sample.parent

    def absolute(v):
        if isinstance(v, str) and (v.startswith("../") or v.startswith("legends/") or v.startswith("tables/")):
            return str((base / v).resolve()) + ("/" if v.endswith("/") else "")
        if isinstance(v, dict):
            return {k: absolute(x) for k, x in v.items()}
        if isinstance(v, list):
            return [absolute(x) for x in v]
        return v

    cfg = absolute(cfg)
    cfg["output"] = {"dir": str(folder / (out_name or name)), "chunk_size": chunk, "layout": layout}
    cfg["processing"] = {"workers": workers}
    p = folder / f"{name}.yaml"
    p.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return p


def model_numpy_equals_dask(model, src, grid, chunkings) -> dict:
    """Compute ``model`` on the inputs ``src`` (lazy sources of gep_raster.grid.run_inputs.open_inputs) through the
    numpy path and through the dask path for every chunking of ``chunkings`` ((rows, cols) each); assert every
    output equal pixel by pixel; return the numpy outputs (key -> array)."""
    import dask
    import dask.array as da

    ref = model.compute_numpy({k: src[k].read_all() for k in model.input_keys()}, grid.row_pixel_area_m2)
    for ch in chunkings:
        chunks = da.core.normalize_chunks(ch, shape=grid.shape)
        with dask.config.set(scheduler="threads"):
            st = model.compute_dask({k: src[k].to_dask(chunks) for k in model.input_keys()},
                                    grid.row_pixel_area_m2).compute()
        for i, k in enumerate(model.output_keys):
            np.testing.assert_array_equal(st[i], ref[k], err_msg=f"{k} chunks {ch}")
    return ref


def output_arrays(run_dir: Path) -> dict:
    """Every raster of a run folder (``rasters/**/*.tif``) as arrays, keyed by path relative to the run folder."""
    import rasterio

    out = {}
    for f in sorted((run_dir / "rasters").rglob("*.tif")):
        with rasterio.open(f) as ds:
            out[f.relative_to(run_dir).as_posix()] = ds.read()
    return out


# -- real headless browser (Playwright driving Debian's Chromium) ------------------------------------------------------
#: Chromium flags for this closed network (no background connections) and for running as root
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def chromium_executable() -> str | None:
    """Debian's Chromium (``/usr/bin/chromium``, installed by .ci/run) or ``$GEP_CHROMIUM``; None when absent."""
    import shutil

    for c in (os.environ.get("GEP_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
              shutil.which("chromium-browser")):
        if c and Path(c).is_file():
            return c
    return None


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium driven by Playwright (session-wide); skipped, with the reason, where none can start."""
    exe = chromium_executable()
    if exe is None:
        pytest.skip("no Chromium: install Debian's chromium (apt-get install chromium; .ci/run does) or set GEP_CHROMIUM")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - playwright is a dev dependency
        pytest.skip(f"playwright not installed ({exc})")
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
    except Exception as exc:
        pw.stop()
        pytest.skip(f"Chromium {exe} does not start under Playwright: {exc}")
    yield b
    b.close()
    pw.stop()


@pytest.fixture
def page(browser):
    """A fresh browser page (1280 x 900) per test."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    yield pg
    ctx.close()
