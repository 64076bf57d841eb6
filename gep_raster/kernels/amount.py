"""Per-hectare rates to per-pixel amounts (carbon, air purification, soil retention)."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _amount(rate, factor, row_area, mask, use_mask, clip, out, neg):
    h, w = rate.shape
    for i in range(h):
        ha = row_area[i] * 1e-4
        for j in range(w):
            r = rate[i, j]
            if np.isnan(r):
                out[i, j] = np.nan
                neg[i, j] = np.nan
                continue
            if use_mask and mask[i, j] == 0:
                out[i, j] = 0.0
                neg[i, j] = 0.0
                continue
            v = np.float64(r) * factor * ha
            if v < 0.0:
                neg[i, j] = -v
                out[i, j] = 0.0 if clip else v
            else:
                neg[i, j] = 0.0
                out[i, j] = v
    return out, neg


def rate_to_amount(rate, factor, row_area_m2, *, mask=None, clip=False):
    """Amount per pixel = rate × factor × pixel area (ha).

    Parameters
    ----------
    rate : float32 (h, w)
        A per-hectare rate (e.g. t C/ha/a, kg SO2/ha/a, t soil/ha/a). NaN = nodata.
    factor : float
        Unit conversion applied to the rate (e.g. 44/12 for t C -> t CO2, 1e-3 for kg -> t).
    row_area_m2 : float64 (h,)
        Pixel area per row, m2 (1 ha = 10⁴ m2).
    mask : uint8 (h, w), optional
        0 where the service is not computed (e.g. water and built-up for soil retention):
        the amount is 0 there.
    clip : bool
        Negative amounts set to 0 (True) or kept (False); their magnitude is returned in ``neg``.

    Returns
    -------
    amount : float32 (h, w)
        Amount per pixel in the rate's unit × factor, per year (e.g. t CO2/a).
    neg : float32 (h, w)
        Magnitude of negative amounts (0 where none), same unit.

    Raises
    ------
    ValueError
        Shapes differ or arrays are not 2-D.
    """
    if rate.ndim != 2 or row_area_m2.shape != (rate.shape[0],):
        raise ValueError("rate_to_amount: rate must be 2-D with one area per row")
    use_mask = mask is not None
    if mask is None:
        mask = np.zeros((1, 1), np.uint8)
    elif mask.shape != rate.shape:
        raise ValueError("rate_to_amount: mask shape differs from rate shape")
    f = np.float32
    return _amount(rate.astype(f, copy=False), float(factor), row_area_m2.astype(np.float64, copy=False),
                   mask.astype(np.uint8, copy=False), use_mask, bool(clip),
                   np.empty(rate.shape, f), np.empty(rate.shape, f))
