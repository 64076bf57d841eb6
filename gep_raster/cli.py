"""Command-line interface: ``gep run``, ``gep validate`` and the commands registered by their engine modules
(``compare``, ``offset``, ``vep``, ``sensitivity``...).

Every command shares one logging setup (``-q``, ``-v``, ``--log-level``, ``--log-file``, ``--log-json``) and one
exit-code table (0 done, 1 input/data problems, 2 usage or config error, 3 could not finish, 130 interrupted and
resumable): :mod:`gep_raster.cli_common`. User mistakes print one clear message, no traceback; ``--debug`` shows
tracebacks.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from ._version import __version__
from .cli_common import (EXIT_PROBLEMS, command, debug_option, log_file_option, log_json_option, log_level_option,
                         quiet_option, verbose_option)

# rich_markup_mode=None: plain click help, which shows flags as flags (typer's rich help prints "<bool>" after
# every flag as if it took a value)
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="gep_raster: GEP-R (regulating-service value) maps and accounts from rasters. "
                       "Exit codes: 0 done, 1 input/data problems, 2 usage or config error, 3 could not finish, "
                       "130 interrupted (rerun resumes).")


def _version(value: bool):
    if value:
        typer.echo(f"gep_raster {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")):
    pass


def _print_run_summary(out, res, cfg, seconds: float) -> None:
    """The one-line result of ``gep run`` and, unless ``-q``, the totals and nesting checks."""
    m = res.manifest
    out.result(f"run '{cfg.name}' finished in {seconds:.1f} s -> {res.output_dir}")
    for k, v in m["totals"].items():
        if k.endswith("_yuan"):
            out.detail(f"  {k:32s} {v['sum']:>20,.0f} yuan/a")
    for chk in m["hierarchy_checks"]:
        g = chk["columns"]["gep_r_yuan"]
        status = "ok" if chk["ok"] else "MISMATCH"
        out.detail(f"  nesting {chk['child_layer']} in {chk['parent_layer']} {chk['parent_id']}: {status}; "
                   f"children {g['children_sum']:,.0f} = covered part {g['covered_part_total']:,.0f} yuan/a "
                   f"(parent total {g['parent_total']:,.0f}, uncovered {g['uncovered_remainder']:,.0f})")
    out.detail(f"  manifest: {res.manifest_path}")
    if res.report:
        rep = res.report
        out.detail(f"  report: {res.output_dir / 'report' / rep['html']['path']}"
                   + (f" and {rep['pdf']['path']}" if rep["pdf"].get("written") else ""))


@app.command()
def run(config: Path = typer.Argument(..., help="Run configuration (YAML)."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Override output.dir of the config."),
        workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1,
                                              help="Threads of the local scheduler (default: processing.workers "
                                                   "of the config, else all cores)."),
        scheduler: Optional[str] = typer.Option(
            None, "--scheduler", "-s", metavar="ADDRESS",
            help="Compute the blocks on an existing Dask distributed cluster: scheduler address "
                 "(tcp://host:8786) or scheduler file (.json). Rasters, tables and manifest are written here; "
                 "workers need gep_raster and the input files at the same paths."),
        memory_budget: Optional[int] = typer.Option(
            None, "--memory-budget", "-m", min=256, metavar="MB",
            help="Memory budget in MB (processing.memory_budget_mb; default 2048): sets the block size and "
                 "limits flow routing."),
        force: bool = typer.Option(False, "--force", help="Recompute even if an identical finished run exists."),
        accept_warnings: bool = typer.Option(
            False, "--accept-warnings",
            help="Run although the checks of gep validate give warnings (recorded in the manifest); problems "
                 "always stop the run."),
        lang: Optional[str] = typer.Option(None, "--lang", metavar="en|zh",
                                           help="Language of the figures' labels (output.lang; default en)."),
        quiet: bool = quiet_option(), verbose: int = verbose_option(), log_level: Optional[str] = log_level_option(),
        log_file: Optional[Path] = log_file_option(), log_json: bool = log_json_option(),
        debug: bool = debug_option()):
    """Compute the GEP-R rasters, account tables, figures and manifest of CONFIG.

    Locally (threads) by default; with --scheduler on a Dask distributed cluster (e.g. dask-jobqueue on SLURM).
    The progress (blocks, pixels, Mpx/s, ETA) goes to stderr. Ctrl-C keeps the finished blocks: the same command
    resumes (exit code 130)."""
    from .config import load_config
    from .pipeline import run as run_pipeline

    t0 = time.perf_counter()
    with command(quiet, verbose, log_level, log_file, log_json, debug,
                 resume_hint="finished blocks are kept in the output folder's .gep_state; run the same command "
                             "again to resume (no final file is left half-written)") as out:
        overrides = {}
        if output:
            overrides["output"] = {"dir": str(output.resolve())}
        if lang:
            overrides.setdefault("output", {})["lang"] = lang
        if memory_budget:
            overrides["processing"] = {"memory_budget_mb": memory_budget}
        cfg = load_config(config, overrides=overrides or None)
        res = run_pipeline(cfg, workers=workers, progress=not quiet, force=force, scheduler=scheduler,
                           accept_warnings=accept_warnings)
        _print_run_summary(out, res, cfg, time.perf_counter() - t0)


@app.command()
def validate(config: Path = typer.Argument(..., help="Run configuration (YAML)."),
             quiet: bool = quiet_option(), verbose: int = verbose_option(),
             log_level: Optional[str] = log_level_option(), log_file: Optional[Path] = log_file_option(),
             log_json: bool = log_json_option(), debug: bool = debug_option()):
    """Check CONFIG: inputs exist and open, CRSs, overlap, legend coverage, polygons, value ranges.

    Reports every problem once, all at once; exit code 1 if there is any, 2 if the config itself is invalid
    (unknown key, bad value, not YAML)."""
    from .config import load_config
    from .validation import validate as run_validate

    with command(quiet, verbose, log_level, log_file, log_json, debug) as out:
        cfg = load_config(config)
        rep = run_validate(cfg)
        for line in rep.info:
            out.detail(f"info: {line}")
        for line in rep.warnings:
            out.warning(line)
        for line in rep.assumptions:
            out.warning(f"assumption: {line}")
        for line in rep.problems:
            out.problem(line)
        if rep.problems:
            out.result(f"{config}: {len(rep.problems)} problem(s) found")
            raise typer.Exit(EXIT_PROBLEMS)
        out.result(f"{config}: OK ({len(rep.warnings)} warning(s), {len(rep.assumptions)} assumption(s); gep run "
                   "stops on warnings unless --accept-warnings)" if rep.warnings else
                   f"{config}: OK ({len(rep.assumptions)} assumption(s))")


def _register_commands():
    """Commands defined next to their engine modules (each module has ``register(app)``)."""
    from . import config_reference, report, serve, warmup
    from .analysis import allocation, assess, carbon_sink, change, offset, sensitivity, series, vep

    for module in (sensitivity, change, offset, vep, series, assess, allocation, carbon_sink, report, serve, warmup,
                   config_reference):
        module.register(app)


_register_commands()


def main():  # console-script entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
