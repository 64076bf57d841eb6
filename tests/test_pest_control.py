"""Pest control (病虫害控制): natural forest / grassland area x control cost (Garze GEP 2010, Baima Zhuoga et al. 2017,
sec. 2.4.9 and table 3: 375 yuan/hm2 for forest, 112.5 yuan/hm2 for grassland, 2010 prices).

Pixel: 30 m x 30 m = 900 m2 = 0.09 ha (the tiny run of conftest, with a legend that has a grassland class and a
``natural_share`` column)."""
from __future__ import annotations

import numpy as np
import pytest

from gep_raster.config import load_config
from gep_raster.errors import TableError
from gep_raster.services import ServiceModel
from gep_raster.services.registry import required_legend_columns
from gep_raster.tables import PriceBook, load_legend

AREA = np.array([900.0])
OFF = {"water_conservation": {"enabled": False}, "soil_retention": {"enabled": False},
       "carbon_sequestration": {"enabled": False}, "air_purification": {"enabled": False}}
ON = {**OFF, "pest_control": {"enabled": True}}

LEGEND = """code,name,ecosystem,runoff_coef,usle_c,usle_p,kc,carbon_tco2_ha,so2_kg_ha,nox_kg_ha,dust_kg_ha,natural_share,notes
1,broadleaf forest,forest,0.0267,0.006,1,1.0,9.0,88.65,6.0,10110,0.5,test: half natural
2,paddy,cropland,0.10,0.15,0.15,1.1,1.0,45,3,1000,1,test
3,meadow,grassland,0.05,0.02,1,0.9,1.0,10,1,500,1,test
4,town,urban,0.60,0.0,1,0.2,0,0,0,0,0,test
"""


def _legend(tiny, text=LEGEND):
    (tiny.parent / "legend.csv").write_text(text)
    return tiny


def model_for(cfg_path, **over):
    cfg = load_config(cfg_path, overrides={"services": ON, **over})
    legend = load_legend(cfg, required_legend_columns(cfg))
    return ServiceModel.from_config(cfg, legend, PriceBook.from_config(cfg), cell_size=30.0, geographic=False), cfg


def test_pixels_by_hand(tiny):
    model, _ = model_for(_legend(tiny))
    out = model.compute_block({"lc": np.array([[1, 2, 3, 4, -1]], np.int32)}, AREA)
    # forest, natural share 0.5: 0.09 ha x 0.5 = 0.045 ha of natural forest; 0.045 x 375 = 16.875 yuan/a
    # paddy and town: 0; meadow (grassland, share 1): 0.09 ha x 112.5 = 10.125 yuan/a; nodata: NaN
    f, g, v = out["pest_control_forest_ha"][0], out["pest_control_grassland_ha"][0], out["pest_control_yuan"][0]
    assert f[:4] == pytest.approx([0.045, 0.0, 0.0, 0.0], rel=1e-6)
    assert g[:4] == pytest.approx([0.0, 0.0, 0.09, 0.0], rel=1e-6)
    assert v[:4] == pytest.approx([16.875, 0.0, 10.125, 0.0], rel=1e-6)
    assert np.isnan(f[4]) and np.isnan(g[4]) and np.isnan(v[4])
    # the valuation terms the manifest records (multi-year revaluation)
    terms = {t["physical"]: t for t in model.valuation["pest_control"]}
    assert terms["pest_control_forest_ha"]["unit_value_yuan"] == 375.0
    assert terms["pest_control_grassland_ha"]["price_coefficients"] == {"pest_control.grassland_price": 1.0}


def test_garze_table3_from_its_areas(tiny):
    """Garze table 3: 158万 hm2 natural forest -> 5.9250亿 yuan, 711.13万 hm2 natural grassland -> 8.0003亿 yuan
    (13.93亿 in all). One pixel per type whose row area is those hectares (1 ha = 1e4 m2)."""
    model, _ = model_for(_legend(tiny, LEGEND.replace(",0.5,test: half", ",1,test: all")))
    forest = model.compute_block({"lc": np.array([[1]], np.int32)}, np.array([158e4 * 1e4]))
    grass = model.compute_block({"lc": np.array([[3]], np.int32)}, np.array([711.13e4 * 1e4]))
    assert forest["pest_control_yuan"][0, 0] / 1e8 == pytest.approx(5.9250, abs=5e-5)
    # 711.13e4 x 112.5 = 8.00021e8: the paper's 8.0003 comes from an unrounded area (711.13 is its rounding)
    assert grass["pest_control_yuan"][0, 0] / 1e8 == pytest.approx(8.0003, abs=1.5e-4)
    assert round((forest["pest_control_yuan"][0, 0] + grass["pest_control_yuan"][0, 0]) / 1e8, 2) == 13.93


