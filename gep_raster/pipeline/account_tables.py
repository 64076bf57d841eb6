"""Stage ``tables``: one account table per polygon layer (CSV and GeoPackage, :func:`gep_raster.accounts.layers.build_table`),
the EPV/ECV columns of the economic accounts, and the nesting identity of every child layer against its parent
(children's sums = the parent's covered part; :func:`gep_raster.accounts.layers.nesting_report`).
"""
from __future__ import annotations

import logging

import numpy as np

from .. import faults
from ..accounts.layers import add_gep_columns, build_table, nesting_report, roll_up
from .state import RunState

log = logging.getLogger("gep_raster")


def tables(st: RunState) -> None:
    """Stage ``tables``. Sets ``tables`` (layer -> GeoDataFrame), ``economic_rules``, ``hierarchy`` (nesting
    checks) and adds the rasters' and tables' records to ``manifest_outputs``."""
    from ..outputs.io_write import atomic_to_csv, atomic_to_gpkg

    out_dir = st.out_dir
    st.manifest_outputs = [{"path": st.rel_path[o.key], "service": o.service, "kind": o.kind, "unit": o.unit,
                            "description": o.description} for o in st.written]
    diag_cols = [o.key for o in st.outputs if o.kind == "diagnostic"]
    for name, layer in st.layers.items():
        idx = st.indices[name]
        tab = build_table(layer, st.grid, st.zonal_keys, st.sums[name], st.valid_area[name], idx.covered_area_m2())
        st.tables[name] = tab.drop(columns=diag_cols)
    if st.econ is not None:
        st.economic_rules = economic_columns(st.econ, st.tables, st.layers, st.parents_of)
    for name, tab in st.tables.items():
        csv_path = out_dir / "tables" / f"{name}.csv"
        gpkg_path = out_dir / "tables" / f"{name}.gpkg"
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_to_csv(tab.drop(columns="geometry"), csv_path)
        atomic_to_gpkg(tab, gpkg_path, layer=name)
        faults.hit("table")
        for p, fmt in ((csv_path, "csv"), (gpkg_path, "gpkg")):
            st.manifest_outputs.append({"path": str(p.relative_to(out_dir)), "service": "all", "kind": "table",
                                        "unit": "see columns", "layer": name, "format": fmt,
                                        "columns": column_units(tab, st.outputs)})
    for name, layer in st.layers.items():
        if layer.config.nests_in is not None:
            st.hierarchy.extend(_nesting_checks(st, name))


def _nesting_checks(st: RunState, name: str) -> list[dict]:
    """The nesting identity of child layer ``name`` against its parent, on the service columns (raster sums; the
    EPV/ECV columns of the allocation layer and its parents are statistics and their sums, see
    gep_raster.accounts.economic); each result logged."""
    layer = st.layers[name]
    parent_name = layer.config.nests_in
    idx, kept = st.nest_idx[name]
    n_par = len(st.layers[parent_name].gdf)
    covered = np.zeros((n_par, len(st.zonal_keys)))
    union_area = np.zeros(n_par)
    if idx is not None:
        covered[kept] = st.sums[f"__nest__{name}"]
        union_area[kept] = idx.covered_area_m2()
    ns = len(st.service_keys)
    rep = nesting_report(layer, st.layers[parent_name], st.service_keys, st.sums[name][:, :ns],
                         st.sums[parent_name][:, :ns], covered[:, :ns], st.parents_of[name],
                         st.indices[name].covered_area_m2(), union_area)
    for r in rep:
        if not r["ok"]:
            log.warning("nesting check FAILED: %s '%s' vs its %s: max relative difference %.3g "
                        "(children overlap each other or spill outside the parent by %.4f km2)",
                        parent_name, r["parent_id"], name, r["max_rel_diff"], r["overlap_or_spill_km2"])
        else:
            g = r["columns"]["gep_r_yuan"]
            log.info("nesting check ok: %s of %s '%s' sum to %.6g yuan = the %.4f%% of the parent they "
                     "cover (parent total %.6g yuan; uncovered %.6g yuan)", name, parent_name, r["parent_id"],
                     g["children_sum"], 100 * (r.get("covered_share_of_parent") or 0), g["parent_total"],
                     g["uncovered_remainder"])
    return rep


def economic_columns(econ, tables: dict, layers: dict, parents_of: dict) -> dict:
    """Set the EPV/ECV columns of the allocation layer (its statistics) and of the layers it nests in
    (sums of their children), add ``gep_yuan`` to every table; returns layer -> rule used."""
    cols = econ.zonal_keys
    rules = {name: "coverage-weighted sum of the EPV/ECV rasters" for name in tables}
    name, vals = econ.layer_name, econ.unit_values()
    tables[name][cols] = vals
    rules[name] = "statistics of the unit (allocated + unallocated value)"
    while layers[name].config.nests_in is not None:
        parent = layers[name].config.nests_in
        vals = roll_up(vals, parents_of[name], len(layers[parent].gdf))
        tables[parent][cols] = vals
        rules[parent] = f"sum of its {name} rows"
        name = parent
    for n in tables:
        tables[n] = add_gep_columns(tables[n])
    return rules


def column_units(tab, outputs) -> dict:
    """Column -> unit of an account table (manifest ``columns``)."""
    units = {"area_km2": "km2", "grid_area_km2": "km2", "valid_area_km2": "km2", "gep_r_yuan_per_km2": "yuan/km2/a",
             "gep_yuan_per_km2": "yuan/km2/a"}
    for o in outputs:
        units[o.key] = o.unit.replace(" per pixel", "")
    return {c: units.get(c, "") for c in tab.columns if c != "geometry"}
