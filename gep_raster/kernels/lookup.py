"""Class-parameter look-up: land-cover code -> parameter value."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _lut(lc, lut, out):
    n = lut.shape[0]
    h, w = lc.shape
    for i in range(h):
        for j in range(w):
            c = lc[i, j]
            if c < 0 or c >= n:
                out[i, j] = np.nan
            else:
                out[i, j] = lut[c]
    return out


def apply_lut(lc: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Map class codes to a parameter.

    Parameters
    ----------
    lc : int32 array (h, w)
        Land-cover class codes, -1 = nodata.
    lut : float32 array (n,)
        ``lut[code]`` = parameter value, NaN for codes without a legend row
        (see :meth:`gep_raster.tables.Legend.lut`).

    Returns
    -------
    float32 array (h, w)
        Parameter per pixel; NaN where the code is nodata, out of range or not in the legend.

    Raises
    ------
    ValueError
        ``lc`` is not 2-D integer or ``lut`` not 1-D.
    """
    if lc.ndim != 2 or lc.dtype.kind not in "iu":
        raise ValueError(f"land cover must be a 2-D integer array, got {lc.ndim}-D {lc.dtype}")
    if lut.ndim != 1:
        raise ValueError("lut must be 1-D")
    return _lut(lc.astype(np.int32, copy=False), lut.astype(np.float32, copy=False),
                np.empty(lc.shape, np.float32))
