"""Provenance of a run: package versions, input checksums, stage timings, machine.

Everything here returns JSON-friendly dicts for the run manifest
(write them with :func:`gep_raster.outputs.io_write.atomic_write_json`).
"""
from __future__ import annotations

import contextlib
import os
import platform
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Iterable, Iterator

from .. import faults
from ..errors import InputError
from ..grid.remote import is_remote_path  # re-exported: URLs and GDAL virtual paths
from .io_write import sha256_file

__all__ = ["package_versions", "input_checksums", "StageTimer", "machine_info", "SHAPEFILE_SIDECARS", "is_remote_path",
           "normalise_path", "portable_path", "portable_checksums", "portable_files"]

#: Distribution names reported by :func:`package_versions` (besides python, GDAL, PROJ, GEOS).
_DISTRIBUTIONS = (
    "gep_raster", "numpy", "numba", "dask", "distributed", "xarray", "rioxarray", "rasterio",
    "geopandas", "shapely", "pyproj", "exactextract", "pyflwdir", "pydantic", "pandas",
    "matplotlib",
)

#: Companion files of a shapefile hashed together with the ``.shp``.
SHAPEFILE_SIDECARS = (".shx", ".dbf", ".prj", ".cpg")


def _dist_version(name: str) -> str | None:
    for candidate in (name, name.replace("_", "-")):
        try:
            return metadata.version(candidate)
        except metadata.PackageNotFoundError:
            continue
    return None


def package_versions() -> dict[str, str | None]:
    """Versions of Python, the scientific stack and the C libraries behind it.

    Returns
    -------
    dict of str to (str or None)
        Keys ``python``, ``gep_raster``, ``numpy``, ``numba``, ``dask``, ``distributed``,
        ``xarray``, ``rioxarray``, ``rasterio``, ``gdal``, ``geopandas``, ``shapely``,
        ``geos``, ``pyproj``, ``proj``, ``exactextract``, ``pyflwdir``, ``pydantic``,
        ``pandas``, ``matplotlib``. Python packages come from the installed distribution
        metadata (nothing heavy is imported); ``gdal`` is ``rasterio.__gdal_version__``,
        ``proj`` is ``pyproj.proj_version_str``, ``geos`` is ``shapely.geos_version_string``.
        A package that is not installed (or fails to import, for the C libraries) gives
        ``None``. Never raises.
    """
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _DISTRIBUTIONS:
        out[name] = _dist_version(name)
    if out["gep_raster"] is None:  # running from a source tree that is not installed
        with contextlib.suppress(Exception):
            from .._version import __version__
            out["gep_raster"] = str(__version__)
    out["gdal"] = _lib_version("rasterio", "__gdal_version__") if out["rasterio"] else None
    out["proj"] = _lib_version("pyproj", "proj_version_str") if out["pyproj"] else None
    out["geos"] = _lib_version("shapely", "geos_version_string") if out["shapely"] else None
    # stable, readable order: python first, then alphabetical-ish as listed
    order = ["python", "gep_raster", "numpy", "numba", "dask", "distributed", "xarray", "rioxarray",
             "rasterio", "gdal", "geopandas", "shapely", "geos", "pyproj", "proj", "exactextract",
             "pyflwdir", "pydantic", "pandas", "matplotlib"]
    return {k: out.get(k) for k in order}


def _lib_version(module: str, attr: str) -> str | None:
    try:
        mod = __import__(module)
        value = getattr(mod, attr)
        return str(value) if value is not None else None
    except Exception:
        return None


def _companions(path: Path) -> list[Path]:
    """The shapefile sidecars of ``path`` that exist (either case of the suffix)."""
    if path.suffix.lower() != ".shp":
        return []
    found = []
    for ext in SHAPEFILE_SIDECARS:
        for cand in (path.with_suffix(ext), path.with_suffix(ext.upper())):
            if cand.is_file() and cand not in found:
                found.append(cand)
                break
    return found


