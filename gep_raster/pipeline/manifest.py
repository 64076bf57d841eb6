"""Stage ``manifest``: ``manifest.json``, the record of what produced the run's numbers (config, legend, prices and
parameters used, input checksums, methods, routing, execution, assumptions, validation warnings, totals,
diagnostics and plausibility checks, nesting checks, package versions, machine, stage timings).

Paths (a moved or shared output folder still says where its inputs were): every input path (rasters and their
tiles, tables, polygon layers, legend, the config file) is recorded normalised, in two fields: ``path``, relative
to the config file's folder, and ``abs_path``, absolute (``..`` segments removed, symbolic links not followed);
URLs and GDAL virtual paths (``/vsicurl/``, ``https://``, ``s3://``) are kept verbatim in both
(:func:`gep_raster.outputs.provenance.portable_path`). ``input_checksums`` is keyed by the relative path.
``paths`` says what they are relative to and where that folder lies from the run folder. Output paths
(``outputs[].path``) are relative to the run folder.
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import re

import numpy as np

from .._version import __version__
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


#: ``origin`` of a price or parameter read from a table: ``"<what>: <path> line <n>"``
_ORIGIN = re.compile(r"^(prices\.table|parameters_table): (.+) line (\d+)$")


def paths_record(cfg, out_dir) -> dict:
    """``manifest.paths``: the folder the inputs' ``path`` fields are relative to, the config file and the run folder.

    Parameters
    ----------
    cfg : RunConfig
        The run's config (its ``base_dir`` is the config file's folder, or the folder given for a config dict).
    out_dir : path-like
        The run (output) folder.

    Returns
    -------
    dict
        ``base_dir``: ``{"abs_path", "from_run_dir"}`` (the config's folder, absolute, and relative to the run
        folder: where to look for the inputs when the run folder was moved together with its project folder);
        ``config_file``: ``{"path", "abs_path"}`` (None for a config given as a dict); ``run_dir``: ``{"abs_path"}``
        at run time; ``note``: what the fields mean. Never raises.
    """
    from ..outputs.provenance import normalise_path, portable_path

    base, run_dir = normalise_path(cfg.base_dir), normalise_path(out_dir)
    try:
        from_run = os.path.relpath(base, run_dir)
    except ValueError:  # another drive
        from_run = base
    return {"base_dir": {"abs_path": base, "from_run_dir": from_run},
            "config_file": portable_path(cfg.source_path, base) if cfg.source_path else None,
            "run_dir": {"abs_path": run_dir},
            "note": "input 'path' fields are relative to base_dir (the config file's folder), 'abs_path' fields are "
                    "absolute at run time (both normalised; URLs and /vsi paths verbatim); output paths are relative "
                    "to the run folder"}


def portable_tree(obj, base: str, keys: tuple | None = None):
    """A copy of a manifest record with its input paths made portable: each ``files`` list of paths becomes a list
    of ``{"path", "abs_path"}`` (:func:`~gep_raster.outputs.provenance.portable_files`), and each dict with a str
    ``path`` (and no ``abs_path``) gets ``path`` relative to ``base`` and ``abs_path``.

    Parameters
    ----------
    obj : dict, list or scalar
        The record (e.g. ``{key: source.describe()}``).
    base : str
        The config file's folder.
    keys : tuple of str, optional
        Only these top-level keys of ``obj`` are rewritten (the others are copied as they are).

    Returns
    -------
    The rewritten copy. Never raises.
    """
    from ..outputs.provenance import portable_files, portable_path

    if isinstance(obj, list):
        return [portable_tree(v, base) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {}
    for k, v in obj.items():
        if keys is not None and k not in keys:
            out[k] = v
        elif k == "files" and isinstance(v, list) and all(isinstance(f, str) for f in v):
            out[k] = portable_files(v, base)
        elif k == "path" and isinstance(v, str) and "abs_path" not in obj:
            out.update(portable_path(v, base))
        else:
            out[k] = portable_tree(v, base)
    return out


def _book_records(book, base: str) -> dict:
    """:meth:`PriceBook.used_records` with the file paths normalised: ``price_index`` (``path`` relative,
    ``abs_path``), each row's ``price_index`` and the path in a table row's ``origin`` (absolute, normalised)."""
    from ..outputs.provenance import normalise_path

    rec = book.used_records()

    def row(r: dict) -> dict:
        r = dict(r)
        if isinstance(r.get("price_index"), str):
            r["price_index"] = normalise_path(r["price_index"], base)
        m = _ORIGIN.match(str(r.get("origin", "")))
        if m:
            r["origin"] = f"{m.group(1)}: {normalise_path(m.group(2), base)} line {m.group(3)}"
        return r

    return {"prices": [row(r) for r in rec["prices"]], "parameters": [row(r) for r in rec["parameters"]],
            "price_index": portable_tree(rec["price_index"], base)}


def build(st: RunState) -> dict:
    """The manifest's content (without ``timings_s`` and ``cpu_s``, added when it is written).

    Parameters
    ----------
    st : RunState
        The state after the ``tables`` and ``figures`` stages.

    Returns
    -------
    dict
        JSON-ready manifest; input paths as ``path`` (relative to the config's folder) and ``abs_path`` (see the
        module docstring), output paths relative to the run folder. Raises nothing of its own.
    """
    from ..allocator import tune_for_blocks
    from ..assumptions import run_assumptions
    from ..profiles import describe_profile
    from ..outputs.provenance import (machine_info, normalise_path, package_versions, portable_checksums,
                                      portable_files, portable_path)

    cfg, legend = st.cfg, st.legend
    base = str(cfg.base_dir)
    diag = diagnostics(st)
    return {
        "gep_raster_version": __version__,
        "run_name": cfg.name,
        "description": cfg.description,
        "accounting_year": cfg.accounting_year,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "run_hash": st.run_hash,
        "resumed_rasters": st.resumed,
        "config_file": normalise_path(cfg.source_path) if cfg.source_path else None,
        "paths": paths_record(cfg, st.out_dir),
        "config": cfg.to_json_dict(),
        "config_sha256": cfg.config_hash(),
        "grid": st.grid.describe(),
        "chunk_size": st.chunk,
        "layout": st.layout,
        "memory": st.chunk_info,
        "allocator": tune_for_blocks(),
        "inputs": portable_tree({k: s.describe() for k, s in st.sources.items()}, base),
        "input_checksums": portable_checksums(st.checksums, base),
        **({"remote_inputs": remote} if (remote := remote_record(st)) else {}),
        "layers": {name: portable_path(layer.path, base) for name, layer in st.layers.items()},
        "land_cover_classes_px": st.hist,
        "legend": {**portable_path(legend.path, base), "sources": portable_files(legend.sources, base),
                   **({"product": _product_record(legend.product)} if legend.product else {}),
                   "table": legend.table.reset_index().to_dict("records")},
        **_book_records(st.book, base),
        "methods": st.model.notes,
        "profile": describe_profile(cfg.profile, cfg.own_services),
        "valuation": st.model.valuation,
        "routing": st.routing_info,
        "execution": st.execution,
        "assumptions": run_assumptions(cfg, legend, st.model, st.book, st.econ),
        "validation": st.preflight,
        "outputs": st.manifest_outputs,
        "totals": {o.key: {"sum": st.totals[o.key], "unit": o.unit.replace(" per pixel", ""),
                           "valid_pixels": st.valid_pixels[o.key]} for o in st.outputs if o.kind in TOTAL_KINDS},
        "diagnostics": diag,
        "hierarchy_checks": st.hierarchy,
        **({"economic_accounts": portable_tree(_economic_record(st), base, keys=("table", "weight_rasters"))}
           if st.econ is not None else {}),
        "package_versions": package_versions(),
        "machine": machine_info(),
    }


def _product_record(name: str) -> dict:
    """``manifest.legend.product``: the shipped product legend (name, title, version, class definition source)."""
    from ..legends import describe

    return describe(name)


def remote_record(st: RunState) -> dict:
    """``manifest.remote_inputs``: the GDAL HTTP options in force (``processing.remote``; credentials are never
    among them), the remote inputs read (their records are in ``input_checksums``) and the STAC searches (items
    and asset hrefs); empty when every input is local."""
    from ..grid.remote import is_remote_path

    from ..outputs.provenance import portable_path

    base = str(st.cfg.base_dir)
    remote = [k for k in st.checksums if is_remote_path(k)]
    stac = {}
    for key, res in st.cfg.stac_resolutions.items():
        rec = res.describe()  # local catalogue and hrefs as {path (relative to the config), abs_path}
        rec["catalog"] = portable_path(rec["catalog"], base)
        for item in rec.get("items", []):
            item["href"] = portable_path(item["href"], base)
        stac[key] = rec
    if not remote and not stac:
        return {}
    return {"gdal_options": st.gdal_options, "files": remote, "stac": stac}


def write(st: RunState, manifest: dict):
    """Add the stage timings and write ``manifest.json`` atomically.

    Parameters
    ----------
    st : RunState
        The run's state (its timer and output folder).
    manifest : dict
        :func:`build`'s content; ``timings_s`` and ``cpu_s`` are added to it.

    Returns
    -------
    Path
        ``<output>/manifest.json``.

    Raises
    ------
    OSError
        The file cannot be written (the pipeline turns this into an OutputError).
    """
    from ..outputs.io_write import atomic_write_json

    manifest["timings_s"] = st.timer.as_dict()
    manifest["cpu_s"] = st.timer.cpu_as_dict()
    path = st.out_dir / "manifest.json"
    atomic_write_json(path, manifest)
    return path
