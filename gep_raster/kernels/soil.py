"""Soil-retention kernels: RUSLE LS factor, soil loss, and the R factor from annual rainfall.

GEP soil retention (the soil conservation service) per pixel is
``Q = A_p − A_a = R·K·LS·(1 − C·P)`` (t/ha/a). :func:`rusle_kernel` returns both terms.

Public functions are Python wrappers. They validate the inputs (raising :class:`ValueError`)
and then call ``@numba.njit(nogil=True, cache=True)`` kernels. Float rasters are float32 with
NaN nodata. The arithmetic is done in float64, then rounded to float32.
"""
from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["ls_factor_kernel", "ls_factor_invest_3_20_kernel", "ls_factor_slope_length_kernel", "rusle_kernel",
           "r_factor_from_annual_precip_kernel"]


# --------------------------------------------------------------------------------------
# numba kernels
# --------------------------------------------------------------------------------------
@numba.njit(nogil=True, cache=True)
def _s_and_m(s32):
    """McCool S factor and the slope-length exponent m for a float32 slope gradient tan θ (≥ 0).

    The slope classes are compared in float32 so that a percent value given as float32(tan θ) falls in the
    same class as the exact percent (e.g. float32(0.09) counts as 9 %). Returns (S, m) as float64."""
    s64 = np.float64(s32)
    sin_t = s64 / math.sqrt(1.0 + s64 * s64)  # sin(arctan s), without the trig calls
    # McCool et al. (1987) slope steepness factor
    if s32 < np.float32(0.09):
        s_fac = 10.8 * sin_t + 0.03
    else:
        s_fac = 16.8 * sin_t - 0.5
    # slope-length exponent m (InVEST table; McCool et al. 1989 beta for > 9 %)
    if s32 <= np.float32(0.01):
        m = 0.2
    elif s32 <= np.float32(0.035):
        m = 0.3
    elif s32 <= np.float32(0.05):
        m = 0.4
    elif s32 <= np.float32(0.09):
        m = 0.5
    else:
        beta = (sin_t / 0.0896) / (3.0 * sin_t ** 0.8 + 0.56)
        m = beta / (1.0 + beta)
    return s_fac, m


#: Upslope counts n = k + 1 with k < _LOG_TABLE_SIZE (integers, as D8 gives) take log(k) and log1p(1/k) from
#: a table instead of two libm calls (most cells of a grid drain few cells). Entry 0 (a ridge cell, k = 0) holds
#: 0 and 0: L is then (D/(22.13·x))^m alone.
_LOG_TABLE_SIZE = 4096
_K = np.arange(_LOG_TABLE_SIZE, dtype=np.float64)
with np.errstate(divide="ignore"):
    _LOG_K = np.log(_K)
    _LOG1P_INV_K = np.log1p(1.0 / _K)
_LOG_K[0] = 0.0
_LOG1P_INV_K[0] = 0.0
del _K
#: m per slope class (≤ 1, ≤ 3.5, ≤ 5, ≤ 9 %, steeper); -1 = McCool's β (computed per pixel).
_M_CLASS = np.array([0.2, 0.3, 0.4, 0.5, -1.0])
#: Pixels per strip of :func:`ls_factor_kernel` (its float64 work arrays, ~0.7 MB, stay in the CPU cache).
_LS_STRIP_PX = 8192

# The LS factor is computed strip by strip in three numba passes without branches that depend on the slope
# class, and numpy's vectorised (SIMD) exp, log and expm1 in between: 2.1x faster than one scalar numba loop
# calling libm (a 2048² block of the 8192² bench set: 188 -> 85 ms; float32 results identical there and on
# 1 Mpx of random inputs). numpy's loops give the same value for an element whatever its position in the array,
# so the result does not depend on the block or strip size.


