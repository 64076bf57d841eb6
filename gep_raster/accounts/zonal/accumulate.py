"""Queries of a coverage index (numba): block accumulation of zonal sums and window entries.

Both read the row-indexed runs and partial cells of :mod:`.layout`; the GIL is released.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .arrays import _first_run, _lower_bound


@njit(nogil=True, cache=True, fastmath={"reassoc", "nsz"})
def _accumulate(run_ptr, run_c0, run_c1, run_poly, run_reach, part_ptr, part_col, part_poly,
                part_frac, block, bands, r0, c0, out, row_area, valid_out, with_valid):
    """out[poly, i] += Σ frac * block[bands[i], row-r0, col-c0] over the cells of the block window.

    block: (k, h, w) float32/float64; bands: int64 (nb,) band indices; out: (n_polygons, nb) float64.
    NaN values are skipped per band. If with_valid, valid_out[poly] += Σ frac * row_area[row] where band
    bands[0] is not NaN. A run is summed first (float64, reassociated so that it vectorises; NaN and inf
    semantics kept) and added once to ``out``.
    """
    nb = bands.shape[0]
    h, w = block.shape[1:]
    c1 = c0 + w
    for rr in range(h):
        r = r0 + rr
        area = row_area[r]
        e = run_ptr[r + 1]
        k = _first_run(run_reach, run_ptr[r], e, c0)
        while k < e:
            a = np.int64(run_c0[k])
            if a >= c1:
                break
            b_ = np.int64(run_c1[k])
            k += 1
            if b_ <= c0:
                continue
            if a < c0:
                a = c0
            if b_ > c1:
                b_ = c1
            p = run_poly[k - 1]
            for b in range(nb):
                row = block[bands[b], rr]
                acc = 0.0
                for cc in range(a - c0, b_ - c0):
                    x = np.float64(row[cc])
                    acc += x if x == x else 0.0  # skip NaN (nodata)
                out[p, b] += acc
            if with_valid:
                row = block[bands[0], rr]
                nv = 0
                for cc in range(a - c0, b_ - c0):
                    x0 = row[cc]
                    nv += 1 if x0 == x0 else 0
                valid_out[p] += nv * area
        e = part_ptr[r + 1]
        k = _lower_bound(part_col, part_ptr[r], e, c0)
        while k < e:
            col = np.int64(part_col[k])
            if col >= c1:
                break
            p = part_poly[k]
            f = np.float64(part_frac[k])
            cc = col - c0
            for b in range(nb):
                x = np.float64(block[bands[b], rr, cc])
                if x == x:
                    out[p, b] += f * x
            if with_valid:
                x0 = block[bands[0], rr, cc]
                if x0 == x0:
                    valid_out[p] += f * area
            k += 1


@njit(nogil=True, cache=True)
def _window_entries(run_ptr, run_c0, run_c1, run_poly, run_reach, part_ptr, part_col,
                    part_poly, part_frac, r0, r1, c0, c1, npoly):
    """Explicit (poly, row, col, frac) entries of a window, sorted by (row, col, poly).

    Rows and columns are relative to the window.
    """
    nrow = r1 - r0
    cnt = _window_counts(run_ptr, run_c0, run_c1, run_reach, part_ptr, part_col, r0, r1, c0, c1)
    total = cnt[nrow]
    poly = np.empty(total, np.int32)
    row = np.empty(total, np.int32)
    col = np.empty(total, np.int32)
    frac = np.empty(total, np.float64)
    tmp_p = np.empty(0, np.int32)
    tmp_c = np.empty(0, np.int32)
    for r in range(r0, r1):
        s = cnt[r - r0]
        m_end = cnt[r - r0 + 1]
        if m_end == s:
            continue
        m_runs_end, overlap = _fill_row(run_ptr, run_c0, run_c1, run_poly, run_reach, part_ptr, part_col, part_poly,
                                        part_frac, r, c0, c1, s, poly, col, frac)
        for i in range(s, m_end):
            row[i] = r - r0
        if overlap:
            _sort_row_entries(poly, col, frac, s, m_end, npoly)
        elif m_runs_end > s and m_end > m_runs_end:
            tmp_p, tmp_c = _merge_row_streams(poly, col, frac, s, m_runs_end, m_end, tmp_p, tmp_c)
    return poly, row, col, frac


@njit(nogil=True, cache=True)
def _window_counts(run_ptr, run_c0, run_c1, run_reach, part_ptr, part_col, r0, r1, c0, c1):
    """Row offsets (int64 (r1 - r0 + 1,)) of the window's entries: run cells and partial cells per row."""
    nrow = r1 - r0
    cnt = np.zeros(nrow + 1, np.int64)
    for r in range(r0, r1):
        n = 0
        e = run_ptr[r + 1]
        k = _first_run(run_reach, run_ptr[r], e, c0)
        while k < e and run_c0[k] < c1:
            a = max(np.int64(run_c0[k]), c0)
            b = min(np.int64(run_c1[k]), c1)
            if b > a:
                n += b - a
            k += 1
        e = part_ptr[r + 1]
        k = _lower_bound(part_col, part_ptr[r], e, c0)
        while k < e and part_col[k] < c1:
            n += 1
            k += 1
        cnt[r - r0 + 1] = cnt[r - r0] + n
    return cnt


