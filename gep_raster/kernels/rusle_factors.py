"""RUSLE factor kernels of Chinese GEP / soil-conservation accounts: R, K, FVC and C.

* :func:`r_factor_monthly_wischmeier` - R from 12 monthly precipitation rasters (the Fournier-type
  "Wischmeier monthly formula" of Chinese GEP practice).
* :func:`r_factor_daily_zhang2002` - R from daily precipitation, the half-month model of Zhang Wenbo,
  Xie Yun & Liu Baoyuan (2002) with the parameters estimated from rainfall indexes.
* :func:`k_factor_epic` - soil erodibility K of EPIC (Williams 1995; Sharpley & Williams 1990), in SI
  units, with the optional China correction of Zhang Keli et al. (2007).
* :func:`fractional_vegetation_cover` - the dimidiate pixel model FVC from NDVI.
* :func:`c_factor_cai2000` - the cover-management factor C from FVC of Cai Chongfa et al. (2000).

Public functions are Python wrappers. They validate the inputs (raising :class:`ValueError`) and then
call ``@numba.njit(nogil=True, cache=True)`` kernels. Float rasters are float32 with NaN nodata; the
arithmetic is done in float64 and the results are rounded to float32.

The default coefficients are the ``soil_retention.*`` rows of ``gep_raster/data/parameters.csv``
(same values; a test checks that they agree). Sources, evidence marks and the worked-example checks
are in ``docs/rusle_factors.md``.
"""
from __future__ import annotations

import calendar
import math

import numba
import numpy as np

__all__ = ["r_factor_monthly_wischmeier", "r_factor_daily_zhang2002", "k_factor_epic",
           "fractional_vegetation_cover", "c_factor_cai2000",
           "R_MONTHLY_A", "R_MONTHLY_B", "R_MONTHLY_C", "R_US_TO_SI",
           "ZHANG_THRESHOLD_MM", "ZHANG_BETA0", "ZHANG_BETA_PD", "ZHANG_BETA_PY", "ZHANG_ALPHA_A",
           "ZHANG_ALPHA_B", "K_US_TO_SI", "K_ZHANG_INTERCEPT", "K_ZHANG_SLOPE",
           "C_CAI_A", "C_CAI_B", "C_CAI_FVC_MAX"]

# --------------------------------------------------------------------------------------
# defaults (= the soil_retention.* rows of gep_raster/data/parameters.csv)
# --------------------------------------------------------------------------------------
#: R = Σ A · 10^(B · lg(P_i²/P) − C), US customary units (hundreds of ft·tonf·in/(ac·h·a))
R_MONTHLY_A = 1.735            # soil_retention.r_monthly_a
R_MONTHLY_B = 1.5              # soil_retention.r_monthly_b
R_MONTHLY_C = 0.8188           # soil_retention.r_monthly_c
#: hundreds of ft·tonf·in/(ac·h·a) -> MJ·mm/(ha·h·a) (Foster et al. 1981; dimensional arithmetic 17.0195)
R_US_TO_SI = 17.02             # soil_retention.r_us_to_si
#: Zhang, Xie & Liu (2002): erosive day threshold (mm/d) and the rainfall-index estimates of α and β
ZHANG_THRESHOLD_MM = 12.0      # soil_retention.r_zhang_threshold_mm
ZHANG_BETA0 = 0.8363           # soil_retention.r_zhang_beta0
ZHANG_BETA_PD = 18.144         # soil_retention.r_zhang_beta_pd
ZHANG_BETA_PY = 24.455         # soil_retention.r_zhang_beta_py
ZHANG_ALPHA_A = 21.586         # soil_retention.r_zhang_alpha_a
ZHANG_ALPHA_B = 7.1891         # soil_retention.r_zhang_alpha_b   (α = A · β^(−B))
#: short ton·ac·h/(hundreds of ac·ft·tonf·in) -> t·ha·h/(ha·MJ·mm)  (2.24170 / 17.0195 = 0.131714)
K_US_TO_SI = 0.1317            # soil_retention.k_us_to_si
#: Zhang Keli et al. (2007) China correction K = a + b · K_EPIC
K_ZHANG_INTERCEPT = -0.01383   # soil_retention.k_zhang_intercept
K_ZHANG_SLOPE = 0.51575        # soil_retention.k_zhang_slope
#: Cai et al. (2000): C = A − B · lg(FVC%) for 0 < FVC ≤ FVC_MAX
C_CAI_A = 0.6508               # soil_retention.c_cai_a
C_CAI_B = 0.3436               # soil_retention.c_cai_b
C_CAI_FVC_MAX = 0.783          # soil_retention.c_cai_fvc_max (fraction; 78.3 %)

