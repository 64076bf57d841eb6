"""Flood regulation and water purification: pixels and regional identities computed by hand.

Flood regulation counts water bodies by default; the vegetation storm term [U] is opt-in
(``vegetation_storm: true``) and bounded per pixel by the water balance:
C_v' = min(C_v, max((P - ET) * A / 1000 - Q_wc, 0)) (m3), Q_wc = water conservation of the pixel (0 when disabled).

Pixel: 30 m x 30 m = 900 m2 = 0.09 ha. Shipped defaults used (gep_raster/data/prices.csv,
parameters.csv): reservoir cost 7.06 yuan/m3; reservoir flood share 0.35; marsh detention depth 0.3 m;
lake regression a = e^6.636 = 762.0407, b = 0.678, T = 1; COD 700, NH3-N 875, TP 2800 yuan/t.

Tiny grid (tests/conftest.py): 40 rows x 50 cols, 30 m, top-left (500000, 3000000), EPSG:32650;
class 2 (paddy) in columns 0-11, class 3 (water) in rows 18-21, class 4 (town) in rows 0-5 x columns
40-49, class 1 (forest) elsewhere, pixel (0, 0) nodata. Class pixel counts: paddy 12*40 - 4*12 - 1 = 431,
water 4*50 = 200, town 6*10 = 60, forest 2000 - 431 - 200 - 60 - 1 = 1308.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import rasterio

from gep_raster.config import load_config
from gep_raster.errors import ConfigError, TableError, VectorError
from gep_raster.services import ServiceModel
from gep_raster.tables import PriceBook, load_legend
from gep_raster.services.registry import required_legend_columns

AREA = np.array([900.0])  # one row of 30 m pixels
OFF = {"water_conservation": {"enabled": False}, "soil_retention": {"enabled": False},
       "carbon_sequestration": {"enabled": False}, "air_purification": {"enabled": False}}

LEGEND = """code,name,ecosystem,storm_runoff_coef,runoff_coef,kc,cod_kg_ha,nh3n_kg_ha,tp_kg_ha,notes
1,broadleaf forest,forest,0.10,0.05,0.8,100,10,1,test [U]
2,paddy,cropland,0.30,0.10,1.1,50,5,0.5,test [U]
3,water,water,0.0,0.0,1.05,500,50,5,test [U]
4,town,urban,0.80,0.60,0.2,0,0,0,test [U]
"""
VEG = {"enabled": True, "vegetation_storm": True}  # opt in to the vegetation storm term


@pytest.fixture
def legend_cfg(tiny):
    """The tiny run with a legend carrying the flood and water-purification columns."""
    (tiny.parent / "legend_fw.csv").write_text(LEGEND)
    text = tiny.read_text().replace("legend: {path: legend.csv}", "legend: {path: legend_fw.csv}")
    p = tiny.parent / "fw.yaml"
    p.write_text(text)
    return p


def model_for(cfg_path, services, class_area_m2=None):
    cfg = load_config(cfg_path, overrides={"services": {**OFF, **services}})
    legend = load_legend(cfg, required_legend_columns(cfg))
    book = PriceBook.from_config(cfg)
    return ServiceModel.from_config(cfg, legend, book, cell_size=30.0, geographic=False,
                                    class_area_m2=class_area_m2), cfg


def lc_block(codes, precip=None, et=None):
    b = {"lc": np.array([codes], np.int32)}
    if precip is not None:
        b["precip"] = np.array([precip], np.float32)
        b["et"] = np.array([et], np.float32)
    return b


# ----------------------------------------------------------------------------------- flood, vegetation
def test_flood_vegetation_constant_storm_precip(legend_cfg):
    model, _ = model_for(legend_cfg, {"flood_regulation": {**VEG, "storm_precip_mm": 200}})
    assert {"precip", "et"} <= set(model.input_keys())  # the water-balance bound reads P and ET
    # P = 1600, ET = 850 mm everywhere; water conservation disabled -> room = (1600 - 850) * 900 / 1000 = 675 m3
    out = model.compute_block(lc_block([1, 2, 3, 4, -1], [1600.0] * 5, [850.0] * 5), AREA)
    q = out["flood_regulation_m3"][0]
    # forest: c_s = 0.10 -> R = 0.10 * 200 = 20 mm; retained 200 - 20 = 180 mm * 900 m2 / 1000 = 162 m3 (< 675: kept)
    assert q[0] == pytest.approx(162.0, rel=1e-6)
    # value: 162 * 7.06 = 1143.72 yuan
    assert out["flood_regulation_yuan"][0, 0] == pytest.approx(1143.72, rel=1e-6)
    # paddy (cropland), water, town are not vegetation ecosystems by default -> 0; nodata -> NaN
    assert q[1:4].tolist() == [0.0, 0.0, 0.0]
    assert np.isnan(q[4])
    assert out["gep_r_yuan"][0, 0] == pytest.approx(1143.72, rel=1e-6)
    assert out["flood_regulation_water_bodies_m3"][0, :4].tolist() == [0.0] * 4
    # the bound did not bind anywhere
    assert out["flood_regulation_capped_m3"][0, :4].tolist() == [0.0] * 4
    assert out["flood_regulation_capped_px"][0, :4].tolist() == [0.0] * 4
    assert np.isnan(out["flood_regulation_capped_m3"][0, 4])
    a = model.assumptions
    assert any("[U]" in x and "vegetation_storm" in x and "P - ET" in x for x in a)
    assert "bounded by the water balance" in model.notes["flood_regulation"]


def test_flood_vegetation_raster_and_ecosystem_list(legend_cfg, tmp_path):
    from conftest import write_raster

    write_raster(legend_cfg.parent / "storm.tif", np.full((40, 50), 150, np.float32), nodata=-9999.0)
    model, _ = model_for(legend_cfg, {"flood_regulation": {
        **VEG, "storm_precip_raster": {"path": "storm.tif"}, "vegetation_ecosystems": ["forest", "cropland"]}})
    assert "flood_storm_precip" in model.input_keys()
    b = lc_block([1, 2, 1, 2, 3], [1600.0] * 5, [850.0] * 5)
    b["flood_storm_precip"] = np.array([[150.0, 150.0, np.nan, np.nan, 150.0]], np.float32)
    q = model.compute_block(b, AREA)["flood_regulation_m3"][0]
    # forest: 150 * (1 - 0.10) = 135 mm * 900 / 1000 = 121.5 m3
    # paddy now counted (cropland listed): 150 * (1 - 0.30) = 105 mm -> 94.5 m3 (both < room 675 m3)
    assert q[0] == pytest.approx(121.5, rel=1e-6)
    assert q[1] == pytest.approx(94.5, rel=1e-6)
    # no storm precipitation on vegetation pixels -> NaN; water (not vegetation) -> 0
    assert np.isnan(q[2]) and np.isnan(q[3])
    assert q[4] == 0.0


def test_flood_default_counts_water_bodies_only(legend_cfg):
    """Default: no vegetation term. Water bodies only: a forest pixel outside them is 0; the block does not
    read P, ET or a storm depth; no capped diagnostics."""
    write_water_bodies(legend_cfg.parent)
    model, _ = model_for(legend_cfg, {"flood_regulation": {"enabled": True, "water_bodies": WATER}})
    assert model.input_keys() == ["lc", "flood_water_bodies_m3"]
    assert "flood_regulation_capped_m3" not in model.output_keys
    assert not any("vegetation storm" in x for x in model.assumptions)
    b = lc_block([1, 1, 2, -1])
    b["flood_water_bodies_m3"] = np.array([[0.0, 4375.0, 0.0, 0.0]], np.float32)
    out = model.compute_block(b, AREA)
    q = out["flood_regulation_m3"][0]
    # forest outside any water body: 0 (no vegetation term); inside the reservoir: its share 4,375 m3
    assert q[0] == 0.0 and q[1] == pytest.approx(4375.0) and q[2] == 0.0 and np.isnan(q[3])
    assert out["flood_regulation_vegetation_m3"][0, :3].tolist() == [0.0] * 3
    # 4375 * 7.06 = 30,887.5 yuan
    assert out["flood_regulation_yuan"][0, 1] == pytest.approx(30887.5, rel=1e-6)
    assert "vegetation storm retention" not in model.notes["flood_regulation"]


def test_flood_bound_without_water_conservation(legend_cfg):
    """Water conservation disabled: C_v' = min(C_v, max((P - ET) * A / 1000, 0))."""
    model, _ = model_for(legend_cfg, {"flood_regulation": {**VEG, "storm_precip_mm": 200}})
    # forest C_v = 162 m3 on every pixel (test above)
    # px0: P 1000, ET 900 -> room 100 mm * 0.9 = 90 m3 < 162 -> 90 m3, cut 72 m3
    # px1: P 800, ET 900 -> P - ET < 0 -> room 0 -> 0 m3, cut 162
    # px2: P 1100, ET 900 -> room 180 m3 >= 162 -> 162, cut 0
    # px3: P NaN -> the bound cannot be evaluated -> NaN (not a silent 0)
    # px4: paddy (no vegetation term) with P NaN -> 0: nothing to bound
    b = lc_block([1, 1, 1, 1, 2], [1000.0, 800.0, 1100.0, np.nan, np.nan], [900.0] * 5)
    out = model.compute_block(b, AREA)
    q, cut = out["flood_regulation_m3"][0], out["flood_regulation_capped_m3"][0]
    px = out["flood_regulation_capped_px"][0]
    assert q[:3].tolist() == pytest.approx([90.0, 0.0, 162.0], rel=1e-6)
    assert cut[:3].tolist() == pytest.approx([72.0, 162.0, 0.0], rel=1e-6)
    assert px[:3].tolist() == [1.0, 1.0, 0.0]
    assert np.isnan(q[3]) and np.isnan(cut[3])
    assert q[4] == 0.0 and cut[4] == 0.0
    # value of px0: 90 * 7.06 = 635.4 yuan
    assert out["flood_regulation_yuan"][0, 0] == pytest.approx(635.4, rel=1e-6)
    assert "water conservation is disabled: P - ET alone" in model.notes["flood_regulation"]


