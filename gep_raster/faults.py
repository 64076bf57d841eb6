"""Fault injection points of a run, for the kill-and-resume tests (``tests/test_faults.py``).

A run passes named points: ``stage.<name>`` when a stage of :class:`gep_raster.outputs.provenance.StageTimer` is
entered (``stage.compute_write``, ``stage.finalize_rasters``, ``stage.tables``, ...), ``block`` after each
block is committed to the resume journal (:meth:`gep_raster.outputs.block_store.BlockStore.commit`), ``raster`` after
each final raster is published, ``table`` after each account table (CSV + GPKG of a layer) is written, and
``compute`` before a block's services are computed (in the process that computes it: a thread of the run, or
a Dask worker).

The environment variable ``GEP_FAULT`` = ``<point>@<n>:<signal>`` (e.g. ``block@6:KILL``,
``stage.finalize_rasters@1:INT``, ``raster@3:KILL``) makes the process send itself ``SIG<signal>`` the
``n``-th time it passes ``<point>``: a kill at an exact point of the run, the same on every machine, where
a test that kills from outside after a delay would depend on the machine's speed. Unset (the default),
:func:`hit` returns at once and costs a dictionary lookup. With ``GEP_FAULT_ONCE`` = a file path as well,
the fault fires only in the first process that creates that file (``O_EXCL``): one kill in a whole cluster
of worker processes that share the environment.
"""
from __future__ import annotations

import os
import signal
import threading

ENV = "GEP_FAULT"
ONCE_ENV = "GEP_FAULT_ONCE"
_lock = threading.Lock()
_counts: dict[str, int] = {}


def _parse(spec: str) -> tuple[str, int, int]:
    """``"block@6:KILL"`` -> (``"block"``, 6, ``signal.SIGKILL``); raises ValueError on a malformed spec."""
    point, _, rest = spec.partition("@")
    n, _, sig = rest.partition(":")
    signum = getattr(signal, f"SIG{sig.upper() or 'KILL'}", None)
    if not point or not n.isdigit() or int(n) < 1 or signum is None:
        raise ValueError(f"{ENV}={spec!r}: expected <point>@<n>:<signal>, e.g. block@6:KILL")
    return point, int(n), int(signum)


def hit(point: str) -> None:
    """Count one pass of ``point``; send the configured signal to this process on the configured pass.

    Parameters
    ----------
    point : str
        Name of the point (``stage.<name>``, ``block``, ``raster``, ``table``).

    Raises
    ------
    ValueError
        ``GEP_FAULT`` is set but malformed.
    """
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, n, signum = _parse(spec)
    if point != target:
        return
    with _lock:
        _counts[point] = _counts.get(point, 0) + 1
        fire = _counts[point] == n
    if not fire:
        return
    once = os.environ.get(ONCE_ENV)
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signum)
