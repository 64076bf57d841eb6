"""Tests of gep_raster.kernels.wind (RWEQ windbreak and sand fixation).

No PUBLISHED worked example of RWEQ (a table of WF, EF, SCF, K', COG with the resulting Q_max, s and SL)
could be found or read from here (see docs/rweq.md, "Worked example"). The expected values below are
therefore computed BY HAND from the equations, with the arithmetic written in the comments, plus:

* one cross-check against the doctest of an independent public implementation
  (GitHub ``rootcoder007/morie``, function ``rweq_wind_erosion``): this is code, not a published
  example, and says only that two implementations of the same equations agree;
* identities (C = 1 gives SR = 0, SR >= 0 inside the monotone range of SL, the peak of SL(z) at
  z = s/sqrt(2), Wf = 0 below the threshold), float32 == float64, NaN propagation, argument errors.
"""
from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest

from gep_raster.kernels import wind as w

REL = 1e-9


# ----------------------------------------------------------------------------------------------
# soil factors
# ----------------------------------------------------------------------------------------------
def test_erodible_fraction_by_hand():
    # Sa 60, Si 30, Cl 10, OM 1, CaCO3 2 (%):
    # 29.09 + 0.31*60 (18.6) + 0.17*30 (5.1) + 0.33*60/10 (1.98) - 2.59*1 - 0.95*2 (1.9)
    # = 29.09 + 18.6 + 5.1 + 1.98 - 2.59 - 1.9 = 50.28  ->  EF = 0.5028
    ef = w.erodible_fraction(60.0, 30.0, 10.0, 1.0, 2.0)
    assert ef.dtype == np.float64
    assert float(ef) == pytest.approx(0.5028, rel=REL)


def test_erodible_fraction_is_clipped_to_unit_interval():
    # very sandy, little clay: 29.09 + 0.31*95 + 0.17*4.5 + 0.33*95/0.5 = 29.09+29.45+0.765+62.7 = 122 % -> 1
    assert float(w.erodible_fraction(95.0, 4.5, 0.5, 0.0)) == 1.0
    # organic, calcareous: 29.09 + 0.31*10 + 0.17*40 + 0.33*10/50 - 2.59*20 - 0.95*30 < 0 -> 0
    assert float(w.erodible_fraction(10.0, 40.0, 50.0, 20.0, 30.0)) == 0.0


def test_soil_crust_factor_by_hand():
    # Cl 10, OM 1: 1 / (1 + 0.0066*100 + 0.021*1) = 1 / 1.681 = 0.594884
    assert float(w.soil_crust_factor(10.0, 1.0)) == pytest.approx(1.0 / 1.681, rel=REL)
    # no clay, no OM: 1
    assert float(w.soil_crust_factor(0.0, 0.0)) == 1.0


def test_roughness_factor_by_hand():
    # Kr = 0.2 * 10^2 / 100 = 0.2
    assert float(w.terrain_roughness_kr(10.0, 100.0)) == pytest.approx(0.2, rel=REL)
    # Kr 0: exp(0) = 1; Kr 1, Crr 0: exp(1.86 - 2.41) = exp(-0.55) = 0.576950
    # Kr 1, Crr 2 cm: exp(-0.55 - 0.254) = exp(-0.804) = 0.447535
    k = w.roughness_factor_smith_carson(np.array([0.0, 1.0, 1.0]), np.array([0.0, 0.0, 2.0]))
    np.testing.assert_allclose(k, [1.0, math.exp(-0.55), math.exp(-0.804)], rtol=REL)
    # the exponent turns positive beyond Kr ~ 50.7 (1.86 Kr = 2.41 Kr^0.934): clipped to 1
    assert float(w.roughness_factor_smith_carson(200.0)) == 1.0


