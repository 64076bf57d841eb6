"""Storage layout of a coverage index (numba): runs and partial cells sorted and row-indexed.

See *Storage layout* in :mod:`gep_raster.accounts.zonal`.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _row_buckets(row, H):
    """Stable counting sort by row: (order int64 (n,), ptr int64 (H+1,))."""
    n = row.size
    ptr = np.zeros(H + 1, np.int64)
    for i in range(n):
        ptr[row[i] + 1] += 1
    for r in range(H):
        ptr[r + 1] += ptr[r]
    pos = ptr[:-1].copy()
    order = np.empty(n, np.int64)
    for i in range(n):
        r = row[i]
        order[pos[r]] = i
        pos[r] += 1
    return order, ptr


@njit(cache=True)
def _finalize_runs(runs, H, npoly):
    """Sort runs by (row, c0, polygon), join touching runs of one polygon, compute reach.

    Returns run_ptr int64 (H+1,), c0, c1, poly, reach int32 (n,).
    """
    n = runs.shape[0]
    order, ptr = _row_buckets(runs[:, 1], H)
    c0 = np.empty(n, np.int32)
    c1 = np.empty(n, np.int32)
    poly = np.empty(n, np.int32)
    reach = np.empty(n, np.int32)
    out_ptr = np.zeros(H + 1, np.int64)
    last_row = np.full(npoly, -1, np.int64)
    last_idx = np.zeros(npoly, np.int64)
    m = 0
    for r in range(H):
        s = ptr[r]
        e = ptr[r + 1]
        if e > s:
            key = np.empty(e - s, np.int64)
            for k in range(s, e):
                i = order[k]
                key[k - s] = runs[i, 2] * npoly + runs[i, 0]
            sub = np.argsort(key)
            mr = m
            for k in range(e - s):
                i = order[s + sub[k]]
                p = runs[i, 0]
                a = runs[i, 2]
                b = runs[i, 3]
                if last_row[p] == r and c1[last_idx[p]] == a:
                    c1[last_idx[p]] = b
                    continue
                c0[m] = a
                c1[m] = b
                poly[m] = p
                last_row[p] = r
                last_idx[p] = m
                m += 1
            mx = -1
            for k in range(mr, m):
                mx = max(mx, np.int64(c1[k]))
                reach[k] = mx
        out_ptr[r + 1] = m
    return out_ptr, c0[:m].copy(), c1[:m].copy(), poly[:m].copy(), reach[:m].copy()


@njit(cache=True)
def _finalize_parts(parts, fracs, H, npoly):
    """Sort partial cells by (row, col, polygon). Returns ptr (H+1,), col, poly, frac."""
    n = parts.shape[0]
    order, ptr = _row_buckets(parts[:, 1], H)
    col = np.empty(n, np.int32)
    poly = np.empty(n, np.int32)
    frac = np.empty(n, fracs.dtype)
    for r in range(H):
        s = ptr[r]
        e = ptr[r + 1]
        if e > s:
            key = np.empty(e - s, np.int64)
            for k in range(s, e):
                i = order[k]
                key[k - s] = parts[i, 2] * npoly + parts[i, 0]
            sub = np.argsort(key)
            for k in range(e - s):
                i = order[s + sub[k]]
                col[s + k] = parts[i, 2]
                poly[s + k] = parts[i, 0]
                frac[s + k] = fracs[i]
    return ptr, col, poly, frac
