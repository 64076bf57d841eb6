"""Command-line interface: ``gep run``, ``gep validate``.

User mistakes (bad config, missing file, wrong column...) print one clear message and exit
with status 2 (validation problems: 1); no traceback. ``--debug`` shows tracebacks.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from . import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="gep_raster: GEP-R (regulating-service value) maps and accounts from rasters.")


#: libraries whose log lines are not for the user: GDAL's errors reach us as exceptions, which gep_raster turns
#: into messages naming the file, band and problem (rasterio logs each GDAL error at INFO before raising it)
QUIET_LOGGERS = ("rasterio", "fiona", "pyogrio", "numba", "distributed", "urllib3", "matplotlib", "PIL")


def _setup_logging(verbose: bool):
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gep_raster").setLevel(logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def _version(value: bool):
    if value:
        typer.echo(f"gep_raster {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")):
    pass


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
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
        debug: bool = typer.Option(False, "--debug", help="Show tracebacks.")):
    """Compute the GEP-R rasters, account tables, figures and manifest of CONFIG.

    Locally (threads) by default; with --scheduler on a Dask distributed cluster (e.g. dask-jobqueue on SLURM).
    The progress (blocks, pixels, Mpx/s, ETA) goes to stderr."""
    from .config import load_config
    from .errors import GepError
    from .pipeline import run as run_pipeline

    _setup_logging(not quiet)
    t0 = time.perf_counter()
    cfg = None
    try:
        overrides = {}
        if output:
            overrides["output"] = {"dir": str(output.resolve())}
        if memory_budget:
            overrides["processing"] = {"memory_budget_mb": memory_budget}
        cfg = load_config(config, overrides=overrides or None)
        res = run_pipeline(cfg, workers=workers, progress=not quiet, force=force, scheduler=scheduler,
                           accept_warnings=accept_warnings)
    except GepError as exc:
        if debug:
            raise
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    except KeyboardInterrupt:
        if debug:
            raise
        where = f" in {cfg.output_dir / '.gep_state'}" if cfg is not None else ""
        typer.secho(f"interrupted: finished blocks are kept{where}; run the same command again to resume (no final "
                    "file is left half-written)", fg=typer.colors.RED, err=True)
        raise typer.Exit(130)
    m = res.manifest
    typer.echo(f"run '{cfg.name}' finished in {time.perf_counter() - t0:.1f} s -> {res.output_dir}")
    tot = m["totals"]
    for k, v in tot.items():
        if k.endswith("_yuan"):
            typer.echo(f"  {k:32s} {v['sum']:>20,.0f} yuan/a")
    for chk in m["hierarchy_checks"]:
        g = chk["columns"]["gep_r_yuan"]
        status = "ok" if chk["ok"] else "MISMATCH"
        typer.echo(f"  nesting {chk['child_layer']} in {chk['parent_layer']} {chk['parent_id']}: {status}; "
                   f"children {g['children_sum']:,.0f} = covered part {g['covered_part_total']:,.0f} yuan/a "
                   f"(parent total {g['parent_total']:,.0f}, uncovered {g['uncovered_remainder']:,.0f})")
    typer.echo(f"  manifest: {res.manifest_path}")


@app.command()
def validate(config: Path = typer.Argument(..., help="Run configuration (YAML)."),
             debug: bool = typer.Option(False, "--debug", help="Show tracebacks.")):
    """Check CONFIG: inputs exist and open, CRSs, overlap, legend coverage, polygons, value ranges.

    Reports every problem at once; exits 1 if there is any."""
    from .config import load_config
    from .errors import GepError
    from .validate import validate as run_validate

    try:
        cfg = load_config(config)
        rep = run_validate(cfg)
    except GepError as exc:
        if debug:
            raise
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    for line in rep.info:
        typer.echo(f"info: {line}")
    for line in rep.warnings:
        typer.secho(f"warning: {line}", fg=typer.colors.YELLOW)
    for line in rep.assumptions:
        typer.secho(f"warning: assumption: {line}", fg=typer.colors.YELLOW)
    for line in rep.problems:
        typer.secho(f"problem: {line}", fg=typer.colors.RED, err=True)
    if rep.problems:
        typer.secho(f"{len(rep.problems)} problem(s) found in {config}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.secho(f"{config}: OK ({len(rep.warnings)} warning(s), {len(rep.assumptions)} assumption(s); gep run stops on "
                "warnings unless --accept-warnings)" if rep.warnings else
                f"{config}: OK ({len(rep.assumptions)} assumption(s))", fg=typer.colors.GREEN)


def _register_commands():
    """Commands defined next to their engine modules (each module has ``register(app)``)."""
    from .analysis import change, offset, sensitivity, vep

    for module in (sensitivity, change, offset, vep):
        module.register(app)


_register_commands()


def main():  # console-script entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
