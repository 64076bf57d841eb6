"""Flow routing in bounded memory: the whole DEM at once, or one hydrological unit at a time, to disk.

The LS factor needs the upslope contributing area of every cell (:mod:`gep_raster.terrain.routing`). Routing
needs the whole drainage area of a cell at once, so it cannot be done chunk by chunk like the other
terms. :func:`route_to_raster` routes within the memory budget
(:data:`gep_raster.budget.ROUTING_BYTES_PER_PIXEL`) and writes the products of
:func:`gep_raster.terrain.routing.route` (upslope cell counts, pit-filled DEM, aspect term, stream mask: one band
each, listed in the returned ``info["bands"]``) to a tiled GeoTIFF on the reference grid, which the block computation then reads window by window like any input:

* when the whole DEM fits in the budget it is routed at once (one unit = the grid);
* otherwise the run needs ``inputs.hydro_units``, a polygon layer of hydrological units (sub-watersheds,
  e.g. HydroBASINS level 10-12 or a national small-watershed layer, 小流域). Each unit is routed on
  its own: the DEM window of its bounding box is read, cells whose centre lies outside the unit are
  masked, and the counts of the unit's cells are written. A unit's cells on its boundary are outlets
  (the grid edge of the unit's window), so flow is not passed across unit boundaries: on units whose
  boundaries are drainage divides this equals routing the whole DEM; where a unit receives flow from
  an upstream unit, the upstream area beyond the boundary is not counted (the LS factor there is a
  lower bound; with the 122 L cap of InVEST SDR this matters only along the inflow channel).
* A unit whose window does not fit in the budget, or a DEM too big for the budget without units, is
  refused with a message naming the budget.

The result depends only on the DEM, the units and the method, never on chunks or input tiling; it is
cached in the run's state folder under a key made of their content hashes, so a resumed run does not
route again. While units are being routed each finished unit is kept in its own file
(``<raster>.units/u<index>.npy``, atomic), so a run killed during routing routes only the remaining units.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
from pathlib import Path

import numpy as np

from ..budget import FIXED_OVERHEAD_MB, ROUTING_BYTES_PER_PIXEL
from ..errors import GepError, InputError
from ..grid import RefGrid

log = logging.getLogger(__name__)
_RASTERIZE_LOCK = threading.Lock()

__all__ = ["RoutingBudgetError", "route_to_raster", "routing_products", "load_units", "unit_windows",
           "budget_problem"]


class RoutingBudgetError(GepError):
    """The DEM (or one hydrological unit of it) does not fit in the memory budget for flow routing."""


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB"


def load_units(path: Path, grid: RefGrid, id_field: str | None, name: str = "inputs.hydro_units"):
    """Read the hydrological units layer and reproject it to the grid CRS.

    Returns
    -------
    (geopandas.GeoDataFrame, list of str)
        The polygons (grid CRS) and their ids (``id_field`` values, or 1-based row numbers).

    Raises
    ------
    InputError
        Unreadable file, no polygons, missing ``id_field``, no CRS.
    """

    from ..vector_io import read_vector

    gdf = read_vector(path, name)
    if gdf.empty:
        raise InputError(f"{name} ({path}): the layer has no features")
    if gdf.crs is None:
        raise InputError(f"{name} ({path}): the layer has no CRS")
    if id_field is not None and id_field not in gdf.columns:
        raise InputError(f"{name} ({path}): column '{id_field}' not found (columns: {list(gdf.columns)})")
    gdf = gdf[~gdf.geometry.is_empty & gdf.geometry.notna()]
    if not gdf.geom_type.isin(["Polygon", "MultiPolygon"]).all():
        raise InputError(f"{name} ({path}): expected polygons, found {sorted(set(gdf.geom_type))}")
    gdf = gdf.to_crs(grid.crs)
    ids = [str(v) for v in (gdf[id_field] if id_field else range(1, len(gdf) + 1))]
    return gdf.reset_index(drop=True), ids


def unit_windows(units, grid: RefGrid) -> list[tuple]:
    """Grid window of every hydrological unit (its bounding box, clipped to the grid).

    Parameters
    ----------
    units : (GeoDataFrame, list of str)
        Units in the grid CRS and their ids (:func:`load_units`).
    grid : RefGrid

    Returns
    -------
    list of (index, id, WKB bytes, r0, r1, c0, c1)
        Units that overlap the grid, in layer order (rows r0:r1, columns c0:c1).
    """
    from rasterio.windows import from_bounds

    gdf, ids = units
    h, w = grid.shape
    plans = []
    for i, (geom, uid) in enumerate(zip(gdf.geometry, ids)):
        win = from_bounds(*geom.bounds, transform=grid.transform)
        r0 = max(0, int(np.floor(win.row_off)))
        c0 = max(0, int(np.floor(win.col_off)))
        r1 = min(h, int(np.ceil(win.row_off + win.height)))
        c1 = min(w, int(np.ceil(win.col_off + win.width)))
        if r1 > r0 and c1 > c0:
            plans.append((i, uid, geom.wkb, r0, r1, c0, c1))
    return plans


def budget_problem(method: str, budget_mb: float, grid: RefGrid, plans: list | None = None) -> str | None:
    """Why flow routing does not fit the memory budget, or None when it does.

    The budget available to routing is ``budget_mb`` less :data:`gep_raster.budget.FIXED_OVERHEAD_MB`;
    the need is ``ROUTING_BYTES_PER_PIXEL[method]`` times the pixels of the whole grid (``plans`` None) or
    of the largest unit window (:func:`unit_windows`). Used by :func:`route_to_raster` (raises) and by
    ``gep validate`` (reports).
    """
    bpp = ROUTING_BYTES_PER_PIXEL[method]
    avail = max(budget_mb - FIXED_OVERHEAD_MB, 0) * 2**20
    budget_txt = (f"the memory budget processing.memory_budget_mb = {budget_mb} MB less {FIXED_OVERHEAD_MB} MB "
                  "for the rest of the run")
    if plans is None:
        px = grid.width * grid.height
        if bpp * px > avail:
            return (f"flow routing ({method}) of the whole DEM needs about {bpp} B/px x {px:,} px = "
                    f"{_gib(bpp * px)}, more than {budget_txt}; give inputs.hydro_units (a polygon layer of "
                    "hydrological units / sub-watersheds, e.g. HydroBASINS level 12) to route unit by unit, or "
                    "raise processing.memory_budget_mb")
        return None
    for _, uid, _, r0, r1, c0, c1 in plans:
        px = (r1 - r0) * (c1 - c0)
        if bpp * px > avail:
            return (f"inputs.hydro_units: unit '{uid}' spans {r1 - r0} x {c1 - c0} px ({px:,} px); routing it "
                    f"({method}) needs about {bpp} B/px x {px:,} px = {_gib(bpp * px)}, more than {budget_txt}; "
                    "split the unit (use a finer hydrological level) or raise processing.memory_budget_mb")
    return None


def routing_key(dem_checksums: dict, method: str, options: dict, units_sha: str | None, grid: RefGrid) -> str:
    """Cache key of a routed raster: content hashes of the DEM files and the units, method and grid."""
    blob = json.dumps({"dem": dem_checksums, "method": method, "options": options, "units": units_sha,
                       "grid": grid.describe()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def routing_products(options: dict) -> list[str]:
    """Bands of the routing raster, in order: the products of :func:`gep_raster.terrain.routing.route` for ``options``."""
    out = ["upslope", "filled_dem", "flow_aspect"]
    if options.get("threshold_flow_accumulation") is not None:
        out.append("stream")
    return out


def route_to_raster(dem_source, grid: RefGrid, method: str, options: dict, out_path: Path, *,
                    budget_mb: float, units=None, workers: int = 1) -> dict:
    """Route the DEM (whole, or per hydrological unit) and write the routing products to ``out_path``.

    Parameters
    ----------
    dem_source : gep_raster.grid.io_read.GridSource
        DEM on the reference grid (float32 m, NaN nodata).
    grid : RefGrid
        Reference grid (projected; ``"d8_flood"`` also geographic).
    method : {"d8", "mfd", "d8_flood"}
        Routing method (:func:`gep_raster.terrain.routing.route`).
    options : dict
        Options of :func:`gep_raster.terrain.routing.route` (``threshold_flow_accumulation``).
    out_path : pathlib.Path
        GeoTIFF to write: float32, one band per product of :func:`routing_products` (upslope cells including
        the cell, pit-filled DEM in m, flow-weighted aspect term, stream 0/1), NaN where not routed; written to a
        temporary file and renamed when complete.
    budget_mb : int
        Memory budget (``processing.memory_budget_mb``).
    units : (GeoDataFrame, list of str), optional
        Hydrological units in the grid CRS and their ids (:func:`load_units`).
    workers : int
        Units routed at once, on as many threads (never more than the budget holds at the largest
        unit's size).
        Results are written in unit order, so the raster does not depend on it.

    Returns
    -------
    dict
        Record for the manifest: mode (whole DEM or per unit), bands, bytes per pixel, budget, units routed,
        largest unit, pixels not in any unit, maximum upslope count, stream cells.

    Raises
    ------
    RoutingBudgetError
        The whole DEM (without units) or one unit does not fit in the budget; the message gives the
        pixels, the bytes per pixel, the need and the budget.
    """
    bands = routing_products(options)
    bpp = ROUTING_BYTES_PER_PIXEL[method]
    # what routing may use: the budget less the run's fixed overhead
    budget = max(budget_mb - FIXED_OVERHEAD_MB, 0) * 2**20
    h, w = grid.shape
    info = {"method": method, "bands": bands, "bytes_per_pixel": bpp, "memory_budget_mb": budget_mb}
    profile = dict(driver="GTiff", width=w, height=h, count=len(bands), dtype="float32", crs=grid.crs,
                   transform=grid.transform, nodata=float("nan"), tiled=True, blockxsize=512, blockysize=512,
                   BIGTIFF="IF_SAFER", interleave="band")
    if units is None:
        return _route_whole(dem_source, grid, method, options, out_path, budget_mb, profile, bands, info)
    # unit windows first (so an oversized unit is reported before any routing)
    plans = unit_windows(units, grid)
    problem = budget_problem(method, budget_mb, grid, plans)
    if problem:
        raise RoutingBudgetError(problem)
    largest_px = max((p[4] - p[3]) * (p[6] - p[5]) for p in plans) if plans else 0
    # units on parallel threads, as many as the workers and as the budget holds units of the largest size
    n_threads = max(1, min(int(workers), len(plans), int(budget // max(bpp * largest_px, 1))))
    # each routed unit is kept as its own file until the raster is complete: a run killed during routing
    # routes only the units not done yet when it is started again (the folder belongs to this routing key)
    parts = out_path.with_suffix(".units")
    parts.mkdir(parents=True, exist_ok=True)
    for stale in parts.glob(".*.tmp-*"):
        stale.unlink(missing_ok=True)
    done = {int(f.stem[1:]) for f in parts.glob("u*.npy")}
    todo = [pl for pl in plans if pl[0] not in done]
    info["units_resumed"] = len(plans) - len(todo)
    args = {i: (dem_source, wkb, r0, r1, c0, c1, tuple(grid.transform)[:6], method, options, grid.is_geographic,
                bands, parts / f"u{i:07d}.npy") for i, _, wkb, r0, r1, c0, c1 in todo}
    stats = _merge_units(plans, parts, args, n_threads, out_path, profile, bands)
    shutil.rmtree(parts, ignore_errors=True)
    info["threads"] = n_threads
    info.update(mode="per hydrological unit", units=stats["n_done"], largest_unit_px=stats["largest"][0],
                largest_unit=stats["largest"][1], routed_px=stats["routed_px"], max_upslope_cells=stats["max_up"])
    if "stream" in bands:
        info["stream_cells"] = stats["n_stream"]
    return info


def _route_whole(dem_source, grid: RefGrid, method: str, options: dict, out_path: Path, budget_mb: float,
                 profile: dict, bands: list, info: dict) -> dict:
    """Route the whole DEM at once and write its products (``info`` completed and returned).

    Raises RoutingBudgetError when the whole DEM does not fit in ``budget_mb``."""
    import rasterio

    from ..outputs.io_write import atomic_path
    from .routing import route

    problem = budget_problem(method, budget_mb, grid)
    if problem:
        raise RoutingBudgetError(problem)
    dem = dem_source.read_all()
    prod = route(dem, grid.transform, method=method, latlon=grid.is_geographic, **options)
    del dem
    with atomic_path(out_path, suffix=".tif") as tmp:
        with rasterio.open(tmp, "w", **profile) as ds:
            for b, name in enumerate(bands, start=1):
                ds.write(prod[name], b)
    up = prod["upslope"]
    info.update(mode="whole DEM", units=1, largest_unit_px=grid.shape[0] * grid.shape[1],
                max_upslope_cells=float(np.nanmax(up)) if np.isfinite(up).any() else None)
    if "stream" in prod:
        info["stream_cells"] = int(np.nansum(prod["stream"]))
    return info


def _merge_units(plans: list, parts: Path, args: dict, n_threads: int, out_path: Path, profile: dict,
                 bands: list) -> dict:
    """Route the units of ``args`` on ``n_threads`` threads and merge every unit's products (files in ``parts``)
    into ``out_path`` in unit order (the raster does not depend on timing). Returns the counts for the manifest
    (``n_done``, ``largest`` (px, id), ``routed_px``, ``max_up``, ``n_stream``)."""
    import rasterio
    from rasterio.windows import Window

    from ..outputs.io_write import atomic_path

    h, w = profile["height"], profile["width"]
    stats = {"routed_px": 0, "largest": (0, None), "max_up": 0.0, "n_stream": 0, "n_done": 0}
    # the raster's 512 px blocks that hold a merged unit already: a unit whose window touches none of them is
    # written as it is, without reading the window back (every one of the bench's square units; py-spy put the
    # merge at 1.5-1.9 % of a run before, the read and the boolean indexing most of it)
    blk = profile["blockysize"]
    touched = np.zeros((-(-h // blk), -(-w // blk)), dtype=bool)
    with atomic_path(out_path, suffix=".tif") as tmp:
        with rasterio.open(tmp, "w+", **profile) as ds, _UnitRunner(_route_unit, args, n_threads) as runner:
            # units are merged in unit order while the next units are still being routed on the routing threads
            for i, uid, _, r0, r1, c0, c1 in plans:
                runner.wait(i)
                prod = np.load(parts / f"u{i:07d}.npy")
                if prod.size == 0:
                    continue
                window = Window(c0, r0, c1 - c0, r1 - r0)
                sel = np.isfinite(prod[0])
                bsel = (slice(r0 // blk, -(-r1 // blk)), slice(c0 // blk, -(-c1 // blk)))
                if touched[bsel].any():  # another unit's cells share these blocks: keep them
                    cur = ds.read(window=window)
                    np.copyto(cur, prod, where=sel[None])
                    prod = cur
                touched[bsel] = True
                ds.write(prod, window=window)
                n_sel = int(np.count_nonzero(sel))
                stats["routed_px"] += n_sel
                stats["n_done"] += 1
                if n_sel > stats["largest"][0]:
                    stats["largest"] = (n_sel, uid)
                if n_sel:
                    stats["max_up"] = max(stats["max_up"], float(np.nanmax(prod[0][sel])))
                    if "stream" in bands:
                        stats["n_stream"] += int(np.nansum(prod[bands.index("stream")][sel]))
    return stats


def _route_unit(args):
    """Route one unit (on a routing thread) and save its products to ``out`` (``.npy``, atomic): float32
    (bands, h, w) on the unit's window, NaN outside the unit; a 0-size array when the unit has no valid DEM cell."""
    from affine import Affine
    from rasterio import features
    from shapely import wkb as _wkb

    from ..outputs.io_write import atomic_path
    from .routing import route

    dem_source, geom_wkb, r0, r1, c0, c1, transform, method, options, latlon, bands, out = args
    t = Affine(*transform)
    wt = t * Affine.translation(c0, r0)
    with _RASTERIZE_LOCK:  # rasterio hides a warning of its MEM dataset with warnings.catch_warnings, which is
        # not thread-safe: two routing threads at once let "NotGeoreferencedWarning" through
        inside = features.rasterize([(_wkb.loads(geom_wkb), 1)], out_shape=(r1 - r0, c1 - c0), transform=wt,
                                    fill=0, dtype="uint8", all_touched=False).astype(bool)
    res = np.zeros((0, 0, 0), np.float32)
    if inside.any():
        dem = dem_source.read(r0, r1, c0, c1).astype(np.float32, copy=False)
        dem = np.where(inside, dem, np.float32(np.nan))
        if not np.isnan(dem).all():
            prod = route(dem, wt, method=method, latlon=latlon, **options)
            res = np.stack([prod[b] for b in bands])
            del prod
            res[:, ~inside] = np.nan
        del dem
    with atomic_path(out, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, res)


class _UnitRunner:
    """Runs ``fn`` on every value of ``args`` (unit index -> arguments): here, one by one as they are waited
    for, or on ``n_threads`` threads (the routing kernels are numba ``nogil`` functions, so units route in
    parallel in this process: no process start-up, no result copies).

    :meth:`wait` returns when the unit is done (at once for a unit not in ``args``: done by an earlier run)
    and raises its error. On leaving the ``with`` block, units not started yet are cancelled and units
    already running finish (and keep their files for a resumed run)."""

    def __init__(self, fn, args: dict, n_threads: int):
        self.fn, self.args = fn, args
        self.pool = None
        self.futures = {}
        if n_threads > 1 and len(args) > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(n_threads, thread_name_prefix="gep-routing")
            self.futures = {i: self.pool.submit(fn, a) for i, a in args.items()}

    def wait(self, i) -> None:
        if i not in self.args:
            return
        if self.pool is None:
            self.fn(self.args[i])
        else:
            self.futures[i].result()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        return False