_TEXTURE_UNITS = {"percent": 1.0, "g/kg": 0.1}
_OC_UNITS = {"percent": 1.0, "g/kg": 0.1, "dg/kg": 0.01, "fraction": 100.0}
_CORRECTIONS = {None: 0, "us_units": 1, "si_units": 2}


# --------------------------------------------------------------------------------------
# numba kernels
# --------------------------------------------------------------------------------------
@numba.njit(nogil=True, cache=True)
def _r_monthly_nb(p, coef, b):
    # R = coef · Σ_i (P_i²/P)^b  with coef = us_to_si · a · 10^(−c); P = Σ_i P_i
    n, h, w = p.shape
    out = np.empty((h, w), dtype=np.float32)
    tot = np.empty(w, dtype=np.float64)
    acc = np.empty(w, dtype=np.float64)
    bad = np.empty(w, dtype=np.bool_)
    for r in range(h):
        for c in range(w):
            tot[c] = 0.0
            acc[c] = 0.0
            bad[c] = False
        for m in range(n):
            for c in range(w):
                v = np.float64(p[m, r, c])
                if np.isnan(v) or v < 0.0:
                    bad[c] = True
                else:
                    tot[c] += v
        for m in range(n):
            for c in range(w):
                v = np.float64(p[m, r, c])
                if (not bad[c]) and v > 0.0:
                    acc[c] += math.pow(v * v / tot[c], b)   # v > 0 implies tot > 0
        for c in range(w):
            if bad[c]:
                out[r, c] = np.float32(np.nan)
            else:
                out[r, c] = np.float32(coef * acc[c])
    return out


@numba.njit(nogil=True, cache=True)
def _zhang_stats_nb(p, thr):
    # per pixel: sum and count of the erosive daily amounts (P ≥ thr); bad = any NaN or negative day
    n, h, w = p.shape
    s = np.zeros((h, w), dtype=np.float64)
    k = np.zeros((h, w), dtype=np.int64)
    bad = np.zeros((h, w), dtype=np.bool_)
    for d in range(n):
        for r in range(h):
            for c in range(w):
                v = np.float64(p[d, r, c])
                if np.isnan(v) or v < 0.0:
                    bad[r, c] = True
                elif v >= thr:
                    s[r, c] += v
                    k[r, c] += 1
    return s, k, bad


@numba.njit(nogil=True, cache=True)
def _zhang_sum_nb(p, year_idx, n_years, thr, alpha, beta, bad):
    # per year and pixel: α · Σ_{erosive days} P_k^β   (MJ·mm/(ha·h·a))
    n, h, w = p.shape
    acc = np.zeros((n_years, h, w), dtype=np.float64)
    for d in range(n):
        y = year_idx[d]
        for r in range(h):
            for c in range(w):
                v = np.float64(p[d, r, c])
                if v >= thr and not bad[r, c]:      # NaN compares False
                    acc[y, r, c] += math.pow(v, beta[r, c])
    per_year = np.empty((n_years, h, w), dtype=np.float32)
    mean = np.empty((h, w), dtype=np.float32)
    for r in range(h):
        for c in range(w):
            tot = 0.0
            for y in range(n_years):
                val = alpha[r, c] * acc[y, r, c]
                tot += val
                per_year[y, r, c] = np.float32(np.nan) if bad[r, c] else np.float32(val)
            mean[r, c] = np.float32(np.nan) if bad[r, c] else np.float32(tot / n_years)
    return per_year, mean