@numba.njit(nogil=True, cache=True)
def _ls_prepare(slope, cells, aspect_x, log_k_tab, log1p_inv_tab, m_class, r0, r1, sin_x, log_k, log1p_inv, s_fac,
                m, state):
    # per pixel i of rows r0:r1: S; m (or -1 where McCool's β is needed); sin θ and x (their logs come next);
    # log(n-1), log1p(1/(n-1)); state 0 = NaN result, 1 = valid, 2 = valid ridge cell (n = 1)
    w = slope.shape[1]
    n_tab = log_k_tab.shape[0]
    i = 0
    for r in range(r0, r1):
        for c in range(w):
            s32 = slope[r, c]
            n = np.float64(cells[r, c])
            x = np.float64(aspect_x[r, c])
            if np.isnan(s32) | np.isnan(n) | np.isnan(x) | (s32 < 0) | (n < 1.0) | (x <= 0.0):
                state[i] = 0
                sin_x[0, i] = 1.0
                sin_x[1, i] = 1.0
                log_k[i] = 0.0
                log1p_inv[i] = 0.0
                s_fac[i] = 0.0
                m[i] = 0.5
                i += 1
                continue
            s64 = np.float64(s32)
            sin_t = s64 / math.sqrt(1.0 + s64 * s64)  # sin(arctan s), without the trig calls
            # McCool et al. (1987) S; the classes compared in float32 (float32(0.09) is 9 %)
            s_fac[i] = (16.8 * sin_t - 0.5) if s32 >= np.float32(0.09) else (10.8 * sin_t + 0.03)
            cls = (np.int64(s32 > np.float32(0.01)) + np.int64(s32 > np.float32(0.035))
                   + np.int64(s32 > np.float32(0.05)) + np.int64(s32 > np.float32(0.09)))
            m[i] = m_class[cls]
            sin_x[0, i] = sin_t
            sin_x[1, i] = x
            k = n - 1.0
            ki = np.int64(k)
            if (ki < n_tab) & (np.float64(ki) == k):
                log_k[i] = log_k_tab[ki]
                log1p_inv[i] = log1p_inv_tab[ki]
            else:
                log_k[i] = math.log(k)
                log1p_inv[i] = math.log1p(1.0 / k)
            state[i] = np.uint8(1) + np.uint8(k == 0.0)
            i += 1


@numba.njit(nogil=True, cache=True)
def _ls_exponents(sin_x, logs, sin_08, m, log_k, log1p_inv, log_d, arg):
    # m (McCool et al. 1989 β where deferred); arg[0] = m·(log(D/22.13) − log x) + (m+1)·log k and
    # arg[1] = (m+1)·log1p(1/k), so that L = exp(arg[0])·expm1(arg[1])
    for i in range(m.shape[0]):
        sin_t = sin_x[0, i]
        beta = (sin_t / 0.0896) / (3.0 * sin_08[i] + 0.56)
        mb = beta / (1.0 + beta)
        mt = m[i]
        mi = mb if mt < 0.0 else mt
        a = mi + 1.0
        arg[0, i] = mi * (log_d - logs[1, i]) + a * log_k[i]
        arg[1, i] = a * log1p_inv[i]


@numba.njit(nogil=True, cache=True)
def _ls_finish(e, state, s_fac, l_max, out, r0, r1):
    w = out.shape[1]
    i = 0
    for r in range(r0, r1):
        for c in range(w):
            st = state[i]
            l_fac = e[0, i] * (1.0 if st == 2 else e[1, i])
            l_fac = l_max if l_fac > l_max else l_fac
            v = np.float32(l_fac * s_fac[i])
            out[r, c] = np.float32(np.nan) if st == 0 else v
            i += 1


