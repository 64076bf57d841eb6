"""Stage ``manifest``: ``manifest.json``, the record of what produced the run's numbers (config, legend, prices and
parameters used, input checksums, methods, routing, execution, assumptions, validation warnings, totals,
diagnostics and plausibility checks, nesting checks, package versions, machine, stage timings).
"""
from __future__ import annotations

import datetime as _dt
import logging

import numpy as np

from .. import __version__
from ..accounts.layers import polygon_area_km2
from .state import RunState

log = logging.getLogger("gep_raster")

#: output kinds whose whole-run sums are in ``manifest.totals``
TOTAL_KINDS = ("physical", "value", "gep_r", "diagnostic", "gep", "economic_item")


def diagnostics(st: RunState) -> dict:
    """Negative water balance and carbon amounts, and the plausibility of the whole run's magnitudes
    (:mod:`gep_raster.plausibility`, docs/plausibility.md; each failed check logged as a warning)."""
    from ..plausibility import check_run, manifest_record, stats_from_totals

    cfg, totals, names = st.cfg, st.totals, st.model.names
    diag = {}
    if "water_conservation" in names:
        rule = cfg.services.water_conservation.negative_values
        diag["water_conservation"] = {
            "negative_balance_rule": rule,
            "negative_balance_volume_m3": totals.get("water_deficit_m3"),
            "share_of_gross_balance": (totals.get("water_deficit_m3") /
                                       max(totals["water_conservation_m3"] + totals["water_deficit_m3"], 1e-300)
                                       if rule == "clip" else None)}
    if "carbon_sequestration" in names:
        diag["carbon_sequestration"] = {"negative_rule": cfg.services.carbon_sequestration.negative_values,
                                        "negative_amount_tco2": totals.get("carbon_negative_tco2")}
    pstats = stats_from_totals(totals, st.valid_pixels, float(np.mean(st.grid.row_pixel_area_m2)),
                               {s.name: s.value_key for s in st.model.services},
                               water_negative_rule=diag.get("water_conservation", {}).get("negative_balance_rule"))
    pdiags = check_run(pstats)
    for d in pdiags:
        log.warning("plausibility: %s", d.message)
    diag["plausibility"] = manifest_record(pstats, pdiags)
    return diag


def _economic_record(st: RunState) -> dict:
    econ, name = st.econ, st.econ.layer_name
    j = [st.zonal_keys.index("provisioning_yuan"), st.zonal_keys.index("cultural_yuan")]
    return econ.manifest(st.totals, st.economic_rules, st.sums[name][:, j], st.indices[name].covered_area_m2(),
                         polygon_area_km2(st.layers[name].gdf, st.grid))


def build(st: RunState) -> dict:
    """The manifest's content (without ``timings_s`` and ``cpu_s``, added when it is written)."""
    from ..allocator import tune_for_blocks
    from ..assumptions import run_assumptions
    from ..outputs.provenance import machine_info, package_versions

    cfg, legend = st.cfg, st.legend
    diag = diagnostics(st)
    return {
        "gep_raster_version": __version__,
        "run_name": cfg.name,
        "description": cfg.description,
        "accounting_year": cfg.accounting_year,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "run_hash": st.run_hash,
        "resumed_rasters": st.resumed,
        "config_file": str(cfg.source_path) if cfg.source_path else None,
        "config": cfg.to_json_dict(),
        "config_sha256": cfg.config_hash(),
        "grid": st.grid.describe(),
        "chunk_size": st.chunk,
        "layout": st.layout,
        "memory": st.chunk_info,
        "allocator": tune_for_blocks(),
        "inputs": {k: s.describe() for k, s in st.sources.items()},
        "input_checksums": st.checksums,
        "land_cover_classes_px": st.hist,
        "legend": {"path": str(legend.path), "sources": legend.sources,
                   "table": legend.table.reset_index().to_dict("records")},
        **st.book.used_records(),
        "methods": st.model.notes,
        "routing": st.routing_info,
        "execution": st.execution,
        "assumptions": run_assumptions(cfg, legend, st.model, st.book, st.econ),
        "validation": st.preflight,
        "outputs": st.manifest_outputs,
        "totals": {o.key: {"sum": st.totals[o.key], "unit": o.unit.replace(" per pixel", ""),
                           "valid_pixels": st.valid_pixels[o.key]} for o in st.outputs if o.kind in TOTAL_KINDS},
        "diagnostics": diag,
        "hierarchy_checks": st.hierarchy,
        **({"economic_accounts": _economic_record(st)} if st.econ is not None else {}),
        "package_versions": package_versions(),
        "machine": machine_info(),
    }


def write(st: RunState, manifest: dict):
    """Add the stage timings and write ``manifest.json`` atomically; returns its path."""
    from ..outputs.io_write import atomic_write_json

    manifest["timings_s"] = st.timer.as_dict()
    manifest["cpu_s"] = st.timer.cpu_as_dict()
    path = st.out_dir / "manifest.json"
    atomic_write_json(path, manifest)
    return path
