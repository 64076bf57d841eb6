"""Windbreak and sand fixation (防风固沙) kernels: the Revised Wind Erosion Equation (RWEQ).

RWEQ: Fryrear D.W., Saleh A., Bilbro J.D., Schomberg H.M., Stout J.E., Zobeck T.M. (1998) *Revised
Wind Erosion Equation (RWEQ)*, USDA-ARS Technical Bulletin 1; Fryrear et al. (2000) J. Soil Water
Conserv. 55(2): 183-189. Chinese GEP accounts (e.g. 巩国丽 et al. 2014; the 2020 GEP guideline) take
the sand-fixation amount as potential minus actual wind erosion::

    P      = WF · EF · SCF · K' · C                  (C = 1 for the potential, bare-soil case)
    Q_max  = 109.8 · P                               kg/m
    s      = 150.71 · P^(-0.3711)                    m
    SL     = (2 z / s²) · Q_max · exp(-(z/s)²)        kg/m²    (z: downwind distance, m; 50 m)
    SR     = SL_s - SL                               kg/m²

Pure numpy, no IO and nothing imported from the rest of the package. Inputs may be any real dtype
(scalars or arrays that broadcast); the arithmetic and the results are float64; NaN is nodata and
propagates. Invalid arguments raise :class:`ValueError` whose message names the argument.

Evidence marks in the docstrings (see ``docs/rweq.md``):

* **[V2]** read in a secondary source only (public code that implements RWEQ, named in the docstring);
* **[U]** not read in the source; recalled.

No primary text (the Technical Bulletin, Fryrear et al. 2000, the Chinese papers or the guideline) could
be read from here, so no coefficient is marked [V]. No published worked example (a table of WF, EF,
SCF, K', C with its Q_max, s and SL) was found either; ``docs/rweq.md`` lists what was searched.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    # constants
    "RWEQ_Q_COEF", "RWEQ_S_COEF", "RWEQ_S_EXP", "DOWNWIND_DISTANCE_M", "WIND_THRESHOLD_MS", "GRAVITY",
    "SNOW_DEPTH_THRESHOLD_MM", "WIND_POWER_LAW_EXPONENT", "VEGETATION_COEFFICIENTS",
    "SAND_BULK_DENSITY_T_M3", "SAND_COVER_DEPTH_M", "SAND_PRICE_YUAN_M2",
    # weather factor
    "wind_speed_to_2m", "air_density_rweq", "wind_factor", "snow_cover_factor", "soil_wetness_factor",
    "weather_factor",
    # soil and surface factors
    "erodible_fraction", "soil_crust_factor", "terrain_roughness_kr", "roughness_factor_smith_carson",
    "vegetation_factor_fvc", "vegetation_factor_rweq",
    # erosion, sand fixation, units, value
    "rweq_transport", "rweq_soil_loss", "rweq_peak_distance", "sand_fixation",
    "kg_m2_to_t_ha", "kg_m2_to_t_per_pixel", "sand_fixation_value",
]

# --------------------------------------------------------------------------------------------
# constants
# --------------------------------------------------------------------------------------------
#: Q_max = 109.8 · P (kg/m)                                  [V2: pyrweq, morie, jadeynryan/erosion]
RWEQ_Q_COEF = 109.8
#: s = 150.71 · P^(-0.3711) (m). Two public scripts write 105.71 (a transposition; see docs/rweq.md)
RWEQ_S_COEF = 150.71
RWEQ_S_EXP = -0.3711
#: downwind distance z (m) of the Chinese raster accounts                     [V2: pyrweq; U for the papers]
DOWNWIND_DISTANCE_M = 50.0
#: threshold wind speed at 2 m, U1 (m/s)                                        [V2: all codes read]
WIND_THRESHOLD_MS = 5.0
#: g (m/s²) as written in the RWEQ weather factor                               [V2: pyrweq, 2 scripts]
GRAVITY = 9.8
#: snow depth above which the soil counts as snow-covered (mm; 1 inch)          [V2: pyrweq, jadeynryan]
SNOW_DEPTH_THRESHOLD_MM = 25.4
#: power-law exponent of the wind profile, U2 = Uz (2/z)^(1/7)                  [V2: pyrweq; U primary]
WIND_POWER_LAW_EXPONENT = 1.0 / 7.0
#: C = exp(a · FVC) with FVC in percent, per ecosystem type                     [V2: pyrweq ALPHA_COEFFICIENTS]
VEGETATION_COEFFICIENTS = {
    "forest": -0.1535,
    "grassland": -0.1151,
    "shrub": -0.0921,
    "bare": -0.0768,
    "sand": -0.0658,
    "cropland": -0.0438,
}
#: valuation of the Garzê 2010 account (白玛卓嘎 et al. 2017 §2.4.3, §3.2.3, table 3): Q_f / (ρ·h) × P_f   [V]
SAND_BULK_DENSITY_T_M3 = 1.28
SAND_COVER_DEPTH_M = 0.1
SAND_PRICE_YUAN_M2 = 3.75


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------
def _f64(fn: str, name: str, x) -> np.ndarray:
    """``x`` as a float64 array; ValueError naming the argument when it is not real-numeric."""
    try:
        a = np.asarray(x)
    except Exception as e:  # pragma: no cover - exotic inputs
        raise ValueError(f"{fn}: {name} is not a numeric array ({e})") from None
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{fn}: {name} must be real numbers, got dtype {a.dtype}")
    return a.astype(np.float64, copy=False)


def _range(fn: str, name: str, a: np.ndarray, lo=None, hi=None, *, lo_open=False, unit="") -> None:
    """ValueError when a (non-NaN) value of ``a`` lies outside [lo, hi] (or (lo, hi] with lo_open)."""
    with np.errstate(invalid="ignore"):
        if lo is not None:
            bad = (a <= lo) if lo_open else (a < lo)
            if np.any(bad):
                v = float(a[bad].flat[0]) if a.ndim else float(a)
                op = ">" if lo_open else ">="
                raise ValueError(f"{fn}: {name} must be {op} {lo}{unit} (found {v})")
        if hi is not None:
            bad = a > hi
            if np.any(bad):
                v = float(a[bad].flat[0]) if a.ndim else float(a)
                raise ValueError(f"{fn}: {name} must be <= {hi}{unit} (found {v})")


def _scalar(fn: str, name: str, x, lo=None, *, lo_open=False) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: {name} must be a number, got {x!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{fn}: {name} must be finite, got {v}")
    if lo is not None and ((v <= lo) if lo_open else (v < lo)):
        raise ValueError(f"{fn}: {name} must be {'>' if lo_open else '>='} {lo}, got {v}")
    return v


def _broadcast(fn: str, **arrays: np.ndarray) -> list[np.ndarray]:
    try:
        return list(np.broadcast_arrays(*arrays.values()))
    except ValueError:
        shapes = ", ".join(f"{k} {v.shape}" for k, v in arrays.items())
        raise ValueError(f"{fn}: shapes do not broadcast: {shapes}") from None


def _stack(fn: str, name: str, x) -> np.ndarray:
    a = _f64(fn, name, x)
    if a.ndim < 1 or a.shape[0] < 1:
        raise ValueError(f"{fn}: {name} must be a stack (n, ...) with n >= 1 samples, got shape {a.shape}")
    return a


# --------------------------------------------------------------------------------------------
# weather factor WF
# --------------------------------------------------------------------------------------------
def wind_speed_to_2m(u_z, z_m, *, exponent: float = WIND_POWER_LAW_EXPONENT) -> np.ndarray:
    """Wind speed at 2 m from the speed at height ``z_m`` by the power law ``U2 = Uz (2/z)^exponent``.

    Parameters
    ----------
    u_z : array_like, any shape, any real dtype
        Wind speed at height ``z_m`` (m/s), >= 0; NaN = nodata.
    z_m : float or array_like broadcasting with ``u_z``
        Measurement height (m), > 0 (10 m for station and reanalysis 10-m winds).
    exponent : float
        Power-law exponent, default 1/7 (neutral stability, open terrain), >= 0.

    Returns
    -------
    float64 ndarray, broadcast shape
        U2 (m/s).

    Raises
    ------
    ValueError
        ``u_z`` negative, ``z_m`` <= 0, ``exponent`` < 0 or not finite, shapes do not broadcast.

    Sources
    -------
    1/7 power law: [V2] ``lxyNgeo/pyrweq`` ``src/pyrweq/factors/helpers.py`` (``wind_speed_2m``, 10 m -> 2 m).
    The primary reference of the 1/7 law for RWEQ inputs was not read: [U] not read in the source;
    recalled (classical Hellmann/1/7 power law).
    """
    fn = "wind_speed_to_2m"
    u = _f64(fn, "u_z", u_z)
    z = _f64(fn, "z_m", z_m)
    p = _scalar(fn, "exponent", exponent, 0.0)
    _range(fn, "u_z", u, 0.0, unit=" m/s")
    _range(fn, "z_m", z, 0.0, lo_open=True, unit=" m")
    u, z = _broadcast(fn, u_z=u, z_m=z)
    return u * (2.0 / z) ** p


def air_density_rweq(elevation_m, temperature_c) -> np.ndarray:
    """Air density ``ρ = 348 (1.013 − 0.1183 EL + 0.0048 EL²) / T`` (kg/m³), EL in km, T in K.

    Parameters
    ----------
    elevation_m : array_like, any real dtype
        Elevation (m), in [-500, 9000]; NaN = nodata. Converted to km inside (EL = elevation_m / 1000).
    temperature_c : array_like broadcasting with ``elevation_m``
        Mean air temperature of the period (°C), in [-90, 60].

    Returns
    -------
    float64 ndarray, broadcast shape
        ρ (kg/m³); 1.2234 kg/m³ at sea level and 15 °C.

    Raises
    ------
    ValueError
        A value outside the ranges above, shapes do not broadcast.

    Sources
    -------
    [V2] ``lxyNgeo/pyrweq`` ``src/pyrweq/factors/helpers.py`` (``air_density``: elevation in km, T in K).
    Attributed there to the RWEQ Technical Bulletin (Fryrear et al. 1998): [U] not read in the source;
    recalled. An ideal-gas variant used by two public Chinese scripts is described in docs/rweq.md and
    not implemented.
    """
    fn = "air_density_rweq"
    el = _f64(fn, "elevation_m", elevation_m)
    t = _f64(fn, "temperature_c", temperature_c)
    _range(fn, "elevation_m", el, -500.0, 9000.0, unit=" m")
    _range(fn, "temperature_c", t, -90.0, 60.0, unit=" degC")
    el, t = _broadcast(fn, elevation_m=el, temperature_c=t)
    ek = el / 1000.0
    return 348.0 * (1.013 - 0.1183 * ek + 0.0048 * ek * ek) / (t + 273.15)


def wind_factor(u2_samples, *, threshold: float = WIND_THRESHOLD_MS, n_days=None) -> np.ndarray:
    """Wind factor ``Wf = Σ_i U2_i (U2_i − U1)² · N_d / N`` over the samples with U2_i > U1.

    Parameters
    ----------
    u2_samples : array_like (n, ...) e.g. (n, rows, cols), any real dtype
        The n wind-speed samples of the period at 2 m (m/s), >= 0: daily means (N = n = days) or
        sub-daily observations. Use :func:`wind_speed_to_2m` for 10-m winds. A NaN in any sample of a
        pixel makes that pixel NaN.
    threshold : float
        U1, threshold wind speed (m/s), default 5; >= 0. Samples <= U1 add nothing.
    n_days : float or array_like broadcasting with ``u2_samples[0]``, optional
        N_d, days in the period. Default: n (one sample per day, so N_d / N = 1).

    Returns
    -------
    float64 ndarray, shape ``u2_samples.shape[1:]``
        Wf (m³/s³, summed over the period's days in the RWEQ convention).

    Raises
    ------
    ValueError
        Not a stack (0-d input), negative speed, ``threshold`` < 0, ``n_days`` <= 0, shapes do not
        broadcast.

    Sources
    -------
    Form Σ U2 (U2 − U1)² N_d / N with U1 = 5 m/s: [V2] ``lxyNgeo/pyrweq`` ``src/pyrweq/factors/weather.py``
    (the N_d/N normalisation, observation-series mode); the daily sum without normalisation in the
    Inner-Mongolia script (``find_string`` id 44634754907) and the threshold-masked sum of
    ``js/soil_loss.js`` of ``jadeynryan/erosion``. RWEQ Technical Bulletin equation: [U] not read in the
    source; recalled. No published form from monthly MEAN wind was found, so none is provided.
    """
    fn = "wind_factor"
    u = _stack(fn, "u2_samples", u2_samples)
    u1 = _scalar(fn, "threshold", threshold, 0.0)
    _range(fn, "u2_samples", u, 0.0, unit=" m/s")
    n = u.shape[0]
    term = np.where(u > u1, u * (u - u1) ** 2, 0.0)
    term = np.where(np.isnan(u), np.nan, term)
    total = term.sum(axis=0)
    if n_days is None:
        return total
    nd = _f64(fn, "n_days", n_days)
    _range(fn, "n_days", nd, 0.0, lo_open=True, unit=" d")
    total, nd = _broadcast(fn, u2_samples=total, n_days=nd)
    return total * nd / n


def snow_cover_factor(snow_depth_mm_samples, *, threshold_mm: float = SNOW_DEPTH_THRESHOLD_MM) -> np.ndarray:
    """Snow factor ``SD = 1 − P(snow depth > 25.4 mm)``: one minus the share of samples with snow cover.

    Parameters
    ----------
    snow_depth_mm_samples : array_like (n, ...), any real dtype
        Snow depth of the n samples (days) of the period (mm), >= 0. A NaN sample makes the pixel NaN.
    threshold_mm : float
        Depth above which the soil counts as covered (mm), default 25.4 (1 inch); >= 0.

    Returns
    -------
    float64 ndarray, shape ``snow_depth_mm_samples.shape[1:]``
        SD in [0, 1] (1 = never snow-covered).

    Raises
    ------
    ValueError
        Not a stack, negative depth, negative threshold.

    Sources
    -------
    [V2] ``jadeynryan/erosion`` ``js/soil_loss.js`` (sd = 1 below 0.0254 m, monthly mean of the indicator);
    ``lxyNgeo/pyrweq`` ``src/pyrweq/factors/helpers.py`` (threshold 25.4 mm). RWEQ Technical Bulletin:
    [U] not read in the source; recalled.
    """
    fn = "snow_cover_factor"
    d = _stack(fn, "snow_depth_mm_samples", snow_depth_mm_samples)
    thr = _scalar(fn, "threshold_mm", threshold_mm, 0.0)
    _range(fn, "snow_depth_mm_samples", d, 0.0, unit=" mm")
    covered = np.where(np.isnan(d), np.nan, (d > thr).astype(np.float64))
    return 1.0 - covered.mean(axis=0)


def soil_wetness_factor(etp_mm, rain_mm, rain_days, n_days, *, irrigation_mm=0.0) -> np.ndarray:
    """Soil wetness factor ``SW = [ETp − (R + I) · Rd / Nd] / ETp``, clipped to [0, 1].

    Parameters
    ----------
    etp_mm : array_like, any real dtype
        Potential evapotranspiration of the period (mm), > 0.
    rain_mm : array_like
        Rainfall of the period (mm), >= 0.
    rain_days : array_like
        Rd, number of rain days in the period, in [0, n_days].
    n_days : float or array_like
        Nd, days in the period, > 0.
    irrigation_mm : array_like
        I, irrigation of the period (mm), >= 0 (default 0).

    All broadcast together; NaN propagates.

    Returns
    -------
    float64 ndarray, broadcast shape
        SW in [0, 1]; values below 0 (wet periods) are set to 0 and above 1 cannot occur.

    Raises
    ------
    ValueError
        ``etp_mm`` <= 0, a negative rain/irrigation, ``rain_days`` outside [0, n_days], ``n_days`` <= 0,
        shapes do not broadcast.

    Sources
    -------
    [V2] ``jadeynryan/erosion`` ``js/soil_loss.js`` comment "SW = [ET - ((R + I) * (Rd / Nd))]/ET" with a
    clamp to [0, 1]. Two other public codes use different forms (``pyrweq`` divides by Rd and multiplies
    by Nd; the Weil & Talukdar script uses (ETp − R·Rd)/ETp); see docs/rweq.md. Technical Bulletin:
    [U] not read in the source; recalled. ETp itself is not computed here (two different ETp formulas
    were seen in code, neither read in a primary source).
    """
    fn = "soil_wetness_factor"
    etp = _f64(fn, "etp_mm", etp_mm)
    r = _f64(fn, "rain_mm", rain_mm)
    rd = _f64(fn, "rain_days", rain_days)
    nd = _f64(fn, "n_days", n_days)
    irr = _f64(fn, "irrigation_mm", irrigation_mm)
    _range(fn, "etp_mm", etp, 0.0, lo_open=True, unit=" mm")
    _range(fn, "rain_mm", r, 0.0, unit=" mm")
    _range(fn, "irrigation_mm", irr, 0.0, unit=" mm")
    _range(fn, "rain_days", rd, 0.0)
    _range(fn, "n_days", nd, 0.0, lo_open=True)
    etp, r, rd, nd, irr = _broadcast(fn, etp_mm=etp, rain_mm=r, rain_days=rd, n_days=nd, irrigation_mm=irr)
    with np.errstate(invalid="ignore"):
        if np.any(rd > nd):
            raise ValueError(f"{fn}: rain_days must be <= n_days (found {float(rd[rd > nd].flat[0])})")
    sw = (etp - (r + irr) * rd / nd) / etp
    return np.clip(sw, 0.0, 1.0)


def weather_factor(wf_wind, air_density, soil_wetness=1.0, snow_factor=1.0, *, g: float = GRAVITY) -> np.ndarray:
    """Weather factor ``WF = Wf · (ρ / g) · SW · SD`` (kg/m).

    Parameters
    ----------
    wf_wind : array_like, any real dtype
        Wf of the period from :func:`wind_factor`, >= 0.
    air_density : array_like
        ρ (kg/m³), in (0, 2]; e.g. :func:`air_density_rweq`.
    soil_wetness : array_like
        SW in [0, 1] (:func:`soil_wetness_factor`), default 1.
    snow_factor : array_like
        SD in [0, 1] (:func:`snow_cover_factor`), default 1.
    g : float
        Gravitational acceleration (m/s²), default 9.8, > 0.

    All broadcast together; NaN propagates.

    Returns
    -------
    float64 ndarray, broadcast shape
        WF of the period (kg/m in the RWEQ convention).

    Raises
    ------
    ValueError
        A value out of the ranges above, shapes do not broadcast.

    Sources
    -------
    [V2] ``lxyNgeo/pyrweq`` ``src/pyrweq/factors/weather.py``; Inner-Mongolia script (``wf * air_den / 9.8
    * SW * SD``); ``jadeynryan/erosion`` ``js/soil_loss.js``. Technical Bulletin: [U] not read in the
    source; recalled.
    """
    fn = "weather_factor"
    w = _f64(fn, "wf_wind", wf_wind)
    rho = _f64(fn, "air_density", air_density)
    sw = _f64(fn, "soil_wetness", soil_wetness)
    sd = _f64(fn, "snow_factor", snow_factor)
    gg = _scalar(fn, "g", g, 0.0, lo_open=True)
    _range(fn, "wf_wind", w, 0.0)
    _range(fn, "air_density", rho, 0.0, 2.0, lo_open=True, unit=" kg/m3")
    _range(fn, "soil_wetness", sw, 0.0, 1.0)
    _range(fn, "snow_factor", sd, 0.0, 1.0)
    w, rho, sw, sd = _broadcast(fn, wf_wind=w, air_density=rho, soil_wetness=sw, snow_factor=sd)
    return w * rho / gg * sw * sd


# --------------------------------------------------------------------------------------------
# soil and surface factors
# --------------------------------------------------------------------------------------------
def erodible_fraction(sand, silt, clay, om, caco3=0.0, *, sum_tol: float = 1.0) -> np.ndarray:
    """Erodible fraction ``EF = (29.09 + 0.31 Sa + 0.17 Si + 0.33 Sa/Cl − 2.59 OM − 0.95 CaCO3) / 100``.

    Parameters
    ----------
    sand, silt, clay : array_like, any real dtype, percent
        Sa, Si, Cl (%) of the topsoil, each in [0, 100], clay > 0 (Sa/Cl is undefined at 0: public
        codes floor clay at 0.1 %, which the caller may do), and Sa + Si + Cl <= 100 + ``sum_tol``.
    om : array_like, percent
        Organic matter OM (%), in [0, 100] (organic matter, not organic carbon).
    caco3 : array_like, percent
        Calcium carbonate (%), in [0, 100]; default 0 (the Chinese raster scripts set it to 0).
    sum_tol : float
        Tolerance (percentage points) on Sa + Si + Cl above 100, default 1.0 for rounded soil maps.

    All broadcast together; NaN propagates.

    Returns
    -------
    float64 ndarray, broadcast shape
        EF, clipped to [0, 1] (fraction). The formula can fall below 0 for organic or calcareous soils
        and exceed 1 for very sandy soils with little clay (large Sa/Cl): both are clipped.

    Raises
    ------
    ValueError
        A percentage outside [0, 100], clay <= 0, Sa + Si + Cl > 100 + sum_tol, shapes do not broadcast.

    Sources
    -------
    [V2] ``lxyNgeo/pyrweq``; ``jadeynryan/erosion`` ``R/soils.R`` (``calculate_ef``, with CaCO3 and a
    clamp at 0); ``rootcoder007/morie`` ``rweq_wind_erosion`` docstring (Fryrear et al. 1998). The same
    equation is in the brief. Technical Bulletin equation: [U] not read in the source; recalled.
    """
    fn = "erodible_fraction"
    sa, si, cl, o, ca = (_f64(fn, n, v) for n, v in
                         (("sand", sand), ("silt", silt), ("clay", clay), ("om", om), ("caco3", caco3)))
    tol = _scalar(fn, "sum_tol", sum_tol, 0.0)
    for n, a in (("sand", sa), ("silt", si), ("om", o), ("caco3", ca)):
        _range(fn, n, a, 0.0, 100.0, unit=" %")
    _range(fn, "clay", cl, 0.0, 100.0, lo_open=True, unit=" %")
    sa, si, cl, o, ca = _broadcast(fn, sand=sa, silt=si, clay=cl, om=o, caco3=ca)
    tot = sa + si + cl
    with np.errstate(invalid="ignore"):
        if np.any(tot > 100.0 + tol):
            raise ValueError(f"{fn}: sand + silt + clay must be <= 100 % (+{tol}), "
                             f"found {float(tot[tot > 100.0 + tol].flat[0])} %")
    ef = (29.09 + 0.31 * sa + 0.17 * si + 0.33 * sa / cl - 2.59 * o - 0.95 * ca) / 100.0
    return np.clip(ef, 0.0, 1.0)


def soil_crust_factor(clay, om) -> np.ndarray:
    """Soil crust factor ``SCF = 1 / (1 + 0.0066 Cl² + 0.021 OM²)``.

    Parameters
    ----------
    clay : array_like, any real dtype
        Clay (%), in [0, 100].
    om : array_like broadcasting with ``clay``
        Organic matter (%), in [0, 100].

    Returns
    -------
    float64 ndarray, broadcast shape
        SCF in (0, 1] (clipped to [0, 1]; the formula stays in (0, 1] for valid inputs).

    Raises
    ------
    ValueError
        A value outside [0, 100], shapes do not broadcast.

    Sources
    -------
    [V2] ``lxyNgeo/pyrweq``; ``jadeynryan/erosion`` ``R/soils.R`` (``calculate_scf``); Inner-Mongolia
    script. Technical Bulletin: [U] not read in the source; recalled.
    """
    fn = "soil_crust_factor"
    cl = _f64(fn, "clay", clay)
    o = _f64(fn, "om", om)
    _range(fn, "clay", cl, 0.0, 100.0, unit=" %")
    _range(fn, "om", o, 0.0, 100.0, unit=" %")
    cl, o = _broadcast(fn, clay=cl, om=o)
    return np.clip(1.0 / (1.0 + 0.0066 * cl * cl + 0.021 * o * o), 0.0, 1.0)


def terrain_roughness_kr(delta_h, length) -> np.ndarray:
    """Smith-Carson terrain roughness ``Kr = 0.2 ΔH² / L``.

    Parameters
    ----------
    delta_h : array_like, any real dtype
        ΔH, elevation difference within the distance L (e.g. max − min of a DEM window), >= 0.
    length : float or array_like
        L, the distance over which ΔH is taken, > 0, in the SAME unit as ``delta_h``.

    Returns
    -------
    float64 ndarray, broadcast shape
        Kr, in the unit of the inputs. [U] The unit RWEQ's K' equation expects for Kr (cm in the
        ridge-roughness form of the bulletin) was not read in the source; the public Weil & Talukdar
        script converts ΔH and L to km, others use m. The caller must choose; see docs/rweq.md.

    Raises
    ------
    ValueError
        ``delta_h`` < 0, ``length`` <= 0, shapes do not broadcast.

    Sources
    -------
    [V2] ``lxyNgeo/pyrweq`` ``src/pyrweq/factors/roughness.py``; ``charlottegiseleweil/winderosion``
    ``wind_erosion.py`` (``calculate_roughness_length``, 3×3 window). Smith-Carson original:
    [U] not read in the source; recalled.
    """
    fn = "terrain_roughness_kr"
    dh = _f64(fn, "delta_h", delta_h)
    ln = _f64(fn, "length", length)
    _range(fn, "delta_h", dh, 0.0)
    _range(fn, "length", ln, 0.0, lo_open=True)
    dh, ln = _broadcast(fn, delta_h=dh, length=ln)
    return 0.2 * dh * dh / ln


def roughness_factor_smith_carson(kr, crr=0.0) -> np.ndarray:
    """Surface roughness factor ``K' = exp(1.86 Kr − 2.41 Kr^0.934 − 0.127 Crr)``, clipped to [0, 1].

    Parameters
    ----------
    kr : array_like, any real dtype
        Kr (see :func:`terrain_roughness_kr`), >= 0.
    crr : array_like broadcasting with ``kr``
        Crr, chain random roughness (cm), >= 0; default 0 (smooth soil surface, as in most raster
        accounts).

    Returns
    -------
    float64 ndarray, broadcast shape
        K' in [0, 1]. Clipping is an engineering choice of this module: the exponent 1.86 Kr − 2.41
        Kr^0.934 has its minimum near Kr = 18 and becomes positive (K' > 1) beyond Kr ≈ 50.7, which
        would make roughness increase erosion.

    Raises
    ------
    ValueError
        ``kr`` or ``crr`` negative, shapes do not broadcast.

    Sources
    -------
    [V2] ``lxyNgeo/pyrweq`` ``src/pyrweq/factors/roughness.py`` (``calc_roughness_full``);
    ``charlottegiseleweil/winderosion`` ``wind_erosion.py`` (``calculate_surface_terr_rough``). Technical
    Bulletin: [U] not read in the source; recalled. The variant ``K' = cos(slope)`` of pyrweq
    (``calc_roughness_simple``) has no cited source and is not implemented.
    """
    fn = "roughness_factor_smith_carson"
    k = _f64(fn, "kr", kr)
    c = _f64(fn, "crr", crr)
    _range(fn, "kr", k, 0.0)
    _range(fn, "crr", c, 0.0, unit=" cm")
    k, c = _broadcast(fn, kr=k, crr=c)
    return np.clip(np.exp(1.86 * k - 2.41 * k ** 0.934 - 0.127 * c), 0.0, 1.0)


def vegetation_factor_fvc(fvc_pct, coefficient) -> np.ndarray:
    """Vegetation factor of the Chinese adaptations ``C = exp(a · FVC)``, FVC in percent.

    Parameters
    ----------
    fvc_pct : array_like, any real dtype
        Fractional vegetation cover (%), in [0, 100] (a fraction in [0, 1] must be multiplied by 100).
    coefficient : float or array_like broadcasting with ``fvc_pct``
        a <= 0, per ecosystem type: :data:`VEGETATION_COEFFICIENTS` (forest −0.1535, grassland −0.1151,
        shrub −0.0921, bare −0.0768, sand −0.0658, cropland −0.0438); pass a per-pixel raster of a.

    Returns
    -------
    float64 ndarray, broadcast shape
        C in [0, 1] (1 = no vegetation effect).

    Raises
    ------
    ValueError
        FVC outside [0, 100], a positive coefficient, shapes do not broadcast.

    Sources
    -------
    Coefficients: [V2] ``lxyNgeo/pyrweq`` ``src/pyrweq/factors/vegetation.py`` ``ALPHA_COEFFICIENTS`` (no
    paper named there; pyrweq applies them to FVC as a FRACTION, which makes C ≈ 0.86-0.96 at full
    cover). FVC in percent follows the brief and RWEQ's flat-cover SLR_f = exp(−0.0438 SC), SC in %
    (cropland's −0.0438 is that coefficient). The Chinese papers (巩国丽 2014 and others): [U] not read
    in the source; recalled. The unit of FVC is the largest open question of this module.
    """
    fn = "vegetation_factor_fvc"
    f = _f64(fn, "fvc_pct", fvc_pct)
    a = _f64(fn, "coefficient", coefficient)
    _range(fn, "fvc_pct", f, 0.0, 100.0, unit=" %")
    _range(fn, "coefficient", a, None, 0.0)
    f, a = _broadcast(fn, fvc_pct=f, coefficient=a)
    return np.clip(np.exp(a * f), 0.0, 1.0)


def vegetation_factor_rweq(flat_cover_pct=0.0, silhouette=0.0, canopy_cover=0.0) -> np.ndarray:
    """RWEQ combined crop factor ``COG = SLR_f · SLR_s · SLR_c``.

    ``SLR_f = exp(−0.0438 SC)``, ``SLR_s = exp(−0.0344 SA^0.6413)``, ``SLR_c = exp(−5.614 cc^0.7366)``.

    Parameters
    ----------
    flat_cover_pct : array_like, any real dtype
        SC, soil surface covered by flat residue (%), in [0, 100]; default 0.
    silhouette : array_like
        SA, standing silhouette (stalk silhouette area per unit ground area; [U] unit as defined in the
        bulletin not read), >= 0; default 0.
    canopy_cover : array_like
        cc, fraction of soil covered by canopy, in [0, 1]; default 0.

    All broadcast together; NaN propagates.

    Returns
    -------
    float64 ndarray, broadcast shape
        COG in [0, 1].

    Raises
    ------
    ValueError
        A value outside its range, shapes do not broadcast.

    Sources
    -------
    SLR_c coefficients: [V2] ``jadeynryan/erosion`` ``js/soil_loss.js`` ("SLRc = e^-5.614(cc^0.7366) from
    Fryrear et al. (2000)", via Borrelli et al. 2017). SLR_f −0.0438: [V2] ``lxyNgeo/pyrweq``
    (``exp(-0.0438 * sc)``). SLR_s −0.0344 and 0.6413: from the brief; [U] not read in the source nor in
    code; recalled.
    """
    fn = "vegetation_factor_rweq"
    sc = _f64(fn, "flat_cover_pct", flat_cover_pct)
    sa = _f64(fn, "silhouette", silhouette)
    cc = _f64(fn, "canopy_cover", canopy_cover)
    _range(fn, "flat_cover_pct", sc, 0.0, 100.0, unit=" %")
    _range(fn, "silhouette", sa, 0.0)
    _range(fn, "canopy_cover", cc, 0.0, 1.0)
    sc, sa, cc = _broadcast(fn, flat_cover_pct=sc, silhouette=sa, canopy_cover=cc)
    cog = np.exp(-0.0438 * sc) * np.exp(-0.0344 * sa ** 0.6413) * np.exp(-5.614 * cc ** 0.7366)
    return np.clip(cog, 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# erosion and sand fixation
# --------------------------------------------------------------------------------------------
def _factors(fn: str, wf, ef, scf, k_prime, c) -> tuple[np.ndarray, np.ndarray]:
    w = _f64(fn, "wf", wf)
    e = _f64(fn, "ef", ef)
    s = _f64(fn, "scf", scf)
    k = _f64(fn, "k_prime", k_prime)
    cc = _f64(fn, "c", c)
    _range(fn, "wf", w, 0.0, unit=" kg/m")
    for n, a in (("ef", e), ("scf", s), ("k_prime", k), ("c", cc)):
        _range(fn, n, a, 0.0, 1.0)
    w, e, s, k, cc = _broadcast(fn, wf=w, ef=e, scf=s, k_prime=k, c=cc)
    return w * e * s * k, cc


def _product(fn: str, wf, ef, scf, k_prime, c) -> np.ndarray:
    p_s, cc = _factors(fn, wf, ef, scf, k_prime, c)
    return p_s * cc


def _qmax_s(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    qmax = np.asarray(RWEQ_Q_COEF * p)
    with np.errstate(divide="ignore"):
        s = np.where(p > 0.0, RWEQ_S_COEF * np.where(p > 0.0, p, 1.0) ** RWEQ_S_EXP, np.inf)
    s = np.where(np.isnan(p), np.nan, s)
    return qmax, s


def _sl(qmax: np.ndarray, s: np.ndarray, z: float) -> np.ndarray:
    finite = np.isfinite(s)
    ss = np.where(finite, s, 1.0)
    sl = 2.0 * z / (ss * ss) * qmax * np.exp(-(z / ss) ** 2)
    sl = np.where(finite, sl, 0.0)  # P = 0: no transport, s = inf, SL = 0 (the limit)
    return np.where(np.isnan(s), np.nan, sl)


def rweq_transport(wf, ef, scf, k_prime, c=1.0) -> tuple[np.ndarray, np.ndarray]:
    """Maximum transport capacity ``Q_max = 109.8 P`` and critical field length ``s = 150.71 P^-0.3711``.

    Parameters
    ----------
    wf : array_like, any real dtype
        Weather factor WF of the period (kg/m), >= 0 (:func:`weather_factor`).
    ef, scf, k_prime, c : array_like
        EF, SCF, K' and the vegetation factor C (COG), each in [0, 1]; ``c`` defaults to 1 (bare soil,
        the potential case).

    All broadcast together; NaN propagates.

    Returns
    -------
    qmax : float64 ndarray, broadcast shape
        Q_max (kg/m).
    s : float64 ndarray, broadcast shape
        s (m); +inf where P = 0.

    Raises
    ------
    ValueError
        ``wf`` < 0, a factor outside [0, 1], shapes do not broadcast.

    Sources
    -------
    [V2] ``lxyNgeo/pyrweq`` ``src/pyrweq/erosion.py``; ``rootcoder007/morie`` (``rweq_wind_erosion``);
    ``jadeynryan/erosion`` ``js/soil_loss.js``. Technical Bulletin / Fryrear et al. 2000: [U] not read
    in the source; recalled.
    """
    return _qmax_s(_product("rweq_transport", wf, ef, scf, k_prime, c))


def rweq_soil_loss(wf, ef, scf, k_prime, c=1.0, *, z: float = DOWNWIND_DISTANCE_M) -> np.ndarray:
    """Wind erosion ``SL = (2z / s²) Q_max exp(−(z/s)²)`` at downwind distance z (kg/m²).

    Parameters
    ----------
    wf, ef, scf, k_prime, c : array_like
        As in :func:`rweq_transport`; ``c = 1`` gives the potential erosion SL_s.
    z : float
        Downwind distance (m), > 0; default 50 m.

    Returns
    -------
    float64 ndarray, broadcast shape
        SL of the period (kg/m²); × 10 for t/ha (:func:`kg_m2_to_t_ha`). SL is 0 where P = 0. For a fixed
        P, SL(z) peaks at z = s/√2 (:func:`rweq_peak_distance`).

    Raises
    ------
    ValueError
        As :func:`rweq_transport`, and ``z`` <= 0.

    Sources
    -------
    [V2] as :func:`rweq_transport` (all codes read use z = 50 or 55 m). Two public Chinese scripts write
    ``100/(S*S+0.01)*Qmax*exp(-(50/(S+0.01))**2)`` with 105.71 for 150.71 (see docs/rweq.md).
    Technical Bulletin: [U] not read in the source; recalled.
    """
    fn = "rweq_soil_loss"
    zz = _scalar(fn, "z", z, 0.0, lo_open=True)
    qmax, s = _qmax_s(_product(fn, wf, ef, scf, k_prime, c))
    return _sl(qmax, s, zz)


def rweq_peak_distance(wf, ef, scf, k_prime, c=1.0) -> np.ndarray:
    """Downwind distance ``z* = s / √2`` (m) where SL(z) is largest, SL(z*) = √2 · Q_max · e^(−1/2) / s.

    Parameters and errors as :func:`rweq_transport`. Returns float64 (m), +inf where P = 0.

    Sources
    -------
    Calculus on the SL equation (d/dz [z exp(−z²/s²)] = 0); no source needed beyond the equation.
    """
    _, s = _qmax_s(_product("rweq_peak_distance", wf, ef, scf, k_prime, c))
    return s / math.sqrt(2.0)


def sand_fixation(wf, ef, scf, k_prime, c, *, z: float = DOWNWIND_DISTANCE_M,
                  clip_negative: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sand fixation ``SR = SL_s − SL``: potential (C = 1) minus actual wind erosion (kg/m²).

    Parameters
    ----------
    wf, ef, scf, k_prime : array_like
        As in :func:`rweq_transport`.
    c : array_like
        Vegetation factor C in [0, 1] (:func:`vegetation_factor_fvc` or :func:`vegetation_factor_rweq`).
    z : float
        Downwind distance (m), > 0; default 50.
    clip_negative : bool
        Set SR < 0 to 0 (as the Inner-Mongolia script does) when True; default False keeps them.

    Returns
    -------
    sr : float64 ndarray, broadcast shape
        SR (kg/m²).
    sl_potential : float64 ndarray
        SL_s (kg/m²), with C = 1.
    sl_actual : float64 ndarray
        SL (kg/m²), with C.

    Notes
    -----
    SL is NOT monotone in P = WF·EF·SCF·K'·C: SL ∝ P^1.7422 exp(−(z²/150.71²) P^0.7422), largest at
    (z/s)² = 1.7422/0.7422 (z/s = 1.532; P ≈ 61.7 for z = 50 m). SR ≥ 0 for every C ≤ 1 therefore holds
    only where the potential case has z/s_s <= 1.532 (s_s >= 32.6 m at z = 50 m); beyond, vegetation
    "increases" SL at 50 m and SR < 0 (an artefact of the fixed z). ``clip_negative`` handles that.

    Raises
    ------
    ValueError
        As :func:`rweq_soil_loss`.

    Sources
    -------
    SR = SL_s − SL: [V2] ``lxyNgeo/pyrweq`` AGENTS.md ("防风固沙量 G = SL_pot(C=1) - SL_actual"), the
    Inner-Mongolia script (``sand_re = SL_p_sum - SL_sum``, negatives to 0) and the project methods note
    §2.9 (RWEQ potential − actual, [V, Garzê]). Guideline 2020 / 巩国丽 2014: [U] not read in the source.
    """
    fn = "sand_fixation"
    zz = _scalar(fn, "z", z, 0.0, lo_open=True)
    p_s, cc = _factors(fn, wf, ef, scf, k_prime, c)
    p = p_s * cc
    sl_s = _sl(*_qmax_s(p_s), zz)
    sl = _sl(*_qmax_s(p), zz)
    sr = sl_s - sl
    if clip_negative:
        sr = np.where(sr < 0.0, 0.0, sr)
    return sr, sl_s, sl


# --------------------------------------------------------------------------------------------
# units and value
# --------------------------------------------------------------------------------------------
def kg_m2_to_t_ha(x) -> np.ndarray:
    """kg/m² -> t/ha: ``× 10`` (1 kg/m² = 10⁴ kg/ha = 10 t/ha).

    Parameters
    ----------
    x : array_like, any real dtype
        SL or SR (kg/m²); NaN propagates, negative values are kept (SR may be negative).

    Returns
    -------
    float64 ndarray, same shape
        t/ha.

    Raises
    ------
    ValueError
        Non-numeric input.
    """
    return _f64("kg_m2_to_t_ha", "x", x) * 10.0


def kg_m2_to_t_per_pixel(x, pixel_area_m2) -> np.ndarray:
    """kg/m² -> t per pixel: ``x · area / 1000``.

    Parameters
    ----------
    x : array_like, any real dtype
        SL or SR (kg/m²).
    pixel_area_m2 : float or array_like broadcasting with ``x``
        Pixel area (m²), > 0 (for a geographic grid, one area per row as an (h, 1) column).

    Returns
    -------
    float64 ndarray, broadcast shape
        t per pixel (per period of the inputs).

    Raises
    ------
    ValueError
        Area <= 0, shapes do not broadcast.
    """
    fn = "kg_m2_to_t_per_pixel"
    v = _f64(fn, "x", x)
    a = _f64(fn, "pixel_area_m2", pixel_area_m2)
    _range(fn, "pixel_area_m2", a, 0.0, lo_open=True, unit=" m2")
    v, a = _broadcast(fn, x=v, pixel_area_m2=a)
    return v * a * 1e-3


def sand_fixation_value(q_t, *, bulk_density_t_m3: float = SAND_BULK_DENSITY_T_M3,
                        depth_m: float = SAND_COVER_DEPTH_M,
                        price_yuan_m2: float = SAND_PRICE_YUAN_M2) -> np.ndarray:
    """Value of sand fixation ``V = Q_f / (ρ · h) × P_f`` (yuan): the sand-covered area avoided × cost.

    Parameters
    ----------
    q_t : array_like, any real dtype
        Q_f, sand-fixation amount (t), e.g. per pixel from :func:`kg_m2_to_t_per_pixel`; NaN propagates,
        negative amounts are kept (value negative).
    bulk_density_t_m3 : float
        ρ, soil bulk density (t/m³), > 0; default 1.28.
    depth_m : float
        h, thickness of the sand cover (m), > 0; default 0.1.
    price_yuan_m2 : float
        P_f, cost of sand control (yuan/m²), >= 0; default 3.75 (Garzê 2010 account).

    Returns
    -------
    float64 ndarray, same shape
        Value (yuan).

    Raises
    ------
    ValueError
        A parameter out of range or not finite; non-numeric ``q_t``.

    Sources
    -------
    [V] 白玛卓嘎, 肖燚, 欧阳志云, 王莉雁 (2017) 生态学报 37(19): 6302-6312 (Garzê 2010 GEP), §2.4.3 eq. V_f =
    Q_f/(ρ·h)·P_f and §3.2.3 / table 3 (ρ 1.28 t/m³, h 0.1 m, 3.75 yuan/m²; 779.42万 t -> 60.89 km² -> 2.28亿
    yuan), read in ``DreamBlooms/ChinaXiv-201601-to-202209`` ``md/ChinaXiv-201711.00120V1.md``.
    """
    fn = "sand_fixation_value"
    q = _f64(fn, "q_t", q_t)
    rho = _scalar(fn, "bulk_density_t_m3", bulk_density_t_m3, 0.0, lo_open=True)
    h = _scalar(fn, "depth_m", depth_m, 0.0, lo_open=True)
    pf = _scalar(fn, "price_yuan_m2", price_yuan_m2, 0.0)
    return q / (rho * h) * pf