def test_flood_bound_with_water_conservation(legend_cfg):
    """Water conservation enabled (water balance, forest alpha = 0.05): the flood room is what water
    conservation left of P - ET, so water conservation + flood = (P - ET) * A / 1000 where the bound binds."""
    model, _ = model_for(legend_cfg, {"water_conservation": {"enabled": True},
                                      "flood_regulation": {**VEG, "storm_precip_mm": 200}})
    assert model.names == ["water_conservation", "flood_regulation"]  # registry order: WC first
    # P 1600, ET 850: WC = (1600 - 0.05 * 1600 - 850) = 670 mm * 0.9 = 603 m3
    #   room = (1600 - 850) * 0.9 - 603 = 675 - 603 = 72 m3 (= alpha * P * A = 80 mm * 0.9) < C_v 162 -> 72, cut 90
    # P 2500, ET 850: WC = (2500 - 125 - 850) = 1525 mm -> 1372.5 m3; room = 1650 * 0.9 - 1372.5 = 112.5 m3 -> 112.5
    # P 800, ET 850: WC clipped to 0; room = max(-50 * 0.9 - 0, 0) = 0 -> flood 0, cut 162
    b = lc_block([1, 1, 1], [1600.0, 2500.0, 800.0], [850.0] * 3)
    out = model.compute_block(b, AREA)
    wc, q = out["water_conservation_m3"][0], out["flood_regulation_m3"][0]
    assert wc.tolist() == pytest.approx([603.0, 1372.5, 0.0], rel=1e-6)
    assert q.tolist() == pytest.approx([72.0, 112.5, 0.0], rel=1e-6)
    assert out["flood_regulation_capped_m3"][0].tolist() == pytest.approx([90.0, 49.5, 162.0], rel=1e-6)
    # WC + flood <= max(P - ET, 0) * A / 1000: 675 = 675, 1485 = 1485, 0 <= 0
    assert (wc + q).tolist() == pytest.approx([675.0, 1485.0, 0.0], rel=1e-6)
    # GEP-R px0: (603 + 72) * 7.06 = 4765.5 yuan
    assert out["gep_r_yuan"][0, 0] == pytest.approx(4765.5, rel=1e-6)
    assert "water_conservation_m3" in model.notes["flood_regulation"]


