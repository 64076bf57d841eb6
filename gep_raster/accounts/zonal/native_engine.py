"""Step 3 of the coverage build, ``"native"`` engine (numba): exact fractions of the box cells.

Per ring, the cell areas by cover/area accumulation along the ring (the signed area left of a
piece of ring inside a cell, plus the winding height carried to the cells on its right), rounded
to float32 and added in exactextract's order. See *How the coverage is built* in
:mod:`gep_raster.accounts.zonal`.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .arrays import _grow1, _grow2


@njit(cache=True, inline="always")
def _emit(r, c, ring, a, cv, qr0, cnt, pos, col_c, ring_c, area_c, cover_c, fill):
    """Count or write one (col, ring, area, cover) contribution of row r."""
    if fill:
        k = pos[r - qr0]
        col_c[k] = c
        ring_c[k] = ring
        area_c[k] = a
        cover_c[k] = cv
        pos[r - qr0] = k + 1
    else:
        cnt[r - qr0 + 1] += 1


@njit(cache=True)
def _ring_contribs(u, v, i0, i1, ring, sgn, qr0, qr1, W, cnt, pos, col_c, ring_c, area_c,
                   cover_c, fill):
    """Cover/area contributions of one ring to the cells of rows qr0..qr1.

    For a cell (r, c) and a ring, the signed area of the ring's interior inside the cell is
    ``area(r, c) + Σ_{c' < c} cover(r, c')``: every piece of the ring inside cell (r, c')
    (from y_s to y_e, x from x_s to x_e) adds ``(y_e - y_s) * (c' + 1 - (x_s + x_e) / 2)``
    to area(r, c') and ``y_e - y_s`` to cover(r, c') (the winding number integrated over
    the row, to the right of the piece). x is clamped to [0, W]: what lies left of the
    grid only covers, what lies right of it does not matter. ``sgn`` orients the ring so
    that its interior counts +1. Count (fill=False) or write (fill=True) per row.
    """
    fW = np.float64(W)
    for i in range(i0, i1 - 1):
        ua = u[i]
        va = v[i]
        ub = u[i + 1]
        vb = v[i + 1]
        if va == vb:
            continue
        lo = min(va, vb)
        hi = max(va, vb)
        ra = max(qr0, np.int64(np.floor(lo)))
        rb = min(qr1, np.int64(np.floor(hi)))
        for r in range(ra, rb + 1):
            # the part of the segment in row r, in traversal order, ends on the row lines
            if va < r:
                ys = np.float64(r)
            elif va > r + 1:
                ys = np.float64(r + 1)
            else:
                ys = va
            if vb < r:
                ye = np.float64(r)
            elif vb > r + 1:
                ye = np.float64(r + 1)
            else:
                ye = vb
            if ys == ye:
                continue
            xs = ua if ys == va else ua + (ys - va) * (ub - ua) / (vb - va)
            xe = ub if ye == vb else ua + (ye - va) * (ub - ua) / (vb - va)
            # split at x = 0 (the part left of the grid only covers column 0) and cut at x = W
            x0 = xs
            y0 = ys
            x1 = xe
            y1 = ye
            if x0 < 0.0 or x1 < 0.0:
                if x0 < 0.0 and x1 < 0.0:
                    _emit(r, 0, ring, sgn * (y1 - y0), sgn * (y1 - y0), qr0, cnt, pos,
                          col_c, ring_c, area_c, cover_c, fill)
                    continue
                ym = y0 + (0.0 - x0) * (y1 - y0) / (x1 - x0)
                if x0 < 0.0:
                    _emit(r, 0, ring, sgn * (ym - y0), sgn * (ym - y0), qr0, cnt, pos,
                          col_c, ring_c, area_c, cover_c, fill)
                    x0 = 0.0
                    y0 = ym
                else:
                    _emit(r, 0, ring, sgn * (y1 - ym), sgn * (y1 - ym), qr0, cnt, pos,
                          col_c, ring_c, area_c, cover_c, fill)
                    x1 = 0.0
                    y1 = ym
            if x0 >= fW and x1 >= fW:
                continue
            if x0 > fW:
                y0 = y0 + (fW - x0) * (y1 - y0) / (x1 - x0)
                x0 = fW
            elif x1 > fW:
                y1 = y0 + (fW - x0) * (y1 - y0) / (x1 - x0)
                x1 = fW
            if y0 == y1:
                continue
            if x0 == x1:
                c = min(np.int64(np.floor(x0)), W - 1)
                dy = y1 - y0
                _emit(r, c, ring, sgn * dy * (c + 1 - x0), sgn * dy, qr0, cnt, pos,
                      col_c, ring_c, area_c, cover_c, fill)
                continue
            _walk_columns(r, x0, y0, x1, y1, ring, sgn, W, qr0, cnt, pos, col_c, ring_c, area_c, cover_c, fill)


@njit(cache=True, inline="always")
def _walk_columns(r, x0, y0, x1, y1, ring, sgn, W, qr0, cnt, pos, col_c, ring_c, area_c, cover_c, fill):
    """A piece of row ``r`` with 0 <= x <= W and x0 != x1, cut at the column lines: one contribution per cell."""
    step = 1 if x1 > x0 else -1
    cx = x0
    cy = y0
    while True:
        if step > 0:
            c = np.int64(np.floor(cx))
            nb = np.float64(c + 1)
            last = x1 <= nb
        else:
            c = np.int64(np.ceil(cx)) - 1
            nb = np.float64(c)
            last = x1 >= nb
        if last:
            nx = x1
            ny = y1
        else:
            nx = nb
            ny = y0 + (nb - x0) * (y1 - y0) / (x1 - x0)
        if c >= W:
            c = W - 1
        if c < 0:
            c = 0
        dy = ny - cy
        if dy != 0.0:
            _emit(r, c, ring, sgn * dy * (c + 1 - 0.5 * (cx + nx)), sgn * dy, qr0,
                  cnt, pos, col_c, ring_c, area_c, cover_c, fill)
        if last:
            break
        cx = nx
        cy = ny


@njit(cache=True)
def _sort_contribs(col_c, ring_c, area_c, cover_c, s, e, nring):
    """Sort the contributions s:e by (col, ring), in place (stable)."""
    n = e - s
    if n <= 48:
        for a in range(s + 1, e):
            kc = col_c[a]
            kr = ring_c[a]
            ka = area_c[a]
            kv = cover_c[a]
            b = a - 1
            while b >= s and (col_c[b] > kc or (col_c[b] == kc and ring_c[b] > kr)):
                col_c[b + 1] = col_c[b]
                ring_c[b + 1] = ring_c[b]
                area_c[b + 1] = area_c[b]
                cover_c[b + 1] = cover_c[b]
                b -= 1
            col_c[b + 1] = kc
            ring_c[b + 1] = kr
            area_c[b + 1] = ka
            cover_c[b + 1] = kv
        return
    for k in range(s + 1, e):
        if col_c[k] < col_c[k - 1] or (col_c[k] == col_c[k - 1] and ring_c[k] < ring_c[k - 1]):
            break
    else:
        return
    key = np.empty(n, np.int64)
    for k in range(s, e):
        key[k - s] = col_c[k] * nring + ring_c[k]
    o = np.argsort(key, kind="mergesort")
    tc = col_c[s:e].copy()
    tr = ring_c[s:e].copy()
    ta = area_c[s:e].copy()
    tv = cover_c[s:e].copy()
    for k in range(n):
        col_c[s + k] = tc[o[k]]
        ring_c[s + k] = tr[o[k]]
        area_c[s + k] = ta[o[k]]
        cover_c[s + k] = tv[o[k]]


@njit(cache=True)
def _native_boxes(u, v, ring_ptr, poly_ring_ptr, ring_sign, boxes, H, W, band, snap):
    """Exact coverage fractions of every box cell, without exactextract.

    Per ring, the signed area inside each cell is accumulated from the ring's pieces (see
    :func:`_ring_contribs`) in float64, rounded to float32 and combined over the rings of
    the polygon exactly as exactextract's RasterCellIntersection does (float32 matrix,
    +shell, -hole, parts in order). Per-ring values below ``snap`` are 0.

    Returns runs int32 (n, 4), parts int32 (m, 3), fracs float32 (m,) like
    :func:`_combine_boxes`.
    """
    nbox = boxes.shape[0]
    runs = np.empty((1024, 4), np.int32)
    parts = np.empty((1024, 3), np.int32)
    fracs = np.empty(1024, np.float32)
    nr = 0
    npart = 0
    col_c = np.empty(0, np.int64)
    ring_c = np.empty(0, np.int64)
    area_c = np.empty(0, np.float64)
    cover_c = np.empty(0, np.float64)
    b0 = 0
    while b0 < nbox:
        p = boxes[b0, 0]
        b1 = b0
        qr0 = boxes[b0, 1]
        qr1 = boxes[b0, 2] - 1
        while b1 < nbox and boxes[b1, 0] == p:
            qr0 = min(qr0, boxes[b1, 1])
            qr1 = max(qr1, boxes[b1, 2] - 1)
            b1 += 1
        g0 = poly_ring_ptr[p]
        g1 = poly_ring_ptr[p + 1]
        cnt, col_c, ring_c, area_c, cover_c = _polygon_contribs(u, v, ring_ptr, g0, g1, qr0, qr1, W, col_c, ring_c,
                                                               area_c, cover_c)
        runs, parts, fracs, nr, npart = _polygon_cells(p, g0, g1, qr0, qr1, boxes, b0, b1, band, ring_sign, snap,
                                                       cnt, col_c, ring_c, area_c, cover_c, runs, parts, fracs,
                                                       nr, npart)
        b0 = b1
    return runs[:nr], parts[:npart], fracs[:npart]


@njit(cache=True)
def _polygon_contribs(u, v, ring_ptr, g0, g1, qr0, qr1, W, col_c, ring_c, area_c, cover_c):
    """The contributions of every ring of one polygon (rings ``g0:g1``) to rows ``qr0..qr1``, bucketed by row
    (two passes of :func:`_ring_contribs`: count, then fill). The contribution arrays are reused when large
    enough. Returns (cnt (row offsets, int64 (nrow + 1,)), col_c, ring_c, area_c, cover_c)."""
    nring = g1 - g0
    nrow = qr1 - qr0 + 1
    orient = np.empty(nring, np.float64)
    for g in range(g0, g1):
        s0 = ring_ptr[g]
        s1 = ring_ptr[g + 1]
        a2 = 0.0
        for i in range(s0, s1 - 1):
            a2 += (u[i] - u[s0]) * (v[i + 1] - v[s0]) - (u[i + 1] - u[s0]) * (v[i] - v[s0])
        orient[g - g0] = -1.0 if a2 > 0.0 else 1.0
    cnt = np.zeros(nrow + 1, np.int64)
    pos = cnt[:nrow]
    for g in range(g0, g1):
        _ring_contribs(u, v, ring_ptr[g], ring_ptr[g + 1], g - g0, orient[g - g0], qr0,
                       qr1, W, cnt, pos, col_c, ring_c, area_c, cover_c, False)
    for k in range(nrow):
        cnt[k + 1] += cnt[k]
    ntot = cnt[nrow]
    if col_c.size < ntot:
        col_c = np.empty(ntot, np.int64)
        ring_c = np.empty(ntot, np.int64)
        area_c = np.empty(ntot, np.float64)
        cover_c = np.empty(ntot, np.float64)
    pos = cnt[:nrow].copy()
    for g in range(g0, g1):
        _ring_contribs(u, v, ring_ptr[g], ring_ptr[g + 1], g - g0, orient[g - g0], qr0,
                       qr1, W, cnt, pos, col_c, ring_c, area_c, cover_c, True)
    return cnt, col_c, ring_c, area_c, cover_c


@njit(cache=True)
def _polygon_cells(p, g0, g1, qr0, qr1, boxes, b0, b1, band, ring_sign, snap, cnt, col_c, ring_c, area_c, cover_c,
                   runs, parts, fracs, nr, npart):
    """The fractions of the cells of one polygon's boxes ``b0:b1``, row by row: cells at exactly 1 appended as
    runs, cells in (0, 1) as parts. Returns (runs, parts, fracs, nr, npart)."""
    nring = g1 - g0
    prefix = np.zeros(nring, np.float64)   # Σ cover of the ring left of the cell
    here = np.zeros(nring, np.float64)     # Σ area of the ring's pieces in the cell
    active = np.zeros(nring, np.bool_)     # prefix != 0: the cell may be inside the ring
    act = np.empty(nring, np.int64)
    incl = np.zeros(nring, np.bool_)
    cand = np.empty(nring, np.int64)
    bptr = b0
    for r in range(qr0, qr1 + 1):
        s = cnt[r - qr0]
        e = cnt[r - qr0 + 1]
        # sort the row's contributions by (col, ring)
        if e - s > 1:
            _sort_contribs(col_c, ring_c, area_c, cover_c, s, e, nring)
        nact = 0
        # boxes of the polygon covering row r, by c0
        rband = r // band
        while bptr < b1 and boxes[bptr, 1] // band < rband:
            bptr += 1
        k = s
        q = bptr
        while q < b1 and boxes[q, 1] // band == rband:
            if boxes[q, 1] > r or boxes[q, 2] <= r:
                q += 1
                continue
            in_run = False
            cached = False
            acc = np.float32(0.0)
            for c in range(boxes[q, 3], boxes[q, 4]):
                k0 = k
                k, nact = _carry_covers(c, k, e, nact, col_c, ring_c, cover_c, prefix, active, act)
                if k > k0:
                    cached = False
                j = k
                while j < e and col_c[j] == c:
                    here[ring_c[j]] += area_c[j]
                    j += 1
                if j > k or not cached:
                    # (else: no contribution since the last cell, same value)
                    acc = _cell_fraction(k, j, nact, ring_c, prefix, here, act, incl, cand, ring_sign, g0, snap)
                    cached = j == k
                if acc == np.float32(1.0):
                    if in_run:
                        runs[nr - 1, 3] = c + 1
                    else:
                        runs = _grow2(runs, nr + 1)
                        runs[nr, 0] = p
                        runs[nr, 1] = r
                        runs[nr, 2] = c
                        runs[nr, 3] = c + 1
                        nr += 1
                        in_run = True
                else:
                    in_run = False
                    if acc > np.float32(0.0):
                        parts = _grow2(parts, npart + 1)
                        fracs = _grow1(fracs, npart + 1)
                        parts[npart, 0] = p
                        parts[npart, 1] = r
                        parts[npart, 2] = c
                        fracs[npart] = acc
                        npart += 1
            q += 1
        for m in range(nact):
            active[act[m]] = False
        for k in range(s, e):
            prefix[ring_c[k]] = 0.0
    return runs, parts, fracs, nr, npart


@njit(cache=True, inline="always")
def _carry_covers(c, k, e, nact, col_c, ring_c, cover_c, prefix, active, act):
    """Add the covers of the contributions left of column ``c`` to their ring's ``prefix``; a ring whose prefix
    is non-zero (> 1e-12) is in the active list ``act[:nact]``. Returns (k, nact)."""
    while k < e and col_c[k] < c:
        g = ring_c[k]
        prefix[g] += cover_c[k]
        k += 1
        if abs(prefix[g]) > 1e-12:
            if not active[g]:
                active[g] = True
                act[nact] = g
                nact += 1
        elif active[g]:
            active[g] = False
            for m in range(nact):
                if act[m] == g:
                    act[m] = act[nact - 1]
                    break
            nact -= 1
    return k, nact


@njit(cache=True, inline="always")
def _cell_fraction(k, j, nact, ring_c, prefix, here, act, incl, cand, ring_sign, g0, snap):
    """Fraction of one cell (float32): the rings that can be non-zero there (active ones and those with pieces
    ``k:j`` in the cell), in exactextract's order, each ring's float64 value rounded to float32 and added with its
    sign (+shell, -hole); values below ``snap`` are 0. Clears ``here`` of the cell's pieces."""
    nc = 0
    for m in range(nact):
        cand[nc] = act[m]
        incl[act[m]] = True
        nc += 1
    for jj in range(k, j):
        g = ring_c[jj]
        if not incl[g]:
            incl[g] = True
            cand[nc] = g
            nc += 1
    for a_ in range(1, nc):
        x = cand[a_]
        b_ = a_ - 1
        while b_ >= 0 and cand[b_] > x:
            cand[b_ + 1] = cand[b_]
            b_ -= 1
        cand[b_ + 1] = x
    acc = np.float32(0.0)
    for m in range(nc):
        g = cand[m]
        incl[g] = False
        f = here[g] + prefix[g]
        if f >= snap:
            acc = np.float32(acc + ring_sign[g0 + g] * np.float32(f))
    for jj in range(k, j):
        here[ring_c[jj]] = 0.0
    return acc