def _ls_factor_strips(slope, cells, aspect_x, cell_size, l_max):
    h, w = slope.shape
    out = np.empty((h, w), np.float32)
    rows = max(1, _LS_STRIP_PX // max(w, 1))
    n = rows * w
    sin_x, logs, arg = np.empty((2, n)), np.empty((2, n)), np.empty((2, n))
    log_k, log1p_inv, s_fac, m, sin_08 = (np.empty(n) for _ in range(5))
    state = np.empty(n, np.uint8)
    log_d = math.log(cell_size / 22.13)  # 22.13 m: the RUSLE unit plot length
    with np.errstate(divide="ignore"):  # log(sin θ) of flat cells is -inf; their m comes from the class table
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            k = (r1 - r0) * w
            _ls_prepare(slope, cells, aspect_x, _LOG_K, _LOG1P_INV_K, _M_CLASS, r0, r1, sin_x, log_k, log1p_inv,
                        s_fac, m, state)
            np.log(sin_x[:, :k], out=logs[:, :k])
            np.multiply(logs[0, :k], 0.8, out=sin_08[:k])
            np.exp(sin_08[:k], out=sin_08[:k])  # sin θ^0.8
            _ls_exponents(sin_x[:, :k], logs[:, :k], sin_08[:k], m[:k], log_k[:k], log1p_inv[:k], log_d, arg[:, :k])
            np.exp(arg[0, :k], out=arg[0, :k])
            np.expm1(arg[1, :k], out=arg[1, :k])
            _ls_finish(arg[:, :k], state[:k], s_fac[:k], l_max, out, r0, r1)
    return out


@numba.njit(nogil=True, cache=True)
def _ls_slope_length_nb(slope, slope_length, l_max):
    h, w = slope.shape
    out = np.empty((h, w), dtype=np.float32)
    ref = 22.13  # RUSLE unit plot length (m)
    for r in range(h):
        for c in range(w):
            s32 = slope[r, c]
            if np.isnan(s32) or s32 < 0:
                out[r, c] = np.float32(np.nan)
                continue
            s_fac, m = _s_and_m(s32)
            l_fac = (slope_length / ref) ** m  # Wischmeier & Smith (1978): L = (lambda / 22.13)^m
            if l_fac > l_max:
                l_fac = l_max
            out[r, c] = np.float32(l_fac * s_fac)
    return out


@numba.njit(nogil=True, cache=True)
def _ls_invest_3_20_nb(pct, fa, cell_size, l_max):
    h, w = pct.shape
    out = np.empty((h, w), dtype=np.float32)
    cell_area = cell_size * cell_size
    for r in range(h):
        for c in range(w):
            p32 = pct[r, c]
            n = np.float64(fa[r, c])
            if np.isnan(p32) or np.isnan(n) or p32 < 0 or n < 1.0:
                out[r, c] = np.float32(np.nan)
                continue
            p = np.float64(p32)
            theta = math.atan(p / 100.0)
            sin_t = math.sin(theta)
            x = abs(sin_t) + abs(math.cos(theta))  # InVEST >= 3.14: |sin θ| + |cos θ| of the slope angle
            s_fac = 10.8 * sin_t + 0.03 if p32 < 9.0 else 16.8 * sin_t - 0.5
            if p32 > 9.0:
                beta = (sin_t / 0.0896) / (3.0 * sin_t ** 0.8 + 0.56)
                m = beta / (1.0 + beta)
            elif p32 > 5.0:
                m = 0.5
            elif p32 > 3.5:
                m = 0.4
            elif p32 > 1.0:
                m = 0.3
            else:
                m = 0.2
            a_in = math.sqrt((n - 1.0) * cell_area)  # InVEST >= 3.14 (ADR-0001): square root of the area
            l_fac = (((a_in + cell_area) ** (m + 1.0) - a_in ** (m + 1.0))
                     / (cell_size ** (m + 2.0) * x ** m * 22.13 ** m))
            if l_fac > l_max:
                l_fac = l_max
            out[r, c] = np.float32(l_fac * s_fac)
    return out


@numba.njit(nogil=True, cache=True)
def _rusle_nb(r_fac, k_fac, ls, c_fac, p_fac):
    h, w = ls.shape
    pot = np.empty((h, w), dtype=np.float32)
    act = np.empty((h, w), dtype=np.float32)
    for i in range(h):
        for j in range(w):
            rkls = np.float64(r_fac[i, j]) * np.float64(k_fac[i, j]) * np.float64(ls[i, j])
            cp = np.float64(c_fac[i, j]) * np.float64(p_fac[i, j])
            # NaN in any input propagates through the products
            if np.isnan(rkls) or np.isnan(cp):
                pot[i, j] = np.float32(np.nan)
                act[i, j] = np.float32(np.nan)
            else:
                pot[i, j] = np.float32(rkls)
                act[i, j] = np.float32(rkls * cp)
    return pot, act


@numba.njit(nogil=True, cache=True)
def _r_factor_nb(p_annual):
    h, w = p_annual.shape
    out = np.empty((h, w), dtype=np.float32)
    for i in range(h):
        for j in range(w):
            p = np.float64(p_annual[i, j])
            if np.isnan(p) or p < 0.0:
                out[i, j] = np.float32(np.nan)
            elif p <= 850.0:
                out[i, j] = np.float32(0.0483 * p ** 1.61)
            else:
                out[i, j] = np.float32(587.8 - 1.219 * p + 0.004105 * p * p)
    return out


# --------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------
def _as_float32_2d(a, name) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (rows, cols) array, got ndim={arr.ndim} with shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def _check_same_shape(arrays: dict) -> None:
    shapes = {k: v.shape for k, v in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"input rasters must have the same shape, got {shapes}")


def _positive_float(value, name, allow_inf=False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if np.isnan(v) or v <= 0.0 or (np.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must be a {'positive' if allow_inf else 'finite positive'} "
                         f"number, got {value!r}")
    return v


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------
def ls_factor_kernel(slope, upslope_cells, aspect_x, cell_size, l_max: float | None = 122.0
                     ) -> np.ndarray:
    """RUSLE LS factor: the 2-D slope length L of Desmet & Govers (1996) times McCool's S.

    Per pixel, with ``θ = arctan(slope)``, slope in percent ``s = 100·slope``, D the cell size
    and ``A_in = (upslope_cells − 1)·D²`` the contributing area at the cell inlet (m²)::

        S = 10.8·sin θ + 0.03            if s < 9 %
        S = 16.8·sin θ − 0.50            if s ≥ 9 %
        m = 0.2 (s ≤ 1 %), 0.3 (1 < s ≤ 3.5 %), 0.4 (3.5 < s ≤ 5 %), 0.5 (5 < s ≤ 9 %),
            β/(1+β) with β = (sin θ/0.0896)/(3·sin θ^0.8 + 0.56)   (s > 9 %)
        L = ((A_in + D²)^(m+1) − A_in^(m+1)) / (D^(m+2) · x^m · 22.13^m)
        L = min(L, l_max)
        LS = L · S

    L is computed in the algebraically identical form
    ``(D/(22.13·x))^m · (n^(m+1) − (n−1)^(m+1))``, with ``n = upslope_cells``. The difference
    is evaluated as ``(n−1)^(m+1)·expm1((m+1)·log1p(1/(n−1)))``, which avoids catastrophic
    cancellation at large ``n``; the powers are one ``exp`` of the summed logarithms, and for integer
    counts below 4096 ``log(n−1)`` and ``log1p(1/(n−1))`` come from a table (float64 throughout). The
    exponentials and logarithms are numpy's vectorised ones, applied strip by strip.

    Parameters
    ----------
    slope : numpy.ndarray, shape (h, w), float32
        Slope gradient tan θ (dimensionless), e.g. from :func:`gep_raster.kernels.terrain.slope_kernel`.
        The slope classes are tested in float32 against ``np.float32(0.01|0.035|0.05|0.09)``.
        So ``np.float32(0.09)`` counts as exactly 9 %, as the percent raster does in InVEST.
    upslope_cells : numpy.ndarray, shape (h, w), float32
        Upslope contributing area in cells, including the cell itself (≥ 1). See
        :func:`gep_raster.terrain.routing.upslope_area`.
    aspect_x : numpy.ndarray, shape (h, w), float32
        Aspect factor ``x = |sin α| + |cos α|`` (1 … √2). See
        :func:`gep_raster.kernels.terrain.aspect_factor_kernel`. Pass ones for ``x = 1``.
    cell_size : float
        Cell size D in metres (square cells assumed; > 0).
    l_max : float or None, default 122.0
        Upper bound on the dimensionless L factor, with the InVEST semantics
        (``l_factor[l_factor > l_max] = l_max`` in ``sdr._calculate_ls_factor``, InVEST ≥ 3.9.1).
        It caps **L**, not the contributing area or a length in metres. ``None`` or ``np.inf``
        means no cap. 122 is the value used in InVEST SDR sample run arguments.

    Returns
    -------
    numpy.ndarray, shape (h, w), float32
        LS factor (dimensionless). NaN where any input is NaN, where ``slope < 0``, where
        ``upslope_cells < 1``, or where ``aspect_x ≤ 0``. The arithmetic is done in float64.

    Raises
    ------
    ValueError
        If an input is not 2-D or not real-valued, if the shapes differ, if ``cell_size`` is not
        finite and positive, or if ``l_max`` is not positive.

    Notes
    -----
    This is the Desmet & Govers form that InVEST SDR used from 3.9.1 to 3.13: contributing
    area ``(FA − 1)·D²``, 22.13 constant, ``l_max`` clamp. Here x is supplied by the caller;
    InVEST 3.8.1–3.13 used an MFD-weighted aspect. InVEST 3.14 (ADR-0001) changed two
    things, which are **not** reproduced here:

    - the contributing area became ``sqrt((FA − 1)·D²)``, which is dimensionally inconsistent
      with the ``+ D²`` term;
    - x became ``|sin θ| + |cos θ|`` of the *slope* angle.

    The S and m formulas and the l_max clamp are the same in all versions since 3.9.1.

    References
    ----------
    Desmet, P.J.J. & Govers, G. (1996). *J. Soil Water Conserv.* 51(5):427–433 (L from the inlet
    contributing area and the aspect factor x).
    McCool, D.K. et al. (1987). Revised slope steepness factor for the USLE. *Trans. ASAE*
    30(5):1387–1396 (S).
    McCool, D.K. et al. (1989). *Trans. ASAE* 32(5):1571–1576 (β for m).
    InVEST SDR user guide, LS factor equations. natcap/invest ``sdr.py::_calculate_ls_factor``
    (m table 0.2/0.3/0.4/0.5 for ≤1/3.5/5/9 %).
    """
    s = _as_float32_2d(slope, "slope")
    n = _as_float32_2d(upslope_cells, "upslope_cells")
    x = _as_float32_2d(aspect_x, "aspect_x")
    _check_same_shape({"slope": s, "upslope_cells": n, "aspect_x": x})
    d = _positive_float(cell_size, "cell_size")
    lm = np.inf if l_max is None else _positive_float(l_max, "l_max", allow_inf=True)
    return _ls_factor_strips(s, n, x, d, lm)


def ls_factor_invest_3_20_kernel(slope_pct, upslope_cells, cell_size, l_max: float | None = 122.0) -> np.ndarray:
    """RUSLE LS factor exactly as InVEST SDR 3.14-3.20 computes it (``sdr._calculate_ls_factor``).

    Per pixel, with the percent slope s, θ = arctan(s/100), the cell size D, the flow accumulation FA
    (cells, the cell itself included) and ``A = sqrt((FA − 1)·D²)``::

        S = 10.8·sin θ + 0.03 (s < 9 %),  16.8·sin θ − 0.50 (s ≥ 9 %)                 McCool et al. (1987)
        m = 0.2 (s ≤ 1), 0.3 (≤ 3.5), 0.4 (≤ 5), 0.5 (≤ 9 %), β/(1+β) above,
            β = (sin θ/0.0896)/(3·sin θ^0.8 + 0.56)                                  McCool et al. (1989)
        x = |sin θ| + |cos θ|
        L = ((A + D²)^(m+1) − A^(m+1)) / (D^(m+2) · x^m · 22.13^m),  L = min(L, l_max)
        LS = L · S

    InVEST's own comment: the square root of the contributing area follows SAGA-GIS's option "square root of
    catchment area" (InVEST ADR-0001). It mixes a length (A, m) with an area (D², m²) in one sum, so the
    result depends on the unit of length; it is reproduced here as InVEST has it, for comparability. The
    dimensionally consistent form of Desmet & Govers (1996) is :func:`ls_factor_kernel`.

    Parameters
    ----------
    slope_pct : numpy.ndarray, shape (h, w), float32
        Percent slope (InVEST ``slope.tif``; :func:`gep_raster.kernels.terrain.slope_percent_invest_kernel` on the
        pit-filled DEM). The classes are tested on the float32 value, as InVEST does.
    upslope_cells : numpy.ndarray, shape (h, w), float32 or float64
        Flow accumulation FA (≥ 1), e.g. ``gep_raster.terrain.routing.route(...)["upslope"]``.
    cell_size : float
        D in metres (> 0, square cells).
    l_max : float or None, default 122.0
        Cap on L (InVEST ``l_max``); None or inf: no cap.

    Returns
    -------
    numpy.ndarray, shape (h, w), float32
        LS (dimensionless); NaN where an input is NaN, the slope is negative or FA < 1. float64 arithmetic.

    Raises
    ------
    ValueError
        Inputs not 2-D or of different shapes, ``cell_size`` or ``l_max`` not positive.

    References
    ----------
    natcap/invest 3.20.2 ``src/natcap/invest/sdr/sdr.py::_calculate_ls_factor`` (read for this kernel);
    Desmet & Govers (1996) *J. Soil Water Conserv.* 51(5):427–433 eq. 3; McCool et al. (1987, 1989).
    """
    s = _as_float32_2d(slope_pct, "slope_pct")
    n = np.asarray(upslope_cells)
    if n.ndim != 2:
        raise ValueError(f"upslope_cells must be a 2-D (rows, cols) array, got shape {n.shape}")
    n = n.astype(np.float64, copy=False)
    _check_same_shape({"slope_pct": s, "upslope_cells": n})
    d = _positive_float(cell_size, "cell_size")
    lm = np.inf if l_max is None else _positive_float(l_max, "l_max", allow_inf=True)
    return _ls_invest_3_20_nb(s, n, d, lm)


def ls_factor_slope_length_kernel(slope, slope_length_m, l_max: float | None = 122.0) -> np.ndarray:
    """Grid-based USLE LS factor with one fixed slope length (no flow routing).

    Per pixel, with ``θ = arctan(slope)`` and the fixed slope length λ (m)::

        L  = (λ / 22.13)^m            (Wischmeier & Smith 1978; 22.13 m = the unit-plot length)
        L  = min(L, l_max)
        LS = L · S

    with the same S (McCool et al. 1987) and the same slope classes for m (0.2/0.3/0.4/0.5 for
    ≤ 1/3.5/5/9 %, β/(1+β) above, McCool et al. 1989) as :func:`ls_factor_kernel`. This is the classic
    "each cell is a slope of length λ" LS of grid applications of the USLE (typically λ = the cell size),
    with no upslope contributing area, so it does not grow along flow paths.

    Parameters
    ----------
    slope : numpy.ndarray, shape (h, w), float32
        Slope gradient tan θ (dimensionless), e.g. from :func:`gep_raster.kernels.terrain.slope_kernel`.
    slope_length_m : float
        Slope length λ in metres (finite, > 0), the same for every cell.
    l_max : float or None, default 122.0
        Upper bound on L (as in :func:`ls_factor_kernel`); ``None`` or ``np.inf`` for no cap.

    Returns
    -------
    numpy.ndarray, shape (h, w), float32
        LS factor (dimensionless). NaN where ``slope`` is NaN or negative. Arithmetic in float64.

    Raises
    ------
    ValueError
        If ``slope`` is not 2-D or not real-valued, if ``slope_length_m`` is not finite and positive, or if
        ``l_max`` is not positive.

    References
    ----------
    Wischmeier, W.H. & Smith, D.D. (1978). *Predicting rainfall erosion losses*. USDA Agric. Handbook 537
    (L = (λ/72.6)^m in feet, i.e. (λ/22.13)^m in metres).
    McCool, D.K. et al. (1987) *Trans. ASAE* 30(5):1387–1396 (S); McCool et al. (1989) *Trans. ASAE*
    32(5):1571–1576 (β for m). The m table is the InVEST SDR one (user guide, SDR, "Annual Soil Loss").
    """
    s = _as_float32_2d(slope, "slope")
    lam = _positive_float(slope_length_m, "slope_length_m")
    lm = np.inf if l_max is None else _positive_float(l_max, "l_max", allow_inf=True)
    return _ls_slope_length_nb(s, lam, lm)


def rusle_kernel(r, k, ls, c, p) -> tuple[np.ndarray, np.ndarray]:
    """Potential and actual annual soil loss by the (R)USLE.

    ::

        A_p = R · K · LS              (bare soil, no cover or practice)
        A_a = R · K · LS · C · P      (actual)
        soil retention (GEP)  Q = A_p − A_a = R·K·LS·(1 − C·P)

    Parameters
    ----------
    r : array_like, broadcastable to (h, w), float32
        Rainfall erosivity R in MJ·mm/(ha·h·a).
    k : array_like, broadcastable to (h, w), float32
        Soil erodibility K in t·ha·h/(ha·MJ·mm).
    ls : array_like, broadcastable to (h, w), float32
        Slope length-steepness factor (dimensionless).
    c : array_like, broadcastable to (h, w), float32
        Cover-management factor C (dimensionless, 0–1).
    p : array_like, broadcastable to (h, w), float32
        Support-practice factor P (dimensionless, 0–1).

    The inputs are broadcast together with numpy rules (for example, scalar C or P). The
    broadcast shape must be 2-D.

    Returns
    -------
    potential, actual : numpy.ndarray, shape (h, w), float32
        ``A_p`` and ``A_a`` in t/(ha·a). NaN where any input is NaN (``actual`` is also NaN
        where only C or P is NaN, and so is ``potential``, so that both maps share one mask).
        The arithmetic is done in float64. Values are not range-checked.

    Raises
    ------
    ValueError
        If the inputs cannot be broadcast together, if the broadcast shape is not 2-D, or if an
        input is not real-valued.

    References
    ----------
    Wischmeier, W.H. & Smith, D.D. (1978). *Predicting rainfall erosion losses*. USDA Agric.
    Handbook 537 (A = R·K·L·S·C·P).
    Renard, K.G. et al. (1997). *Predicting soil erosion by water: RUSLE*. USDA Agric. Handbook
    703 (SI units above).
    白玛卓嘎 et al. (2017). 甘孜藏族自治州生态系统生产总值核算研究. 生态学报 37(19)
    (GEP soil retention ``Q = R·K·LS·(1 − C·P)``).
    """
    try:
        arrs = np.broadcast_arrays(*(np.asarray(a) for a in (r, k, ls, c, p)))
    except ValueError as exc:
        raise ValueError(f"R, K, LS, C, P cannot be broadcast together: {exc}") from None
    names = ("r", "k", "ls", "c", "p")
    conv = [_as_float32_2d(a, nm) for a, nm in zip(arrs, names)]
    return _rusle_nb(*conv)


def r_factor_from_annual_precip_kernel(p_annual_mm) -> np.ndarray:
    """Rainfall erosivity R from mean annual precipitation (Renard & Freimund 1994).

    ::

        R = 0.0483 · P^1.61                          P ≤ 850 mm
        R = 587.8 − 1.219·P + 0.004105·P²            P > 850 mm

    The two branches nearly meet at 850 mm (2516 vs 2518).

    Parameters
    ----------
    p_annual_mm : numpy.ndarray, shape (h, w), float32
        Mean annual precipitation P in mm/a.

    Returns
    -------
    numpy.ndarray, shape (h, w), float32
        R in MJ·mm/(ha·h·a). NaN where P is NaN or negative. The arithmetic is done in float64.

    Raises
    ------
    ValueError
        If the input is not 2-D or not real-valued.

    Notes
    -----
    The equations were fitted to US data and are a fallback when no regional R model exists.
    For China, a regional R model based on daily or monthly rainfall is usually preferred.

    Verification: the primary paper could not be read from here. The coefficients,
    the exponent and the 850 mm breakpoint were checked against an independent public
    implementation (an LPJ-family Fortran RUSLE module, ``newsoilmod`` ``rusle``, "eqn. 8"):
    ``R = 0.0483·Pann**1.610`` if ``Pann <= 850``, else ``587.8 − 1.219·Pann + 0.004105·Pann²``.
    They agree.

    References
    ----------
    Renard, K.G. & Freimund, J.R. (1994). Using monthly precipitation data to estimate the
    R-factor in the revised USLE. *J. Hydrology* 157:287–306 (annual-precipitation equations).
    """
    arr = _as_float32_2d(p_annual_mm, "p_annual_mm")
    return _r_factor_nb(arr)
