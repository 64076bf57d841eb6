"""Stage ``report``: the accounting report of the finished run (:func:`gep_raster.report.write_report`), written
to ``<output.dir>/report/`` in ``output.lang`` after the manifest (the report reads the run as ``gep report``
does). ``output.report``: ``html+pdf`` (default), ``html`` or ``off``.

A report that cannot be written does not undo the run: its rasters, tables and manifest are complete, the error is
logged as a warning with the command that writes the report again (``gep report RUN_DIR``)."""
from __future__ import annotations

import logging
import time

from ..config import RunConfig
from ..errors import GepError

log = logging.getLogger("gep_raster")


def report(cfg: RunConfig) -> dict | None:
    """Write the report of the run in ``cfg.output_dir`` as ``output.report`` asks.

    Returns
    -------
    dict or None
        The report manifest (:func:`gep_raster.report.write_report`); None when ``output.report`` is ``off`` or
        the report failed (logged as a warning naming the error; the run's outputs are kept).

    Raises
    ------
    Nothing from the report itself: :class:`gep_raster.errors.GepError` and OS errors become warnings. Other
    exceptions (defects) propagate.
    """
    mode = cfg.output.report
    if mode == "off":
        return None
    from ..report import write_report

    t0 = time.perf_counter()
    try:
        m = write_report(cfg.output_dir, lang=cfg.output.lang, pdf=(mode == "html+pdf"))
    except (GepError, OSError) as exc:
        log.warning("report: not written (%s); the run's rasters, tables and manifest are complete: "
                    "`gep report %s` writes it again", exc, cfg.output_dir)
        return None
    log.info("report: %s written in %.1f s", m["html"]["path"], time.perf_counter() - t0)
    return m
