"""Tests of gep_raster.kernels.rusle_factors (R monthly / daily, K EPIC, FVC, C Cai 2000).

No published worked example with its *result* (a table of monthly rainfall and R, an EPIC K table, a
C-at-FVC value) could be read for these methods (see docs/rusle_factors.md, "Worked-example checks").
The expected values are therefore computed BY HAND in this file, with plain Python ``math`` and the
published formula written out literally (not with the kernels), on stated example inputs:

* K: the soil texture and organic carbon of three soil types of Huanghua City, Table 3 of
  陈召亚, 李超, 何玲, 王树涛, 许皞, 马立军 (2016) 黄骅市土壤保持价值年内动态特征, 中国生态农业学报 24(2):
  244-255 (the paper lists the inputs but not the K values);
* R, FVC, C: invented [EX] inputs, with the arithmetic in the comments.

Identities (one-month rain, homogeneity, uniform months, endpoints, continuity at 78.3 %, monotonicity),
NaN propagation and the errors are tested as well.
"""
from __future__ import annotations

import csv
import math
import pathlib
import sys

import numpy as np
import pytest

try:  # the package is not installed in the venv; make the repo root importable
    import gep_raster  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from gep_raster.kernels import rusle_factors as rf
from gep_raster.kernels.rusle_factors import (c_factor_cai2000, fractional_vegetation_cover, k_factor_epic,
                                              r_factor_daily_zhang2002, r_factor_monthly_wischmeier)

F32 = np.float32


def _stack(months, h=1, w=1):
    return (np.asarray(months, dtype=np.float64)[:, None, None] * np.ones((1, h, w))).astype(F32)


def _wischmeier_by_hand(p, a=1.735, b=1.5, c=0.8188, us_to_si=17.02):
    """The published formula written literally: R = us_to_si · Σ a · 10^(b·lg(Pi²/P) − c)."""
    big_p = sum(p)
    return us_to_si * sum(a * 10 ** (b * math.log10(pi ** 2 / big_p) - c) for pi in p if pi > 0)


# ======================================================================================
# R, monthly (Wischmeier-type formula)
# ======================================================================================
# [EX] a monsoonal station, 1200 mm/a (invented, January..December)
MONSOON_1200 = [20, 30, 50, 80, 120, 200, 280, 220, 110, 50, 25, 15]


def test_r_monthly_ex_station_by_hand():
    # Σ 1.735·10^(1.5·lg(Pi²/1200) − 0.8188) = 281.737 (e.g. July: 280²/1200 = 65.33, lg = 1.81514,
    # 1.5·1.81514 − 0.8188 = 1.90391, 10^1.90391 = 80.14, × 1.735 = 139.05; the 12 terms sum to 281.737)
    # × 17.02 = 4795.16 MJ·mm/(ha·h·a)
    got = r_factor_monthly_wischmeier(_stack(MONSOON_1200, 2, 3))
    assert got.shape == (2, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, _wischmeier_by_hand(MONSOON_1200), rtol=1e-6)
    np.testing.assert_allclose(got, 4795.16, rtol=1e-5)
    # raw sum (us_to_si = 1): the value some Chinese studies report without conversion
    raw = r_factor_monthly_wischmeier(_stack(MONSOON_1200), us_to_si=1.0)
    assert raw[0, 0] == pytest.approx(281.737, rel=1e-5)


def test_r_monthly_magnitude_plausible_against_independent_references():
    # Sanity bracket, not an exact check: with the ×17.02 conversion the EX station (1200 mm/a)
    # lies inside the R range 781.9-8258.5 MJ·mm/(ha·h·a) of 16 eastern-China stations (Xie, Yin, Liu,
    # Nearing & Zhao 2016, J. Hydrol. 535:547-558, abstract) and within 5 % of Renard & Freimund (1994)
    # for P = 1200 mm: 587.8 − 1.219·1200 + 0.004105·1200² = 587.8 − 1462.8 + 5911.2 = 5036.2.
    # Without the conversion (282) it would be 3-30x below that range.
    r = float(r_factor_monthly_wischmeier(_stack(MONSOON_1200))[0, 0])
    assert 781.9 < r < 8258.5
    assert r / 5036.2 == pytest.approx(1.0, abs=0.05)


