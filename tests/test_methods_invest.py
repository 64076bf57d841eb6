"""InVEST-compatible method choices: Annual Water Yield, MFD routing, slope-based LS (numbers by hand).

Pixel: 30 m x 30 m = 900 m2. Equations: InVEST user guide "Annual Water Yield" (Water Yield Model) and
"SDR" (Annual Soil Loss, LS factor); docs/invest_methods.md.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from affine import Affine

from gep_raster.config import load_config
from gep_raster.errors import ConfigError, TableError
from gep_raster.kernels.soil import ls_factor_kernel, ls_factor_slope_length_kernel
from gep_raster.kernels.water import invest_annual_water_yield
from gep_raster.terrain.routing import route
from gep_raster.services import ServiceModel
from gep_raster.services.soil_retention import Config as SoilConfig
from gep_raster.services.water_conservation import Config as WaterConfig
from gep_raster.tables import PriceBook, load_legend
from gep_raster.services.registry import required_legend_columns

from conftest import write_raster

AREA = np.array([900.0])
T30 = Affine(30, 0, 500000, 0, -30, 3000000)


def model_for(cfg_path, **over):
    cfg = load_config(cfg_path, overrides=over or None)
    legend = load_legend(cfg, required_legend_columns(cfg))
    book = PriceBook.from_config(cfg)
    return ServiceModel.from_config(cfg, legend, book, cell_size=30.0, geographic=False), cfg


def block(**kw):
    return {k: np.array([v], dtype=np.int32 if k == "lc" else np.float32).reshape(1, -1) for k, v in kw.items()}


def awy1(p, et0, kc, root, soil, pawc, veg, z, clip=True):
    """One pixel through the kernel: (Q m3, deficit m3, AET mm)."""
    a = [np.array([[v]], np.float32) for v in (p, et0, kc, root, soil, pawc, veg)]
    q, d, aet = invest_annual_water_yield(*a, z, AREA, clip=clip)
    return float(q[0, 0]), float(d[0, 0]), float(aet[0, 0])


# ======================================================================================
# InVEST Annual Water Yield: pixels by hand
# ======================================================================================
def test_awy_vegetated_pixel_by_hand():
    # P = 1000 mm, ET0 = 1200 mm, Kc = 1.0 -> PET = 1200 mm, PET/P = 1.2
    # AWC = min(soil 1000, root 2000) * PAWC 0.2 = 200 mm ; omega = Z*AWC/P + 1.25 = 5*200/1000 + 1.25 = 2.25
    # 1.2^2.25 = exp(2.25 * ln 1.2) = exp(2.25 * 0.1823216) = 1.5071546
    # (1 + 1.5071546)^(1/2.25) = 2.5071546^0.4444 = 1.5045750
    # AET/P = 1 + 1.2 - 1.5045750 = 0.6954250 (< PET/P = 1.2, so not limited by PET)
    # Y = (1 - 0.6954250) * 1000 = 304.5750 mm ; Q = 304.5750 * 900 / 1000 = 274.1175 m3 ; AET = 695.4250 mm
    q, d, aet = awy1(1000, 1200, 1.0, 2000, 1000, 0.2, 1, 5.0)
    assert q == pytest.approx(274.11746, rel=1e-6)
    assert aet == pytest.approx(695.42504, rel=1e-6)
    assert d == 0.0
    # the root depth is the shorter one now: AWC = min(1000, 500) * 0.4 = 200 mm -> same omega, same Y
    assert awy1(1000, 1200, 1.0, 500, 1000, 0.4, 1, 5.0)[0] == pytest.approx(274.11746, rel=1e-6)


def test_awy_omega_is_capped_at_5():
    # Z = 30: omega = 30 * 200 / 1000 + 1.25 = 7.25 -> capped to 5 (InVEST)
    # 1.2^5 = 2.48832 ; (1 + 2.48832)^(1/5) = 3.48832^0.2 = 1.2838765
    # AET/P = 2.2 - 1.2838765 = 0.9161235 ; Y = 83.87654 mm ; Q = 83.87654 * 0.9 = 75.48889 m3
    q, _, aet = awy1(1000, 1200, 1.0, 2000, 1000, 0.2, 1, 30.0)
    assert q == pytest.approx(75.488887, rel=1e-6)
    assert aet == pytest.approx(916.12346, rel=1e-6)
    # any larger Z gives the same (omega stays 5)
    assert awy1(1000, 1200, 1.0, 2000, 1000, 0.2, 1, 300.0)[0] == pytest.approx(75.488887, rel=1e-6)


def test_awy_non_vegetated_pixels():
    # lulc_veg = 0: AET = min(Kc * ET0, P)
    # urban Kc 0.2: AET = min(0.2 * 1200, 1000) = 240 mm ; Y = 760 mm ; Q = 760 * 0.9 = 684 m3
    q, _, aet = awy1(1000, 1200, 0.2, 1.0, 1000, 0.2, 0, 5.0)
    assert (q, aet) == (pytest.approx(684.0, rel=1e-6), pytest.approx(240.0, rel=1e-6))
    # open water Kc 1.05: Kc * ET0 = 1260 > P = 1000 -> AET = P = 1000 mm, Y = 0
    q, _, aet = awy1(1000, 1200, 1.05, 1.0, 1000, 0.2, 0, 5.0)
    assert (q, aet) == (0.0, pytest.approx(1000.0, rel=1e-6))
    # root depth, soil depth and PAWC do not enter (but must have data, as in InVEST)
    assert awy1(1000, 1200, 0.2, 1.0, 5, 0.9, 0, 5.0)[0] == pytest.approx(684.0, rel=1e-6)
    assert math.isnan(awy1(1000, 1200, 0.2, 1.0, np.nan, 0.9, 0, 5.0)[0])


def test_awy_p_zero_and_nodata_are_nan():
    # InVEST fractp_op treats P = 0 as nodata
    for args in [(0, 1200, 1.0, 2000, 1000, 0.2, 1), (np.nan, 1200, 1.0, 2000, 1000, 0.2, 1),
                 (1000, np.nan, 1.0, 2000, 1000, 0.2, 1), (1000, 1200, 1.0, 2000, 1000, np.nan, 1),
                 (-5, 1200, 1.0, 2000, 1000, 0.2, 1), (0, 1200, 0.2, 1, 1000, 0.2, 0)]:
        assert all(math.isnan(v) for v in awy1(*args, 5.0)), args


def test_awy_kernel_equals_vectorised_invest_rules():
    """Random pixels against a numpy transcription of the user-guide equations with InVEST's rules."""
    rng = np.random.default_rng(7)
    n = (50, 40)
    p = rng.uniform(0, 3000, n).astype(np.float32)
    p[0, :5] = 0.0
    et0 = rng.uniform(200, 2500, n).astype(np.float32)
    kc = rng.uniform(0, 1.5, n).astype(np.float32)
    root = rng.uniform(0, 5000, n).astype(np.float32)
    soil = rng.uniform(0, 3000, n).astype(np.float32)
    pawc = rng.uniform(0, 1, n).astype(np.float32)
    veg = (rng.random(n) < 0.7).astype(np.float32)
    z = 12.0
    q, _, aet = invest_annual_water_yield(p, et0, kc, root, soil, pawc, veg, z, np.full(n[0], 900.0))
    P, PET = p.astype(float), kc.astype(float) * et0
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.minimum(np.minimum(root, soil).astype(float) * pawc / P * z + 1.25, 5.0)
        fu = 1 + PET / P - (1 + (PET / P) ** w) ** (1 / w)
        frac = np.where(veg == 1, np.minimum(PET / P, fu), np.minimum(PET, P) / P)
        y = (1 - frac) * P
    y[P == 0] = np.nan
    np.testing.assert_allclose(q, y * 0.9, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(aet, np.where(P == 0, np.nan, frac * P), rtol=2e-6, atol=1e-6)
    assert np.nanmin(q) >= 0.0


def test_awy_kernel_value_errors():
    a = np.ones((2, 2), np.float32)
    with pytest.raises(ValueError, match="one shape"):
        invest_annual_water_yield(a, a, a, a, a, a, np.ones((2, 3), np.float32), 5.0, np.ones(2))
    with pytest.raises(ValueError, match="one value per row"):
        invest_annual_water_yield(a, a, a, a, a, a, a, 5.0, np.ones(3))
    with pytest.raises(ValueError, match="seasonality_z"):
        invest_annual_water_yield(a, a, a, a, a, a, a, 0.0, np.ones(2))


# ======================================================================================
# the water-conservation service with method invest_awy
# ======================================================================================
def awy_config(tiny, extra: str = "soil_depth_mm: 1000, pawc_fraction: 0.2", z: str = "seasonality_z: 5, "):
    leg = pd.read_csv(tiny.parent / "legend.csv")
    # forest and paddy vegetated (root depth 2000 / 500 mm); water and town not (root depth unused: -1)
    leg["root_depth"] = [2000, 500, -1, -1]
    leg["lulc_veg"] = [1, 1, 0, 0]
    leg.to_csv(tiny.parent / "legend.csv", index=False)
    text = tiny.read_text().replace("et: {path: et.tif}", "et0: {path: et.tif}")
    text = text.replace("services:\n", f"services:\n  water_conservation: {{method: invest_awy, {z}{extra}}}\n", 1)
    p = tiny.parent / "awy.yaml"
    p.write_text(text)
    return p


def test_awy_service_pixels(tiny):
    model, cfg = model_for(awy_config(tiny))
    wc = model.service("water_conservation")
    assert wc.flags["method"] == "invest_awy" and "InVEST Annual Water Yield" in wc.note and "ASSUMPTION" in wc.note
    assert len(wc.assumptions) == 2
    assert "runoff_coef" not in required_legend_columns(cfg)
    # forest (Kc 1.0, root 2000, veg 1), P 1000, ET0 1200: the hand pixel above, 274.1175 m3 ; x 7.06 yuan/m3
    # town (Kc 0.2, veg 0): Y = 1000 - 240 = 760 mm -> 684 m3
    # paddy (Kc 1.1, root 500): PET = 1320, PET/P = 1.32 ; AWC = min(1000, 500) * 0.2 = 100 ; omega = 0.5 + 1.25 = 1.75
    #   1.32^1.75 = exp(1.75 * 0.2776317) = 1.6255651 ; 2.6255651^(1/1.75) = 1.7360246 ; AET/P = 2.32 - 1.7360246
    #   = 0.5839754 -> Y = 416.0246 mm -> Q = 374.4222 m3
    b = block(lc=[1, 4, 2], precip=[1000.0] * 3, et=[1200.0] * 3, slope_pct_filled=[5.0] * 3, flow_aspect=[1.0] * 3,
              upslope=[1.0] * 3)
    out = model.compute_block(b, AREA)
    fu = 1 + 1.32 - (1 + 1.32 ** 1.75) ** (1 / 1.75)
    assert fu == pytest.approx(0.5839754, rel=1e-6)
    np.testing.assert_allclose(out["water_conservation_m3"][0], [274.11746, 684.0, (1 - fu) * 1000 * 0.9],
                               rtol=1e-6)
    assert out["water_conservation_yuan"][0, 0] == pytest.approx(274.11746 * 7.06, rel=1e-6)
    assert out["et_mm"][0, 1] == pytest.approx(240.0, rel=1e-6)


def test_awy_service_with_rasters_requests_them(tiny):
    write_raster(tiny.parent / "soil.tif", np.full((40, 50), 1000.0, np.float32), nodata=-9999.0)
    write_raster(tiny.parent / "pawc.tif", np.full((40, 50), 0.2, np.float32), nodata=-9999.0)
    p = awy_config(tiny, "depth_to_root_restricting_layer: {path: soil.tif}, pawc: {path: pawc.tif}")
    model, _ = model_for(p)
    req = model.input_requests()
    assert set(req) == {"wc_root_restricting_depth", "wc_pawc"}
    assert req["wc_pawc"].config_key == "services.water_conservation.pawc"
    assert {"wc_root_restricting_depth", "wc_pawc"} <= set(model.input_keys())
    assert model.service("water_conservation").assumptions == []
    b = block(lc=[1], precip=[1000.0], et=[1200.0], slope_pct_filled=[5.0], flow_aspect=[1.0], upslope=[1.0],
              wc_root_restricting_depth=[1000.0], wc_pawc=[0.2])
    assert model.compute_block(b, AREA)["water_conservation_m3"][0, 0] == pytest.approx(274.11746, rel=1e-6)


def test_awy_end_to_end_run(tiny):
    """Whole run with invest_awy (PAWC raster through input_requests) and slope_based LS: no routing needed."""
    import rasterio

    from gep_raster.pipeline import run

    write_raster(tiny.parent / "pawc.tif", np.full((40, 50), 0.2, np.float32), nodata=-9999.0)
    p = awy_config(tiny, "soil_depth_mm: 1000, pawc: {path: pawc.tif}")
    p.write_text(p.read_text().replace("soil_retention: {r_method: renard_freimund_1994}",
                                       "soil_retention: {r_method: renard_freimund_1994, ls_method: slope_based}"))
    res = run(load_config(p), progress=False)
    m = json.loads(res.manifest_path.read_text())
    assert "InVEST Annual Water Yield" in m["methods"]["water_conservation"]
    assert "lambda/22.13" in m["methods"]["soil_retention"]
    with rasterio.open(res.output_dir / "rasters/physical/water_conservation_m3.tif") as ds:
        q = ds.read(1)
    with rasterio.open(tiny.parent / "p.tif") as ds:
        P = ds.read(1).astype(float)
    # pixel (30, 45) is forest (class 1), ET0 = 800 + 30 = 830 mm, Kc 1.0, AWC = min(1000, 2000) * 0.2 = 200 mm
    r, c = 30, 45
    w = 5 * 200 / P[r, c] + 1.25
    phi = 830.0 / P[r, c]
    y = (1 - min(phi, 1 + phi - (1 + phi ** w) ** (1 / w))) * P[r, c]
    assert q[r, c] == pytest.approx(y * 0.9, rel=1e-5)


def test_awy_config_errors(tiny):
    with pytest.raises(ConfigError, match="needs inputs.et0"):
        p = awy_config(tiny)
        p.write_text(p.read_text().replace("et0: {path: et.tif}", "et: {path: et.tif}"))
        load_config(p)
    with pytest.raises(ConfigError, match="needs seasonality_z"):
        load_config(awy_config(tiny, z=""))
    with pytest.raises(ConfigError, match="exactly one of pawc .raster. or pawc_fraction"):
        load_config(awy_config(tiny, "soil_depth_mm: 1000"))
    with pytest.raises(ConfigError, match="both given"):
        load_config(awy_config(tiny, "soil_depth_mm: 1000, pawc_fraction: 0.2, pawc: {path: p.tif}"))
    with pytest.raises(ConfigError, match="only used by method 'invest_awy'"):
        load_config(tiny, overrides={"services": {"water_conservation": {"seasonality_z": 5}}})


def test_awy_legend_errors(tiny):
    p = awy_config(tiny)
    leg = pd.read_csv(tiny.parent / "legend.csv")
    leg.loc[0, "lulc_veg"] = 2
    leg.to_csv(tiny.parent / "legend.csv", index=False)
    with pytest.raises(TableError, match="lulc_veg"):
        model_for(p)
    leg["lulc_veg"] = leg["lulc_veg"].astype(float)
    leg.loc[0, "lulc_veg"] = 0.5
    leg.to_csv(tiny.parent / "legend.csv", index=False)
    with pytest.raises(TableError, match=r"'lulc_veg' must be 0 or 1"):
        model_for(p)
    leg.loc[0, "lulc_veg"] = 1
    leg.loc[0, "root_depth"] = -1
    leg.to_csv(tiny.parent / "legend.csv", index=False)
    with pytest.raises(TableError, match=r"'root_depth' \(mm\) must be a number >= 0 on vegetated classes"):
        model_for(p)


# ======================================================================================
# slope-based LS and the LS methods of the soil-retention service
# ======================================================================================
def test_slope_based_ls_by_hand():
    # slope 5 %: m = 0.4 (3.5 < s <= 5 %), S = 10.8 sin(theta) + 0.03, sin = 0.05/sqrt(1.0025) = 0.0499376
    #   S = 0.5693263 ; L = (30 / 22.13)^0.4 = 1.3556258^0.4 = 1.1294212 ; LS = 0.6430092
    sin = 0.05 / math.sqrt(1.0025)
    ls_05 = (30 / 22.13) ** 0.4 * (10.8 * sin + 0.03)
    assert ls_05 == pytest.approx(0.6430092, rel=1e-6)
    # slope 20 %: sin = 0.2/sqrt(1.04) = 0.1961161 ; S = 16.8 sin - 0.5 = 2.7947511
    #   beta = (sin/0.0896)/(3 sin^0.8 + 0.56) = 2.1887962/(3*0.2716506 + 0.56) = 1.5919076 ; m = beta/(1+beta)
    #   = 0.6141838 ; lambda 50 m: L = (50/22.13)^0.6141838
    sin2 = 0.2 / math.sqrt(1.04)
    beta = (sin2 / 0.0896) / (3 * sin2 ** 0.8 + 0.56)
    m = beta / (1 + beta)
    assert m == pytest.approx(0.6141838, rel=1e-6)
    ls_20 = (50 / 22.13) ** m * (16.8 * sin2 - 0.5)
    out = ls_factor_slope_length_kernel(np.array([[0.05, 0.20]], np.float32), 30.0)
    assert out[0, 0] == pytest.approx(ls_05, rel=1e-6)
    out = ls_factor_slope_length_kernel(np.array([[0.20, np.nan, -0.1]], np.float32), 50.0)
    assert out[0, 0] == pytest.approx(ls_20, rel=1e-6) and np.isnan(out[0, 1:]).all()
    # L cap: lambda 1000 m, slope 20 % -> L = (1000/22.13)^m, capped at l_max = 1.5
    assert ls_factor_slope_length_kernel(np.array([[0.2]], np.float32), 1000.0, l_max=1.5)[0, 0] == pytest.approx(
        1.5 * (16.8 * sin2 - 0.5), rel=1e-6)
    # same as Desmet & Govers for a single cell with x = 1 and lambda = D: ((D^2)^(m+1))/(D^(m+2) 22.13^m) = (D/22.13)^m
    s = np.array([[0.005, 0.02, 0.04, 0.07, 0.3]], np.float32)
    np.testing.assert_allclose(ls_factor_slope_length_kernel(s, 30.0),
                               ls_factor_kernel(s, np.ones_like(s), np.ones_like(s), 30.0), rtol=1e-6)
    with pytest.raises(ValueError, match="slope_length_m"):
        ls_factor_slope_length_kernel(s, 0.0)


def test_defaults(tiny):
    assert WaterConfig().method == "water_balance"
    c = SoilConfig()
    assert (c.ls_method, c.routing, c.threshold_flow_accumulation) == ("invest_3_13", "d8", None)
    model, cfg = model_for(tiny)
    soil = model.service("soil_retention")
    assert soil.routing == "d8" and soil.routing_options == {} and soil.needs_routing()
    assert soil.input_keys() == ["lc", "slope_pct_filled", "upslope", "flow_aspect", "precip"]
    assert model.needs_routing() and model.routing_request() == ("d8", {})
    assert "runoff_coef" in required_legend_columns(cfg) and "lulc_veg" not in required_legend_columns(cfg)
    assert model.service("water_conservation").input_requests() == {}


def test_renamed_ls_methods_are_refused_with_the_replacement(tiny):
    with pytest.raises(ConfigError, match="renamed: use ls_method: invest_3_13 with routing: d8_flood"):
        model_for(tiny, services={"soil_retention": {"ls_method": "desmet_govers_d8"}})
    with pytest.raises(ConfigError, match="threshold_flow_accumulation needs a routed ls_method"):
        model_for(tiny, services={"soil_retention": {"ls_method": "slope_based", "threshold_flow_accumulation": 10}})


def test_slope_based_service(tiny):
    model, _ = model_for(tiny, services={"soil_retention": {"ls_method": "slope_based"}})
    soil = model.service("soil_retention")
    assert soil.routing is None and not soil.needs_routing() and not model.needs_routing()
    assert "upslope" not in model.input_keys() and "aspect_x" not in soil.input_keys()
    assert any("slope length = the cell size (30 m)" in a for a in soil.assumptions)
    b = dict(lc=[1], precip=[1600.0], et=[850.0], slope=[0.05])
    assert model.compute_block(block(**b), AREA)["ls_factor"][0, 0] == pytest.approx(0.6430092, rel=1e-6)
    # slope_length_m 200 m: capped at the 122 m hillslope-length cap by default, 200 m without the cap
    sin = 0.05 / math.sqrt(1.0025)
    S = 10.8 * sin + 0.03
    capped, _ = model_for(tiny, services={"soil_retention": {"ls_method": "slope_based", "slope_length_m": 200}})
    assert not any("slope length" in a for a in capped.service("soil_retention").assumptions)
    assert capped.compute_block(block(**b), AREA)["ls_factor"][0, 0] == pytest.approx((122 / 22.13) ** 0.4 * S,
                                                                                     rel=1e-6)
    free, _ = model_for(tiny, services={"soil_retention": {"ls_method": "slope_based", "slope_length_m": 200,
                                                           "slope_length_cap": False}})
    assert free.compute_block(block(**b), AREA)["ls_factor"][0, 0] == pytest.approx((200 / 22.13) ** 0.4 * S,
                                                                                   rel=1e-6)
    with pytest.raises(ConfigError, match="slope_length_m is only used by ls_method 'slope_based'"):
        model_for(tiny, services={"soil_retention": {"slope_length_m": 30}})


def test_ls_methods_of_the_service_by_hand(tiny):
    # one pixel: 20 % slope (tan 0.2), FA = 3.25 cells, aspect term 1.2, D = 30 m, forest (C 0.006, P 1)
    b = dict(lc=[1, 1], precip=[1600.0] * 2, et=[850.0] * 2, slope_pct_filled=[20.0, 5.0], upslope=[3.25, 1.0],
             flow_aspect=[1.2, 1.0])
    t = math.atan(0.2)
    sin = math.sin(t)
    beta = (sin / 0.0896) / (3 * sin ** 0.8 + 0.56)
    m = beta / (1 + beta)
    s = 16.8 * sin - 0.5
    # invest_3_13: A_in = 2.25 * 900 m2, L = ((A_in + 900)^(m+1) - A_in^(m+1)) / (30^(m+2) * 1.2^m * 22.13^m)
    a13 = 2.25 * 900
    l13 = ((a13 + 900) ** (m + 1) - a13 ** (m + 1)) / (30 ** (m + 2) * 1.2 ** m * 22.13 ** m)
    m13, _ = model_for(tiny, services={"soil_retention": {"slope_length_cap": False}})
    assert m13.compute_block(block(**b), AREA)["ls_factor"][0, 0] == pytest.approx(l13 * s, rel=1e-5)
    # invest_3_20: A = sqrt(2.25 * 900) = 45 m, x = |sin t| + |cos t| (flow_aspect not read)
    x = sin + math.cos(t)
    l20 = ((45 + 900) ** (m + 1) - 45 ** (m + 1)) / (30 ** (m + 2) * x ** m * 22.13 ** m)
    m20, _ = model_for(tiny, services={"soil_retention": {"ls_method": "invest_3_20", "routing": "mfd",
                                                          "slope_length_cap": False}})
    soil = m20.service("soil_retention")
    assert soil.routing == "mfd" and "flow_aspect" not in soil.input_keys()
    assert "InVEST SDR 3.14-3.20" in soil.note and "pygeoprocessing flow_dir_mfd" in soil.note
    out = m20.compute_block(block(**b), AREA)
    assert out["ls_factor"][0, 0] == pytest.approx(l20 * s, rel=1e-6)
    # RKLS and USLE in t/ha/a: R from P = 1600 (Renard & Freimund: 587.8 - 1.219P + 0.004105P^2), K 0.03
    r = 587.8 - 1.219 * 1600 + 0.004105 * 1600 ** 2
    assert out["potential_erosion"][0, 0] == pytest.approx(r * 0.03 * l20 * s, rel=1e-5)
    assert out["actual_erosion"][0, 0] == pytest.approx(r * 0.03 * l20 * s * 0.006, rel=1e-5)
    assert out["soil_retention_t"][0, 0] == pytest.approx(r * 0.03 * l20 * s * 0.994 * 0.09, rel=1e-5)


def test_stream_cells_retain_nothing(tiny):
    model, _ = model_for(tiny, services={"soil_retention": {"ls_method": "invest_3_20",
                                                            "threshold_flow_accumulation": 100}})
    soil = model.service("soil_retention")
    assert soil.routing_options == {"threshold_flow_accumulation": 100.0} and "stream" in soil.input_keys()
    b = dict(lc=[1, 1], precip=[1600.0] * 2, et=[850.0] * 2, slope_pct_filled=[20.0, 20.0], upslope=[150.0, 50.0],
             stream=[1.0, 0.0])
    out = model.compute_block(block(**b), AREA)
    assert out["soil_retention_t"][0, 0] == 0.0 and out["soil_retention_t"][0, 1] > 0
    assert np.isnan(out["potential_erosion"][0, 0]) and np.isfinite(out["potential_erosion"][0, 1])
    assert np.isfinite(out["ls_factor"][0]).all()  # InVEST's ls.tif is not masked by streams either


def test_routed_service_on_a_whole_dem(tiny):
    """What the pipeline does for a routed LS method: route the whole DEM, slope of the filled DEM, blocks."""
    from gep_raster.grid.run_inputs import open_inputs, reference_grid

    cfg = load_config(tiny, overrides={"services": {"soil_retention": {"routing": "mfd",
                                                                       "threshold_flow_accumulation": 50}}})
    legend = load_legend(cfg, required_legend_columns(cfg))
    grid = reference_grid(cfg)
    model = ServiceModel.from_config(cfg, legend, PriceBook.from_config(cfg), cell_size=grid.res[0],
                                     geographic=False)
    soil = model.service("soil_retention")
    src = open_inputs(cfg, grid, model.input_keys(), model.input_requests())
    dem = src["dem"].read_all()
    prod = route(dem, grid.transform, method=soil.routing, **soil.routing_options)
    arrays = {k: src[k].read_all() for k in model.input_keys() if k in src}
    arrays.update({k: v for k, v in prod.items() if k in model.input_keys()})
    arrays.update(model.terrain_numpy(dem, grid.res, filled_dem=prod["filled_dem"]))
    out = model.compute_numpy(arrays, grid.row_pixel_area_m2)
    ls = out["ls_factor"]
    assert np.isfinite(ls[np.isfinite(out["gep_r_yuan"])]).all()
    # mass conservation of the MFD counts on the tiny DEM (40 x 50, all valid): the outflow of the border cells
    # is what leaves the grid; every cell is counted once in total
    assert np.nanmax(prod["upslope"]) <= 2000.0 and np.nanmin(prod["upslope"]) >= 1.0
    assert (prod["stream"] == 1).sum() > 0
