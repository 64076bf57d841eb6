"""One run per output folder: an exclusive lock on ``<output.dir>/.gep_state/run.lock``.

Two ``gep run`` into the same folder at once would interleave block tiles, journal entries and final files.
:func:`output_lock` takes an advisory ``flock`` (``LOCK_EX | LOCK_NB``) on the lock file for the whole run; a
second run finds it held and stops at once with a message naming the folder and the holder (pid, host, start
time, written into the lock file). The kernel releases the lock when the holder exits in any way (SIGKILL
included), so a killed run never leaves a stale lock: the rerun takes it and resumes.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
from pathlib import Path
from typing import Iterator

from .outputs.io_write import OutputError

LOCK_NAME = "run.lock"

try:  # POSIX; without fcntl (Windows) runs are not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


@contextlib.contextmanager
def output_lock(out_dir: Path) -> Iterator[Path]:
    """Hold the run lock of ``out_dir`` for the ``with`` block.

    Parameters
    ----------
    out_dir : pathlib.Path
        The run's output folder (``output.dir``); it and ``.gep_state/`` are created if missing.

    Yields
    ------
    pathlib.Path
        The lock file.

    Raises
    ------
    OutputError
        Another process holds the lock (another run writes this folder), or the lock file cannot be created.
    """
    path = Path(out_dir) / ".gep_state" / LOCK_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create the run lock {path} ({exc})") from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "unknown process"
                raise OutputError(
                    f"{out_dir}: another gep run is writing this output folder ({holder}); wait until it "
                    "finishes, or give this run another output.dir (gep run -o DIR)") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}))
        fh.flush()
        yield path
    finally:
        fh.close()  # closing the descriptor releases the flock
