"""The accounting report of a finished run: one self-contained HTML file (and its PDF), in English or Chinese.

``gep report RUN_DIR`` (or :func:`write_report`) writes, in ``RUN_DIR/report/`` by default:

* ``report_<lang>.html``: one file, nothing loaded from elsewhere (CSS inline, every figure a PNG data URI, no
  URL of any kind in a ``src`` or ``href``), readable offline, in Chinese (``lang="zh"``) or English;
* ``report_<lang>.pdf``: the HTML printed by headless Chromium (:mod:`gep_raster.report.pdf`) when one is
  installed; otherwise no PDF, and the reason in the report manifest (``pdf=False`` / ``--no-pdf``: not tried);
* ``report_manifest.json``: what was written (paths, bytes, sha256 of the HTML and PDF), the language, the run
  (path, name, run hash), the change folder, population and GDP with their sources, the ecosystem-matrix status.

Structure (that of a GEP accounting report, GB/T 46869-2025 asks for one; the standard's text was not read, so
the chapters are the engine's reading of what such a report holds): 1 summary (GEP, GEP-R, EPV, ECV, per km², per
capita and GEP/GDP with population/GDP), 2 per service physical quantity × unit price = value with each price's
source and year, 3 service × ecosystem-type matrix, 4 tables per layer (administrative and special units), 5 maps
(GEP-R density in yuan/km²/a with the polygons, one map per service; colour bar, scale bar and north arrow on each),
6 change against another run (``compare``: a ``gep compare`` folder), 7 methods with sources, 8 every assumption
and plausibility warning, 9 provenance (input checksums, package versions, run hash, configuration). Every number
comes from the run's manifest and tables (:mod:`gep_raster.report.context`), except the matrix, summed exactly from
the run's rasters (:mod:`gep_raster.report.matrix`). The HTML is rendered from Jinja2 templates
(``gep_raster/report/templates/``, autoescaped); numeric cells carry the full-precision number in ``data-value``.
"""
from __future__ import annotations

import datetime as _dt
import logging
import math
from pathlib import Path
from typing import Optional

from .._version import __version__
from ..errors import ConfigError

log = logging.getLogger("gep_raster")

__all__ = ["write_report", "render_html", "register", "LANGS"]

#: report languages
LANGS = ("en", "zh")


# --------------------------------------------------------------------------------------------------------------
# number formats of the templates
# --------------------------------------------------------------------------------------------------------------
def _finite(x) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _fmt(x) -> str:
    """Display form: thousands separators; no decimals from 1,000, 2 from 1, 4 significant digits below."""
    f = _finite(x)
    if f is None:
        return "–"
    a = abs(f)
    if a >= 1e3 or f == 0 or (float(f).is_integer() and a >= 1):
        return f"{f:,.0f}"
    if a >= 1:
        return f"{f:,.2f}"
    return f"{f:.4g}"


def _fmt2(x) -> str:
    f = _finite(x)
    return "–" if f is None else f"{f:,.2f}"


def _raw(x) -> str:
    """``data-value``: the number as Python's repr (round-trips exactly); empty when there is none."""
    f = _finite(x)
    if f is None:
        return ""
    return str(int(x)) if isinstance(x, int) and not isinstance(x, bool) else repr(f)


def _pct(x) -> str:
    f = _finite(x)
    return "–" if f is None else f"{f:.2f}"


def _sci(x) -> str:
    f = _finite(x)
    return "–" if f is None else ("0" if f == 0 else f"{f:.1e}")


