"""Run orchestration: inputs -> reference grid -> services (dask) -> rasters, tables, figures, manifest.

:func:`run` calls the stages below in order, each a function of its own module of this package that reads and
sets fields of one :class:`~gep_raster.pipeline.state.RunState`; the resume record of the raster stage is its
:class:`~gep_raster.pipeline.state.Journal`.

Stages (timed, recorded in the manifest):

1. ``prepare`` (:mod:`.prepare`): config, legend, prices, inputs opened lazily on the reference grid, polygon layers;
   block (chunk) size from ``processing.memory_budget_mb`` (:mod:`gep_raster.budget`) and output layout.
2. ``legend_check`` (:mod:`.prepare`): class histogram of the land cover; every class present must have a legend row.
3. ``coverage`` (:mod:`.coverage`): exact polygon coverage, once per layer and grid (:class:`gep_raster.accounts.zonal.CoverageIndex`,
   cached by content hash in ``processing.coverage_cache``).
   With ``economic_accounts``: ``economic_prepass`` reads land cover (and weight rasters) once more to
   sum the allocation denominators per unit (:mod:`gep_raster.accounts.economic`).
4. ``routing`` (:mod:`.flow_routing`): flow accumulation for the LS factor, whole DEM or per hydrological unit, within the
   memory budget, to a GeoTIFF read per block (:mod:`gep_raster.terrain.hydro_units`).
5. ``compute_write`` (:mod:`.compute_write`, :mod:`.block_sink`, :mod:`.distributed`): one dask graph computes every output block in one pass over the inputs
   (services, then EPV/ECV allocation and GEP); each block is written as one tile per output raster
   and added to every layer's sums (:class:`~.block_sink.BlockSink`, :class:`gep_raster.outputs.block_store.BlockStore`).
6. ``finalize_rasters`` (:mod:`.finalize`): VRT mosaic of the tiles per output (layout ``tiles``), or one COG per
   output.
7. ``tables`` (:mod:`.account_tables`), ``figures`` (:mod:`.figures`; drawn on a thread during
   ``finalize_rasters`` once the GEP-R raster is published; the stage waits for them), ``manifest`` (:mod:`.manifest`).
8. ``report`` (:mod:`.report`, after the manifest, not timed in it): the accounting report in ``report/``
   (:func:`gep_raster.report.write_report`) unless ``output.report: off``.

Resume: a killed run started again with the same config and inputs computes only the blocks that are
not in its journal (content hashes of config and inputs, never timestamps); a rerun of a finished,
identical run (same config, parameters, package version and input checksums) skips the raster stage.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..config import RunConfig
from ..errors import GepError
from .account_tables import tables
from .block_sink import BlockSink, block_plan, store_local
from .compute_write import compute_write
from .coverage import coverage, economic_prepass
from .distributed import connect, store_distributed
from .figures import figures
from .finalize import finalize_rasters, record, reload
from .flow_routing import ROUTING_DESCRIPTION, routing
from .manifest import build as build_manifest
from .manifest import write as write_manifest
from .prepare import check_alternate_legend, check_legend, open_land_cover, open_model, plan_outputs, run_hash
from .report import report
from .state import Journal, RunState

__all__ = ["run", "preflight_checks", "RunResult", "RunState", "Journal", "BlockSink", "block_plan", "store_local",
           "store_distributed", "run_hash", "ROUTING_DESCRIPTION"]

log = logging.getLogger("gep_raster")


@dataclass
class RunResult:
    """What :func:`run` returns: the output folder, the manifest's path and content, and the account table of
    each polygon layer (GeoDataFrame).

    Attributes
    ----------
    output_dir : Path
        The run's output folder (absolute).
    manifest_path : Path
        ``output_dir / "manifest.json"``.
    manifest : dict
        Its content (config, inputs and their checksums, methods, totals, diagnostics, versions...).
    tables : dict of str to geopandas.GeoDataFrame
        The account table of each polygon layer, by layer name: one row per unit, physical quantities (m3/a, t/a,
        tCO2/a...) and values (yuan/a) per service, ``gep_r_yuan``, coverage columns.
    report : dict or None
        The report manifest (``report/report_manifest.json``: paths, bytes and sha256 of the HTML and PDF) when
        ``output.report`` wrote one; None with ``output.report: off`` or when the report failed (logged).
    """
    output_dir: Path
    manifest_path: Path
    manifest: dict
    tables: dict = field(default_factory=dict)
    report: dict | None = None

    @property
    def totals(self):
        """The whole region's totals: ``pandas.DataFrame`` indexed by quantity (``water_conservation_m3``,
        ``soil_retention_yuan``, ``gep_r_yuan``...), columns ``sum`` (float64, in ``unit``), ``unit`` (str: m3/a,
        t/a, tCO2/a, yuan/a...) and ``valid_pixels`` (int)."""
        import pandas as pd

        df = pd.DataFrame.from_dict(self.manifest["totals"], orient="index")
        df.index.name = "quantity"
        return df[[c for c in ("sum", "unit", "valid_pixels") if c in df.columns]]

    @property
    def gep_r_yuan(self) -> float:
        """GEP-R of the whole region, yuan/a (``totals.loc["gep_r_yuan", "sum"]``)."""
        return float(self.manifest["totals"]["gep_r_yuan"]["sum"])

    @property
    def outputs(self) -> dict:
        """Every output file of the run listed in the manifest: ``{relative path: absolute Path}`` (rasters,
        tables, figures), e.g. ``outputs["rasters/value/gep_r_yuan.tif"]``."""
        return {o["path"]: self.output_dir / o["path"] for o in self.manifest.get("outputs", []) if "path" in o}


def run(cfg: RunConfig, *, workers: int | None = None, progress: bool = True,
        force: bool = False, scheduler=None, accept_warnings: bool = False) -> RunResult:
    """Run a GEP-R accounting job end to end.

    Parameters
    ----------
    cfg : RunConfig
        Validated configuration (:func:`gep_raster.config.load_config`).
    workers : int, optional
        Threads of the local dask scheduler (default: config ``processing.workers`` or all cores).
        Ignored with ``scheduler``.
    progress : bool
        Show the progress of the block computation on stderr (blocks and pixels done, Mpx/s, ETA;
        :class:`gep_raster.progress.BlockProgress`). False: no output.
    force : bool
        Recompute even if the output folder holds an identical finished run.
    scheduler : str or distributed.Client, optional
        Compute the blocks on an existing Dask distributed cluster: its scheduler address
        (``tcp://host:8786``), a scheduler file (JSON), or a connected ``distributed.Client``.
        The workers need gep_raster installed and the input files at the same paths; the rasters,
        tables and manifest are written by this process (:func:`~gep_raster.pipeline.distributed.store_distributed`). Default: local
        threads. Rasters and tables are identical either way.
    accept_warnings : bool
        Run although the pre-flight checks (:func:`gep_raster.validation.validate`, the checks of ``gep validate``)
        give warnings; they are recorded in ``manifest.validation``. Problems always stop the run.

    Returns
    -------
    RunResult
        Output folder, manifest path and content, and the account tables per layer.

    Raises
    ------
    ValidationFailed
        The checks of ``gep validate`` found problems (or warnings, without ``accept_warnings``): every one is
        listed, nothing is computed or written.
    OutputError
        Another run holds the output folder's lock (:mod:`gep_raster.run_lock`), or an output cannot be written
        (disk full, permissions): the message names the file; finished blocks are kept and a rerun resumes.
    GepError (and subclasses)
        Any input, config, table or grid problem, with a message naming the file and field
        (ConfigError when the Dask scheduler cannot be reached).
    """
    preflight = preflight_checks(cfg, accept_warnings=accept_warnings)
    # connect first: an unreachable cluster fails before the long preparation stages
    import rasterio

    from ..allocator import tune_for_blocks
    from ..budget import gdal_cache_bytes

    from ..run_lock import output_lock

    tune_for_blocks()  # block-sized temporaries stay in the heap (no page faults per block); once per process
    client, owned = connect(scheduler) if scheduler is not None else (None, False)
    try:
        # one run per output folder; GDAL's block cache (process-wide) is part of the memory budget (GDAL's
        # default is 5 % of the RAM)
        with output_lock(cfg.output_dir), \
                rasterio.Env(GDAL_CACHEMAX=gdal_cache_bytes(cfg.processing.memory_budget_mb)):
            return _run(cfg, workers=workers, progress=progress, force=force, client=client, preflight=preflight)
    except GepError:
        raise
    except Exception as exc:  # a full disk surfaces as OSError or a GDAL write error from deep inside a writer
        from ..outputs.io_write import write_failure

        failure = write_failure(exc, cfg.output_dir)
        if failure is None:
            raise
        raise failure from exc
    finally:
        if owned:
            client.close()


def preflight_checks(cfg: RunConfig, *, accept_warnings: bool = False) -> dict:
    """The checks of ``gep validate`` before a run: raise on problems (and on warnings unless accepted).

    Returns
    -------
    dict
        ``manifest.validation``: ``warnings`` (list of str), ``accepted`` (bool), ``seconds`` (float, time of
        the checks).

    Raises
    ------
    ValidationFailed
        Listing every problem, or every warning with how to accept them (``--accept-warnings``).
    """
    import time

    from ..errors import ValidationFailed
    from ..validation import validate

    t0 = time.perf_counter()
    rep = validate(cfg)
    where = f"{cfg.source_path}: " if cfg.source_path else ""
    if rep.problems:
        raise ValidationFailed([f"{where}{p}" for p in rep.problems])
    if rep.warnings and not accept_warnings:
        raise ValidationFailed([f"{where}{w}" for w in rep.warnings]
                               + [f"{len(rep.warnings)} warning(s) of gep validate: fix them, or pass --accept-warnings "
                                  "(run(..., accept_warnings=True)) to run anyway; accepted warnings are recorded in "
                                  "manifest.validation"])
    return {"warnings": rep.warnings, "accepted": bool(rep.warnings), "seconds": round(time.perf_counter() - t0, 3)}


def _run(cfg: RunConfig, *, workers: int | None, progress: bool, force: bool, client,
         preflight: dict | None = None) -> RunResult:
    """:func:`run` (``client``: a connected distributed.Client, or None for local threads): the stages in order."""
    from ..outputs.provenance import StageTimer

    out_dir = cfg.output_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ".gep_state").mkdir(exist_ok=True)
    st = RunState(cfg, StageTimer(), workers=workers, progress=progress, force=force, client=client,
                  preflight=preflight, out_dir=out_dir, state_dir=out_dir / ".gep_state",
                  journal=Journal(out_dir / ".gep_state"))
    timer = st.timer
    from ..grid.remote import apply_gdal_options

    st.gdal_options = apply_gdal_options(cfg.processing.remote)
    with timer.stage("prepare"):
        open_land_cover(st)
    with timer.stage("legend_check"):
        check_legend(st)
    with timer.stage("prepare"):
        open_model(st)
    with timer.stage("legend_check"):
        check_alternate_legend(st)
    plan_outputs(st)
    done = not force and st.journal.finished(st.run_hash, st.layout, st.output_paths())
    with timer.stage("coverage"):
        coverage(st)
    if st.econ is not None:
        with timer.stage("economic_prepass"):
            economic_prepass(st)
    if done:
        log.info("rasters of this run are up to date in %s (run hash %s); skipping computation", out_dir,
                 st.run_hash[:12])
        reload(st)
    else:
        if st.model.needs_routing():
            with timer.stage("routing"):
                routing(st)
        with timer.stage("compute_write"):
            compute_write(st)
        with timer.stage("finalize_rasters"):
            finalize_rasters(st)
        record(st)
    with timer.stage("tables"):
        tables(st)
    with timer.stage("figures"):  # (drawn during finalize_rasters when the rasters were computed)
        figures(st)
    with timer.stage("manifest"):
        manifest = build_manifest(st)
        manifest_path = write_manifest(st, manifest)
    rep = report(cfg, manifest.get("run_hash"))
    return RunResult(out_dir, manifest_path, manifest, st.tables, rep)