def test_vegetation_factors_by_hand():
    # grassland, FVC 20 %: exp(-0.1151 * 20) = exp(-2.302) = 0.100059
    c = w.vegetation_factor_fvc(20.0, w.VEGETATION_COEFFICIENTS["grassland"])
    assert float(c) == pytest.approx(math.exp(-2.302), rel=REL)
    # no cover: C = 1 for any type
    assert float(w.vegetation_factor_fvc(0.0, -0.1535)) == 1.0
    # per-pixel coefficients (forest, cropland) at FVC 10 %: exp(-1.535), exp(-0.438)
    c2 = w.vegetation_factor_fvc(np.array([10.0, 10.0]), np.array([-0.1535, -0.0438]))
    np.testing.assert_allclose(c2, [math.exp(-1.535), math.exp(-0.438)], rtol=REL)
    # RWEQ SLRs: nothing -> 1; full canopy -> exp(-5.614) = 0.003646; 50 % flat residue -> exp(-2.19)
    np.testing.assert_allclose(w.vegetation_factor_rweq(), 1.0)
    np.testing.assert_allclose(w.vegetation_factor_rweq(canopy_cover=1.0), math.exp(-5.614), rtol=REL)
    np.testing.assert_allclose(w.vegetation_factor_rweq(flat_cover_pct=50.0), math.exp(-2.19), rtol=REL)
    # silhouette SA = 1: exp(-0.0344 * 1^0.6413) = exp(-0.0344)
    np.testing.assert_allclose(w.vegetation_factor_rweq(silhouette=1.0), math.exp(-0.0344), rtol=REL)


# ----------------------------------------------------------------------------------------------
# weather factor
# ----------------------------------------------------------------------------------------------
def test_wind_speed_to_2m_by_hand():
    # 10 m -> 2 m: (2/10)^(1/7) = exp(ln 0.2 / 7) = exp(-0.229920) = 0.794597
    assert float(w.wind_speed_to_2m(10.0, 10.0)) == pytest.approx(10.0 * 0.2 ** (1.0 / 7.0), rel=REL)
    assert float(w.wind_speed_to_2m(10.0, 10.0)) == pytest.approx(7.945974, rel=1e-6)
    assert float(w.wind_speed_to_2m(4.0, 2.0)) == 4.0  # already at 2 m


def test_air_density_by_hand():
    # sea level, 15 degC: 348 * 1.013 / 288.15 = 352.524 / 288.15 = 1.223404 kg/m3
    assert float(w.air_density_rweq(0.0, 15.0)) == pytest.approx(352.524 / 288.15, rel=REL)
    # 1000 m, 0 degC: EL = 1 km: 348 * (1.013 - 0.1183 + 0.0048) / 273.15 = 348 * 0.8995 / 273.15 = 1.145986
    assert float(w.air_density_rweq(1000.0, 0.0)) == pytest.approx(348 * 0.8995 / 273.15, rel=REL)


def test_wind_factor_by_hand():
    # 4 samples (m/s) 3, 6, 8, 5 at one pixel; U1 = 5:
    # 3 -> 0 (below), 6 -> 6 * 1^2 = 6, 8 -> 8 * 3^2 = 72, 5 -> 0 (not above)  => sum 78
    u = np.array([3.0, 6.0, 8.0, 5.0]).reshape(4, 1, 1)
    assert w.wind_factor(u).shape == (1, 1)
    assert float(w.wind_factor(u)[0, 0]) == pytest.approx(78.0, rel=REL)
    # the same 4 samples spread over N_d = 30 days: 78 * 30 / 4 = 585
    assert float(w.wind_factor(u, n_days=30.0)[0, 0]) == pytest.approx(585.0, rel=REL)


def test_wind_factor_zero_below_threshold():
    u = np.random.default_rng(0).uniform(0.0, 5.0, size=(31, 3, 4))
    assert np.array_equal(w.wind_factor(u), np.zeros((3, 4)))


def test_snow_and_soil_wetness_by_hand():
    # depths 0, 30, 25.4, 100 mm: > 25.4 mm on 2 of 4 days -> SD = 1 - 2/4 = 0.5
    d = np.array([0.0, 30.0, 25.4, 100.0]).reshape(4, 1)
    assert float(w.snow_cover_factor(d)[0]) == 0.5
    # ETp 100, R 40, Rd 6, Nd 30: (100 - 40 * 6/30) / 100 = (100 - 8) / 100 = 0.92
    assert float(w.soil_wetness_factor(100.0, 40.0, 6.0, 30.0)) == pytest.approx(0.92, rel=REL)
    # wet month, ETp 10, R 100 on all 30 days: (10 - 100) / 10 < 0 -> 0
    assert float(w.soil_wetness_factor(10.0, 100.0, 30.0, 30.0)) == 0.0


