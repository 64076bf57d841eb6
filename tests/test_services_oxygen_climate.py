"""Oxygen release and climate regulation: pixels computed by hand (arithmetic in the comments).

Pixel: 30 m x 30 m = 900 m2 = 0.09 ha (the ``tiny`` fixture). Shipped defaults used here:
O2 price 727 yuan/t [V], O2/CO2 = 32/44 [V-calc], CO2 price 380 yuan/t [V]; electricity
0.53 yuan/kWh [V], latent heat q = 2450 kJ/kg [V2], EER r = 3.0 [U], humidifier gamma = 120 kWh/m3 [V2],
hot-season ET factor f = 1.0 [U].
Tiny legend: 1 forest (kc 1.0, 9.0 t CO2/ha/a), 2 paddy = cropland (kc 1.1), 3 water (kc 1.05), 4 town = urban.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from gep_raster.config import load_config
from gep_raster.errors import ConfigError, RasterError
from gep_raster.services import ServiceModel
from gep_raster.tables import PriceBook, load_legend
from gep_raster.services.registry import required_legend_columns

from conftest import write_raster

AREA = np.array([900.0])  # one row of 30 m pixels
OFF = {"water_conservation": {"enabled": False}, "soil_retention": {"enabled": False},
       "carbon_sequestration": {"enabled": False}, "air_purification": {"enabled": False}}


def model_for(cfg_path, **over):
    cfg = load_config(cfg_path, overrides=over or None)
    legend = load_legend(cfg, required_legend_columns(cfg))
    book = PriceBook.from_config(cfg)
    return ServiceModel.from_config(cfg, legend, book, cell_size=30.0, geographic=False), cfg


def climate_model(cfg_path, **climate):
    """Only climate regulation enabled (the block then needs lc, et and maybe hot days)."""
    return model_for(cfg_path, services={**OFF, "climate_regulation": {"enabled": True, **climate}})


def block(**kw):
    out = {}
    for k, v in kw.items():
        dt = np.int32 if k in ("lc", "lc_alt") else np.float32
        out[k] = np.array([v], dtype=dt).reshape(1, -1)
    return out


def variant(tiny, old, new, name):
    p = tiny.parent / name
    text = tiny.read_text()
    assert old in text
    p.write_text(text.replace(old, new))
    return p


# ------------------------------------------------------------------------------------- oxygen release
def test_oxygen_is_32_44_of_carbon_on_the_same_pixel(tiny):
    model, _ = model_for(tiny, services={"oxygen_release": {"enabled": True}})
    # forest: carbon 9.0 t CO2/ha/a * 0.09 ha = 0.81 t CO2/a
    #   O2 = 0.81 * 32 / 44 = 25.92 / 44 = 0.589090909 t O2/a ; value = 0.589090909 * 727 = 428.269091 yuan/a
    # paddy: 1.0 * 0.09 = 0.09 t CO2 -> O2 = 0.09 * 32/44 = 0.0654545 t ; value = 0.0654545 * 727 = 47.5854545
    # water: 0 t CO2 -> 0 t O2 ; nodata (-1) -> NaN
    b = block(lc=[1, 2, 3, -1], precip=[1600.0] * 4, et=[850.0] * 4, slope_pct_filled=[5.0] * 4, flow_aspect=[1.0] * 4,
              upslope=[1.0] * 4)
    out = model.compute_block(b, AREA)
    o2, val = out["oxygen_release_t"][0], out["oxygen_release_yuan"][0]
    assert o2[0] == pytest.approx(0.5890909091, rel=1e-6)
    assert val[0] == pytest.approx(428.2690909, rel=1e-6)
    assert o2[1] == pytest.approx(0.0654545455, rel=1e-6)
    assert val[1] == pytest.approx(47.58545455, rel=1e-6)
    assert o2[2] == 0.0 and val[2] == 0.0
    assert np.isnan(o2[3]) and np.isnan(val[3])
    co2 = out["carbon_sequestration_tco2"][0]
    np.testing.assert_allclose(o2[:3], co2[:3] * 32.0 / 44.0, rtol=1e-6)
    # GEP-R now includes oxygen: water + soil + carbon + oxygen + air
    keys = ("water_conservation_yuan", "soil_retention_yuan", "carbon_sequestration_yuan", "oxygen_release_yuan",
            "air_purification_yuan")
    assert out["gep_r_yuan"][0, 0] == pytest.approx(sum(float(out[k][0, 0]) for k in keys), rel=1e-6)


def test_oxygen_follows_carbon_negative_rule(tiny):
    p = variant(tiny, "carbon: {method: rates}", "carbon: {method: nep, path: p.tif, unit: g_c_per_m2}", "nep.yaml")
    b = block(lc=[1, 1], carbon_flux=[-100.0, 200.0])
    # NEP -100 g C/m2/a = -1.0 t C/ha/a -> * 44/12 = -3.6667 t CO2/ha/a -> * 0.09 ha = -0.33 t CO2/a
    #   keep: O2 = -0.33 * 32/44 = -0.24 t O2/a (net consumption) ; value = -0.24 * 727 = -174.48 yuan/a
    # NEP 200 g C/m2/a = 2.0 t C/ha -> 7.3333 t CO2/ha -> 0.66 t CO2/a ; O2 = 0.66 * 32/44 = 0.48 t ; 0.48*727 = 348.96
    services = {**OFF, "carbon_sequestration": {"enabled": True, "negative_values": "keep"},
                "oxygen_release": {"enabled": True}}
    keep, _ = model_for(p, services=services)
    out = keep.compute_block(b, AREA)
    assert out["carbon_sequestration_tco2"][0, 0] == pytest.approx(-0.33, rel=1e-6)
    assert out["oxygen_release_t"][0].tolist() == pytest.approx([-0.24, 0.48], rel=1e-6)
    assert out["oxygen_release_yuan"][0].tolist() == pytest.approx([-174.48, 348.96], rel=1e-6)
    # clip: carbon 0 -> O2 0
    services["carbon_sequestration"]["negative_values"] = "clip"
    clip, _ = model_for(p, services=services)
    out = clip.compute_block(b, AREA)
    assert out["oxygen_release_t"][0].tolist() == pytest.approx([0.0, 0.48], rel=1e-6)
    assert "clips" in clip.notes["oxygen_release"] and "ONE flux" in clip.notes["oxygen_release"]


def test_oxygen_without_carbon_is_rejected(tiny):
    with pytest.raises(ConfigError) as e:
        load_config(tiny, overrides={"services": {"oxygen_release": {"enabled": True},
                                                  "carbon_sequestration": {"enabled": False}}})
    msg = str(e.value)
    assert "services.oxygen_release" in msg and "services.carbon_sequestration" in msg


def test_oxygen_records_its_price_and_parameter(tiny):
    cfg = load_config(tiny, overrides={"services": {"oxygen_release": {"enabled": True}}})
    book = PriceBook.from_config(cfg)
    ServiceModel.from_config(cfg, load_legend(cfg, required_legend_columns(cfg)), book, cell_size=30.0,
                             geographic=False)
    used = book.used_records()
    assert {"key": "oxygen_release.o2_price", "value": 727.0, "evidence": "V"}.items() <= \
        next(r for r in used["prices"] if r["key"] == "oxygen_release.o2_price").items()
    assert any(r["key"] == "oxygen_release.o2_per_co2" for r in used["parameters"])


def test_oxygen_garze_npp_pixel_by_hand(tiny):
    """method garze_npp: Q_O2 = 1.19 t O2 per t NPP dry matter x area, NPP read from inputs.carbon (method npp)."""
    p = variant(tiny, "carbon: {method: rates}", "carbon: {method: npp, path: p.tif, unit: g_c_per_m2}", "npp.yaml")
    services = {**OFF, "carbon_sequestration": {"enabled": True},
                "oxygen_release": {"enabled": True, "method": "garze_npp"}}
    model, cfg = model_for(p, services=services)
    assert "carbon_flux" in model.input_keys()
    b = block(lc=[1, 3, -1], carbon_flux=[450.0, 0.0, 450.0])
    out = model.compute_block(b, AREA)
    # NPP 450 g C/m2/a = 4.5 t C/ha/a; dry matter = 4.5 / (72/162) = 4.5 * 2.25 = 10.125 t DM/ha/a
    #   O2 = 1.19 * 10.125 = 12.04875 t O2/ha/a * 0.09 ha = 1.0843875 t O2/a ; value = 1.0843875 * 727 = 788.3497125
    o2, val = out["oxygen_release_t"][0], out["oxygen_release_yuan"][0]
    assert o2[0] == pytest.approx(1.0843875, rel=1e-6)
    assert val[0] == pytest.approx(788.3497125, rel=1e-6)
    assert o2[1] == 0.0 and np.isnan(o2[2])
    # carbon on the same pixel: 10.125 * 1.63 * 0.09 = 1.4853375 t CO2 (32/44 of it would be 1.0802455 t O2)
    assert out["carbon_sequestration_tco2"][0, 0] == pytest.approx(1.4853375, rel=1e-6)
    assert "garze_npp" in model.notes["oxygen_release"]
    assert any("garze_npp" in a and "[U]" in a for a in model.assumptions)
    book = PriceBook.from_config(cfg)
    ServiceModel.from_config(cfg, load_legend(cfg, required_legend_columns(cfg)), book, cell_size=30.0,
                             geographic=False)
    assert model.names == ["carbon_sequestration", "oxygen_release"]
    rec = next(r for r in book.used_records()["parameters"] if r["key"] == "oxygen_release.o2_per_dry_matter")
    assert rec["value"] == 1.19 and rec["evidence"] == "V"
    # NPP already in t dry matter/ha/a, carbon sequestration disabled (oxygen reads inputs.carbon itself):
    # 10 t DM/ha * 1.19 = 11.9 t O2/ha (methods note 2.4 example) * 0.09 ha = 1.071 t ; * 727 = 778.617 yuan
    p2 = variant(tiny, "carbon: {method: rates}", "carbon: {method: npp, path: p.tif, unit: t_dm_per_ha}", "npp2.yaml")
    m2, _ = model_for(p2, services={**OFF, "oxygen_release": {"enabled": True, "method": "garze_npp"}})
    out2 = m2.compute_block(block(lc=[1], carbon_flux=[10.0]), AREA)
    assert out2["oxygen_release_t"][0, 0] == pytest.approx(1.071, rel=1e-6)
    assert out2["oxygen_release_yuan"][0, 0] == pytest.approx(778.617, rel=1e-6)


def test_oxygen_garze_npp_needs_an_npp_input(tiny):
    with pytest.raises(ConfigError) as e:
        load_config(tiny, overrides={"services": {"oxygen_release": {"enabled": True, "method": "garze_npp"}}})
    msg = str(e.value)
    assert "services.oxygen_release.method 'garze_npp'" in msg and "inputs.carbon.method: npp" in msg
    assert "'rates'" in msg
    with pytest.raises(ConfigError, match="method"):
        load_config(tiny, overrides={"services": {"oxygen_release": {"enabled": True, "method": "npp_gross"}}})


# ------------------------------------------------------------------------------------- climate regulation
def test_climate_vegetation_and_water_pixels(tiny):
    model, _ = climate_model(tiny, hot_days=40)
    # forest, ET 730 mm/a: daily ET = 730/365 = 2 mm/d = 2 kg/m2/d ; EPP = 2 * 2450 = 4900 kJ/m2/d
    #   E_pt = 4900 * 900 m2 * 40 d / (3600 * 3) = 176,400,000 / 10,800 = 16,333.333 kWh/a
    #   value = 16,333.333 * 0.53 = 8,656.6667 yuan/a
    # water, ET 1095 mm/a: daily 3 mm/d ; E_w = 0.003 m * 40 d * 900 m2 = 108 m3
    #   E_we = 108 * 1000 * 2450 / 3600 + 108 * 120 = 73,500 + 12,960 = 86,460 kWh/a ; value = 86,460 * 0.53 = 45,823.8
    # paddy (cropland) and town (urban): not counted -> 0 ; nodata -> NaN ; forest with ET nodata -> NaN
    b = block(lc=[1, 3, 2, 4, -1, 1], et=[730.0, 1095.0, 900.0, 900.0, 900.0, np.nan])
    out = model.compute_block(b, AREA)
    kwh, yuan = out["climate_regulation_kwh"][0], out["climate_regulation_yuan"][0]
    assert kwh[0] == pytest.approx(16333.3333, rel=1e-6)
    assert yuan[0] == pytest.approx(8656.66667, rel=1e-6)
    assert kwh[1] == pytest.approx(86460.0, rel=1e-6)
    assert yuan[1] == pytest.approx(45823.8, rel=1e-6)
    assert kwh[2] == 0.0 and kwh[3] == 0.0 and yuan[2] == 0.0
    assert np.isnan(kwh[4]) and np.isnan(kwh[5])
    assert out["gep_r_yuan"][0, 1] == pytest.approx(45823.8, rel=1e-6)


def test_climate_humidifier_switch_and_ecosystem_lists(tiny):
    off, _ = climate_model(tiny, hot_days=40, humidifier=False)
    # water 1095 mm/a, D 40: E_w = 108 m3 -> latent heat only: 108 * 1000 * 2450 / 3600 = 73,500 kWh
    assert off.compute_block(block(lc=[3], et=[1095.0]), AREA)["climate_regulation_kwh"][0, 0] == \
        pytest.approx(73500.0, rel=1e-6)
    crop, _ = climate_model(tiny, hot_days=40, vegetation_ecosystems=["forest", "cropland"], water_ecosystems=[])
    # paddy counted as vegetation: ET 730 -> 16,333.333 kWh as the forest above; water not counted -> 0
    out = crop.compute_block(block(lc=[2, 3], et=[730.0, 1095.0]), AREA)["climate_regulation_kwh"][0]
    assert out.tolist() == pytest.approx([16333.3333, 0.0], rel=1e-6)


def test_climate_hot_season_factor_and_et0(tiny):
    f15, _ = climate_model(tiny, hot_days=40, hot_season_et_factor=1.5)
    # forest ET 730: daily 2 mm * 1.5 = 3 mm/d -> EPP = 3 * 2450 = 7350 kJ/m2/d
    #   E_pt = 7350 * 900 * 40 / 10,800 = 24,500 kWh
    assert f15.compute_block(block(lc=[1], et=[730.0]), AREA)["climate_regulation_kwh"][0, 0] == \
        pytest.approx(24500.0, rel=1e-6)
    p = variant(tiny, "et: {path: et.tif}", "et0: {path: et.tif}", "et0.yaml")
    cfg = load_config(p, overrides={"services": {**OFF, "climate_regulation": {"enabled": True, "hot_days": 40}}})
    assert "kc" in required_legend_columns(cfg)
    m0, _ = climate_model(p, hot_days=40)
    # water Kc 1.05: ET0 1000 -> ET 1050 mm/a -> daily 1050/365 = 2.876712 mm/d
    #   E_w = 2.876712e-3 m * 40 * 900 = 103.56164 m3 ; E_we = 103.56164 * (2450/3.6 + 120) = 103.56164 * 800.5556
    #   = 82,906.85 kWh
    ew = 1050.0 / 365.0 / 1000.0 * 40 * 900
    assert ew == pytest.approx(103.56164, rel=1e-6)
    assert m0.compute_block(block(lc=[3], et=[1000.0]), AREA)["climate_regulation_kwh"][0, 0] == \
        pytest.approx(ew * (2450.0 / 3.6 + 120.0), rel=1e-6)
    assert 82906.8 < ew * (2450.0 / 3.6 + 120.0) < 82906.9


def test_climate_worked_example_of_the_methods_note(tiny):
    """Methods note 2.7: EPP 5000 kJ/m2/d, D 40, r 3 on 1 ha -> 185,185 kWh -> 98,148 yuan."""
    model, _ = climate_model(tiny, hot_days=40)
    # EPP = 5000 kJ/m2/d needs a daily ET of 5000 / 2450 = 2.040816 mm/d, i.e. ET = 2.040816 * 365 = 744.898 mm/a
    # E = 5000 * 10,000 m2 * 40 / (3600 * 3) = 2.0e9 / 10,800 = 185,185.185 kWh ; * 0.53 = 98,148.148 yuan
    et = 5000.0 / 2450.0 * 365.0
    assert et == pytest.approx(744.898, rel=1e-6)
    out = model.compute_block(block(lc=[1], et=[et]), np.array([10000.0]))
    assert out["climate_regulation_kwh"][0, 0] == pytest.approx(185185.185, rel=1e-6)
    assert out["climate_regulation_yuan"][0, 0] == pytest.approx(98148.148, rel=1e-6)
    # the same with an exact EPP: latent heat overridden to 2500 kJ/kg and ET 730 mm/a (2 mm/d * 2500 = 5000)
    m2, _ = model_for(tiny, services={**OFF, "climate_regulation": {"enabled": True, "hot_days": 40}},
                      parameters={"climate_regulation.latent_heat": {"value": 2500.0, "source": "test"}})
    assert m2.compute_block(block(lc=[1], et=[730.0]), np.array([10000.0]))["climate_regulation_kwh"][0, 0] == \
        pytest.approx(185185.185, rel=1e-6)
    # one m3 of open-water evaporation, latent heat only: 1000 * 2450 / 3600 = 680.56 kWh (methods note)
    # 1 m3 over 900 m2 during D = 365 days needs daily ET = 1/900 m / 365 -> ET = 1000/900 mm/a
    m3, _ = climate_model(tiny, hot_days=365, humidifier=False)
    assert m3.compute_block(block(lc=[3], et=[1000.0 / 900.0]), AREA)["climate_regulation_kwh"][0, 0] == \
        pytest.approx(680.5556, rel=1e-5)


@pytest.mark.parametrize("climate, needle", [
    ({}, "neither services.climate_regulation.hot_days"),
    ({"hot_days": 40, "hot_days_raster": {"path": "et.tif"}}, "not both"),
    ({"hot_days": 40, "vegetation_ecosystems": ["forest", "wetland"]}, "['wetland'] are in both"),
    ({"hot_days": 400}, "services.climate_regulation.hot_days"),
    ({"hot_days": 40, "hot_season_et_factor": 0}, "services.climate_regulation.hot_season_et_factor"),
    ({"hot_days": 40, "vegetation_ecosystems": ["jungle"]}, "services.climate_regulation.vegetation_ecosystems"),
])
def test_climate_config_errors(tiny, climate, needle):
    with pytest.raises(ConfigError) as e:
        load_config(tiny, overrides={"services": {"climate_regulation": {"enabled": True, **climate}}})
    assert needle in str(e.value)


def test_climate_needs_et(tiny):
    p = variant(tiny, "  et: {path: et.tif}\n", "", "no_et.yaml")
    with pytest.raises(ConfigError, match="services.climate_regulation is enabled but neither inputs.et nor"):
        load_config(p, overrides={"services": {**OFF, "climate_regulation": {"enabled": True, "hot_days": 40}}})


def test_climate_hot_days_raster_out_of_range(tiny):
    model, _ = climate_model(tiny, hot_days_raster={"path": "et.tif"})
    assert "climate_hot_days" in model.input_keys()
    assert model.input_requests()["climate_hot_days"].config_key == "services.climate_regulation.hot_days_raster"
    with pytest.raises(RasterError, match="hot_days_raster: values .*outside 0..366"):
        model.compute_block(block(lc=[1], et=[730.0], climate_hot_days=[800.0]), AREA)


def test_pipeline_with_hot_days_raster_and_oxygen(tiny):
    from gep_raster.pipeline import run

    h, w = 40, 50
    hd = np.full((h, w), 30.0, np.float32)
    hd[:, 25:] = 50.0
    hd[30, 45] = -9999.0  # nodata
    write_raster(tiny.parent / "hot_days.tif", hd, nodata=-9999.0)
    p = variant(tiny, "services:\n",
                "services:\n  oxygen_release: {enabled: true}\n"
                "  climate_regulation: {enabled: true, hot_days_raster: {path: hot_days.tif}}\n", "climate.yaml")
    res = run(load_config(p), progress=False, workers=1)
    with rasterio.open(res.output_dir / "rasters/physical/climate_regulation_kwh.tif") as ds:
        kwh = ds.read(1)
    with rasterio.open(res.output_dir / "rasters/physical/oxygen_release_t.tif") as ds:
        o2 = ds.read(1)
    with rasterio.open(res.output_dir / "rasters/physical/carbon_sequestration_tco2.tif") as ds:
        co2 = ds.read(1)
    # tiny: ET = 800 + row (mm/a); classes: cols 0-11 paddy, rows 18-21 water, rows 0-5 x cols 40-49 town, else forest
    # (30, 20) forest, ET 830, D 30: EPP = 830/365 * 2450 = 5571.233 kJ/m2/d ; E = 5571.233 * 900 * 30 / 10,800
    #   = 13,928.08 kWh
    e_forest = 830.0 / 365.0 * 2450.0 * 900.0 * 30.0 / 10800.0
    assert 13928.0 < e_forest < 13928.1
    assert kwh[30, 20] == pytest.approx(e_forest, rel=1e-6)
    # (20, 30) water, ET 820, D 50: E_w = 820/365/1000 * 50 * 900 = 101.0959 m3 ; * (2450/3.6 + 120) = 80,933.6 kWh
    ew = 820.0 / 365.0 / 1000.0 * 50.0 * 900.0
    assert kwh[20, 30] == pytest.approx(ew * (2450.0 / 3.6 + 120.0), rel=1e-6)
    assert kwh[30, 5] == 0.0 and kwh[3, 45] == 0.0  # paddy, town
    assert np.isnan(kwh[30, 45])  # hot days nodata on a forest pixel
    assert np.isnan(kwh[0, 0])  # land-cover nodata
    ok = np.isfinite(co2)
    np.testing.assert_allclose(o2[ok], co2[ok] * 32.0 / 44.0, rtol=1e-6)
    man = json.loads(res.manifest_path.read_text())
    used = {r["key"] for r in man["parameters"]}
    assert {"climate_regulation.latent_heat", "climate_regulation.eer", "climate_regulation.hot_season_et_factor",
            "climate_regulation.humidifier_kwh_per_m3", "oxygen_release.o2_per_co2"} <= used
    assert any(a.startswith("climate_regulation.eer") for a in man["assumptions"])
    assert "climate_regulation" in man["methods"] and "services.climate_regulation.hot_days_raster" in \
        man["methods"]["climate_regulation"]
    # totals: the value raster is 0.53 x the kWh raster
    t = man["totals"]
    assert t["climate_regulation_yuan"]["sum"] == pytest.approx(0.53 * t["climate_regulation_kwh"]["sum"], rel=1e-5)