def test_flood_bound_with_et0_and_kc(legend_cfg):
    """inputs.et0 and water conservation disabled: ET = Kc * ET0 (forest Kc 0.8) in the bound."""
    p = legend_cfg.parent / "fw_et0.yaml"
    p.write_text(legend_cfg.read_text().replace("et: {path: et.tif}", "et0: {path: et.tif}"))
    model, _ = model_for(p, {"flood_regulation": {**VEG, "storm_precip_mm": 200}})
    # P 900, ET0 1000 -> ET = 800 mm; room = 100 mm * 0.9 = 90 m3 < 162 -> 90
    out = model.compute_block(lc_block([1], [900.0], [1000.0]), AREA)
    assert out["flood_regulation_m3"][0, 0] == pytest.approx(90.0, rel=1e-6)


def test_flood_config_errors(legend_cfg, tiny):
    # enabled with nothing to count: refused (a service that silently gives 0 everywhere is not what a user wants)
    with pytest.raises(ConfigError, match="nothing to count"):
        model_for(legend_cfg, {"flood_regulation": {"enabled": True}})
    # a storm depth without the opt-in: refused, naming the key and how to opt in
    with pytest.raises(ConfigError) as e:
        model_for(legend_cfg, {"flood_regulation": {"enabled": True, "storm_precip_mm": 560}})
    msg = str(e.value)
    assert "services.flood_regulation.storm_precip_mm" in msg and "vegetation_storm: true" in msg
    assert "water_bodies" in msg
    with pytest.raises(ConfigError, match="services.flood_regulation.vegetation_ecosystems"):
        model_for(legend_cfg, {"flood_regulation": {"enabled": True, "water_bodies": WATER,
                                                    "vegetation_ecosystems": ["forest"]}})
    # opted in without a storm depth
    with pytest.raises(ConfigError, match="needs the storm rainfall depth"):
        model_for(legend_cfg, {"flood_regulation": VEG})
    with pytest.raises(ConfigError, match="not both"):
        model_for(legend_cfg, {"flood_regulation": {**VEG, "storm_precip_mm": 100,
                                                    "storm_precip_raster": {"path": "p.tif"}}})
    # a disabled service with a stale storm key is accepted (nothing is computed)
    model_for(legend_cfg, {"flood_regulation": {"enabled": False, "storm_precip_mm": 100},
                           "water_purification": {"enabled": True}})
    # the bound needs P and ET
    p = legend_cfg.parent / "fw_noet.yaml"
    p.write_text(legend_cfg.read_text().replace("  et: {path: et.tif}\n", ""))
    with pytest.raises(ConfigError, match="vegetation_storm: true needs inputs.et"):
        model_for(p, {"flood_regulation": {**VEG, "storm_precip_mm": 100}})
    # the shipped tiny legend has no storm_runoff_coef column
    with pytest.raises(TableError, match="storm_runoff_coef"):
        model_for(tiny, {"flood_regulation": {**VEG, "storm_precip_mm": 100}})


