"""Reductions of output blocks: per-band totals and valid-pixel counts in one pass."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _nan_totals(block, totals, valid):
    k, h, w = block.shape
    for b in range(k):
        tot = 0.0
        cnt = 0
        for i in range(h):
            row = 0.0  # row partial sums keep the float64 rounding error of long blocks small
            for j in range(w):
                v = block[b, i, j]
                if not np.isnan(v):
                    row += np.float64(v)
                    cnt += 1
            tot += row
        totals[b] = tot
        valid[b] = cnt


def nan_totals(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of the non-NaN pixels of every band of a block, without a float64 copy.

    Parameters
    ----------
    block : numpy.ndarray, shape (k, h, w), float32 or float64
        Output block (NaN = nodata).

    Returns
    -------
    (numpy.ndarray float64 (k,), numpy.ndarray int64 (k,))
        Per band: sum of the valid values (accumulated in float64, row by row) and number of valid
        pixels. ±inf is summed (and propagates).

    Raises
    ------
    ValueError
        ``block`` is not 3-D.
    """
    b = np.asarray(block)
    if b.ndim != 3:
        raise ValueError(f"block must be 3-D (bands, rows, columns), got shape {b.shape}")
    if b.dtype not in (np.float32, np.float64):
        b = b.astype(np.float64)
    totals = np.zeros(b.shape[0], np.float64)
    valid = np.zeros(b.shape[0], np.int64)
    _nan_totals(np.ascontiguousarray(b), totals, valid)
    return totals, valid
