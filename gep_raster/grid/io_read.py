"""Lazy reading of raster inputs onto the reference grid.

A :class:`GridSource` is one input (a file or a mosaic of tiles, possibly in other CRSs or
resolutions) seen on the run's :class:`~gep_raster.grid.RefGrid`. ``read(r0, r1, c0, c1)``
returns exactly that window of the reference grid:

* sources already on the grid lattice (same CRS, same pixel size within tolerance, origin on
  the lattice) are read directly, window by window (no resampling);
* continuous sources resampled bilinearly are interpolated by our own kernel from the exact
  position of every destination pixel centre in the source (pyproj), so the value of a pixel
  depends only on its position, never on the window (GDAL's warper derives its kernel scale from
  each window's extent, which made reprojected values depend on the chunking);
* other sources (classes, ``average``/``mode`` when the source is finer) go through a GDAL
  ``WarpedVRT`` with the exact transformer built for that window's transform;
* the resampling comes from the *kind* of variable: categorical -> nearest (mode when the
  source is finer than the grid); continuous -> bilinear (average when the source is finer).

Categorical windows come back as int32 with -1 for nodata; continuous windows as float32
with NaN for nodata. Tiles are combined first-valid-wins in sorted path order.
"""
from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from ..errors import CRSError, RasterError
from .reference import GRID_TOLERANCE, RefGrid
from .remote import RemotePath, explain_open_failure

CATEGORICAL_NODATA = -1
#: Files of one source kept open per thread (least recently used closed first): a block (with its halo) reads at
#: most 4 files of a tiled input, and blocks go row by row.
HANDLES_PER_THREAD = 8


@dataclass(frozen=True)
class _FileInfo:
    path: Path
    crs: object
    transform: object
    width: int
    height: int
    nodata: float | None
    dtype: str
    bounds_on_grid: tuple[float, float, float, float]  # in the reference CRS
    aligned: tuple[int, int] | None  # (row_off, col_off) of the file on the grid lattice, if aligned
    finer: bool  # source pixel smaller than the grid pixel
    scale: tuple[float, float]  # (x, y) destination pixels per source pixel, fixed for the whole file


def _open(path: Path):
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        if isinstance(path, RemotePath):
            raise RasterError(f"cannot open remote raster {explain_open_failure(path, str(exc))}") from None
        raise RasterError(f"{path}: cannot open raster ({exc})") from None


def _lattice_offset(ds, grid: RefGrid, tol: float = GRID_TOLERANCE) -> tuple[int, int] | None:
    if ds.crs != grid.crs:
        return None
    gx, gy = grid.res
    if abs(ds.transform.a - gx) > tol * gx or abs(-ds.transform.e - gy) > tol * gy:
        return None
    if ds.transform.b != 0 or ds.transform.d != 0:
        return None
    col = (ds.transform.c - grid.transform.c) / gx
    row = (grid.transform.f - ds.transform.f) / gy
    if abs(col - round(col)) > 1e-3 or abs(row - round(row)) > 1e-3:
        return None
    return int(round(row)), int(round(col))