@njit(nogil=True, cache=True, inline="always")
def _fill_row(run_ptr, run_c0, run_c1, run_poly, run_reach, part_ptr, part_col, part_poly, part_frac, r, c0, c1, m,
              poly, col, frac):
    """Entries of row ``r`` from position ``m``: the run cells first (in run order), then the partial cells.
    Returns (end of the run cells, whether runs of the row overlap)."""
    overlap = False
    prev_end = -1
    e = run_ptr[r + 1]
    k = _first_run(run_reach, run_ptr[r], e, c0)
    while k < e and run_c0[k] < c1:
        a = max(np.int64(run_c0[k]), c0)
        b = min(np.int64(run_c1[k]), c1)
        if b > a:
            if a < prev_end:
                overlap = True
            prev_end = max(prev_end, b)
            for cc in range(a, b):
                poly[m] = run_poly[k]
                col[m] = cc - c0
                frac[m] = 1.0
                m += 1
        k += 1
    m_runs_end = m
    e = part_ptr[r + 1]
    k = _lower_bound(part_col, part_ptr[r], e, c0)
    while k < e and part_col[k] < c1:
        poly[m] = part_poly[k]
        col[m] = part_col[k] - c0
        frac[m] = part_frac[k]
        m += 1
        k += 1
    return m_runs_end, overlap


@njit(nogil=True, cache=True, inline="always")
def _sort_row_entries(poly, col, frac, s, m_end, npoly):
    """Sort the entries ``s:m_end`` of one row by (col, poly) (stable), when its runs overlap."""
    key = np.empty(m_end - s, np.int64)
    for i in range(s, m_end):
        key[i - s] = np.int64(col[i]) * npoly + poly[i]
    o = np.argsort(key, kind="mergesort")
    pp = poly[s:m_end].copy()
    cc_ = col[s:m_end].copy()
    ff = frac[s:m_end].copy()
    for i in range(m_end - s):
        poly[s + i] = pp[o[i]]
        col[s + i] = cc_[o[i]]
        frac[s + i] = ff[o[i]]


@njit(nogil=True, cache=True, inline="always")
def _merge_row_streams(poly, col, frac, s, m_runs_end, m_end, tmp_p, tmp_c):
    """Merge the two sorted streams of one row in place: run cells ``s:m_runs_end`` and partial cells
    ``m_runs_end:m_end`` (by col, poly). The scratch arrays are grown as needed and returned."""
    nrun = m_runs_end - s
    if tmp_p.size < nrun:
        tmp_p = np.empty(nrun, np.int32)
        tmp_c = np.empty(nrun, np.int32)
    for i in range(nrun):
        tmp_p[i] = poly[s + i]
        tmp_c[i] = col[s + i]
    i = 0
    j = m_runs_end
    o = s
    while i < nrun:
        if j < m_end and (col[j] < tmp_c[i]
                          or (col[j] == tmp_c[i] and poly[j] < tmp_p[i])):
            poly[o] = poly[j]
            col[o] = col[j]
            frac[o] = frac[j]
            j += 1
        else:
            poly[o] = tmp_p[i]
            col[o] = tmp_c[i]
            frac[o] = 1.0
            i += 1
        o += 1
    # the remaining partial cells are already in place
    return tmp_p, tmp_c
