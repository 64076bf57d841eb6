"""What every ``gep`` command shares: the logging setup, the exit-code table, and the one place where an error
becomes one message and one exit code.

Logging (the same options on every command):

* ``-q/--quiet``: errors and the one-line result only (no progress display, no warnings, no detail lines);
* default: progress display and warnings;
* ``-v/--verbose``: also gep_raster's INFO lines (stage timings, routing, plausibility notes); ``-vv``: DEBUG,
  and the INFO lines of the libraries underneath (rasterio/GDAL, pyogrio, numba, distributed...);
* ``--log-level LEVEL``: gep_raster's level set explicitly (DEBUG, INFO, WARNING, ERROR), overriding -q/-v;
* ``--log-file PATH``: every record of gep_raster at INFO or lower level also goes to PATH (appended), with
  ``--log-json`` as JSON lines (``time``, ``level``, ``logger``, ``message``) for schedulers.

Libraries' loggers stay at WARNING unless ``-vv`` asks for more. GDAL's messages reach Python through rasterio's
loggers (``rasterio._env``, ``rasterio._err``); they are shown as gep_raster's own (logger name ``gep_raster.gdal``,
``GDAL:`` prefix) so that one setup governs them. GDAL errors that become exceptions are reported once, as
gep_raster's message naming the file, band and problem.

Exit codes (:data:`EXIT_CODES`, the same for every command):

====  ===========================================================================================================
code  meaning
====  ===========================================================================================================
0     done
1     input or data problems found: a missing, unreadable or implausible input file, a table or polygon layer
      that cannot be used, a grid mismatch, ``gep validate`` problems, or a run refused by its pre-flight checks
2     usage or configuration error: unknown option or command, bad argument, config file missing, not YAML,
      unknown or invalid key
3     the command could not finish for another reason: an output cannot be written (permissions, disk full),
      another run holds the output folder's lock, the memory budget is too small for the flow routing
130   interrupted (Ctrl-C): finished blocks are kept; the same command resumes
====  ===========================================================================================================
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Iterator, Optional

import typer

from .errors import ConfigError, GepError, InputError, ValidationFailed

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_FAILED = 3
EXIT_INTERRUPTED = 130

#: the exit-code table shared by every command (README, section "Exit codes")
EXIT_CODES = {
    EXIT_OK: "done",
    EXIT_PROBLEMS: "input or data problems found (missing/unreadable/implausible input, validation problems)",
    EXIT_USAGE: "usage or configuration error (unknown option, bad argument, config missing or invalid)",
    EXIT_FAILED: "could not finish for another reason (output not writable, run locked, memory budget)",
    EXIT_INTERRUPTED: "interrupted: finished blocks are kept, the same command resumes",
}

#: libraries whose loggers stay at WARNING unless -vv: their INFO lines are not for the user (rasterio logs each
#: GDAL error at INFO before raising it; gep_raster turns the exception into a message naming file and band)
LIBRARY_LOGGERS = ("rasterio", "fiona", "pyogrio", "numba", "distributed", "urllib3", "matplotlib", "PIL",
                   "exactextract", "pyflwdir", "fsspec", "asyncio", "tornado", "bokeh", "shapely", "pyproj")

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_FORMAT = "%(levelname)s %(name)s: %(message)s"
#: the handlers this module installed on the root logger (replaced, never stacked, when a second command runs in
#: the same process, e.g. in tests)
_INSTALLED: list[logging.Handler] = []


def exit_code_for(exc: BaseException) -> int:
    """The exit code of an error (table in the module docstring).

    Parameters
    ----------
    exc : BaseException
        An error a command caught.

    Returns
    -------
    int
        1 for :class:`~gep_raster.errors.InputError` and :class:`~gep_raster.errors.ValidationFailed`, 2 for
        :class:`~gep_raster.errors.ConfigError`, 130 for ``KeyboardInterrupt``, 3 for any other error.
    """
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, ConfigError):
        return EXIT_USAGE
    if isinstance(exc, (InputError, ValidationFailed)):
        return EXIT_PROBLEMS
    return EXIT_FAILED


class _FoldGdal(logging.Filter):
    """Shows GDAL's messages (rasterio's ``_env``/``_err`` loggers) as gep_raster's: name ``gep_raster.gdal``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(("rasterio._env", "rasterio._err", "rasterio._base")):
            record.name = "gep_raster.gdal"
            msg = record.getMessage()
            record.msg, record.args = (msg if msg.startswith("GDAL") else f"GDAL: {msg}"), None
        return True