def input_checksums(paths: Iterable[str | os.PathLike], *, remote_checksum: bool = True,
                    timeout: float = 60.0) -> dict[str, dict[str, int | str]]:
    """SHA-256 and size of each input file, for the manifest.

    Parameters
    ----------
    paths : iterable of path-like
        Input files. For a ``.shp`` the existing sidecars (``.shx``, ``.dbf``, ``.prj``,
        ``.cpg``) are hashed too. A folder (e.g. a File Geodatabase) is hashed file by file,
        recursively, in sorted order. A remote path (:class:`gep_raster.grid.remote.RemotePath`)
        gets :func:`gep_raster.grid.remote.remote_record` (URL, size, ETag, Last-Modified and,
        with ``remote_checksum``, the sha256 of its bytes).
    remote_checksum : bool
        Stream http(s) inputs once for their sha256 (``processing.remote.checksum: content``).
    timeout : float
        Seconds per HTTP request of a remote input.

    Returns
    -------
    dict
        ``{str(path): {"sha256": <64 hex chars>, "bytes": <size in bytes>}}``, keys as the
        paths were given (sidecars/folder members derived from them), in input order,
        duplicates once.

    Raises
    ------
    InputError
        If a path does not exist or cannot be read.
    """
    out: dict[str, dict[str, int | str]] = {}

    def add(p: Path) -> None:
        key = str(p)
        if key in out:
            return
        try:
            out[key] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        except OSError as exc:
            raise InputError(f"{p}: cannot read input file for checksum ({exc})") from None

    for raw in paths:
        if is_remote_path(raw):
            from ..grid.remote import remote_record

            if str(raw) not in out:
                out[str(raw)] = remote_record(raw, checksum=remote_checksum, timeout=timeout)
            continue
        p = Path(raw)
        if p.is_dir():
            for member in sorted(q for q in p.rglob("*") if q.is_file()):
                add(member)
            continue
        if not p.exists():
            raise InputError(f"{p}: input file does not exist")
        add(p)
        for side in _companions(p):
            add(side)
    return out


def normalise_path(p: str | os.PathLike, base: str | os.PathLike | None = None) -> str:
    """The absolute, normalised form of a local path (``..`` and ``.`` segments and doubled separators removed,
    ``~`` expanded; symbolic links are not followed); remote/virtual paths unchanged.

    Parameters
    ----------
    p : str or path-like
        The path. A relative path is taken relative to ``base`` (or the current folder).
    base : str or path-like, optional
        Folder a relative ``p`` is relative to.

    Returns
    -------
    str
        The absolute normalised path, or ``p`` itself (as str) when :func:`is_remote_path`. Never raises.
    """
    s = os.fspath(p)
    if is_remote_path(s):
        return s
    s = os.path.expanduser(s)
    if not os.path.isabs(s) and base is not None:
        s = os.path.join(normalise_path(base), s)
    return os.path.normpath(os.path.abspath(s))


def portable_path(p: str | os.PathLike, base: str | os.PathLike) -> dict[str, str]:
    """The two manifest fields of an input path: relative to ``base`` and absolute, both normalised.

    Parameters
    ----------
    p : str or path-like
        The input path (absolute, or relative to ``base``).
    base : str or path-like
        The folder relative paths are written from (the run's config file folder).

    Returns
    -------
    dict
        ``{"path": <relative to base>, "abs_path": <absolute, normalised>}``. A remote/virtual path (see
        :func:`is_remote_path`) is kept verbatim in both; a path that has no relative form (another drive on
        Windows) has its absolute path in both. Never raises.

    Examples
    --------
    >>> portable_path("/data/pipelines/../tiles/a.tif", "/data/pipelines")
    {'path': '../tiles/a.tif', 'abs_path': '/data/tiles/a.tif'}
    """
    absolute = normalise_path(p, base)
    if is_remote_path(absolute):
        return {"path": absolute, "abs_path": absolute}
    try:
        rel = os.path.relpath(absolute, normalise_path(base))
    except ValueError:  # no relative path between drives
        rel = absolute
    return {"path": rel, "abs_path": absolute}


def portable_files(files: Iterable[str | os.PathLike], base: str | os.PathLike) -> list[dict[str, str]]:
    """:func:`portable_path` of every path of ``files``, in order.

    Parameters
    ----------
    files : iterable of str or path-like
    base : str or path-like
        The folder relative paths are written from.

    Returns
    -------
    list of dict
        ``[{"path": ..., "abs_path": ...}, ...]``. Never raises.
    """
    return [portable_path(f, base) for f in files]