def _environment(lang: str):
    import jinja2

    from .labels import unit_text

    env = jinja2.Environment(loader=jinja2.PackageLoader("gep_raster.report", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(fmt=_fmt, fmt2=_fmt2, raw=_raw, pct=_pct, sci=_sci, unit=lambda u: unit_text(u, lang))
    return env


def render_html(context: dict) -> str:
    """The report's HTML from its context (the sections of :mod:`gep_raster.report.context`).

    Parameters
    ----------
    context : dict
        ``lang``, ``t`` (labels), ``run``, ``gen``, ``summary``, ``services``, ``matrix``, ``layers``, ``figures``,
        ``change``, ``methods``, ``assumptions``, ``provenance``.

    Returns
    -------
    str
        The HTML document (UTF-8 text, self-contained).

    Raises
    ------
    jinja2.UndefinedError
        A key the template needs is missing from ``context`` (templates use strict undefined).
    """
    return _environment(context["lang"]).get_template("report.html.j2").render(**context)


# --------------------------------------------------------------------------------------------------------------
def _check_args(lang, population, gdp):
    if lang not in LANGS:
        raise ConfigError(f"report: --lang must be one of {', '.join(LANGS)}, got {lang!r}")
    for name, v in (("--population", population), ("--gdp", gdp)):
        if v is not None and not (_finite(v) is not None and float(v) > 0):
            raise ConfigError(f"report: {name} must be a positive number, got {v!r}")


def _report_time() -> str:
    """UTC time of the report, ISO 8601; ``SOURCE_DATE_EPOCH`` (reproducible builds) fixes it when set."""
    import os

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    t = (_dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch and epoch.isdigit()
         else _dt.datetime.now(_dt.timezone.utc))
    return t.isoformat(timespec="seconds")


def _context(run, lang: str, *, compare, population, gdp, chunk: int) -> dict:
    from . import context as C
    from .labels import labels
    from .maps import report_figures

    m = run.manifest
    pop = C.population_gdp(run, population, gdp)
    change = C.change_section(run, compare, lang)
    services = C.service_section(run, lang)
    return {"lang": lang, "t": labels(lang),
            "run": {"name": m.get("run_name", ""), "year": m.get("accounting_year"), "run_hash": m.get("run_hash", ""),
                    "description": m.get("description"), "path": str(run.path.resolve())},
            "gen": {"time": _report_time(), "version": __version__},
            "summary": C.summary_section(run, lang, pop), "services": services,
            "matrix": C.matrix_section(run, lang, chunk=chunk), "layers": C.layer_sections(run, lang),
            "figures": report_figures(run, lang, services["services"], change=change), "change": change,
            "methods": C.methods_section(run, lang), "assumptions": C.assumptions_section(run, lang),
            "provenance": C.provenance_section(run, lang), "_pop": pop}


def write_report(run_dir, out_dir=None, *, lang: str = "en", compare=None, pdf: bool = True,
                 population: float | None = None, gdp: float | None = None, chunk: int = 1024) -> dict:
    """Write the accounting report of a finished run: ``report_<lang>.html``, its PDF, ``report_manifest.json``.

    Parameters
    ----------
    run_dir : path-like
        Output folder of a finished ``gep run`` (``manifest.json``, ``rasters/``, ``tables/``).
    out_dir : path-like, optional
        Folder of the report (created); default ``run_dir/report``. Files are replaced atomically.
    lang : {"en", "zh"}, default "en"
        Language of the report's text (the figures' labels too, when a CJK font is installed for matplotlib).
    compare : path-like, optional
        A ``gep compare`` output folder (``change_manifest.json``, ``tables/<layer>_change.csv``): section 6.
    pdf : bool, default True
        Print the HTML to ``report_<lang>.pdf`` with headless Chromium; without a browser (or when it fails) no
        PDF is written and the reason is recorded in the report manifest (``pdf.reason``).
    population : float, optional
        Population of the account area (persons): GEP and GEP-R per capita. Default: the ``population`` column of
        the run's statistics table when it has one.
    gdp : float, optional
        GDP of the account area (yuan/a): GEP/GDP. Default: the ``gdp_yuan`` (or ``gdp``) column of the statistics
        table when it has one.
    chunk : int, default 1024
        Window side (pixels) of the rasters read for the ecosystem-type matrix.

    Returns
    -------
    dict
        The report manifest (also written to ``report_manifest.json``): ``lang``, ``run``, ``html``, ``pdf``,
        ``compare``, ``population``, ``gdp``, ``matrix``, ``figures``, ``by_lang`` (the reports of every language
        written to the folder for this run).

    Raises
    ------
    ConfigError
        ``lang`` not ``"en"``/``"zh"``, ``population`` or ``gdp`` not a positive number.
    InputError
        ``run_dir`` is not a finished run, a table is unreadable, ``compare`` holds no change manifest.
    gep_raster.outputs.io_write.OutputError
        A file cannot be written.
    """
    from ..analysis.change import load_run
    from .pdf import cjk_fonts, print_pdf

    _check_args(lang, population, gdp)
    run = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.path / "report"
    ctx = _context(run, lang, compare=compare, population=population, gdp=gdp, chunk=chunk)
    html_path = out / f"report_{lang}.html"
    _write_text(html_path, render_html(ctx))
    pdf_info = {"written": False, "reason": "not requested (--no-pdf)"} if not pdf else \
        print_pdf(html_path, out / f"report_{lang}.pdf")
    if pdf_info.get("written"):
        log.info("report: PDF written with %s", pdf_info.get("browser"))
    else:
        log.warning("report: no PDF: %s", pdf_info.get("reason"))
    fonts = cjk_fonts() if lang == "zh" else None
    return _write_manifest(out, run, ctx, html_path, pdf_info, fonts)


def _write_text(path: Path, text: str) -> None:
    from ..outputs.io_write import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def _file_entry(path: Path, out: Path) -> dict:
    from ..outputs.io_write import sha256_file

    return {"path": path.relative_to(out).as_posix(), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _write_manifest(out: Path, run, ctx: dict, html_path: Path, pdf_info: dict, fonts) -> dict:
    """``report_manifest.json``: this language's entry, merged with the other language's of the same run."""
    import json

    from ..outputs.io_write import atomic_write_json

    lang, mpath = ctx["lang"], out / "report_manifest.json"
    pdf_path = out / f"report_{lang}.pdf"
    entry = {"lang": lang, "created_utc": ctx["gen"]["time"], "html": _file_entry(html_path, out),
             "pdf": {**(_file_entry(pdf_path, out) if pdf_info.get("written") else {}), **pdf_info},
             "figure_lang": ctx["figures"]["figure_lang"]}
    if lang == "zh":
        entry["cjk_fonts"] = fonts
        if fonts == []:
            entry["note"] = ("no CJK font installed (fc-list :lang=zh): browsers and the PDF draw Chinese text as "
                             "boxes; install e.g. Debian's fonts-noto-cjk")
    by_lang = {}
    if mpath.is_file():
        try:
            old = json.loads(mpath.read_text(encoding="utf-8"))
            if (old.get("run") or {}).get("run_hash") == run.manifest.get("run_hash"):
                by_lang = dict(old.get("by_lang") or {})
        except (OSError, ValueError):
            by_lang = {}
    by_lang[lang] = entry
    mx, pop, change = ctx["matrix"], ctx["_pop"], ctx["change"]
    manifest = {
        "kind": "report", "gep_raster_version": __version__, **entry,
        "run": {"path": str(run.path.resolve()), "run_name": run.manifest.get("run_name"),
                "run_hash": run.manifest.get("run_hash"), "accounting_year": run.manifest.get("accounting_year")},
        "compare": None if change is None else {"path": change["path"], "run_a": change["run_a"],
                                                "run_b": change["run_b"], "role": change["role"]},
        "population": {"value": pop["population"], "source": pop["population_source"]},
        "gdp": {"value": pop["gdp"], "unit": "yuan/a", "source": pop["gdp_source"]},
        "matrix": {"available": mx["available"], "reason": mx.get("reason"), "max_rel_diff": mx.get("max_rel_diff"),
                   "method": "pixel sums of the value rasters by land-cover class of the run's land cover (re-read "
                             "with the run's config and scenario; sha256 checked), classes to ecosystem types by "
                             "the run's legend", "notes": mx.get("notes", [])},
        "figures": [{"id": f["id"], "bytes": f["bytes"]} for f in ctx["figures"]["maps"] + [ctx["figures"]["chart"]]],
        "by_lang": by_lang,
    }
    atomic_write_json(mpath, manifest)
    return manifest


# --------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------
def register(app) -> None:
    """Add ``gep report RUN_DIR [-o OUT] [--lang en|zh] [--compare CHANGE_DIR] [--no-pdf] [--population N]
    [--gdp YUAN]`` to the typer ``app``."""
    import typer

    from ..cli_common import (command, debug_option, log_file_option, log_json_option, log_level_option,
                              quiet_option, verbose_option)

    @app.command("report")
    def report(run_dir: Path = typer.Argument(..., help="Output folder of a finished run."),
               output: Optional[Path] = typer.Option(None, "--output", "-o",
                                                     help="Report folder (default RUN_DIR/report)."),
               lang: str = typer.Option("en", "--lang", help="Language of the report: en or zh."),
               compare: Optional[Path] = typer.Option(None, "--compare", metavar="CHANGE_DIR",
                                                      help="A `gep compare` output folder: adds the change section."),
               no_pdf: bool = typer.Option(False, "--no-pdf", help="Write the HTML only (no Chromium print)."),
               population: Optional[float] = typer.Option(None, "--population", metavar="N",
                                                          help="Population of the account area (persons)."),
               gdp: Optional[float] = typer.Option(None, "--gdp", metavar="YUAN",
                                                   help="GDP of the account area (yuan/a)."),
               quiet: bool = quiet_option(), verbose: int = verbose_option(),
               log_level: Optional[str] = log_level_option(), log_file: Optional[Path] = log_file_option(),
               log_json: bool = log_json_option(), debug: bool = debug_option()):
        """Accounting report of RUN_DIR: one self-contained HTML file (and its PDF), in English or Chinese."""
        with command(quiet, verbose, log_level, log_file, log_json, debug) as out:
            m = write_report(run_dir, output, lang=lang, compare=compare, pdf=not no_pdf, population=population,
                             gdp=gdp)
            folder = Path(output) if output is not None else Path(run_dir) / "report"
            pdf = m["pdf"]
            out.result(f"report ({lang}) of run {m['run']['run_name']} written to {folder / m['html']['path']}"
                       + (f" and {pdf['path']}" if pdf.get("written") else ""))
            if not pdf.get("written"):
                out.warning(f"no PDF: {pdf.get('reason')}")
            if not m["matrix"]["available"]:
                out.warning(f"no ecosystem-type matrix: {m['matrix']['reason']}")
            if m.get("note"):
                out.warning(m["note"])
