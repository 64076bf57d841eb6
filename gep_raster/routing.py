"""Flow routing on a DEM: depression filling, D8 and multiple-flow-direction upslope area.

This is a **global** operation. One cell's upslope area can depend on every cell of the DEM, so
it cannot be computed chunk by chunk with ``dask.array.map_overlap``. It runs in memory on the
whole DEM (or on one hydrological unit at a time: :mod:`gep_raster.hydro_units`).

Depression filling and D8: :mod:`gep_raster.kernels.priority_flood`, pyflwdir's priority-flood algorithm
(``fill_depressions(outlets="edge", max_depth=-1)``, Wang & Liu 2006) with identical D8 codes (tested
against pyflwdir), 2.3-2.4x faster, and the D8 accumulation along the flood order.
:func:`flow_directions_d8` still returns a pyflwdir ``FlwdirRaster`` for callers that want pyflwdir's tools.

Memory (``ru_maxrss`` on 3000×3000 DEMs): :func:`upslope_area` peaks 11-17 B/px above the input DEM
(valid mask, state, D8 codes, int32 flood order and counts, float32 result, the queue); pyflwdir's fill +
``from_array`` + ``accuflux`` took 34-44 B/px. Rasters of ≥ 2³¹ cells fall back to pyflwdir (int64 indices).

Multiple flow direction (MFD): pyflwdir has no MFD routing (pyflwdir issue #48), so
:func:`upslope_area_mfd` partitions the flow itself (numba): on the depression-filled DEM each cell
sends its accumulated flow to all its strictly lower neighbours in proportion to (drop/distance)^p
(Freeman 1991; Quinn et al. 1991), with p = 1 and the 4-bit packing of the proportions as in
pygeoprocessing ``flow_dir_mfd`` (the router of InVEST SDR). Peak memory: about 21 B/px above the DEM
(float64 accumulation, int32 queue, uint8 in-degree, float32 filled DEM, D8 codes).
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .kernels.priority_flood import MAX_CELLS, d8_accumulate_along_order, priority_flood_d8

__all__ = ["flow_directions_d8", "upslope_cells_from_flwdir", "upslope_area", "fill_depressions_d8",
           "mfd_accumulation", "upslope_area_mfd", "upslope_cells", "ROUTING_METHODS"]

#: Routing methods of :func:`upslope_cells` (the LS-factor flow accumulation)
ROUTING_METHODS = ("d8", "mfd")

#: Sentinel passed to pyflwdir in place of NaN (a float32 value no DEM contains).
_SENTINEL = np.float32(np.finfo(np.float32).min)


def _check_dem(dem) -> np.ndarray:
    arr = np.asarray(dem)
    if arr.ndim != 2:
        raise ValueError(
            f"dem must be a 2-D (rows, cols) array, got ndim={arr.ndim} with shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            f"dem must be a floating-point array with NaN as nodata, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    valid = ~np.isnan(arr)
    if not valid.any():
        raise ValueError(f"dem has no valid (non-NaN) cell (shape {arr.shape}); nothing to route")
    if np.isinf(arr[valid]).any():
        raise ValueError("dem contains ±inf; set those cells to NaN (nodata) or fix the input")
    return arr


def _as_affine(transform):
    from affine import Affine

    if isinstance(transform, Affine):
        return transform
    try:
        vals = tuple(float(v) for v in transform)
    except TypeError:
        raise ValueError(f"transform must be an affine.Affine or a 6-tuple, got {transform!r}") from None
    if len(vals) not in (6, 9):
        raise ValueError(f"transform must have 6 (or 9) coefficients, got {len(vals)}")
    return Affine(*vals[:6])


def flow_directions_d8(dem, transform, *, latlon: bool = False):
    """D8 flow directions of a DEM after priority-flood depression filling (pyflwdir).

    Parameters
    ----------
    dem : numpy.ndarray, shape (h, w), float32
        Elevation in metres. NaN is nodata.
    transform : affine.Affine or 6-tuple
        Pixel-corner affine transform of the grid. It sets pyflwdir's cell geometry (areas,
        distances); it does not affect the cell counts.
    latlon : bool, keyword-only, default False
        True for geographic (degree) grids.

    Returns
    -------
    pyflwdir.FlwdirRaster
        D8 flow directions. Cells that are NaN in ``dem`` are outside the mask.

    Raises
    ------
    ValueError
        If ``dem`` is not 2-D or not floating-point, contains ±inf, or is entirely NaN. Also if
        ``transform`` is malformed.

    Notes
    -----
    ``pyflwdir.from_dem(..., outlets="edge")``: every valid cell on the edge of the valid
    domain is a potential outlet. This includes the grid border and cells next to NaN holes,
    so masked lakes or out-of-area cells act as sinks. All other depressions are filled
    (``max_depth=-1``). NaN is replaced by a float32 sentinel before the call, so the result
    does not depend on how a pyflwdir version treats NaN as nodata.

    References
    ----------
    Wang, L. & Liu, H. (2006). An efficient method for identifying and filling surface
    depressions in digital elevation models for hydrologic analysis and modelling.
    *Int. J. Geogr. Inf. Sci.* 20(2):193–213 (priority-flood fill with D8 directions).
    Eilander, D. et al. (2021). pyflwdir, https://doi.org/10.5281/zenodo.4554429.
    """
    import pyflwdir

    arr = _check_dem(dem)
    aff = _as_affine(transform)
    nan = np.isnan(arr)
    if (arr[~nan] == _SENTINEL).any():  # pragma: no cover - physically impossible elevations
        raise ValueError("dem contains the float32 minimum, which is reserved as a nodata sentinel")
    work = np.where(nan, _SENTINEL, arr).astype(np.float32, copy=False)
    del nan
    return pyflwdir.from_dem(work, nodata=float(_SENTINEL), max_depth=-1.0,
                             transform=aff, latlon=bool(latlon), outlets="edge")


def upslope_cells_from_flwdir(flwdir) -> np.ndarray:
    """Upslope contributing area, in cells, from an existing pyflwdir flow-direction object.

    Parameters
    ----------
    flwdir : pyflwdir.FlwdirRaster
        For example from :func:`flow_directions_d8`.

    Returns
    -------
    numpy.ndarray, shape flwdir.shape, float32
        Number of cells that drain through each cell, **including the cell itself**
        (ridge or divide cell = 1). NaN outside the flow-direction mask. The counts are
        accumulated as integers (int32, or int64 for ≥ 2³¹ cells). They are exact in float32
        up to 2²⁴ = 16 777 216 cells; above that, float32 rounding (relative ≤ 6e-8) applies.
    """
    from pyflwdir import streams

    n = int(flwdir.size)
    dtype = np.int32 if n < 2**31 - 1 else np.int64
    ones = np.ones(n, dtype=dtype)
    acc = streams.accuflux(idxs_ds=flwdir.idxs_ds, seq=flwdir.idxs_seq, data=ones, nodata=-9999)
    del ones
    out = acc.astype(np.float32)
    del acc
    mask = np.asarray(flwdir.mask).ravel()
    out[~mask] = np.nan
    return out.reshape(flwdir.shape)


def upslope_area(dem, transform, *, latlon: bool = False) -> np.ndarray:
    """Upslope contributing area of every cell, in cells, by D8 routing on the filled DEM.

    The steps are: priority-flood depression filling and D8 directions
    (:func:`flow_directions_d8`, Wang & Liu 2006), then accumulation of one unit per cell along
    the flow directions.

    Parameters
    ----------
    dem : numpy.ndarray, shape (h, w), float32
        Elevation in metres. NaN is nodata.
    transform : affine.Affine or 6-tuple
        Pixel-corner affine transform of the grid.
    latlon : bool, keyword-only, default False
        True for geographic (degree) grids. The cell count does not depend on it; it is
        passed on to pyflwdir.

    Returns
    -------
    numpy.ndarray, shape (h, w), float32
        Number of cells draining through each cell, **including itself** (ridge cell = 1,
        outlet = every cell of its basin). NaN where ``dem`` is NaN. Multiply by the cell area
        to get m².

    Raises
    ------
    ValueError
        If ``dem`` is not 2-D or not floating-point, contains ±inf, or is entirely NaN. Also if
        ``transform`` is malformed.

    Notes
    -----
    This is a **global, in-memory** operation on the whole DEM, not a ``map_overlap`` kernel. The fill is
    :func:`gep_raster.kernels.priority_flood.priority_flood_d8`: pyflwdir's algorithm (``from_dem(...,
    outlets="edge", max_depth=-1)``), with identical D8 codes and therefore identical counts (tested against
    pyflwdir), 2.4x faster (2048² synthetic DEM: 0.61 s against pyflwdir's 1.44 s for fill + ``from_array`` +
    accumulation) because its queue holds packed integer keys and the accumulation follows the flood order.
    See the module docstring for memory. This matches the
    "flow accumulation" used by the InVEST SDR LS factor (FA ≥ 1, ``(FA − 1)·D²`` upslope of
    the inlet), except that InVEST routes with MFD by default (D8 is optional in recent
    versions); here it is always D8.

    References
    ----------
    Wang, L. & Liu, H. (2006). *Int. J. Geogr. Inf. Sci.* 20(2):193–213.
    O'Callaghan, J.F. & Mark, D.M. (1984). The extraction of drainage networks from digital
    elevation data. *Comput. Vis. Graph. Image Process.* 28:323–344 (D8).
    """
    arr = _check_dem(dem)
    _as_affine(transform)  # validated; the cell count does not depend on the geometry
    if arr.size > MAX_CELLS:  # pragma: no cover - beyond the packed flood key: pyflwdir with int64 indices
        return upslope_cells_from_flwdir(flow_directions_d8(arr, transform, latlon=latlon))
    valid = ~np.isnan(arr)
    d8, order = priority_flood_d8(np.where(valid, arr, np.float32(0.0)), valid)
    acc = d8_accumulate_along_order(d8, order)
    del d8, order
    out = acc.astype(np.float32)
    del acc
    out[~valid] = np.nan
    return out


# --------------------------------------------------------------------------------------
# multiple flow direction (MFD)
# --------------------------------------------------------------------------------------
#: neighbour offsets in the pyflwdir / ESRI D8 code order: code 2**k = E, SE, S, SW, W, NW, N, NE
_DR = np.array([0, 1, 1, 1, 0, -1, -1, -1], dtype=np.int64)
_DC = np.array([1, 1, 0, -1, -1, -1, 0, 1], dtype=np.int64)


@numba.njit(nogil=True, cache=True)
def _receivers(zf, valid, d8, r, c, inv_dist, exponent, quantize, rr_out, cc_out, frac_out):
    """Receivers of cell (r, c) and the share of its flow each gets; returns their number (0 = outlet).

    1. Strictly lower valid neighbours n: weight (Δz · inv_dist_n)^p, share = weight / Σ weights
       (with ``quantize``: int(0.5 + 15·share) / Σ of those integers, as pygeoprocessing packs 4 bits).
    2. None lower and the cell touches the grid edge or a nodata cell: outlet (flow leaves the domain).
    3. None lower inside the domain (a filled flat): the whole flow to the priority-flood D8 receiver.
    """
    h, w = zf.shape
    z0 = np.float64(zf[r, c])
    n = 0
    total = 0.0
    edge = False
    for k in range(8):
        rn = r + _DR[k]
        cn = c + _DC[k]
        if rn < 0 or rn >= h or cn < 0 or cn >= w:
            edge = True
            continue
        if not valid[rn, cn]:
            edge = True
            continue
        drop = z0 - np.float64(zf[rn, cn])
        if drop > 0.0:
            wgt = (drop * inv_dist[k]) ** exponent
            rr_out[n] = rn
            cc_out[n] = cn
            frac_out[n] = wgt
            total += wgt
            n += 1
    if n > 0:
        if quantize:
            m = 0
            qsum = 0.0
            for t in range(n):
                q = np.float64(np.int64(0.5 + frac_out[t] / total * 15.0))
                if q > 0.0:
                    rr_out[m] = rr_out[t]
                    cc_out[m] = cc_out[t]
                    frac_out[m] = q
                    qsum += q
                    m += 1
            for t in range(m):
                frac_out[t] = frac_out[t] / qsum
            return m
        for t in range(n):
            frac_out[t] = frac_out[t] / total
        return n
    if edge:
        return 0
    rn, cn = _d8_target(d8, valid, r, c)
    if rn < 0:
        return 0  # pit (0/255) or unknown code: outlet
    rr_out[0] = rn
    cc_out[0] = cn
    frac_out[0] = 1.0
    return 1


@numba.njit(nogil=True, cache=True)
def _mfd_accumulate_nb(zf, valid, d8, inv_dist, exponent, quantize, queue):
    h, w = zf.shape
    rr = np.empty(8, np.int64)
    cc = np.empty(8, np.int64)
    fr = np.empty(8, np.float64)
    indeg = np.zeros((h, w), np.uint8)
    n_valid = 0
    for r in range(h):
        for c in range(w):
            if not valid[r, c]:
                continue
            n_valid += 1
            m = _receivers(zf, valid, d8, r, c, inv_dist, exponent, quantize, rr, cc, fr)
            for t in range(m):
                indeg[rr[t], cc[t]] += 1
    acc = np.zeros((h, w), np.float64)
    outlet = np.zeros((h, w), np.bool_)
    tail = 0
    for r in range(h):
        for c in range(w):
            if valid[r, c]:
                acc[r, c] = 1.0  # the cell itself
                if indeg[r, c] == 0:
                    queue[tail] = r * w + c
                    tail += 1
    head = 0
    # Kahn's topological order: a cell is processed once all its donors are (for distinct elevations this is
    # the order of decreasing filled elevation; on filled flats it follows the D8 tree)
    while head < tail:
        p = np.int64(queue[head])
        head += 1
        r = p // w
        c = p - r * w
        m = _receivers(zf, valid, d8, r, c, inv_dist, exponent, quantize, rr, cc, fr)
        if m == 0:
            outlet[r, c] = True
        a = acc[r, c]
        for t in range(m):
            acc[rr[t], cc[t]] += a * fr[t]
            indeg[rr[t], cc[t]] -= 1
            if indeg[rr[t], cc[t]] == 0:
                queue[tail] = rr[t] * w + cc[t]
                tail += 1
    return acc, outlet, head, n_valid


@numba.njit(nogil=True, cache=True)
def _d8_target(d8, valid, r, c):
    """Row, column of the D8 receiver of (r, c); (-1, -1) for a pit, nodata or a receiver outside the grid."""
    h, w = d8.shape
    code = np.int64(d8[r, c])
    for k in range(8):
        if code == (1 << k):
            rn = r + _DR[k]
            cn = c + _DC[k]
            if 0 <= rn < h and 0 <= cn < w and valid[rn, cn]:
                return rn, cn
            return -1, -1
    return -1, -1


@numba.njit(nogil=True, cache=True)
def _fill_along_d8_nb(orig, valid, d8, stack):
    """Exact priority-flood fill from the D8 tree: filled(c) = max(z(c), filled(receiver(c))).

    pyflwdir stores ``z + (z_spill − z)`` in float32, which can differ from the spill elevation by one ulp
    and then point a D8 code one ulp uphill; recomputing along the tree removes that."""
    h, w = orig.shape
    out = np.full((h, w), np.nan, dtype=np.float32)
    done = np.zeros((h, w), np.bool_)
    nmax = stack.shape[0]
    for r in range(h):
        for c in range(w):
            if not valid[r, c] or done[r, c]:
                continue
            n = 0
            rr = r
            cc = c
            while True:  # walk downstream to a pit or a finished cell
                if n >= nmax:
                    return out, False  # a cycle in the D8 codes
                stack[n] = rr * w + cc
                n += 1
                rn, cn = _d8_target(d8, valid, rr, cc)
                if rn < 0 or done[rn, cn]:
                    break
                rr = rn
                cc = cn
            for t in range(n - 1, -1, -1):  # unwind from the most downstream cell
                p = np.int64(stack[t])
                r2 = p // w
                c2 = p - r2 * w
                z = orig[r2, c2]
                rn, cn = _d8_target(d8, valid, r2, c2)
                if rn >= 0 and done[rn, cn] and out[rn, cn] > z:
                    z = out[rn, cn]
                out[r2, c2] = z
                done[r2, c2] = True
    return out, True


def fill_depressions_d8(dem):
    """Depression-filled DEM and its priority-flood D8 codes (pyflwdir ``fill_depressions``'s algorithm).

    Parameters
    ----------
    dem : numpy.ndarray, shape (h, w), float32
        Elevation in metres. NaN is nodata.

    Returns
    -------
    filled : numpy.ndarray, shape (h, w), float32
        Depression-filled elevation (every depression raised to its pour point; NaN where ``dem`` is NaN),
        recomputed exactly along the D8 tree as ``filled = max(z, filled(receiver))`` (pyflwdir's own output
        ``z + Δ`` can be one float32 ulp off the pour-point elevation).
    d8 : numpy.ndarray, shape (h, w), uint8
        D8 codes (pyflwdir/ESRI: 1 E, 2 SE, 4 S, 8 SW, 16 W, 32 NW, 64 N, 128 NE; 0/255 pit, 247 nodata).
        Each code points to a neighbour whose filled elevation is lower or equal (exactly).

    Raises
    ------
    ValueError
        If ``dem`` is not 2-D or not floating-point, contains ±inf, or is entirely NaN.

    Notes
    -----
    Outlets at the edge of the valid domain (``outlets="edge"``, grid border and NaN holes); all other
    depressions filled (``max_depth=-1``), as in :func:`flow_directions_d8`. The D8 codes come from
    :func:`gep_raster.kernels.priority_flood.priority_flood_d8`, identical to pyflwdir's (tested).

    References
    ----------
    Wang, L. & Liu, H. (2006). *Int. J. Geogr. Inf. Sci.* 20(2):193–213.
    """
    arr = _check_dem(dem)
    nan = np.isnan(arr)
    if arr.size > MAX_CELLS:  # pragma: no cover - beyond the packed flood key: pyflwdir with int64 indices
        from pyflwdir.dem import fill_depressions

        work = np.where(nan, _SENTINEL, arr).astype(np.float32, copy=False)
        _, d8 = fill_depressions(work, outlets="edge", nodata=float(_SENTINEL), max_depth=-1.0)
        del work
        d8 = np.asarray(d8, dtype=np.uint8)
    else:
        d8, _ = priority_flood_d8(np.where(nan, np.float32(0.0), arr), ~nan)
    valid = ~nan
    del nan
    stack = np.empty(max(int(valid.sum()), 1), dtype=np.int32 if arr.size < 2**31 - 1 else np.int64)
    filled, ok = _fill_along_d8_nb(arr, valid, d8, stack)
    if not ok:  # pragma: no cover - pyflwdir returns a tree
        raise RuntimeError("pyflwdir fill_depressions returned D8 codes with a cycle")
    return filled, d8


def _inv_distances(cellsize_x: float, cellsize_y: float) -> np.ndarray:
    """1/distance to each neighbour (E, SE, S, SW, W, NW, N, NE), scaled so that the shortest step is 1.

    Square cells give 1 and 1/√2, the factors pygeoprocessing applies to the elevation drop."""
    d = min(cellsize_x, cellsize_y)
    diag = math.hypot(cellsize_x, cellsize_y)
    if cellsize_x == cellsize_y:
        inv_diag = 1.0 / math.sqrt(2.0)
    else:
        inv_diag = d / diag
    return np.array([d / cellsize_x, inv_diag, d / cellsize_y, inv_diag,
                     d / cellsize_x, inv_diag, d / cellsize_y, inv_diag], dtype=np.float64)


def mfd_accumulation(filled_dem, d8, cellsize_x: float, cellsize_y: float, *, exponent: float = 1.0,
                     quantize: bool = False):
    """Multiple-flow-direction accumulation of one unit per cell on a depression-filled DEM.

    Each valid cell gives its accumulated flow ``acc`` (itself + what it received) to its strictly lower
    valid neighbours n in proportion to::

        w_n = (Δz_n / L_n)^p            Δz_n = z − z_n > 0,  L_n = cell spacing (diagonal: hypot(dx, dy))
        f_n = w_n / Σ w                 (quantize: q_n = int(0.5 + 15·f_n), f_n = q_n / Σ q)

    A cell with no lower neighbour is an **outlet** when it touches the grid edge or a nodata cell (its
    flow leaves the domain), otherwise (inside a filled flat) it passes everything to its D8 receiver.
    Cells are processed in a topological order (Kahn), so every donor is done before its receivers.

    Parameters
    ----------
    filled_dem : numpy.ndarray, shape (h, w), float32
        Depression-filled elevation (m), NaN = nodata; see :func:`fill_depressions_d8`.
    d8 : numpy.ndarray, shape (h, w), uint8
        D8 codes of the fill (pyflwdir/ESRI codes), used only on filled flats.
    cellsize_x, cellsize_y : float
        Cell width and height (m, > 0).
    exponent : float, keyword-only, default 1.0
        p (> 0). 1.0 = pygeoprocessing ``flow_dir_mfd`` (weights = drop, × 1/√2 on diagonals), the router of
        InVEST SDR; Freeman (1991) used 1.1.
    quantize : bool, keyword-only, default False
        Round the shares to 4-bit integers out of 15 as pygeoprocessing stores them (True reproduces InVEST;
        False gives the exact proportional partition).

    Returns
    -------
    acc : numpy.ndarray, shape (h, w), float64
        Upslope area in cells, **including the cell itself** (≥ 1; fractional). NaN outside the valid cells.
    outlet : numpy.ndarray, shape (h, w), bool
        Cells whose flow leaves the domain. ``acc[outlet].sum()`` equals the number of valid cells
        (mass conservation, up to rounding).

    Raises
    ------
    ValueError
        Shapes differ, inputs are not 2-D, ``filled_dem`` is not floating-point, a cell size or the exponent is
        not finite and positive.
    RuntimeError
        The flow graph has a cycle (only possible if ``d8`` points uphill, i.e. does not belong to
        ``filled_dem``).

    References
    ----------
    Freeman, T.G. (1991). Calculating catchment area with divergent flow based on a regular grid.
    *Computers & Geosciences* 17(3):413–422.
    Quinn, P., Beven, K., Chevallier, P. & Planchon, O. (1991). The prediction of hillslope flow paths for
    distributed hydrological modelling using digital terrain models. *Hydrol. Process.* 5(1):59–79.
    natcap/pygeoprocessing ``routing.flow_dir_mfd`` and ``flow_accumulation_mfd`` (drop-weighted shares packed
    in 4 bits; accumulation = 1 + Σ upstream shares).
    Kahn, A.B. (1962). Topological sorting of large networks. *Commun. ACM* 5(11):558–562.
    """
    z = np.asarray(filled_dem)
    codes = np.asarray(d8)
    if z.ndim != 2 or codes.shape != z.shape:
        raise ValueError(f"filled_dem and d8 must be 2-D arrays of one shape, got {z.shape} and {codes.shape}")
    if not np.issubdtype(z.dtype, np.floating):
        raise ValueError(f"filled_dem must be floating-point with NaN as nodata, got dtype {z.dtype}")
    vals = []
    for name, v in (("cellsize_x", cellsize_x), ("cellsize_y", cellsize_y), ("exponent", exponent)):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, got {v!r}") from None
        if not np.isfinite(f) or f <= 0.0:
            raise ValueError(f"{name} must be a finite positive number, got {v!r}")
        vals.append(f)
    dx, dy, p = vals
    z = z.astype(np.float32, copy=False)
    valid = np.isfinite(z)
    n = int(valid.sum())
    queue = np.empty(max(n, 1), dtype=np.int32 if z.size < 2**31 - 1 else np.int64)
    acc, outlet, done, n_valid = _mfd_accumulate_nb(z, valid, codes.astype(np.uint8, copy=False),
                                                    _inv_distances(dx, dy), p, bool(quantize), queue)
    del queue
    if done != n_valid:  # pragma: no cover - guarded by construction
        raise RuntimeError(f"MFD routing: {n_valid - done} cells lie on a flow cycle; the D8 codes do not belong "
                           "to the filled DEM")
    acc[~valid] = np.nan
    return acc, outlet


def upslope_area_mfd(dem, transform, *, latlon: bool = False, exponent: float = 1.0,
                     quantize: bool = True) -> np.ndarray:
    """Upslope contributing area of every cell, in cells, by multiple-flow-direction routing.

    Steps: priority-flood depression filling (Wang & Liu 2006; :func:`fill_depressions_d8`), then
    :func:`mfd_accumulation` (Freeman 1991 / Quinn et al. 1991 proportional partition to the lower neighbours,
    weights (drop/distance)^p).

    Parameters
    ----------
    dem : numpy.ndarray, shape (h, w), float32
        Elevation in metres. NaN is nodata.
    transform : affine.Affine or 6-tuple
        Pixel-corner affine transform of a north-up projected grid; |a| and |e| are the cell sizes (m).
    latlon : bool, keyword-only, default False
        Must be False: the slope weights need metric distances.
    exponent : float, keyword-only, default 1.0
        p of the weights (1.0 as pygeoprocessing / InVEST SDR; Freeman 1991 used 1.1).
    quantize : bool, keyword-only, default True
        4-bit shares as pygeoprocessing (InVEST-compatible numbers); False for the exact partition.

    Returns
    -------
    numpy.ndarray, shape (h, w), float32
        Upslope area in cells including the cell itself (≥ 1, fractional), like :func:`upslope_area`. NaN where
        ``dem`` is NaN. Accumulated in float64.

    Raises
    ------
    ValueError
        If ``dem`` is not 2-D or not floating-point, contains ±inf, or is entirely NaN; if ``transform`` is
        malformed or rotated; if ``latlon`` is True; or if ``exponent`` is not finite and positive.

    Notes
    -----
    Differences from pygeoprocessing ``flow_dir_mfd`` (InVEST): on filled flats InVEST routes towards the
    plateau's drain by distance; here the flow follows the priority-flood D8 tree (same totals, possibly a
    different split across the flat). A cell without lower neighbours that touches the edge or nodata is an
    outlet here; InVEST first looks for a downhill drain of its plateau.
    """
    if latlon:
        raise ValueError("upslope_area_mfd needs a projected grid (metres): the MFD weights use slopes")
    aff = _as_affine(transform)
    if aff.b != 0 or aff.d != 0:
        raise ValueError(f"transform must be north-up (no rotation) for MFD routing, got {tuple(aff)[:6]}")
    filled, d8 = fill_depressions_d8(dem)
    acc, _ = mfd_accumulation(filled, d8, abs(aff.a), abs(aff.e), exponent=exponent, quantize=quantize)
    return acc.astype(np.float32)


def upslope_cells(dem, transform, *, method: str = "d8", latlon: bool = False, **options) -> np.ndarray:
    """Upslope area in cells (including the cell) by the routing ``method`` of the LS factor.

    Parameters
    ----------
    dem, transform, latlon
        As in :func:`upslope_area`.
    method : {"d8", "mfd"}, keyword-only
        ``"d8"``: :func:`upslope_area` (pyflwdir). ``"mfd"``: :func:`upslope_area_mfd`.
    **options
        Passed to :func:`upslope_area_mfd` (``exponent``, ``quantize``); none for D8.

    Returns
    -------
    numpy.ndarray, shape (h, w), float32
        Cells draining through each cell, including itself; NaN where ``dem`` is NaN.

    Raises
    ------
    ValueError
        Unknown ``method``, options given for D8, or any error of the called function.
    """
    if method == "d8":
        if options:
            raise ValueError(f"D8 routing takes no options, got {sorted(options)}")
        return upslope_area(dem, transform, latlon=latlon)
    if method == "mfd":
        return upslope_area_mfd(dem, transform, latlon=latlon, **options)
    raise ValueError(f"routing method must be one of {ROUTING_METHODS}, got {method!r}")
