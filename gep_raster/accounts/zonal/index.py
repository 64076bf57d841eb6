"""The coverage index of one polygon layer on one grid: build, cache (save/load), queries."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ...errors import VectorError
from ...grid import RefGrid
from .accumulate import _accumulate, _window_entries
from .arrays import _concat
from .boundary_scan import _scan_layer
from .exactextract_engine import _exactextract_boxes
from .geometry import _check_crs, _checked_geometries, _grid_rings
from .layout import _finalize_parts, _finalize_runs
from .native_engine import _native_boxes
from .settings import _EPS, _FORMAT_VERSION, _SNAP, BAND_ROWS, ENGINES, MERGE_CELLS


_ARRAYS = ("run_ptr", "run_c0", "run_c1", "run_poly", "run_reach",
           "part_ptr", "part_col", "part_poly", "part_frac")


class CoverageIndex:
    """Exact coverage fractions of every polygon of a layer on a RefGrid, stored compactly.

    Build it with :meth:`build` (one entry per polygon of a layer) or :meth:`build_union`
    (one entry for the dissolved union of the layer), then sum rasters with
    :meth:`accumulate` (one block at a time) or :meth:`zonal_sum` (a whole array). The
    explicit (polygon, cell, fraction) entries of a window are materialised on demand by
    :meth:`entries`.

    Attributes
    ----------
    grid : RefGrid
        The grid the fractions refer to.
    layer_name : str
        Name of the polygon layer, used in messages.
    n_polygons : int
        Number of polygons (rows of the layer, including those outside the grid, which
        have no entries and sum to 0).
    key : str or None
        Cache key (:meth:`cache_key`) of the layer and grid the index was built from.
    run_ptr : numpy.ndarray of int64, shape (height + 1,)
        Runs of grid row ``r`` are ``run_ptr[r]:run_ptr[r+1]``.
    run_c0, run_c1 : numpy.ndarray of int32, shape (n_runs,)
        Columns ``c0:c1`` (end exclusive) of each run of fully covered cells (fraction
        exactly 1), sorted by (row, c0, polygon).
    run_poly : numpy.ndarray of int32, shape (n_runs,)
        Polygon position (0-based, in layer order) of each run.
    run_reach : numpy.ndarray of int32, shape (n_runs,)
        Running maximum of ``run_c1`` within the row (runs of overlapping polygons may
        overlap; this keeps the window search a binary search).
    part_ptr : numpy.ndarray of int64, shape (height + 1,)
        Partial cells of grid row ``r`` are ``part_ptr[r]:part_ptr[r+1]``.
    part_col, part_poly : numpy.ndarray of int32, shape (n_partial,)
        Column and polygon of each partially covered cell, sorted by (row, col, polygon).
    part_frac : numpy.ndarray of float32 (float64 accepted when constructed directly),
        shape (n_partial,)
        exactextract's coverage fraction (0 < f, f != 1) of the cell's area.

    Notes
    -----
    Memory: ``16 × n_runs + 12 × n_partial + 16 × (height + 1)`` bytes (:attr:`nbytes`),
    i.e. O(boundary cells + runs), not O(covered cells). Read-only after construction;
    :meth:`accumulate` releases the GIL and may run concurrently on distinct ``out`` arrays.

    Source: coverage fractions by exactextract (Baston, exactextract, "background"
    documentation: exact cell coverage fractions,
    https://isciences.github.io/exactextract/background.html).
    """

    def __init__(self, grid: RefGrid, layer_name: str, n_polygons: int, *, run_ptr, run_c0,
                 run_c1, run_poly, run_reach, part_ptr, part_col, part_poly, part_frac,
                 key: str | None = None):
        self.grid = grid
        self.layer_name = layer_name
        self.n_polygons = int(n_polygons)
        self.key = key
        self.run_ptr = np.ascontiguousarray(run_ptr, np.int64)
        self.run_c0 = np.ascontiguousarray(run_c0, np.int32)
        self.run_c1 = np.ascontiguousarray(run_c1, np.int32)
        self.run_poly = np.ascontiguousarray(run_poly, np.int32)
        self.run_reach = np.ascontiguousarray(run_reach, np.int32)
        self.part_ptr = np.ascontiguousarray(part_ptr, np.int64)
        self.part_col = np.ascontiguousarray(part_col, np.int32)
        self.part_poly = np.ascontiguousarray(part_poly, np.int32)
        pf = np.asarray(part_frac)
        self.part_frac = np.ascontiguousarray(pf, np.float32 if pf.dtype == np.float32
                                              else np.float64)
        H = grid.height
        if self.run_ptr.shape != (H + 1,) or self.part_ptr.shape != (H + 1,):
            raise ValueError(f"row offsets must have length height + 1 = {H + 1}")
        self._n_entries = int(np.sum(self.run_c1.astype(np.int64) - self.run_c0)) \
            + int(self.part_col.size)
        self._covered: np.ndarray | None = None

    # -- construction -----------------------------------------------------------------
    @classmethod
    def build(cls, polygons, grid: RefGrid, *, layer_name: str = "layer",
              engine: str = "native") -> "CoverageIndex":
        """Compute the exact coverage of every polygon of ``polygons`` on ``grid``.

        Parameters
        ----------
        polygons : geopandas.GeoDataFrame or geopandas.GeoSeries
            Polygon layer, already in ``grid.crs``. Polygons and MultiPolygons; each row
            becomes polygon ``i`` (its position, 0-based) of the index. Rows outside the
            grid are kept with no entries. Polygons smaller than a pixel get their exact
            fraction of that pixel. Polygons may overlap.
        grid : RefGrid
            Reference grid.
        layer_name : str, keyword-only
            Name used in error messages.
        engine : {"native", "exactextract"}, keyword-only
            How the fractions of the cells the boundary may touch are computed (interior
            cells are exactly 1 either way). ``"native"`` (default): exact cell areas of
            each ring by cover/area accumulation in float64 (numba), rounded to float32 and
            combined over the rings exactly as exactextract does; ``"exactextract"``:
            exactextract ``["cell_id", "coverage"]`` on the pieces (ring ∩ box). Both give
            exactextract's fractions: cell values agree with exactextract on the whole
            polygon except for rare last-bit (one float32 ulp) differences (a few cells in
            1e5, from float64 rounding of intersection points), sums to ~1e-12 relative.
            The exactextract engine is ~10× slower (≈30 µs per box piece).

        Returns
        -------
        CoverageIndex

        Raises
        ------
        ValueError
            Unknown ``engine``.
        CRSError
            The layer has no CRS or its CRS differs from ``grid.crs`` (compared with
            pyproj equivalence, ignoring axis order); the message names ``layer_name``.
        VectorError
            A geometry is null, empty, not polygonal or invalid; the message names the
            polygon's position and ``layer_name`` (e.g. "polygon 3 of layer 'township'
            has an empty geometry").

        Notes
        -----
        Interior cells come from an even-odd scanline of the rings (fraction exactly 1);
        the cells the boundary can touch are grouped into pixel-aligned boxes whose
        fractions come from the engine (module docstring). Time and memory are
        O(boundary cells + rows spanned), not O(covered cells). Fractions as defined by
        exactextract (Baston, exactextract, "background": exact cell coverage fractions).
        """
        _check_engine(engine)
        _check_crs(polygons, grid, layer_name)
        geoms = _checked_geometries(polygons, layer_name)
        return cls._from_geometries(geoms, grid, layer_name,
                                    _coverage_key(geoms, grid, union=False), engine)

    @classmethod
    def build_union(cls, polygons, grid: RefGrid, layer_name: str = "layer", *,
                    engine: str = "native") -> "CoverageIndex":
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
        engine : {"native", "exactextract"}, keyword-only
            As :meth:`build`.

        Returns
        -------
        CoverageIndex
            ``n_polygons == 1``.

        Raises
        ------
        ValueError, CRSError, VectorError
            As :meth:`build`; also VectorError if the layer has no rows.
        """
        import shapely

        _check_engine(engine)
        _check_crs(polygons, grid, layer_name)
        geoms = _checked_geometries(polygons, layer_name)
        if len(geoms) == 0:
            raise VectorError(f"layer '{layer_name}' has no polygons; cannot build its union")
        key = _coverage_key(geoms, grid, union=True)
        union = shapely.union_all(geoms)
        if not union.is_valid:  # rare precision artefacts of overlay
            union = shapely.make_valid(union)
        if union.geom_type == "GeometryCollection":
            union = shapely.union_all(
                [g for g in union.geoms if g.geom_type in ("Polygon", "MultiPolygon")])
        return cls._from_geometries(np.array([union], dtype=object), grid,
                                    f"{layer_name} (union)", key, engine)

    @classmethod
    def _from_geometries(cls, geoms, grid: RefGrid, layer_name: str, key: str | None,
                         engine: str = "native"):
        H, W = grid.height, grid.width
        n = len(geoms)
        npoly = max(n, 1)
        runs_list = []
        parts_list = []
        fracs_list = []
        if n:
            u, v, ring_ptr, poly_ring_ptr, ring_polys, ring_sign = _grid_rings(geoms, grid)
            boxes, pairs, interior = _scan_layer(u, v, ring_ptr, poly_ring_ptr, np.int64(H),
                                                 np.int64(W), np.int64(BAND_ROWS[engine]),
                                                 np.int64(MERGE_CELLS[engine]), float(_EPS))
            runs_list.append(interior)
            if engine == "native":
                r, pa, fr = _native_boxes(u, v, ring_ptr, poly_ring_ptr, ring_sign, boxes,
                                          np.int64(H), np.int64(W), np.int64(BAND_ROWS[engine]),
                                          float(_SNAP))
                runs_list.append(r)
                parts_list.append(pa)
                fracs_list.append(fr)
            else:
                _exactextract_boxes(ring_polys, ring_sign, boxes, pairs, grid, runs_list,
                                    parts_list, fracs_list)
            del u, v
        runs = _concat(runs_list, (0, 4), np.int32)
        parts = _concat(parts_list, (0, 3), np.int32)
        fracs = _concat(fracs_list, (0,), np.float32)
        del runs_list, parts_list, fracs_list
        run_ptr, c0, c1, rpoly, reach = _finalize_runs(runs, np.int64(H), np.int64(npoly))
        del runs
        part_ptr, pcol, ppoly, pfrac = _finalize_parts(parts, fracs, np.int64(H),
                                                       np.int64(npoly))
        del parts, fracs
        return cls(grid, layer_name, n, run_ptr=run_ptr, run_c0=c0, run_c1=c1,
                   run_poly=rpoly, run_reach=reach, part_ptr=part_ptr, part_col=pcol,
                   part_poly=ppoly, part_frac=pfrac, key=key)

    # -- cache ------------------------------------------------------------------------
    @staticmethod
    def cache_key(polygons, grid: RefGrid, *, union: bool = False,
                  layer_name: str = "layer") -> str:
        """Key identifying the coverage of a layer on a grid (for :meth:`save`/:meth:`load`).

        Parameters
        ----------
        polygons : geopandas.GeoDataFrame or geopandas.GeoSeries
            Polygon layer (validated as in :meth:`build`).
        grid : RefGrid
        union : bool
            Key of :meth:`build_union` rather than :meth:`build`.
        layer_name : str
            Name used in error messages.

        Returns
        -------
        str
            sha256 hex digest of the save format version, the exactextract version, the
            grid (CRS WKT, transform, shape), ``union`` and the polygons' 2-D
            little-endian WKB in layer order.

        Raises
        ------
        VectorError
            As :meth:`build`.
        """
        geoms = _checked_geometries(polygons, layer_name)
        return _coverage_key(geoms, grid, union)

    def save(self, path) -> Path:
        """Write the index to ``path`` (numpy ``.npz``, uncompressed).

        Parameters
        ----------
        path : str or os.PathLike
            File to write (written as given; no suffix is added).

        Returns
        -------
        pathlib.Path
        """
        path = Path(path)
        t = tuple(float(x) for x in tuple(self.grid.transform)[:6])
        meta = {"format": _FORMAT_VERSION, "key": self.key, "layer_name": self.layer_name,
                "n_polygons": self.n_polygons, "crs": self.grid.crs.to_wkt(),
                "transform": t, "width": self.grid.width, "height": self.grid.height}
        with open(path, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)),
                     **{name: getattr(self, name) for name in _ARRAYS})
        return path

    @classmethod
    def load(cls, path, *, key: str | None = None) -> "CoverageIndex":
        """Read an index written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike
        key : str, optional
            Expected :meth:`cache_key`; a file with another key is refused.

        Returns
        -------
        CoverageIndex

        Raises
        ------
        ValueError
            The file is not a coverage index of this format, or its key differs from ``key``
            (the layer, the grid or exactextract changed: rebuild it).
        """
        from affine import Affine
        from rasterio.crs import CRS

        with np.load(path, allow_pickle=False) as z:
            if "meta" not in z.files:
                raise ValueError(f"{path}: not a CoverageIndex file")
            meta = json.loads(str(z["meta"][()]))
            if meta.get("format") != _FORMAT_VERSION:
                raise ValueError(f"{path}: CoverageIndex format {meta.get('format')}, "
                                 f"expected {_FORMAT_VERSION}; rebuild it")
            if key is not None and meta.get("key") != key:
                raise ValueError(f"{path}: coverage of layer '{meta.get('layer_name')}' was "
                                 f"built for another layer/grid (key {meta.get('key')}, "
                                 f"expected {key}); rebuild it")
            arrays = {name: z[name] for name in _ARRAYS}
        grid = RefGrid(CRS.from_wkt(meta["crs"]), Affine(*meta["transform"]),
                       int(meta["width"]), int(meta["height"]))
        return cls(grid, meta["layer_name"], meta["n_polygons"], key=meta["key"], **arrays)

    @classmethod
    def build_cached(cls, polygons, grid: RefGrid, cache_dir, *, layer_name: str = "layer",
                     union: bool = False, engine: str = "native") -> "CoverageIndex":
        """:meth:`build` (or :meth:`build_union`), reusing ``cache_dir/<key>.npz`` if present.

        Parameters
        ----------
        polygons, grid, layer_name
            As :meth:`build`.
        cache_dir : str or os.PathLike
            Directory of cached indexes (created if missing).
        union : bool
            Cache :meth:`build_union` instead.
        engine : {"native", "exactextract"}
            Engine used when the index is built (not part of the key: both give
            exactextract's fractions).

        Returns
        -------
        CoverageIndex

        Raises
        ------
        CRSError, VectorError
            As :meth:`build`.
        """
        _check_crs(polygons, grid, layer_name)
        key = cls.cache_key(polygons, grid, union=union, layer_name=layer_name)
        cache_dir = Path(cache_dir)
        path = cache_dir / f"{key}.npz"
        if path.exists():
            idx = cls.load(path, key=key)
            idx.grid = grid
            idx.layer_name = f"{layer_name} (union)" if union else layer_name
            return idx
        idx = (cls.build_union(polygons, grid, layer_name, engine=engine) if union
               else cls.build(polygons, grid, layer_name=layer_name, engine=engine))
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        idx.save(tmp)
        tmp.replace(path)
        return idx

    # -- queries ----------------------------------------------------------------------
    @property
    def n_entries(self) -> int:
        """Number of (polygon, cell) pairs of positive fraction (cells in runs + partial)."""
        return self._n_entries

    @property
    def n_runs(self) -> int:
        """Number of stored runs of fully covered cells."""
        return int(self.run_c0.size)

    @property
    def n_partial(self) -> int:
        """Number of stored partially covered (polygon, cell) pairs."""
        return int(self.part_col.size)

    @property
    def nbytes(self) -> int:
        """Memory held by the index arrays, in bytes."""
        return int(sum(getattr(self, name).nbytes for name in _ARRAYS))

    def __repr__(self) -> str:
        return (f"CoverageIndex(layer_name={self.layer_name!r}, n_polygons={self.n_polygons}, "
                f"n_entries={self.n_entries}, n_runs={self.n_runs}, "
                f"n_partial={self.n_partial}, grid={self.grid.width}x{self.grid.height})")

    def _check_window(self, r0, r1, c0, c1):
        H, W = self.grid.shape
        if not (0 <= r0 <= r1 <= H and 0 <= c0 <= c1 <= W):
            raise ValueError(f"window rows {r0}:{r1}, cols {c0}:{c1} is not inside the "
                             f"{H}x{W} grid")

    def covered_window(self) -> tuple[int, int, int, int] | None:
        """Smallest window ``(r0, r1, c0, c1)`` (ends exclusive) holding every covered cell.

        Returns
        -------
        tuple of int, or None
            None when no polygon touches the grid. O(height + runs + partial cells).
        """
        if self._n_entries == 0:
            return None
        rows = np.flatnonzero((np.diff(self.run_ptr) > 0) | (np.diff(self.part_ptr) > 0))
        cmin = min([int(a.min()) for a in (self.run_c0, self.part_col) if a.size])
        cmax = max([int(a.max()) for a in (self.run_c1 - 1, self.part_col) if a.size]) + 1
        return int(rows[0]), int(rows[-1]) + 1, cmin, cmax

    def entries(self, r0: int, r1: int, c0: int, c1: int):
        """Entries inside the window rows ``r0:r1``, columns ``c0:c1`` (end exclusive).

        Materialised on demand from the runs and partial cells (O(window cells)).

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
            Coverage fraction (0, 1] (exactly 1 for interior cells).

        All four have the same length, sorted by (row, col, polygon).

        Raises
        ------
        ValueError
            The window is not inside the grid.
        """
        r0, r1, c0, c1 = int(r0), int(r1), int(c0), int(c1)
        self._check_window(r0, r1, c0, c1)
        return _window_entries(self.run_ptr, self.run_c0, self.run_c1, self.run_poly,
                               self.run_reach, self.part_ptr, self.part_col, self.part_poly,
                               self.part_frac, r0, r1, c0, c1, max(self.n_polygons, 1))

    def _all_entries(self):
        return self.entries(0, self.grid.height, 0, self.grid.width)

    @property
    def poly(self) -> np.ndarray:
        """int32 (n_entries,): polygon of every entry of the grid, sorted by (row, col, poly).

        Materialised on each access (O(covered cells) memory): for inspection and tests;
        use :meth:`entries` on windows, :meth:`accumulate` for sums."""
        return self._all_entries()[0]

    @property
    def row(self) -> np.ndarray:
        """int32 (n_entries,): grid row of every entry (see :attr:`poly`; materialised)."""
        return self._all_entries()[1]

    @property
    def col(self) -> np.ndarray:
        """int32 (n_entries,): grid column of every entry (see :attr:`poly`; materialised)."""
        return self._all_entries()[2]

    @property
    def frac(self) -> np.ndarray:
        """float64 (n_entries,): fraction of every entry (see :attr:`poly`; materialised)."""
        return self._all_entries()[3]

    @property
    def row_ptr(self) -> np.ndarray:
        """int64 (height + 1,): entries of row ``r`` of :attr:`poly` are
        ``row_ptr[r]:row_ptr[r+1]`` (materialised)."""
        H, W = self.grid.shape
        ptr = np.zeros(H + 1, np.int64)
        if H and W:
            _, row, _, _ = self.entries(0, H, 0, W)
            ptr[1:] = np.cumsum(np.bincount(row, minlength=H))
        return ptr

    def accumulate(self, block: np.ndarray, r0: int, c0: int, out: np.ndarray,
                   valid_area_out: np.ndarray | None = None, *, bands=None) -> None:
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
            (n_polygons, k) for a 3-D block ((n_polygons, len(bands)) with ``bands``)
            ``out[p] += Σ frac · value`` over the block's cells covered by polygon p.
        valid_area_out : numpy.ndarray, float64, shape (n_polygons,), optional
            ``+= Σ frac · pixel_area_m2`` (m2, row-dependent area) over the covered cells
            where the block (its first summed band if 3-D) is not NaN.
        bands : sequence of int, keyword-only, optional
            Bands of a 3-D block to sum, in the order of the columns of ``out`` (default: every
            band). Sums a subset of a stack of outputs without copying it (a 1024² block of 17
            outputs, 13 summed: the copy took about 0.8 % of a bench run).

        Raises
        ------
        ValueError
            Block outside the grid, wrong ndim/shape of ``out`` or ``valid_area_out``, ``bands``
            out of range or given for a 2-D block.
        TypeError
            ``out``/``valid_area_out`` not float64, or block not a float array.

        Notes
        -----
        A numba loop over the runs and partial cells of the window (float64 accumulation;
        a run is summed first, then added to ``out``), with the GIL released; not safe to
        call concurrently with the same ``out``. Sums by exact coverage fractions (Baston,
        exactextract, "background").
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
            k = block.shape[0] if bands is None else len(bands)
            if out.shape != (self.n_polygons, k):
                raise ValueError(f"out must have shape ({self.n_polygons}, {k}) for a "
                                 f"{k}-band block, got {out.shape}")
            o2 = out
        else:
            raise ValueError(f"block must be 2-D or 3-D, got shape {block.shape}")
        if bands is None:
            bands = np.arange(b3.shape[0], dtype=np.int64)
        else:
            if block.ndim != 3:
                raise ValueError("bands is for a 3-D block")
            bands = np.asarray(bands, dtype=np.int64).ravel()
            if bands.size and (bands.min() < 0 or bands.max() >= b3.shape[0]):
                raise ValueError(f"bands {bands.tolist()} out of range for a {b3.shape[0]}-band block")
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
        if h == 0 or w == 0 or bands.size == 0 or self._n_entries == 0:
            return
        _accumulate(self.run_ptr, self.run_c0, self.run_c1, self.run_poly, self.run_reach,
                    self.part_ptr, self.part_col, self.part_poly, self.part_frac, b3, bands,
                    r0, c0, o2, self.grid.row_pixel_area_m2, va, with_valid)

    def covered_area_m2(self) -> np.ndarray:
        """Area of each polygon inside the grid, in m2.

        Returns
        -------
        numpy.ndarray of float64, shape (n_polygons,)
            ``Σ frac × pixel_area_m2(row)`` over all cells (true, row-dependent pixel area
            on geographic grids), i.e. area(polygon ∩ grid). 0 for polygons outside.
        """
        if self._covered is None:
            H = self.grid.height
            area = self.grid.row_pixel_area_m2
            rows = np.repeat(np.arange(H), np.diff(self.run_ptr))
            w = (self.run_c1.astype(np.float64) - self.run_c0) * area[rows]
            cov = np.bincount(self.run_poly, weights=w, minlength=self.n_polygons)
            rows = np.repeat(np.arange(H), np.diff(self.part_ptr))
            w = self.part_frac.astype(np.float64) * area[rows]
            cov = cov + np.bincount(self.part_poly, weights=w, minlength=self.n_polygons)
            self._covered = cov[:self.n_polygons].astype(np.float64)
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


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")


def _grid_key_parts(grid: RefGrid) -> bytes:
    t = tuple(float(x) for x in tuple(grid.transform)[:6])
    return json.dumps({"crs": grid.crs.to_wkt(), "transform": [repr(x) for x in t],
                       "width": int(grid.width), "height": int(grid.height)},
                      sort_keys=True).encode()


def _coverage_key(geoms, grid: RefGrid, union: bool) -> str:
    """sha256 hex digest of (format, exactextract version, grid, union flag, polygons' WKB)."""
    import shapely

    try:
        from importlib.metadata import version
        ee_version = version("exactextract")
    except Exception:  # pragma: no cover - metadata missing
        ee_version = "unknown"
    h = hashlib.sha256()
    h.update(f"gep_raster.accounts.zonal.CoverageIndex/{_FORMAT_VERSION}/exactextract {ee_version}/"
             f"union={bool(union)}/n={len(geoms)}\n".encode())
    h.update(_grid_key_parts(grid))
    if len(geoms):
        for w in shapely.to_wkb(np.asarray(geoms, dtype=object), output_dimension=2,
                                byte_order=1, include_srid=False):
            h.update(len(w).to_bytes(8, "little"))
            h.update(w)
    return h.hexdigest()
