"""Where numba keeps the compiled kernels of gep_raster (``@njit(cache=True)``).

numba writes its cache next to each module (``<package>/**/__pycache__/*.nbi|*.nbc``). In a read-only install
(system site-packages, a container image, a shared environment) it cannot, and every run then compiles every
kernel again (about 25-50 s). :func:`configure` points numba to a per-user folder in that case:

* ``NUMBA_CACHE_DIR`` already set: left as it is (the user's choice wins);
* package folder writable: nothing changes (numba's default, next to the modules);
* else ``$XDG_CACHE_HOME/gep_raster/numba``, or ``~/.cache/gep_raster/numba`` when ``XDG_CACHE_HOME`` is unset
  or relative (the XDG base-directory rule, as platformdirs does on Linux).

numba reads ``NUMBA_CACHE_DIR`` once, when it is first imported, so :func:`configure` must run before anything
imports numba: ``gep_raster/__init__.py`` imports this module first. It imports only the standard library.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["PACKAGE_DIR", "configure", "cache_dir", "user_cache_dir"]

#: the installed package folder (where numba caches by default)
PACKAGE_DIR = Path(__file__).resolve().parent


def user_cache_dir(environ=None) -> Path:
    """``$XDG_CACHE_HOME/gep_raster/numba``, else ``~/.cache/gep_raster/numba``."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "gep_raster" / "numba"


def _writable(folder: Path) -> bool:
    """Whether numba could write its cache into ``folder/__pycache__`` (the folder, or its existing __pycache__)."""
    pyc = folder / "__pycache__"
    target = pyc if pyc.is_dir() else folder
    return os.access(target, os.W_OK | os.X_OK)


def configure(package_dir: Path | None = None, environ=None) -> str | None:
    """Set ``NUMBA_CACHE_DIR`` to :func:`user_cache_dir` when the package folder is not writable.

    Parameters
    ----------
    package_dir : Path, optional
        Folder to test (default: the installed package, :data:`PACKAGE_DIR`).
    environ : mapping, optional
        Environment to read and change (default: ``os.environ``).

    Returns
    -------
    str or None
        The value set, or None when nothing was changed (already set, or the package folder is writable).
        When numba is already imported a change would have no effect, so nothing is set either.
    """
    env = os.environ if environ is None else environ
    if env.get("NUMBA_CACHE_DIR"):
        return None
    if _writable(Path(package_dir) if package_dir is not None else PACKAGE_DIR):
        return None
    if environ is None and "numba" in sys.modules:  # too late: numba has read its configuration
        return None
    folder = user_cache_dir(env)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # no writable home either: numba then falls back to compiling in memory
        return None
    env["NUMBA_CACHE_DIR"] = str(folder)
    return env["NUMBA_CACHE_DIR"]


def cache_dir() -> Path:
    """The folder numba writes gep_raster's kernels to: ``NUMBA_CACHE_DIR`` if set, else the package folder
    (each module's ``__pycache__``)."""
    set_ = os.environ.get("NUMBA_CACHE_DIR")
    return Path(set_) if set_ else PACKAGE_DIR


configure()