def test_weather_factor_by_hand():
    # Wf 585, rho 1.2, SW 0.92, SD 0.5: 585 * 1.2 / 9.8 * 0.92 * 0.5 = 71.632653 * 0.46 = 32.951020
    wf = w.weather_factor(585.0, 1.2, 0.92, 0.5)
    assert float(wf) == pytest.approx(585 * 1.2 / 9.8 * 0.46, rel=REL)
    assert float(wf) == pytest.approx(32.951020, rel=1e-7)


# ----------------------------------------------------------------------------------------------
# erosion and sand fixation
# ----------------------------------------------------------------------------------------------
def test_transport_and_soil_loss_unit_product_by_hand():
    # P = WF*EF*SCF*K'*C = 1: Q_max = 109.8 kg/m, s = 150.71 m
    # SL(50) = 2*50 / 150.71^2 * 109.8 * exp(-(50/150.71)^2)
    #        = 100 / 22713.5041 * 109.8 * exp(-0.110067) = 0.00440267 * 109.8 * 0.895774 = 0.433029 kg/m2
    qmax, s = w.rweq_transport(1.0, 1.0, 1.0, 1.0)
    assert float(qmax) == pytest.approx(109.8, rel=REL)
    assert float(s) == pytest.approx(150.71, rel=REL)
    sl = w.rweq_soil_loss(1.0, 1.0, 1.0, 1.0)
    assert float(sl) == pytest.approx(100 / 150.71 ** 2 * 109.8 * math.exp(-(50 / 150.71) ** 2), rel=REL)
    assert float(sl) == pytest.approx(0.433029, rel=1e-5)


def test_cross_check_with_public_implementation_doctest():
    # NOT a published worked example: the doctest of rweq_wind_erosion in GitHub rootcoder007/morie
    # (">>> r = rweq_wind_erosion(20.0, 0.4, 0.6, 0.8, 0.9, field_length=200.0)"
    #  "(379.4688, 95.1212080473)"). By hand: P = 20*0.4*0.6*0.8*0.9 = 3.456; Q_max = 109.8*3.456 = 379.4688;
    # s = 150.71 * 3.456^-0.3711 = 150.71 * exp(-0.3711 * 1.240112) = 150.71 * 0.631153 = 95.1212 m
    qmax, s = w.rweq_transport(20.0, 0.4, 0.6, 0.8, 0.9)
    assert float(qmax) == pytest.approx(379.4688, rel=1e-10)
    assert float(s) == pytest.approx(95.1212080473, rel=1e-10)


def test_one_pixel_pipeline_by_hand():
    # WF from the hand example above (32.951020 kg/m), soil Sa/Si/Cl/OM/CaCO3 = 60/30/10/1/2 (EF 0.5028,
    # SCF 1/1.681), Kr 0.2 with Crr 0, grassland FVC 20 % (C = exp(-2.302)); z = 50 m.
    wf = 585 * 1.2 / 9.8 * 0.92 * 0.5
    ef, scf = 0.5028, 1 / 1.681
    k = math.exp(1.86 * 0.2 - 2.41 * 0.2 ** 0.934)  # exp(0.372 - 2.41*0.222414) = exp(-0.164018) = 0.848727
    c = math.exp(-0.1151 * 20)
    p_s = wf * ef * scf * k                          # 32.951020 * 0.5028 * 0.594884 * 0.848727 = 8.36497
    # potential: s_s = 150.71 * 8.36497^-0.3711 = 68.520 m, SL_s = 100/68.520^2 * 109.8*8.36497 * exp(-(50/68.520)^2)
    #            = 11.4863 kg/m2; actual P = 8.36497 * 0.100059 = 0.836987: s = 160.998 m, SL = 0.321952 kg/m2
    #            -> SR = 11.4863 - 0.3220 = 11.1643 kg/m2 (111.6 t/ha for the period)
    p = p_s * c

    def sl(pp):
        s_ = 150.71 * pp ** -0.3711
        return 2 * 50 / s_ ** 2 * 109.8 * pp * math.exp(-(50 / s_) ** 2)

    got_ef = w.erodible_fraction(60, 30, 10, 1, 2)
    got_scf = w.soil_crust_factor(10, 1)
    got_k = w.roughness_factor_smith_carson(w.terrain_roughness_kr(10.0, 100.0))
    got_c = w.vegetation_factor_fvc(20.0, w.VEGETATION_COEFFICIENTS["grassland"])
    got_wf = w.weather_factor(w.wind_factor(np.array([3.0, 6.0, 8.0, 5.0]), n_days=30.0),
                              1.2, w.soil_wetness_factor(100.0, 40.0, 6.0, 30.0),
                              w.snow_cover_factor(np.array([0.0, 30.0, 25.4, 100.0])))
    assert float(got_k) == pytest.approx(k, rel=REL)
    assert p_s == pytest.approx(8.36497, rel=1e-5)
    assert sl(p_s) == pytest.approx(11.48629, rel=1e-5) and sl(p) == pytest.approx(0.321952, rel=1e-5)
    sr, sl_s, sl_a = w.sand_fixation(got_wf, got_ef, got_scf, got_k, got_c)
    assert float(sl_s) == pytest.approx(sl(p_s), rel=1e-9)
    assert float(sl_a) == pytest.approx(sl(p), rel=1e-9)
    assert float(sr) == pytest.approx(sl(p_s) - sl(p), rel=1e-9)
    assert float(sr) > 0


