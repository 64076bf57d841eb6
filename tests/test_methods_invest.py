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
from gep_raster.routing import (fill_depressions_d8, mfd_accumulation, upslope_area, upslope_area_mfd,
                                upslope_cells)
from gep_raster.services import ServiceModel
from gep_raster.services.soil_retention import Config as SoilConfig
from gep_raster.services.water_conservation import Config as WaterConfig
from gep_raster.tables import PriceBook, load_legend, required_legend_columns

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
    text += f"services:\n  water_conservation: {{method: invest_awy, {z}{extra}}}\n"
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
    b = block(lc=[1, 4, 2], precip=[1000.0] * 3, et=[1200.0] * 3, slope=[0.05] * 3, aspect_x=[1.0] * 3,
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
    b = block(lc=[1], precip=[1000.0], et=[1200.0], slope=[0.05], aspect_x=[1.0], upslope=[1.0],
              wc_root_restricting_depth=[1000.0], wc_pawc=[0.2])
    assert model.compute_block(b, AREA)["water_conservation_m3"][0, 0] == pytest.approx(274.11746, rel=1e-6)


def test_awy_end_to_end_run(tiny):
    """Whole run with invest_awy (PAWC raster through input_requests) and slope_based LS: no routing needed."""
    import rasterio

    from gep_raster.pipeline import run

    write_raster(tiny.parent / "pawc.tif", np.full((40, 50), 0.2, np.float32), nodata=-9999.0)
    p = awy_config(tiny, "soil_depth_mm: 1000, pawc: {path: pawc.tif}")
    p.write_text(p.read_text() + "  soil_retention: {ls_method: slope_based}\n")
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
# MFD flow accumulation
# ======================================================================================
def mfd(z, **kw):
    f, d8 = fill_depressions_d8(np.asarray(z, np.float32))
    return mfd_accumulation(f, d8, 30.0, 30.0, **kw)


def test_mfd_one_row_equals_d8():
    # unidirectional flow: every cell gives everything to its east neighbour -> 1, 2, 3, 4, 5 cells
    z = np.array([[4, 3, 2, 1, 0]], np.float32)
    for q in (False, True):
        acc, outlet = mfd(z, quantize=q)
        np.testing.assert_array_equal(acc, [[1, 2, 3, 4, 5]])
        assert outlet.tolist() == [[False, False, False, False, True]]
    np.testing.assert_array_equal(upslope_area(z, T30), [[1, 2, 3, 4, 5]])


def test_mfd_planar_slope_equals_d8_away_from_the_sides():
    # plane z = 100 - 0.5 m per column (21 x 8): lower neighbours E (drop 0.5 over 30 m) and NE, SE (0.5 over 42.4 m),
    # shares 1 : 1/sqrt2 : 1/sqrt2 = 0.4142, 0.2929, 0.2929. All flow goes east and rows are alike, so a cell whose
    # upslope cone does not touch the first or last row gets col + 1 cells, the D8 count.
    h, w = 21, 8
    z = np.tile(100 - 0.5 * np.arange(w, dtype=np.float32), (h, 1))
    d8 = upslope_area(z, T30)
    for q in (False, True):
        acc, outlet = mfd(z, quantize=q)
        np.testing.assert_allclose(acc[10], np.arange(1, w + 1), rtol=1e-12)
        np.testing.assert_allclose(acc[10, :-1], d8[10, :-1], rtol=1e-6)
        assert outlet[:, -1].all() and not outlet[:, :-1].any()
        assert acc[outlet].sum() == pytest.approx(h * w, rel=1e-12)
    # the first row, lacking its NW/NE donors and receivers, differs from D8 (MFD spreads along the edge)
    acc, _ = mfd(z)
    assert acc[0, 3] != pytest.approx(4.0)


def test_mfd_ridge_splits():
    # ridge in one row z = 0 1 2 1 0: the crest gives 1/2 each way -> 2.5 1.5 1 1.5 2.5
    acc, outlet = mfd(np.array([[0, 1, 2, 1, 0]], np.float32))
    np.testing.assert_allclose(acc, [[2.5, 1.5, 1.0, 1.5, 2.5]])
    assert outlet.tolist() == [[True, False, False, False, True]]
    # 3 x 3 pyramid, peak 1 m over 8 neighbours at 0 m (all edge cells: outlets):
    # weights: cardinal 1/30, diagonal 1/42.43 -> shares 1/(4 + 4/sqrt2) = 0.1464466 and (1/sqrt2)/(4 + 4/sqrt2)
    # = 0.1035534
    z = np.zeros((3, 3), np.float32)
    z[1, 1] = 1.0
    acc, outlet = mfd(z)
    card, diag = 1 / (4 + 4 / math.sqrt(2)), (1 / math.sqrt(2)) / (4 + 4 / math.sqrt(2))
    assert card == pytest.approx(0.1464466, rel=1e-6)
    np.testing.assert_allclose(acc, [[1 + diag, 1 + card, 1 + diag], [1 + card, 1, 1 + card],
                                     [1 + diag, 1 + card, 1 + diag]], rtol=1e-12)
    assert acc[outlet].sum() == pytest.approx(9.0)
    # pygeoprocessing 4-bit shares: int(0.5 + 15 * 0.1464) = int(2.70) = 2, int(0.5 + 15 * 0.1036) = int(2.05) = 2
    # -> eight shares of 2/16 = 0.125
    acc, _ = mfd(z, quantize=True)
    np.testing.assert_allclose(acc[outlet], 1.125)
    # Freeman p = 1.1: diagonal weight (1/sqrt2)^1.1 = 0.6830201 -> cardinal share 1/(4 + 4*0.6830201) = 0.1485425
    acc, _ = mfd(z, exponent=1.1)
    dw = (1 / math.sqrt(2)) ** 1.1
    assert dw == pytest.approx(0.6830201, rel=1e-6)
    assert acc[0, 1] == pytest.approx(1 + 1 / (4 + 4 * dw), rel=1e-12)
    assert acc[0, 0] == pytest.approx(1 + dw / (4 + 4 * dw), rel=1e-12)


def test_mfd_mass_conservation_with_pits_and_holes():
    rng = np.random.default_rng(3)
    h, w = 60, 70
    yy, xx = np.mgrid[0:h, 0:w]
    z = (rng.random((h, w)) * 20 + 0.3 * xx + 0.1 * yy).astype(np.float32)  # rough: many pits and flats after fill
    z[20:30, 30:40] = np.nan  # a nodata hole (its rim drains into it)
    z[5, 5] = -50.0  # a deep pit, filled
    z[40:45, 10:15] = 3.0  # a flat
    n_valid = int(np.isfinite(z).sum())
    for q in (False, True):
        acc, outlet = mfd(z, quantize=q)
        assert acc[outlet].sum() == pytest.approx(n_valid, rel=1e-12)  # everything leaves through the outlets
        assert np.nanmin(acc) >= 1.0 and np.isnan(acc[25, 35])
        assert not outlet[5, 5]  # the filled pit drains on
        # outlets touch the grid border or the hole
        ok = np.zeros((h, w), bool)
        ok[0, :] = ok[-1, :] = ok[:, 0] = ok[:, -1] = True
        ok[19:31, 29:41] = True
        assert not (outlet & ~ok).any()
    # the fill is exact along the D8 tree: no code points uphill
    f, d8 = fill_depressions_d8(z)
    dr = {1: (0, 1), 2: (1, 1), 4: (1, 0), 8: (1, -1), 16: (0, -1), 32: (-1, -1), 64: (-1, 0), 128: (-1, 1)}
    for r, c in zip(*np.nonzero(np.isfinite(f))):
        if int(d8[r, c]) in dr:
            a, b = dr[int(d8[r, c])]
            assert f[r + a, c + b] <= f[r, c]


def test_upslope_area_mfd_and_dispatch():
    z = np.tile(100 - 0.5 * np.arange(6, dtype=np.float32), (13, 1))  # row 6: cone of col 5 misses rows 0, 12
    a = upslope_area_mfd(z, T30, quantize=False)
    assert a.dtype == np.float32
    np.testing.assert_allclose(a[6], np.arange(1, 7), rtol=1e-6)
    np.testing.assert_array_equal(upslope_cells(z, T30, method="mfd", quantize=False), a)
    np.testing.assert_array_equal(upslope_cells(z, T30, method="d8"), upslope_area(z, T30))
    with pytest.raises(ValueError, match="routing method"):
        upslope_cells(z, T30, method="dinf")
    with pytest.raises(ValueError, match="no options"):
        upslope_cells(z, T30, method="d8", exponent=1.1)
    with pytest.raises(ValueError, match="projected grid"):
        upslope_area_mfd(z, T30, latlon=True)
    with pytest.raises(ValueError, match="exponent"):
        upslope_area_mfd(z, T30, exponent=0)
    with pytest.raises(ValueError, match="no valid"):
        upslope_area_mfd(np.full((3, 3), np.nan, np.float32), T30)


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


def test_defaults_are_unchanged(tiny):
    assert WaterConfig().method == "water_balance"
    assert SoilConfig().ls_method == "desmet_govers_d8"
    model, cfg = model_for(tiny)
    soil = model.service("soil_retention")
    assert soil.routing == "d8" and soil.routing_key == "upslope" and soil.needs_routing()
    assert soil.input_keys() == ["lc", "slope", "aspect_x", "upslope", "precip"]
    assert model.needs_routing()
    assert "runoff_coef" in required_legend_columns(cfg) and "lulc_veg" not in required_legend_columns(cfg)
    assert model.service("water_conservation").input_requests() == {}


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
    assert capped.service("soil_retention").assumptions == []
    assert capped.compute_block(block(**b), AREA)["ls_factor"][0, 0] == pytest.approx((122 / 22.13) ** 0.4 * S,
                                                                                     rel=1e-6)
    free, _ = model_for(tiny, services={"soil_retention": {"ls_method": "slope_based", "slope_length_m": 200,
                                                           "slope_length_cap": False}})
    assert free.compute_block(block(**b), AREA)["ls_factor"][0, 0] == pytest.approx((200 / 22.13) ** 0.4 * S,
                                                                                   rel=1e-6)
    with pytest.raises(ConfigError, match="slope_length_m is only used by ls_method 'slope_based'"):
        model_for(tiny, services={"soil_retention": {"slope_length_m": 30}})


def test_mfd_service_uses_the_same_l_on_mfd_counts(tiny):
    d8, _ = model_for(tiny)
    mf, _ = model_for(tiny, services={"soil_retention": {"ls_method": "desmet_govers_mfd"}})
    soil = mf.service("soil_retention")
    assert soil.routing == "mfd" and soil.routing_key == "upslope_mfd" and soil.needs_routing()
    assert soil.routing_options == {"exponent": 1.0, "quantize": True}  # parameters.csv soil_retention.mfd_exponent
    assert "upslope_mfd" in mf.input_keys() and "upslope" not in mf.input_keys()
    assert "multiple-flow-direction" in soil.note
    b = dict(lc=[1, 1], precip=[1600.0] * 2, et=[850.0] * 2, slope=[0.2, 0.05], aspect_x=[1.2, 1.0])
    ls_d8 = d8.compute_block(block(upslope=[3.25, 1.0], **b), AREA)["ls_factor"]
    ls_mfd = mf.compute_block(block(upslope_mfd=[3.25, 1.0], **b), AREA)["ls_factor"]
    np.testing.assert_array_equal(ls_d8, ls_mfd)


def test_mfd_service_on_a_whole_dem(tiny):
    """What the pipeline does for desmet_govers_mfd: routing on the whole DEM, then the block computation."""
    from gep_raster.pipeline import open_inputs, reference_grid

    cfg = load_config(tiny, overrides={"services": {"soil_retention": {"ls_method": "desmet_govers_mfd"}}})
    legend = load_legend(cfg, required_legend_columns(cfg))
    grid = reference_grid(cfg)
    model = ServiceModel.from_config(cfg, legend, PriceBook.from_config(cfg), cell_size=grid.res[0],
                                     geographic=False)
    soil = model.service("soil_retention")
    src = open_inputs(cfg, grid, model.input_keys(), model.input_requests())
    dem = src["dem"].read_all()
    arrays = {k: src[k].read_all() for k in model.input_keys() if k not in ("slope", "aspect_x", "upslope_mfd")}
    arrays.update(model.terrain_numpy(dem, grid.res))
    arrays[soil.routing_key] = upslope_cells(dem, grid.transform, method=soil.routing, **soil.routing_options)
    out = model.compute_numpy(arrays, grid.row_pixel_area_m2)
    ls = out["ls_factor"]
    assert np.isfinite(ls[np.isfinite(out["gep_r_yuan"])]).all()
    # mass conservation of the routed counts on the tiny DEM (40 x 50, all valid)
    f, d8 = fill_depressions_d8(dem)
    acc, outlet = mfd_accumulation(f, d8, 30.0, 30.0, quantize=True)
    assert acc[outlet].sum() == pytest.approx(2000.0, rel=1e-12)
    np.testing.assert_allclose(arrays["upslope_mfd"], acc.astype(np.float32))