def test_flood_bound_end_to_end_tiny(legend_cfg):
    """A run with water conservation + opted-in flood: on every forest pixel WC + flood = (P - ET) * A / 1000
    (the bound binds: alpha * P * A < C_v), checked against the input rasters read with rasterio."""
    from gep_raster.pipeline import run

    cfg = load_config(legend_cfg, overrides={"services": {
        **OFF, "water_conservation": {"enabled": True}, "flood_regulation": {**VEG, "storm_precip_mm": 200}}})
    res = run(cfg, progress=False)
    with rasterio.open(legend_cfg.parent / "p.tif") as ds:
        P = ds.read(1).astype(np.float64)
    with rasterio.open(legend_cfg.parent / "et.tif") as ds:
        ET = ds.read(1).astype(np.float64)
    with rasterio.open(legend_cfg.parent / "lc.tif") as ds:
        forest = ds.read(1) == 1
    wc, q = read(res, "water_conservation_m3"), read(res, "flood_regulation_m3")
    # tiny: P ~ 1500..1600 mm, ET 800..839 mm; forest alpha 0.05 -> WC = (0.95 P - ET) * 0.9 > 0, room = 0.05 P * 0.9
    #   (~70 m3) < C_v = 162 m3 -> flood = 0.045 * P on every forest pixel; cut = 162 - 0.045 * P
    np.testing.assert_allclose(q[forest], 0.05 * P[forest] * 0.9, rtol=1e-5)
    np.testing.assert_allclose((wc + q)[forest], (P - ET)[forest] * 0.9, rtol=1e-5)
    t = res.manifest["totals"]
    assert t["flood_regulation_capped_px"]["sum"] == pytest.approx(1308)  # all forest pixels (module docstring)
    assert t["flood_regulation_capped_m3"]["sum"] == pytest.approx((162.0 - 0.045 * P[forest]).sum(), rel=1e-5)
    assert t["flood_regulation_m3"]["sum"] == pytest.approx(0.045 * P[forest].sum(), rel=1e-5)
    assert any("vegetation storm retention" in a and "[U]" in a for a in res.manifest["assumptions"])


