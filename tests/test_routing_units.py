"""Flow routing in bounded memory: whole DEM or per hydrological unit, budget errors, chunk invariance."""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS

from gep_raster.config import HydroUnitsInput, load_config
from gep_raster.grid import RefGrid
from gep_raster.terrain.hydro_units import RoutingBudgetError, route_to_raster
from gep_raster.grid.io_read import GridSource
from gep_raster.pipeline import run
from gep_raster.terrain.routing import upslope_cells

from conftest import write_raster

T = Affine(30, 0, 500000, 0, -30, 3000000)


def _dem(h=60, w=70, gap_col=None):
    yy, xx = np.mgrid[0:h, 0:w]
    dem = (300 + 2.0 * yy + 6 * np.sin(xx / 4.0) * np.cos(yy / 5.0) + 0.3 * np.abs(xx - w / 2)).astype(np.float32)
    if gap_col is not None:
        dem[:, gap_col] = np.nan  # a masked column (e.g. a river or a no-data strip) separates the halves
    return dem


def _source(tmp_path, dem):
    p = write_raster(tmp_path / "dem.tif", np.where(np.isnan(dem), -9999, dem).astype(np.float32),
                     transform=T, nodata=-9999.0)
    grid = RefGrid(CRS.from_epsg(32650), T, dem.shape[1], dem.shape[0])
    return GridSource("inputs.dem", [p], grid, "continuous"), grid


def _read(p):
    with rasterio.open(p) as ds:
        return ds.read(1)


def test_whole_dem_route_to_raster_equals_in_memory_routing(tmp_path):
    dem = _dem()
    src, grid = _source(tmp_path, dem)
    info = route_to_raster(src, grid, "d8", {}, tmp_path / "up.tif", budget_mb=2048)
    ref = upslope_cells(dem, T, method="d8")
    assert np.array_equal(_read(tmp_path / "up.tif"), ref, equal_nan=True)
    assert info["mode"] == "whole DEM" and info["max_upslope_cells"] == float(np.nanmax(ref))
    # every cell drains somewhere: the outlets' counts add up to the number of valid cells
    assert np.nanmax(ref) > 30


@pytest.mark.parametrize("method", ["d8", "mfd"])
def test_per_unit_routing_equals_whole_dem_when_units_follow_a_divide(tmp_path, method):
    """Units split at a masked column: no flow can cross it, so routing per unit = routing the whole DEM."""
    k = 33
    dem = _dem(gap_col=k)
    src, grid = _source(tmp_path, dem)
    x0, y1 = T.c, T.f
    h, w = dem.shape
    west = shapely.box(x0, y1 - h * 30, x0 + (k + 0.5) * 30, y1)       # columns 0..k (k is NaN)
    east = shapely.box(x0 + (k + 0.5) * 30, y1 - h * 30, x0 + w * 30, y1)  # columns k+1..w-1
    units = (gpd.GeoDataFrame(geometry=[west, east], crs="EPSG:32650"), ["W", "E"])
    info = route_to_raster(src, grid, method, {}, tmp_path / "up.tif", budget_mb=2048, units=units)
    got = _read(tmp_path / "up.tif")
    ref = upslope_cells(dem, T, method=method)
    assert np.array_equal(got, ref, equal_nan=True)
    assert info["mode"] == "per hydrological unit" and info["units"] == 2
    assert info["routed_px"] == int(np.isfinite(dem).sum())


def test_per_unit_routing_cuts_flow_at_unit_boundaries(tmp_path):
    """Without a divide, each unit is routed alone: a unit's cells equal routing that unit's DEM alone."""
    dem = _dem()
    src, grid = _source(tmp_path, dem)
    h, w = dem.shape
    x0, y1 = T.c, T.f
    north = shapely.box(x0, y1 - 25 * 30, x0 + w * 30, y1)
    south = shapely.box(x0, y1 - h * 30, x0 + w * 30, y1 - 25 * 30)
    route_to_raster(src, grid, "d8", {}, tmp_path / "up.tif", budget_mb=2048,
                    units=(gpd.GeoDataFrame(geometry=[north, south], crs="EPSG:32650"), ["N", "S"]))
    got = _read(tmp_path / "up.tif")
    ref_n = upslope_cells(dem[:25], T, method="d8")
    ref_s = upslope_cells(dem[25:], T * Affine.translation(0, 25), method="d8")
    assert np.array_equal(got[:25], ref_n, equal_nan=True)
    assert np.array_equal(got[25:], ref_s, equal_nan=True)
    whole = upslope_cells(dem, T, method="d8")
    assert np.nanmax(got[25:]) < np.nanmax(whole)  # the north unit's inflow is not counted in the south unit


