"""Flow routing with the semantics of pygeoprocessing 2.4 (the router of InVEST SDR 3.14-3.20).

Pure numba kernels on numpy arrays (no IO). Every rule below was read in
``pygeoprocessing/routing/routing.pyx`` (2.4.11) and reproduced statement by statement, including the
order in which cells are visited where that order decides a tie:

* :func:`flow_dir_d8` (``routing.flow_dir_d8``): steepest descent on a pit-filled DEM. The slope to a
  neighbour is the drop, times 1/√2 on diagonals; the first direction of the order E, NE, N, NW, W, SW, S,
  SE wins ties (strict ``>``). Neighbours outside the grid or nodata are skipped. A cell without a lower
  neighbour starts a plateau search (breadth first over cells of exactly its height): plateau cells with a
  lower neighbour drain it; if the plateau has none, its cells next to nodata or the grid edge drain
  there (an orthogonal nodata neighbour before a diagonal one); the other plateau cells flow to the drain
  at the shortest path distance (steps 1 and √2), relaxed in first-in first-out order.
* :func:`flow_dir_mfd` (``routing.flow_dir_mfd``): the flow of a cell is shared among its strictly lower
  neighbours in proportion to drop × (1/√2 on diagonals); each share is stored as the integer
  ``int(0.5 + 15·share)`` in 4 bits per direction. Plateaus: the same drain search, then every plateau
  cell flows to all plateau neighbours nearer to a drain (weights 1 and 1/√2); plateaus drained only by
  nodata give weights 1 and 1/√2 to their nodata neighbours.
* :func:`accumulate_d8` / :func:`accumulate_mfd` (``flow_accumulation_d8`` / ``flow_accumulation_mfd``):
  upslope area in cells, the cell itself included; MFD passes ``acc · q_n / Σq``.
* :func:`streams_mfd` (``extract_streams_mfd``, ``trace_threshold_proportion``): InVEST SDR's MFD stream
  network. The D8 one is simply ``acc > threshold`` (``extract_streams_d8``).

Cells are scanned block by block (``block`` px squares, row-major blocks, row-major cells within a block),
the order of pygeoprocessing's ``iterblocks`` over InVEST's 256 x 256 tiled rasters. The scan order only
decides which cell of a plateau starts its search, which can change a tie between equally short paths
across a plateau; ``block=256`` reproduces InVEST's choice.

Conventions: ``z`` float32 (h, w) elevations of a pit-filled DEM; ``valid`` bool (h, w). D8 codes are
pygeoprocessing's (0 E, 1 NE, 2 N, 3 NW, 4 W, 5 SW, 6 S, 7 SE; :data:`D8_NODATA` = 128); MFD directions are
uint32 words of eight 4-bit weights (direction k in bits 4k..4k+3; 0 = no flow / nodata).

References: natcap/pygeoprocessing 2.4.11 ``src/pygeoprocessing/routing/routing.pyx`` (functions named above);
O'Callaghan & Mark (1984) D8; Quinn et al. (1991) and Freeman (1991) for proportional MFD.
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["D8_NODATA", "flow_dir_d8", "flow_dir_mfd", "accumulate_d8", "accumulate_mfd", "streams_mfd",
           "PGP_ROW", "PGP_COL"]

#: pygeoprocessing's neighbour offsets: direction k = 0 E, 1 NE, 2 N, 3 NW, 4 W, 5 SW, 6 S, 7 SE
PGP_ROW = np.array([0, -1, -1, -1, 0, 1, 1, 1], dtype=np.int64)
PGP_COL = np.array([1, 1, 0, -1, -1, -1, 0, 1], dtype=np.int64)
#: direction from neighbour k back to the cell (``INFLOW_OFFSETS``)
_INFLOW = np.array([4, 5, 6, 7, 0, 1, 2, 3], dtype=np.int64)
_SQRT2 = 1.4142135623730951
_SQRT2_INV = 1.0 / 1.4142135623730951
#: D8 code of cells without a direction (nodata), as in pygeoprocessing
D8_NODATA = 128


# --------------------------------------------------------------------------------------
# a first-in first-out queue of int64 in a growable ring buffer
# --------------------------------------------------------------------------------------
@numba.njit(nogil=True, cache=True)
def _push(buf, head, size, v):
    cap = buf.shape[0]
    if size == cap:
        nb = np.empty(cap * 2, dtype=buf.dtype)
        for i in range(size):
            nb[i] = buf[(head + i) % cap]
        buf = nb
        head = 0
        cap *= 2
    buf[(head + size) % cap] = v
    return buf, head, size + 1


@numba.njit(nogil=True, cache=True)
def _inside(r, c, h, w):
    return 0 <= r < h and 0 <= c < w


# --------------------------------------------------------------------------------------
# D8
# --------------------------------------------------------------------------------------
@numba.njit(nogil=True, cache=True)
def _d8_plateau(z, valid, fd, flat, dist, r, c, queues):
    """Plateau of (r, c) (no lower neighbour): search it, find its drains, route it to them."""
    h, w = z.shape
    sq, dq, nq = queues
    sh = ss = dh = ds = nh = ns = 0
    root = np.float64(z[r, c])
    sq, sh, ss = _push(sq, sh, ss, r * w + c)
    flat[r, c] = 1
    while ss > 0:
        p = sq[sh]
        sh = (sh + 1) % sq.shape[0]
        ss -= 1
        rq = p // w
        cq = p - rq * w
        ldir = -1
        lslope = 0.0
        diag_nodata = 1
        for k in range(8):
            rn = rq + PGP_ROW[k]
            cn = cq + PGP_COL[k]
            if not _inside(rn, cn, h, w) or not valid[rn, cn]:
                if diag_nodata == 1 and lslope == 0.0:
                    ldir = k
                    diag_nodata = k & 1
                continue
            s = root - np.float64(z[rn, cn])
            if s < 0.0:
                continue
            if s == 0.0:
                if flat[rn, cn] == 0:
                    sq, sh, ss = _push(sq, sh, ss, rn * w + cn)
                    flat[rn, cn] = 1
                continue
            if k & 1:
                s *= _SQRT2_INV
            if s > lslope:
                lslope = s
                ldir = k
        if ldir >= 0:
            if lslope > 0.0:  # a downhill drain of the plateau
                fd[rq, cq] = ldir
                dist[rq, cq] = 0.0
                dq, dh, ds = _push(dq, dh, ds, p)
            else:  # drains only to nodata / off the grid: kept in case the plateau has no downhill drain
                nq, nh, ns = _push(nq, nh, ns, p * 8 + ldir)
    if ds == 0:
        while ns > 0:
            v = nq[nh]
            nh = (nh + 1) % nq.shape[0]
            ns -= 1
            p = v >> 3
            rq = p // w
            cq = p - rq * w
            fd[rq, cq] = v & 7
            dist[rq, cq] = 0.0
            dq, dh, ds = _push(dq, dh, ds, p)
    while ds > 0:  # shortest path to a drain across the plateau, relaxed first-in first-out
        p = dq[dh]
        dh = (dh + 1) % dq.shape[0]
        ds -= 1
        rq = p // w
        cq = p - rq * w
        d = dist[rq, cq]
        for k in range(8):
            rn = rq + PGP_ROW[k]
            cn = cq + PGP_COL[k]
            if not _inside(rn, cn, h, w):
                continue
            nd = d + (_SQRT2 if k & 1 else 1.0)
            if valid[rn, cn] and np.float64(z[rn, cn]) == root and dist[rn, cn] > nd:
                fd[rn, cn] = _INFLOW[k]
                dist[rn, cn] = nd
                dq, dh, ds = _push(dq, dh, ds, rn * w + cn)
    return sq, dq, nq


@numba.njit(nogil=True, cache=True)
def _flow_dir_d8_nb(z, valid, block):
    h, w = z.shape
    fd = np.full((h, w), D8_NODATA, dtype=np.uint8)
    flat = np.zeros((h, w), dtype=np.uint8)
    dist = np.full((h, w), np.float64(h) * np.float64(w))
    queues = (np.empty(1024, np.int64), np.empty(1024, np.int64), np.empty(1024, np.int64))
    for by in range(0, h, block):
        for bx in range(0, w, block):
            for r in range(by, min(by + block, h)):
                for c in range(bx, min(bx + block, w)):
                    if not valid[r, c] or fd[r, c] != D8_NODATA:
                        continue
                    root = np.float64(z[r, c])
                    ldir = -1
                    lslope = 0.0
                    for k in range(8):
                        rn = r + PGP_ROW[k]
                        cn = c + PGP_COL[k]
                        if not _inside(rn, cn, h, w) or not valid[rn, cn]:
                            continue
                        s = root - np.float64(z[rn, cn])
                        if k & 1:
                            s *= _SQRT2_INV
                        if s > lslope:
                            ldir = k
                            lslope = s
                    if ldir >= 0:
                        fd[r, c] = ldir
                        continue
                    queues = _d8_plateau(z, valid, fd, flat, dist, r, c, queues)
    return fd


# --------------------------------------------------------------------------------------
# MFD
# --------------------------------------------------------------------------------------
@numba.njit(nogil=True, cache=True)
def _pack(weights, total):
    v = np.uint32(0)
    for k in range(8):
        v |= np.uint32(np.int64(0.5 + weights[k] / total * 15.0)) << np.uint32(4 * k)
    return v


@numba.njit(nogil=True, cache=True)
def _mfd_plateau(z, valid, fd, flat, dist, drain_mask, r, c, queues, slopes, nodata_slopes):
    """MFD directions of the plateau of cell (r, c) (``routing.flow_dir_mfd``'s plateau branch): drains, their
    distances, then the directions to plateau neighbours nearer to a drain. ``queues`` (five int64 ring
    buffers) are reused and returned, grown as needed; ``fd``, ``flat``, ``dist``, ``drain_mask`` are updated."""
    sq, dq, nq, nv, xq = queues
    root = np.float64(z[r, c])
    sq, dq, dh, ds, nq, nh, ns, nv, vh, vs = _mfd_plateau_drains(z, valid, fd, flat, dist, drain_mask, r, c, root,
                                                                 sq, dq, nq, nv, slopes, nodata_slopes)
    if ds == 0:
        dq, dh, ds = _mfd_nodata_drains(fd, dist, drain_mask, nq, nh, ns, nv, vh, vs, dq, dh, ds, z.shape[1])
    # the drains are also the seeds of the direction pass (in the same order)
    xh = xs = 0
    for i in range(ds):
        xq, xh, xs = _push(xq, xh, xs, dq[(dh + i) % dq.shape[0]])
    dq = _plateau_distances(z, valid, dist, root, dq, dh, ds)
    xq = _mfd_plateau_directions(z, valid, fd, dist, drain_mask, root, xq, xh, xs, slopes)
    return sq, dq, nq, nv, xq


@numba.njit(nogil=True, cache=True)
def _mfd_plateau_drains(z, valid, fd, flat, dist, drain_mask, r, c, root, sq, dq, nq, nv, slopes, nodata_slopes):
    """Breadth-first search of the plateau (cells of height ``root``) from (r, c): a cell with lower neighbours
    drains to them (its MFD word written, distance 0) and is queued in ``dq``; a cell next to nodata or the
    edge is queued in ``nq`` with its nodata-direction word in ``nv``. Returns the queues and their states."""
    h, w = z.shape
    sh = ss = dh = ds = nh = ns = vh = vs = 0
    sq, sh, ss = _push(sq, sh, ss, r * w + c)
    flat[r, c] = 1
    while ss > 0:
        p = sq[sh]
        sh = (sh + 1) % sq.shape[0]
        ss -= 1
        rq = p // w
        cq = p - rq * w
        sum_w = 0.0
        sum_nodata = 0.0
        for k in range(8):
            slopes[k] = 0.0
            nodata_slopes[k] = 0.0
            rn = rq + PGP_ROW[k]
            cn = cq + PGP_COL[k]
            if not _inside(rn, cn, h, w) or not valid[rn, cn]:
                s = _SQRT2_INV if k & 1 else 1.0
                sum_nodata += s
                nodata_slopes[k] = s
                continue
            s = root - np.float64(z[rn, cn])
            if s < 0.0:
                continue
            if s == 0.0:
                if flat[rn, cn] == 0:
                    sq, sh, ss = _push(sq, sh, ss, rn * w + cn)
                    flat[rn, cn] = 1
                continue
            if k & 1:
                s *= _SQRT2_INV
            slopes[k] = s
            sum_w += s
        if sum_w > 0.0:
            fd[rq, cq] = _pack(slopes, sum_w)
            dist[rq, cq] = 0.0
            drain_mask[rq, cq] = 1
            dq, dh, ds = _push(dq, dh, ds, p)
        elif sum_nodata > 0.0:
            nq, nh, ns = _push(nq, nh, ns, p)
            nv, vh, vs = _push(nv, vh, vs, np.int64(_pack(nodata_slopes, sum_nodata)))
    return sq, dq, dh, ds, nq, nh, ns, nv, vh, vs


@numba.njit(nogil=True, cache=True)
def _mfd_nodata_drains(fd, dist, drain_mask, nq, nh, ns, nv, vh, vs, dq, dh, ds, w):
    """A plateau without a lower neighbour drains into nodata: its cells next to nodata get their nodata-direction
    words and become the drains (queued in ``dq``). Returns (dq, dh, ds)."""
    while ns > 0:
        p = nq[nh]
        nh = (nh + 1) % nq.shape[0]
        ns -= 1
        v = nv[vh]
        vh = (vh + 1) % nv.shape[0]
        vs -= 1
        rq = p // w
        cq = p - rq * w
        fd[rq, cq] = np.uint32(v)
        dist[rq, cq] = 0.0
        drain_mask[rq, cq] = 1
        dq, dh, ds = _push(dq, dh, ds, p)
    return dq, dh, ds


@numba.njit(nogil=True, cache=True)
def _plateau_distances(z, valid, dist, root, dq, dh, ds):
    """Shortest path distance (steps 1 and √2) of every plateau cell to a drain, relaxed first in first out from
    the drains in ``dq``. Returns the queue buffer (grown as needed)."""
    h, w = z.shape
    while ds > 0:
        p = dq[dh]
        dh = (dh + 1) % dq.shape[0]
        ds -= 1
        rq = p // w
        cq = p - rq * w
        d = dist[rq, cq]
        for k in range(8):
            rn = rq + PGP_ROW[k]
            cn = cq + PGP_COL[k]
            if not _inside(rn, cn, h, w):
                continue
            nd = d + (_SQRT2 if k & 1 else 1.0)
            if valid[rn, cn] and np.float64(z[rn, cn]) == root and dist[rn, cn] > nd:
                dist[rn, cn] = nd
                dq, dh, ds = _push(dq, dh, ds, rn * w + cn)
    return dq


@numba.njit(nogil=True, cache=True)
def _mfd_plateau_directions(z, valid, fd, dist, drain_mask, root, xq, xh, xs, slopes):
    """Every plateau cell reached from the drains flows to its plateau neighbours nearer to a drain (weights 1 and
    1/√2); cells not on a path to a drain (distance still "unreached") get none. Returns the queue buffer."""
    h, w = z.shape
    unreached = np.float64(h) * np.float64(w)
    while xs > 0:
        p = xq[xh]
        xh = (xh + 1) % xq.shape[0]
        xs -= 1
        rq = p // w
        cq = p - rq * w
        d = dist[rq, cq]
        sum_w = 0.0
        for k in range(8):
            slopes[k] = 0.0
            rn = rq + PGP_ROW[k]
            cn = cq + PGP_COL[k]
            if not _inside(rn, cn, h, w):
                continue
            if not valid[rn, cn] or np.float64(z[rn, cn]) != root:
                continue
            nd = dist[rn, cn]
            if nd == unreached:  # not on a path to a drain (the distance raster's nodata)
                continue
            if nd < d:
                s = _SQRT2_INV if k & 1 else 1.0
                slopes[k] = s
                sum_w += s
            elif drain_mask[rn, cn] == 0:
                xq, xh, xs = _push(xq, xh, xs, rn * w + cn)
                drain_mask[rn, cn] = 1
        if sum_w == 0.0:
            continue
        fd[rq, cq] = _pack(slopes, sum_w)
    return xq


@numba.njit(nogil=True, cache=True)
def _flow_dir_mfd_nb(z, valid, block):
    h, w = z.shape
    fd = np.zeros((h, w), dtype=np.uint32)
    flat = np.zeros((h, w), dtype=np.uint8)
    drain_mask = np.zeros((h, w), dtype=np.uint8)
    dist = np.full((h, w), np.float64(h) * np.float64(w))  # pygeoprocessing: h*w (nodata) until reached
    slopes = np.zeros(8)
    nodata_slopes = np.zeros(8)
    queues = (np.empty(1024, np.int64), np.empty(1024, np.int64), np.empty(1024, np.int64),
              np.empty(1024, np.int64), np.empty(1024, np.int64))
    for by in range(0, h, block):
        for bx in range(0, w, block):
            for r in range(by, min(by + block, h)):
                for c in range(bx, min(bx + block, w)):
                    if not valid[r, c] or fd[r, c] != 0:
                        continue
                    root = np.float64(z[r, c])
                    total = 0.0
                    for k in range(8):
                        slopes[k] = 0.0
                        rn = r + PGP_ROW[k]
                        cn = c + PGP_COL[k]
                        if not _inside(rn, cn, h, w) or not valid[rn, cn]:
                            continue
                        s = root - np.float64(z[rn, cn])
                        if s > 0.0:
                            if k & 1:
                                s *= _SQRT2_INV
                            slopes[k] = s
                            total += s
                    if total > 0.0:
                        fd[r, c] = _pack(slopes, total)
                        continue
                    queues = _mfd_plateau(z, valid, fd, flat, dist, drain_mask, r, c, queues, slopes,
                                          nodata_slopes)
    return fd


# --------------------------------------------------------------------------------------
# accumulation and streams
# --------------------------------------------------------------------------------------
@numba.njit(nogil=True, cache=True)
def _d8_receiver(fd, valid, r, c):
    h, w = fd.shape
    k = np.int64(fd[r, c])
    if k >= 8:
        return -1
    rn = r + PGP_ROW[k]
    cn = c + PGP_COL[k]
    if not _inside(rn, cn, h, w) or not valid[rn, cn] or fd[rn, cn] == D8_NODATA:
        return -1
    return rn * w + cn


@numba.njit(nogil=True, cache=True)
def _accumulate_d8_nb(fd, valid):
    h, w = fd.shape
    indeg = np.zeros((h, w), np.uint8)
    for r in range(h):
        for c in range(w):
            if valid[r, c] and fd[r, c] != D8_NODATA:
                q = _d8_receiver(fd, valid, r, c)
                if q >= 0:
                    indeg[q // w, q % w] += 1
    acc = np.full((h, w), np.nan)
    queue = np.empty(max(h * w, 1), np.int64)
    tail = 0
    for r in range(h):
        for c in range(w):
            if valid[r, c] and fd[r, c] != D8_NODATA:
                acc[r, c] = 1.0
                if indeg[r, c] == 0:
                    queue[tail] = r * w + c
                    tail += 1
    head = 0
    while head < tail:  # Kahn: a cell is passed on once all its donors are in
        p = queue[head]
        head += 1
        r = p // w
        c = p - r * w
        q = _d8_receiver(fd, valid, r, c)
        if q < 0:
            continue
        rq = q // w
        cq = q - rq * w
        acc[rq, cq] += acc[r, c]
        indeg[rq, cq] -= 1
        if indeg[rq, cq] == 0:
            queue[tail] = q
            tail += 1
    return acc, head


@numba.njit(nogil=True, cache=True)
def _accumulate_mfd_nb(fd, valid):
    h, w = fd.shape
    indeg = np.zeros((h, w), np.uint8)
    for r in range(h):
        for c in range(w):
            v = fd[r, c]
            if not valid[r, c] or v == 0:
                continue
            for k in range(8):
                if (v >> np.uint32(4 * k)) & np.uint32(0xF) == 0:
                    continue
                rn = r + PGP_ROW[k]
                cn = c + PGP_COL[k]
                if _inside(rn, cn, h, w) and valid[rn, cn] and fd[rn, cn] != 0:
                    indeg[rn, cn] += 1
    acc = np.full((h, w), np.nan)
    queue = np.empty(max(h * w, 1), np.int64)
    tail = 0
    for r in range(h):
        for c in range(w):
            if valid[r, c] and fd[r, c] != 0:
                acc[r, c] = 1.0
                if indeg[r, c] == 0:
                    queue[tail] = r * w + c
                    tail += 1
    head = 0
    while head < tail:
        p = queue[head]
        head += 1
        r = p // w
        c = p - r * w
        v = fd[r, c]
        total = 0
        for k in range(8):
            total += np.int64((v >> np.uint32(4 * k)) & np.uint32(0xF))
        a = acc[r, c]
        for k in range(8):
            q = np.int64((v >> np.uint32(4 * k)) & np.uint32(0xF))
            if q == 0:
                continue
            rn = r + PGP_ROW[k]
            cn = c + PGP_COL[k]
            if not _inside(rn, cn, h, w) or not valid[rn, cn] or fd[rn, cn] == 0:
                continue  # leaves the domain
            acc[rn, cn] += a * np.float64(q) / np.float64(total)
            indeg[rn, cn] -= 1
            if indeg[rn, cn] == 0:
                queue[tail] = rn * w + cn
                tail += 1
    return acc, head


@numba.njit(nogil=True, cache=True)
def _streams_mfd_nb(acc, fd, threshold, trace_threshold, block):
    h, w = acc.shape
    stream = np.full((h, w), 255, np.uint8)
    op = np.empty(1024, np.int64)
    bt = np.empty(1024, np.int64)
    for by in range(0, h, block):
        for bx in range(0, w, block):
            for r in range(by, min(by + block, h)):
                for c in range(bx, min(bx + block, w)):
                    if np.isnan(acc[r, c]) or stream[r, c] != 255:
                        continue
                    stream[r, c] = 0
                    if acc[r, c] < threshold:
                        continue
                    v = fd[r, c]
                    outlet = False
                    for k in range(8):
                        if (v >> np.uint32(4 * k)) & np.uint32(0xF) == 0:
                            continue
                        rn = r + PGP_ROW[k]
                        cn = c + PGP_COL[k]
                        if not _inside(rn, cn, h, w) or np.isnan(acc[rn, cn]):
                            outlet = True
                            break
                    oh = os_ = 0
                    if outlet:
                        op, oh, os_ = _push(op, oh, os_, r * w + c)
                        stream[r, c] = 1
                    while os_ > 0:  # trace upstream from the outlet
                        p = op[oh]
                        oh = (oh + 1) % op.shape[0]
                        os_ -= 1
                        rp = p // w
                        cp = p - rp * w
                        for k in range(8):
                            rs = rp + PGP_ROW[k]
                            cs = cp + PGP_COL[k]
                            if not _inside(rs, cs, h, w):
                                continue
                            vs = fd[rs, cs]
                            if vs == 0:
                                continue
                            if (vs >> np.uint32(4 * _INFLOW[k])) & np.uint32(0xF) == 0:
                                continue
                            sv = stream[rs, cs]
                            if sv == 1 or sv == 2:
                                continue
                            a = acc[rs, cs]
                            if a >= threshold:
                                stream[rs, cs] = 1
                                op, oh, os_ = _push(op, oh, os_, rs * w + cs)
                                bh = 0
                                bs = 1
                                bt[0] = rs * w + cs
                                while bs > 0:  # tentative (2) cells downstream of a new stream cell join it
                                    b = bt[bh]
                                    bh = (bh + 1) % bt.shape[0]
                                    bs -= 1
                                    rb = b // w
                                    cb = b - rb * w
                                    vb = fd[rb, cb]
                                    for j in range(8):
                                        if (vb >> np.uint32(4 * j)) & np.uint32(0xF) == 0:
                                            continue
                                        rj = rb + PGP_ROW[j]
                                        cj = cb + PGP_COL[j]
                                        if not _inside(rj, cj, h, w):
                                            continue
                                        if stream[rj, cj] == 2:
                                            stream[rj, cj] = 1
                                            bt, bh, bs = _push(bt, bh, bs, rj * w + cj)
                            elif a >= trace_threshold:
                                stream[rs, cs] = 2
                                op, oh, os_ = _push(op, oh, os_, rs * w + cs)
    for r in range(h):
        for c in range(w):
            if stream[r, c] == 2:
                stream[r, c] = 0
    return stream


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------
def _check(z, valid, block):
    z = np.asarray(z)
    valid = np.asarray(valid)
    if z.ndim != 2 or valid.shape != z.shape:
        raise ValueError(f"z and valid must be 2-D arrays of one shape, got {z.shape} and {valid.shape}")
    if not np.issubdtype(z.dtype, np.floating):
        raise ValueError(f"z must be a floating-point elevation array, got dtype {z.dtype}")
    if int(block) < 1:
        raise ValueError(f"block must be a positive number of pixels, got {block!r}")
    return z.astype(np.float32, copy=False), valid.astype(np.bool_, copy=False)


def flow_dir_d8(z, valid, *, block: int = 256) -> np.ndarray:
    """D8 flow directions of a pit-filled DEM, as pygeoprocessing ``routing.flow_dir_d8``.

    Parameters
    ----------
    z : numpy.ndarray, shape (h, w), float32
        Pit-filled elevation (m), e.g. :func:`gep_raster.terrain.routing.fill_pits`. Values where ``valid`` is False
        are ignored.
    valid : numpy.ndarray, shape (h, w), bool
        True on cells with an elevation.
    block : int, keyword-only, default 256
        Side of the scan blocks (256 = InVEST's tiled rasters); see the module docstring.

    Returns
    -------
    numpy.ndarray, shape (h, w), uint8
        Direction codes 0-7 (E, NE, N, NW, W, SW, S, SE), :data:`D8_NODATA` (128) where ``valid`` is False.

    Raises
    ------
    ValueError
        ``z`` and ``valid`` not 2-D of one shape, ``z`` not floating-point, ``block`` < 1.

    References
    ----------
    natcap/pygeoprocessing 2.4.11 ``routing.flow_dir_d8``; O'Callaghan & Mark (1984).
    """
    z, valid = _check(z, valid, block)
    return _flow_dir_d8_nb(z, valid, int(block))


def flow_dir_mfd(z, valid, *, block: int = 256) -> np.ndarray:
    """Multiple flow directions of a pit-filled DEM, as pygeoprocessing ``routing.flow_dir_mfd``.

    Parameters
    ----------
    z, valid, block
        As in :func:`flow_dir_d8`.

    Returns
    -------
    numpy.ndarray, shape (h, w), uint32
        Eight 4-bit weights per cell (direction k in bits 4k..4k+3, pygeoprocessing's direction order); the
        share of direction k is ``q_k / Σ q``. 0 where ``valid`` is False.

    Raises
    ------
    ValueError
        As :func:`flow_dir_d8`.

    References
    ----------
    natcap/pygeoprocessing 2.4.11 ``routing.flow_dir_mfd``; Quinn et al. (1991), Freeman (1991).
    """
    z, valid = _check(z, valid, block)
    return _flow_dir_mfd_nb(z, valid, int(block))


def accumulate_d8(fd, valid) -> np.ndarray:
    """Upslope area in cells (the cell itself included) along D8 codes of :func:`flow_dir_d8`.

    Parameters
    ----------
    fd : numpy.ndarray, shape (h, w), uint8
        pygeoprocessing D8 codes (0-7; 128 nodata).
    valid : numpy.ndarray, shape (h, w), bool

    Returns
    -------
    numpy.ndarray, shape (h, w), float64
        Cells draining through each cell, ≥ 1 (``flow_accumulation_d8`` without weights); NaN where ``valid``
        is False or the code is nodata.

    Raises
    ------
    ValueError
        Shapes differ or not 2-D. RuntimeError: the codes hold a cycle.
    """
    fd = np.asarray(fd)
    valid = np.asarray(valid, dtype=np.bool_)
    if fd.ndim != 2 or valid.shape != fd.shape:
        raise ValueError(f"fd and valid must be 2-D arrays of one shape, got {fd.shape} and {valid.shape}")
    acc, done = _accumulate_d8_nb(fd.astype(np.uint8, copy=False), valid)
    n = int(np.count_nonzero(np.isfinite(acc)))
    if done != n:
        raise RuntimeError(f"D8 accumulation: {n - done} cells lie on a flow cycle")
    return acc


def accumulate_mfd(fd, valid) -> np.ndarray:
    """Upslope area in cells along MFD weights of :func:`flow_dir_mfd` (``flow_accumulation_mfd``).

    Each cell passes ``acc · q_k / Σ q`` to neighbour k; flow towards nodata or off the grid leaves the domain.

    Parameters
    ----------
    fd : numpy.ndarray, shape (h, w), uint32
        Packed MFD weights (0 = nodata).
    valid : numpy.ndarray, shape (h, w), bool

    Returns
    -------
    numpy.ndarray, shape (h, w), float64
        Upslope cells, ≥ 1, fractional; NaN where ``valid`` is False or ``fd`` is 0.

    Raises
    ------
    ValueError
        Shapes differ or not 2-D. RuntimeError: the weights hold a cycle.
    """
    fd = np.asarray(fd)
    valid = np.asarray(valid, dtype=np.bool_)
    if fd.ndim != 2 or valid.shape != fd.shape:
        raise ValueError(f"fd and valid must be 2-D arrays of one shape, got {fd.shape} and {valid.shape}")
    acc, done = _accumulate_mfd_nb(fd.astype(np.uint32, copy=False), valid)
    n = int(np.count_nonzero(np.isfinite(acc)))
    if done != n:
        raise RuntimeError(f"MFD accumulation: {n - done} cells lie on a flow cycle")
    return acc


def streams_mfd(acc, fd, threshold: float, *, trace_threshold_proportion: float = 0.7,
                block: int = 256) -> np.ndarray:
    """Stream cells of an MFD network, as pygeoprocessing ``extract_streams_mfd`` (InVEST SDR: proportion 0.7).

    A cell with ``acc ≥ threshold`` whose flow leaves the domain starts a stream; streams are traced upstream
    through inflowing neighbours with ``acc ≥ threshold`` (stream) or ``acc ≥ proportion · threshold``
    (kept only when a stream cell is found upstream of it).

    Parameters
    ----------
    acc : numpy.ndarray, shape (h, w), float64
        :func:`accumulate_mfd` (NaN = nodata).
    fd : numpy.ndarray, shape (h, w), uint32
        :func:`flow_dir_mfd`.
    threshold : float
        ``threshold_flow_accumulation`` in cells (> 0).
    trace_threshold_proportion : float, keyword-only, default 0.7
        0-1.
    block : int, keyword-only, default 256

    Returns
    -------
    numpy.ndarray, shape (h, w), uint8
        1 stream, 0 not a stream, 255 nodata.

    Raises
    ------
    ValueError
        Shapes differ; threshold not positive; proportion outside 0-1.
    """
    acc = np.asarray(acc, dtype=np.float64)
    fd = np.asarray(fd)
    if acc.ndim != 2 or fd.shape != acc.shape:
        raise ValueError(f"acc and fd must be 2-D arrays of one shape, got {acc.shape} and {fd.shape}")
    if not (float(threshold) > 0):
        raise ValueError(f"threshold must be a positive number of cells, got {threshold!r}")
    if not 0.0 <= float(trace_threshold_proportion) <= 1.0:
        raise ValueError(f"trace_threshold_proportion must lie in [0, 1], got {trace_threshold_proportion!r}")
    t = float(threshold)
    return _streams_mfd_nb(acc, fd.astype(np.uint32, copy=False), t, float(trace_threshold_proportion) * t,
                           int(block))


# --------------------------------------------------------------------------------------
# flow-weighted aspect term of the LS factor (InVEST SDR 3.9-3.13)
# --------------------------------------------------------------------------------------
@numba.njit(nogil=True, cache=True)
def _flow_length_factor_nb(fd, packed):
    h, w = fd.shape
    out = np.full((h, w), np.float32(np.nan), dtype=np.float32)
    sqrt2 = np.float32(_SQRT2)
    for r in range(h):
        for c in range(w):
            v = np.int64(fd[r, c])
            if (packed and v == 0) or (not packed and v >= 8):
                continue
            wsum = 0
            lsum = np.float32(0.0)
            for k in range(8):
                rn = r + PGP_ROW[k]
                cn = c + PGP_COL[k]
                if not _inside(rn, cn, h, w):
                    continue
                if packed:
                    q = (v >> (4 * k)) & 0xF
                else:
                    q = 1 if v == k else 0
                wsum += q
                lsum += (sqrt2 if k & 1 else np.float32(1.0)) * np.float32(q)
            if wsum > 0:
                out[r, c] = lsum / np.float32(wsum)
    return out


def flow_length_factor(fd, *, packed: bool) -> np.ndarray:
    """Flow-weighted aspect term x = Σ L_k·q_k / Σ q_k of InVEST SDR 3.9-3.13 (``calculate_average_aspect``).

    L_k = 1 for orthogonal and √2 for diagonal directions (the flow length across the cell, standing in for
    ``|sin α| + |cos α|``); q_k = the MFD weights (``packed``) or 1 for the D8 direction. Directions leaving
    the grid are left out; a cell whose every direction leaves the grid gets NaN (InVEST's nodata -1).

    Parameters
    ----------
    fd : numpy.ndarray, shape (h, w)
        uint32 packed MFD weights (``packed=True``, :func:`flow_dir_mfd`) or uint8 D8 codes (``packed=False``,
        :func:`flow_dir_d8`).
    packed : bool, keyword-only

    Returns
    -------
    numpy.ndarray, shape (h, w), float32
        x in [1, √2]; NaN on nodata cells and cells draining only off the grid. float32 arithmetic as InVEST.

    Raises
    ------
    ValueError
        ``fd`` is not 2-D.

    References
    ----------
    natcap/invest 3.13 ``sdr/sdr_core.pyx`` ``calculate_average_aspect`` (flow_lengths 1, √2; weighted mean).
    """
    fd = np.asarray(fd)
    if fd.ndim != 2:
        raise ValueError(f"fd must be 2-D, got shape {fd.shape}")
    return _flow_length_factor_nb(fd.astype(np.uint32 if packed else np.uint8, copy=False), bool(packed))