def test_without_natural_share_every_class_of_the_types_counts(tiny):
    text = "\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != 11) for line in LEGEND.splitlines())
    model, _ = model_for(_legend(tiny, text + "\n"))
    out = model.compute_block({"lc": np.array([[1, 3]], np.int32)}, AREA)
    assert out["pest_control_forest_ha"][0] == pytest.approx([0.09, 0.0], rel=1e-6)
    assert out["pest_control_yuan"][0] == pytest.approx([0.09 * 375, 0.09 * 112.5], rel=1e-6)
    (a,) = [a for a in model.assumptions if a.startswith("pest control")]
    assert "no column 'natural_share'" in a


def test_other_ecosystem_lists(tiny):
    model, _ = model_for(_legend(tiny), **{"services": {**ON, "pest_control": {
        "enabled": True, "forest_ecosystems": ["forest", "cropland"], "grassland_ecosystems": []}}})
    out = model.compute_block({"lc": np.array([[1, 2, 3]], np.int32)}, AREA)
    # cropland now counts as forest (share 1): 0.09 ha x 375 = 33.75; grassland counts nowhere
    assert out["pest_control_yuan"][0] == pytest.approx([16.875, 33.75, 0.0], rel=1e-6)


def test_bad_natural_share_and_overlapping_types_are_named(tiny):
    _legend(tiny, LEGEND.replace(",0.5,test: half", ",1.5,test: half"))
    with pytest.raises(TableError, match=r"column 'natural_share'.*\[0, 1\].*class code\(s\) \[1\]"):
        model_for(tiny)
    from gep_raster.errors import ConfigError

    with pytest.raises(ConfigError, match="overlap"):
        load_config(tiny, overrides={"services": {"pest_control": {"enabled": True, "forest_ecosystems": ["forest"],
                                                                   "grassland_ecosystems": ["forest"]}}})


def test_numpy_equals_dask(tiny):
    from conftest import model_numpy_equals_dask
    from gep_raster.grid.run_inputs import open_inputs, reference_grid

    _legend(tiny)
    cfg = load_config(tiny, overrides={"services": ON})
    grid = reference_grid(cfg)
    legend = load_legend(cfg, required_legend_columns(cfg))
    model = ServiceModel.from_config(cfg, legend, PriceBook.from_config(cfg), cell_size=30.0, geographic=False)
    src = open_inputs(cfg, grid, model.input_keys(), model.input_requests())
    ref = model_numpy_equals_dask(model, src, grid, [(7, 5), (40, 50)])
    # lc 1 (forest, share 0.5) covers most of the tiny grid: its natural forest area = 0.045 ha per pixel
    lc = src["lc"].read_all()
    assert np.nanmax(ref["pest_control_forest_ha"]) == pytest.approx(0.045, rel=1e-6)
    assert np.nansum(ref["pest_control_forest_ha"]) == pytest.approx(0.045 * (lc == 1).sum(), rel=1e-6)


def test_sample_run_with_pest_control(tmp_path):
    """The sample with pest control on (its legend has no natural_share: every forest / grassland class counts):
    the total equals 375 x forest ha + 112.5 x grassland ha, the townships add up to the county, and GEP-R
    includes it."""
    import gep_raster
    from conftest import sample_config

    import yaml

    cfg = sample_config(tmp_path, "pest")

    raw = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    raw["services"]["pest_control"] = {"enabled": True}
    raw["output"]["report"] = "off"
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    res = gep_raster.run(cfg)
    t = res.manifest["totals"]
    f, g = t["pest_control_forest_ha"]["sum"], t["pest_control_grassland_ha"]["sum"]
    assert f > 0 and g >= 0
    assert t["pest_control_yuan"]["sum"] == pytest.approx(375.0 * f + 112.5 * g, rel=1e-6)
    assert any(a.startswith("pest control: the legend has no column") for a in res.manifest["assumptions"])
    town, county = res.tables["township"], res.tables["county"]
    assert town["pest_control_yuan"].sum() == pytest.approx(county["pest_control_yuan"].sum(), rel=1e-9)
    services = [f"{n}_yuan" for n in res.manifest["config"]["services"] if res.manifest["config"]["services"][n]["enabled"]]
    assert "pest_control_yuan" in services
    assert t["gep_r_yuan"]["sum"] == pytest.approx(sum(t[k]["sum"] for k in services), rel=1e-6)