def test_r_monthly_all_rain_in_one_month():
    # Pi = P = 100 mm in one month, 0 elsewhere: R = 17.02 · 1.735 · 10^(1.5·lg 100 − 0.8188)
    # = 17.02 · 1.735 · 10^2.1812 = 17.02 · 1.735 · 151.775 = 4481.87
    months = [0.0] * 12
    months[6] = 100.0
    got = r_factor_monthly_wischmeier(_stack(months))
    assert got[0, 0] == pytest.approx(17.02 * 1.735 * 10 ** (1.5 * 2 - 0.8188), rel=1e-6)
    assert got[0, 0] == pytest.approx(4481.87, rel=1e-5)


def test_r_monthly_uniform_months_and_homogeneity():
    # Pi = P/12: R = 17.02·1.735·12·10^(1.5·lg(P/144) − 0.8188); P = 1200: P/144 = 8.333, ^1.5 = 24.056
    # -> 17.02·1.735·12·24.056·0.151775 = 1293.8
    got = r_factor_monthly_wischmeier(_stack([100.0] * 12))[0, 0]
    assert got == pytest.approx(17.02 * 1.735 * 12 * (1200 / 144) ** 1.5 * 10 ** -0.8188, rel=1e-6)
    # Pi²/P is of degree 1 in the rainfall, so R(k·P) = k^1.5 · R(P)
    base = r_factor_monthly_wischmeier(_stack(MONSOON_1200))[0, 0]
    double = r_factor_monthly_wischmeier(_stack([2 * x for x in MONSOON_1200]))[0, 0]
    assert double == pytest.approx(2 ** 1.5 * base, rel=1e-6)
    # a more concentrated year (same total) is more erosive
    assert base > got


def test_r_monthly_coefficients_are_arguments():
    got = r_factor_monthly_wischmeier(_stack(MONSOON_1200), a=2.0, b=1.4, c=0.5, us_to_si=10.0)
    assert got[0, 0] == pytest.approx(_wischmeier_by_hand(MONSOON_1200, 2.0, 1.4, 0.5, 10.0), rel=1e-6)


def test_r_monthly_nodata_zero_and_errors():
    p = _stack(MONSOON_1200, 1, 4)
    p[:, 0, 1] = 0.0              # no rain at all -> R = 0
    p[3, 0, 2] = np.nan           # one NaN month -> NaN
    p[5, 0, 3] = -1.0             # negative -> NaN
    got = r_factor_monthly_wischmeier(p)
    assert got[0, 0] == pytest.approx(4795.16, rel=1e-5)
    assert got[0, 1] == 0.0
    assert np.isnan(got[0, 2]) and np.isnan(got[0, 3])
    with pytest.raises(ValueError, match="12"):
        r_factor_monthly_wischmeier(np.ones((11, 2, 2), F32))
    with pytest.raises(ValueError, match="12"):
        r_factor_monthly_wischmeier(np.ones((12, 2), F32))
    with pytest.raises(ValueError, match="us_to_si"):
        r_factor_monthly_wischmeier(p, us_to_si=0.0)
    with pytest.raises(ValueError, match="real numeric"):
        r_factor_monthly_wischmeier(np.full((12, 1, 1), "x"))


# ======================================================================================
# R, daily (Zhang, Xie & Liu 2002)
# ======================================================================================
def _year(n_days, rain: dict, h=1, w=1):
    p = np.zeros((n_days, h, w), F32)
    for day, mm in rain.items():
        p[day] = mm
    return p


def _zhang_by_hand(erosive_days_by_year, n_years):
    """β = 0.8363 + 18.144/Pd12 + 24.455/Py12, α = 21.586·β^−7.1891, R = mean_yr α·Σ P^β."""
    allv = [v for ys in erosive_days_by_year for v in ys]
    pd12 = sum(allv) / len(allv)
    py12 = sum(allv) / n_years
    beta = 0.8363 + 18.144 / pd12 + 24.455 / py12
    alpha = 21.586 * beta ** -7.1891
    per_year = [alpha * sum(v ** beta for v in ys) for ys in erosive_days_by_year]
    return sum(per_year) / n_years, per_year, alpha, beta