@pytest.mark.realdata
def test_flood_bound_on_a_real_gura_block(shared):
    """Real Gura inputs (CHELSA P, Kc * ET0, InVEST legend), flood opted in with the 560 mm of the issue: on every
    pixel of the grid (603 x 1939) water conservation + flood <= max(P - ET, 0) * A / 1000, and the bound binds on
    every forest and grass pixel (without it, WC + flood exceeded the P - ET surplus there: the reported issue)."""
    import pathlib

    from gep_raster.grid.run_inputs import open_inputs, reference_grid

    repo = pathlib.Path(__file__).resolve().parents[1]
    off = {k: {"enabled": False} for k in ("soil_retention", "carbon_sequestration", "oxygen_release",
                                           "air_purification", "water_purification", "climate_regulation")}
    cfg = load_config(repo / "pipelines/gura.yaml", overrides={"services": {
        **off, "water_conservation": {"enabled": True},
        "flood_regulation": {**VEG, "storm_precip_mm": 560}}})
    grid = reference_grid(cfg)
    legend = load_legend(cfg, required_legend_columns(cfg))
    model = ServiceModel.from_config(cfg, legend, PriceBook.from_config(cfg), cell_size=15.0, geographic=False)
    src = open_inputs(cfg, grid, model.input_keys(), model.input_requests())
    blocks = {k: src[k].read_all() for k in model.input_keys()}
    area = grid.row_pixel_area_m2
    out = model.compute_block(blocks, area)
    wc, q = out["water_conservation_m3"].astype(np.float64), out["flood_regulation_m3"].astype(np.float64)
    surplus = (out["precipitation_mm"].astype(np.float64) - out["et_mm"]) * area[:, None] / 1000.0
    ok = np.isfinite(wc) & np.isfinite(q)
    assert ok.sum() > 400_000
    assert np.all(wc[ok] + q[ok] <= np.maximum(surplus[ok], 0.0) * (1 + 1e-5) + 1e-3)
    cut = out["flood_regulation_capped_m3"]
    lc = blocks["lc"]
    veg_px = ok & np.isin(lc, [3, 8, 11])  # grass, forest, forest plantation (gura_legend.csv ecosystems)
    assert veg_px.sum() > 150_000
    assert np.all(cut[veg_px] > 0)  # 560 mm x (1 - c_s) exceeds what water conservation leaves on every one
    # there the flood is exactly the rest of the surplus: alpha * P * A / 1000 (WC = (P - alpha P - ET) A / 1000)
    np.testing.assert_allclose((wc + q)[veg_px], surplus[veg_px], rtol=1e-4)
    # unbounded: C_v = 560 * (1 - c_s) * A / 1000 -> WC + C_v above the surplus on the cut pixels
    veg = out["flood_regulation_vegetation_m3"].astype(np.float64) + cut
    assert np.all((wc + veg)[ok & (cut > 0)] > surplus[ok & (cut > 0)] - 1e-3)


# ----------------------------------------------------------------------------------- water purification
def test_water_purification_capacity_pixel(legend_cfg):
    model, _ = model_for(legend_cfg, {"water_purification": {"enabled": True}})
    out = model.compute_block(lc_block([1, 3, -1]), AREA)
    # forest: COD 100 kg/ha * 0.09 ha = 9 kg = 0.009 t; NH3-N 10 * 0.09 = 0.9 kg = 0.0009 t; TP 0.00009 t
    assert out["water_purification_cod_t"][0, 0] == pytest.approx(0.009, rel=1e-6)
    assert out["water_purification_nh3n_t"][0, 0] == pytest.approx(0.0009, rel=1e-6)
    assert out["water_purification_tp_t"][0, 0] == pytest.approx(0.00009, rel=1e-6)
    # value = 0.009 * 700 + 0.0009 * 875 + 0.00009 * 2800 = 6.3 + 0.7875 + 0.252 = 7.3395 yuan
    assert out["water_purification_yuan"][0, 0] == pytest.approx(7.3395, rel=1e-6)
    # water: COD 500 * 0.09 = 45 kg = 0.045 t
    assert out["water_purification_cod_t"][0, 1] == pytest.approx(0.045, rel=1e-6)
    assert np.isnan(out["water_purification_cod_t"][0, 2])


def test_water_purification_cap_scales_pixels(legend_cfg):
    areas = {1: 1.0e6, 3: 2.0e5}  # 100 ha forest, 20 ha water
    model, _ = model_for(legend_cfg, {"water_purification": {
        "enabled": True, "pollutants": ["cod", "nh3n"], "emissions_cap": {"cod_t": 5.0, "nh3n_t": 10.0}}},
        class_area_m2=areas)
    svc = model.service("water_purification")
    # COD capacity = (100 kg/ha * 100 ha + 500 * 20) kg = 20,000 kg = 20 t > 5 t -> scale 5 / 20 = 0.25
    assert svc.scalars["cod_capacity_t"] == pytest.approx(20.0)
    assert svc.scalars["cod_scale"] == pytest.approx(0.25)
    # NH3-N capacity = (10 * 100 + 50 * 20) kg = 2 t <= 10 t -> not capped
    assert svc.scalars["nh3n_scale"] == 1.0
    assert "capped" in svc.flags["regime"]["cod"] and "capacity" in svc.flags["regime"]["nh3n"]
    out = model.compute_block(lc_block([1]), AREA)
    # forest pixel: COD 0.009 t * 0.25 = 0.00225 t; NH3-N 0.0009 t
    assert out["water_purification_cod_t"][0, 0] == pytest.approx(0.00225, rel=1e-6)
    assert out["water_purification_nh3n_t"][0, 0] == pytest.approx(0.0009, rel=1e-6)
    # value = 0.00225 * 700 + 0.0009 * 875 = 1.575 + 0.7875 = 2.3625 yuan
    assert out["water_purification_yuan"][0, 0] == pytest.approx(2.3625, rel=1e-6)
    # a cap without class areas cannot be applied: refused at compute time, never silently skipped
    model2, _ = model_for(legend_cfg, {"water_purification": {"enabled": True, "emissions_cap": {"cod_t": 5.0}}})
    with pytest.raises(ConfigError, match="class areas"):
        model2.compute_block(lc_block([1]), AREA)
    with pytest.raises(ConfigError, match="tp_t"):
        model_for(legend_cfg, {"water_purification": {"enabled": True, "pollutants": ["cod"],
                                                      "emissions_cap": {"tp_t": 1.0}}})