class GridSource:
    """One input on the reference grid (lazy; reads only the windows asked for).

    Parameters
    ----------
    name : str
        Config key of the input (used in error messages), e.g. ``inputs.dem``.
    paths : list of Path
        One file or several tiles (sorted; earlier tiles win where tiles overlap).
    grid : RefGrid
        The reference grid.
    kind : {"categorical", "continuous"}
        Decides dtype, nodata convention and default resampling.
    band : int
        1-based band index.
    nodata : float, optional
        Overrides the files' nodata value (or supplies one when the files have none).
    scale : float
        Multiplier applied to continuous values (unit conversion).
    resampling : str, optional
        Overrides the kind's default resampling.

    Raises
    ------
    RasterError
        A file cannot be opened or lacks the band.
    CRSError
        A file has no CRS.
    """

    def __init__(self, name: str, paths: list[Path], grid: RefGrid, kind: str, *, band: int = 1,
                 nodata: float | None = None, scale: float = 1.0, resampling: str | None = None):
        if kind not in ("categorical", "continuous"):
            raise ValueError(f"kind must be categorical or continuous, got {kind!r}")
        self.name, self.paths, self.grid, self.kind = name, list(paths), grid, kind
        self.band, self.scale = band, scale
        self._nodata_override = nodata
        self._resampling_override = resampling
        self._local = threading.local()
        self._token = uuid.uuid4().hex  # identifies this source in the processes its pickled copies go to
        infos = []
        for p in self.paths:
            with _open(p) as ds:
                if ds.crs is None:
                    raise CRSError(f"{name}: {p} has no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:XXXX {p})")
                if band > ds.count:
                    raise RasterError(f"{name}: {p} has {ds.count} band(s); band {band} was asked for")
                nd = nodata if nodata is not None else ds.nodatavals[band - 1]
                b = transform_bounds(ds.crs, grid.crs, *ds.bounds, densify_pts=21) if ds.crs != grid.crs else tuple(ds.bounds)
                if ds.crs == grid.crs:
                    src_px, src_py = abs(ds.transform.a), abs(ds.transform.e)
                else:  # pixel sizes expressed in the grid CRS
                    src_px, src_py = (b[2] - b[0]) / ds.width, (b[3] - b[1]) / ds.height
                infos.append(_FileInfo(p, ds.crs, ds.transform, ds.width, ds.height, nd, ds.dtypes[band - 1], b,
                                       _lattice_offset(ds, grid), src_px < 0.75 * grid.res[0],
                                       (src_px / grid.res[0], src_py / grid.res[1])))
        self.files = infos

    # ------------------------------------------------------------------------------
    def __getstate__(self):
        """Picklable (for Dask distributed workers): the per-thread cache of open rasterio handles and
        pyproj transformers is not pickled.

        A Dask worker unpickles a new copy of the source for every task; the copies of one source
        (same ``_token``) share one per-thread cache in the worker process (:func:`_shared_local`), so
        a worker thread opens each file once per run, not once per block."""
        state = self.__dict__.copy()
        state.pop("_local", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        token = state.get("_token")
        self._local = _shared_local(token) if token else threading.local()

    @property
    def dtype(self):
        return np.dtype(np.int32) if self.kind == "categorical" else np.dtype(np.float32)

    @property
    def fill(self):
        return CATEGORICAL_NODATA if self.kind == "categorical" else np.nan

    def resampling_for(self, info: _FileInfo) -> Resampling:
        if self._resampling_override:
            return Resampling[self._resampling_override]
        if self.kind == "categorical":
            return Resampling.mode if info.finer else Resampling.nearest
        return Resampling.average if info.finer else Resampling.bilinear

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "files": [str(f.path) for f in self.files],
            "band": self.band,
            "nodata": [f.nodata for f in self.files],
            "scale": self.scale,
            "resampling": [("none (on grid)" if f.aligned else self.resampling_for(f).name) for f in self.files],
        }

    def _handle(self, path: Path):
        """Open rasterio handle of ``path`` for this thread: the :data:`HANDLES_PER_THREAD` most recently used
        files stay open, older ones are closed (an open file keeps its decoded blocks in GDAL's cache and its
        own buffers: 128 tiles kept open after one read each, 268 MB peak RSS against 90 MB closing them, which
        made a 32768² run of 64 tiles per input grow by about 0.8 GB)."""
        cache = getattr(self._local, "handles", None)
        if cache is None:
            cache = self._local.handles = OrderedDict()
        ds = cache.get(path)
        if ds is None:
            ds = cache[path] = _open(path)
            while len(cache) > HANDLES_PER_THREAD:
                _, old = cache.popitem(last=False)
                old.close()
        else:
            cache.move_to_end(path)
        return ds

    def _intersects(self, info: _FileInfo, r0, r1, c0, c1) -> bool:
        t = self.grid.transform
        left, right = t.c + c0 * t.a, t.c + c1 * t.a
        top, bottom = t.f + r0 * t.e, t.f + r1 * t.e
        b = info.bounds_on_grid
        return not (b[0] >= right or b[2] <= left or b[1] >= top or b[3] <= bottom)

    def _read_file(self, info: _FileInfo, r0, r1, c0, c1) -> tuple[np.ndarray, np.ndarray]:
        """Raw values and a validity mask for the window from one file."""
        ds = self._handle(info.path)
        h, w = r1 - r0, c1 - c0
        nd = info.nodata
        try:
            if info.aligned is not None:
                ro, co = info.aligned
                win = Window(c0 - co, r0 - ro, w, h)
                fill = nd if nd is not None else 0
                # a window inside the file is read directly; rasterio's boundless read goes through a VRT
                # (1-2.5 ms more per 1024² block, measured on the bench tiles)
                inside_file = r0 >= ro and c0 >= co and r1 <= ro + info.height and c1 <= co + info.width
                arr = ds.read(self.band, window=win, boundless=not inside_file, fill_value=fill)
                inside = np.zeros((h, w), dtype=bool)
                rr0, rr1 = max(0, ro - r0), min(h, ro + info.height - r0)
                cc0, cc1 = max(0, co - c0), min(w, co + info.width - c0)
                if rr1 > rr0 and cc1 > cc0:
                    inside[rr0:rr1, cc0:cc1] = True
            elif self.kind == "continuous" and self.resampling_for(info) == Resampling.bilinear:
                arr, inside = self._bilinear_window(ds, info, r0, r1, c0, c1)
                nd = None
            else:
                wt = self.grid.window_transform(Window(c0, r0, w, h))
                src_nd = nd if nd is not None else _sentinel(info.dtype)
                # continuous values are interpolated in float32 (an int16 source must not be rounded);
                # classes keep their integer type
                if self.kind == "continuous":
                    work_dtype, dst_nd = "float32", float(np.finfo(np.float32).min)
                else:
                    work_dtype, dst_nd = info.dtype, src_nd
                with WarpedVRT(ds, crs=self.grid.crs, transform=wt, width=w, height=h,
                               resampling=self.resampling_for(info), src_nodata=src_nd, nodata=dst_nd,
                               dtype=work_dtype, tolerance=1e-9) as vrt:
                    arr = vrt.read(self.band)
                inside = arr != np.array(dst_nd).astype(arr.dtype)
                nd = dst_nd
        except rasterio.errors.RasterioError as exc:
            raise RasterError(f"{self.name}: reading {info.path} band {self.band} failed: {exc}") from None
        valid = inside
        if nd is not None:
            ndv = np.array(nd).astype(arr.dtype) if np.isfinite(nd) or arr.dtype.kind == "f" else None
            if ndv is not None:
                valid = valid & ~(arr == ndv)
        if arr.dtype.kind == "f":
            valid &= np.isfinite(arr)
        return arr, valid

    def _transformer(self, info: _FileInfo):
        cache = getattr(self._local, "transformers", None)
        if cache is None:
            cache = self._local.transformers = {}
        t = cache.get(info.path)
        if t is None and info.crs != self.grid.crs:
            from pyproj import Transformer

            t = cache[info.path] = Transformer.from_crs(self.grid.crs.to_wkt(), info.crs.to_wkt(), always_xy=True)
        return t

    def _source_window(self, ds, info: _FileInfo, fr_min, fr_max, fc_min, fc_max):
        """Source pixels around fractional source rows [fr_min, fr_max] and columns [fc_min, fc_max] (with the
        bilinear neighbours), their validity, and the window's top-left source pixel; None when the range
        misses the source."""
        rlo, rhi = int(np.floor(fr_min)) - 1, int(np.floor(fr_max)) + 3
        clo, chi = int(np.floor(fc_min)) - 1, int(np.floor(fc_max)) + 3
        rlo, clo = max(rlo, 0), max(clo, 0)
        rhi, chi = min(rhi, info.height), min(chi, info.width)
        if rhi <= rlo or chi <= clo:
            return None
        src = ds.read(self.band, window=Window(clo, rlo, chi - clo, rhi - rlo))
        valid = np.ones(src.shape, bool)
        if info.nodata is not None:
            valid &= src != np.array(info.nodata).astype(src.dtype)
        if src.dtype.kind == "f":
            valid &= np.isfinite(src)
        return src, valid, rlo, clo

    def _bilinear_window(self, ds, info: _FileInfo, r0, r1, c0, c1):
        """Bilinear warp of one window, computed from exact pixel-centre positions (chunk-independent).

        Every destination pixel centre is transformed to the source CRS (pyproj, exact), turned into
        fractional source pixel-centre coordinates, and interpolated from the 4 neighbours
        (:func:`gep_raster.kernels.resample.bilinear_sample`); the value of a pixel depends only on its
        position, never on the window."""
        from ..kernels.resample import bilinear_sample

        h, w = r1 - r0, c1 - c0
        t = self.grid.transform
        xs = t.c + (np.arange(c0, c1) + 0.5) * t.a
        ys = t.f + (np.arange(r0, r1) + 0.5) * t.e
        tr = self._transformer(info)
        inv = ~info.transform
        if tr is None and inv.b == 0 and inv.d == 0:
            # same CRS, north-up source: the source column depends on the column only, the row on the row only;
            # the same numbers as the 2-D formula below (its cross terms are exact zeros), broadcast as views
            # instead of h x w float64 temporaries
            fc1 = inv.a * xs + inv.c - 0.5
            fr1 = inv.e * ys + inv.f - 0.5
            if not (np.isfinite(fc1).all() and np.isfinite(fr1).all()):  # pragma: no cover - finite transforms
                return np.full((h, w), np.nan, np.float32), np.zeros((h, w), bool)
            got = self._source_window(ds, info, fr1.min(), fr1.max(), fc1.min(), fc1.max())
            if got is None:
                return np.full((h, w), np.nan, np.float32), np.zeros((h, w), bool)
            src, valid, rlo, clo = got
            fr1 = np.where((fr1 < -0.5) | (fr1 > info.height - 0.5), np.nan, fr1 - rlo)
            fc1 = np.where((fc1 < -0.5) | (fc1 > info.width - 0.5), np.nan, fc1 - clo)
            out = bilinear_sample(src, valid, np.broadcast_to(fr1[:, None], (h, w)),
                                  np.broadcast_to(fc1[None, :], (h, w)))
            return out, np.isfinite(out)
        X, Y = np.meshgrid(xs, ys)
        if tr is not None:
            X, Y = tr.transform(X, Y)
        fc = inv.a * X + inv.b * Y + inv.c - 0.5  # source pixel-centre coordinates
        fr = inv.d * X + inv.e * Y + inv.f - 0.5
        bad = ~(np.isfinite(fc) & np.isfinite(fr))
        fc[bad] = np.nan
        fr[bad] = np.nan
        if bad.all():
            return np.full((h, w), np.nan, np.float32), np.zeros((h, w), bool)
        got = self._source_window(ds, info, np.nanmin(fr), np.nanmax(fr), np.nanmin(fc), np.nanmax(fc))
        if got is None:
            return np.full((h, w), np.nan, np.float32), np.zeros((h, w), bool)
        src, valid, rlo, clo = got
        # outside the source raster: no value (not an extrapolation from the edge)
        outside = (fr < -0.5) | (fr > info.height - 0.5) | (fc < -0.5) | (fc > info.width - 0.5)
        fr = np.where(outside, np.nan, fr - rlo)
        fc = np.where(outside, np.nan, fc - clo)
        out = bilinear_sample(src, valid, fr, fc)
        return out, np.isfinite(out)

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Window [r0:r1, c0:c1] of the reference grid.

        Returns
        -------
        numpy.ndarray, shape (r1-r0, c1-c0)
            int32 with -1 for nodata (categorical) or float32 with NaN for nodata (continuous),
            continuous values multiplied by ``scale``.
        """
        h, w = r1 - r0, c1 - c0
        out = np.full((h, w), self.fill, dtype=self.dtype)
        todo = np.ones((h, w), dtype=bool)
        for info in self.files:
            if not self._intersects(info, r0, r1, c0, c1):
                continue
            arr, valid = self._read_file(info, r0, r1, c0, c1)
            take = valid & todo
            if self.kind == "categorical":
                vals = arr[take]
                if arr.dtype.kind == "f":
                    if np.any(vals != np.round(vals)):
                        raise RasterError(f"{self.name}: {info.path} holds non-integer class codes; "
                                          "a land-cover raster must hold integer codes")
                if vals.size and (vals.min() < 0 or vals.max() > 65535):
                    raise RasterError(f"{self.name}: {info.path} holds class codes outside 0..65535 "
                                      f"(min {vals.min()}, max {vals.max()}); is the nodata value set?")
                out[take] = vals.astype(np.int32)
            else:
                out[take] = arr[take].astype(np.float32) * np.float32(self.scale) if self.scale != 1.0 \
                    else arr[take].astype(np.float32)
            todo &= ~take
            if not todo.any():
                break
        return out

    def to_dask(self, chunks):
        """A dask array (height, width) that reads each chunk with :meth:`read` (see :func:`windowed_to_dask`)."""
        return windowed_to_dask(self, chunks)

    def read_all(self) -> np.ndarray:
        return self.read(0, self.grid.height, 0, self.grid.width)


class SumSource:
    """Sum of several continuous sources (12 monthly rasters -> annual), NaN where any is NaN."""

    def __init__(self, name: str, sources: list[GridSource]):
        self.name, self.sources = name, sources
        self.grid = sources[0].grid
        self.kind = "continuous"
        self.dtype = np.dtype(np.float32)

    def read(self, r0, r1, c0, c1):
        acc = np.zeros((r1 - r0, c1 - c0), dtype=np.float64)
        for s in self.sources:
            acc += s.read(r0, r1, c0, c1)
        return acc.astype(np.float32)

    def describe(self):
        return {"name": self.name, "kind": "continuous", "sum_of": [s.describe() for s in self.sources]}

    to_dask = GridSource.to_dask
    read_all = GridSource.read_all


class StackSource:
    """A continuous layer computed from a stack of sources: ``reduce`` gets the block of every source as one
    float32 array of shape (n_sources, h, w) and returns the (h, w) result (e.g. the R factor of 12 monthly
    precipitation rasters, :func:`gep_raster.kernels.rusle_factors.r_factor_monthly_wischmeier`).

    ``reduce`` must be a module-level function or a :func:`functools.partial` of one (the source is pickled
    to distributed workers); ``label`` names it in :meth:`describe`. A ``ValueError`` of ``reduce`` (bad
    values in a block) is raised as :class:`~gep_raster.errors.InputError` naming the source."""

    def __init__(self, name: str, sources: list, reduce, label: str):
        self.name, self.sources, self.reduce, self.label = name, sources, reduce, label
        self.grid = sources[0].grid
        self.kind = "continuous"
        self.dtype = np.dtype(np.float32)

    def read(self, r0, r1, c0, c1):
        from ..errors import InputError

        stack = np.empty((len(self.sources), r1 - r0, c1 - c0), dtype=np.float32)
        for i, s in enumerate(self.sources):
            stack[i] = s.read(r0, r1, c0, c1)
        try:
            return np.asarray(self.reduce(stack), dtype=np.float32)
        except ValueError as e:
            raise InputError(f"{self.name}: {self.label} of rows {r0}-{r1}, cols {c0}-{c1}: {e}") from None

    def describe(self):
        return {"name": self.name, "kind": "continuous", "computed": self.label,
                "from": [s.describe() for s in self.sources]}

    to_dask = GridSource.to_dask
    read_all = GridSource.read_all


_SHARED_LOCALS: OrderedDict = OrderedDict()
_SHARED_LOCALS_LOCK = threading.Lock()
_SHARED_LOCALS_MAX = 64  # sources (a run has a few dozen) whose handles an unpickling process keeps open


def _shared_local(token: str) -> threading.local:
    """The per-thread handle cache of the unpickled copies of one source (least recently used
    sources beyond :data:`_SHARED_LOCALS_MAX` are dropped: their handles close when collected)."""
    with _SHARED_LOCALS_LOCK:
        loc = _SHARED_LOCALS.get(token)
        if loc is None:
            loc = _SHARED_LOCALS[token] = threading.local()
            while len(_SHARED_LOCALS) > _SHARED_LOCALS_MAX:
                _SHARED_LOCALS.popitem(last=False)
        else:
            _SHARED_LOCALS.move_to_end(token)
        return loc


def windowed_to_dask(source, chunks, prefix: str = "read"):
    """Dask array of shape ``source.grid.shape`` whose every chunk is ``source.read(r0, r1, c0, c1)``.

    Shared by every lazy source (GridSource, SumSource, the scenario wrappers). The graph name depends
    on the source and the chunking, so one source read with two chunkings gets distinct keys."""
    import dask.array as da
    from dask.base import tokenize

    def _block(block_info=None):
        (ra, rb), (ca, cb) = block_info[None]["array-location"]
        return source.read(ra, rb, ca, cb)

    chunks = da.core.normalize_chunks(chunks, shape=source.grid.shape)
    return da.map_blocks(_block, chunks=chunks, dtype=source.dtype, meta=np.empty((0, 0), source.dtype),
                         name=f"{prefix}-{source.name}-{tokenize(id(source), source.name, chunks)}")


def _sentinel(dtype: str):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return float(np.finfo(dt).min)
    if dt.kind == "u":
        return int(np.iinfo(dt).max)
    return int(np.iinfo(dt).min)


def grid_from_files(paths: list[Path], name: str) -> RefGrid:
    """Reference grid covering all tiles: CRS and pixel size of the first tile, extent = union,
    snapped to the first tile's lattice.

    Raises
    ------
    CRSError / RasterError
        A tile has no CRS, another CRS or another pixel size than the first tile.
    """
    first = RefGrid.from_raster(paths[0])
    if len(paths) == 1:
        return first
    gx, gy = first.res
    lefts, bottoms, rights, tops = [], [], [], []
    for p in paths:
        g = RefGrid.from_raster(p)
        if g.crs != first.crs:
            raise CRSError(f"{name}: tile {p} is in {g.crs} but {paths[0]} is in {first.crs}; "
                           "tiles of the reference input must share one CRS")
        if abs(g.res[0] - gx) > GRID_TOLERANCE * gx or abs(g.res[1] - gy) > GRID_TOLERANCE * gy:
            raise RasterError(f"{name}: tile {p} has pixel size {g.res}, {paths[0]} has {first.res}; "
                              "tiles of the reference input must share one pixel size")
        b = g.bounds
        lefts.append(b[0]); bottoms.append(b[1]); rights.append(b[2]); tops.append(b[3])
    x0, y1 = first.transform.c, first.transform.f
    left = x0 + np.floor((min(lefts) - x0) / gx + 1e-6) * gx
    top = y1 + np.ceil((max(tops) - y1) / gy - 1e-6) * gy
    width = int(round((max(rights) - left) / gx))
    height = int(round((top - min(bottoms)) / gy))
    from affine import Affine

    return RefGrid(first.crs, Affine(gx, 0, left, 0, -gy, top), width, height)


def band_count(path: str | Path, key: str) -> int:
    """Number of bands of the raster file ``path``.

    Raises
    ------
    ConfigError
        The file cannot be opened; the message names the config ``key`` and the file (not GDAL's traceback).
    """
    from ..errors import ConfigError

    try:
        with rasterio.open(path) as ds:
            return ds.count
    except rasterio.errors.RasterioIOError as exc:
        raise ConfigError(f"{key}: cannot open {path}: {exc}") from None
