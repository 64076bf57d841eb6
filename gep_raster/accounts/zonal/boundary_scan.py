"""Steps 1-2 of the coverage build (numba): boundary boxes of every polygon and its interior runs.

Every ring segment marks the cells it can touch; the marks are grouped per band of
:data:`~.settings.BAND_ROWS` rows into disjoint boxes; an even-odd scanline at the row
centres gives the fully covered cells outside the boxes as runs. See :mod:`gep_raster.accounts.zonal`.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .arrays import _grow2, _lower_bound


@njit(cache=True)
def _row_crossings(u, v, ring_ptr, g0, g1, pr0, pr1, cnt, xs, xr, pos, fill):
    """Crossings of rings g0:g1 with the row centre lines ``v = r + 0.5``, r in pr0..pr1.

    Half-open rule ``(v0 > yc) != (v1 > yc)`` (horizontal segments never cross). If not
    ``fill``: ``cnt[r - pr0 + 1] += 1`` per crossing; else ``xs[pos[r - pr0]] = x`` and
    ``pos[r - pr0] += 1``, with the ring in ``xr``.
    """
    for g in range(g0, g1):
        for i in range(ring_ptr[g], ring_ptr[g + 1] - 1):
            v0 = v[i]
            v1 = v[i + 1]
            if v0 == v1:
                continue
            lo_v = min(v0, v1)
            hi_v = max(v0, v1)
            ra = max(pr0, np.int64(np.floor(lo_v - 0.5)))
            rb = min(pr1, np.int64(np.ceil(hi_v - 0.5)))
            for r in range(ra, rb + 1):
                yc = r + 0.5
                if (v0 > yc) != (v1 > yc):
                    if fill:
                        u0 = u[i]
                        xs[pos[r - pr0]] = u0 + (yc - v0) * (u[i + 1] - u0) / (v1 - v0)
                        xr[pos[r - pr0]] = g
                        pos[r - pr0] += 1
                    else:
                        cnt[r - pr0 + 1] += 1


@njit(cache=True)
def _scan_layer(u, v, ring_ptr, poly_ring_ptr, H, W, band, merge_cells, eps):
    """Boundary boxes, their rings, and interior runs of every polygon of a layer.

    Parameters
    ----------
    u, v : float64 (n_vertices,)
        Vertex coordinates in grid units (column, row; v grows downwards).
    ring_ptr : int64 (n_rings + 1,)
        Vertices of ring g are ``ring_ptr[g]:ring_ptr[g+1]`` (closed rings), rings in
        exactextract's order (per part: shell, then holes).
    poly_ring_ptr : int64 (n_polygons + 1,)
        Rings of polygon p are ``poly_ring_ptr[p]:poly_ring_ptr[p+1]``.
    H, W : int
        Grid shape.
    band, merge_cells : int
        See :data:`BAND_ROWS`, :data:`MERGE_CELLS`.
    eps : float
        Padding (pixels) of the boundary marking.

    Returns
    -------
    boxes : int64 (n_boxes, 5)
        (polygon, r0, r1, c0, c1), ends exclusive; disjoint per polygon, sorted by polygon,
        band and c0. Every cell a ring of the polygon may touch is in one of its boxes.
    pairs : int64 (n_pairs, 3)
        (box, ring, kind), sorted by (box, ring): kind 0 = the ring may cross the box (its
        fractions come from exactextract), kind 1 = the box lies inside the ring, which does
        not touch it (uniform fraction 1). Rings absent for a box contribute 0 there.
    runs : int32 (n_runs, 4)
        (polygon, row, c0, c1): cells inside the polygon (even-odd rule) and outside its
        boxes, i.e. fully covered; sorted by polygon and row.
    """
    npoly = poly_ring_ptr.size - 1
    boxes = np.empty((1024, 5), np.int64)
    pairs = np.empty((1024, 3), np.int64)
    runs = np.empty((1024, 4), np.int32)
    iv = np.empty((256, 6), np.int64)   # band, r0, r1, c0, c1 (inclusive), ring
    nb = 0
    npr = 0
    nr = 0
    for p in range(npoly):
        g0 = poly_ring_ptr[p]
        g1 = poly_ring_ptr[p + 1]
        nring = g1 - g0
        iv, ni, vmin_p, vmax_p = _mark_boundary(u, v, ring_ptr, g0, g1, H, W, band, eps, iv)
        pb0 = nb
        pp0 = npr
        if ni > 0:
            boxes, nb, pairs, npr = _merge_marks(iv, ni, p, g0, nring, W, merge_cells, boxes, nb, pairs, npr)
        pp1 = npr
        pairs, npr, runs, nr = _interior(u, v, ring_ptr, g0, g1, p, vmin_p, vmax_p, H, W, band, boxes, pb0, nb,
                                         pairs, pp0, pp1, npr, runs, nr)
        if npr > pp1:  # uniform pairs were appended: restore the (box, ring) order
            _restore_pair_order(pairs, pp0, npr, pb0, g0, nring)
    return boxes[:nb], pairs[:npr], runs[:nr]


@njit(cache=True)
def _mark_boundary(u, v, ring_ptr, g0, g1, H, W, band, eps, iv):
    """Step 1a, one polygon (rings ``g0:g1``): the cells every ring segment may touch (padded by ``eps`` px), per
    band of ``band`` rows, as rows of ``iv`` (band, r0, r1, c0, c1 inclusive, ring; grown as needed).

    Returns (iv, n_marks, vmin, vmax) with the polygon's vertical extent in grid rows."""
    ni = 0
    vmin_p = np.inf
    vmax_p = -np.inf
    for g in range(g0, g1):
        for i in range(ring_ptr[g], ring_ptr[g + 1] - 1):
            u0 = u[i]
            v0 = v[i]
            u1 = u[i + 1]
            v1 = v[i + 1]
            lo_v = min(v0, v1)
            hi_v = max(v0, v1)
            lo_u = min(u0, u1)
            hi_u = max(u0, u1)
            vmin_p = min(vmin_p, lo_v)
            vmax_p = max(vmax_p, hi_v)
            if hi_v < -eps or lo_v > H + eps or hi_u < -eps or lo_u > W + eps:
                continue
            r_lo = max(0, np.int64(np.floor(lo_v - eps)))
            r_hi = min(H - 1, np.int64(np.floor(hi_v + eps)))
            if r_lo > r_hi:
                continue
            for b in range(r_lo // band, r_hi // band + 1):
                ra = max(r_lo, b * band)
                rb = min(r_hi, (b + 1) * band - 1)
                if v1 == v0:
                    ua = lo_u
                    ub = hi_u
                else:
                    t0 = (ra - eps - v0) / (v1 - v0)
                    t1 = (rb + 1 + eps - v0) / (v1 - v0)
                    t0 = min(1.0, max(0.0, t0))
                    t1 = min(1.0, max(0.0, t1))
                    ua = u0 + t0 * (u1 - u0)
                    ub = u0 + t1 * (u1 - u0)
                    if ua > ub:
                        ua, ub = ub, ua
                ca = max(0, np.int64(np.floor(ua - eps)))
                cb = min(W - 1, np.int64(np.floor(ub + eps)))
                if ca > cb:
                    continue
                iv = _grow2(iv, ni + 1)
                iv[ni, 0] = b
                iv[ni, 1] = ra
                iv[ni, 2] = rb
                iv[ni, 3] = ca
                iv[ni, 4] = cb
                iv[ni, 5] = g
                ni += 1
    return iv, ni, vmin_p, vmax_p


@njit(cache=True)
def _merge_marks(iv, ni, p, g0, nring, W, merge_cells, boxes, nb, pairs, npr):
    """Step 1b, one polygon: its ``ni`` marks merged per band into disjoint boxes (appended to ``boxes`` from row
    ``nb``), and the (box, ring, 0) pairs of the rings marking each box, sorted by (box, ring), appended to
    ``pairs`` from row ``npr``. Returns (boxes, nb, pairs, npr)."""
    pb0 = nb
    key = np.empty(ni, np.int64)
    for k in range(ni):
        key[k] = iv[k, 0] * (W + 1) + iv[k, 3]
    order = np.argsort(key)
    ivbox = np.empty(ni, np.int64)
    k = order[0]
    cb_ = iv[k, 0]
    cr0 = iv[k, 1]
    cr1 = iv[k, 2]
    cc0 = iv[k, 3]
    cc1 = iv[k, 4]
    ivbox[k] = nb
    for j in range(1, ni + 1):
        if j < ni:
            k = order[j]
            if iv[k, 0] == cb_:
                gap = iv[k, 3] - cc1 - 1
                nr0 = min(cr0, iv[k, 1])
                nr1 = max(cr1, iv[k, 2])
                if gap <= 0 or gap * (nr1 - nr0 + 1) <= merge_cells:
                    cr0 = nr0
                    cr1 = nr1
                    cc1 = max(cc1, iv[k, 4])
                    ivbox[k] = nb
                    continue
        boxes = _grow2(boxes, nb + 1)
        boxes[nb, 0] = p
        boxes[nb, 1] = cr0
        boxes[nb, 2] = cr1 + 1
        boxes[nb, 3] = cc0
        boxes[nb, 4] = cc1 + 1
        nb += 1
        if j < ni:
            cb_ = iv[k, 0]
            cr0 = iv[k, 1]
            cr1 = iv[k, 2]
            cc0 = iv[k, 3]
            cc1 = iv[k, 4]
            ivbox[k] = nb
    pk = np.empty(ni, np.int64)
    for k in range(ni):
        pk[k] = (ivbox[k] - pb0) * nring + (iv[k, 5] - g0)
    pk.sort()
    prev = -1
    for k in range(ni):
        if pk[k] != prev:
            pairs = _grow2(pairs, npr + 1)
            pairs[npr, 0] = pb0 + pk[k] // nring
            pairs[npr, 1] = g0 + pk[k] % nring
            pairs[npr, 2] = 0
            npr += 1
            prev = pk[k]
    return boxes, nb, pairs, npr


@njit(cache=True)
def _interior(u, v, ring_ptr, g0, g1, p, vmin_p, vmax_p, H, W, band, boxes, pb0, pb1, pairs, pp0, pp1, npr,
              runs, nr):
    """Step 2, one polygon: even-odd crossings of its rings with the row centre lines give the fully covered runs
    outside its boxes ``pb0:pb1`` (appended to ``runs`` from row ``nr``) and the (box, ring, 1) pairs of the rings
    that contain a box without touching it (appended to ``pairs``). Returns (pairs, npr, runs, nr)."""
    if not (vmax_p > vmin_p):
        return pairs, npr, runs, nr
    pr0 = max(0, np.int64(np.floor(vmin_p)))
    pr1 = min(H - 1, np.int64(np.floor(vmax_p)))
    if pr0 > pr1:
        return pairs, npr, runs, nr
    nrow = pr1 - pr0 + 1
    cnt = np.zeros(nrow + 1, np.int64)
    xs = np.empty(0, np.float64)
    xr = np.empty(0, np.int64)
    _row_crossings(u, v, ring_ptr, g0, g1, pr0, pr1, cnt, xs, xr, cnt, False)
    for k in range(nrow):
        cnt[k + 1] += cnt[k]
    xs = np.empty(cnt[nrow], np.float64)
    xr = np.empty(cnt[nrow], np.int64)
    pos = cnt[:nrow].copy()
    _row_crossings(u, v, ring_ptr, g0, g1, pr0, pr1, cnt, xs, xr, pos, True)
    parity = np.zeros(g1 - g0, np.int64)
    bptr = pb0
    for r in range(pr0, pr1 + 1):
        s = cnt[r - pr0]
        e = cnt[r - pr0 + 1]
        _sort_crossings(xs, xr, s, e)
        rband = r // band
        while bptr < pb1 and boxes[bptr, 1] // band < rband:
            bptr += 1
        bend = bptr
        while bend < pb1 and boxes[bend, 1] // band == rband:
            bend += 1
        pairs, npr = _containing_rings(xs, xr, s, e, r, g0, boxes, bptr, bend, parity, pairs, pp0, pp1, npr)
        runs, nr = _row_runs(xs, s, e, p, r, W, boxes, bptr, bend, runs, nr)
    return pairs, npr, runs, nr


@njit(cache=True, inline="always")
def _sort_crossings(xs, xr, s, e):
    """Insertion sort of a row's crossings ``xs[s:e]`` (few), carrying their ring ``xr``."""
    for a in range(s + 1, e):
        x = xs[a]
        g = xr[a]
        b = a - 1
        while b >= s and xs[b] > x:
            xs[b + 1] = xs[b]
            xr[b + 1] = xr[b]
            b -= 1
        xs[b + 1] = x
        xr[b + 1] = g


@njit(cache=True, inline="always")
def _containing_rings(xs, xr, s, e, r, g0, boxes, bptr, bend, parity, pairs, pp0, pp1, npr):
    """The rings containing each box of the band that starts on row ``r`` (odd crossings left of its first cell
    centre) and not marking it: appended as (box, ring, 1) pairs (uniform fraction 1). Returns (pairs, npr)."""
    for q in range(bptr, bend):
        if boxes[q, 1] != r:
            continue
        xq = boxes[q, 3] + 0.5
        a_end = s
        while a_end < e and xs[a_end] < xq:
            parity[xr[a_end] - g0] ^= 1
            a_end += 1
        mptr = _lower_bound(pairs[:, 0], pp0, pp1, q)
        for a in range(s, a_end):
            g = xr[a]
            if parity[g - g0] == 1:
                parity[g - g0] = 0
                crosses = False
                m = mptr
                while m < pp1 and pairs[m, 0] == q:
                    if pairs[m, 1] == g:
                        crosses = True
                    m += 1
                if not crosses:
                    pairs = _grow2(pairs, npr + 1)
                    pairs[npr, 0] = q
                    pairs[npr, 1] = g
                    pairs[npr, 2] = 1
                    npr += 1
    return pairs, npr


@njit(cache=True, inline="always")
def _row_runs(xs, s, e, p, r, W, boxes, bptr, bend, runs, nr):
    """The inside intervals of row ``r`` (between crossing pairs, cell centres inside) less the band's boxes,
    appended as (polygon, row, c0, c1) runs. Returns (runs, nr)."""
    for a in range(s, e - 1, 2):
        cs = np.int64(np.floor(xs[a] - 0.5)) + 1
        ce = np.int64(np.ceil(xs[a + 1] - 0.5))
        cs = max(cs, 0)
        ce = min(ce, W)
        if cs >= ce:
            continue
        cpos = cs
        for q in range(bptr, bend):
            if boxes[q, 1] > r or boxes[q, 2] <= r:
                continue
            if boxes[q, 4] <= cpos:
                continue
            if boxes[q, 3] >= ce:
                break
            if boxes[q, 3] > cpos:
                runs = _grow2(runs, nr + 1)
                runs[nr, 0] = p
                runs[nr, 1] = r
                runs[nr, 2] = cpos
                runs[nr, 3] = boxes[q, 3]
                nr += 1
            cpos = boxes[q, 4]
        if cpos < ce:
            runs = _grow2(runs, nr + 1)
            runs[nr, 0] = p
            runs[nr, 1] = r
            runs[nr, 2] = cpos
            runs[nr, 3] = ce
            nr += 1
    return runs, nr


@njit(cache=True)
def _restore_pair_order(pairs, pp0, npr, pb0, g0, nring):
    """Sort one polygon's pairs ``pairs[pp0:npr]`` by (box, ring) again after uniform pairs were appended."""
    m = npr - pp0
    key = np.empty(m, np.int64)
    for k in range(m):
        key[k] = (pairs[pp0 + k, 0] - pb0) * nring + (pairs[pp0 + k, 1] - g0)
    order = np.argsort(key)
    tmp = pairs[pp0:npr].copy()
    for k in range(m):
        pairs[pp0 + k] = tmp[order[k]]
