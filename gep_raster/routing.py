"""Flow routing on a DEM with pyflwdir: depression filling, D8 directions, upslope area.

This is a **global** operation. One cell's upslope area can depend on every cell of the DEM, so
it cannot be computed chunk by chunk with ``dask.array.map_overlap``. It runs in memory on the
whole DEM.

Memory: the peak for pyflwdir fill + D8 + accumulation is about 33 bytes per pixel above the
input DEM. This was measured here at 3000×3000 with int32 cell indices, and it agrees with the
project figure. Add 4 B/px for the NaN→sentinel copy of the DEM and 4 B/px for the float32
result. Rasters of ≥ 2³¹ cells need int64 indices and more memory. A 10 000 × 10 000 DEM
therefore needs about 4 GB.
"""
from __future__ import annotations

import numpy as np

__all__ = ["flow_directions_d8", "upslope_cells_from_flwdir", "upslope_area"]

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
    This is a **global, in-memory** operation on the whole DEM, not a ``map_overlap`` kernel.
    Peak memory is ≈ 33 B/px (pyflwdir fill + D8 + accumulation, measured) plus the DEM copy and
    the result, about 41 B/px above the input. See the module docstring. This matches the
    "flow accumulation" used by the InVEST SDR LS factor (FA ≥ 1, ``(FA − 1)·D²`` upslope of
    the inlet), except that InVEST routes with MFD by default (D8 is optional in recent
    versions); here it is always D8.

    References
    ----------
    Wang, L. & Liu, H. (2006). *Int. J. Geogr. Inf. Sci.* 20(2):193–213.
    O'Callaghan, J.F. & Mark, D.M. (1984). The extraction of drainage networks from digital
    elevation data. *Comput. Vis. Graph. Image Process.* 28:323–344 (D8).
    """
    flw = flow_directions_d8(dem, transform, latlon=latlon)
    return upslope_cells_from_flwdir(flw)
