"""Bilinear sampling of a source window at given fractional pixel positions (chunk-independent warping)."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _bilinear(src, valid, fr, fc, out):
    h, w = fr.shape
    sh, sw = src.shape
    for i in range(h):
        for j in range(w):
            y = fr[i, j]
            x = fc[i, j]
            if np.isnan(y) or np.isnan(x):
                out[i, j] = np.nan
                continue
            r0 = int(np.floor(y))
            c0 = int(np.floor(x))
            dy = y - r0
            dx = x - c0
            acc = 0.0
            wsum = 0.0
            for a in range(2):
                rr = r0 + a
                wy = dy if a == 1 else 1.0 - dy
                if rr < 0 or rr >= sh or wy == 0.0:
                    continue
                for b in range(2):
                    cc = c0 + b
                    wx = dx if b == 1 else 1.0 - dx
                    if cc < 0 or cc >= sw or wx == 0.0:
                        continue
                    if valid[rr, cc]:
                        acc += wy * wx * src[rr, cc]
                        wsum += wy * wx
            out[i, j] = acc / wsum if wsum > 0.0 else np.nan
    return out


def bilinear_sample(src: np.ndarray, valid: np.ndarray, frac_rows: np.ndarray, frac_cols: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of ``src`` at fractional pixel-centre positions.

    Parameters
    ----------
    src : float (sh, sw)
        Source values.
    valid : bool (sh, sw)
        False where the source is nodata.
    frac_rows, frac_cols : float64 (h, w)
        Positions in source pixel-centre coordinates (0.0 = centre of the first row/column);
        NaN = outside.

    Returns
    -------
    float32 (h, w)
        Interpolated values; the weights of nodata neighbours are dropped and the others
        renormalised (GDAL's bilinear behaviour at data edges); NaN where no neighbour is valid.

    Raises
    ------
    ValueError
        Shapes differ.
    """
    if src.shape != valid.shape or frac_rows.shape != frac_cols.shape:
        raise ValueError("bilinear_sample: src/valid and frac_rows/frac_cols must have equal shapes")
    return _bilinear(src.astype(np.float64, copy=False), valid.astype(np.bool_, copy=False),
                     frac_rows.astype(np.float64, copy=False), frac_cols.astype(np.float64, copy=False),
                     np.empty(frac_rows.shape, np.float32))