def test_r_daily_single_year_by_hand():
    # [EX] 2001 (365 days): 30 mm on day 100, 15 mm on day 200, 5 mm (not erosive) and 11.9 mm (not
    # erosive, < 12) on days 201-202, 12.0 mm on day 300 (erosive, ≥ 12).
    # erosive: 30, 15, 12 -> Pd12 = 57/3 = 19 mm, Py12 = 57 mm
    # β = 0.8363 + 18.144/19 + 24.455/57 = 0.8363 + 0.954947 + 0.429035 = 2.220282
    # α = 21.586 · 2.220282^−7.1891 = 21.586 · e^(−7.1891 · 0.797634) = 21.586 · e^(−5.734274) = 0.069793
    # R = α · (30^β + 15^β + 12^β) = 0.069793 · (1903.82 + 408.56 + 248.94) = 178.76
    p = _year(365, {100: 30.0, 200: 15.0, 201: 5.0, 202: 11.9, 300: 12.0}, 2, 2)
    got = r_factor_daily_zhang2002(p, np.full(365, 2001))
    want, _, alpha, beta = _zhang_by_hand([[30.0, 15.0, 12.0]], 1)
    assert beta == pytest.approx(2.220282, rel=1e-6)
    assert alpha == pytest.approx(0.069793, rel=1e-4)
    assert got.shape == (2, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(got, 178.76, rtol=1e-3)


def test_r_daily_two_years_mean_and_per_year():
    # [EX] 2000 (leap, 366 days): 40 mm and 20 mm; 2001: 25 mm. Pd12 = 85/3 = 28.333, Py12 = 85/2 = 42.5
    # β = 0.8363 + 0.640376 + 0.575412 = 2.052088; α = 21.586 · β^−7.1891 = 0.12296
    p = np.concatenate([_year(366, {10: 40.0, 180: 20.0}), _year(365, {200: 25.0})])
    years = np.concatenate([np.full(366, 2000), np.full(365, 2001)])
    mean, yrs, per = r_factor_daily_zhang2002(p, years, per_year=True)
    want_mean, want_per, _, beta = _zhang_by_hand([[40.0, 20.0], [25.0]], 2)
    assert beta == pytest.approx(2.052088, rel=1e-6)
    assert list(yrs) == [2000, 2001]
    np.testing.assert_allclose(per[:, 0, 0], want_per, rtol=1e-5)
    assert mean[0, 0] == pytest.approx(want_mean, rel=1e-5)
    # days in any order give the same result
    order = np.random.default_rng(0).permutation(len(years))
    np.testing.assert_allclose(r_factor_daily_zhang2002(p[order], years[order]), mean, rtol=1e-6)


def test_r_daily_given_pd12_py12():
    # long-term Pd12 = 25 mm, Py12 = 600 mm given: β = 0.8363 + 18.144/25 + 24.455/600 = 1.602818
    # α = 21.586 · 1.602818^−7.1891 = 0.726505; one 30 mm day: R = α · 30^β = 0.726505 · 233.108 = 169.35
    p = _year(365, {50: 30.0})
    got = r_factor_daily_zhang2002(p, np.full(365, 2001), pd12_mm=25.0, py12_mm=600.0)
    beta = 0.8363 + 18.144 / 25 + 24.455 / 600
    assert got[0, 0] == pytest.approx(21.586 * beta ** -7.1891 * 30.0 ** beta, rel=1e-5)
    assert got[0, 0] == pytest.approx(169.35, rel=1e-4)


def test_r_daily_nodata_dry_pixel_and_errors():
    p = _year(365, {100: 30.0}, 1, 3)
    p[:, 0, 1] = 3.0              # never ≥ 12 mm -> R = 0
    p[5, 0, 2] = np.nan           # a missing day -> NaN
    got = r_factor_daily_zhang2002(p, np.full(365, 2001))
    assert got[0, 0] > 0 and got[0, 1] == 0.0 and np.isnan(got[0, 2])
    with pytest.raises(ValueError, match="2001 has 364 days"):
        r_factor_daily_zhang2002(p[:364], np.full(364, 2001))
    assert r_factor_daily_zhang2002(p[:364], np.full(364, 2001), require_full_years=False)[0, 1] == 0.0
    with pytest.raises(ValueError, match="one year per day"):
        r_factor_daily_zhang2002(p, np.full(300, 2001))
    with pytest.raises(ValueError, match="integer"):
        r_factor_daily_zhang2002(p, np.full(365, 2001.5))
    with pytest.raises(ValueError, match="n_days, rows, cols"):
        r_factor_daily_zhang2002(p[:, 0, :], np.full(365, 2001))
    with pytest.raises(ValueError, match="threshold_mm"):
        r_factor_daily_zhang2002(p, np.full(365, 2001), threshold_mm=0)
    with pytest.raises(ValueError, match="pd12_mm"):
        r_factor_daily_zhang2002(p, np.full(365, 2001), pd12_mm=np.ones((2, 2)))


# ======================================================================================
# K, EPIC
# ======================================================================================
def _epic_by_hand(san, sil, cla, c):
    """Williams (1995) EPIC K in US units, written literally."""
    sn1 = 1 - san / 100
    return ((0.2 + 0.3 * math.exp(-0.0256 * san * (1 - sil / 100)))
            * (sil / (cla + sil)) ** 0.3
            * (1 - 0.25 * c / (c + math.exp(3.72 - 2.95 * c)))
            * (1 - 0.7 * sn1 / (sn1 + math.exp(-5.51 + 22.9 * sn1))))


# 陈召亚 et al. (2016) Table 3: sand, silt, clay (%), organic carbon (g/kg)
HUANGHUA = {
    "medium loam soil (壤质潮土)": (54.90, 38.10, 7.00, 4.72),
    "sandy loam soil (砂壤质潮土)": (71.08, 22.54, 6.38, 6.78),
    "clay moisture soil (黏性潮土)": (7.55, 27.52, 64.93, 7.02),
}


def test_k_epic_huanghua_soils_by_hand():
    # Medium loam soil: SAN 54.90, SIL 38.10, CLA 7.00, C = 4.72 g/kg = 0.472 %
    #   f_csand  = 0.2 + 0.3·e^(−0.0256·54.9·0.619) = 0.2 + 0.3·e^(−0.869981) = 0.325690
    #   f_cl-si  = (38.10/45.10)^0.3 = 0.950658
    #   f_orgc   = 1 − 0.25·0.472/(0.472 + e^(3.72 − 1.3924)) = 1 − 0.118/(0.472 + 10.2540) = 0.988998
    #   f_hisand = 1 − 0.7·0.451/(0.451 + e^(−5.51 + 10.3279)) = 1 − 0.3157/(0.451 + 123.69) = 0.997457
    #   K_EPIC = 0.305434 (US) -> × 0.1317 = 0.040226 t·ha·h/(ha·MJ·mm)
    # Sandy loam soil -> K_EPIC 0.231735 -> 0.030520; clay moisture soil -> 0.310824 -> 0.040936
    want = {"medium loam soil (壤质潮土)": 0.040226, "sandy loam soil (砂壤质潮土)": 0.030520,
            "clay moisture soil (黏性潮土)": 0.040936}
    san, sil, cla, oc = (np.array([[v[i] for v in HUANGHUA.values()]]) for i in range(4))
    got = k_factor_epic(san, sil, cla, oc, oc_unit="g/kg")
    assert got.shape == (1, 3) and got.dtype == np.float32
    for j, (name, (s1, s2, s3, c)) in enumerate(HUANGHUA.items()):
        assert got[0, j] == pytest.approx(0.1317 * _epic_by_hand(s1, s2, s3, c / 10), rel=1e-5), name
        assert got[0, j] == pytest.approx(want[name], rel=1e-4), name


def test_k_epic_units_soilgrids_and_fraction():
    s1, s2, s3, c = HUANGHUA["medium loam soil (壤质潮土)"]
    ref = k_factor_epic(np.array([[s1]]), s2, s3, c / 10)   # OC in percent
    # SoilGrids 2.0: texture in g/kg, soc in dg/kg
    sg = k_factor_epic(np.array([[s1 * 10]]), s2 * 10, s3 * 10, c * 10, texture_unit="g/kg", oc_unit="dg/kg")
    np.testing.assert_allclose(sg, ref, rtol=1e-6)
    np.testing.assert_allclose(k_factor_epic(np.array([[s1]]), s2, s3, c / 1000, oc_unit="fraction"), ref,
                               rtol=1e-6)


def test_k_epic_identities():
    s1, s2, s3 = 40.0, 40.0, 20.0
    ocs = np.array([[0.0, 0.5, 1.0, 2.0, 3.0, 5.0]])
    k = k_factor_epic(np.full_like(ocs, s1), s2, s3, ocs)
    # the organic-carbon factor is 1 at C = 0, and decreasing in C
    assert k[0, 0] == pytest.approx(0.1317 * _epic_by_hand(s1, s2, s3, 0.0), rel=1e-6)
    assert np.all(np.diff(k[0]) < 0)
    # at large C the factor tends to 1 − 0.25 = 0.75
    hi = k_factor_epic(np.array([[s1]]), s2, s3, 20.0)[0, 0]
    assert hi / k[0, 0] == pytest.approx(0.75, rel=1e-6)
    # K rises with silt at the expense of clay (fixed sand): SIL/(CLA+SIL) increases
    silts = np.array([[10.0, 20.0, 30.0, 40.0, 50.0]])
    k2 = k_factor_epic(np.full_like(silts, 40.0), silts, 60.0 - silts, 1.0)
    assert np.all(np.diff(k2[0]) > 0)
    # us_to_si is a plain factor
    k_us = k_factor_epic(np.array([[s1]]), s2, s3, 1.0, us_to_si=1.0)[0, 0]
    assert k_us == pytest.approx(_epic_by_hand(s1, s2, s3, 1.0), rel=1e-6)
    # pure sand (no silt, no clay): K = 0 (the silt -> 0 limit)
    assert k_factor_epic(np.array([[100.0]]), 0.0, 0.0, 0.5)[0, 0] == 0.0


def test_k_epic_china_correction_both_forms():
    # medium loam soil, K_EPIC = 0.305434 (US):
    # "us_units": 0.1317 · (−0.01383 + 0.51575 · 0.305434) = 0.1317 · 0.143696 = 0.018925
    # "si_units": −0.01383 + 0.51575 · 0.040226 = 0.006917
    s1, s2, s3, c = HUANGHUA["medium loam soil (壤质潮土)"]
    k_us = _epic_by_hand(s1, s2, s3, c / 10)
    a = np.array([[s1]])
    got_us = k_factor_epic(a, s2, s3, c, oc_unit="g/kg", china_correction="us_units")[0, 0]
    got_si = k_factor_epic(a, s2, s3, c, oc_unit="g/kg", china_correction="si_units")[0, 0]
    assert got_us == pytest.approx(0.1317 * (-0.01383 + 0.51575 * k_us), rel=1e-5)
    assert got_us == pytest.approx(0.018925, rel=1e-3)
    assert got_si == pytest.approx(-0.01383 + 0.51575 * 0.1317 * k_us, rel=1e-5)
    assert got_si == pytest.approx(0.006917, rel=1e-3)
    # a low K_EPIC gives a negative corrected value in SI form -> clipped to 0
    assert k_factor_epic(np.array([[90.0]]), 5.0, 5.0, 3.0, china_correction="si_units")[0, 0] == 0.0
    with pytest.raises(ValueError, match="china_correction"):
        k_factor_epic(a, s2, s3, 1.0, china_correction=True)


def test_k_epic_nodata_and_unit_errors():
    san = np.array([[54.9, np.nan]])
    got = k_factor_epic(san, 38.1, 7.0, 0.472)
    assert got[0, 0] > 0 and np.isnan(got[0, 1])
    with pytest.raises(ValueError, match="sand_pct.*0-100"):
        k_factor_epic(np.array([[549.0]]), 38.1, 7.0, 0.472)          # g/kg passed as percent
    with pytest.raises(ValueError, match="silt_pct"):
        k_factor_epic(np.array([[50.0]]), -1.0, 51.0, 0.5)
    with pytest.raises(ValueError, match="organic_carbon"):
        k_factor_epic(np.array([[54.9]]), 38.1, 7.0, 472.0)           # dg/kg passed as percent
    with pytest.raises(ValueError, match="must be 100 %"):
        k_factor_epic(np.array([[40.0]]), 20.0, 20.0, 1.0)            # sums to 80 %
    # within the tolerance the sum is accepted
    assert np.isfinite(k_factor_epic(np.array([[52.0]]), 38.1, 7.0, 1.0)[0, 0])      # 97.1 %
    with pytest.raises(ValueError, match="oc_unit"):
        k_factor_epic(np.array([[54.9]]), 38.1, 7.0, 1.0, oc_unit="g/g")
    with pytest.raises(ValueError, match="2-D"):
        k_factor_epic(np.ones((2, 2, 2)) * 33.3, 33.3, 33.4, 1.0)
    with pytest.raises(ValueError, match="broadcast"):
        k_factor_epic(np.ones((2, 3)) * 33.3, np.ones((2, 2)) * 33.3, 33.4, 1.0)


# ======================================================================================
# FVC (dimidiate pixel model) and C (Cai et al. 2000)
# ======================================================================================
def test_fvc_dimidiate_pixel_by_hand():
    # NDVI_soil = 0.05, NDVI_veg = 0.85 (range 0.80):
    # 0.45 -> 0.40/0.80 = 0.5; 0.05 -> 0; 0.85 -> 1; 0.0 -> −0.0625 -> 0; 0.9 -> 1.0625 -> 1
    ndvi = np.array([[0.45, 0.05, 0.85, 0.0, 0.9, np.nan]], F32)
    got = fractional_vegetation_cover(ndvi, 0.05, 0.85)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got[0, :5], [0.5, 0.0, 1.0, 0.0, 1.0], atol=1e-6)
    assert np.isnan(got[0, 5])
    # per-pixel end members (e.g. by land-cover class)
    soil = np.array([[0.1, 0.2]])
    veg = np.array([[0.9, 0.6]])
    np.testing.assert_allclose(fractional_vegetation_cover(np.array([[0.5, 0.5]]), soil, veg),
                               [[0.4 / 0.8, 0.3 / 0.4]], rtol=1e-6)
    with pytest.raises(ValueError, match="ndvi_veg must be greater"):
        fractional_vegetation_cover(ndvi, 0.5, 0.5)
    with pytest.raises(ValueError, match="2-D"):
        fractional_vegetation_cover(np.ones(4), 0.1, 0.9)


