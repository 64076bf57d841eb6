"""Exact zonal sums of many rasters over one polygon layer, streamed block by block.

The coverage of every polygon on the reference grid is computed **once** per
(:class:`~gep_raster.grid.RefGrid`, polygon layer) and stored as a sparse list of
``(polygon, row, col, fraction)`` entries. Summing a raster over the polygons is then a
single pass over those entries (a numba loop), for any number of rasters (services, years,
bands) and any chunking of the grid.

Coverage fractions come from exactextract (D. Baston, ISciences,
https://github.com/isciences/exactextract; algorithm described in its "background"
documentation, https://isciences.github.io/exactextract/background.html): for each cell the
exact fraction of its area covered by the polygon is computed by walking the polygon rings
through the grid, so that cells crossed by the boundary get their true partial coverage
(not the all-or-nothing answer of centre-point rasterisation) and polygons smaller than a
pixel still receive their share. Fractions are planar, in the grid's CRS units; on a
geographic grid they are fractions of the cell in degree space, which are multiplied by the
true (ellipsoidal) area of the cell's row (:attr:`RefGrid.row_pixel_area_m2`).

Precision
---------
exactextract returns its coverage fractions as float32 values (promoted to float64 here): a
boundary cell's fraction carries a rounding error up to ~6e-8, interior cells are exactly
1. Sums over a partition of the grid therefore reproduce the grid total to ~1e-7 relative
(exactly when polygon edges follow pixel edges); accumulation itself is float64.

Storage layout
--------------
Entries are sorted by (row, col) with a row offset table ``row_ptr`` (length height+1):
entries of grid row ``r`` are ``row_ptr[r]:row_ptr[r+1]``, sorted by column, so the
entries of any window ``(r0, r1, c0, c1)`` are found with two binary searches per row.
Memory is 20 bytes per entry (int32 polygon, row and column, float64 fraction); a layer
that tiles the grid has about one entry per covered pixel plus its boundary pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from .errors import CRSError, VectorError
from .grid import RefGrid

__all__ = ["CoverageIndex"]


# ---------------------------------------------------------------------------------------
# numba kernels
# ---------------------------------------------------------------------------------------
@njit(cache=True)
def _sort_entries(cell, poly_in, frac_in, width, height):
    """Stable LSD counting sort of entries by (row, col) of their flat cell id.

    Returns poly (int32), row (int32), col (int32), frac (float64) sorted, and row_ptr
    (int64, height+1). O(n + width + height); every pass reads sequentially.
    """
    n = cell.size
    row0 = np.empty(n, np.int32)
    col0 = np.empty(n, np.int32)
    cptr = np.zeros(width + 1, np.int64)
    row_ptr = np.zeros(height + 1, np.int64)
    for i in range(n):
        r = cell[i] // width
        c = cell[i] - r * width
        row0[i] = r
        col0[i] = c
        cptr[c + 1] += 1
        row_ptr[r + 1] += 1
    for c in range(width):
        cptr[c + 1] += cptr[c]
    for r in range(height):
        row_ptr[r + 1] += row_ptr[r]
    # pass 1: stable counting sort by column (moving the data, so pass 2 reads sequentially)
    row1 = np.empty(n, np.int32)
    poly1 = np.empty(n, np.int32)
    frac1 = np.empty(n, np.float64)
    for i in range(n):
        c = col0[i]
        k = cptr[c]
        cptr[c] = k + 1
        row1[k] = row0[i]
        poly1[k] = poly_in[i]
        frac1[k] = frac_in[i]
    # col1 is implied by the buckets: rebuild it sequentially
    col1 = col0  # reuse the buffer
    k = 0
    for c in range(width):
        while k < cptr[c]:
            col1[k] = c
            k += 1
    # pass 2: stable counting sort by row
    pos = row_ptr[:-1].copy()
    poly = np.empty(n, np.int32)
    row = np.empty(n, np.int32)
    col = np.empty(n, np.int32)
    frac = np.empty(n, np.float64)
    for j in range(n):
        r = row1[j]
        k = pos[r]
        pos[r] = k + 1
        poly[k] = poly1[j]
        row[k] = r
        col[k] = col1[j]
        frac[k] = frac1[j]
    return poly, row, col, frac, row_ptr


@njit(nogil=True, cache=True, inline="always")
def _lower_bound(col, lo, hi, value):
    """First index in the sorted slice col[lo:hi] with col >= value (hi if none)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if col[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(nogil=True, cache=True)
def _window_index(row_ptr, col, r0, r1, c0, c1, width):
    """Indices (int64) of the entries inside rows r0:r1, cols c0:c1."""
    full = c0 == 0 and c1 == width
    n = 0
    for r in range(r0, r1):
        if full:
            n += row_ptr[r + 1] - row_ptr[r]
        else:
            s = _lower_bound(col, row_ptr[r], row_ptr[r + 1], c0)
            e = _lower_bound(col, s, row_ptr[r + 1], c1)
            n += e - s
    idx = np.empty(n, np.int64)
    m = 0
    for r in range(r0, r1):
        s = row_ptr[r]
        e = row_ptr[r + 1]
        if not full:
            s = _lower_bound(col, s, e, c0)
            e = _lower_bound(col, s, e, c1)
        for k in range(s, e):
            idx[m] = k
            m += 1
    return idx


@njit(nogil=True, cache=True)
def _accumulate(row_ptr, poly, col, frac, block, r0, c0, width, out, row_area, valid_out,
                with_valid):
    """out[poly, b] += frac * block[b, row-r0, col-c0] over the entries of the block window.

    block: (k, h, w) float32/float64; out: (n_polygons, k) float64. NaN values are skipped
    per band. If with_valid, valid_out[poly] += frac * row_area[row] where band 0 is not NaN.
    """
    nb, h, w = block.shape
    c1 = c0 + w
    full = c0 == 0 and c1 == width
    for rr in range(h):
        r = r0 + rr
        s = row_ptr[r]
        e = row_ptr[r + 1]
        if not full:
            s = _lower_bound(col, s, e, c0)
            e = _lower_bound(col, s, e, c1)
        area = row_area[r]
        for k in range(s, e):
            p = poly[k]
            f = frac[k]
            cc = col[k] - c0
            for b in range(nb):
                v = np.float64(block[b, rr, cc])
                if v == v:  # skip NaN (nodata)
                    out[p, b] += f * v
            if with_valid:
                v0 = block[0, rr, cc]
                if v0 == v0:
                    valid_out[p] += f * area


# ---------------------------------------------------------------------------------------
# exactextract glue
# ---------------------------------------------------------------------------------------
def _exactextract_coverage(wkbs: list, grid: RefGrid):
    """Run exactextract ``["cell_id", "coverage"]`` for WKB polygons on ``grid``.

    Returns, per polygon (in input order), a pair (cell_id int64 array, coverage float64
    array); polygons that do not touch the grid get empty arrays.
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

    wkt = grid.crs.to_wkt()
    left, bottom, right, top = grid.bounds
    # a zero-stride raster of the grid's shape: exactextract only needs its extent and
    # resolution; windows read from it cost nothing.
    dummy = np.broadcast_to(np.zeros((), dtype=np.uint8), grid.shape)
    src = NumPyRasterSource(dummy, left, bottom, right, top, srs_wkt=wkt)
    exact_extract(src, _WKBSource(list(wkbs), wkt), ["cell_id", "coverage"],
                  include_cols=[idx_field], output=_Collect())
    return results


def _check_crs(polygons, grid: RefGrid, layer_name: str) -> None:
    from pyproj import CRS as PCRS

    crs = getattr(polygons, "crs", None)
    if crs is None:
        raise CRSError(
            f"layer '{layer_name}' has no CRS; set it (GeoDataFrame.set_crs) and reproject "
            f"it to the grid CRS ({grid.crs.to_string()}) before building its coverage")
    pa = PCRS.from_user_input(crs)
    pb = PCRS.from_user_input(grid.crs.to_wkt())
    if not pa.equals(pb, ignore_axis_order=True):
        raise CRSError(
            f"layer '{layer_name}' is in {pa.to_string()} but the grid is in "
            f"{grid.crs.to_string()}; reproject the layer (GeoDataFrame.to_crs) first")


def _checked_geometries(polygons, layer_name: str) -> np.ndarray:
    """Geometry array of the layer; VectorError on null, empty, non-polygonal or invalid."""
    import shapely

    geoms = np.asarray(getattr(polygons, "geometry", polygons).values, dtype=object)
    index = getattr(polygons, "index", None)

    def where(i):
        label = ""
        if index is not None and index[i] != i:
            label = f" (index label {index[i]!r})"
        return f"polygon {i}{label} of layer '{layer_name}'"

    missing = shapely.is_missing(geoms)
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise VectorError(f"{where(i)} has an empty geometry (null); drop or fix it")
    empty = shapely.is_empty(geoms)
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise VectorError(f"{where(i)} has an empty geometry; drop or fix it")
    types = shapely.get_type_id(geoms)
    bad = ~np.isin(types, (3, 6))  # Polygon, MultiPolygon
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise VectorError(
            f"{where(i)} is a {geoms[i].geom_type}, not a Polygon or MultiPolygon")
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        i = int(np.flatnonzero(invalid)[0])
        raise VectorError(
            f"{where(i)} has an invalid geometry ({shapely.is_valid_reason(geoms[i])}); "
            f"repair it (shapely.make_valid, QGIS 'Fix geometries') "
            f"[{int(invalid.sum())} invalid polygon(s) in the layer]")
    return geoms


# ---------------------------------------------------------------------------------------
# public class
# ---------------------------------------------------------------------------------------
@dataclass(eq=False, repr=False)
class CoverageIndex:
    """Exact coverage fractions of every polygon of a layer on a RefGrid.

    Build it with :meth:`build` (one entry per polygon of a layer) or :meth:`build_union`
    (one entry for the dissolved union of the layer), then sum rasters with
    :meth:`accumulate` (one block at a time) or :meth:`zonal_sum` (a whole array).

    Attributes
    ----------
    grid : RefGrid
        The grid the fractions refer to.
    layer_name : str
        Name of the polygon layer, used in messages.
    n_polygons : int
        Number of polygons (rows of the layer, including those outside the grid, which
        have no entries and sum to 0).
    poly, row, col : numpy.ndarray of int32, shape (n_entries,)
        Polygon position (0-based, in layer order), grid row and grid column of each entry,
        sorted by (row, col).
    frac : numpy.ndarray of float64, shape (n_entries,)
        Fraction (0, 1] of the cell's area covered by the polygon (planar, in CRS units).
    row_ptr : numpy.ndarray of int64, shape (height + 1,)
        Entries of grid row ``r`` are ``row_ptr[r]:row_ptr[r+1]``, sorted by column.

    Notes
    -----
    Source: coverage fractions by exactextract (Baston, exactextract, "background"
    documentation: exact cell coverage fractions,
    https://isciences.github.io/exactextract/background.html).
    """

    grid: RefGrid
    layer_name: str
    n_polygons: int
    poly: np.ndarray
    row: np.ndarray
    col: np.ndarray
    frac: np.ndarray
    row_ptr: np.ndarray
    _covered: np.ndarray | None = field(default=None, init=False)

    # -- construction -----------------------------------------------------------------
    @classmethod
    def build(cls, polygons, grid: RefGrid, *, layer_name: str = "layer") -> "CoverageIndex":
        """Compute the exact coverage of every polygon of ``polygons`` on ``grid``.

        Parameters
        ----------
        polygons : geopandas.GeoDataFrame or geopandas.GeoSeries
            Polygon layer, already in ``grid.crs``. Polygons and MultiPolygons; each row
            becomes polygon ``i`` (its position, 0-based) of the index. Rows outside the
            grid are kept with no entries. Polygons smaller than a pixel get their exact
            fraction of that pixel.
        grid : RefGrid
            Reference grid.
        layer_name : str, keyword-only
            Name used in error messages.

        Returns
        -------
        CoverageIndex

        Raises
        ------
        CRSError
            The layer has no CRS or its CRS differs from ``grid.crs`` (compared with
            pyproj equivalence, ignoring axis order); the message names ``layer_name``.
        VectorError
            A geometry is null, empty, not polygonal or invalid; the message names the
            polygon's position and ``layer_name`` (e.g. "polygon 3 of layer 'township'
            has an empty geometry").

        Notes
        -----
        Fractions come from ``exactextract.exact_extract`` with the operations
        ``["cell_id", "coverage"]`` on an in-memory raster of the grid's extent and shape
        (Baston, exactextract, "background": exact cell coverage fractions).
        """
        import shapely

        _check_crs(polygons, grid, layer_name)
        geoms = _checked_geometries(polygons, layer_name)
        return cls._from_geometries(geoms, grid, layer_name, shapely)

    @classmethod
    def build_union(cls, polygons, grid: RefGrid, layer_name: str = "layer") -> "CoverageIndex":
        """Coverage of the dissolved union of a layer, as a 1-polygon index.

        Used to value the area covered by a set of polygons (e.g. all townships) without
        double counting where polygons overlap.

        Parameters
        ----------
        polygons : geopandas.GeoDataFrame or geopandas.GeoSeries
            Polygon layer in ``grid.crs`` (same requirements as :meth:`build`).
        grid : RefGrid
            Reference grid.
        layer_name : str
            Name used in messages; the index's ``layer_name`` is ``f"{layer_name} (union)"``.

        Returns
        -------
        CoverageIndex
            ``n_polygons == 1``.

        Raises
        ------
        CRSError, VectorError
            As :meth:`build`; also VectorError if the layer has no rows.
        """
        import shapely

        _check_crs(polygons, grid, layer_name)
        geoms = _checked_geometries(polygons, layer_name)
        if len(geoms) == 0:
            raise VectorError(f"layer '{layer_name}' has no polygons; cannot build its union")
        union = shapely.union_all(geoms)
        if not union.is_valid:  # rare precision artefacts of overlay
            union = shapely.make_valid(union)
        if union.geom_type == "GeometryCollection":
            union = shapely.union_all(
                [g for g in union.geoms if g.geom_type in ("Polygon", "MultiPolygon")])
        return cls._from_geometries(np.array([union], dtype=object), grid,
                                    f"{layer_name} (union)", shapely)

    @classmethod
    def _from_geometries(cls, geoms, grid, layer_name, shapely):
        n = len(geoms)
        per_poly = _exactextract_coverage(list(shapely.to_wkb(geoms)), grid) if n else []
        counts = np.zeros(n, np.int64)
        cells, fracs = [], []
        for i, res in enumerate(per_poly):
            if res is None or res[0] is None:
                continue
            c = np.asarray(res[0], dtype=np.int64)
            f = np.asarray(res[1], dtype=np.float64)
            keep = f > 0
            if not keep.all():
                c, f = c[keep], f[keep]
            counts[i] = c.size
            cells.append(c)
            fracs.append(f)
        cell = np.concatenate(cells) if cells else np.empty(0, np.int64)
        frac = np.concatenate(fracs) if fracs else np.empty(0, np.float64)
        poly_in = np.repeat(np.arange(n, dtype=np.int32), counts)
        ncell = grid.width * grid.height
        if cell.size and (cell.min() < 0 or cell.max() >= ncell):  # defensive
            raise VectorError(f"layer '{layer_name}': exactextract returned cell ids outside "
                              f"the grid ({cell.min()}..{cell.max()} vs {ncell} cells)")
        poly, row, col, frac, row_ptr = _sort_entries(cell, poly_in, frac,
                                                      np.int64(grid.width),
                                                      np.int64(grid.height))
        return cls(grid=grid, layer_name=layer_name, n_polygons=n, poly=poly, row=row,
                   col=col, frac=frac, row_ptr=row_ptr)

    # -- queries ----------------------------------------------------------------------
    @property
    def n_entries(self) -> int:
        """Number of stored (polygon, cell) entries."""
        return int(self.frac.size)

    @property
    def nbytes(self) -> int:
        """Memory held by the entry arrays, in bytes."""
        return int(self.poly.nbytes + self.row.nbytes + self.col.nbytes + self.frac.nbytes
                   + self.row_ptr.nbytes)

    def __repr__(self) -> str:
        return (f"CoverageIndex(layer_name={self.layer_name!r}, n_polygons={self.n_polygons}, "
                f"n_entries={self.n_entries}, grid={self.grid.width}x{self.grid.height})")

    def _check_window(self, r0, r1, c0, c1):
        H, W = self.grid.shape
        if not (0 <= r0 <= r1 <= H and 0 <= c0 <= c1 <= W):
            raise ValueError(f"window rows {r0}:{r1}, cols {c0}:{c1} is not inside the "
                             f"{H}x{W} grid")

    def entries(self, r0: int, r1: int, c0: int, c1: int):
        """Entries inside the window rows ``r0:r1``, columns ``c0:c1`` (end exclusive).

        Parameters
        ----------
        r0, r1, c0, c1 : int
            Window on the grid, ``0 <= r0 <= r1 <= height``, ``0 <= c0 <= c1 <= width``.

        Returns
        -------
        poly : numpy.ndarray of int32
            Polygon position of each entry.
        row, col : numpy.ndarray of int32
            Row and column **relative to the window** (``row - r0``, ``col - c0``).
        frac : numpy.ndarray of float64
            Coverage fraction (0, 1].

        All four have the same length, sorted by (row, col).

        Raises
        ------
        ValueError
            The window is not inside the grid.
        """
        r0, r1, c0, c1 = int(r0), int(r1), int(c0), int(c1)
        self._check_window(r0, r1, c0, c1)
        idx = _window_index(self.row_ptr, self.col, r0, r1, c0, c1, self.grid.width)
        return (self.poly[idx], (self.row[idx] - r0).astype(np.int32),
                (self.col[idx] - c0).astype(np.int32), self.frac[idx])

    def accumulate(self, block: np.ndarray, r0: int, c0: int, out: np.ndarray,
                   valid_area_out: np.ndarray | None = None) -> None:
        """Add the polygon sums of one block of an extensive raster to ``out`` (in place).

        Parameters
        ----------
        block : numpy.ndarray, float32 or float64, shape (h, w) or (k, h, w)
            Per-pixel **extensive** amounts (e.g. m3/a per pixel, yuan per pixel) of a
            window whose top-left pixel is (``r0``, ``c0``) on the grid; ``k`` bands
            (e.g. services or years) are summed in one pass. NaN = nodata, skipped
            (per band). ±inf is not skipped and propagates to the sum.
        r0, c0 : int
            Grid row and column of the block's top-left pixel.
        out : numpy.ndarray, float64, shape (n_polygons,) for a 2-D block or
            (n_polygons, k) for a 3-D block
            ``out[p] += Σ frac · value`` over the block's cells covered by polygon p.
        valid_area_out : numpy.ndarray, float64, shape (n_polygons,), optional
            ``+= Σ frac · pixel_area_m2`` (m2, row-dependent area) over the covered cells
            where the block (its first band if 3-D) is not NaN.

        Raises
        ------
        ValueError
            Block outside the grid, wrong ndim/shape of ``out`` or ``valid_area_out``.
        TypeError
            ``out``/``valid_area_out`` not float64, or block not a float array.

        Notes
        -----
        A numba loop over the stored entries of the window (float64 accumulation), with
        the GIL released; not safe to call concurrently with the same ``out``. Sums by
        exact coverage fractions (Baston, exactextract, "background").
        """
        block = np.asarray(block)
        if block.dtype not in (np.float32, np.float64):
            raise TypeError(f"block must be float32 or float64 (NaN = nodata), got {block.dtype}")
        if block.ndim == 2:
            b3 = block[None]
            if out.ndim != 1 or out.shape[0] != self.n_polygons:
                raise ValueError(f"out must have shape ({self.n_polygons},) for a 2-D block, "
                                 f"got {out.shape}")
            o2 = out[:, None]
        elif block.ndim == 3:
            b3 = block
            k = block.shape[0]
            if out.shape != (self.n_polygons, k):
                raise ValueError(f"out must have shape ({self.n_polygons}, {k}) for a "
                                 f"{k}-band block, got {out.shape}")
            o2 = out
        else:
            raise ValueError(f"block must be 2-D or 3-D, got shape {block.shape}")
        if out.dtype != np.float64:
            raise TypeError(f"out must be float64, got {out.dtype}")
        r0, c0 = int(r0), int(c0)
        h, w = b3.shape[1:]
        self._check_window(r0, r0 + h, c0, c0 + w)
        if valid_area_out is not None:
            if valid_area_out.dtype != np.float64:
                raise TypeError(f"valid_area_out must be float64, got {valid_area_out.dtype}")
            if valid_area_out.shape != (self.n_polygons,):
                raise ValueError(f"valid_area_out must have shape ({self.n_polygons},), got "
                                 f"{valid_area_out.shape}")
            va, with_valid = valid_area_out, True
        else:
            va, with_valid = np.zeros(0, np.float64), False
        if h == 0 or w == 0 or b3.shape[0] == 0:
            return
        _accumulate(self.row_ptr, self.poly, self.col, self.frac, b3, r0, c0,
                    self.grid.width, o2, self.grid.row_pixel_area_m2, va, with_valid)

    def covered_area_m2(self) -> np.ndarray:
        """Area of each polygon inside the grid, in m2.

        Returns
        -------
        numpy.ndarray of float64, shape (n_polygons,)
            ``Σ frac × pixel_area_m2(row)`` over all cells (true, row-dependent pixel area
            on geographic grids), i.e. area(polygon ∩ grid). 0 for polygons outside.
        """
        if self._covered is None:
            w = self.frac * self.grid.row_pixel_area_m2[self.row]
            self._covered = np.bincount(self.poly, weights=w, minlength=self.n_polygons)
        return self._covered.copy()

    def zonal_sum(self, array: np.ndarray) -> np.ndarray:
        """Sum a whole-grid extensive raster over every polygon.

        Parameters
        ----------
        array : numpy.ndarray, float32 or float64, shape (height, width) or (k, height, width)
            Per-pixel amounts on the grid; NaN = nodata (skipped).

        Returns
        -------
        numpy.ndarray of float64, shape (n_polygons,) or (n_polygons, k)
            ``Σ frac · value`` per polygon (and band).

        Raises
        ------
        ValueError
            ``array``'s last two dimensions are not ``grid.shape``.
        """
        array = np.asarray(array)
        if array.ndim not in (2, 3) or array.shape[-2:] != self.grid.shape:
            raise ValueError(f"array of shape {array.shape} does not match the grid shape "
                             f"{self.grid.shape}")
        out = np.zeros((self.n_polygons,) if array.ndim == 2
                       else (self.n_polygons, array.shape[0]), np.float64)
        self.accumulate(array, 0, 0, out)
        return out
