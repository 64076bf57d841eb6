"""Per-service pixels computed by hand from the formulas (arithmetic in the comments).

Pixel: 30 m x 30 m = 900 m2 = 0.09 ha. Prices and parameters are the shipped defaults
(gep_raster/data/prices.csv, parameters.csv): reservoir 7.06 yuan/m3, dredging 15.58 yuan/m3,
N 875 yuan/t, P 2800 yuan/t, CO2 380 yuan/t, SO2 1200, NOx 630, dust 150 yuan/t; lambda 0.24,
rho 0.93 t/m3, soil N 0.37 %, soil P 0.108 %, K constant 0.03 (assumption).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from gep_raster.config import load_config
from gep_raster.services import ServiceModel
from gep_raster.tables import PriceBook, load_legend
from gep_raster.services.registry import required_legend_columns

AREA = np.array([900.0])  # one row of 30 m pixels


def model_for(cfg_path, **over):
    cfg = load_config(cfg_path, overrides=over or None)
    legend = load_legend(cfg, required_legend_columns(cfg))
    book = PriceBook.from_config(cfg)
    return ServiceModel.from_config(cfg, legend, book, cell_size=30.0, geographic=False), cfg


def block(**kw):
    out = {}
    for k, v in kw.items():
        dt = np.int32 if k in ("lc", "lc_alt") else np.float32
        out[k] = np.array([v], dtype=dt).reshape(1, -1)
    return out


def test_water_conservation_forest_pixel(tiny):
    model, _ = model_for(tiny)
    # forest (class 1): alpha = 0.0267; P = 1600 mm, ET = 850 mm
    # R = 1600 * 0.0267 = 42.72 mm; depth = 1600 - 42.72 - 850 = 707.28 mm
    # Q = 707.28 mm * 900 m2 / 1000 = 636.552 m3/a ; value = 636.552 * 7.06 = 4494.057 yuan/a
    b = block(lc=[1], precip=[1600.0], et=[850.0], slope_pct_filled=[5.0], flow_aspect=[1.0], upslope=[1.0])
    out = model.compute_block(b, AREA)
    assert out["water_conservation_m3"][0, 0] == pytest.approx(636.552, rel=1e-6)
    assert out["water_conservation_yuan"][0, 0] == pytest.approx(4494.05712, rel=1e-6)


def test_water_conservation_negative_balance_is_clipped_and_reported(tiny):
    model, _ = model_for(tiny)
    # paddy (class 2): alpha 0.10; P = 500, ET = 900 -> depth = 500 - 50 - 900 = -450 mm
    # clipped to 0; deficit = 450 mm * 900 m2 / 1000 = 405 m3
    b = block(lc=[2], precip=[500.0], et=[900.0], slope_pct_filled=[5.0], flow_aspect=[1.0], upslope=[1.0])
    out = model.compute_block(b, AREA)
    assert out["water_conservation_m3"][0, 0] == 0.0
    assert out["water_deficit_m3"][0, 0] == pytest.approx(405.0, rel=1e-6)
    keep, _ = model_for(tiny, services={"water_conservation": {"negative_values": "keep"}})
    assert keep.compute_block(b, AREA)["water_conservation_m3"][0, 0] == pytest.approx(-405.0, rel=1e-6)


def test_water_conservation_with_et0_and_kc(tmp_path, tiny):
    text = tiny.read_text().replace("et: {path: et.tif}", "et0: {path: et.tif}")
    p = tiny.parent / "et0.yaml"
    p.write_text(text)
    model, _ = model_for(p)
    # paddy Kc = 1.1: ET = 1.1 * 800 = 880 mm; P = 1500, alpha 0.10 -> depth = 1500 - 150 - 880 = 470 mm
    # Q = 470 * 900 / 1000 = 423 m3/a
    b = block(lc=[2], precip=[1500.0], et=[800.0], slope_pct_filled=[5.0], flow_aspect=[1.0], upslope=[1.0])
    assert model.compute_block(b, AREA)["water_conservation_m3"][0, 0] == pytest.approx(423.0, rel=1e-6)


def test_soil_retention_pixel(tiny):
    model, _ = model_for(tiny)
    # P = 1600 mm -> R = 587.8 - 1.219*1600 + 0.004105*1600^2 = 9146.2 (Renard & Freimund 1994, P > 850)
    R = 587.8 - 1.219 * 1600 + 0.004105 * 1600 ** 2
    assert R == pytest.approx(9146.2)
    # slope 5 % (tan), a ridge cell (1 upslope cell, A_in = 0), x = 1, D = 30 m:
    # sin(theta) = 0.05 / sqrt(1 + 0.05^2); slope < 9 % -> S = 10.8 sin + 0.03
    sin = 0.05 / math.sqrt(1 + 0.05 ** 2)
    S = 10.8 * sin + 0.03
    # 3.5 % < 5 % <= 5 % -> m = 0.4; L = ((0 + D^2)^(m+1) - 0) / (D^(m+2) * x^m * 22.13^m) = (D / 22.13)^m
    L = (30.0 ** 2) ** 1.4 / (30.0 ** 2.4 * 1.0 * 22.13 ** 0.4)
    assert L == pytest.approx((30 / 22.13) ** 0.4)
    K, C, P = 0.03, 0.006, 1.0  # forest usle_c 0.006, usle_p 1
    rate = R * K * L * S * (1 - C * P)  # t/ha/a
    q = rate * 0.09  # t/a per 0.09 ha pixel
    unit_value = 0.24 / 0.93 * 15.58 + 0.0037 * 875 + 0.00108 * 2800  # = 10.2821 yuan per t
    assert unit_value == pytest.approx(10.28213, rel=1e-5)
    b = block(lc=[1], precip=[1600.0], et=[850.0], slope_pct_filled=[5.0], flow_aspect=[1.0], upslope=[1.0])
    out = model.compute_block(b, AREA)
    assert out["ls_factor"][0, 0] == pytest.approx(L * S, rel=1e-5)
    assert out["r_factor"][0, 0] == pytest.approx(R, rel=1e-6)
    assert out["soil_retention_t"][0, 0] == pytest.approx(q, rel=1e-5)
    assert out["soil_retention_yuan"][0, 0] == pytest.approx(q * unit_value, rel=1e-5)


def test_soil_retention_not_computed_on_water_and_town(tiny):
    model, _ = model_for(tiny)
    b = block(lc=[3, 4], precip=[1600.0, 1600.0], et=[850.0, 850.0], slope_pct_filled=[20.0, 20.0], flow_aspect=[1.0, 1.0],
              upslope=[10.0, 10.0])
    out = model.compute_block(b, AREA)
    assert out["soil_retention_t"][0].tolist() == [0.0, 0.0]


def test_carbon_rates_pixel(tiny):
    model, _ = model_for(tiny)
    # forest 9.0 t CO2/ha/a * 0.09 ha = 0.81 t CO2/a ; value 0.81 * 380 = 307.8 yuan/a
    b = block(lc=[1], precip=[1600.0], et=[850.0], slope_pct_filled=[5.0], flow_aspect=[1.0], upslope=[1.0])
    out = model.compute_block(b, AREA)
    assert out["carbon_sequestration_tco2"][0, 0] == pytest.approx(0.81, rel=1e-6)
    assert out["carbon_sequestration_yuan"][0, 0] == pytest.approx(307.8, rel=1e-6)


def test_carbon_from_nep_pixel(tiny, tmp_path):
    text = tiny.read_text().replace("carbon: {method: rates}", "carbon: {method: nep, path: p.tif, unit: g_c_per_m2}")
    p = tiny.parent / "nep.yaml"
    p.write_text(text)
    model, _ = model_for(p)
    # NEP = 200 g C/m2/a = 2.0 t C/ha/a -> x 44/12 = 7.3333 t CO2/ha/a -> x 0.09 ha = 0.66 t CO2/a
    b = block(lc=[1], precip=[1600.0], et=[850.0], slope_pct_filled=[5.0], flow_aspect=[1.0], upslope=[1.0], carbon_flux=[200.0])
    out = model.compute_block(b, AREA)
    assert out["carbon_sequestration_tco2"][0, 0] == pytest.approx(0.66, rel=1e-6)
    assert out["carbon_sequestration_yuan"][0, 0] == pytest.approx(0.66 * 380, rel=1e-6)


def test_air_purification_pixel_and_gep_r(tiny):
    model, _ = model_for(tiny)
    # forest: SO2 88.65 kg/ha * 0.09 ha = 7.9785 kg = 0.0079785 t ; value * 1200 = 9.5742 yuan
    #         NOx 6.0 kg/ha * 0.09 = 0.54 kg = 0.00054 t ; * 630 = 0.3402 yuan
    #         dust 10110 kg/ha * 0.09 = 909.9 kg = 0.9099 t ; * 150 = 136.485 yuan
    # air value = 9.5742 + 0.3402 + 136.485 = 146.3994 yuan/a
    b = block(lc=[1], precip=[1600.0], et=[850.0], slope_pct_filled=[5.0], flow_aspect=[1.0], upslope=[1.0])
    out = model.compute_block(b, AREA)
    assert out["air_purification_so2_t"][0, 0] == pytest.approx(0.0079785, rel=1e-6)
    assert out["air_purification_nox_t"][0, 0] == pytest.approx(0.00054, rel=1e-6)
    assert out["air_purification_dust_t"][0, 0] == pytest.approx(0.9099, rel=1e-6)
    assert out["air_purification_yuan"][0, 0] == pytest.approx(146.3994, rel=1e-6)
    gep = sum(out[k][0, 0] for k in ("water_conservation_yuan", "soil_retention_yuan",
                                      "carbon_sequestration_yuan", "air_purification_yuan"))
    assert out["gep_r_yuan"][0, 0] == pytest.approx(gep, rel=1e-6)


def test_nodata_and_unknown_class_give_nan(tiny):
    model, _ = model_for(tiny)
    b = block(lc=[-1, 1], precip=[1600.0, np.nan], et=[850.0, 850.0], slope_pct_filled=[5.0, 5.0],
              flow_aspect=[1.0, 1.0], upslope=[1.0, 1.0])
    out = model.compute_block(b, AREA)
    assert np.isnan(out["gep_r_yuan"][0, 0])  # land-cover nodata
    assert np.isnan(out["water_conservation_m3"][0, 1])  # precipitation nodata
    # carbon and air do not need P, so GEP-R of pixel 2 = their sum only
    assert out["gep_r_yuan"][0, 1] == pytest.approx(out["carbon_sequestration_yuan"][0, 1]
                                                     + out["air_purification_yuan"][0, 1], rel=1e-6)


def test_stock_change_carbon(tmp_path, tiny):
    (tiny.parent / "pools.csv").write_text("lucode,C_above,C_below,C_soil,C_dead\n1,100,20,80,5\n2,2,1,40,0\n"
                                           "3,0,0,0,0\n4,0,0,10,0\n")
    text = tiny.read_text().replace(
        "carbon: {method: rates}",
        "carbon: {method: stock_change, pools_table: pools.csv, alternate_land_cover: {path: lc.tif}, years: 20}")
    p = tiny.parent / "stock.yaml"
    p.write_text(text)
    model, _ = model_for(p)
    # forest (205 Mg C/ha) -> paddy (43 Mg C/ha) over 20 years: (43 - 205) / 20 = -8.1 t C/ha/a
    # x 44/12 = -29.7 t CO2/ha/a ; x 0.09 ha = -2.673 t CO2/a (kept negative: net emission)
    b = block(lc=[1], lc_alt=[2])
    out = model.compute_block({"lc": b["lc"], "lc_alt": b["lc_alt"],
                               **block(precip=[1600.0], et=[850.0], slope_pct_filled=[5.0], flow_aspect=[1.0], upslope=[1.0])},
                              AREA)
    assert out["carbon_sequestration_tco2"][0, 0] == pytest.approx(-2.673, rel=1e-5)
    assert out["carbon_negative_tco2"][0, 0] == pytest.approx(2.673, rel=1e-5)


def test_slope_length_cap(tiny):
    model, _ = model_for(tiny)
    # 500 upslope cells of 30 m: capped at lambda_max / D = 122 / 30 = 4.0667 cells, i.e. A_in = 3.0667 * 900 m2
    b = dict(lc=[1], precip=[1600.0], et=[850.0], slope_pct_filled=[20.0], flow_aspect=[1.0])
    capped = model.compute_block(block(upslope=[500.0], **b), AREA)["ls_factor"][0, 0]
    same = model.compute_block(block(upslope=[122 / 30], **b), AREA)["ls_factor"][0, 0]
    assert capped == pytest.approx(same, rel=1e-6)
    sin = 0.2 / math.sqrt(1.04)
    S = 16.8 * sin - 0.50  # slope >= 9 %
    beta = (sin / 0.0896) / (3 * sin ** 0.8 + 0.56)
    m = beta / (1 + beta)
    A = (122 / 30 - 1) * 900.0
    L = ((A + 900) ** (m + 1) - A ** (m + 1)) / (30 ** (m + 2) * 22.13 ** m)
    assert capped == pytest.approx(L * S, rel=1e-5)
    free, _ = model_for(tiny, services={"soil_retention": {"slope_length_cap": False}})
    assert free.compute_block(block(upslope=[500.0], **b), AREA)["ls_factor"][0, 0] > 3 * capped


def test_linear_value_by_hand():
    """V = Σ_k Q_k · P_k per pixel; NaN terms skipped, NaN only where every term is NaN; float64 sums."""
    from gep_raster.kernels.valuation import linear_value

    q = np.array([[[1.0, np.nan, 2.0, np.nan], [1e8, 3.0, 0.5, -4.0]],
                  [[10.0, 5.0, np.nan, np.nan], [1.0, np.nan, 0.25, 4.0]]], np.float32)  # (k=2, h=2, w=4)
    got = linear_value(q, [7.06, 2.0])
    # row 0: 1*7.06 + 10*2 = 27.06 ; NaN + 5*2 = 10 ; 2*7.06 + NaN = 14.12 ; all NaN -> NaN
    # row 1: 1e8*7.06 + 1*2 = 706000002 (float32: 706000000) ; 3*7.06 = 21.18 ; 0.5*7.06 + 0.25*2 = 4.03 ;
    #        -4*7.06 + 4*2 = -20.24
    want = np.array([[27.06, 10.0, 14.12, np.nan], [706000002.0, 21.18, 4.03, -20.24]], np.float32)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.float32 and got.shape == (2, 4)
    # one term, 2-D input: the quantity times its price
    np.testing.assert_array_equal(linear_value(q[0], [2.0]), (q[0].astype(np.float64) * 2.0).astype(np.float32))
    with pytest.raises(ValueError, match="unit values"):
        linear_value(q, [1.0])
