"""Blocks computed on a Dask distributed cluster and stored into a :class:`~gep_raster.pipeline.block_sink.BlockSink`
in this process: connecting (:func:`connect`), worker errors re-raised as the package's own
(:func:`_worker_error`), and the windowed submission loop (:func:`store_distributed`).
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from ..errors import ConfigError, GepError
from .block_sink import BlockSink, block_plan

log = logging.getLogger("gep_raster")

def connect(scheduler):
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

    from .. import errors as _errors

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
    client, owned = connect(scheduler)
    futures_alive: dict = {}
    try:
        cluster = _cluster_threads(client)
        dsk, order = block_plan(stacked, skip)
        feed = _BlockFeed(client, window, cluster, dsk, order, futures_alive)
        first = feed.target()
        log.info("computing %d blocks on the Dask cluster at %s (%d workers, %d threads; %d blocks in flight); "
                 "writing here", len(order), client.scheduler.address, cluster["workers"], cluster["threads"], first)
        feed.max_window = first
        feed.submit(first)
        _drain(feed, sink, consumers)
        return {"scheduler": "distributed", "address": client.scheduler.address, "workers": cluster["workers"],
                "threads": cluster["threads"], "max_blocks_in_flight": feed.max_window}
    finally:
        if futures_alive:
            try:
                client.cancel(list(futures_alive.values()))
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        if owned:
            client.close()


def _cluster_threads(client) -> dict:
    """Workers and threads of the cluster now (a warning when it has no worker yet), with the time asked."""
    workers_info = client.nthreads()  # worker address -> threads
    if not workers_info:
        log.warning("the Dask cluster at %s has no worker yet; blocks wait until workers connect",
                    client.scheduler.address)
    return {"workers": len(workers_info), "threads": sum(workers_info.values()), "t": time.monotonic()}


class _BlockFeed:
    """The blocks submitted to the cluster in row-major order, a window of them in flight.

    ``order`` holds (key, r0, c0) of every block to compute; ``where`` maps a future's key to its block;
    ``alive`` the futures not yet handed back (cancelled on the way out)."""

    def __init__(self, client, window: int | None, cluster: dict, dsk, order: list, alive: dict):
        from distributed import as_completed

        self.client, self.window, self.cluster, self.dsk, self.order, self.alive = \
            client, window, cluster, dsk, order, alive
        self.ac = as_completed(loop=client.loop)
        self.where: dict = {}
        self.submitted = 0
        self.handed = 0
        self.max_window = 0

    def target(self) -> int:
        """Blocks to keep in flight: ``window``, or twice the cluster's threads now (workers of a
        queued or adaptive cluster may join or leave during the run; asked at most once a second)."""
        if self.window:
            return int(self.window)
        cluster = self.cluster
        if time.monotonic() - cluster["t"] > 1.0:
            nt = self.client.nthreads()
            cluster.update(workers=max(cluster["workers"], len(nt)), t=time.monotonic(),
                           threads=max(cluster["threads"], sum(nt.values())), now=sum(nt.values()))
        return max(4, 2 * cluster.get("now", cluster["threads"]))

    def submit(self, n: int) -> None:
        """Submit the next ``n`` blocks (fewer at the end)."""
        from dask.optimization import cull

        part = self.order[self.submitted:self.submitted + n]
        if not part:
            return
        bkeys = [k for k, _, _ in part]
        # the tasks these blocks need; a task shared with blocks still in flight (an overlap or
        # pre-pass window read) is not computed again while the scheduler holds it
        sub, _ = cull(self.dsk, bkeys)
        futs = self.client.get(sub, bkeys, sync=False)
        for f, (k, r0, c0) in zip(futs, part):
            self.where[f.key] = (r0, c0)
            self.alive[f.key] = f
            self.ac.add(f)
        self.submitted += len(part)

    def refill(self) -> None:
        """After a block was handed back: submit again in batches of half the window; at least half a window
        stays submitted, so the iterator never runs dry before the last block."""
        w = self.target()
        self.max_window = max(self.max_window, w)
        in_flight = self.submitted - self.handed
        if in_flight <= w - max(1, w // 2):
            self.submit(w - in_flight)


def _drain(feed: _BlockFeed, sink: BlockSink, consumers: int) -> None:
    """Hand every finished block to ``sink.put`` from ``consumers`` threads (at most that many fetched or being
    written at once), refilling the window; the first error (on a worker or in the sink) is raised here."""
    from concurrent.futures import ThreadPoolExecutor

    errors: list[BaseException] = []
    slots = threading.BoundedSemaphore(consumers)

    def consume(fut):
        try:
            if not errors:
                block = fut.result()
                r0, c0 = feed.where[fut.key]
                sink.put(r0, c0, block)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the loop
            errors.append(_worker_error(exc))
        finally:
            feed.alive.pop(fut.key, None)
            fut.release()
            slots.release()

    with ThreadPoolExecutor(consumers, thread_name_prefix="gep-sink") as pool:
        for fut in feed.ac:
            if errors:
                break
            if fut.status == "error":
                raise _worker_error(fut.exception()) from fut.exception()
            slots.acquire()  # at most `consumers` blocks fetched or being written here
            if errors:
                slots.release()
                break
            pool.submit(consume, fut)
            feed.handed += 1
            feed.refill()
    if errors:
        raise errors[0]