def test_c_equal_one_gives_zero_sand_fixation():
    rng = np.random.default_rng(1)
    wf = rng.uniform(0, 300, (5, 6))
    sr, sl_s, sl = w.sand_fixation(wf, rng.uniform(0, 1, (5, 6)), rng.uniform(0, 1, (5, 6)),
                                   rng.uniform(0, 1, (5, 6)), 1.0)
    assert np.array_equal(sr, np.zeros((5, 6)))
    assert np.array_equal(sl_s, sl)


def test_sand_fixation_nonnegative_inside_monotone_range():
    # SL is increasing in P while z/s <= sqrt(1.7422/0.7422) = 1.5321, i.e. P <= 61.73 at z = 50 m
    # (SL ∝ y^2.3473 exp(-k y), y = P^0.7422, k = 50^2/150.71^2 = 0.110067: maximum at y = 2.3473/k)
    p_star = (2.3473 / (2500 / 150.71 ** 2)) ** (1 / 0.7422)
    assert p_star == pytest.approx(61.73, abs=0.01)
    wf = np.linspace(0.0, 61.0, 62)[:, None]   # EF = SCF = K' = 1: P_s = WF <= 61 < P*
    c = np.linspace(0.0, 1.0, 21)[None, :]
    sr, _, _ = w.sand_fixation(wf, 1.0, 1.0, 1.0, c)
    assert sr.shape == (62, 21)
    assert np.all(sr >= 0.0)


def test_sand_fixation_can_be_negative_beyond_the_peak_and_clip():
    # P_s = 200 > P*: s_s = 150.71 * 200^-0.3711 = 21.9 m < 32.6 m, so halving P raises SL at 50 m
    sr, sl_s, sl = w.sand_fixation(200.0, 1.0, 1.0, 1.0, 0.5)
    assert float(sr) < 0 and float(sl) > float(sl_s)
    sr_c, _, _ = w.sand_fixation(200.0, 1.0, 1.0, 1.0, 0.5, clip_negative=True)
    assert float(sr_c) == 0.0


def test_soil_loss_peaks_at_s_over_sqrt2():
    # d/dz [z exp(-z^2/s^2)] = 0 at z = s/sqrt(2); SL(z*) = sqrt(2) * Q_max * exp(-1/2) / s
    args = (20.0, 0.4, 0.6, 0.8, 0.9)
    qmax, s = w.rweq_transport(*args)
    z_star = float(w.rweq_peak_distance(*args))
    assert z_star == pytest.approx(float(s) / math.sqrt(2), rel=REL)
    peak = float(w.rweq_soil_loss(*args, z=z_star))
    assert peak == pytest.approx(math.sqrt(2) * float(qmax) * math.exp(-0.5) / float(s), rel=1e-12)
    for dz in (-5.0, -0.5, 0.5, 5.0):
        assert float(w.rweq_soil_loss(*args, z=z_star + dz)) < peak