def test_pixels_outside_every_unit_are_not_routed(tmp_path):
    dem = _dem()
    src, grid = _source(tmp_path, dem)
    x0, y1 = T.c, T.f
    only = shapely.box(x0 + 300, y1 - 900, x0 + 1500, y1 - 300)  # rows 10..29, columns 10..49
    info = route_to_raster(src, grid, "d8", {}, tmp_path / "up.tif", budget_mb=2048,
                           units=(gpd.GeoDataFrame(geometry=[only], crs="EPSG:32650"), ["U1"]))
    got = _read(tmp_path / "up.tif")
    assert np.isfinite(got[10:30, 10:50]).all()
    assert np.isnan(got[:10]).all() and np.isnan(got[:, :10]).all() and np.isnan(got[30:]).all()
    assert info["routed_px"] == 20 * 40


def test_budget_errors_name_the_budget(tmp_path):
    dem = _dem(200, 200)  # 40,000 px x 40 B/px (D8) = 1.53 MiB
    src, grid = _source(tmp_path, dem)
    # 513 MB budget - 512 MB fixed overhead = 1 MB for routing
    with pytest.raises(RoutingBudgetError, match=r"whole DEM needs about 40 B/px x 40,000 px.*"
                                                 r"processing.memory_budget_mb = 513 MB less 512 MB.*"
                                                 r"inputs.hydro_units"):
        route_to_raster(src, grid, "d8", {}, tmp_path / "up.tif", budget_mb=513)
    assert not (tmp_path / "up.tif").exists()
    x0, y1 = T.c, T.f
    big = shapely.box(x0, y1 - 200 * 30, x0 + 200 * 30, y1 - 100 * 30)  # 100 x 200 px = 20,000 px = 0.76 MiB
    small = shapely.box(x0, y1 - 100 * 30, x0 + 50 * 30, y1)
    units = (gpd.GeoDataFrame(geometry=[small, big], crs="EPSG:32650"), ["ok-unit", "big-unit"])
    with pytest.raises(RoutingBudgetError, match=r"unit 'big-unit' spans 100 x 200 px \(20,000 px\).*"
                                                 r"memory_budget_mb = 512\.5 MB less 512 MB"):
        route_to_raster(src, grid, "d8", {}, tmp_path / "up.tif", budget_mb=512.5, units=units)
    # the same units within 1 MB: both fit
    route_to_raster(src, grid, "d8", {}, tmp_path / "up.tif", budget_mb=513, units=units)


def test_pipeline_with_hydro_units_is_chunk_and_layout_invariant(tiny):
    """inputs.hydro_units: routing per unit in the run; rasters identical for chunk 64 (cog) and 128 (tiles)."""
    folder = tiny.parent
    x0, y1 = 500000, 3000000
    units = [shapely.box(x0, y1 - 40 * 30, x0 + 20 * 30, y1), shapely.box(x0 + 20 * 30, y1 - 40 * 30, x0 + 50 * 30, y1)]
    gpd.GeoDataFrame({"hu": ["A", "B"]}, geometry=units, crs="EPSG:32650").to_file(folder / "hu.gpkg")
    outs = []
    for chunk, layout, name in ((64, "cog", "a"), (128, "tiles", "b")):
        cfg = load_config(tiny, overrides={"output": {"dir": f"out_hu_{name}", "chunk_size": chunk, "layout": layout}})
        cfg.inputs.hydro_units = HydroUnitsInput(path=str(folder / "hu.gpkg"), id_field="hu")
        outs.append(run(cfg, progress=False))
    (info,) = outs[0].manifest["routing"]
    assert info["mode"] == "per hydrological unit" and info["units"] == 2
    assert outs[1].manifest["layout"] == "tiles"
    ra = {o["path"]: o for o in outs[0].manifest["outputs"] if o["kind"] not in ("table", "figure")}
    rb = {o["path"][:-4] + ".tif": o for o in outs[1].manifest["outputs"] if o["kind"] not in ("table", "figure")}
    assert set(ra) == set(rb) and any("ls_factor" in k for k in ra)
    for rel in ra:
        a = _read(outs[0].output_dir / rel)
        b = _read(outs[1].output_dir / (rel[:-4] + ".vrt"))
        assert np.array_equal(a, b, equal_nan=True), rel
    # LS on the unit A / unit B boundary uses the cut upslope areas: differs from whole-DEM routing there
    whole = run(load_config(tiny, overrides={"output": {"dir": "out_hu_whole"}}), progress=False)
    ls_u = _read(outs[0].output_dir / "rasters/intermediate/ls_factor.tif")
    ls_w = _read(whole.output_dir / "rasters/intermediate/ls_factor.tif")
    assert not np.array_equal(ls_u, ls_w, equal_nan=True)


def _six_units(tmp_path):
    """An 80 x 90 DEM and six 40 x 30 px square units (2 rows x 3 columns)."""
    dem = _dem(80, 90)
    src, grid = _source(tmp_path, dem)
    x0, y1 = T.c, T.f
    boxes = [shapely.box(x0 + c * 30, y1 - (r + 40) * 30, x0 + (c + 30) * 30, y1 - r * 30)
             for r in (0, 40) for c in (0, 30, 60)]
    return dem, src, grid, (gpd.GeoDataFrame(geometry=boxes, crs="EPSG:32650"), [f"U{i}" for i in range(6)])


