"""Stage ``report``: the accounting report of the finished run (:func:`gep_raster.report.write_report`), written
to ``<output.dir>/report/`` in ``output.lang`` after the manifest (the report reads the run as ``gep report``
does). ``output.report``: ``html+pdf`` (default), ``html`` or ``off``.

A rerun of an identical run (same run hash) keeps a report that is already there and unchanged (the sha256 of its
HTML and PDF as its report manifest records them): nothing is drawn twice. A report that cannot be written does
not undo the run: its rasters, tables and manifest are complete, the error is
logged as a warning with the command that writes the report again (``gep report RUN_DIR``)."""
from __future__ import annotations

import logging
import time

from ..config import RunConfig
from ..errors import GepError

log = logging.getLogger("gep_raster")


def _up_to_date(cfg: RunConfig, run_hash: str | None) -> dict | None:
    """The report manifest when ``report/`` already holds this run's report in ``output.lang`` as ``output.report``
    asks (same run hash, files with the recorded sha256; a PDF asked for and written); else None."""
    import json

    from ..outputs.io_write import sha256_file

    folder = cfg.output_dir / "report"
    try:
        m = json.loads((folder / "report_manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    entry = (m.get("by_lang") or {}).get(cfg.output.lang)
    if not run_hash or (m.get("run") or {}).get("run_hash") != run_hash or not isinstance(entry, dict):
        return None
    files = [entry.get("html") or {}]
    if cfg.output.report == "html+pdf":
        if not (entry.get("pdf") or {}).get("written"):
            return None
        files.append(entry["pdf"])
    for f in files:
        path = folder / str(f.get("path", ""))
        if not f.get("sha256") or not path.is_file() or sha256_file(path) != f["sha256"]:
            return None
    return {**m, **entry}


def report(cfg: RunConfig, run_hash: str | None = None) -> dict | None:
    """Write the report of the run in ``cfg.output_dir`` as ``output.report`` asks (kept when this run's report is
    already there: :func:`_up_to_date`).

    Parameters
    ----------
    cfg : RunConfig
    run_hash : str, optional
        The run's hash (manifest ``run_hash``); without it the report is always written.

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
    kept = _up_to_date(cfg, run_hash)
    if kept is not None:
        log.info("report: %s of this run is up to date; kept", kept["html"]["path"])
        return kept
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
