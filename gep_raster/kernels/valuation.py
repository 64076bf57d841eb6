"""Valuation kernels: physical quantity × unit value -> yuan."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _linear(q, unit_values, out):
    # row by row, term by term: the inner loop runs along a row of one term, so it vectorises; each
    # pixel still adds its terms in order 0..k-1 (bit-identical to a per-pixel loop over the terms).
    # 1024² float32 block, k = 1: 0.30 ms against 3.7 ms for the per-pixel loop; k = 7: 2.9 ms against 6.9 ms
    k, h, w = q.shape
    s = np.empty(w, np.float64)
    seen = np.empty(w, np.bool_)
    for i in range(h):
        for j in range(w):
            s[j] = 0.0
            seen[j] = False
        for m in range(k):
            uv = unit_values[m]
            for j in range(w):
                v = q[m, i, j]
                if not np.isnan(v):
                    s[j] += np.float64(v) * uv
                    seen[j] = True
        for j in range(w):
            out[i, j] = s[j] if seen[j] else np.nan
    return out


def linear_value(quantities: np.ndarray, unit_values) -> np.ndarray:
    """Value = Σ_k quantity_k × unit value_k, per pixel.

    Parameters
    ----------
    quantities : float32 (k, h, w)
        Physical quantities per pixel (e.g. m3/a, t/a), NaN = nodata.
    unit_values : sequence of k floats
        Yuan per unit of each quantity (e.g. 7.06 yuan/m3).

    Returns
    -------
    float32 (h, w)
        Value, yuan/a per pixel. NaN terms are skipped; NaN only where all k terms are NaN.
        With k value rasters and unit values of 1 this is GEP-R = Σ service values.

    Raises
    ------
    ValueError
        ``quantities`` is not 3-D or the number of unit values differs from k.

    Notes
    -----
    Market-value / replacement-cost valuation V = Q × P (Garzê GEP, Baima Zhuoga et al. 2017;
    MEE 2020 GEP guideline family).
    """
    q = np.asarray(quantities)
    if q.ndim == 2:
        q = q[None]
    uv = np.asarray(unit_values, dtype=np.float64).ravel()
    if q.ndim != 3 or uv.shape[0] != q.shape[0]:
        raise ValueError(f"linear_value: need (k,h,w) quantities and k unit values, got {q.shape} and {uv.shape}")
    return _linear(q.astype(np.float32, copy=False), uv, np.empty(q.shape[1:], np.float32))
