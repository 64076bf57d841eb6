"""Terrain kernels: slope and the aspect ("x") factor from a DEM with Horn (1981) differences.

The public functions (slope, aspect factor, and both from one pass) are thin Python wrappers. They check the input and raise
:class:`ValueError` before any numba code runs. The per-pixel work is done by
``@numba.njit(nogil=True, cache=True)`` kernels, so dask can run the chunks in threads.

Missing neighbours (NaN, or outside the grid) are filled by one rule that reads only the 3×3
window. A NaN neighbour and a neighbour beyond the grid edge are handled in exactly the same
way, so ``dask.array.map_overlap(f, depth=1, boundary=np.nan)`` returns the same result as one
numpy call, whatever the chunking.

Two fill rules are offered (``edges=``):

``"extrapolate"`` (default): planar extrapolation through the centre value ``e``. In the
    window ``a b c / d e f / g h i``:

    1. a missing orthogonal neighbour (``b``, ``d``, ``f``, ``h``) becomes ``2·e − opposite``
       when the opposite orthogonal neighbour exists, otherwise ``e``.
       For example, a missing ``d`` becomes ``2e − f``, or ``e`` if ``f`` is missing too.
    2. a missing diagonal neighbour then becomes the plane through ``e`` and its two adjacent
       orthogonal neighbours (as filled in step 1): ``a = b + d − e``, ``c = b + f − e``,
       ``g = d + h − e``, ``i = f + h − e``.

    This gives the exact gradient of any plane at edges, at corners and next to NaN holes.
    At such pixels the Horn difference becomes a one-sided difference.

``"centre"``: GDAL ``gdaldem -compute_edges``. Every missing neighbour is replaced by the centre
    value (GDAL ``ComputeVal``: ``afWin[k] = afWin[4]``). On a tilted plane this halves the
    gradient component across an edge (slope 0.05 instead of 0.1 on ``z = 0.1·x``).

A NaN centre always gives NaN.
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["slope_kernel", "aspect_factor_kernel", "slope_aspect_kernel", "slope_percent_invest_kernel", "relief_kernel",
           "EDGE_MODES"]

#: Accepted values of the ``edges`` argument, mapped to the integer flag used by the kernels.
EDGE_MODES = {"extrapolate": 0, "centre": 1}


# --------------------------------------------------------------------------------------
# numba kernels (private: no validation here)
# --------------------------------------------------------------------------------------
@numba.njit(nogil=True, cache=True)
def _get(dem, r, c):
    """Value at (r, c) as float64, NaN outside the grid."""
    h, w = dem.shape
    if r < 0 or r >= h or c < 0 or c >= w:
        return np.nan
    return np.float64(dem[r, c])


@numba.njit(nogil=True, cache=True)
def _horn_sums(dem, r, c, mode):
    """Horn numerators (gx, gy) at (r, c), filling missing neighbours by ``mode``.

    gx = (c + 2f + i) − (a + 2d + g)   (eastward, along columns)
    gy = (g + 2h + i) − (a + 2b + c)   (southward, along rows)
    The centre value (r, c) must be finite.
    """
    e = np.float64(dem[r, c])
    a = _get(dem, r - 1, c - 1)
    b = _get(dem, r - 1, c)
    cc = _get(dem, r - 1, c + 1)
    d = _get(dem, r, c - 1)
    f = _get(dem, r, c + 1)
    g = _get(dem, r + 1, c - 1)
    hh = _get(dem, r + 1, c)
    i = _get(dem, r + 1, c + 1)
    if mode == 0:
        # step 1: orthogonal neighbours, from the ORIGINAL opposite values
        nb = b
        nh = hh
        nd = d
        nf = f
        if np.isnan(b):
            nb = e if np.isnan(hh) else 2.0 * e - hh
        if np.isnan(hh):
            nh = e if np.isnan(b) else 2.0 * e - b
        if np.isnan(d):
            nd = e if np.isnan(f) else 2.0 * e - f
        if np.isnan(f):
            nf = e if np.isnan(d) else 2.0 * e - d
        # step 2: diagonals from the plane through e and the (filled) orthogonals
        if np.isnan(a):
            a = nb + nd - e
        if np.isnan(cc):
            cc = nb + nf - e
        if np.isnan(g):
            g = nd + nh - e
        if np.isnan(i):
            i = nf + nh - e
        b = nb
        hh = nh
        d = nd
        f = nf
    else:
        if np.isnan(a):
            a = e
        if np.isnan(b):
            b = e
        if np.isnan(cc):
            cc = e
        if np.isnan(d):
            d = e
        if np.isnan(f):
            f = e
        if np.isnan(g):
            g = e
        if np.isnan(hh):
            hh = e
        if np.isnan(i):
            i = e
    gx = (cc + 2.0 * f + i) - (a + 2.0 * d + g)
    gy = (g + 2.0 * hh + i) - (a + 2.0 * b + cc)
    return gx, gy


@numba.njit(nogil=True, cache=True, inline="always")
def _horn_sums_fast(dem, r, c, mode):
    """:func:`_horn_sums`, reading the 3 x 3 window directly when it lies inside the grid and holds no NaN
    (the common case: no bounds checks); the same arithmetic, so the same values."""
    h, w = dem.shape
    if 0 < r < h - 1 and 0 < c < w - 1:
        a = np.float64(dem[r - 1, c - 1])
        b = np.float64(dem[r - 1, c])
        cc = np.float64(dem[r - 1, c + 1])
        d = np.float64(dem[r, c - 1])
        f = np.float64(dem[r, c + 1])
        g = np.float64(dem[r + 1, c - 1])
        hh = np.float64(dem[r + 1, c])
        i = np.float64(dem[r + 1, c + 1])
        if not (np.isnan(a) or np.isnan(b) or np.isnan(cc) or np.isnan(d) or np.isnan(f) or np.isnan(g)
                or np.isnan(hh) or np.isnan(i)):
            gx = (cc + 2.0 * f + i) - (a + 2.0 * d + g)
            gy = (g + 2.0 * hh + i) - (a + 2.0 * b + cc)
            return gx, gy
    return _horn_sums(dem, r, c, mode)


@numba.njit(nogil=True, cache=True)
def _slope_nb(dem, cellsize_x, cellsize_y, mode):
    h, w = dem.shape
    out = np.empty((h, w), dtype=np.float32)
    sx = 1.0 / (8.0 * cellsize_x)
    sy = 1.0 / (8.0 * cellsize_y)
    for r in range(h):
        for c in range(w):
            if np.isnan(dem[r, c]):
                out[r, c] = np.float32(np.nan)
                continue
            gx, gy = _horn_sums_fast(dem, r, c, mode)
            p = gx * sx
            q = gy * sy
            out[r, c] = np.float32(np.sqrt(p * p + q * q))
    return out


@numba.njit(nogil=True, cache=True)
def _aspect_factor_nb(dem, cellsize_x, cellsize_y, mode):
    h, w = dem.shape
    out = np.empty((h, w), dtype=np.float32)
    sx = 1.0 / (8.0 * cellsize_x)
    sy = 1.0 / (8.0 * cellsize_y)
    for r in range(h):
        for c in range(w):
            if np.isnan(dem[r, c]):
                out[r, c] = np.float32(np.nan)
                continue
            gx, gy = _horn_sums_fast(dem, r, c, mode)
            p = gx * sx
            q = gy * sy
            norm = np.sqrt(p * p + q * q)
            if norm == 0.0:
                out[r, c] = np.float32(1.0)  # flat: aspect undefined, alpha := 0
            else:
                out[r, c] = np.float32((abs(p) + abs(q)) / norm)
    return out


@numba.njit(nogil=True, cache=True)
def _slope_aspect_nb(dem, cellsize_x, cellsize_y, mode, trim):
    # both terms from one Horn sum per cell, the arithmetic of _slope_nb and _aspect_factor_nb;
    # the ``trim`` outer rows/columns (a map_overlap halo) are read but not computed
    h, w = dem.shape
    out = np.empty((2, h - 2 * trim, w - 2 * trim), dtype=np.float32)
    sx = 1.0 / (8.0 * cellsize_x)
    sy = 1.0 / (8.0 * cellsize_y)
    for r in range(trim, h - trim):
        for c in range(trim, w - trim):
            ro, co = r - trim, c - trim
            if np.isnan(dem[r, c]):
                out[0, ro, co] = np.float32(np.nan)
                out[1, ro, co] = np.float32(np.nan)
                continue
            gx, gy = _horn_sums_fast(dem, r, c, mode)
            p = gx * sx
            q = gy * sy
            norm = np.sqrt(p * p + q * q)
            out[0, ro, co] = np.float32(norm)
            out[1, ro, co] = np.float32(1.0) if norm == 0.0 else np.float32((abs(p) + abs(q)) / norm)
    return out


@numba.njit(nogil=True, cache=True)
def _pair(u, u_ok, v, v_ok, mid, mid_ok, e, sqrt2):
    # one outer row/column pair of pygeoprocessing.calculate_slope: (difference, denominator weight)
    if u_ok and v_ok:
        return u - v, 2
    if u_ok and mid_ok:
        return u - mid, 1
    if mid_ok and v_ok:
        return mid - v, 1
    if u_ok:
        return (u - e) * sqrt2, 1
    if v_ok:
        return (e - v) * sqrt2, 1
    return 0.0, 0


@numba.njit(nogil=True, cache=True)
def _slope_invest_nb(dem, cellsize_x, cellsize_y, trim):
    h, w = dem.shape
    out = np.empty((h - 2 * trim, w - 2 * trim), dtype=np.float32)
    sqrt2 = 2.0 ** 0.5
    win = np.empty(9)
    ok = np.empty(9, np.bool_)
    for r in range(trim, h - trim):
        for c in range(trim, w - trim):
            e = np.float64(dem[r, c])
            if np.isnan(e):
                out[r - trim, c - trim] = np.float32(np.nan)
                continue
            for i in range(3):
                for j in range(3):
                    rr = r + i - 1
                    cc = c + j - 1
                    if rr < 0 or rr >= h or cc < 0 or cc >= w or np.isnan(dem[rr, cc]):
                        ok[3 * i + j] = False
                        win[3 * i + j] = 0.0
                    else:
                        ok[3 * i + j] = True
                        win[3 * i + j] = np.float64(dem[rr, cc])
            a, b, cv, d, f, g, hh, iv = win[0], win[1], win[2], win[3], win[5], win[6], win[7], win[8]
            ao, bo, co, do, fo, go, ho, io = ok[0], ok[1], ok[2], ok[3], ok[5], ok[6], ok[7], ok[8]
            dzdx = 0.0
            xd = 0
            t, n = _pair(a, ao, cv, co, b, bo, e, sqrt2)  # a - c
            dzdx += t
            xd += n
            if do and fo:  # d - f
                dzdx += 2.0 * (d - f)
                xd += 4
            elif do:
                dzdx += 2.0 * (d - e)
                xd += 2
            elif fo:
                dzdx += 2.0 * (e - f)
                xd += 2
            t, n = _pair(g, go, iv, io, hh, ho, e, sqrt2)  # g - i
            dzdx += t
            xd += n
            dzdy = 0.0
            yd = 0
            t, n = _pair(a, ao, g, go, d, do, e, sqrt2)  # a - g
            dzdy += t
            yd += n
            if bo and ho:  # b - h
                dzdy += 2.0 * (b - hh)
                yd += 4
            elif bo:
                dzdy += 2.0 * (b - e)
                yd += 2
            elif ho:
                dzdy += 2.0 * (e - hh)
                yd += 2
            t, n = _pair(cv, co, iv, io, f, fo, e, sqrt2)  # c - i
            dzdy += t
            yd += n
            gx = dzdx / (xd * cellsize_x) if xd != 0 else 0.0
            gy = dzdy / (yd * cellsize_y) if yd != 0 else 0.0
            out[r - trim, c - trim] = np.float32(100.0 * np.sqrt(gx * gx + gy * gy))
    return out


# --------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------
def _check_dem(dem, name="dem") -> np.ndarray:
    arr = np.asarray(dem)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (rows, cols) array, got ndim={arr.ndim} with shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            f"{name} must be a floating-point array with NaN as nodata, got dtype {arr.dtype}; "
            "convert it with .astype(np.float32) after setting nodata cells to NaN")
    return arr.astype(np.float32, copy=False)


def _check_cellsize(value, name) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number (metres), got {value!r}") from None
    if not np.isfinite(v) or v <= 0.0:
        raise ValueError(f"{name} must be a finite positive cell size in metres, got {value!r}")
    return v


def _check_edges(edges) -> int:
    try:
        return EDGE_MODES[edges]
    except (KeyError, TypeError):
        raise ValueError(
            f"edges must be one of {sorted(EDGE_MODES)}, got {edges!r}") from None


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------
def slope_kernel(dem, cellsize_x, cellsize_y, *, edges: str = "extrapolate") -> np.ndarray:
    """Slope gradient (rise/run = tan θ) of a DEM by Horn's 3×3 finite differences.

    With the 3×3 window ``a b c / d e f / g h i`` centred on ``e``::

        dz/dx = ((c + 2f + i) − (a + 2d + g)) / (8 · cellsize_x)
        dz/dy = ((g + 2h + i) − (a + 2b + c)) / (8 · cellsize_y)
        slope = sqrt((dz/dx)² + (dz/dy)²)

    Parameters
    ----------
    dem : numpy.ndarray, shape (h, w), float32 (other float dtypes are cast to float32)
        Elevation in metres. NaN is nodata.
    cellsize_x, cellsize_y : float
        Cell width and height in metres (positive). For geographic grids, pass the metric
        size of the row (the caller converts degrees to metres).
    edges : {"extrapolate", "centre"}, keyword-only
        How a missing neighbour is filled (outside the grid or NaN; both are treated the same).
        See the module docstring. ``"extrapolate"`` (default) is exact on planes.
        ``"centre"`` reproduces GDAL ``gdaldem slope -compute_edges``.

    Returns
    -------
    numpy.ndarray, shape (h, w), float32
        Slope as tan θ (dimensionless; multiply by 100 for percent). NaN where ``dem`` is NaN.
        The arithmetic is done in float64, then rounded to float32.

    Raises
    ------
    ValueError
        If ``dem`` is not 2-D or not floating-point, if a cell size is zero, negative or
        not finite, or if ``edges`` is unknown.

    Notes
    -----
    The result depends only on each pixel's 3×3 window, and a NaN neighbour is treated like
    the grid edge. So ``dask.array.map_overlap(slope_kernel, depth=1, boundary=np.nan, ...)``
    is bit-identical to the numpy call for any chunking.

    References
    ----------
    Horn, B.K.P. (1981). Hill shading and the reflectance map. *Proc. IEEE* 69(1):14–47,
    eq. for the 3×3 weighted gradient (weights 1-2-1). Edge rule ``"centre"``:
    GDAL ``gdaldem_lib.cpp`` ``ComputeVal`` with ``bComputeAtEdges``.
    """
    arr = _check_dem(dem)
    csx = _check_cellsize(cellsize_x, "cellsize_x")
    csy = _check_cellsize(cellsize_y, "cellsize_y")
    mode = _check_edges(edges)
    return _slope_nb(arr, csx, csy, mode)


def aspect_factor_kernel(dem, cellsize_x, cellsize_y, *, edges: str = "extrapolate") -> np.ndarray:
    """Aspect factor ``x = |sin α| + |cos α|`` of Desmet & Govers (1996), from Horn gradients.

    ``α`` is the aspect (direction of the steepest gradient). With the metric Horn gradient
    components ``p = dz/dx`` and ``q = dz/dy`` (see :func:`slope_kernel`),
    ``sin α = p/|∇z|`` and ``cos α = q/|∇z|``, so::

        x = (|p| + |q|) / sqrt(p² + q²)          (1 ≤ x ≤ √2)

    On flat cells (``p = q = 0``) the aspect is undefined. There ``x = 1`` (``α = 0``): the
    flow width equals the cell size.

    Parameters
    ----------
    dem : numpy.ndarray, shape (h, w), float32 (other float dtypes are cast to float32)
        Elevation in metres. NaN is nodata.
    cellsize_x, cellsize_y : float
        Cell width and height in metres (positive).
    edges : {"extrapolate", "centre"}, keyword-only
        Missing-neighbour rule, the same as :func:`slope_kernel`.

    Returns
    -------
    numpy.ndarray, shape (h, w), float32
        ``x`` (dimensionless, in [1, √2]). NaN where ``dem`` is NaN. The arithmetic is done in
        float64. Like :func:`slope_kernel`, the result does not depend on chunking under
        ``map_overlap(depth=1, boundary=np.nan)``.

    Raises
    ------
    ValueError
        If ``dem`` is not 2-D or not floating-point, if a cell size is zero, negative or
        not finite, or if ``edges`` is unknown.

    References
    ----------
    Desmet, P.J.J. & Govers, G. (1996). A GIS procedure for automatically calculating the USLE
    LS factor on topographically complex landscape units. *J. Soil Water Conserv.*
    51(5):427–433 (``x_ij = |sin α_ij| + |cos α_ij|``).
    Horn (1981), *Proc. IEEE* 69(1):14–47, for the gradient.
    InVEST SDR ≤ 3.8.0 used this on-pixel aspect. 3.8.1–3.13 used an MFD-weighted aspect.
    InVEST ADR-0001 records the return to the on-pixel form in 3.14.
    """
    arr = _check_dem(dem)
    csx = _check_cellsize(cellsize_x, "cellsize_x")
    csy = _check_cellsize(cellsize_y, "cellsize_y")
    mode = _check_edges(edges)
    return _aspect_factor_nb(arr, csx, csy, mode)


def slope_aspect_kernel(dem, cellsize_x, cellsize_y, *, edges: str = "extrapolate", trim: int = 0) -> np.ndarray:
    """Slope (:func:`slope_kernel`) and aspect factor (:func:`aspect_factor_kernel`) in one pass.

    Each cell's Horn gradient is computed once and gives both terms, with the same float64 arithmetic as
    the two separate kernels, so both layers are bit-identical to theirs. The block pass uses it: one
    ``map_overlap`` and one Horn pass per block instead of two.

    Parameters
    ----------
    dem : numpy.ndarray, shape (h, w), float32 (other float dtypes are cast to float32)
        Elevation in metres. NaN is nodata.
    cellsize_x, cellsize_y : float
        Cell width and height in metres (positive).
    edges : {"extrapolate", "centre"}, keyword-only
        Missing-neighbour rule (module docstring).
    trim : int, keyword-only
        Rows and columns at each side of ``dem`` that are a halo (e.g. 1 from ``map_overlap(depth=1)``):
        they are read as neighbours but not returned.

    Returns
    -------
    numpy.ndarray, shape (2, h - 2·trim, w - 2·trim), float32
        ``[0]`` slope tan θ, ``[1]`` aspect factor x (1 … √2); NaN where ``dem`` is NaN.

    Raises
    ------
    ValueError
        As :func:`slope_kernel`; also if ``trim`` is negative or leaves no cell.

    References
    ----------
    Horn (1981), *Proc. IEEE* 69(1):14–47; Desmet & Govers (1996), *J. Soil Water Conserv.* 51(5):427–433.
    """
    arr = _check_dem(dem)
    csx = _check_cellsize(cellsize_x, "cellsize_x")
    csy = _check_cellsize(cellsize_y, "cellsize_y")
    mode = _check_edges(edges)
    trim = int(trim)
    if trim < 0 or 2 * trim >= min(arr.shape):
        raise ValueError(f"trim must be >= 0 and leave cells of the {arr.shape} dem, got {trim}")
    return _slope_aspect_nb(arr, csx, csy, mode, trim)


def slope_percent_invest_kernel(dem, cellsize_x, cellsize_y, *, trim: int = 0) -> np.ndarray:
    """Percent slope with the finite differences and nodata rule of pygeoprocessing ``calculate_slope``.

    This is the slope of InVEST SDR (computed there on the pit-filled DEM). In the window
    ``a b c / d e f / g h i``::

        dz/dx = [(a − c) + 2(d − f) + (g − i)] / (8·cellsize_x)
        dz/dy = [(a − g) + 2(b − h) + (c − i)] / (8·cellsize_y)
        slope = 100 · sqrt((dz/dx)² + (dz/dy)²)          (percent)

    A missing neighbour (NaN or outside the grid) changes each term as pygeoprocessing does: an outer pair
    (a, c) uses the middle cell (a − b or b − c, weight 1 instead of 2), else the centre times √2
    ((a − e)·√2, weight 1); a middle pair uses the centre (2(d − e), weight 2 instead of 4); the sum is
    divided by the sum of the weights present (0 weights give a zero component).

    Parameters
    ----------
    dem : numpy.ndarray, shape (h, w), float32
        Elevation in metres, NaN = nodata.
    cellsize_x, cellsize_y : float
        Cell width and height in metres (> 0).
    trim : int, keyword-only
        Halo rows/columns read but not returned (``map_overlap(depth=1, boundary=np.nan)`` gives the whole-
        raster result for any chunking, since outside the grid counts as nodata, as in pygeoprocessing).

    Returns
    -------
    numpy.ndarray, shape (h − 2·trim, w − 2·trim), float32
        Slope in percent; NaN where ``dem`` is NaN. float64 arithmetic, rounded to float32 as InVEST's
        ``slope.tif``.

    Raises
    ------
    ValueError
        ``dem`` not 2-D or not floating-point, a cell size not finite and positive, a bad ``trim``.

    References
    ----------
    natcap/pygeoprocessing 2.4.11 ``geoprocessing_core.calculate_slope`` (Zevenbergen & Thorne 1987 with the
    diagonal cells, i.e. Horn 1981 weights); natcap/invest 3.20.2 ``sdr.py`` (slope of ``pit_filled_dem``).
    """
    arr = _check_dem(dem)
    csx = _check_cellsize(cellsize_x, "cellsize_x")
    csy = _check_cellsize(cellsize_y, "cellsize_y")
    trim = int(trim)
    if trim < 0 or 2 * trim >= min(arr.shape):
        raise ValueError(f"trim must be >= 0 and leave cells of the {arr.shape} dem, got {trim}")
    return _slope_invest_nb(arr, csx, csy, trim)


def relief_kernel(dem, *, trim: int = 0) -> np.ndarray:
    """Local relief ΔH = max − min of the elevations in each cell's 3×3 window (m).

    The terrain-roughness input of RWEQ's Smith-Carson factor (Kr = 0.2 ΔH² / L, :mod:`gep_raster.kernels.wind`):
    ΔH taken over a 3×3 DEM window as the public RWEQ raster code of Weil & Talukdar does
    (``charlottegiseleweil/winderosion`` ``wind_erosion.py``, ``calculate_roughness_length`` [V2]). Neighbours that
    are NaN or outside the grid are left out of the window; the centre NaN gives NaN.

    Parameters
    ----------
    dem : numpy.ndarray, shape (h, w), float32 or float64
        Elevation in metres, NaN = nodata.
    trim : int, keyword-only
        Halo rows/columns read but not returned (``map_overlap(depth=1, boundary=np.nan)`` then gives the whole-
        raster result for any chunking).

    Returns
    -------
    numpy.ndarray, shape (h − 2·trim, w − 2·trim), float32
        ΔH in metres (>= 0); NaN where ``dem`` is NaN.

    Raises
    ------
    ValueError
        ``dem`` not 2-D or not floating-point, a bad ``trim``.
    """
    arr = _check_dem(dem)
    trim = int(trim)
    if trim < 0 or 2 * trim >= min(arr.shape):
        raise ValueError(f"trim must be >= 0 and leave cells of the {arr.shape} dem, got {trim}")
    pad = np.pad(arr.astype(np.float64), 1, constant_values=np.nan)
    h, w = arr.shape
    win = np.stack([pad[i:i + h, j:j + w] for i in range(3) for j in range(3)])
    # fmax / fmin skip NaN (an all-NaN window gives NaN, without nanmax's warning; its centre is NaN anyway)
    rel = np.fmax.reduce(win, axis=0) - np.fmin.reduce(win, axis=0)
    rel[np.isnan(arr)] = np.nan
    if trim:
        rel = rel[trim:h - trim, trim:w - trim]
    return rel.astype(np.float32)