@numba.njit(nogil=True, cache=True)
def _k_epic_nb(sand, silt, clay, oc, tex_scale, oc_scale, us_to_si, mode, ka, kb):
    h, w = sand.shape
    out = np.empty((h, w), dtype=np.float32)
    for r in range(h):
        for c in range(w):
            san = np.float64(sand[r, c]) * tex_scale
            sil = np.float64(silt[r, c]) * tex_scale
            cla = np.float64(clay[r, c]) * tex_scale
            cc = np.float64(oc[r, c]) * oc_scale
            if np.isnan(san) or np.isnan(sil) or np.isnan(cla) or np.isnan(cc):
                out[r, c] = np.float32(np.nan)
                continue
            f_csand = 0.2 + 0.3 * math.exp(-0.0256 * san * (1.0 - sil / 100.0))
            if sil + cla > 0.0:
                f_clsi = math.pow(sil / (cla + sil), 0.3)
            else:
                f_clsi = 0.0                       # pure sand: the silt -> 0 limit of the term
            f_orgc = 1.0 - 0.25 * cc / (cc + math.exp(3.72 - 2.95 * cc))
            sn1 = 1.0 - san / 100.0
            f_hisand = 1.0 - 0.7 * sn1 / (sn1 + math.exp(-5.51 + 22.9 * sn1))
            k_us = f_csand * f_clsi * f_orgc * f_hisand
            if mode == 1:                          # Zhang correction on the US-unit K, then to SI
                k = (ka + kb * k_us) * us_to_si
            elif mode == 2:                        # Zhang correction on the SI K
                k = ka + kb * (k_us * us_to_si)
            else:
                k = k_us * us_to_si
            out[r, c] = np.float32(k if k > 0.0 else 0.0)
    return out


@numba.njit(nogil=True, cache=True)
def _fvc_nb(ndvi, soil, veg):
    h, w = ndvi.shape
    out = np.empty((h, w), dtype=np.float32)
    for r in range(h):
        for c in range(w):
            x = np.float64(ndvi[r, c])
            s = np.float64(soil[r, c])
            v = np.float64(veg[r, c])
            f = (x - s) / (v - s)
            if np.isnan(f):
                out[r, c] = np.float32(np.nan)
            elif f < 0.0:
                out[r, c] = np.float32(0.0)
            elif f > 1.0:
                out[r, c] = np.float32(1.0)
            else:
                out[r, c] = np.float32(f)
    return out


@numba.njit(nogil=True, cache=True)
def _c_cai_nb(fvc, a, b, fmax32):
    h, w = fvc.shape
    out = np.empty((h, w), dtype=np.float32)
    for r in range(h):
        for c in range(w):
            f32 = fvc[r, c]
            if np.isnan(f32):
                out[r, c] = np.float32(np.nan)
            elif f32 <= np.float32(0.0):
                out[r, c] = np.float32(1.0)
            elif f32 > fmax32:                    # compared in float32: float32(0.783) is 78.3 %
                out[r, c] = np.float32(0.0)
            else:
                cv = a - b * math.log10(100.0 * np.float64(f32))
                cv = 1.0 if cv > 1.0 else (0.0 if cv < 0.0 else cv)
                out[r, c] = np.float32(cv)
    return out


# --------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------
def _real_array(a, name) -> np.ndarray:
    arr = np.asarray(a)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    return arr


def _broadcast_2d(arrays: dict) -> list[np.ndarray]:
    """Broadcast the named inputs together; the shape must be 2-D; return C-contiguous float32 arrays."""
    arrs = [_real_array(v, k) for k, v in arrays.items()]
    try:
        b = np.broadcast_arrays(*arrs)
    except ValueError:
        shapes = {k: np.shape(v) for k, v in zip(arrays, arrs)}
        raise ValueError(f"{', '.join(arrays)} cannot be broadcast together: shapes {shapes}") from None
    if b[0].ndim != 2:
        raise ValueError(f"{', '.join(arrays)} must broadcast to a 2-D (rows, cols) raster, got shape "
                         f"{b[0].shape}")
    return [np.ascontiguousarray(x, dtype=np.float32) for x in b]