def test_zero_product_gives_zero_loss():
    qmax, s = w.rweq_transport(0.0, 0.5, 0.5, 0.5)
    assert float(qmax) == 0.0 and np.isinf(s)
    assert float(w.rweq_soil_loss(0.0, 0.5, 0.5, 0.5)) == 0.0
    assert float(w.rweq_soil_loss(10.0, 0.5, 0.5, 0.5, 0.0)) == 0.0


# ----------------------------------------------------------------------------------------------
# units and value
# ----------------------------------------------------------------------------------------------
def test_units_and_value_by_hand():
    # 0.5 kg/m2 = 5 t/ha; on a 30 m pixel (900 m2): 450 kg = 0.45 t
    assert float(w.kg_m2_to_t_ha(0.5)) == 5.0
    assert float(w.kg_m2_to_t_per_pixel(0.5, 900.0)) == pytest.approx(0.45, rel=REL)
    # 1280 t / (1.28 t/m3 * 0.1 m) = 10000 m2 of sand cover avoided; * 3.75 yuan/m2 = 37500 yuan
    assert float(w.sand_fixation_value(1280.0)) == pytest.approx(37500.0, rel=REL)
    # one area per row broadcasts across the columns
    out = w.kg_m2_to_t_per_pixel(np.ones((2, 3)), np.array([[1000.0], [2000.0]]))
    np.testing.assert_allclose(out, [[1, 1, 1], [2, 2, 2]])


# ----------------------------------------------------------------------------------------------
# dtypes and nodata
# ----------------------------------------------------------------------------------------------
def test_float32_and_float64_inputs_agree():
    rng = np.random.default_rng(2)
    sand = rng.uniform(20, 70, (4, 5))
    silt = rng.uniform(5, 25, (4, 5))
    clay = rng.uniform(1, 5, (4, 5))
    om = rng.uniform(0, 3, (4, 5))
    u = rng.uniform(0, 15, (10, 4, 5))
    for dt in (np.float32,):
        ef64 = w.erodible_fraction(sand, silt, clay, om)
        ef32 = w.erodible_fraction(*(a.astype(dt) for a in (sand, silt, clay, om)))
        assert ef32.dtype == np.float64
        np.testing.assert_allclose(ef32, ef64, rtol=1e-5)
        wf64 = w.wind_factor(u)
        wf32 = w.wind_factor(u.astype(dt))
        np.testing.assert_allclose(wf32, wf64, rtol=1e-4)
        sr64 = w.sand_fixation(wf64 * 0.1, ef64, 0.8, 0.9, 0.3)[0]
        sr32 = w.sand_fixation((wf64 * 0.1).astype(dt), ef64.astype(dt), dt(0.8), dt(0.9), dt(0.3))[0]
        np.testing.assert_allclose(sr32, sr64, rtol=1e-5)


def test_nan_propagates():
    nan = np.nan
    assert np.isnan(w.erodible_fraction(nan, 30, 10, 1))
    assert np.isnan(w.soil_crust_factor(10, nan))
    assert np.isnan(w.roughness_factor_smith_carson(nan))
    assert np.isnan(w.vegetation_factor_fvc(nan, -0.1151))
    assert np.isnan(w.air_density_rweq(nan, 10.0))
    u = np.array([[6.0, 7.0], [nan, 8.0]])  # (2 samples, 2 pixels); pixel 0 has a missing sample
    got = w.wind_factor(u)
    assert np.isnan(got[0]) and got[1] == pytest.approx(7 * 4 + 8 * 9)
    assert np.isnan(w.snow_cover_factor(np.array([[0.0], [nan]]))[0])
    assert np.isnan(w.weather_factor(nan, 1.2))
    sr, sl_s, sl = w.sand_fixation(np.array([10.0, nan, 10.0]), 0.5, 0.5, 0.5, np.array([0.5, 0.5, nan]))
    assert not np.isnan(sr[0]) and np.isnan(sr[1]) and np.isnan(sr[2])
    assert np.isnan(sl[2]) and not np.isnan(sl_s[2])
    assert np.isnan(w.rweq_soil_loss(nan, 0.5, 0.5, 0.5))
    qmax, s = w.rweq_transport(nan, 0.5, 0.5, 0.5)
    assert np.isnan(qmax) and np.isnan(s)