# ----------------------------------------------------------------------------------- end to end
X0, Y1 = 500000.0, 3000000.0


def write_water_bodies(folder, extra=None):
    """Five bodies; ids, types, capacities and geometries chosen so each total is known by hand."""
    import geopandas as gpd
    import shapely

    rows = [
        # reservoir over the water rows 18-21 (y 2999340..2999460), x 500100.5..500700.5: partial edge columns
        ("R1", "水库", 1.0e6, shapely.box(X0 + 100.5, Y1 - 660, X0 + 700.5, Y1 - 540)),
        # lake 300 m x 300 m = 0.09 km2 in the forest, x 500900.25..501200.25, y 2999100..2999400
        ("L1", "lake", None, shapely.box(X0 + 900.25, Y1 - 900, X0 + 1200.25, Y1 - 600)),
        # marsh 60 m x 45 m = 2,700 m2 over paddy pixels (rows 35-36, columns 1-3)
        ("M1", "Marsh", None, shapely.box(X0 + 30.5, Y1 - 1100, X0 + 90.5, Y1 - 1055)),
        # marsh 60 m x 30 m over pixel (0, 0) (nodata) and pixel (0, 1) (paddy)
        ("M2", "marsh", None, shapely.box(X0, Y1 - 30, X0 + 60, Y1)),
        # lake outside the grid: not counted
        ("L2", "lake", None, shapely.box(X0 + 5000, Y1 + 5000, X0 + 5300, Y1 + 5300)),
    ]
    rows += extra or []
    gdf = gpd.GeoDataFrame({"wid": [r[0] for r in rows], "kind": [r[1] for r in rows],
                            "storage": [r[2] for r in rows]}, geometry=[r[3] for r in rows], crs="EPSG:32650")
    gdf.to_file(folder / "water.gpkg")
    return folder / "water.gpkg"


WATER = {"path": "water.gpkg", "id_field": "wid", "type_field": "kind", "capacity_field": "storage",
         "type_map": {"水库": "reservoir"}}

LAKE_A = math.exp(6.636)  # 762.0407
# lake L1: A = 0.09 km2; 0.09^0.678 = exp(0.678 * ln 0.09) = exp(0.678 * -2.4079456) = exp(-1.6325871) = 0.1954233
LAKE_L1_M3 = LAKE_A * 0.09 ** 0.678 * 1 * 1e4  # 762.0407 * 0.1954233 = 148.9205 (10^4 m3) = 1,489,205 m3
RES_R1_M3 = 0.35 * 1.0e6  # 350,000 m3
MARSH_M1_M3 = 0.3 * 2700.0  # 810 m3
MARSH_M2_M3 = 0.3 * 1800.0  # 540 m3, all on pixel (0, 1): pixel (0, 0) is nodata


@pytest.fixture
def run_fw(legend_cfg):
    from gep_raster.pipeline import run

    write_water_bodies(legend_cfg.parent)
    cfg = load_config(legend_cfg, overrides={"services": {
        **OFF,
        "flood_regulation": {"enabled": True, "water_bodies": WATER},
        "water_purification": {"enabled": True, "emissions_cap": {"cod_t": 10.0, "nh3n_t": 5.0}}}})
    res = run(cfg, progress=False)
    return res, cfg


def read(res, key):
    m = json.loads(res.manifest_path.read_text())
    path = next(o["path"] for o in m["outputs"] if o["path"].endswith(f"/{key}.tif"))
    with rasterio.open(res.output_dir / path) as ds:
        return ds.read(1).astype(np.float64)


