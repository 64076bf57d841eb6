"""Run orchestration: inputs -> reference grid -> services (dask) -> rasters, tables, figures, manifest.

Stages (timed, recorded in the manifest):

1. ``prepare``: config, legend, prices, inputs opened lazily on the reference grid, polygon layers;
   block (chunk) size from ``processing.memory_budget_mb`` (:mod:`gep_raster.budget`) and output layout.
2. ``legend_check``: class histogram of the land cover; every class present must have a legend row.
3. ``coverage``: exact polygon coverage, once per layer and grid (:class:`gep_raster.zonal.CoverageIndex`,
   cached by content hash in ``processing.coverage_cache``).
   With ``economic_accounts``: ``economic_prepass`` reads land cover (and weight rasters) once more to
   sum the allocation denominators per unit (:mod:`gep_raster.economic`).
4. ``routing``: flow accumulation for the LS factor, whole DEM or per hydrological unit, within the
   memory budget, to a GeoTIFF read per block (:mod:`gep_raster.hydro_units`).
5. ``compute_write``: one dask graph computes every output block in one pass over the inputs
   (services, then EPV/ECV allocation and GEP); each block is written as one tile per output raster
   and added to every layer's sums (:class:`BlockSink`, :class:`gep_raster.block_store.BlockStore`).
6. ``finalize_rasters``: VRT mosaic of the tiles per output (layout ``tiles``), or one COG per output.
7. ``tables``, ``figures`` (drawn on a thread during ``finalize_rasters`` once the GEP-R raster is published;
   the stage waits for them), ``manifest``.

Resume: a killed run started again with the same config and inputs computes only the blocks that are
not in its journal (content hashes of config and inputs, never timestamps); a rerun of a finished,
identical run (same config, parameters, package version and input checksums) skips the raster stage.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__, faults
from .accounts import (Layer, add_gep_columns, assign_parents, build_table, load_layer, nesting_report,
                       polygon_area_km2, roll_up)
from .config import RunConfig
from .economic import EconomicAccounts
from .errors import ConfigError, GepError, GridMismatchError, TableError
from .grid import RefGrid
from .io_read import GridSource, StackSource, SumSource
from .kernels.reduce import nan_totals
from .progress import BlockProgress
from .run_inputs import SCAN_CHUNK, class_histogram, open_inputs, raster_source, reference_grid
from .services import OutputSpec, ServiceModel
from .services.base import TERRAIN_KEYS
from .tables import PriceBook, load_legend, required_legend_columns

log = logging.getLogger("gep_raster")

#: Rows of a block summed to every polygon layer before the next rows (BlockSink: cache-sized strips).
_SUM_STRIP_ROWS = 64


def _cpu_count() -> int:
    from dask.system import CPU_COUNT

    return int(CPU_COUNT)


# --------------------------------------------------------------------------------------
# manifest texts
# --------------------------------------------------------------------------------------
#: manifest description of each routing method (gep_raster.routing.route)
ROUTING_DESCRIPTION = {
    "d8": "pit filling + D8 steepest descent with pygeoprocessing's plateau rules (InVEST SDR 3.20 D8), cell counts",
    "mfd": "pit filling + pygeoprocessing MFD (4-bit proportional weights; InVEST SDR 3.20 default), cell counts",
    "d8_flood": "priority-flood fill (Wang & Liu 2006; pyflwdir's algorithm, identical D8) + the flood's D8 "
                "(each cell to the cell that flooded it; not steepest descent), cell counts",
}


# --------------------------------------------------------------------------------------
# block sink: writes + zonal sums as blocks arrive
# --------------------------------------------------------------------------------------
class BlockSink:
    """Receives the (n_outputs, h, w) blocks of a run, in any order and from any thread; writes each
    block's tiles and journal entry (:class:`~gep_raster.block_store.BlockStore`) and adds it to every
    layer's sums.

    :meth:`put` is the one entry point of both execution paths: the local threaded scheduler
    (:func:`store_local`) and the distributed client's consumer loop (:func:`store_distributed`)
    call it. Writers and sums live in this process only.

    The sums do not depend on the order in which blocks arrive: each block's contribution (output
    totals, valid pixels, per-polygon sums and valid areas) is computed on its own and added in
    row-major block order; blocks that arrive early wait in a small buffer of per-polygon partial sums
    (only the polygons the block adds to). Tables are therefore bit-identical whatever the scheduler,
    the number of threads or workers, the arrival order, and whether the run was resumed (the
    contributions of blocks finished before an interruption are read back from the journal:
    :meth:`preload`). Floating-point addition is not associative: adding blocks in arrival order made
    the last digits of the sums vary between runs.

    Parameters
    ----------
    outputs : list of OutputSpec
        Outputs in the order of the block's first axis.
    store : BlockStore or None
        Where the written outputs' tiles and the journal go (None: nothing is written, only summed).
    indices : dict
        Layer name -> :class:`~gep_raster.zonal.CoverageIndex`.
    zonal_keys : list of str
        Output keys summed per polygon (columns of ``sums``).
    chunks : (tuple of int, tuple of int), optional
        Row and column chunk sizes of the block grid (``stacked.chunks[1:]``); fixes the order in which
        contributions are added. None: added in arrival order (not reproducible across runs).
    progress : gep_raster.progress.BlockProgress, optional
        Advanced by the block's pixels once the block is written and counted.
    """

    def __init__(self, outputs: list[OutputSpec], store, indices: dict, zonal_keys: list[str],
                 chunks: tuple | None = None, progress=None):
        self.outputs = outputs
        self.store = store
        self.indices = indices
        self.okeys = [o.key for o in outputs]
        self.zsel = np.asarray([self.okeys.index(k) for k in zonal_keys], dtype=np.int64)  # stack bands summed
        self.gep_idx = self.okeys.index("gep_r_yuan")
        self.write_index = [self.okeys.index(k) for k, _ in store.outputs] if store is not None else []
        n = len(outputs)
        self.totals = np.zeros(n, np.float64)
        self.valid_pixels = np.zeros(n, np.int64)
        self.sums = {name: np.zeros((idx.n_polygons, len(zonal_keys)), np.float64) for name, idx in indices.items()}
        self.valid_area = {name: np.zeros(idx.n_polygons, np.float64) for name, idx in indices.items()}
        self.lock = threading.Lock()
        self.blocks_done = 0
        self.progress = progress
        self._order = None
        if chunks is not None:
            rows = np.concatenate([[0], np.cumsum(chunks[0])[:-1]]).astype(int).tolist()
            cols = np.concatenate([[0], np.cumsum(chunks[1])[:-1]]).astype(int).tolist()
            self._order = {(r, c): i * len(cols) + j for i, r in enumerate(rows) for j, c in enumerate(cols)}
        self._pending: dict[int, tuple] = {}
        self._next = 0

    @property
    def n_blocks(self) -> int | None:
        return None if self._order is None else len(self._order)

    def preload(self, parts: dict[int, tuple]) -> None:
        """Count blocks finished by an earlier, interrupted run of the same job (block index -> journal
        contribution, :meth:`BlockStore.finished`); they are added in block order like new blocks."""
        if self._order is None:
            raise ValueError("internal: preload needs the block grid (chunks)")
        with self.lock:
            for bi, part in parts.items():
                if bi < self._next or bi in self._pending:
                    raise ValueError(f"internal: block {bi} preloaded twice")
                self._pending[bi] = part
                self.blocks_done += 1
            while self._next in self._pending:
                self._commit(self._pending.pop(self._next))
                self._next += 1

    def put(self, r0: int, c0: int, block) -> None:
        """Write the block whose top-left pixel is (``r0``, ``c0``) and count it in the sums.

        Raises
        ------
        ValueError
            (with ``chunks``) the offset is not a block of the block grid, or the block came twice.
        """
        r0, c0 = int(r0), int(c0)
        value = np.asarray(block, dtype=np.float32)
        if self._order is not None and (r0, c0) not in self._order:
            raise ValueError(f"internal: block at row {r0}, column {c0} is not on the run's block grid")
        part = self._contribution(r0, c0, value)
        if self.store is not None:
            self.store.commit(r0, c0, value, self.write_index, part)
        with self.lock:
            if self._order is None:
                self._commit(part)
            else:
                bi = self._order[(r0, c0)]
                if bi < self._next or bi in self._pending:
                    raise ValueError(f"internal: block at row {r0}, column {c0} arrived twice")
                self._pending[bi] = part
                while self._next in self._pending:
                    self._commit(self._pending.pop(self._next))
                    self._next += 1
            self.blocks_done += 1
        if self.progress is not None:
            self.progress.advance(value.shape[1] * value.shape[2])

    def _contribution(self, r0: int, c0: int, value: np.ndarray):
        """Totals, valid pixels and per-polygon sums and valid areas of one block (the polygons it adds to)."""
        h, w = value.shape[1:]
        value = np.ascontiguousarray(value)
        gep = value[self.gep_idx]
        totals, valid = nan_totals(value)
        acc = {name: (np.zeros((idx.n_polygons, len(self.zsel)), np.float64), np.zeros(idx.n_polygons, np.float64))
               for name, idx in self.indices.items()}
        # strip by strip, every layer: a strip of the block stays in the CPU cache for all layers (1024² block,
        # 13 bands, 3 layers: 52 -> 33 ms); each polygon's sums are added in the same row order as in one call
        for a in range(0, h, _SUM_STRIP_ROWS):
            zs, gs = value[:, a:a + _SUM_STRIP_ROWS], gep[a:a + _SUM_STRIP_ROWS]
            for name, idx in self.indices.items():
                s, va = acc[name]
                idx.accumulate(zs, r0 + a, c0, s, bands=self.zsel)  # the summed outputs, not copied out
                idx.accumulate(gs, r0 + a, c0, np.zeros(idx.n_polygons), valid_area_out=va)
        layers = {}
        for name, (s, va) in acc.items():
            # keep the rows the block adds to (adding the others' zeros would change nothing)
            rows = np.flatnonzero((s != 0).any(axis=1) | (va != 0))
            if rows.size:
                layers[name] = (rows, s[rows], va[rows])
        return totals, valid, layers

    def _commit(self, part) -> None:
        totals, valid, layers = part
        self.totals += totals
        self.valid_pixels += valid
        for name, (rows, s, va) in layers.items():
            self.sums[name][rows] += s
            self.valid_area[name][rows] += va

    def check_complete(self) -> None:
        """Raise if (with ``chunks``) a block of the grid never arrived."""
        if self._order is not None and (self._next != len(self._order) or self._pending):
            raise GepError(f"internal: {len(self._order) - self._next} of {len(self._order)} blocks were not "
                           "written (the computation stopped early)")


# --------------------------------------------------------------------------------------
# execution: local threads (da.store into the sink) or a Dask distributed cluster
# --------------------------------------------------------------------------------------
def _block_offsets(chunks) -> list[int]:
    return np.concatenate([[0], np.cumsum(chunks)[:-1]]).astype(int).tolist()


def block_plan(stacked, skip=()) -> tuple[dict, list]:
    """The optimized graph of the blocks of ``stacked`` still to compute, and their keys and offsets.

    Parameters
    ----------
    stacked : dask array (n_outputs, H, W), one chunk along the first axis
    skip : collection of (r0, c0)
        Blocks already finished (resumed run): left out of the graph with every task only they need.

    Returns
    -------
    (dict, list of (key, r0, c0))
        Graph and the blocks to compute in row-major order.
    """
    if len(stacked.chunks[0]) != 1:
        raise ValueError("internal: the outputs axis of the stacked array must be one chunk")
    skip = set(skip)
    keys = stacked.__dask_keys__()[0]  # [row][col] of the (1, nr, nc) block grid
    rows, cols = _block_offsets(stacked.chunks[1]), _block_offsets(stacked.chunks[2])
    order = [(keys[i][j], rows[i], cols[j]) for i in range(len(rows)) for j in range(len(cols))
             if (rows[i], cols[j]) not in skip]
    if not order:
        return {}, []
    dsk = dict(stacked.__dask_optimize__(stacked.__dask_graph__(), [k for k, _, _ in order]))
    return dsk, order


def store_local(stacked, sink: BlockSink, workers: int | None = None, skip=()) -> dict:
    """Compute the blocks of ``stacked`` (except ``skip``) with dask's threaded scheduler, handing each
    finished block to :meth:`BlockSink.put` in the worker thread that computed it.

    Each block ends in a store task; a block's result is released as soon as it is written, so at
    most about ``workers`` blocks are in memory at once.

    Returns a description of the execution for the manifest."""
    import dask.threaded
    from dask.system import CPU_COUNT

    dsk, order = block_plan(stacked, skip)
    store_keys = []
    for k, r0, c0 in order:
        sk = ("gep-store-block", r0, c0)
        dsk[sk] = (sink.put, r0, c0, k)
        store_keys.append(sk)
    if store_keys:
        dask.threaded.get(dsk, store_keys, num_workers=workers or CPU_COUNT)
    return {"scheduler": "threads", "threads": workers or CPU_COUNT}


def _connect(scheduler):
    """A :class:`distributed.Client` for ``scheduler`` (a Client, an address, or a scheduler-file path);
    returns (client, owned)."""
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise ConfigError(f"--scheduler needs the 'distributed' package ({exc})") from None
    if isinstance(scheduler, Client):
        return scheduler, False
    if not isinstance(scheduler, (str, Path)) or not str(scheduler).strip():
        raise ConfigError(f"scheduler: expected a Dask scheduler address such as tcp://10.0.0.5:8786 or a "
                          f"scheduler file, got {scheduler!r}")
    text = str(scheduler).strip()
    kw = {"scheduler_file": text} if text.endswith(".json") or Path(text).is_file() else {"address": text}
    if "scheduler_file" in kw and not Path(text).is_file():
        raise ConfigError(f"scheduler: scheduler file {text} does not exist")
    try:
        client = Client(**kw, set_as_default=False, timeout="30s")
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"scheduler: cannot connect to the Dask scheduler at {text} ({exc}); is it running "
                          "and reachable from this machine?") from None
    return client, True


def _worker_error(exc: BaseException) -> BaseException:
    """The exception a worker raised, with its gep_raster type restored.

    distributed sends an exception back as ``Exception(repr(exc))`` when it cannot pickle it with its
    chained exceptions (tblib fails on rasterio's ``CPLE_*`` errors kept as ``__context__`` of a
    :class:`~gep_raster.errors.RasterError` raised ``from None``); the CLI must still see the GepError and
    print its one-line message."""
    import ast
    import re

    from . import errors as _errors

    if type(exc) is not Exception or len(exc.args) != 1 or not isinstance(exc.args[0], str):
        return exc
    m = re.fullmatch(r"(\w+)\((.*)\)", exc.args[0], re.S)
    cls = getattr(_errors, m.group(1), None) if m else None
    if not (isinstance(cls, type) and issubclass(cls, GepError) and cls.__init__ is Exception.__init__):
        return exc  # (ValidationFailed and other errors with their own arguments are kept as they came)
    try:
        args = ast.literal_eval(f"({m.group(2)},)") if m.group(2) else ()
        return cls(*args)
    except Exception:  # noqa: BLE001 - not a plain literal repr: keep the worker's exception
        return exc


def store_distributed(stacked, sink: BlockSink, scheduler, *, window: int | None = None,
                      consumers: int = 2, skip=()) -> dict:
    """Compute the blocks of ``stacked`` on a Dask distributed cluster and store them into ``sink`` here.

    The graph is optimized once and cut into one sub-graph per output block (the tasks that block
    needs). Blocks are submitted in row-major order, at most ``window`` in flight (default twice the
    cluster's threads at the time, at least 4: workers that join later are used), so finished blocks
    never pile up on the workers faster than this process writes them. Each finished block is
    fetched and handed to :meth:`BlockSink.put` by one of ``consumers`` threads of this process
    (fetching the next block overlaps writing the last one). Writers and sums never leave this
    process. A block that fails on a worker cancels the rest and its exception is raised here.

    Parameters
    ----------
    stacked : dask array (n_outputs, H, W)
        One chunk along the first axis.
    sink : BlockSink
    scheduler : str, path or distributed.Client
        Scheduler address (``tcp://host:8786``), scheduler file (JSON written by
        ``dask scheduler --scheduler-file``), or a connected Client.
    window : int, optional
        Most blocks submitted and not yet handed to the sink (fixed).
    consumers : int
        Threads fetching and writing finished blocks.
    skip : collection of (r0, c0)
        Blocks already finished (resumed run); not computed.

    Returns
    -------
    dict
        Description of the execution for the manifest (address, most workers and threads seen,
        most blocks in flight).

    Raises
    ------
    ConfigError
        The scheduler cannot be reached.
    """
    from concurrent.futures import ThreadPoolExecutor

    from dask.optimization import cull
    from distributed import as_completed

    client, owned = _connect(scheduler)
    futures_alive: dict = {}
    try:
        workers_info = client.nthreads()  # worker address -> threads
        if not workers_info:
            log.warning("the Dask cluster at %s has no worker yet; blocks wait until workers connect",
                        client.scheduler.address)
        cluster = {"workers": len(workers_info), "threads": sum(workers_info.values()), "t": time.monotonic()}

        def target() -> int:
            """Blocks to keep in flight: ``window``, or twice the cluster's threads now (workers of a
            queued or adaptive cluster may join or leave during the run; asked at most once a second)."""
            if window:
                return int(window)
            if time.monotonic() - cluster["t"] > 1.0:
                nt = client.nthreads()
                cluster.update(workers=max(cluster["workers"], len(nt)), t=time.monotonic(),
                               threads=max(cluster["threads"], sum(nt.values())), now=sum(nt.values()))
            return max(4, 2 * cluster.get("now", cluster["threads"]))

        dsk, order = block_plan(stacked, skip)
        first = target()
        log.info("computing %d blocks on the Dask cluster at %s (%d workers, %d threads; %d blocks in flight); "
                 "writing here", len(order), client.scheduler.address, cluster["workers"], cluster["threads"], first)
        ac = as_completed(loop=client.loop)
        where: dict = {}
        state = {"submitted": 0, "handed": 0, "max_window": first}

        def submit(n):
            part = order[state["submitted"]:state["submitted"] + n]
            if not part:
                return
            bkeys = [k for k, _, _ in part]
            # the tasks these blocks need; a task shared with blocks still in flight (an overlap or
            # pre-pass window read) is not computed again while the scheduler holds it
            sub, _ = cull(dsk, bkeys)
            futs = client.get(sub, bkeys, sync=False)
            for f, (k, r0, c0) in zip(futs, part):
                where[f.key] = (r0, c0)
                futures_alive[f.key] = f
                ac.add(f)
            state["submitted"] += len(part)

        errors: list[BaseException] = []
        slots = threading.BoundedSemaphore(consumers)

        def consume(fut):
            try:
                if not errors:
                    block = fut.result()
                    r0, c0 = where[fut.key]
                    sink.put(r0, c0, block)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the loop
                errors.append(_worker_error(exc))
            finally:
                futures_alive.pop(fut.key, None)
                fut.release()
                slots.release()

        submit(first)
        with ThreadPoolExecutor(consumers, thread_name_prefix="gep-sink") as pool:
            for fut in ac:
                if errors:
                    break
                if fut.status == "error":
                    raise _worker_error(fut.exception()) from fut.exception()
                slots.acquire()  # at most `consumers` blocks fetched or being written here
                if errors:
                    slots.release()
                    break
                pool.submit(consume, fut)
                state["handed"] += 1
                # refill in batches of half the window; at least half a window stays submitted, so
                # the iterator never runs dry before the last block
                w = target()
                state["max_window"] = max(state["max_window"], w)
                in_flight = state["submitted"] - state["handed"]
                if in_flight <= w - max(1, w // 2):
                    submit(w - in_flight)
        if errors:
            raise errors[0]
        return {"scheduler": "distributed", "address": client.scheduler.address, "workers": cluster["workers"],
                "threads": cluster["threads"], "max_blocks_in_flight": state["max_window"]}
    finally:
        if futures_alive:
            try:
                client.cancel(list(futures_alive.values()))
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        if owned:
            client.close()


# --------------------------------------------------------------------------------------
@dataclass
class RunResult:
    output_dir: Path
    manifest_path: Path
    manifest: dict
    tables: dict = field(default_factory=dict)


def _run_hash(cfg: RunConfig, checksums: dict, book: PriceBook) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(cfg.to_json_dict(), sort_keys=True).encode())
    h.update(json.dumps(checksums, sort_keys=True).encode())
    h.update(json.dumps({k: vars(v) for k, v in book.prices.items()}, sort_keys=True, default=str).encode())
    h.update(json.dumps({k: vars(v) for k, v in book.params.items()}, sort_keys=True, default=str).encode())
    h.update(__version__.encode())
    return h.hexdigest()


def _input_files(cfg: RunConfig, sources: dict, layers: dict[str, Layer], legend, book: PriceBook,
                 model: ServiceModel) -> list[Path]:
    files: list[Path] = [Path(f) for s in model.services for f in s.files]

    def add(s):
        if isinstance(s, (SumSource, StackSource)):
            for sub in s.sources:
                add(sub)
        else:
            files.extend(f.path for f in s.files)

    for s in sources.values():
        add(s)
    files += [Path(x) for x in legend.sources]
    files += [Path(layer.path) for layer in layers.values()]
    files += list(book.files)  # prices.table, parameters_table, prices.price_index
    if cfg.inputs.carbon.pools_table and cfg.inputs.carbon.method == "stock_change":
        files.append(cfg.resolve(cfg.inputs.carbon.pools_table))
    if cfg.economic_accounts is not None:
        files.append(cfg.resolve(cfg.economic_accounts.table))
    seen, out = set(), []
    for f in files:
        if f not in seen:
            seen.add(f)
            out.append(f)
    return out


def run(cfg: RunConfig, *, workers: int | None = None, progress: bool = True,
        force: bool = False, scheduler=None, accept_warnings: bool = False) -> RunResult:
    """Run a GEP-R accounting job end to end.

    Parameters
    ----------
    cfg : RunConfig
        Validated configuration (:func:`gep_raster.config.load_config`).
    workers : int, optional
        Threads of the local dask scheduler (default: config ``processing.workers`` or all cores).
        Ignored with ``scheduler``.
    progress : bool
        Show the progress of the block computation on stderr (blocks and pixels done, Mpx/s, ETA;
        :class:`gep_raster.progress.BlockProgress`). False: no output.
    force : bool
        Recompute even if the output folder holds an identical finished run.
    scheduler : str or distributed.Client, optional
        Compute the blocks on an existing Dask distributed cluster: its scheduler address
        (``tcp://host:8786``), a scheduler file (JSON), or a connected ``distributed.Client``.
        The workers need gep_raster installed and the input files at the same paths; the rasters,
        tables and manifest are written by this process (:func:`store_distributed`). Default: local
        threads. Rasters and tables are identical either way.
    accept_warnings : bool
        Run although the pre-flight checks (:func:`gep_raster.validate.validate`, the checks of ``gep validate``)
        give warnings; they are recorded in ``manifest.validation``. Problems always stop the run.

    Returns
    -------
    RunResult
        Output folder, manifest path and content, and the account tables per layer.

    Raises
    ------
    ValidationFailed
        The checks of ``gep validate`` found problems (or warnings, without ``accept_warnings``): every one is
        listed, nothing is computed or written.
    OutputError
        Another run holds the output folder's lock (:mod:`gep_raster.run_lock`), or an output cannot be written
        (disk full, permissions): the message names the file; finished blocks are kept and a rerun resumes.
    GepError (and subclasses)
        Any input, config, table or grid problem, with a message naming the file and field
        (ConfigError when the Dask scheduler cannot be reached).
    """
    preflight = preflight_checks(cfg, accept_warnings=accept_warnings)
    # connect first: an unreachable cluster fails before the long preparation stages
    import rasterio

    from .allocator import tune_for_blocks
    from .budget import gdal_cache_bytes

    from .run_lock import output_lock

    tune_for_blocks()  # block-sized temporaries stay in the heap (no page faults per block); once per process
    client, owned = _connect(scheduler) if scheduler is not None else (None, False)
    try:
        # one run per output folder; GDAL's block cache (process-wide) is part of the memory budget (GDAL's
        # default is 5 % of the RAM)
        with output_lock(cfg.output_dir), \
                rasterio.Env(GDAL_CACHEMAX=gdal_cache_bytes(cfg.processing.memory_budget_mb)):
            return _run(cfg, workers=workers, progress=progress, force=force, client=client, preflight=preflight)
    except GepError:
        raise
    except Exception as exc:  # a full disk surfaces as OSError or a GDAL write error from deep inside a writer
        from .io_write import write_failure

        failure = write_failure(exc, cfg.output_dir)
        if failure is None:
            raise
        raise failure from exc
    finally:
        if owned:
            client.close()


def preflight_checks(cfg: RunConfig, *, accept_warnings: bool = False) -> dict:
    """The checks of ``gep validate`` before a run: raise on problems (and on warnings unless accepted).

    Returns
    -------
    dict
        ``manifest.validation``: ``warnings`` (list of str), ``accepted`` (bool), ``seconds`` (float, time of
        the checks).

    Raises
    ------
    ValidationFailed
        Listing every problem, or every warning with how to accept them (``--accept-warnings``).
    """
    import time

    from .errors import ValidationFailed
    from .validate import validate

    t0 = time.perf_counter()
    rep = validate(cfg)
    where = f"{cfg.source_path}: " if cfg.source_path else ""
    if rep.problems:
        raise ValidationFailed([f"{where}{p}" for p in rep.problems])
    if rep.warnings and not accept_warnings:
        raise ValidationFailed([f"{where}{w}" for w in rep.warnings]
                               + [f"{len(rep.warnings)} warning(s) of gep validate: fix them, or pass --accept-warnings "
                                  "(run(..., accept_warnings=True)) to run anyway; accepted warnings are recorded in "
                                  "manifest.validation"])
    return {"warnings": rep.warnings, "accepted": bool(rep.warnings), "seconds": round(time.perf_counter() - t0, 3)}


def _run(cfg: RunConfig, *, workers: int | None, progress: bool, force: bool, client,
         preflight: dict | None = None) -> RunResult:
    """:func:`run` (``client``: a connected distributed.Client, or None for local threads)."""
    from .allocator import tune_for_blocks
    from .block_store import TILES_SUFFIX, BlockStore, output_fingerprint
    from .budget import block_bytes_per_pixel, choose_chunk
    from .io_write import atomic_path, atomic_to_csv, atomic_to_gpkg, atomic_write_json
    from .provenance import StageTimer, input_checksums, machine_info, package_versions
    from .zonal import CoverageIndex

    timer = StageTimer()
    out_dir = cfg.output_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    state_dir = out_dir / ".gep_state"
    state_dir.mkdir(exist_ok=True)

    with timer.stage("prepare"):
        legend = load_legend(cfg, required_legend_columns(cfg))
        book = PriceBook.from_config(cfg)
        grid = reference_grid(cfg)
        scan = cfg.output.chunk_size or SCAN_CHUNK  # window of the histogram scans (results do not depend on it)
        nthreads = workers or cfg.processing.workers or _cpu_count()
        lc_source = raster_source(cfg, "land_cover", cfg.inputs.land_cover, grid, "categorical")
        if cfg.scenario is not None:  # land-cover scenario (e.g. a development parcel becomes built-up)
            from .scenario import ScenarioSource

            lc_source = ScenarioSource(lc_source, cfg.scenario, grid, cfg)

    with timer.stage("legend_check"):
        hist, class_area = class_histogram(lc_source, scan, with_area=True, threads=nthreads)
        missing = sorted(set(hist) - set(int(c) for c in legend.codes))
        if missing:
            raise TableError(
                f"legend {legend.path}: land-cover class code(s) {missing} occur in inputs.land_cover "
                f"({', '.join(f'{m}: {hist[m]} px' for m in missing[:10])}) but have no legend row; add them")

    with timer.stage("prepare"):
        model = ServiceModel.from_config(cfg, legend, book, cell_size=grid.res[0], geographic=grid.is_geographic,
                                         class_area_m2=class_area)
        if model.needs_terrain() and abs(grid.res[0] - grid.res[1]) > 1e-6 * grid.res[0]:
            raise GridMismatchError(f"terrain terms (slope, LS) need square pixels; the reference grid has {grid.res}")
        keys = model.input_keys()
        sources = open_inputs(cfg, grid, keys, model.input_requests())
        sources["lc"] = lc_source
        if cfg.scenario is not None:  # continuous inputs set on the changed pixels (scenario set_inputs)
            from .scenario import wrap_inputs

            sources = wrap_inputs(sources, cfg.scenario, grid, cfg)
        layers = {name: load_layer(cfg, name, grid) for name in cfg.layers}
        econ = EconomicAccounts.from_config(cfg, legend, layers) if cfg.economic_accounts is not None else None
        if econ is not None:
            sources.update(econ.open_weight_sources(cfg, grid))
        units_path = (cfg.resolve(cfg.inputs.hydro_units.path)
                      if cfg.inputs.hydro_units is not None and model.needs_routing() else None)
        checksums = input_checksums(_input_files(cfg, sources, layers, legend, book, model)
                                    + ([units_path] if units_path else []))
        run_hash = _run_hash(cfg, checksums, book)
        budget_mb = cfg.processing.memory_budget_mb
        n_outputs = len(model.outputs) + (len(econ.outputs) if econ is not None else 0)
        if cfg.output.chunk_size:
            chunk = cfg.output.chunk_size
            chunk_info = {"memory_budget_mb": budget_mb, "chunk_size": chunk, "chosen": "output.chunk_size",
                          "block_bytes_per_pixel": block_bytes_per_pixel(len(sources), n_outputs),
                          "blocks_in_flight": nthreads + 2}
        else:
            try:
                chunk, chunk_info = choose_chunk(budget_mb, grid.shape, len(sources), n_outputs, nthreads)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        layout = cfg.output.resolved_layout(grid.height * grid.width)
        chunk_info["layout"] = layout
        log.info("blocks of %d x %d px (%s; memory budget %d MB, ~%d B/px per block, %d blocks in flight); "
                 "outputs as %s", chunk, chunk, chunk_info["chosen"], budget_mb, chunk_info["block_bytes_per_pixel"],
                 chunk_info["blocks_in_flight"], "single COGs" if layout == "cog" else "VRT mosaics of block tiles")

    with timer.stage("legend_check"):
        if "lc_alt" in sources:
            hist_alt = class_histogram(sources["lc_alt"], scan, threads=nthreads)
            stock = model.service("carbon_sequestration").luts["stock"]
            miss_alt = sorted(set(hist_alt) - set(int(c) for c in np.flatnonzero(np.isfinite(stock))))
            if miss_alt:
                raise TableError(f"inputs.carbon.pools_table: class code(s) {miss_alt} of the alternate land cover "
                                 "have no carbon-pool row")

    # service outputs, then (with economic accounts) EPV, ECV, GEP and the per-item values
    outputs = model.outputs + (econ.outputs if econ is not None else [])
    written = [o for o in outputs if o.write]
    service_keys = [o.key for o in model.outputs if o.kind in ("physical", "value", "gep_r", "diagnostic")]
    zonal_keys = service_keys + (econ.zonal_keys if econ is not None else [])
    rel_path = {o.key: (o.path if layout == "cog" else o.path[:-len(".tif")] + ".vrt") for o in written}
    state_file = state_dir / "rasters.json"
    sums_file = state_dir / "sums.npz"
    done = False
    if not force and state_file.exists() and sums_file.exists():
        try:
            st = json.loads(state_file.read_text())
            done = (st.get("run_hash") == run_hash and st.get("layout") == layout
                    and all((out_dir / rel_path[o.key]).exists()
                            and output_fingerprint(out_dir / rel_path[o.key]) == st["fingerprint"].get(o.key)
                            for o in written))
        except (OSError, ValueError, KeyError):
            done = False

    indices: dict[str, CoverageIndex] = {}
    cov_cache = (cfg.resolve(cfg.processing.coverage_cache) if cfg.processing.coverage_cache
                 else state_dir / "coverage")

    def coverage(gdf, label):
        """Exact coverage index of a layer, reused from the cache when the polygons and grid are the same
        (content hash: CoverageIndex.cache_key); a damaged cache file is rebuilt."""
        try:
            return CoverageIndex.build_cached(gdf, grid, cov_cache, layer_name=label)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("coverage cache %s unusable (%s); rebuilding", cov_cache, exc)
            return CoverageIndex.build(gdf, grid, layer_name=label)

    with timer.stage("coverage"):
        for name, layer in layers.items():
            indices[name] = coverage(layer.gdf, name)
        # nesting: coverage of parent ∩ union(children of that parent)
        nest_idx, parents_of = {}, {}
        for name, layer in layers.items():
            parent_name = layer.config.nests_in
            if parent_name is None:
                continue
            parent = layers[parent_name]
            parents_of[name] = assign_parents(layer, parent)
            geoms = []
            import shapely

            for p, pgeom in enumerate(parent.gdf.geometry.to_numpy()):
                kids = layer.gdf.geometry.to_numpy()[parents_of[name] == p]
                u = shapely.union_all(kids) if len(kids) else shapely.Polygon()
                geoms.append(shapely.intersection(pgeom, u))
            import geopandas as gpd

            cov = gpd.GeoDataFrame({"i": range(len(geoms))}, geometry=geoms, crs=parent.gdf.crs)
            cov = cov[~cov.geometry.is_empty]
            idx = coverage(cov, f"{parent_name}∩{name}") if len(cov) else None
            nest_idx[name] = (idx, cov.index.to_numpy())
            if idx is not None:
                indices[f"__nest__{name}"] = idx

    if econ is not None:
        with timer.stage("economic_prepass"):
            econ.compute_denominators(sources["lc"], sources, indices[econ.layer_name])
            econ.warn_unallocated()

    fig_job = None

    def draw() -> list[dict]:
        """The run's two figures (GEP-R map from the written raster's overview, value per service)."""
        from .report import plot_gep_r_map, plot_value_by_service

        fig_dir = out_dir / "figures"
        fig_dir.mkdir(exist_ok=True)
        gep = _read_decimated(out_dir / rel_path["gep_r_yuan"], 2000)
        dgrid = _decimated_grid(grid, gep.shape)
        plot_gep_r_map(gep, dgrid, fig_dir / "gep_r_map.png", title=f"GEP-R, {cfg.name}",
                       polygons=[layer.gdf for layer in layers.values()],
                       pixel_area_m2=float(np.mean(grid.row_pixel_area_m2)))
        vals = {s.label: totals[s.value_key] for s in model.services}
        title = f"Value per service, whole run area, {cfg.name}"
        if econ is not None:  # EPV and ECV beside the regulating services
            vals.update(econ.plot_values())
            title = f"GEP by service (EPV, GEP-R services, ECV), whole run area, {cfg.name}"
        plot_value_by_service(vals, fig_dir / "value_by_service.png", title=title)
        return [{"path": "figures/gep_r_map.png", "service": "gep_r", "kind": "figure", "unit": "yuan/ha/a"},
                {"path": "figures/value_by_service.png", "service": "all", "kind": "figure", "unit": "yuan/a"}]

    if done:
        log.info("rasters of this run are up to date in %s (run hash %s); skipping computation", out_dir, run_hash[:12])
        st = json.loads(state_file.read_text())
        z = np.load(sums_file)
        sums = {k[len("sums__"):]: z[k] for k in z.files if k.startswith("sums__")}
        valid_area = {k[len("valid__"):]: z[k] for k in z.files if k.startswith("valid__")}
        totals = dict(zip(st["output_keys"], z["totals"]))
        valid_pixels = dict(zip(st["output_keys"], z["valid_pixels"].tolist()))
        upslope_info = st.get("routing")
        timer_resumed = True
        execution = st.get("execution")
    else:
        timer_resumed = False
        routed: dict[str, Path] = {}
        upslope_info = None
        if model.needs_routing():
            with timer.stage("routing"):
                from .hydro_units import load_units, route_to_raster, routing_key

                units = None
                units_sha = None
                if units_path is not None:
                    units = load_units(units_path, grid, cfg.inputs.hydro_units.id_field)
                    units_sha = checksums.get(str(units_path), {}).get("sha256")
                dem_sums = {k: v for k, v in checksums.items() if k in {str(f) for f in sources["dem"].paths}}
                method, opts = model.routing_request()
                rkey = routing_key(dem_sums, method, opts, units_sha, grid)
                rpath = state_dir / "routing" / f"routing-{rkey}.tif"
                info_path = rpath.with_suffix(".json")
                if not force and rpath.exists() and info_path.exists():  # cached by content hash (resumed run)
                    info = json.loads(info_path.read_text())
                    info["reused"] = True
                else:
                    for old in rpath.parent.glob("routing-*"):  # another DEM, units or method
                        if old.name.startswith(f"routing-{rkey}."):
                            continue  # this routing's own units folder: resumed by route_to_raster
                        if old.is_dir():
                            shutil.rmtree(old, ignore_errors=True)
                        else:
                            old.unlink(missing_ok=True)
                    if force:  # recompute: no unit of an interrupted routing is reused either
                        shutil.rmtree(rpath.with_suffix(".units"), ignore_errors=True)
                    info = route_to_raster(sources["dem"], grid, method, opts, rpath,
                                           budget_mb=budget_mb, units=units, workers=nthreads)
                    info.update(options=opts, description=ROUTING_DESCRIPTION[method])
                    atomic_write_json(info_path, info)
                routed = {name: (rpath, b) for b, name in enumerate(info["bands"], start=1)}
                upslope_info = [info]

        with timer.stage("compute_write"):
            import dask.array as da

            chunks = da.core.normalize_chunks((chunk, chunk), shape=grid.shape)
            arrays = {}
            for k in keys:
                if k in TERRAIN_KEYS or k in routed:
                    continue
                arrays[k] = sources[k].to_dask(chunks)
            routed_arrays = {key: GridSource(f"routing.{key}", [rpath], grid, "continuous", band=b).to_dask(chunks)
                             for key, (rpath, b) in routed.items()}  # routing products: read per block
            if model.needs_terrain():
                dem = sources["dem"].to_dask(chunks)
                arrays.update(model.terrain_dask(dem, grid.res, filled_dem=routed_arrays.get("filled_dem")))
                if "dem" in keys:
                    arrays["dem"] = dem
            arrays.update({k: v for k, v in routed_arrays.items() if k in keys})
            stacked = model.compute_dask(arrays, grid.row_pixel_area_m2)
            if econ is not None:  # EPV, ECV, GEP appended to the stack (reads as in the pre-pass)
                econ_lc, econ_w = econ.dask_inputs(sources["lc"], sources, chunks)
                stacked = econ.compute_dask(stacked, model.output_keys.index("gep_r_yuan"), econ_lc, econ_w,
                                            indices[econ.layer_name], grid.row_pixel_area_m2)
            def make_store():
                return BlockStore(state_dir / "blocks", out_dir, grid, [(o.key, rel_path[o.key]) for o in written],
                                  f"{run_hash}:{chunk}", stacked.chunks[1:], layout,
                                  deflate_level=cfg.output.deflate_level)

            store = make_store()
            if force:  # recompute every block
                store.discard()
                store = make_store()
            finished = store.finished()
            n_blocks = store.n_blocks
            skip = [(r0, c0) for bi, r0, c0, _, _ in store.blocks() if bi in finished]
            done_px = sum(h * w for bi, _, _, h, w in store.blocks() if bi in finished)
            if finished:
                log.info("resuming: %d of %d blocks were finished by an earlier run of this job (run hash %s); "
                         "computing the other %d", len(finished), n_blocks, run_hash[:12], n_blocks - len(finished))
            with BlockProgress(n_blocks - len(finished), grid.height * grid.width - done_px, enabled=progress,
                               label="compute_write") as prog:
                sink = BlockSink(outputs, store, indices, zonal_keys, chunks=stacked.chunks[1:], progress=prog)
                sink.preload(finished)
                if client is None:
                    execution = store_local(stacked, sink, nthreads, skip=skip)
                else:
                    if workers:
                        log.info("--workers %d is ignored: the blocks are computed by the Dask cluster's "
                                 "workers", workers)
                    execution = store_distributed(stacked, sink, client, skip=skip)
                sink.check_complete()
            execution.update(blocks=n_blocks, blocks_resumed=len(finished), seconds=round(prog.elapsed(), 3),
                             **chunk_info)

        totals = dict(zip(sink.okeys, sink.totals.tolist()))
        with timer.stage("finalize_rasters"):
            common = {"gep_raster_version": __version__, "run_name": cfg.name, "run_hash": run_hash,
                      "config_sha256": cfg.config_hash(), "accounting_year": cfg.accounting_year}
            # GEP-R first: its figures are drawn on a thread (matplotlib's object API, no pyplot) while the
            # other outputs are published (GDAL work that leaves a core mostly idle)
            for o in sorted(written, key=lambda o: o.key != "gep_r_yuan"):
                prices_used = {p["key"]: p["value"] for p in book.used_records()["prices"]
                               if o.kind in ("gep_r", "gep") or p["service"] == o.service}
                if econ is not None and o.key in econ.output_keys:
                    method = econ.note if o.kind != "gep" else "GEP = EPV + GEP-R + ECV; " + econ.note
                    extra = {"statistics_table": str(econ.table_path), "statistics_sha256": econ.table_sha256}
                else:
                    method = model.notes.get(o.service, "GEP-R = sum of the regulating-service value rasters")
                    extra = {}
                store.publish(o.key, tags={**common, "service": o.service, "kind": o.kind, "units": o.unit,
                                           "method": method, **extra,
                                           **({"prices": prices_used} if o.kind in ("value", "gep_r", "gep")
                                              else {})},
                              description=o.description, units=o.unit)
                faults.hit("raster")
                if o.key == "gep_r_yuan":
                    fig_pool = ThreadPoolExecutor(1, thread_name_prefix="gep-figures")
                    fig_job = fig_pool.submit(draw)
                    fig_pool.shutdown(wait=False)
                # the other layout's file of an earlier run would be stale
                other = out_dir / (o.path[:-len(".tif")] + ".vrt" if layout == "cog" else o.path)
                if other.exists():
                    other.unlink()
                    if layout == "cog":
                        shutil.rmtree(other.with_name(other.stem + TILES_SUFFIX), ignore_errors=True)
        sums, valid_area = sink.sums, sink.valid_area
        valid_pixels = dict(zip(sink.okeys, sink.valid_pixels.tolist()))
        with atomic_path(sums_file, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, totals=sink.totals, valid_pixels=sink.valid_pixels,
                         **{f"sums__{k}": v for k, v in sums.items()},
                         **{f"valid__{k}": v for k, v in valid_area.items()})
        atomic_write_json(state_file, {"run_hash": run_hash, "layout": layout, "output_keys": sink.okeys,
                                       "routing": upslope_info, "execution": execution,
                                       "fingerprint": {o.key: output_fingerprint(out_dir / rel_path[o.key])
                                                       for o in written}})
        store.close()

    # ---------------------------------------------------------------- tables
    manifest_outputs = []
    for o in written:
        manifest_outputs.append({"path": rel_path[o.key], "service": o.service, "kind": o.kind, "unit": o.unit,
                                 "description": o.description})
    tables = {}
    hierarchy = []
    with timer.stage("tables"):
        for name, layer in layers.items():
            idx = indices[name]
            tab = build_table(layer, grid, zonal_keys, sums[name], valid_area[name], idx.covered_area_m2())
            diag_cols = [o.key for o in outputs if o.kind == "diagnostic"]
            tables[name] = tab.drop(columns=diag_cols)
        econ_layer_rules = _economic_columns(econ, tables, layers, parents_of) if econ is not None else {}
        for name, tab in tables.items():
            csv_path = out_dir / "tables" / f"{name}.csv"
            gpkg_path = out_dir / "tables" / f"{name}.gpkg"
            csv_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_to_csv(tab.drop(columns="geometry"), csv_path)
            atomic_to_gpkg(tab, gpkg_path, layer=name)
            faults.hit("table")
            for p, fmt in ((csv_path, "csv"), (gpkg_path, "gpkg")):
                manifest_outputs.append({"path": str(p.relative_to(out_dir)), "service": "all", "kind": "table",
                                         "unit": "see columns", "layer": name, "format": fmt,
                                         "columns": _column_units(tab, outputs)})
        for name, layer in layers.items():
            parent_name = layer.config.nests_in
            if parent_name is None:
                continue
            idx, kept = nest_idx[name]
            n_par = len(layers[parent_name].gdf)
            covered = np.zeros((n_par, len(zonal_keys)))
            union_area = np.zeros(n_par)
            if idx is not None:
                covered[kept] = sums[f"__nest__{name}"]
                union_area[kept] = idx.covered_area_m2()
            # the nesting identity is checked on the service columns (raster sums); EPV/ECV columns of the
            # allocation layer and its parents are statistics and their sums (see gep_raster.economic)
            ns = len(service_keys)
            rep = nesting_report(layer, layers[parent_name], service_keys, sums[name][:, :ns],
                                 sums[parent_name][:, :ns], covered[:, :ns], parents_of[name],
                                 indices[name].covered_area_m2(), union_area)
            for r in rep:
                if not r["ok"]:
                    log.warning("nesting check FAILED: %s '%s' vs its %s: max relative difference %.3g "
                                "(children overlap each other or spill outside the parent by %.4f km2)",
                                parent_name, r["parent_id"], name, r["max_rel_diff"], r["overlap_or_spill_km2"])
                else:
                    g = r["columns"]["gep_r_yuan"]
                    log.info("nesting check ok: %s of %s '%s' sum to %.6g yuan = the %.4f%% of the parent they "
                             "cover (parent total %.6g yuan; uncovered %.6g yuan)", name, parent_name, r["parent_id"],
                             g["children_sum"], 100 * (r.get("covered_share_of_parent") or 0), g["parent_total"],
                             g["uncovered_remainder"])
            hierarchy.extend(rep)

    # ---------------------------------------------------------------- figures
    with timer.stage("figures"):  # (drawn during finalize_rasters when the rasters were computed)
        figures = fig_job.result() if fig_job is not None else draw()
        manifest_outputs.extend(figures)

    # ---------------------------------------------------------------- manifest
    with timer.stage("manifest"):
        diag = {}
        if "water_conservation" in model.names:
            diag["water_conservation"] = {
                "negative_balance_rule": cfg.services.water_conservation.negative_values,
                "negative_balance_volume_m3": totals.get("water_deficit_m3"),
                "share_of_gross_balance": (totals.get("water_deficit_m3") /
                                           max(totals["water_conservation_m3"] + totals["water_deficit_m3"], 1e-300)
                                           if cfg.services.water_conservation.negative_values == "clip" else None)}
        if "carbon_sequestration" in model.names:
            diag["carbon_sequestration"] = {"negative_rule": cfg.services.carbon_sequestration.negative_values,
                                            "negative_amount_tco2": totals.get("carbon_negative_tco2")}
        # plausibility: whole-run magnitudes against documented bounds (gep_raster.plausibility, docs/plausibility.md)
        from .plausibility import check_run, manifest_record, stats_from_totals

        pstats = stats_from_totals(totals, valid_pixels, float(np.mean(grid.row_pixel_area_m2)),
                                   {s.name: s.value_key for s in model.services},
                                   water_negative_rule=diag.get("water_conservation", {}).get("negative_balance_rule"))
        pdiags = check_run(pstats)
        for d in pdiags:
            log.warning("plausibility: %s", d.message)
        diag["plausibility"] = manifest_record(pstats, pdiags)
        assumptions = _assumptions(cfg, legend, model, book, econ)
        manifest = {
            "gep_raster_version": __version__,
            "run_name": cfg.name,
            "description": cfg.description,
            "accounting_year": cfg.accounting_year,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "run_hash": run_hash,
            "resumed_rasters": timer_resumed,
            "config_file": str(cfg.source_path) if cfg.source_path else None,
            "config": cfg.to_json_dict(),
            "config_sha256": cfg.config_hash(),
            "grid": grid.describe(),
            "chunk_size": chunk,
            "layout": layout,
            "memory": chunk_info,
            "allocator": tune_for_blocks(),
            "inputs": {k: s.describe() for k, s in sources.items()},
            "input_checksums": checksums,
            "land_cover_classes_px": hist,
            "legend": {"path": str(legend.path), "sources": legend.sources,
                       "table": legend.table.reset_index().to_dict("records")},
            **book.used_records(),
            "methods": model.notes,
            "routing": upslope_info,
            "execution": execution,
            "assumptions": assumptions,
            "validation": preflight,
            "outputs": manifest_outputs,
            "totals": {k: {"sum": totals[k], "unit": o.unit.replace(" per pixel", ""), "valid_pixels": valid_pixels[k]}
                       for o in outputs for k in [o.key]
                       if o.kind in ("physical", "value", "gep_r", "diagnostic", "gep", "economic_item")},
            "diagnostics": diag,
            "hierarchy_checks": hierarchy,
            **({"economic_accounts": _economic_manifest(econ, totals, econ_layer_rules, sums, zonal_keys,
                                                        indices, layers, grid)} if econ is not None else {}),
            "package_versions": package_versions(),
            "machine": machine_info(),
        }
        manifest["timings_s"] = timer.as_dict()
        manifest["cpu_s"] = timer.cpu_as_dict()
        manifest_path = out_dir / "manifest.json"
        atomic_write_json(manifest_path, manifest)
    return RunResult(out_dir, manifest_path, manifest, tables)


def _economic_columns(econ: EconomicAccounts, tables: dict, layers: dict[str, Layer], parents_of: dict) -> dict:
    """Set the EPV/ECV columns of the allocation layer (its statistics) and of the layers it nests in
    (sums of their children), add ``gep_yuan`` to every table; returns layer -> rule used."""
    cols = econ.zonal_keys
    rules = {name: "coverage-weighted sum of the EPV/ECV rasters" for name in tables}
    name, vals = econ.layer_name, econ.unit_values()
    tables[name][cols] = vals
    rules[name] = "statistics of the unit (allocated + unallocated value)"
    while layers[name].config.nests_in is not None:
        parent = layers[name].config.nests_in
        vals = roll_up(vals, parents_of[name], len(layers[parent].gdf))
        tables[parent][cols] = vals
        rules[parent] = f"sum of its {name} rows"
        name = parent
    for n in tables:
        tables[n] = add_gep_columns(tables[n])
    return rules


def _economic_manifest(econ: EconomicAccounts, totals: dict, layer_rules: dict, sums: dict, zonal_keys: list,
                       indices: dict, layers: dict, grid: RefGrid) -> dict:
    j = [zonal_keys.index("provisioning_yuan"), zonal_keys.index("cultural_yuan")]
    name = econ.layer_name
    return econ.manifest(totals, layer_rules, sums[name][:, j], indices[name].covered_area_m2(),
                         polygon_area_km2(layers[name].gdf, grid))


def _column_units(tab, outputs: list[OutputSpec]) -> dict:
    units = {"area_km2": "km2", "grid_area_km2": "km2", "valid_area_km2": "km2", "gep_r_yuan_per_km2": "yuan/km2/a",
             "gep_yuan_per_km2": "yuan/km2/a"}
    for o in outputs:
        units[o.key] = o.unit.replace(" per pixel", "")
    return {c: units.get(c, "") for c in tab.columns if c != "geometry"}


def _assumptions(cfg: RunConfig, legend, model: ServiceModel, book: PriceBook,
                 econ: EconomicAccounts | None = None) -> list[str]:
    from .assumptions import run_assumptions

    return run_assumptions(cfg, legend, model, book, econ)


def _read_decimated(path: Path, max_side: int) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as ds:
        f = max(1, int(np.ceil(max(ds.width, ds.height) / max_side)))
        # an overview coarser than max_side but at least half of it: read that (GDAL reads full resolution
        # for any size finer than the finest overview; 8 s instead of 0.1 s at 16384² for the map figure)
        ovs = [o for o in ds.overviews(1) if max_side // 2 <= max(ds.width, ds.height) / o <= max_side]
        if ovs and min(ovs) > f:
            f = min(ovs)
        shape = (int(np.ceil(ds.height / f)), int(np.ceil(ds.width / f)))
        from rasterio.enums import Resampling

        if f == 1:
            return ds.read(1)
        return ds.read(1, out_shape=shape, resampling=Resampling.average)


def _decimated_grid(grid: RefGrid, shape) -> RefGrid:
    from affine import Affine

    h, w = shape
    sx = grid.width / w
    sy = grid.height / h
    t = grid.transform
    return RefGrid(grid.crs, Affine(t.a * sx, 0, t.c, 0, t.e * sy, t.f), w, h)