# ----------------------------------------------------------------------------------------------
# argument errors
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, match", [
    (lambda: w.erodible_fraction(60, 35, 10, 1), "sand \\+ silt \\+ clay"),
    (lambda: w.erodible_fraction(60, 30, 0, 1), "clay"),
    (lambda: w.erodible_fraction(-1, 30, 10, 1), "sand"),
    (lambda: w.erodible_fraction(60, 30, 10, 101), "om"),
    (lambda: w.erodible_fraction(np.ones(3) * 30, np.ones(4) * 30, 10, 1), "do not broadcast"),
    (lambda: w.soil_crust_factor(120, 1), "clay"),
    (lambda: w.wind_factor(np.array([3.0, -1.0])), "u2_samples"),
    (lambda: w.wind_factor(5.0), "stack"),
    (lambda: w.wind_factor(np.ones((3, 2)), n_days=0), "n_days"),
    (lambda: w.wind_factor(np.ones((3, 2)), threshold=-1), "threshold"),
    (lambda: w.wind_speed_to_2m(-2.0, 10.0), "u_z"),
    (lambda: w.wind_speed_to_2m(2.0, 0.0), "z_m"),
    (lambda: w.air_density_rweq(0.0, 200.0), "temperature_c"),
    (lambda: w.snow_cover_factor(np.array([-1.0, 0.0])), "snow_depth_mm_samples"),
    (lambda: w.soil_wetness_factor(0.0, 10, 1, 30), "etp_mm"),
    (lambda: w.soil_wetness_factor(100.0, 10, 31, 30), "rain_days"),
    (lambda: w.weather_factor(10.0, 1.2, 1.5), "soil_wetness"),
    (lambda: w.weather_factor(-1.0, 1.2), "wf_wind"),
    (lambda: w.roughness_factor_smith_carson(-0.1), "kr"),
    (lambda: w.terrain_roughness_kr(1.0, 0.0), "length"),
    (lambda: w.vegetation_factor_fvc(120.0, -0.1), "fvc_pct"),
    (lambda: w.vegetation_factor_fvc(20.0, 0.1), "coefficient"),
    (lambda: w.vegetation_factor_rweq(canopy_cover=1.2), "canopy_cover"),
    (lambda: w.rweq_transport(-1.0, 0.5, 0.5, 0.5), "wf"),
    (lambda: w.rweq_transport(10.0, 1.5, 0.5, 0.5), "ef"),
    (lambda: w.rweq_soil_loss(10.0, 0.5, 0.5, 1.2), "k_prime"),
    (lambda: w.rweq_soil_loss(10.0, 0.5, 0.5, 0.5, z=0.0), "z"),
    (lambda: w.sand_fixation(np.ones((2, 3)), np.ones((3, 2)) * 0.5, 0.5, 0.5, 0.5), "do not broadcast"),
    (lambda: w.sand_fixation(10.0, 0.5, 0.5, 0.5, -0.1), "c must"),
    (lambda: w.kg_m2_to_t_per_pixel(1.0, -900.0), "pixel_area_m2"),
    (lambda: w.sand_fixation_value(10.0, depth_m=0.0), "depth_m"),
    (lambda: w.erodible_fraction("a", 30, 10, 1), "sand"),
])
def test_argument_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_kernel_imports_nothing_of_the_package():
    src = (pathlib.Path(w.__file__)).read_text(encoding="utf-8")
    assert "gep_raster" not in "\n".join(l for l in src.splitlines() if l.startswith(("import", "from")))


def test_value_reproduces_garze_2010():
    """Garze GEP 2010 (Baima Zhuoga et al. 2017, table 3 and sec. 3.2.3): 779.42万 t of fixed sand, rho 1.28 t/m3,
    h 0.1 m -> 60.89 km2 of avoided sand cover; x 3.75 yuan/m2 = 2.2835亿 yuan."""
    q = 779.42e4
    assert q / (1.28 * 0.1) / 1e6 == pytest.approx(60.89, abs=0.005)   # km2, as the paper states
    assert float(w.sand_fixation_value(q)) / 1e8 == pytest.approx(2.2835, abs=5e-5)