def test_flood_water_bodies_end_to_end(run_fw):
    res, _ = run_fw
    assert LAKE_L1_M3 == pytest.approx(1489205.4, rel=1e-6)
    q = read(res, "flood_regulation_m3")
    # reservoir R1 covers rows 18-21, columns 3 (from x = 100.5: 3.35 px) .. 23 (to 700.5: 23.35 px):
    # its pixels add up to 0.35 * 1,000,000 = 350,000 m3 exactly (spread identity)
    assert q[18:22, 3:24].sum() == pytest.approx(RES_R1_M3, rel=1e-6)
    # inner pixel: 350,000 m3 * 900 m2 / (600 m * 120 m = 72,000 m2) = 4,375 m3
    assert q[19, 10] == pytest.approx(4375.0, rel=1e-6)
    # edge pixel column 3 covered 65 % (x 100.5..120): 4375 * 19.5/30 = 2,843.75 m3
    assert q[19, 3] == pytest.approx(2843.75, rel=1e-5)
    # lake L1 covers rows 20..29 (y 2999400..2999100), columns 30..40 (x 900.25..1200.25)
    assert q[20:30, 30:41].sum() == pytest.approx(LAKE_L1_M3, rel=1e-6)
    # marsh M1 (rows 35-36, columns 1-3): 0.3 m * 2,700 m2 = 810 m3
    assert q[35:37, 1:4].sum() == pytest.approx(MARSH_M1_M3, rel=1e-6)
    # marsh M2: pixel (0, 0) is nodata -> whole 540 m3 on pixel (0, 1)
    assert np.isnan(q[0, 0])
    assert q[0, 1] == pytest.approx(MARSH_M2_M3, rel=1e-6)
    # nothing else (no vegetation part configured); L2 is outside the grid
    total = RES_R1_M3 + LAKE_L1_M3 + MARSH_M1_M3 + MARSH_M2_M3
    assert np.nansum(q) == pytest.approx(total, rel=1e-6)
    v = read(res, "flood_regulation_yuan")
    assert np.nansum(v) == pytest.approx(total * 7.06, rel=1e-6)
    m = json.loads(res.manifest_path.read_text())
    assert m["totals"]["flood_regulation_m3"]["sum"] == pytest.approx(total, rel=1e-6)
    note = m["methods"]["flood_regulation"]
    assert "Qinghai-Tibet" in note and "NOT COUNTED" in note and "L2" in note
    used = {p["key"] for p in m["parameters"]}
    assert {"flood_regulation.lake_coef_a", "flood_regulation.reservoir_flood_share",
            "flood_regulation.marsh_detention_depth"} <= used
    tab = pd.read_csv(res.output_dir / "tables" / "flood_regulation_water_bodies.csv", encoding="utf-8-sig")
    tab = tab.set_index("wid")
    assert tab.loc["R1", "type"] == "reservoir"
    assert tab.loc["R1", "volume_m3"] == pytest.approx(RES_R1_M3)
    assert tab.loc["L1", "volume_m3"] == pytest.approx(LAKE_L1_M3, rel=1e-9)
    assert tab.loc["L2", "volume_in_run_m3"] == 0.0
    assert tab.loc["M2", "valid_area_km2"] == pytest.approx(900e-6)


def test_water_purification_cap_end_to_end(run_fw):
    res, _ = run_fw
    ha = 0.09
    # COD capacity = (1308 * 100 + 431 * 50 + 200 * 500 + 60 * 0) kg/ha * 0.09 ha * 1e-3
    #              = 252,350 * 9e-5 = 22.7115 t > emissions 10 t -> total = 10 t exactly
    cod_cap = (1308 * 100 + 431 * 50 + 200 * 500) * ha * 1e-3
    assert cod_cap == pytest.approx(22.7115)
    cod = read(res, "water_purification_cod_t")
    assert np.nansum(cod) == pytest.approx(10.0, rel=1e-6)
    # NH3-N capacity = (1308 * 10 + 431 * 5 + 200 * 50) * 9e-5 = 25,235 * 9e-5 = 2.27115 t < 5 t -> capacity
    nh3n = read(res, "water_purification_nh3n_t")
    assert np.nansum(nh3n) == pytest.approx(2.27115, rel=1e-6)
    # TP not capped: (1308 * 1 + 431 * 0.5 + 200 * 5) * 9e-5 = 2,523.5 * 9e-5 = 0.227115 t
    tp = read(res, "water_purification_tp_t")
    assert np.nansum(tp) == pytest.approx(0.227115, rel=1e-6)
    # a forest pixel: COD 0.009 t * (10 / 22.7115) = 0.0039627 t
    assert cod[10, 20] == pytest.approx(0.009 * 10 / 22.7115, rel=1e-6)
    v = read(res, "water_purification_yuan")
    assert np.nansum(v) == pytest.approx(10 * 700 + 2.27115 * 875 + 0.227115 * 2800, rel=1e-6)
    note = json.loads(res.manifest_path.read_text())["methods"]["water_purification"]
    assert "COD: capped" in note and "NH3-N: capacity" in note and "TP: capacity (no emissions cap)" in note