def test_c_cai2000_values_by_hand():
    # FVC 0.10 -> c = 10 %: C = 0.6508 − 0.3436·lg 10 = 0.3072
    # FVC 0.50 -> c = 50 %: C = 0.6508 − 0.3436·1.698970 = 0.067033
    # FVC 0.01 -> c = 1 %:  C = 0.6508 − 0 = 0.6508
    # FVC 0.0005 -> c = 0.05 %: 0.6508 + 0.3436·1.301030 = 1.097834 -> clipped to 1
    fvc = np.array([[0.10, 0.50, 0.01, 0.0005, 0.0, np.nan]], F32)
    got = c_factor_cai2000(fvc)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got[0, :5], [0.3072, 0.6508 - 0.3436 * math.log10(50), 0.6508, 1.0, 1.0],
                               atol=2e-6)
    assert got[0, 1] == pytest.approx(0.067033, abs=2e-6)
    assert np.isnan(got[0, 5])


def test_c_cai2000_endpoints_and_continuity():
    # C = 1 at FVC = 0, C = 0 above 78.3 %; at 78.3 % the formula gives 0.6508 − 0.3436·lg 78.3 =
    # 0.6508 − 0.3436·1.893762 = 1.03e-4, so the step at the break is below 1.1e-4 (continuity)
    got = c_factor_cai2000(np.array([[0.0, 0.783, 0.7831, 0.9, 1.0]], F32))
    assert got[0, 0] == 1.0
    assert got[0, 1] == pytest.approx(0.6508 - 0.3436 * math.log10(78.3), abs=1e-6)
    assert 0.0 < got[0, 1] < 1.1e-4
    assert got[0, 2] == 0.0 and got[0, 3] == 0.0 and got[0, 4] == 0.0
    # at the low end the formula reaches 1 at c = 10^((0.6508 − 1)/0.3436) = 0.0963 %: continuous with C = 1
    c1 = 10 ** ((0.6508 - 1) / 0.3436) / 100
    near = c_factor_cai2000(np.array([[c1 * 0.999, c1 * 1.001]], F32))
    # (1.001 × c1: 1 − 0.3436·lg 1.001 = 1 − 1.49e-4)
    np.testing.assert_allclose(near, 1.0, atol=2e-4)
    # non-increasing over the whole range
    sweep = c_factor_cai2000(np.linspace(0, 1, 2001, dtype=F32)[None, :])[0]
    assert np.all(np.diff(sweep) <= 0) and sweep.min() == 0.0 and sweep.max() == 1.0