def _finite_float(value, name, *, positive=False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or (positive and v <= 0.0):
        raise ValueError(f"{name} must be a finite{' positive' if positive else ''} number, got {value!r}")
    return v


def _unit(value, table: dict, name: str):
    if value not in table:
        raise ValueError(f"{name} must be one of {sorted(k for k in table if k is not None)}"
                         f"{' or None' if None in table else ''}, got {value!r}")
    return table[value]


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------
def r_factor_monthly_wischmeier(p_monthly_mm, *, a: float = R_MONTHLY_A, b: float = R_MONTHLY_B,
                                c: float = R_MONTHLY_C, us_to_si: float = R_US_TO_SI) -> np.ndarray:
    """Rainfall erosivity R from 12 monthly precipitation rasters (Wischmeier-type monthly formula).

    ::

        P   = Σ_i P_i                                           (annual precipitation, mm)
        R   = us_to_si · Σ_{i=1..12} a · 10^(b · lg(P_i² / P) − c)
            = us_to_si · a · 10^(−c) · Σ_i (P_i² / P)^b         (the form computed)

    with the defaults a = 1.735, b = 1.5, c = 0.8188 and us_to_si = 17.02. The sum is in US customary
    units (hundreds of ft·tonf·in/(ac·h·a)); ``us_to_si`` = 17.02 converts it to MJ·mm/(ha·h·a)
    (Foster et al. 1981; 100 ft·tonf·in/(ac·h) = 17.0195 MJ·mm/(ha·h) by unit arithmetic). Pass
    ``us_to_si=1`` for the raw sum that some Chinese studies report without conversion.

    P_i and P are in **mm**, as in Chinese GEP practice (the implementations and papers read use
    monthly and annual rainfall in mm); the original Fournier/Arnoldus form is not used with inches
    here. A month with P_i = 0 contributes 0 (the limit of the term); a pixel with P = 0 has R = 0.
    For a multi-year mean R pass the mean monthly precipitation of each calendar month.

    Parameters
    ----------
    p_monthly_mm : numpy.ndarray, shape (12, h, w), float32
        Monthly precipitation P_i in mm/month (January..December; the order does not matter).
    a, b, c : float
        Coefficients of the formula (parameter rows ``soil_retention.r_monthly_a|b|c``).
    us_to_si : float
        Unit factor applied to the sum (``soil_retention.r_us_to_si``), > 0.

    Returns
    -------
    numpy.ndarray, shape (h, w), float32
        R in MJ·mm/(ha·h·a) (in the units of the sum times ``us_to_si``). NaN where any month is NaN
        or negative. Arithmetic in float64.

    Raises
    ------
    ValueError
        If the input is not a real 3-D array with 12 months on the first axis, or a coefficient is not
        finite (``us_to_si`` not positive).

    References
    ----------
    Wischmeier, W.H. & Smith, D.D. (1978), as cited for this monthly formula in Chinese studies (e.g.
    乌宁巴特, 刘新平, 马相平, 叶尔羌河流域土地生态脆弱性差异评价, eq. for R); Arnoldus, H.M.J. (1980)
    An approximation of the rainfall factor in the USLE (the Fournier-index form).
    Foster, G.R., McCool, D.K., Renard, K.G. & Moldenhauer, W.C. (1981). Conversion of the universal
    soil loss equation to SI metric units. J. Soil Water Conserv. 36(6):355-359 (R factor 17.02).
    """
    arr = _real_array(p_monthly_mm, "p_monthly_mm")
    if arr.ndim != 3 or arr.shape[0] != 12:
        raise ValueError(f"p_monthly_mm must be a (12, rows, cols) stack of monthly rasters, got shape "
                         f"{arr.shape}")
    a = _finite_float(a, "a")
    b = _finite_float(b, "b")
    c = _finite_float(c, "c")
    us_to_si = _finite_float(us_to_si, "us_to_si", positive=True)
    p = np.ascontiguousarray(arr, dtype=np.float32)
    return _r_monthly_nb(p, us_to_si * a * 10.0 ** (-c), b)


def r_factor_daily_zhang2002(p_daily_mm, years, *, threshold_mm: float = ZHANG_THRESHOLD_MM,
                             pd12_mm=None, py12_mm=None, beta0: float = ZHANG_BETA0,
                             beta_pd: float = ZHANG_BETA_PD, beta_py: float = ZHANG_BETA_PY,
                             alpha_a: float = ZHANG_ALPHA_A, alpha_b: float = ZHANG_ALPHA_B,
                             require_full_years: bool = True, per_year: bool = False):
    """Rainfall erosivity R from daily precipitation: the half-month model of Zhang, Xie & Liu (2002).

    ::

        M_j  = α · Σ_{k in half-month j} P_k^β      P_k = daily rainfall if ≥ 12 mm, else 0
        β    = 0.8363 + 18.144 / Pd12 + 24.455 / Py12
        α    = 21.586 · β^(−7.1891)
        R_yr = Σ_{j=1..24} M_j = α · Σ_{erosive days of the year} P_k^β
        R    = mean of R_yr over the years

    Pd12 is the mean daily rainfall of the erosive days (≥ threshold) and Py12 the mean annual rainfall
    from erosive days, both over the whole record of the pixel unless given. α and β are constant per
    pixel, so the sum over the 24 half-months of a year equals α Σ P_k^β over all erosive days of that
    year; no half-month segmentation is needed for annual R. A pixel without erosive days has R = 0.

    Parameters
    ----------
    p_daily_mm : numpy.ndarray, shape (n_days, h, w), float32
        Daily precipitation in mm/d.
    years : array_like of int, shape (n_days,)
        Calendar year of each day (any order). With ``require_full_years`` every year must have all
        its days (365, or 366 in leap years), so that Py12 is a per-year mean.
    threshold_mm : float
        Erosive-day threshold in mm/d (``soil_retention.r_zhang_threshold_mm``, 12).
    pd12_mm, py12_mm : float or array_like broadcastable to (h, w), optional
        Long-term Pd12 (mm/d) and Py12 (mm/a) to use instead of the values computed from the record
        (e.g. from a 30-year climatology when the daily record is short). NaN cells fall back to the
        computed value.
    beta0, beta_pd, beta_py, alpha_a, alpha_b : float
        Coefficients (``soil_retention.r_zhang_beta0|beta_pd|beta_py|alpha_a|alpha_b``).
    require_full_years : bool
        Check that each year is complete (default True).
    per_year : bool
        Also return the R of each year.

    Returns
    -------
    numpy.ndarray, shape (h, w), float32
        Mean annual R in MJ·mm/(ha·h·a). NaN where any day is NaN or negative.
    (years_sorted, r_per_year) : tuple, only with ``per_year=True``
        ``years_sorted`` the distinct years (int64, ascending) and ``r_per_year`` shape
        (n_years, h, w) float32, returned after the mean as ``(mean, years_sorted, r_per_year)``.

    Raises
    ------
    ValueError
        If ``p_daily_mm`` is not a real 3-D array, ``years`` is not an integer array of length n_days,
        a year is incomplete (with ``require_full_years``), ``threshold_mm`` is not positive, a
        coefficient is not finite, or ``pd12_mm``/``py12_mm`` do not broadcast to (h, w) or are not
        positive.

    References
    ----------
    章文波, 谢云, 刘宝元 (2002). 利用日雨量计算降雨侵蚀力的方法研究. 地理科学 22(6):705-711
    (Zhang W.B., Xie Y., Liu B.Y., Rainfall erosivity estimation using daily rainfall amounts, Scientia
    Geographica Sinica), the half-month model and the rainfall-index equations of α and β. Constants
    as quoted by 陈召亚 et al. (2016), 中国生态农业学报 24(2):244-255, eqs. (4)-(6).
    """
    arr = _real_array(p_daily_mm, "p_daily_mm")
    if arr.ndim != 3:
        raise ValueError(f"p_daily_mm must be a (n_days, rows, cols) stack of daily rasters, got shape "
                         f"{arr.shape}")
    n, h, w = arr.shape
    yrs = np.asarray(years)
    if yrs.ndim != 1 or yrs.shape[0] != n:
        raise ValueError(f"years must be a 1-D array with one year per day ({n} days), got shape {yrs.shape}")
    if n == 0:
        raise ValueError("p_daily_mm has no days")
    if not np.issubdtype(yrs.dtype, np.integer):
        if np.issubdtype(yrs.dtype, np.floating) and np.all(np.isfinite(yrs)) and np.all(yrs == np.round(yrs)):
            yrs = yrs.astype(np.int64)
        else:
            raise ValueError(f"years must hold integer calendar years, got dtype {yrs.dtype}")
    uniq, inv, counts = np.unique(yrs.astype(np.int64), return_inverse=True, return_counts=True)
    if require_full_years:
        for y, cnt in zip(uniq.tolist(), counts.tolist()):
            want = 366 if calendar.isleap(int(y)) else 365
            if cnt != want:
                raise ValueError(f"year {y} has {cnt} days in p_daily_mm, expected {want}; pass complete "
                                 "years (Py12 is a mean per year) or require_full_years=False")
    thr = _finite_float(threshold_mm, "threshold_mm", positive=True)
    beta0 = _finite_float(beta0, "beta0")
    beta_pd = _finite_float(beta_pd, "beta_pd")
    beta_py = _finite_float(beta_py, "beta_py")
    alpha_a = _finite_float(alpha_a, "alpha_a")
    alpha_b = _finite_float(alpha_b, "alpha_b")
    p = np.ascontiguousarray(arr, dtype=np.float32)
    n_years = int(uniq.shape[0])

    s, k, bad = _zhang_stats_nb(p, thr)
    with np.errstate(divide="ignore", invalid="ignore"):
        pd12 = np.where(k > 0, s / np.maximum(k, 1), np.nan)
        py12 = np.where(k > 0, s / n_years, np.nan)
    for given, computed, name in ((pd12_mm, pd12, "pd12_mm"), (py12_mm, py12, "py12_mm")):
        if given is None:
            continue
        g = _real_array(given, name).astype(np.float64)
        try:
            g = np.broadcast_to(g, (h, w))
        except ValueError:
            raise ValueError(f"{name} must broadcast to the raster shape {(h, w)}, got shape {g.shape}") from None
        if np.any(g[np.isfinite(g)] <= 0.0) or np.any(np.isinf(g)):
            raise ValueError(f"{name} must be positive (mm), got min {np.nanmin(g)}")
        np.copyto(computed, g, where=np.isfinite(g))
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = beta0 + beta_pd / pd12 + beta_py / py12
        alpha = alpha_a * beta ** (-alpha_b)
    # pixels without erosive days: the sum is empty, R = 0 (α, β arbitrary but finite)
    none = k == 0
    beta = np.where(none, 1.0, beta)
    alpha = np.where(none, 0.0, alpha)
    per, mean = _zhang_sum_nb(p, inv.astype(np.int64), n_years, thr, np.ascontiguousarray(alpha),
                              np.ascontiguousarray(beta), bad)
    if per_year:
        return mean, uniq.astype(np.int64), per
    return mean


def k_factor_epic(sand_pct, silt_pct, clay_pct, organic_carbon, *, texture_unit: str = "percent",
                  oc_unit: str = "percent", china_correction: str | None = None,
                  sum_tolerance_pct: float = 5.0, us_to_si: float = K_US_TO_SI,
                  zhang_intercept: float = K_ZHANG_INTERCEPT,
                  zhang_slope: float = K_ZHANG_SLOPE) -> np.ndarray:
    """Soil erodibility K by the EPIC equation (Williams 1995; Sharpley & Williams 1990), in SI units.

    With SAN, SIL, CLA the sand, silt and clay contents (%), C the organic carbon content (%) and
    SN1 = 1 − SAN/100::

        K_EPIC = {0.2 + 0.3·exp[−0.0256·SAN·(1 − SIL/100)]}
                 · [SIL/(CLA + SIL)]^0.3
                 · {1 − 0.25·C/[C + exp(3.72 − 2.95·C)]}
                 · {1 − 0.7·SN1/[SN1 + exp(−5.51 + 22.9·SN1)]}      (US units, t·ac·h/(100·ac·ft·tonf·in))
        K      = 0.1317 · K_EPIC                                       (t·ha·h/(ha·MJ·mm))

    ``china_correction`` applies the regression of Zhang Keli et al. (2007), K = −0.01383 + 0.51575 ·
    K_EPIC. The literature applies it in two ways, which differ by a factor of about 2-3, and the
    primary text was not read here, so the caller must choose:

    * ``"us_units"``: K = 0.1317 · (−0.01383 + 0.51575 · K_EPIC) (K_EPIC in US units; the form
      "K = (−0.01383 + 0.51575 K_EPIC) × 0.1317" of Chinese implementations);
    * ``"si_units"``: K = −0.01383 + 0.51575 · (0.1317 · K_EPIC) (K_EPIC already in SI units).

    A corrected K below 0 is set to 0. A soil with SIL = CLA = 0 (pure sand) has K = 0 (the SIL -> 0
    limit of the second factor).

    Parameters
    ----------
    sand_pct, silt_pct, clay_pct : array_like, broadcastable to (h, w), float32
        Particle-size fractions (USDA: sand 0.05-2 mm, silt 0.002-0.05 mm, clay < 0.002 mm), in
        percent (``texture_unit="percent"``) or g/kg (``"g/kg"``, SoilGrids 2.0 ``sand/silt/clay``,
        divided by 10).
    organic_carbon : array_like, broadcastable to (h, w), float32
        Organic **carbon** (not organic matter; OM ≈ 1.724 · OC) in ``oc_unit``: ``"percent"`` (g/100 g),
        ``"g/kg"`` (÷ 10), ``"dg/kg"`` (÷ 100; SoilGrids 2.0 ``soc`` is dg/kg) or ``"fraction"`` (× 100).
    texture_unit, oc_unit : str
        Units as above.
    china_correction : None, "us_units" or "si_units"
        Zhang Keli et al. (2007) correction (see above); None (default) for plain EPIC.
    sum_tolerance_pct : float
        Largest allowed |sand + silt + clay − 100| in percentage points (default 5).
    us_to_si : float
        US -> SI factor (``soil_retention.k_us_to_si``, 0.1317).
    zhang_intercept, zhang_slope : float
        Coefficients of the correction (``soil_retention.k_zhang_intercept|slope``).

    Returns
    -------
    numpy.ndarray, shape (h, w), float32
        K in t·ha·h/(ha·MJ·mm). NaN where any input is NaN. Arithmetic in float64.

    Raises
    ------
    ValueError
        If an input is not real or the inputs do not broadcast to a 2-D raster; if a (converted)
        fraction is outside 0-100 % (the message names the argument and its unit); if sand + silt +
        clay differs from 100 % by more than ``sum_tolerance_pct``; if organic carbon is outside
        0-100 %; or if a unit or ``china_correction`` is unknown.

    References
    ----------
    Williams, J.R. (1995). The EPIC model. In Singh, V.P. (ed.), Computer Models of Watershed
    Hydrology, pp. 909-1000 (eq. 25.123, p. 934, as cited in implementations).
    Sharpley, A.N. & Williams, J.R. (eds.) (1990). EPIC - Erosion/Productivity Impact Calculator:
    1. Model documentation. USDA Tech. Bull. 1768.
    张科利, 彭文英, 杨红丽 (2007). 中国土壤可蚀性值及其估算. 土壤学报 44(1):7-13 (the correction).
    Foster et al. (1981), J. Soil Water Conserv. 36(6):355-359 (0.1317).
    """
    tex_scale = _unit(texture_unit, _TEXTURE_UNITS, "texture_unit")
    oc_scale = _unit(oc_unit, _OC_UNITS, "oc_unit")
    mode = _unit(china_correction, _CORRECTIONS, "china_correction")
    tol = _finite_float(sum_tolerance_pct, "sum_tolerance_pct", positive=True)
    us_to_si = _finite_float(us_to_si, "us_to_si", positive=True)
    ka = _finite_float(zhang_intercept, "zhang_intercept")
    kb = _finite_float(zhang_slope, "zhang_slope")
    sand, silt, clay, oc = _broadcast_2d({"sand_pct": sand_pct, "silt_pct": silt_pct,
                                          "clay_pct": clay_pct, "organic_carbon": organic_carbon})
    conv = {}
    for name, a, scale, unit in (("sand_pct", sand, tex_scale, texture_unit),
                                 ("silt_pct", silt, tex_scale, texture_unit),
                                 ("clay_pct", clay, tex_scale, texture_unit),
                                 ("organic_carbon", oc, oc_scale, oc_unit)):
        v = a.astype(np.float64) * scale
        if np.any(np.isinf(v)):
            raise ValueError(f"{name} has infinite values")
        fin = v[np.isfinite(v)]
        if fin.size and (fin.min() < 0.0 or fin.max() > 100.0):
            raise ValueError(f"{name} must be within 0-100 % after the unit conversion ({unit!r}), got "
                             f"min {fin.min():g} %, max {fin.max():g} %; check the unit (SoilGrids texture is "
                             "g/kg, SoilGrids soc is dg/kg)")
        conv[name] = v
    tot = conv["sand_pct"] + conv["silt_pct"] + conv["clay_pct"]
    dev = np.abs(tot[np.isfinite(tot)] - 100.0)
    if dev.size and dev.max() > tol:
        raise ValueError(f"sand_pct + silt_pct + clay_pct must be 100 % within {tol:g} points, got sums "
                         f"from {np.nanmin(tot):g} to {np.nanmax(tot):g} %")
    return _k_epic_nb(sand, silt, clay, oc, tex_scale, oc_scale, us_to_si, mode, ka, kb)


def fractional_vegetation_cover(ndvi, ndvi_soil, ndvi_veg) -> np.ndarray:
    """Fractional vegetation cover by the dimidiate pixel model.

    ::

        FVC = (NDVI − NDVI_soil) / (NDVI_veg − NDVI_soil),   clipped to 0..1

    NDVI_soil and NDVI_veg are the NDVI of bare soil and of full cover; in Chinese practice often the
    5 % and 95 % (or the minimum and maximum) NDVI of the study area, computed by the caller.

    Parameters
    ----------
    ndvi : array_like, shape (h, w), float32
        NDVI (dimensionless, −1..1).
    ndvi_soil, ndvi_veg : float or array_like broadcastable to (h, w)
        NDVI of bare soil and of full vegetation cover.

    Returns
    -------
    numpy.ndarray, shape (h, w), float32
        FVC as a fraction 0..1. NaN where any input is NaN.

    Raises
    ------
    ValueError
        If the inputs are not real, do not broadcast to a 2-D raster, or ``ndvi_veg <= ndvi_soil``
        in a cell where both are finite.

    References
    ----------
    Gutman, G. & Ignatov, A. (1998). The derivation of the green vegetation fraction from NOAA/AVHRR
    data for use in numerical weather prediction models. Int. J. Remote Sens. 19(8):1533-1543.
    李苗苗, 吴炳方, 颜长珍, 周为峰 (2004). 密云水库上游植被覆盖度的遥感估算. 资源科学 26(4):153-159.
    """
    x, s, v = _broadcast_2d({"ndvi": ndvi, "ndvi_soil": ndvi_soil, "ndvi_veg": ndvi_veg})
    both = np.isfinite(s) & np.isfinite(v)
    if np.any(v[both] <= s[both]):
        raise ValueError(f"ndvi_veg must be greater than ndvi_soil, got ndvi_soil max {np.max(s[both]):g} and "
                         f"ndvi_veg min {np.min(v[both]):g} where ndvi_veg <= ndvi_soil")
    return _fvc_nb(x, s, v)


def c_factor_cai2000(fvc, *, a: float = C_CAI_A, b: float = C_CAI_B,
                     fvc_max: float = C_CAI_FVC_MAX) -> np.ndarray:
    """Cover-management factor C from fractional vegetation cover (Cai Chongfa et al. 2000).

    With c = 100 · FVC the cover in percent::

        C = 1                          c = 0
        C = 0.6508 − 0.3436 · lg c     0 < c ≤ 78.3 %
        C = 0                          c > 78.3 %

    The formula exceeds 1 for 0 < c < 0.0963 % and is clipped to 1 there (so C is continuous at 0).
    At 78.3 % it gives 0.6508 − 0.3436 · lg 78.3 = 1.03e-4, so C is continuous at the upper break to
    within 1.1e-4. The break is compared in float32 (``float32(0.783)`` counts as 78.3 %).

    Parameters
    ----------
    fvc : array_like, shape (h, w), float32
        Fractional vegetation cover as a **fraction 0..1** (not percent), e.g. from
        :func:`fractional_vegetation_cover`.
    a, b : float
        Coefficients (``soil_retention.c_cai_a|b``).
    fvc_max : float
        Upper break as a fraction (``soil_retention.c_cai_fvc_max``, 0.783), in (0, 1].

    Returns
    -------
    numpy.ndarray, shape (h, w), float32
        C (dimensionless, 0..1). NaN where FVC is NaN.

    Raises
    ------
    ValueError
        If the input is not a real 2-D array, a value is outside 0..1 (percent given by mistake), or a
        coefficient is invalid.

    References
    ----------
    蔡崇法, 丁树文, 史志华, 黄丽, 张光远 (2000). 应用USLE模型与地理信息系统IDRISI预测小流域土壤侵蚀量的
    研究. 水土保持学报 14(2):19-24. Formula and break as quoted by 乌宁巴特 et al. (叶尔羌河流域土地生态
    脆弱性差异评价) and 陈召亚 et al. (2016), 中国生态农业学报 24(2), eq. (10).
    """
    arr = _real_array(fvc, "fvc")
    if arr.ndim != 2:
        raise ValueError(f"fvc must be a 2-D (rows, cols) array, got shape {arr.shape}")
    a = _finite_float(a, "a")
    b = _finite_float(b, "b")
    fmax = _finite_float(fvc_max, "fvc_max", positive=True)
    if fmax > 1.0:
        raise ValueError(f"fvc_max must be a fraction in (0, 1], got {fvc_max!r} (percent given?)")
    f = np.ascontiguousarray(arr, dtype=np.float32)
    fin = f[np.isfinite(f)]
    if np.any(np.isinf(f)) or (fin.size and (fin.min() < 0.0 or fin.max() > 1.0)):
        raise ValueError(f"fvc must be a fraction 0..1, got min {np.nanmin(f):g}, max {np.nanmax(f):g}"
                         " (pass percent / 100)")
    return _c_cai_nb(f, a, b, np.float32(fmax))
