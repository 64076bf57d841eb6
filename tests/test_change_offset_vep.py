"""Land-cover scenarios, change between runs, GEP-R offsets and VEP, on the tiny synthetic run.

Tiny land cover (40 x 50 px, 30 m, conftest ``tiny``): class 1 forest everywhere except paddy (2) in
columns 0-11, water (3) in rows 18-21, town (4) in rows 0-5 x columns 40-49; pixel (0, 0) is nodata.
Grid origin x0 = 500000, y1 = 3000000 (EPSG:32650): pixel (row r, col c) has its centre at
(x0 + 30c + 15, y1 - 30r - 15). Legend rates (conftest LEGEND_CSV) and default prices
(gep_raster/data/prices.csv: CO2 380 yuan/t, SO2 1200, NOx 630, dust 150 yuan/t, water 7.06 yuan/m3).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml

import conftest
from conftest import write_raster
from gep_raster.config import ScenarioConfig, load_config
from gep_raster.errors import ConfigError, GridMismatchError, InputError, VectorError

X0, Y1 = 500000.0, 3000000.0
REPO = Path(__file__).resolve().parents[1]


def box(c0, c1, r0, r1):
    """Polygon whose edges lie on pixel edges: columns c0..c1-1, rows r0..r1-1."""
    import shapely

    return shapely.box(X0 + 30 * c0, Y1 - 30 * r1, X0 + 30 * c1, Y1 - 30 * r0)


def rect_wkt(x0, x1, y0, y1):
    return f"POLYGON (({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))"


def lc_source(folder: Path):
    from gep_raster.grid import RefGrid
    from gep_raster.grid.io_read import GridSource

    grid = RefGrid.from_raster(folder / "lc.tif")
    return GridSource("inputs.land_cover", [folder / "lc.tif"], grid, "categorical"), grid


def scenario(*edits, name="s"):
    return ScenarioConfig.model_validate({"name": name, "edits": list(edits)})


def _tiny_folder(folder: Path) -> Path:
    """The conftest ``tiny`` run folder, created in ``folder`` (for module-scoped fixtures)."""
    fn = getattr(conftest.tiny, "__wrapped__", None) or conftest.tiny._get_wrapped_function()
    return fn(folder)


# ======================================================================================
# configuration
# ======================================================================================
@pytest.mark.parametrize("edit, message", [
    ({"to_class": 4}, "scenario.edits.0: give exactly one of 'path' (polygon file) or 'wkt'"),
    ({"wkt": "POLYGON ((0 0, 1 0, 1 1, 0 0))", "path": "a.gpkg", "to_class": 4}, "give exactly one of"),
    ({"wkt": "POLYGON ((0 0, 1 0, 1 1, 0 0))", "where": "a == 1", "to_class": 4}, "'where' and 'layer' apply to 'path'"),
    ({"path": "a.gpkg", "where": "a = 1", "to_class": 4}, "is not of the form \"field == value\""),
    ({"path": "a.gpkg", "to_class": 70000}, "scenario.edits.0.to_class"),
    ({"path": "a.gpkg", "crs": "EPSG:4326", "to_class": 4}, "'crs' applies to 'wkt' only"),
    ({"path": "a.gpkg", "from_classes": [], "to_class": 4}, "from_classes: give at least one class code"),
])
def test_scenario_config_errors_name_file_and_key(tiny, edit, message):
    with pytest.raises(ConfigError) as exc:
        load_config(tiny, overrides={"scenario": {"name": "x", "edits": [edit]}})
    assert str(tiny) in str(exc.value) and message in str(exc.value)


def test_scenario_config_needs_an_edit(tiny):
    with pytest.raises(ConfigError, match="scenario.edits"):
        load_config(tiny, overrides={"scenario": {"name": "x", "edits": []}})


# ======================================================================================
# ScenarioSource
# ======================================================================================
def test_pixel_centre_rule_hand_counts(tiny):
    from gep_raster.analysis.scenario import ScenarioSource

    base, grid = lc_source(tiny.parent)
    # A: x 500020..500095 contains the centres of columns 1 (x 500045) and 2 (500075), not 0 (500015) or
    #    3 (500105); y 2999870..2999980 contains rows 1, 2, 3 (y 2999955, 2999925, 2999895) -> 2 x 3 = 6 px
    a = rect_wkt(X0 + 20, X0 + 95, Y1 - 130, Y1 - 20)
    # B: a 10 m square in pixel (row 30, col 30) containing its centre (x 500915, y 2999085) -> 1 px
    b = rect_wkt(X0 + 910, X0 + 920, Y1 - 920, Y1 - 910)
    # C: a 10 m square in pixel (30, 35) away from its centre -> 0 px
    c = rect_wkt(X0 + 1051, X0 + 1059, Y1 - 909, Y1 - 901)
    src = ScenarioSource(base, scenario({"wkt": a, "to_class": 4}, {"wkt": b, "to_class": 3},
                                        {"wkt": c, "to_class": 2}), grid)
    before, after = base.read_all(), src.read_all()
    changed = np.argwhere(before != after)
    assert sorted(map(tuple, changed)) == [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2), (30, 30)]
    assert (after[1:4, 1:3] == 4).all() and after[30, 30] == 3 and after[30, 35] == 1
    d = src.describe()["scenario"]
    assert d["edited_pixels"] == 7 and d["edited_area_m2"] == pytest.approx(7 * 900)
    # A was paddy (2) in columns 1, 2: 6 px 2 -> 4; B forest 1 -> 3
    assert d["transitions"] == {"1 -> 3": {"pixels": 1, "area_m2": 900.0}, "2 -> 4": {"pixels": 6, "area_m2": 5400.0}}
    assert d["edits"][0]["polygon_area_m2"] == pytest.approx(75 * 110)
    assert src.kind == "categorical" and src.dtype == np.int32 and src.grid == grid


def test_nodata_stays_nodata_later_edit_wins_and_from_classes(tiny):
    from gep_raster.analysis.scenario import ScenarioSource

    base, grid = lc_source(tiny.parent)
    whole = box(0, 50, 0, 40).wkt
    src = ScenarioSource(base, scenario(
        {"wkt": box(0, 3, 0, 3).wkt, "to_class": 3},              # covers nodata pixel (0, 0)
        {"wkt": box(1, 3, 1, 3).wkt, "to_class": 4},              # later edit wins on rows/cols 1-2
        {"wkt": box(8, 16, 10, 13).wkt, "to_class": 1, "from_classes": [2]},  # only paddy (cols 8-11) changes
        {"wkt": whole, "to_class": 2, "from_classes": [4]}),      # town (incl. edit 2's pixels) -> paddy
        grid)
    a = src.read_all()
    assert a[0, 0] == -1
    assert a[0, 1] == 3 and a[1, 0] == 3
    assert (a[1:3, 1:3] == 2).all()  # edit 2 made them 4, edit 4 turned every 4 into 2
    assert (a[10:13, 8:12] == 1).all() and (a[10:13, 12:16] == 1).all()
    assert (a[0:6, 40:50] == 2).all()
    assert src.describe()["scenario"]["edited_nodata_pixels"] == 1


def test_edges_through_pixel_centres_are_chunk_independent(tiny):
    import dask
    import dask.array as da

    from gep_raster.analysis.scenario import ScenarioSource

    base, grid = lc_source(tiny.parent)
    # edges through the centres of columns 21 and 28 and rows 22 and 26: GDAL's half-open scan-line rule
    # takes one of the two boundary columns and one of the two boundary rows: 7 x 4 = 28 pixels
    sq = rect_wkt(X0 + 30 * 21 + 15, X0 + 30 * 28 + 15, Y1 - 30 * 26 - 15, Y1 - 30 * 22 - 15)
    tri = (f"POLYGON (({X0 + 100} {Y1 - 100}, {X0 + 1300} {Y1 - 300}, {X0 + 700} {Y1 - 1100}, "
           f"{X0 + 100} {Y1 - 100}))")
    src = ScenarioSource(base, scenario({"wkt": tri, "to_class": 3}, {"wkt": sq, "to_class": 4}), grid)
    ref = src.read_all()
    assert int((ref[22:27, 21:29] == 4).sum()) == 28
    sub = np.full((10, 14), -9)  # 1 x 1 windows around the square (rows 20-29, cols 18-31)
    for r in range(20, 30):
        for c in range(18, 32):
            sub[r - 20, c - 18] = src.read(r, r + 1, c, c + 1)[0, 0]
    assert np.array_equal(sub, ref[20:30, 18:32])
    for ch in [(7, 5), (3, 11), (13, 50), (16, 16), (2, 3)]:
        out = np.full(grid.shape, -9)
        for r0 in range(0, grid.height, ch[0]):
            for c0 in range(0, grid.width, ch[1]):
                r1, c1 = min(grid.height, r0 + ch[0]), min(grid.width, c0 + ch[1])
                out[r0:r1, c0:c1] = src.read(r0, r1, c0, c1)
        assert np.array_equal(out, ref), ch
    for ch in [(7, 5), (16, 16)]:  # the dask path, threaded
        with dask.config.set(scheduler="threads"):
            assert np.array_equal(src.to_dask(da.core.normalize_chunks(ch, shape=grid.shape)).compute(), ref)
    # two chunkings of the same source in one graph must not share dask keys
    with dask.config.set(scheduler="threads"):
        both = (src.to_dask((7, 5)) + src.to_dask((16, 16)).rechunk((7, 5))).compute()
    assert np.array_equal(both, 2 * ref)


def test_edits_from_a_file_with_where_filter_and_reprojection(tiny):
    import geopandas as gpd

    from gep_raster.analysis.scenario import ScenarioSource

    base, grid = lc_source(tiny.parent)
    folder = tiny.parent
    gdf = gpd.GeoDataFrame({"kind": ["dev", "keep", "dev"], "code": [1, 2, 3]},
                           geometry=[box(20, 22, 25, 27), box(30, 32, 25, 27), box(40, 41, 30, 31)],
                           crs="EPSG:32650").to_crs("EPSG:4326")  # another CRS: reprojected to the grid
    gdf.to_file(folder / "edits.gpkg", layer="parcels")
    cfg = load_config(tiny)
    src = ScenarioSource(base, scenario({"path": "edits.gpkg", "layer": "parcels", "where": "kind == 'dev'",
                                         "to_class": 4}), grid, cfg)
    d = src.describe()["scenario"]
    assert d["edited_pixels"] == 4 + 1 and d["transitions"] == {"1 -> 4": {"pixels": 5, "area_m2": 4500.0}}
    assert any(Path(f.path).name == "edits.gpkg" for f in src.files)  # polygons enter the input checksums
    src = ScenarioSource(base, scenario({"path": "edits.gpkg", "where": "code == 2", "to_class": 3}), grid, cfg)
    assert src.describe()["scenario"]["edited_pixels"] == 4
    with pytest.raises(ConfigError, match=r"scenario.edits\[0\].where: field 'kind2' not found in .*edits.gpkg"):
        ScenarioSource(base, scenario({"path": "edits.gpkg", "where": "kind2 == dev", "to_class": 4}), grid, cfg)
    with pytest.raises(ConfigError, match=r"'kind == none' selects no feature"):
        ScenarioSource(base, scenario({"path": "edits.gpkg", "where": "kind == none", "to_class": 4}), grid, cfg)
    with pytest.raises(ConfigError, match=r"scenario.edits\[0\].path: file not found: .*nope.gpkg"):
        ScenarioSource(base, scenario({"path": "nope.gpkg", "to_class": 4}), grid, cfg)
    with pytest.raises(ConfigError, match=r"scenario.edits\[0\].wkt: not valid WKT"):
        ScenarioSource(base, scenario({"wkt": "POLYGON ((1 2", "to_class": 4}), grid, cfg)
    with pytest.raises(VectorError, match="LineString"):
        ScenarioSource(base, scenario({"wkt": "LINESTRING (500000 2999000, 500300 2999300)", "to_class": 4}), grid)


def test_wkt_in_another_crs(tiny):
    from pyproj import Transformer

    from gep_raster.analysis.scenario import ScenarioSource

    base, grid = lc_source(tiny.parent)
    tr = Transformer.from_crs("EPSG:32650", "EPSG:4326", always_xy=True)
    # pixel (10, 20) centre, a 2 m square around it, given in lon/lat
    xs, ys = tr.transform([X0 + 614, X0 + 616], [Y1 - 316, Y1 - 314])
    wkt = rect_wkt(xs[0], xs[1], ys[0], ys[1])
    src = ScenarioSource(base, scenario({"wkt": wkt, "crs": "EPSG:4326", "to_class": 4}), grid)
    a = src.read_all()
    assert a[10, 20] == 4 and int((a != base.read_all()).sum()) == 1


def test_set_inputs_override_follows_the_assigned_pixels(tiny):
    from gep_raster.grid import RefGrid
    from gep_raster.grid.io_read import GridSource
    from gep_raster.analysis.scenario import InputOverrideSource, ScenarioSource, wrap_inputs

    folder = tiny.parent
    base, grid = lc_source(folder)
    nep = np.full((40, 50), 2.0, np.float32)
    nep[11, 9] = -9999.0  # nodata inside the edit: stays NaN
    write_raster(folder / "nep.tif", nep, nodata=-9999.0)
    carbon = GridSource("inputs.carbon", [folder / "nep.tif"], grid, "continuous")
    sc = scenario({"wkt": box(8, 16, 10, 13).wkt, "to_class": 1, "from_classes": [2], "set_inputs": {"carbon": 3.5}})
    out = wrap_inputs({"lc": base, "carbon_flux": carbon}, sc, grid)
    assert isinstance(out["lc"], ScenarioSource) and isinstance(out["carbon_flux"], InputOverrideSource)
    v = out["carbon_flux"].read_all()
    # paddy pixels of the box (rows 10-12, cols 8-11) become forest and get NEP 3.5; forest pixels of the box
    # (cols 12-15) are not assigned by the edit (from_classes) and keep 2.0
    exp = np.full((40, 50), 2.0, np.float32)
    exp[10:13, 8:12] = 3.5
    exp[11, 9] = np.nan
    assert np.array_equal(v, exp, equal_nan=True)
    assert out["carbon_flux"].describe()["scenario"]["set_inputs"][0]["value"] == 3.5
    with pytest.raises(ConfigError, match=r"set_inputs.et: the run reads no continuous input inputs.et "
                                          r"\(continuous inputs of this run: \['carbon'\]\)"):
        wrap_inputs({"lc": base, "carbon_flux": carbon},
                    scenario({"wkt": box(0, 2, 0, 2).wkt, "to_class": 1, "set_inputs": {"et": 1.0}}), grid)
    assert wrap_inputs({"lc": base}, None, grid) == {"lc": base}


def test_sample_development_parcel_converts_340_forest_pixels():
    """The sample development scenario (pipelines/sample_development.yaml) on the sample land cover."""
    from gep_raster.grid.run_inputs import raster_source, reference_grid
    from gep_raster.analysis.scenario import ScenarioSource

    cfg = load_config(REPO / "pipelines" / "sample_development.yaml")
    grid = reference_grid(cfg)
    src = ScenarioSource(raster_source(cfg, "land_cover", cfg.inputs.land_cover, grid, "categorical"),
                         cfg.scenario, grid, cfg)
    d = src.describe()["scenario"]
    # 510 m x 600 m on pixel edges = 17 x 20 = 340 pixels, all forest (classes 1-3) -> built-up (11)
    assert d["edited_pixels"] == 340 and d["edited_area_m2"] == pytest.approx(306000.0)
    assert sum(v["pixels"] for v in d["transitions"].values()) == 340
    assert {k.split(" -> ")[0] for k in d["transitions"]} <= {"1", "2", "3"}
    assert {k.split(" -> ")[1] for k in d["transitions"]} == {"11"}


# ======================================================================================
# runs: baseline, development (parcel -> town), restoration (candidates' paddy -> forest)
# ======================================================================================
DEV = box(20, 30, 25, 35)  # 10 x 10 forest pixels (rows 25-34, cols 20-29)
CANDIDATES = [("C1", box(2, 7, 25, 35)), ("C2", box(7, 12, 25, 35)),  # 50 paddy pixels each
              ("C3", box(25, 35, 30, 35)),  # overlaps the development parcel
              ("C4", box(40, 45, 30, 35))]  # forest already: no gain


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import geopandas as gpd

    from gep_raster import pipeline

    folder = tmp_path_factory.mktemp("scen")
    cfgp = _tiny_folder(folder)
    gpd.GeoDataFrame({"pid": [c[0] for c in CANDIDATES], "pname": ["甲", "乙", "丙", "丁"]},
                     geometry=[c[1] for c in CANDIDATES], crs="EPSG:32650").to_file(folder / "cands.gpkg")
    gpd.GeoDataFrame({"n": [1]}, geometry=[DEV], crs="EPSG:32650").to_file(folder / "parcel.gpkg")
    out = {}
    for name, sc in (("base", None),
                     ("dev", {"name": "dev", "edits": [{"wkt": DEV.wkt, "to_class": 4}]}),
                     ("rest", {"name": "rest", "edits": [{"path": "cands.gpkg", "to_class": 1,
                                                          "from_classes": [2]}]})):
        ov = {"output": {"dir": f"out_{name}"}}
        if sc:
            ov["scenario"] = sc
        out[name] = pipeline.run(load_config(cfgp, overrides=ov), progress=False).output_dir
    out["folder"] = folder
    return out


def _r(run: Path, rel: str) -> np.ndarray:
    with rasterio.open(run / rel) as ds:
        return ds.read(1).astype(np.float64)


def _inputs(folder: Path):
    with rasterio.open(folder / "p.tif") as ds:
        p = ds.read(1).astype(np.float64)
    with rasterio.open(folder / "et.tif") as ds:
        et = ds.read(1).astype(np.float64)
    return p, et


def _wc_yuan(p, et, alpha):
    """Water conservation value per pixel by hand: max(P - alpha P - ET, 0) mm x 900 m2 x 1e-3 x 7.06 yuan/m3."""
    return np.maximum(p - alpha * p - et, 0.0) * 900 * 1e-3 * 7.06


def test_scenario_runs_record_the_scenario(runs):
    m = json.loads((runs["dev"] / "manifest.json").read_text())
    sc = m["inputs"]["lc"]["scenario"]
    assert sc["edited_pixels"] == 100 and sc["transitions"] == {"1 -> 4": {"pixels": 100, "area_m2": 90000.0}}
    assert m["config"]["scenario"]["name"] == "dev"
    m = json.loads((runs["rest"] / "manifest.json").read_text())
    # C1, C2 (100 paddy px) -> forest; C3, C4 hold no paddy
    assert m["inputs"]["lc"]["scenario"]["transitions"] == {"2 -> 1": {"pixels": 100, "area_m2": 90000.0}}


# ---------------------------------------------------------------------------------- change
def test_compare_delta_rasters_tables_and_manifest(runs, tmp_path):
    from gep_raster.analysis.change import compare_runs

    m = compare_runs(runs["base"], runs["dev"], tmp_path / "cmp")
    base, dev = runs["base"], runs["dev"]
    d = _r(tmp_path / "cmp", "rasters/delta/gep_r_yuan_delta.tif")
    a, b = _r(base, "rasters/gep_r_yuan.tif"), _r(dev, "rasters/gep_r_yuan.tif")
    both = np.isfinite(a) & np.isfinite(b)
    assert np.array_equal(np.isnan(d), ~both)
    np.testing.assert_allclose(d[both], (b - a)[both].astype(np.float32), rtol=0, atol=0)
    outside = np.ones(a.shape, bool)
    outside[25:35, 20:30] = False
    assert np.all(d[outside & both] == 0)  # every service is pixel-local in the land cover
    # carbon: forest 9 t CO2/ha/a -> town 0 on 100 px of 0.09 ha: -81 t CO2/a, x 380 yuan/t = -30,780 yuan/a
    c = _r(tmp_path / "cmp", "rasters/delta/carbon_sequestration_yuan_delta.tif")
    assert np.nansum(c) == pytest.approx(-30780.0, rel=1e-6)
    assert np.allclose(c[25:35, 20:30], -9 * 0.09 * 380, rtol=1e-6)
    with rasterio.open(tmp_path / "cmp/rasters/delta/gep_r_yuan_delta.tif") as ds:
        assert ds.tags(1)["units"] == "yuan/a per pixel" and ds.tags()["run_b"] == str(dev)
    # tables: per township, b - a and 100 (b - a)/|a|
    ta = pd.read_csv(base / "tables/township.csv", dtype={"town_code": str})
    tb = pd.read_csv(dev / "tables/township.csv", dtype={"town_code": str})
    ch = pd.read_csv(tmp_path / "cmp/tables/township_change.csv", dtype={"town_code": str})
    assert list(ch["town_code"]) == ["330000001", "330000002"] and set(ch["in_runs"]) == {"both"}
    for col in ("gep_r_yuan", "water_conservation_yuan", "carbon_sequestration_tco2"):
        assert np.allclose(ch[f"{col}_a"], ta[col]) and np.allclose(ch[f"{col}_b"], tb[col])
        assert np.allclose(ch[f"{col}_delta"], tb[col] - ta[col])
        assert np.allclose(ch[f"{col}_growth_pct"], 100 * (tb[col] - ta[col]) / ta[col].abs())
    assert (tmp_path / "cmp/tables/township_change.gpkg").exists()
    # manifest
    saved = json.loads((tmp_path / "cmp/change_manifest.json").read_text())
    assert saved["run_a"]["path"] == str(base.resolve()) and saved["services"] == m["services"]
    assert {o["path"] for o in saved["outputs"]} >= {"rasters/delta/gep_r_yuan_delta.tif",
                                                     "tables/county_change.csv", "tables/special_units_change.csv"}
    for o in saved["outputs"]:
        assert (tmp_path / "cmp" / o["path"]).exists()
    t = saved["totals"]["carbon_sequestration_yuan"]
    assert t["delta"] == pytest.approx(-30780.0, rel=1e-6) and t["delta"] == t["b"] - t["a"]
    assert t["growth_pct"] == pytest.approx(100 * t["delta"] / abs(t["a"]), rel=1e-12)
    assert saved["warnings"] == []
    assert [x["key"] for x in saved["config_differences"]] == ["scenario.description", "scenario.edits",
                                                                "scenario.name"]


def test_growth_pct_rules():
    from gep_raster.analysis.change import growth_pct

    assert growth_pct(200.0, 250.0) == pytest.approx(25.0)
    assert growth_pct(-10.0, -5.0) == pytest.approx(50.0)  # a net emission shrinking is growth
    assert np.isnan(growth_pct(0.0, 5.0))
    assert np.allclose(growth_pct([100.0, 0.0], [90.0, 1.0]), [-10.0, np.nan], equal_nan=True)


def _copy_run(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    edit(m)
    (dst / "manifest.json").write_text(json.dumps(m))
    return dst


def test_compare_refuses_other_grid_other_services_and_non_runs(runs, tmp_path):
    from gep_raster.analysis.change import compare_runs

    def shift(m):
        m["grid"]["transform"][2] += 30.0

    other = _copy_run(runs["dev"], tmp_path / "shifted", shift)
    with pytest.raises(GridMismatchError, match="not on the same grid.*transform"):
        compare_runs(runs["base"], other, tmp_path / "x")

    def drop_air(m):
        m["outputs"] = [o for o in m["outputs"] if o["service"] != "air_purification"]

    other = _copy_run(runs["dev"], tmp_path / "noair", drop_air)
    with pytest.raises(ConfigError, match=r"different services: only in a: \['air_purification_yuan'\]"):
        compare_runs(runs["base"], other, tmp_path / "x")
    with pytest.raises(InputError, match=r"manifest.json: not found; is .* the output folder of a finished"):
        compare_runs(runs["base"], tmp_path, tmp_path / "x")


def test_compare_warns_about_unapplied_scenario_and_price_change(runs, tmp_path):
    from gep_raster.analysis.change import compare_runs

    def tamper(m):
        del m["inputs"]["lc"]["scenario"]  # as if the pipeline hook were missing
        for p in m["prices"]:
            if p["key"] == "carbon_sequestration.co2_price":
                p["value"] = 100.0

    other = _copy_run(runs["dev"], tmp_path / "tampered", tamper)
    w = compare_runs(runs["base"], other, tmp_path / "x")["warnings"]
    assert any("prices differ" in x and "co2_price: 380" in x for x in w)
    assert any("scenario was NOT applied" in x for x in w)


# ---------------------------------------------------------------------------------- offset
def test_offset_loss_requirement_gains_and_greedy_selection(runs, tmp_path):
    from gep_raster.analysis.offset import offset_report

    folder = runs["folder"]
    p, et = _inputs(folder)
    base = runs["base"]
    # loss inside the 100-pixel parcel, by hand:
    #   carbon: 9 t CO2/ha/a x 0.09 ha x 100 px x 380 yuan/t = 30,780 yuan/a
    #   air: forest (88.65 kg SO2 x 1.2 + 6 kg NOx x 0.63 + 10,110 kg dust x 0.15) yuan/ha = 1,626.66 yuan/ha/a;
    #        town 0; 9 ha -> 14,639.94 yuan/a
    #   water: max(P(1 - 0.0267) - ET, 0) - max(P(1 - 0.6) - ET, 0), mm x 0.9 m3/mm x 7.06 yuan/m3
    #   soil: the town is not erodible (exclude_ecosystems: urban): the loss is the baseline value
    sl = np.s_[25:35, 20:30]
    wc = float((_wc_yuan(p, et, 0.0267) - _wc_yuan(p, et, 0.6))[sl].sum())
    soil = float(_r(base, "rasters/value/soil_retention_yuan.tif")[sl].sum())
    gep_loss = 30780.0 + 14639.94 + wc + soil
    # gains of C1 and C2 (50 paddy px each -> forest), by hand:
    #   carbon (9 - 1) t x 0.09 ha x 50 px x 380 = 13,680; air (1,626.66 - 205.89) x 4.5 ha = 6,393.465
    #   (paddy: 45 x 1.2 + 3 x 0.63 + 1,000 x 0.15 = 205.89 yuan/ha/a)
    #   soil: RKLS x (1 - CP): (1 - 0.006 x 1)/(1 - 0.15 x 0.15) = 0.994/0.9775 times the baseline
    #   water: alpha 0.10 -> 0.0267
    soil_b = _r(base, "rasters/value/soil_retention_yuan.tif")
    gain = {}
    for cid, cols in (("C1", np.s_[25:35, 2:7]), ("C2", np.s_[25:35, 7:12])):
        gain[cid] = (13680.0 + 6393.465 + float((_wc_yuan(p, et, 0.0267) - _wc_yuan(p, et, 0.10))[cols].sum())
                     + float(soil_b[cols].sum()) * (0.994 / 0.9775 - 1))
    hi, lo = sorted(gain.values(), reverse=True)
    top = max(gain, key=gain.get)
    ratio = (hi + 0.5 * lo) / gep_loss  # requirement between the best gain and the two best: 2 parcels
    rep = offset_report(base, runs["dev"], tmp_path / "off", offset_ratio=ratio, parcel=folder / "parcel.gpkg",
                        candidates=folder / "cands.gpkg", id_field="pid", name_field="pname",
                        restoration=runs["rest"], ratio_source="test")
    loss = {r["key"]: r for r in rep["loss"]["by_service"]}
    assert loss["carbon_sequestration_yuan"]["loss"] == pytest.approx(30780.0, rel=1e-6)
    assert loss["carbon_sequestration_tco2"]["loss"] == pytest.approx(81.0, rel=1e-6)
    assert loss["air_purification_yuan"]["loss"] == pytest.approx(14639.94, rel=1e-6)
    assert loss["water_conservation_yuan"]["loss"] == pytest.approx(wc, rel=1e-5)
    assert loss["soil_retention_yuan"]["loss"] == pytest.approx(soil, rel=1e-6)
    assert rep["loss"]["gep_r_yuan"] == pytest.approx(gep_loss, rel=1e-5)
    assert rep["loss"]["gep_r_yuan_whole_grid"] == pytest.approx(rep["loss"]["gep_r_yuan"], rel=1e-9)
    assert rep["required_compensation_yuan_per_year"] == pytest.approx(rep["loss"]["gep_r_yuan"] * ratio, rel=1e-12)
    assert rep["offset_ratio"] == {"value": ratio, "source": "test", "evidence": "user"}
    tab = pd.read_csv(tmp_path / "off/offset_report.csv", dtype={"pid": str})
    row = tab.set_index("pid")
    for cid in ("C1", "C2"):
        assert row.loc[cid, "gain_gep_r_yuan"] == pytest.approx(gain[cid], rel=1e-5)
        assert row.loc[cid, "gain_carbon_sequestration_yuan"] == pytest.approx(13680.0, rel=1e-6)
        assert row.loc[cid, "gain_air_purification_yuan"] == pytest.approx(6393.465, rel=1e-6)
    assert bool(row.loc["C3", "overlaps_parcel"]) and row.loc["C3", "excluded_reason"] == "overlaps the development parcel"
    assert row.loc["C4", "gain_gep_r_yuan"] == 0 and row.loc["C4", "excluded_reason"] == "gain_gep_r_yuan <= 0"
    assert list(tab["pid"][:2]) == [top, ({"C1", "C2"} - {top}).pop()] and list(tab["rank"]) == [1, 2, 3, 4]
    sel = rep["selection"]
    assert sel["selected"] == [top, ({"C1", "C2"} - {top}).pop()] and sel["covered"]
    assert sel["total_yuan"] == pytest.approx(hi + lo, rel=1e-5)
    assert tab["cumulative_selected_yuan"].iloc[1] == pytest.approx(hi + lo, rel=1e-5)
    # baseline GEP-R of a candidate = the exact-coverage sum of the baseline raster (full pixels here)
    g = _r(base, "rasters/gep_r_yuan.tif")
    assert row.loc["C4", "baseline_gep_r_yuan"] == pytest.approx(g[30:35, 40:45].sum(), rel=1e-6)
    md = (tmp_path / "off/offset_summary.md").read_text()
    assert "Compensation required" in md and top in md
    assert json.loads((tmp_path / "off/offset_report.json").read_text())["selection"]["selected"] == sel["selected"]
    # a larger ratio cannot be covered: shortfall reported
    rep = offset_report(base, runs["dev"], tmp_path / "off2", offset_ratio=10.0, candidates=folder / "cands.gpkg",
                        id_field="pid", restoration=runs["rest"])
    assert not rep["selection"]["covered"] and rep["selection"]["selected"] == sel["selected"]
    assert rep["selection"]["shortfall_yuan"] == pytest.approx(10 * gep_loss - hi - lo, rel=1e-5)
    assert any("cannot cover" in w for w in rep["warnings"])
    # without --parcel the scenario run's own edit polygons are the parcel
    assert rep["parcel"]["grid_area_km2"] == pytest.approx(0.09) and "edits of scenario 'dev'" in rep["parcel"]["source"]


def test_offset_without_restoration_ranks_by_baseline_and_checks_inputs(runs, tmp_path):
    from gep_raster.analysis.offset import offset_report

    folder = runs["folder"]
    rep = offset_report(runs["base"], runs["dev"], tmp_path / "o", offset_ratio=0.1, candidates=folder / "cands.gpkg",
                        id_field="pid")
    assert rep["selection"]["basis"] == "baseline_gep_r_yuan"
    assert any("no restoration run" in w for w in rep["warnings"])
    for bad in (0, -1, float("nan")):
        with pytest.raises(ConfigError, match="offset_ratio: must be a positive number"):
            offset_report(runs["base"], runs["dev"], tmp_path / "o", offset_ratio=bad)
    with pytest.raises(ConfigError, match="--id-field is required"):
        offset_report(runs["base"], runs["dev"], tmp_path / "o", offset_ratio=1, candidates=folder / "cands.gpkg")
    with pytest.raises(VectorError, match=r"--candidates: id field 'nope' not found in .*cands.gpkg"):
        offset_report(runs["base"], runs["dev"], tmp_path / "o", offset_ratio=1, candidates=folder / "cands.gpkg",
                      id_field="nope")
    with pytest.raises(ConfigError, match="has no scenario in its config; give the development parcel with --parcel"):
        offset_report(runs["base"], runs["base"], tmp_path / "o", offset_ratio=1)


def test_select_greedy_is_the_smallest_set():
    from gep_raster.analysis.offset import select_greedy

    ids = ["a", "b", "c", "d", "e"]
    gains = [30.0, 50.0, 20.0, -5.0, 45.0]
    assert select_greedy(ids, gains, 90.0) == (["b", "e"], 95.0, True)
    assert select_greedy(ids, gains, 96.0) == (["b", "e", "a"], 125.0, True)
    assert select_greedy(ids, gains, 90.0, eligible=[True, False, True, True, True]) == (["e", "a", "c"], 95.0, True)
    assert select_greedy(ids, gains, 500.0) == (["b", "e", "a", "c"], 145.0, False)
    assert select_greedy(ids, gains, 0.0) == ([], 0.0, True)


# ---------------------------------------------------------------------------------- VEP
def test_vep_account_and_projection(runs, tmp_path):
    from gep_raster.analysis.vep import annuity_factor, vep_account

    res = vep_account(runs["base"], "special_units", tmp_path / "v", years=3, growth=0.02, discount=0.045)
    units = pd.read_csv(runs["base"] / "tables/special_units.csv")
    v0 = float(units["gep_r_yuan"].iloc[0])
    acc = pd.read_csv(tmp_path / "v/vep_account.csv")
    assert acc["vep_yuan"].iloc[0] == pytest.approx(v0, rel=1e-12)  # no EPV/ECV in the run: VEP = GEP-R
    assert "EPV and ECV not in the run" in res["vep_basis"]
    # A = 1.02/1.045 + (1.02/1.045)^2 + (1.02/1.045)^3 = 0.97607655502 + 0.95272544127 + 0.92993296660
    assert annuity_factor(3, 0.02, 0.045) == pytest.approx(2.85873496289, rel=1e-10)
    assert acc["vep_npv_yuan"].iloc[0] == pytest.approx(v0 * 2.85873496289, rel=1e-10)
    proj = pd.read_csv(tmp_path / "v/vep_projection.csv")
    assert list(proj["t"]) == [1, 2, 3]
    assert proj["value_yuan"].iloc[1] == pytest.approx(v0 * 1.02 ** 2)
    assert proj["present_value_yuan"].iloc[2] == pytest.approx(v0 * 0.92993296660, rel=1e-10)
    assert proj["present_value_yuan"].sum() == pytest.approx(acc["vep_npv_yuan"].iloc[0])
    shares = [c for c in acc.columns if c.startswith("share_") and c != "share_gep_r_pct"]
    assert acc[shares].sum(axis=1).iloc[0] == pytest.approx(100.0, rel=1e-6)
    assert res["projection"]["annuity_factor"] == pytest.approx(2.85873496289)
    assert res["units"]["vep_npv_yuan"] == "yuan" and res["units"]["water_conservation_m3"] == "m3/a"


def test_vep_adds_epv_ecv_and_checks_inputs(runs, tmp_path):
    from gep_raster.analysis.vep import vep_account

    run = _copy_run(runs["base"], tmp_path / "econ", lambda m: None)
    t = pd.read_csv(run / "tables/special_units.csv")
    t["provisioning_yuan"] = 100.0
    t["cultural_yuan"] = 50.0
    t["epv_agriculture_yuan"] = 100.0
    t.to_csv(run / "tables/special_units.csv", index=False)
    vep_account(run, "special_units", tmp_path / "v1")
    acc = pd.read_csv(tmp_path / "v1/vep_account.csv")
    assert acc["vep_yuan"].iloc[0] == pytest.approx(t["gep_r_yuan"].iloc[0] + 150.0)
    t["gep_yuan"] = 12345.0
    t.to_csv(run / "tables/special_units.csv", index=False)
    res = vep_account(run, "special_units", tmp_path / "v2")
    assert res["rows"][0]["vep_yuan"] == 12345.0 and res["vep_basis"].startswith("gep_yuan")
    with pytest.raises(ConfigError, match="layers.county of run .* has role 'admin', not special_unit"):
        vep_account(run, "county", tmp_path / "v3")
    with pytest.raises(ConfigError, match="give all three of --years, --growth and --discount"):
        vep_account(run, "special_units", tmp_path / "v3", years=10)
    with pytest.raises(ConfigError, match="--discount must be a fraction per year > -1"):
        vep_account(run, "special_units", tmp_path / "v3", years=10, growth=0.0, discount=-1.0)
    with pytest.raises(ConfigError, match=r"layer 'nope' is not a layer of run"):
        vep_account(run, "nope", tmp_path / "v3")


# ---------------------------------------------------------------------------------- CLI
def test_cli_commands(runs, tmp_path):
    import typer
    from typer.testing import CliRunner

    from gep_raster.analysis import change, offset, vep

    app = typer.Typer()
    for mod in (change, offset, vep):
        mod.register(app)
    cli = CliRunner()
    r = cli.invoke(app, ["compare", str(runs["base"]), str(runs["dev"]), "-o", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert "gep_r_yuan" in r.output and (tmp_path / "c/change_manifest.json").exists()
    f = runs["folder"]
    args = ["offset", "--baseline", str(runs["base"]), "--scenario", str(runs["dev"]), "--parcel", str(f / "parcel.gpkg"),
            "--restoration", str(runs["rest"]), "--candidates", str(f / "cands.gpkg"), "--id-field", "pid",
            "-o", str(tmp_path / "o")]
    r = cli.invoke(app, args)
    assert r.exit_code == 2 and "--offset-ratio" in r.output  # required, no default
    r = cli.invoke(app, args + ["--offset-ratio", "0.1"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o/offset_report.csv").exists() and (tmp_path / "o/offset_summary.md").exists()
    r = cli.invoke(app, ["vep", str(runs["base"]), "--layer", "special_units", "--years", "20", "--growth", "0.02",
                         "--discount", "0.045", "-o", str(tmp_path / "v")])
    assert r.exit_code == 0, r.output
    assert "VEP-1" in r.output and (tmp_path / "v/vep_projection.csv").exists()
    r = cli.invoke(app, ["vep", str(runs["base"]), "--layer", "county", "-o", str(tmp_path / "v")])
    assert r.exit_code == 2 and "not special_unit" in r.output


# ======================================================================================
# pipelines
# ======================================================================================
def _raw(name):
    return yaml.safe_load((REPO / "pipelines" / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["sample_development.yaml", "sample_restoration.yaml"])
def test_sample_scenario_pipelines_are_the_sample_plus_a_scenario(name):
    """Only name, description, scenario and output.dir may differ from pipelines/sample.yaml (a stale copy
    after a change of sample.yaml fails here: copy the change over)."""
    cfg = load_config(REPO / "pipelines" / name)
    assert cfg.scenario is not None
    a, b = _raw("sample.yaml"), _raw(name)
    for d in (a, b):
        for k in ("name", "description", "scenario"):
            d.pop(k, None)
        d["output"].pop("dir")
    assert a == b


def test_sample_parcels_match_the_development_yaml():
    import geopandas as gpd
    import shapely

    sys.path.insert(0, str(REPO / "pipelines"))
    try:
        import make_sample_parcels as msp
    finally:
        sys.path.remove(str(REPO / "pipelines"))
    edit = _raw("sample_development.yaml")["scenario"]["edits"][0]
    assert shapely.from_wkt(edit["wkt"]).equals(shapely.from_wkt(msp.DEV_PARCEL_WKT))
    dev = gpd.read_file(REPO / "pipelines/data/sample_development_parcel.gpkg")
    assert dev.geometry.iloc[0].equals(shapely.from_wkt(msp.DEV_PARCEL_WKT)) and dev.crs.to_epsg() == 32650
    assert dev.geometry.iloc[0].area == pytest.approx(306000.0)
    towns = gpd.read_file(REPO / "sample_tiles/data/polygons/townships.gpkg")
    assert towns.loc[towns.contains(dev.geometry.iloc[0]), "town_code"].tolist() == ["331122103"]
    cands = gpd.read_file(REPO / "pipelines/data/sample_candidate_parcels.gpkg")
    assert len(cands) == msp.N_CANDIDATES and cands["cand_id"].is_unique
    assert (cands.distance(dev.geometry.iloc[0]) >= 30).all()
    assert not any(cands.geometry.iloc[i].intersects(cands.geometry.iloc[j])
                   for i in range(len(cands)) for j in range(i + 1, len(cands)))


def test_willamette_future_reads_the_future_map_for_both_carbon_maps():
    cfg = load_config(REPO / "pipelines" / "willamette_future.yaml")
    assert cfg.inputs.land_cover.path.endswith("lulc_future_willamette.tif")
    assert cfg.inputs.carbon.alternate_land_cover.path == cfg.inputs.land_cover.path
    a, b = _raw("willamette.yaml"), _raw("willamette_future.yaml")
    for d in (a, b):
        for k in ("name", "description"):
            d.pop(k)
        d["output"].pop("dir")
        d["inputs"].pop("land_cover")
        d["inputs"]["carbon"].pop("alternate_land_cover")
    assert a == b  # same services, legend, prices, layers, economic accounts