def test_units_routed_on_parallel_threads_give_the_same_raster(tmp_path):
    """Two threads route the units; the raster equals the serial one (assembled in unit order)."""
    dem, src, grid, units = _six_units(tmp_path)
    serial = route_to_raster(src, grid, "d8", {}, tmp_path / "a.tif", budget_mb=2048, units=units, workers=1)
    par = route_to_raster(src, grid, "d8", {}, tmp_path / "b.tif", budget_mb=2048, units=units, workers=2)
    assert serial["threads"] == 1 and par["threads"] == 2
    a, b = _read(tmp_path / "a.tif"), _read(tmp_path / "b.tif")
    assert np.array_equal(a, b, equal_nan=True) and np.isfinite(a).all()
    for k, (r, c) in enumerate([(r, c) for r in (0, 40) for c in (0, 30, 60)]):
        ref = upslope_cells(dem[r:r + 40, c:c + 30], T * Affine.translation(c, r), method="d8")
        assert np.array_equal(a[r:r + 40, c:c + 30], ref), k


def test_routing_killed_between_units_resumes_with_the_remaining_units(tmp_path, monkeypatch):
    """Each routed unit is kept in its own file: after a failure at the 4th unit, a new call routes only the
    units not done and the raster equals an uninterrupted routing."""
    import gep_raster.terrain.hydro_units as hu

    dem, src, grid, units = _six_units(tmp_path)
    ref = route_to_raster(src, grid, "d8", {}, tmp_path / "ref.tif", budget_mb=2048, units=units)
    assert ref["units_resumed"] == 0

    real = hu._route_unit
    calls = []

    def failing(args):
        calls.append(args[2:6])
        if len(calls) == 4:
            raise KeyboardInterrupt("killed")
        return real(args)

    monkeypatch.setattr(hu, "_route_unit", failing)
    with pytest.raises(KeyboardInterrupt):
        route_to_raster(src, grid, "d8", {}, tmp_path / "up.tif", budget_mb=2048, units=units)
    assert not (tmp_path / "up.tif").exists()
    assert len(list((tmp_path / "up.units").glob("u*.npy"))) == 3

    calls.clear()
    monkeypatch.setattr(hu, "_route_unit", lambda a: (calls.append(a[2:6]), real(a))[1])
    info = route_to_raster(src, grid, "d8", {}, tmp_path / "up.tif", budget_mb=2048, units=units)
    assert info["units_resumed"] == 3 and len(calls) == 3  # only units 4-6 routed again
    assert np.array_equal(_read(tmp_path / "up.tif"), _read(tmp_path / "ref.tif"), equal_nan=True)
    assert not (tmp_path / "up.units").exists()



def test_units_merged_across_shared_and_separate_raster_blocks(tmp_path):
    """The merge writes a unit without reading back when its window touches no 512 px block of an earlier
    unit, and merges into what is there when it does. A unit, then an L-shaped unit whose window holds the
    first one (written after it, NaN there), and a block-aligned strip apart from both: every cell equals
    routing its own unit's DEM alone."""
    h, w = 1100, 1600
    yy, xx = np.mgrid[0:h, 0:w]
    dem = (500 + 0.05 * yy + 8 * np.sin(xx / 37.0) * np.cos(yy / 23.0) + 0.01 * np.abs(xx - 700)).astype(np.float32)
    src, grid = _source(tmp_path, dem)
    x0, y1 = T.c, T.f

    def box(r0, r1, c0, c1):
        return shapely.box(x0 + c0 * 30, y1 - r1 * 30, x0 + c1 * 30, y1 - r0 * 30)

    ell = shapely.union(box(0, h, 0, 600), box(600, h, 600, 1100))  # window: rows 0..1099, columns 0..1099
    notch = box(0, 600, 600, 1100)                                   # inside the L's window and blocks
    strip = box(0, h, 1536, w)                                       # starts on a block edge: no block shared
    units = (gpd.GeoDataFrame(geometry=[notch, ell, strip], crs="EPSG:32650"), ["N", "L", "S"])
    info = route_to_raster(src, grid, "d8", {}, tmp_path / "up.tif", budget_mb=2048, units=units, workers=1)
    got = _read(tmp_path / "up.tif")
    mask_l = np.zeros((h, w), bool)
    mask_l[:, :600] = True
    mask_l[600:, 600:1100] = True
    want = np.full((h, w), np.nan, np.float32)
    ref_l = upslope_cells(np.where(mask_l[:, :1100], dem[:, :1100], np.nan), T, method="d8")
    want[:, :1100][mask_l[:, :1100]] = ref_l[mask_l[:, :1100]]
    want[:600, 600:1100] = upslope_cells(dem[:600, 600:1100], T * Affine.translation(600, 0), method="d8")
    want[:, 1536:] = upslope_cells(dem[:, 1536:], T * Affine.translation(1536, 0), method="d8")
    assert np.array_equal(got, want, equal_nan=True)
    assert np.isnan(got[:, 1100:1536]).all()
    assert info["routed_px"] == h * 1100 + h * (w - 1536)