class _JsonLines(logging.Formatter):
    """One JSON object per record: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                       + f".{int(record.msecs):03d}Z",
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def console_level(quiet: bool = False, verbose: int = 0, log_level: Optional[str] = None) -> int:
    """gep_raster's console log level from the options.

    Parameters
    ----------
    quiet : bool
        ``-q``: ERROR.
    verbose : int
        Count of ``-v``: 1 INFO, 2 or more DEBUG. Default (0, not quiet): WARNING.
    log_level : str, optional
        ``--log-level``: one of DEBUG, INFO, WARNING, ERROR (any case); overrides ``quiet`` and ``verbose``.

    Raises
    ------
    typer.BadParameter
        ``log_level`` is not one of the four names (exit code 2).
    """
    if log_level is not None:
        name = log_level.upper()
        if name not in _LEVELS:
            raise typer.BadParameter(f"'{log_level}' is not a log level; use one of {', '.join(_LEVELS)}",
                                     param_hint="--log-level")
        return getattr(logging, name)
    if quiet:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)


def setup_logging(quiet: bool = False, verbose: int = 0, log_level: Optional[str] = None,
                  log_file: Optional[Path] = None, log_json: bool = False) -> int:
    """Install the one logging setup of the command line (module docstring); returns gep_raster's console level.

    Replaces the handlers an earlier call installed (so repeated commands in one process do not stack them).

    Raises
    ------
    typer.BadParameter
        Unknown ``log_level``, or ``log_file`` cannot be opened for appending (names the file; exit code 2).
    """
    level = console_level(quiet, verbose, log_level)
    root = logging.getLogger()
    for h in _INSTALLED:
        root.removeHandler(h)
        h.close()
    _INSTALLED.clear()
    console = logging.StreamHandler()
    console.setLevel(level)
    console.setFormatter(logging.Formatter(_FORMAT))
    handlers: list[logging.Handler] = [console]
    file_level = min(level, logging.INFO)
    if log_file is not None:
        try:
            fh = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(f"cannot open {log_file} for appending: {exc.strerror or exc}",
                                     param_hint="--log-file") from None
        fh.setLevel(file_level)
        fh.setFormatter(_JsonLines() if log_json else logging.Formatter("%(asctime)s " + _FORMAT))
        handlers.append(fh)
    for h in handlers:
        h.addFilter(_FoldGdal())
        root.addHandler(h)
        _INSTALLED.append(h)
    root.setLevel(logging.WARNING)
    logging.getLogger("gep_raster").setLevel(min(level, file_level) if log_file is not None else level)
    library_level = logging.INFO if verbose >= 2 else logging.WARNING
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(library_level)
    # GDAL's warnings are shown like gep_raster's own lines: at the level gep_raster is shown
    for name in ("rasterio._env", "rasterio._err", "rasterio._base"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING) if verbose < 2 else logging.DEBUG)
    return level


class Console:
    """What a command prints: the one-line ``result`` (always, on stdout), ``detail`` lines (not with ``-q``),
    warnings (stderr, not with ``-q``) and the error message (stderr, always)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def result(self, line: str) -> None:
        """The command's one-line result (printed with ``-q`` too)."""
        typer.echo(line)

    def detail(self, line: str, **style) -> None:
        """A line of detail (totals, checks, paths): not with ``-q``."""
        if not self.quiet:
            typer.secho(line, **style) if style else typer.echo(line)

    def warning(self, line: str) -> None:
        """A warning on stderr: not with ``-q``."""
        if not self.quiet:
            typer.secho(f"warning: {line}", fg=typer.colors.YELLOW, err=True)

    def problem(self, line: str) -> None:
        """A problem found (stderr, also with ``-q``)."""
        typer.secho(f"problem: {line}", fg=typer.colors.RED, err=True)


@contextlib.contextmanager
def command(quiet: bool = False, verbose: int = 0, log_level: Optional[str] = None,
            log_file: Optional[Path] = None, log_json: bool = False, debug: bool = False,
            resume_hint: Optional[str] = None) -> Iterator[Console]:
    """The frame of every command: logging set up, then errors turned into one message and an exit code.

    Usage::

        with command(quiet, verbose, log_level, log_file, log_json, debug) as out:
            res = do_the_work()
            out.result("one line")

    Parameters
    ----------
    quiet, verbose, log_level, log_file, log_json
        The logging options (:func:`setup_logging`).
    debug : bool
        Let errors propagate with their traceback instead of a message and an exit code.
    resume_hint : str, optional
        Said after "interrupted:" when the user presses Ctrl-C (e.g. where the finished blocks are kept).

    Raises
    ------
    typer.Exit
        With the code of :func:`exit_code_for` after printing ``error: <message>`` once on stderr.
    """
    setup_logging(quiet, verbose, log_level, log_file, log_json)
    try:
        yield Console(quiet)
    except typer.Exit:
        raise
    except GepError as exc:
        if debug:
            raise
        logging.getLogger("gep_raster").debug("error", exc_info=True)
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(exit_code_for(exc)) from None
    except KeyboardInterrupt:
        if debug:
            raise
        typer.secho(f"interrupted: {resume_hint or 'nothing already written is lost; run the same command again'}",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        remove_logging()


def remove_logging() -> None:
    """Remove (flush, close) the handlers :func:`setup_logging` installed: a command leaves no handler on a stream
    that may be closed after it (e.g. a test runner's captured stderr, which a later in-process run would write to)."""
    root = logging.getLogger()
    for h in _INSTALLED:
        root.removeHandler(h)
        with contextlib.suppress(Exception):
            h.flush()
            h.close()
    _INSTALLED.clear()


# -- the shared options: one definition, used in every command's signature ----------------------------------------
def quiet_option():
    return typer.Option(False, "--quiet", "-q", help="Errors and the one-line result only (no progress, no "
                                                      "warnings).")


def verbose_option():
    return typer.Option(0, "--verbose", "-v", count=True,
                        help="More log lines: -v gep_raster's INFO, -vv DEBUG and the libraries' INFO (GDAL...).")


def log_level_option():
    return typer.Option(None, "--log-level", metavar="LEVEL",
                        help="gep_raster's log level: DEBUG, INFO, WARNING or ERROR (overrides -q/-v).")


def log_file_option():
    return typer.Option(None, "--log-file", metavar="PATH", dir_okay=False,
                        help="Also append the log (INFO and above, or lower with --log-level) to PATH.")


def log_json_option():
    return typer.Option(False, "--log-json", help="Write --log-file as JSON lines (time, level, logger, message).")


def debug_option():
    return typer.Option(False, "--debug", help="Show tracebacks instead of one message and an exit code.")