def portable_checksums(checksums: dict[str, dict], base: str | os.PathLike) -> dict[str, dict]:
    """:func:`input_checksums` as written to the manifest: keyed by the path relative to ``base``, each entry with
    ``path`` (the key), ``abs_path``, ``sha256`` and ``bytes``.

    Parameters
    ----------
    checksums : dict
        ``{path: {"sha256": ..., "bytes": ...}}`` (:func:`input_checksums`).
    base : str or path-like
        The folder relative paths are written from (the config file's folder).

    Returns
    -------
    dict
        ``{relative path: {"path", "abs_path", "sha256", "bytes"}}`` in the order of ``checksums``; two keys
        that normalise to the same file are listed once. Never raises.
    """
    out: dict[str, dict] = {}
    for key, rec in checksums.items():
        pp = portable_path(key, base)
        out.setdefault(pp["path"], {**pp, **rec})
    return out


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its finished, waited-for children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class StageTimer:
    """Wall-clock and CPU time per named stage of a run.

    Use ``with timer.stage("read"): ...``; a stage entered several times accumulates its
    time. Time is recorded also when the block raises. Thread-safe. CPU time is the process's
    (all threads) plus that of child processes that finished within the stage (``os.times``), so
    CPU seconds / wall seconds of a stage is how many cores it kept busy on average.

    Examples
    --------
    >>> t = StageTimer()
    >>> with t.stage("read"):
    ...     pass
    >>> list(t.as_dict())
    ['read']
    """

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}
        self._cpu: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._t0 = time.perf_counter()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Context manager timing one stage ``name`` (seconds, ``time.perf_counter``); passes the fault point
        ``stage.<name>`` (:mod:`gep_raster.faults`) on entry."""
        faults.hit(f"stage.{name}")
        start = time.perf_counter()
        cpu0 = _cpu_seconds()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            cpu = _cpu_seconds() - cpu0
            with self._lock:
                self._seconds[name] = self._seconds.get(name, 0.0) + elapsed
                self._cpu[name] = self._cpu.get(name, 0.0) + cpu
                self._counts[name] = self._counts.get(name, 0) + 1

    def as_dict(self) -> dict[str, float]:
        """``{stage: seconds}`` in order of first use, seconds as float (rounded to 1 ms)."""
        with self._lock:
            return {k: round(v, 3) for k, v in self._seconds.items()}

    def cpu_as_dict(self) -> dict[str, float]:
        """``{stage: CPU seconds}`` (this process's threads + children finished in the stage), 10 ms."""
        with self._lock:
            return {k: round(v, 2) for k, v in self._cpu.items()}

    def counts(self) -> dict[str, int]:
        """``{stage: number of times entered}``."""
        with self._lock:
            return dict(self._counts)

    @property
    def total_seconds(self) -> float:
        """Seconds since the timer was created (wall clock)."""
        return time.perf_counter() - self._t0


def machine_info() -> dict:
    """Description of the machine running the job.

    Returns
    -------
    dict
        ``cpu_count`` (logical CPUs), ``cpu_count_usable`` (CPUs this process may run on,
        from the affinity mask where available), ``cpu_count_physical`` (None if unknown),
        ``ram_total_bytes`` and ``ram_total_gib`` (psutil; None if psutil is missing),
        ``platform`` (``platform.platform()``), ``machine``, ``system``,
        ``python_implementation``, ``python_executable``. Never raises.
    """
    info: dict = {
        "cpu_count": os.cpu_count(),
        "cpu_count_usable": None,
        "cpu_count_physical": None,
        "ram_total_bytes": None,
        "ram_total_gib": None,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "system": platform.system(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable,
    }
    with contextlib.suppress(Exception):
        info["cpu_count_usable"] = len(os.sched_getaffinity(0))
    try:
        import psutil

        info["cpu_count_physical"] = psutil.cpu_count(logical=False)
        total = int(psutil.virtual_memory().total)
        info["ram_total_bytes"] = total
        info["ram_total_gib"] = round(total / 2**30, 2)
    except Exception:
        pass
    return info