def test_c_cai2000_errors_and_chain_from_ndvi():
    with pytest.raises(ValueError, match="fraction 0..1"):
        c_factor_cai2000(np.array([[50.0]], F32))        # percent passed
    with pytest.raises(ValueError, match="fraction 0..1"):
        c_factor_cai2000(np.array([[-0.1]], F32))
    with pytest.raises(ValueError, match="2-D"):
        c_factor_cai2000(np.zeros((1, 1, 1), F32))
    with pytest.raises(ValueError, match="fvc_max"):
        c_factor_cai2000(np.zeros((1, 1), F32), fvc_max=78.3)
    # NDVI -> FVC -> C: NDVI 0.45 with end members 0.05/0.85 -> FVC 0.5 -> C 0.067033
    c = c_factor_cai2000(fractional_vegetation_cover(np.array([[0.45]], F32), 0.05, 0.85))
    assert c[0, 0] == pytest.approx(0.067033, abs=1e-5)


# ======================================================================================
# defaults = parameter rows
# ======================================================================================
def test_defaults_equal_parameter_rows():
    path = pathlib.Path(rf.__file__).resolve().parents[1] / "data" / "parameters.csv"
    with path.open(encoding="utf-8") as fh:
        rows = {r["key"]: r for r in csv.DictReader(fh)}
    pairs = {
        "soil_retention.r_monthly_a": rf.R_MONTHLY_A, "soil_retention.r_monthly_b": rf.R_MONTHLY_B,
        "soil_retention.r_monthly_c": rf.R_MONTHLY_C, "soil_retention.r_us_to_si": rf.R_US_TO_SI,
        "soil_retention.r_zhang_threshold_mm": rf.ZHANG_THRESHOLD_MM,
        "soil_retention.r_zhang_beta0": rf.ZHANG_BETA0, "soil_retention.r_zhang_beta_pd": rf.ZHANG_BETA_PD,
        "soil_retention.r_zhang_beta_py": rf.ZHANG_BETA_PY, "soil_retention.r_zhang_alpha_a": rf.ZHANG_ALPHA_A,
        "soil_retention.r_zhang_alpha_b": rf.ZHANG_ALPHA_B, "soil_retention.k_us_to_si": rf.K_US_TO_SI,
        "soil_retention.k_zhang_intercept": rf.K_ZHANG_INTERCEPT,
        "soil_retention.k_zhang_slope": rf.K_ZHANG_SLOPE, "soil_retention.c_cai_a": rf.C_CAI_A,
        "soil_retention.c_cai_b": rf.C_CAI_B, "soil_retention.c_cai_fvc_max": rf.C_CAI_FVC_MAX,
    }
    for key, value in pairs.items():
        assert key in rows, key
        assert float(rows[key]["value"]) == value, key
        assert rows[key]["evidence"] in {"V", "V-calc", "V2", "U"}, key
    # the two V-calc unit factors, recomputed from unit definitions
    ft, lbf, inch, acre_ha = 0.3048, 4.4482216152605, 25.4, 0.40468564224
    r_fac = 100 * 2000 * lbf * ft * inch / acre_ha / 1e6          # MJ·mm/(ha·h) per 100 ft·tonf·in/(ac·h)
    assert r_fac == pytest.approx(17.0195, abs=1e-4)
    assert round(r_fac, 2) == rf.R_US_TO_SI
    k_fac = (0.90718474 / acre_ha) / r_fac                        # (t/ha per short ton/ac) / R factor
    assert round(k_fac, 4) == rf.K_US_TO_SI