def test_water_body_options_and_errors(legend_cfg):
    import shapely

    folder = legend_cfg.parent
    write_water_bodies(folder)
    # user lake coefficients: C_l = 100 * 0.09^1 * 2 * 1e4 = 180,000 m3
    model, cfg = model_for(legend_cfg, {"flood_regulation": {"enabled": True, "water_bodies": {
        **WATER, "lake_coef_a": 100.0, "lake_exponent_b": 1.0, "lake_renewals_T": 2.0}}})
    tab = pd.read_csv(cfg.output_dir / "tables" / "flood_regulation_water_bodies.csv",
                      encoding="utf-8-sig").set_index("wid")
    assert tab.loc["L1", "volume_m3"] == pytest.approx(180000.0)
    assert "Qinghai-Tibet" not in model.notes["flood_regulation"]
    # capacity given in 10^4 m3: 100 x 10^4 m3 * 0.35 = 350,000 m3
    write_water_bodies(folder)
    import geopandas as gpd

    g = gpd.read_file(folder / "water.gpkg")
    g.loc[g.wid == "R1", "storage"] = 100.0
    g.to_file(folder / "water.gpkg")
    model_for(legend_cfg, {"flood_regulation": {"enabled": True,
                                                "water_bodies": {**WATER, "capacity_unit": "1e4_m3"}}})
    tab = pd.read_csv(cfg.output_dir / "tables" / "flood_regulation_water_bodies.csv",
                      encoding="utf-8-sig").set_index("wid")
    assert tab.loc["R1", "volume_m3"] == pytest.approx(350000.0)
    # unknown type
    write_water_bodies(folder, extra=[("X1", "pond", None, shapely.box(X0, Y1 - 300, X0 + 30, Y1 - 270))])
    with pytest.raises(VectorError, match="X1: 'pond'"):
        model_for(legend_cfg, {"flood_regulation": {"enabled": True, "water_bodies": WATER}})
    # reservoirs without a capacity field
    write_water_bodies(folder)
    wb = {k: v for k, v in WATER.items() if k != "capacity_field"}
    with pytest.raises(ConfigError, match="capacity_field"):
        model_for(legend_cfg, {"flood_regulation": {"enabled": True, "water_bodies": wb}})
    with pytest.raises(VectorError, match="id_field: field 'nope'"):
        model_for(legend_cfg, {"flood_regulation": {"enabled": True, "water_bodies": {**WATER, "id_field": "nope"}}})


def test_numpy_equals_dask_for_odd_chunkings(legend_cfg):
    """The water-body volumes are read back from the cache raster window by window: any chunking gives
    the same pixels (and the capped water purification does not depend on the chunking either)."""
    from conftest import model_numpy_equals_dask
    from gep_raster.grid.run_inputs import class_histogram, open_inputs, reference_grid

    write_water_bodies(legend_cfg.parent)
    cfg = load_config(legend_cfg, overrides={"services": {
        **OFF, "flood_regulation": {**VEG, "storm_precip_mm": 200, "water_bodies": WATER},
        "water_purification": {"enabled": True, "emissions_cap": {"cod_t": 10.0}}}})
    grid = reference_grid(cfg)
    legend = load_legend(cfg, required_legend_columns(cfg))
    src0 = open_inputs(cfg, grid, ["lc"])
    _, areas = class_histogram(src0["lc"], 64, with_area=True)
    model = ServiceModel.from_config(cfg, legend, PriceBook.from_config(cfg), cell_size=30.0, geographic=False,
                                     class_area_m2=areas)
    src = open_inputs(cfg, grid, model.input_keys(), model.input_requests())
    ref = model_numpy_equals_dask(model, src, grid, [(7, 5), (13, 11), (40, 50)])
    # reservoir identity on the numpy path too
    assert ref["flood_regulation_water_bodies_m3"][18:22, 3:24].sum(dtype=np.float64) == pytest.approx(RES_R1_M3,
                                                                                                     rel=1e-6)


def test_validate_writes_nothing_into_the_output_folder(legend_cfg):
    from gep_raster.validation import validate

    write_water_bodies(legend_cfg.parent)
    cfg = load_config(legend_cfg, overrides={"services": {
        **OFF, "flood_regulation": {"enabled": True, "water_bodies": WATER}}})
    out = cfg.output_dir
    before = sorted(p.relative_to(out) for p in out.rglob("*")) if out.exists() else []
    rep = validate(cfg)
    assert not rep.problems, rep.problems
    after = sorted(p.relative_to(out) for p in out.rglob("*")) if out.exists() else []
    assert after == before  # no .gep_state/flood_regulation raster, no water-body table
    # the run itself still writes its cache raster and the table
    from gep_raster.pipeline import run

    res = run(cfg, progress=False)
    assert (res.output_dir / ".gep_state" / "flood_regulation" / "water_bodies_m3.tif").exists()
    assert (res.output_dir / "tables" / "flood_regulation_water_bodies.csv").exists()
