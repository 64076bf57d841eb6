"""Step 3 of the coverage build, ``"exactextract"`` engine: box cells' fractions by exactextract.

``exactextract.exact_extract(..., ["cell_id", "coverage"])`` on the pieces
``clip_by_rect(Polygon(ring), box)`` (GEOS rectangle clipping), in batches of at most
:data:`~.settings.BATCH_CELLS` cells; also exactextract on whole polygons
(:func:`_exactextract_coverage`, the reference the tests compare with). See *How the coverage is
built* in :mod:`gep_raster.accounts.zonal`.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ...grid import RefGrid
from .arrays import _grow1, _grow2
from .geometry import _polygonal
from .settings import _CLIP_SPLIT_VERTICES, _EPS, BATCH_CELLS


def _exactextract_boxes(ring_polys, ring_sign, boxes, pairs, grid: RefGrid, runs_list: list,
                        parts_list: list, fracs_list: list) -> None:
    """exactextract engine: fractions of all box cells, in batches of :data:`BATCH_CELLS`."""
    import shapely

    t = grid.transform
    rects = np.empty((len(boxes), 4), np.float64)
    rects[:, 0] = t.c + boxes[:, 3] * t.a
    rects[:, 1] = t.f + boxes[:, 2] * t.e
    rects[:, 2] = t.c + boxes[:, 4] * t.a
    rects[:, 3] = t.f + boxes[:, 1] * t.e
    # exactextract work of a box ~ its cells times the rings crossing it
    n_cross = np.bincount(pairs[pairs[:, 2] == 0, 0], minlength=len(boxes))
    cells = (boxes[:, 2] - boxes[:, 1]) * (boxes[:, 4] - boxes[:, 3]) * n_cross
    csum = np.cumsum(cells)
    start = 0
    while start < len(boxes):
        base = csum[start] - cells[start]
        stop = max(start + 1, int(np.searchsorted(csum, base + BATCH_CELLS, "right")))
        p0, p1 = np.searchsorted(pairs[:, 0], [start, stop])
        r, pa, fr = _coverage_of_boxes(ring_polys, ring_sign, boxes[start:stop], start,
                                       pairs[p0:p1], rects, grid, shapely)
        runs_list.append(r)
        parts_list.append(pa)
        fracs_list.append(fr)
        start = stop


def _coverage_of_boxes(ring_polys, ring_sign, boxes, box0, pairs, rects, grid: RefGrid,
                       shapely):
    """exactextract fractions of the cells of one batch of boxes.

    Parameters
    ----------
    ring_polys : object array (n_rings,)
        Every ring as a hole-free polygon.
    ring_sign : float32 (n_rings,)
        +1 shells, -1 holes.
    boxes : int64 (k, 5)
        (polygon, r0, r1, c0, c1) of the batch; absolute indices ``box0 + i``.
    pairs : int64 (m, 3)
        The batch's (box, ring, kind) pairs (see :func:`_scan_layer`).
    rects : float64 (n_boxes, 4)
        Every box in CRS coordinates (xmin, ymin, xmax, ymax), absolute indexing.

    Returns
    -------
    runs int32 (n, 4), parts int32 (m, 3), fracs float32 (m,)
        As :func:`_combine_boxes`.

    Notes
    -----
    Each (box, ring) piece is ``clip_by_rect(Polygon(ring), box)``; as the box is a union
    of whole cells, exactextract's fraction of a cell of the box for the piece is its
    fraction for the ring. Pieces of one ring are clipped together (:func:`_clip_boxes`).
    """
    sel = np.flatnonzero(pairs[:, 2] == 0)
    pair_piece = np.full(len(pairs), -1, np.int64)
    if sel.size:
        rings = pairs[sel, 1]
        order = sel[np.argsort(rings, kind="stable")]
        rs = pairs[order, 1]
        starts = np.flatnonzero(np.r_[True, rs[1:] != rs[:-1]])
        ends = np.r_[starts[1:], len(order)]
        pieces = np.empty(len(order), dtype=object)
        for a, b in zip(starts, ends):
            pieces[a:b] = _clip_boxes(ring_polys[rs[a]], rects[pairs[order[a:b], 0]])
        tid = shapely.get_type_id(pieces)
        empty = shapely.is_empty(pieces)
        keep = np.isin(tid, (3, 6)) & ~empty
        for i in np.flatnonzero(~keep & ~empty):  # collection from a degenerate clip
            g = _polygonal(pieces[i])
            if g is not None:
                pieces[i] = g
                keep[i] = True
        # a piece in several parts that share a cell would be summed part by part (float32)
        # by exactextract where the whole ring is not: cut it from a larger rectangle
        for i in np.flatnonzero(keep & (tid == 6)):
            j = order[i]
            pieces[i] = _unsplit_piece(ring_polys[pairs[j, 1]], pieces[i],
                                       boxes[pairs[j, 0] - box0], grid)
        kept = np.flatnonzero(keep)
        pair_piece[order[kept]] = np.arange(kept.size)
        res = _exactextract_coverage(list(shapely.to_wkb(pieces[kept])), grid)
    else:
        res = []
    counts = np.zeros(len(res), np.int64)
    cells, covs = [], []
    for j, rj in enumerate(res):
        if rj is None or rj[0] is None or len(rj[0]) == 0:
            continue
        counts[j] = len(rj[0])
        cells.append(np.asarray(rj[0], np.int64))
        covs.append(np.asarray(rj[1], np.float64))
    starts = np.zeros(len(res), np.int64)
    if len(res):
        starts[1:] = np.cumsum(counts)[:-1]
    cell = np.concatenate(cells) if cells else np.empty(0, np.int64)
    cov = np.concatenate(covs) if covs else np.empty(0, np.float64)
    return _combine_boxes(np.ascontiguousarray(boxes), np.int64(box0),
                          np.ascontiguousarray(pairs), ring_sign, pair_piece, starts, counts,
                          cell, cov, np.int64(grid.width))


def _clip_boxes(geom, rects: np.ndarray) -> list:
    """``[clip_by_rect(geom, *rect) for rect in rects]``, cutting ``geom`` recursively first.

    ``rects`` float64 (k, 4) (xmin, ymin, xmax, ymax). A polygon with many vertices is
    clipped to the bounding rectangle of each half of its boxes (split along the longer
    axis) before going down, so that each vertex is processed O(log k) times, not k times.
    """
    import shapely

    k = len(rects)
    if k <= 4 or shapely.get_num_coordinates(geom) <= _CLIP_SPLIT_VERTICES:
        return [shapely.clip_by_rect(geom, *r) for r in rects]
    cx = 0.5 * (rects[:, 0] + rects[:, 2])
    cy = 0.5 * (rects[:, 1] + rects[:, 3])
    axis = cx if np.ptp(cx) >= np.ptp(cy) else cy
    order = np.argsort(axis, kind="stable")
    halves = (order[: k // 2], order[k // 2:])
    out: list = [None] * k
    for h in halves:
        sub = rects[h]
        sub_geom = shapely.clip_by_rect(geom, sub[:, 0].min(), sub[:, 1].min(),
                                        sub[:, 2].max(), sub[:, 3].max())
        if sub_geom.is_empty:
            pieces = [sub_geom] * len(h)
        else:
            pieces = _clip_boxes(sub_geom, sub)
        for i, pc in zip(h, pieces):
            out[i] = pc
    return out


@njit(cache=True)
def _combine_boxes(boxes, box0, pairs, ring_sign, pair_piece, piece_start, piece_count, cell,
                   cov, W):
    """Fractions of the cells of a batch of boxes, accumulated ring by ring like exactextract.

    exactextract (RasterCellIntersection) computes each ring's cell fractions as float32
    and adds them into a float32 matrix: +shell, -hole, parts in order. This kernel does
    the same on each box: for each of the box's rings in order it adds (in float32) either
    exactextract's fractions of the (ring ∩ box) piece or a uniform 1 (box inside the ring),
    with the ring's sign.

    Parameters
    ----------
    boxes : int64 (k, 5)
        (polygon, r0, r1, c0, c1) of the batch's boxes (absolute indices box0 + i).
    pairs : int64 (m, 3)
        The batch's (box, ring, kind) pairs, sorted by (box, ring).
    ring_sign : float32 (n_rings,)
        +1 for shells, -1 for holes.
    pair_piece : int64 (m,)
        Piece of each kind-0 pair (-1: empty piece or kind 1).
    piece_start, piece_count : int64 (n_pieces,)
        exactextract output of each piece in ``cell``/``cov``.
    cell : int64 (n,), cov : float64 (n,)
        exactextract ``cell_id`` (row * W + col) and ``coverage`` (float32 values).
    W : int
        Grid width.

    Returns
    -------
    runs : int32 (n_runs, 4)
        (polygon, row, c0, c1) of the cells of fraction exactly 1.
    parts : int32 (n_parts, 3), fracs : float32 (n_parts,)
        (polygon, row, col) and fraction of the other cells of positive fraction.
    """
    k = boxes.shape[0]
    m = pairs.shape[0]
    maxc = 0
    for i in range(k):
        maxc = max(maxc, (boxes[i, 2] - boxes[i, 1]) * (boxes[i, 4] - boxes[i, 3]))
    buf = np.zeros(maxc, np.float32)
    runs = np.empty((256, 4), np.int32)
    parts = np.empty((256, 3), np.int32)
    fracs = np.empty(256, np.float32)
    nr = 0
    npart = 0
    j = 0
    for i in range(k):
        b = box0 + i
        p = boxes[i, 0]
        r0 = boxes[i, 1]
        r1 = boxes[i, 2]
        c0 = boxes[i, 3]
        c1 = boxes[i, 4]
        ww = c1 - c0
        nc = (r1 - r0) * ww
        for q in range(nc):
            buf[q] = np.float32(0.0)
        while j < m and pairs[j, 0] < b:
            j += 1
        while j < m and pairs[j, 0] == b:
            sgn = ring_sign[pairs[j, 1]]
            if pairs[j, 2] == 1:
                for q in range(nc):
                    buf[q] = buf[q] + sgn
            else:
                pc = pair_piece[j]
                if pc >= 0:
                    for jj in range(piece_start[pc], piece_start[pc] + piece_count[pc]):
                        r = cell[jj] // W
                        c = cell[jj] - r * W
                        if r < r0 or r >= r1 or c < c0 or c >= c1:
                            continue  # sliver outside the box
                        q = (r - r0) * ww + (c - c0)
                        buf[q] = buf[q] + sgn * np.float32(cov[jj])
            j += 1
        for rr in range(r1 - r0):
            in_run = False
            for cc in range(ww):
                f = buf[rr * ww + cc]
                if f == np.float32(1.0):
                    if in_run:
                        runs[nr - 1, 3] = c0 + cc + 1
                    else:
                        runs = _grow2(runs, nr + 1)
                        runs[nr, 0] = p
                        runs[nr, 1] = r0 + rr
                        runs[nr, 2] = c0 + cc
                        runs[nr, 3] = c0 + cc + 1
                        nr += 1
                        in_run = True
                else:
                    in_run = False
                    if f > np.float32(0.0):
                        parts = _grow2(parts, npart + 1)
                        fracs = _grow1(fracs, npart + 1)
                        parts[npart, 0] = p
                        parts[npart, 1] = r0 + rr
                        parts[npart, 2] = c0 + cc
                        fracs[npart] = f
                        npart += 1
    return runs[:nr], parts[:npart], fracs[:npart]


def _parts_share_cell(piece, box, grid: RefGrid) -> bool:
    """Whether two parts of ``piece`` may cover a common cell of ``box`` (by bounding boxes)."""
    import shapely

    parts = shapely.get_parts(piece)
    if len(parts) < 2:
        return False
    _, r0, r1, c0, c1 = (int(x) for x in box)
    t = grid.transform
    bb = shapely.bounds(parts)
    ua = np.floor((bb[:, 0] - t.c) / t.a - _EPS).astype(np.int64)
    ub = np.floor((bb[:, 2] - t.c) / t.a + _EPS).astype(np.int64)
    va = np.floor((bb[:, 3] - t.f) / t.e - _EPS).astype(np.int64)
    vb = np.floor((bb[:, 1] - t.f) / t.e + _EPS).astype(np.int64)
    inside = (ub >= c0) & (ua < c1) & (vb >= r0) & (va < r1)
    if inside.sum() < 2:
        return False
    cnt = np.zeros((r1 - r0, c1 - c0), np.int32)
    for a_, b_, c_, d_ in zip(ua[inside], ub[inside], va[inside], vb[inside]):
        rows = slice(max(c_, r0) - r0, min(d_, r1 - 1) - r0 + 1)
        cols = slice(max(a_, c0) - c0, min(b_, c1 - 1) - c0 + 1)
        cnt[rows, cols] += 1
    return bool((cnt > 1).any())


def _unsplit_piece(ring_poly, piece, box, grid: RefGrid):
    """``piece`` or, if its parts may share a cell of ``box``, a cut of ``ring_poly`` from a
    larger rectangle (doubling, up to the whole ring) whose parts do not.

    exactextract adds the float32 fractions of the parts of a MultiPolygon, while the
    original ring's fraction of a cell is rounded once: connecting the parts outside the box
    restores exactextract's value for the ring. Cells outside the box are dropped later.
    """
    import shapely

    if not _parts_share_cell(piece, box, grid):
        return piece
    _, r0, r1, c0, c1 = (int(x) for x in box)
    t = grid.transform
    rx0, ry0, rx1, ry1 = shapely.bounds(ring_poly)
    h, w = r1 - r0, c1 - c0
    while True:
        h, w = 2 * h, 2 * w
        xa = t.c + (c0 - w) * t.a
        xb = t.c + (c1 + w) * t.a
        ya = t.f + (r1 + h) * t.e
        yb = t.f + (r0 - h) * t.e
        if xa <= rx0 and ya <= ry0 and xb >= rx1 and yb >= ry1:
            return ring_poly
        piece = _polygonal(shapely.clip_by_rect(ring_poly, xa, ya, xb, yb))
        if piece is None or not _parts_share_cell(piece, box, grid):
            return piece if piece is not None else ring_poly


def _exactextract_coverage(wkbs: list, grid: RefGrid):
    """Run exactextract ``["cell_id", "coverage"]`` for WKB polygons on ``grid``.

    Parameters
    ----------
    wkbs : list of bytes
        Polygon or MultiPolygon WKB, in ``grid.crs``.
    grid : RefGrid

    Returns
    -------
    list of (numpy.ndarray int64, numpy.ndarray float64) or None
        Per polygon (input order): cell ids (``row * width + col``, ascending) and coverage
        fractions of the cells exactextract reports; None (or None arrays) when the polygon
        does not touch the grid.
    """
    from exactextract import Feature, FeatureSource, exact_extract
    from exactextract.raster import NumPyRasterSource
    from exactextract.writer import Writer

    idx_field = "__gep_idx"

    class _WKBFeature(Feature):
        def __init__(self, i=None, wkb=None):
            Feature.__init__(self)
            self.i = i
            self.wkb = wkb
            self.props = {}

        def geometry(self):
            return self.wkb

        def set_geometry_format(self):
            return "wkb"

        def set_geometry(self, wkb):
            self.wkb = wkb

        def fields(self):
            return [idx_field] + list(self.props)

        def get(self, name):
            return self.i if name == idx_field else self.props[name]

        def set(self, name, value):
            if name == idx_field:
                self.i = value
            else:
                self.props[name] = value

    class _WKBSource(FeatureSource):
        def __init__(self, wkbs, wkt):
            super().__init__()
            self.wkbs = wkbs
            self.wkt = wkt

        def count(self):
            return len(self.wkbs)

        def __iter__(self):
            for i, w in enumerate(self.wkbs):
                yield _WKBFeature(i, w)

        def srs_wkt(self):
            return self.wkt

    results: list = [None] * len(wkbs)

    class _Collect(Writer):
        def __init__(self):
            super().__init__()

        def write(self, feature):
            f = _WKBFeature()
            feature.copy_to(f)
            results[int(f.i)] = (f.props.get("cell_id"), f.props.get("coverage"))

        def features(self):
            return results

    if not wkbs:
        return results
    wkt = grid.crs.to_wkt()
    left, bottom, right, top = grid.bounds
    # a zero-stride raster of the grid's shape: exactextract only needs its extent and
    # resolution; windows read from it cost nothing.
    dummy = np.broadcast_to(np.zeros((), dtype=np.uint8), grid.shape)
    src = NumPyRasterSource(dummy, left, bottom, right, top, srs_wkt=wkt)
    exact_extract(src, _WKBSource(list(wkbs), wkt), ["cell_id", "coverage"],
                  include_cols=[idx_field], output=_Collect())
    return results
