"""GEP-R offset report (占补平衡): the regulating value a development destroys and how to compensate it.

Inputs: a **baseline** run, a **development-scenario** run (the same configuration with the parcel's
land cover converted, e.g. to built-up, see :mod:`gep_raster.analysis.scenario`), the parcel polygon(s), the
**offset ratio** (a policy value, no default), a list of **candidate parcels** (polygons with ids)
and, optionally, a **restoration-scenario** run (the candidates converted, e.g. to forest).

Computation (all sums with exact coverage fractions, :class:`gep_raster.accounts.zonal.CoverageIndex`, on the
runs' grid; a pixel cut by a polygon edge counts by its covered fraction):

* loss per service s inside the parcel: ``L_s = Σ_px f · (baseline_s − scenario_s)`` (yuan/a; also the
  physical quantities), over pixels valid in both runs (the parcel's union, so overlapping parcel
  polygons are counted once); ``L = L_gep_r``;
* the same loss over the whole grid, ``Σ_all px (baseline − scenario)``, is reported beside it: it
  differs from ``L`` by the pixels cut by the parcel edge (the scenario converts whole pixels by the
  centre rule, the parcel sum counts covered fractions) and by any change outside the parcel;
* compensation required: ``C = max(L, 0) × offset_ratio`` (yuan/a: an annual flow of regulating
  value to be created or secured, for as long as the development stands); per service
  ``L_s × offset_ratio`` is reported for information;
* each candidate: its baseline GEP-R ``B_i = Σ f · baseline`` and, with a restoration run, its gain
  ``G_i = Σ f · (restored − baseline)`` (per service too);
* selection: candidates ranked by gain (or, without a restoration run, by baseline GEP-R: the
  protection/purchase of existing value, the basis of the Jinyun PV transaction, methods note §4
  [V2]); candidates that overlap the development parcel or have a gain ≤ 0 are excluded; taking the
  largest first until the cumulative gain reaches ``C`` gives the smallest number of parcels that
  covers ``C`` (the k largest gains are the largest total any k parcels can reach).

Gains of different candidates add up because each of the four default services is computed pixel by
pixel from the pixel's own land cover (soil retention's LS factor depends on the DEM only); overlapping
candidates would be double counted and are flagged.

Outputs (``out_dir``): ``offset_report.csv`` (candidates, ranked, with selection), ``offset_loss.csv``
(loss by service), ``offset_report.json`` (everything, with the runs' hashes and the warnings) and
``offset_summary.md``.

The offset ratio is a policy parameter: no standard value is known to the methods note (transaction
practice: the Jinyun 农光互补 PV developer bought regulating-service GEP at 5 % of the area's GEP plus 12 %
of an ecological premium, paid over 25 years, [V2] news; Yunhe county bought 4 regulating services at
0.2 % of 2018 GEP, [V2]). It must be given, with its source.
"""
from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import Optional
from types import SimpleNamespace

import numpy as np

from .._version import __version__
from .change import RunInfo, check_same_grid, check_same_services, input_base_dir, load_run, run_warnings
from ..errors import ConfigError, GepError, VectorError

log = logging.getLogger("gep_raster")

__all__ = ["pair_sums", "read_polygons", "scenario_parcel", "offset_report", "select_greedy", "register"]


# --------------------------------------------------------------------------------------
# zonal sums of one or two runs' rasters
# --------------------------------------------------------------------------------------
def pair_sums(index, path_a: Path, path_b: Path | None = None, chunk: int = 1024) -> dict:
    """Exact-coverage sums of raster a (and b) over the polygons of a CoverageIndex.

    Parameters
    ----------
    index : gep_raster.accounts.zonal.CoverageIndex
        Coverage of the polygons on the rasters' grid.
    path_a, path_b : Path
        Single-band rasters on ``index.grid`` (per-pixel amounts; NaN = nodata). ``path_b`` optional.
    chunk : int
        Rows read at a time (only the columns of the polygons' bounding box are read).

    Returns
    -------
    dict of numpy.ndarray, each of shape (n_polygons,)
        Without b: ``a`` = Σ f·a over valid pixels, ``area_m2`` = Σ f·pixel area over those pixels.
        With b: ``a``, ``b`` = Σ f·a, Σ f·b over pixels valid in **both**, ``diff`` = Σ f·(b − a)
        over the same pixels, ``area_m2`` = their covered area, and ``a_all``, ``b_all`` = sums over
        each raster's own valid pixels.
    """
    import rasterio
    from rasterio.windows import Window

    n = index.n_polygons
    out = {k: np.zeros(n) for k in ("a", "b", "diff", "area_m2", "a_all", "b_all")}
    if index.n_entries == 0:
        return out if path_b is not None else {"a": out["a"], "area_m2": out["area_m2"]}
    R0, R1, C0, C1 = index.covered_window()
    dss = [rasterio.open(path_a)] + ([rasterio.open(path_b)] if path_b is not None else [])
    try:
        for ds in dss:
            if (ds.height, ds.width) != index.grid.shape:
                raise GepError(f"{ds.name}: shape {(ds.height, ds.width)} is not the grid's {index.grid.shape}")
        for r0 in range(R0, R1, chunk):
            r1 = min(R1, r0 + chunk)
            blocks = []
            for ds in dss:
                v = ds.read(1, window=Window(C0, r0, C1 - C0, r1 - r0)).astype(np.float64)
                if ds.nodata is not None and np.isfinite(ds.nodata):
                    v[v == ds.nodata] = np.nan
                blocks.append(v)
            if path_b is None:
                acc = np.zeros((n, 1))
                index.accumulate(blocks[0][None], r0, C0, acc, valid_area_out=out["area_m2"])
                out["a"] += acc[:, 0]
                continue
            va, vb = blocks
            both = np.isfinite(va) & np.isfinite(vb)
            stack = np.stack([np.where(both, va, np.nan), np.where(both, vb, np.nan), np.where(both, vb - va, np.nan),
                              va, vb])
            acc = np.zeros((n, 5))
            index.accumulate(stack, r0, C0, acc, valid_area_out=out["area_m2"])
            for j, k in enumerate(("a", "b", "diff", "a_all", "b_all")):
                out[k] += acc[:, j]
    finally:
        for ds in dss:
            ds.close()
    return out if path_b is not None else {"a": out["a"], "area_m2": out["area_m2"]}


def grid_diff_sum(path_a: Path, path_b: Path, chunk: int = 1024) -> float:
    """Σ (b − a) over every pixel of the grid where both rasters are valid (float64).

    Parameters
    ----------
    path_a, path_b : Path
        Single-band rasters of the same shape (per-pixel amounts, NaN = nodata).
    chunk : int
        Rows read at a time.
    """
    import rasterio
    from rasterio.windows import Window

    total = 0.0
    with rasterio.open(path_a) as da_, rasterio.open(path_b) as db_:
        if (da_.height, da_.width) != (db_.height, db_.width):
            raise GepError(f"{path_a} and {path_b} have different shapes")
        for r0 in range(0, da_.height, chunk):
            h = min(chunk, da_.height - r0)
            w = Window(0, r0, da_.width, h)
            a = da_.read(1, window=w).astype(np.float64)
            b = db_.read(1, window=w).astype(np.float64)
            for ds, v in ((da_, a), (db_, b)):
                if ds.nodata is not None and np.isfinite(ds.nodata):
                    v[v == ds.nodata] = np.nan
            ok = np.isfinite(a) & np.isfinite(b)
            total += float((b[ok] - a[ok]).sum())
    return total


# --------------------------------------------------------------------------------------
# polygons
# --------------------------------------------------------------------------------------
def read_polygons(path, grid, *, layer: str | None = None, what: str = "polygons", id_field: str | None = None):
    """Read a polygon file and bring it to the grid's CRS.

    Parameters
    ----------
    path : path-like
        GeoPackage, shapefile or any OGR polygon file.
    grid : RefGrid
        Target grid (CRS).
    layer : str, optional
        Layer name inside the file.
    what : str
        Name used in messages (``--parcel``, ``--candidates``).
    id_field : str, optional
        Field that must exist and hold unique ids (read as text).

    Returns
    -------
    geopandas.GeoDataFrame
        Valid polygons in ``grid.crs`` (invalid ones repaired with ``make_valid``).

    Raises
    ------
    VectorError
        File missing or unreadable, no CRS, no features, non-polygon geometries, id field missing
        or ids duplicated; the message names the file and the field.
    """
    import geopandas as gpd
    from pyproj import CRS

    p = Path(path)
    if not p.exists():
        raise VectorError(f"{what}: file not found: {p}")
    try:
        gdf = gpd.read_file(p, layer=layer) if layer else gpd.read_file(p)
    except Exception as exc:
        raise VectorError(f"{what}: cannot read {p}: {exc}") from None
    if gdf.crs is None:
        raise VectorError(f"{what}: {p} has no CRS (.prj missing?)")
    if len(gdf) == 0:
        raise VectorError(f"{what}: {p} holds no features")
    types = set(gdf.geom_type.dropna())
    if gdf.geometry.isna().any() or not types <= {"Polygon", "MultiPolygon"}:
        raise VectorError(f"{what}: {p} holds {sorted(types)} geometries (or empty ones); polygons are needed")
    if id_field is not None:
        if id_field not in gdf.columns:
            raise VectorError(f"{what}: id field '{id_field}' not found in {p} "
                              f"(fields: {[c for c in gdf.columns if c != 'geometry']})")
        gdf = gdf.copy()
        gdf[id_field] = gdf[id_field].astype(str)
        if gdf[id_field].duplicated().any():
            raise VectorError(f"{what}: duplicate ids in field '{id_field}' of {p}: "
                              f"{gdf.loc[gdf[id_field].duplicated(), id_field].tolist()[:10]}")
    bad = ~gdf.geometry.is_valid
    if bad.any():
        gdf = gdf.copy()
        gdf.loc[bad, "geometry"] = gdf.geometry[bad].make_valid()
    if not CRS.from_user_input(gdf.crs).equals(CRS.from_user_input(grid.crs.to_wkt()), ignore_axis_order=True):
        gdf = gdf.to_crs(grid.crs.to_wkt())
    else:
        gdf = gdf.set_crs(grid.crs.to_wkt(), allow_override=True)
    return gdf.reset_index(drop=True)


def scenario_parcel(run: RunInfo):
    """The polygons of a scenario run's edits (from its manifest's config), in the run's grid CRS.

    Parameters
    ----------
    run : RunInfo
        A finished scenario run (:func:`~gep_raster.analysis.change.load_run`). Relative polygon-file paths of its
        edits resolve from its config's folder (:func:`~gep_raster.analysis.change.input_base_dir`: found also when
        the run folder was moved).

    Returns
    -------
    geopandas.GeoDataFrame
        One row per edit polygon (column ``edit``), CRS of the run's grid.

    Raises
    ------
    ConfigError
        The run has no scenario in its config (or an invalid one).
    VectorError
        An edit's polygon file cannot be read.
    """
    import geopandas as gpd

    from ..config import ScenarioConfig, expand_vars
    from .scenario import scenario_polygons

    sc = (run.manifest.get("config") or {}).get("scenario")
    if not sc:
        raise ConfigError(f"run {run.path} has no scenario in its config; give the development parcel with --parcel")
    scfg = ScenarioConfig.model_validate(sc)
    base = input_base_dir(run)  # the config's folder, also when the run folder was moved

    def resolve(p):
        q = Path(expand_vars(p)).expanduser()
        return q if q.is_absolute() else base / q

    geoms = []
    for i, e in enumerate(scfg.edits):
        geoms += scenario_polygons(e, i, run.grid, SimpleNamespace(resolve=resolve))[0]
    return gpd.GeoDataFrame({"edit": range(len(geoms))}, geometry=geoms, crs=run.grid.crs.to_wkt())


# --------------------------------------------------------------------------------------
def select_greedy(ids, gains, required: float, eligible=None) -> tuple[list, float, bool]:
    """Smallest set of candidates whose gains reach ``required`` (largest gain first).

    Parameters
    ----------
    ids : sequence
        Candidate ids.
    gains : sequence of float
        Gain of each candidate (yuan/a).
    required : float
        Requirement (yuan/a); ≤ 0 needs no candidate.
    eligible : sequence of bool, optional
        False excludes a candidate.

    Returns
    -------
    selected : list
        Ids in selection order (descending gain; ties by input order).
    total : float
        Sum of their gains.
    covered : bool
        ``total >= required``.

    Notes
    -----
    Taking the largest gains first minimises the number of parcels: the sum of the k largest gains
    is the largest sum any k parcels reach, so if any k parcels cover the requirement, the k largest
    do. (It does not minimise area or cost; rank by gain per km² for that.)
    """
    g = np.asarray(gains, dtype=np.float64)
    ok = np.isfinite(g) & (g > 0)
    if eligible is not None:
        ok &= np.asarray(eligible, dtype=bool)
    order = sorted(np.flatnonzero(ok), key=lambda i: (-g[i], i))
    sel, total = [], 0.0
    if required <= 0:
        return sel, total, True
    for i in order:
        if total >= required:
            break
        sel.append(ids[i])
        total += float(g[i])
    return sel, total, total >= required


def offset_report(baseline, scenario, out_dir, *, offset_ratio: float, parcel=None, parcel_layer: str | None = None,
                  candidates=None, id_field: str | None = None, name_field: str | None = None,
                  candidates_layer: str | None = None, restoration=None, ratio_source: str | None = None,
                  chunk: int = 1024) -> dict:
    """GEP-R offset report of a development parcel (see the module docstring for the method).

    Parameters
    ----------
    baseline, scenario : path-like
        Finished run folders: without and with the development (same grid, same services).
    out_dir : path-like
        Output folder (created).
    offset_ratio : float
        Compensation required per yuan/a of GEP-R lost (> 0; e.g. 1.0 = like for like). A policy
        value with no default: give its source in ``ratio_source``.
    parcel : path-like, optional
        Polygon file of the development parcel(s) (any CRS). Default: the polygons of the scenario
        run's own edits (its manifest's ``config.scenario``).
    parcel_layer, candidates_layer : str, optional
        Layer names inside the polygon files.
    candidates : path-like, optional
        Polygon file of candidate compensation parcels; needs ``id_field``. Without it the report
        holds the loss and the requirement only.
    id_field, name_field : str
        Id (required with ``candidates``) and optional name field of the candidates.
    restoration : path-like, optional
        Finished run with the candidates restored (same grid and services); gives each candidate's
        gain = restored − baseline.
    ratio_source : str, optional
        Where the ratio comes from (recorded in the report).
    chunk : int
        Rows read at a time.

    Returns
    -------
    dict
        The report (also written to ``offset_report.json``).

    Raises
    ------
    ConfigError
        Ratio not a positive number; candidates without ``id_field``; no parcel and no scenario edits.
    InputError, GridMismatchError, VectorError
        Runs not finished / not comparable; polygon files unusable (messages name the file and field).
    """
    from ..outputs.io_write import atomic_to_csv, atomic_write_json, atomic_write_text

    ratio = _offset_ratio(offset_ratio)
    if candidates is not None and not id_field:
        raise ConfigError("candidates: --id-field is required to identify the candidate parcels")
    base, scen, rest, value_keys, warnings = _offset_runs(baseline, scenario, restoration)
    pc = _parcel_coverage(parcel, parcel_layer, scen, base.grid, warnings)
    loss_rows, loss_tab = _loss_table(pc["index"], base, scen, value_keys, ratio, chunk)
    L, L_grid = _loss_warnings(loss_tab, loss_rows, warnings)
    required = max(L, 0.0) * ratio
    cand_tab = selection = None
    if candidates is not None:
        cand_tab, selection = _candidates(candidates, candidates_layer, id_field, name_field, base, rest, value_keys,
                                          pc, required, chunk, warnings)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_to_csv(loss_tab, out / "offset_loss.csv")
    files = ["offset_loss.csv", "offset_report.json", "offset_summary.md"]
    if cand_tab is not None:
        atomic_to_csv(cand_tab, out / "offset_report.csv")
        files.insert(0, "offset_report.csv")
    report = {
        "gep_raster_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "kind": "gep_r_offset",
        "runs": {"baseline": _run_entry(base), "scenario": _run_entry(scen), "restoration": _run_entry(rest)},
        "parcel": {"source": pc["source"], "n_polygons": int(len(pc["gdf"])), "area_km2": pc["area_km2"],
                   "grid_area_km2": pc["grid_area_km2"]},
        "offset_ratio": {"value": ratio, "source": ratio_source or "user input (no standard value: a policy choice)",
                         "evidence": "user"},
        "loss": {"gep_r_yuan": L, "gep_r_yuan_whole_grid": L_grid, "unit": "yuan/a", "by_service": loss_rows},
        "required_compensation_yuan_per_year": required,
        "formulas": OFFSET_FORMULAS,
        "candidates": (None if cand_tab is None else
                       {"source": str(Path(candidates).resolve()), "id_field": id_field, "n": int(len(cand_tab)),
                        "table": cand_tab.astype(object).where(cand_tab.notna(), None).to_dict("records")}),
        "selection": selection,
        "context": OFFSET_CONTEXT,
        "outputs": files,
        "warnings": warnings,
    }
    atomic_write_json(out / "offset_report.json", report)
    atomic_write_text(out / "offset_summary.md", _markdown(report, loss_tab, cand_tab, id_field, name_field))
    for w in warnings:
        log.warning("offset: %s", w)
    return report


#: the report's formulas (yuan/a)
OFFSET_FORMULAS = {
    "loss": "sum over parcel pixels of coverage fraction x (baseline - scenario), pixels valid in both",
    "required": "max(GEP-R loss, 0) x offset_ratio (yuan/a, an annual flow)",
    "gain": "sum over candidate pixels of coverage fraction x (restored - baseline)"}
#: transaction practice recorded beside the offset ratio (methods note §4)
OFFSET_CONTEXT = ("transaction practice (methods note §4, [V2] news): Jinyun PV project bought regulating GEP at 5 % "
                  "of the area's GEP + 12 % of an ecological premium, paid over 25 years; Yunhe county bought four "
                  "regulating services at 0.2 % of 2018 GEP. These are prices of transactions, not offset ratios.")


def _offset_ratio(offset_ratio) -> float:
    """``offset_ratio`` as a positive float. Raises ConfigError when it is not a number or not > 0."""
    try:
        ratio = float(offset_ratio)
    except (TypeError, ValueError):
        raise ConfigError(f"offset_ratio: '{offset_ratio}' is not a number") from None
    if not np.isfinite(ratio) or ratio <= 0:
        raise ConfigError(f"offset_ratio: must be a positive number (compensation per yuan of GEP-R lost), got {ratio}")
    return ratio


def _offset_runs(baseline, scenario, restoration):
    """The baseline, scenario and (optional) restoration runs, checked comparable; returns (base, scen, rest,
    value_keys, warnings) with the runs' comparison warnings (:func:`run_warnings`)."""
    base, scen = load_run(baseline), load_run(scenario)
    check_same_grid(base, scen)
    value_keys = check_same_services(base, scen)
    rest = None
    if restoration is not None:
        rest = load_run(restoration)
        check_same_grid(base, rest)
        check_same_services(base, rest)
    warnings = run_warnings(base, scen, base.services)
    if rest is not None:
        warnings += [w for w in run_warnings(base, rest, base.services) if w not in warnings]
    return base, scen, rest, value_keys, warnings


def _parcel_coverage(parcel, parcel_layer, scen: RunInfo, grid, warnings: list) -> dict:
    """The development parcel (a polygon file, or the scenario's own edits) as one union coverage index.

    Returns a dict: ``gdf``, ``index`` (:class:`~gep_raster.accounts.zonal.CoverageIndex` of the union), ``union``
    (shapely geometry), ``unit2`` (m2 per squared CRS unit; NaN on a geographic grid), ``source``, ``area_km2``
    (NaN on a geographic grid), ``grid_area_km2`` (covered on the grid). A parcel partly outside: a warning.
    """
    from ..accounts.zonal import CoverageIndex

    if parcel is not None:
        pgdf = read_polygons(parcel, grid, layer=parcel_layer, what="--parcel")
        source = str(Path(parcel).resolve())
    else:
        pgdf = scenario_parcel(scen)
        source = f"edits of scenario '{scen.manifest['config']['scenario'].get('name')}' of run {scen.path}"
    pidx = CoverageIndex.build_union(pgdf, grid, layer_name="parcel")
    union_geom = pgdf.geometry.union_all()
    unit2 = (grid.crs.linear_units_factor[1] ** 2) if (grid.crs.linear_units_factor and not grid.is_geographic) else np.nan
    area_km2 = float(union_geom.area * unit2 / 1e6) if not grid.is_geographic else float("nan")
    grid_km2 = float(pidx.covered_area_m2()[0] / 1e6)
    if np.isfinite(area_km2) and grid_km2 < area_km2 * (1 - 1e-6):
        warnings.append(f"the parcel lies partly outside the run grid: {grid_km2:.6f} of "
                        f"{area_km2:.6f} km2 covered")
    return {"gdf": pgdf, "index": pidx, "union": union_geom, "unit2": unit2, "source": source,
            "area_km2": area_km2, "grid_area_km2": grid_km2}


def _loss_table(pidx, base: RunInfo, scen: RunInfo, value_keys: list, ratio: float, chunk: int):
    """Loss inside the parcel (baseline − scenario, coverage-weighted, pixels valid in both) of GEP-R, every value
    and every physical output, with the requirement at ``ratio`` and the loss over the whole grid.
    Returns (rows, DataFrame)."""
    import pandas as pd

    loss_rows = []
    keys = ["gep_r_yuan"] + value_keys + [k for k in base.physical_keys if k in scen.rasters]
    for key in keys:
        s = pair_sums(pidx, base.rasters[key]["path"], scen.rasters[key]["path"], chunk)
        r = base.rasters[key]
        loss = -float(s["diff"][0])
        loss_rows.append({
            "key": key, "service": "gep_r" if key == "gep_r_yuan" else r["service"], "kind": r["kind"],
            "unit": r["unit"].replace(" per pixel", ""), "baseline": float(s["a"][0]), "scenario": float(s["b"][0]),
            "loss": loss, "loss_pct_of_baseline": (100 * loss / abs(s["a"][0]) if s["a"][0] != 0 else np.nan),
            "required_at_ratio": loss * ratio if r["kind"] in ("value", "gep_r") else np.nan,
            "area_valid_both_km2": float(s["area_m2"][0] / 1e6),
            "baseline_all_valid": float(s["a_all"][0]), "scenario_all_valid": float(s["b_all"][0]),
            "loss_whole_grid": -grid_diff_sum(base.rasters[key]["path"], scen.rasters[key]["path"], chunk)})
    return loss_rows, pd.DataFrame(loss_rows)


def _loss_warnings(loss_tab, loss_rows: list, warnings: list) -> tuple[float, float]:
    """GEP-R loss in the parcel and over the whole grid (yuan/a); warnings when they differ by > 1 %, when there
    is no loss, and for every service that the scenario increases."""
    L = float(loss_tab.loc[loss_tab["key"] == "gep_r_yuan", "loss"].iloc[0])
    L_grid = float(loss_tab.loc[loss_tab["key"] == "gep_r_yuan", "loss_whole_grid"].iloc[0])
    if abs(L_grid - L) > 0.01 * max(abs(L), 1e-9):
        warnings.append(f"the GEP-R loss over the whole grid ({L_grid:,.0f} yuan/a) differs from the loss inside the parcel "
                        f"({L:,.0f} yuan/a) by {100 * (L_grid - L) / max(abs(L), 1e-9):+.1f} %: the scenario converts whole "
                        "pixels whose centre is inside the parcel (pixels cut by its edge are converted wholly or not "
                        "at all) while the parcel sum counts covered fractions, and/or the scenario changes value "
                        "outside the parcel; the requirement uses the parcel loss")
    if L <= 0:
        warnings.append(f"the scenario does not reduce GEP-R inside the parcel (loss {L:,.2f} yuan/a): no compensation "
                        "is required; check that the scenario run really converts the parcel")
    for row in loss_rows:
        if row["kind"] == "value" and row["loss"] < 0:
            warnings.append(f"{row['service']}: the scenario increases this service inside the parcel "
                            f"({-row['loss']:,.2f} yuan/a), which offsets part of the other losses in the GEP-R loss")
    return L, L_grid


def _candidates(candidates, candidates_layer, id_field: str, name_field, base: RunInfo, rest, value_keys: list,
                pc: dict, required: float, chunk: int, warnings: list):
    """Candidate compensation parcels: their values (baseline, or gain of the restoration run), rank, the greedy
    selection covering ``required`` (yuan/a), and the warnings (overlaps, no restoration run, shortfall).
    Returns (table, selection)."""
    from ..accounts.zonal import CoverageIndex

    cgdf = read_polygons(candidates, base.grid, layer=candidates_layer, what="--candidates", id_field=id_field)
    if name_field and name_field not in cgdf.columns:
        raise VectorError(f"--candidates: name field '{name_field}' not found in {candidates} "
                          f"(fields: {[c for c in cgdf.columns if c != 'geometry']})")
    cidx = CoverageIndex.build(cgdf, base.grid, layer_name="candidates")
    tab = _candidate_values(cgdf, cidx, id_field, name_field, base, rest, value_keys, pc, chunk)
    basis = "gain_gep_r_yuan" if rest is not None else "baseline_gep_r_yuan"
    tab, sel, total, covered = _rank_and_select(tab, id_field, basis, required)
    ids = cgdf[id_field].tolist()
    pairs = cgdf.sindex.query(cgdf.geometry, predicate="intersects")
    ov = [(ids[i], ids[j]) for i, j in zip(*pairs) if i < j
          and cgdf.geometry.iloc[i].intersection(cgdf.geometry.iloc[j]).area > 0]
    if ov:
        warnings.append(f"candidate parcels overlap each other (e.g. {ov[:5]}): their gains are double counted "
                        "where they overlap")
    if rest is None:
        warnings.append("no restoration run: candidates are ranked by their existing (baseline) GEP-R, i.e. the "
                        "offset is taken as protecting/purchasing existing regulating value; give --restoration "
                        "to rank by the gain of restoring them")
    selection = {"basis": basis, "basis_unit": "yuan/a", "selected": sel, "n_selected": len(sel),
                 "total_yuan": total, "required_yuan": required, "covered": bool(covered),
                 "shortfall_yuan": max(required - total, 0.0),
                 "rule": "largest first until the cumulative value reaches the requirement; candidates that "
                         "overlap the development parcel or have a value <= 0 are excluded"}
    if not covered:
        warnings.append(f"the candidates cannot cover the requirement: {total:,.0f} of {required:,.0f} yuan/a "
                        f"(shortfall {required - total:,.0f})")
    return tab, selection


def _candidate_values(cgdf, cidx, id_field: str, name_field, base: RunInfo, rest, value_keys: list, pc: dict,
                      chunk: int):
    """Per candidate: areas (km2), whether it overlaps the parcel, and its GEP-R and values (baseline; with a
    restoration run also restored and gain), yuan/a."""
    import pandas as pd

    tab = pd.DataFrame({id_field: cgdf[id_field].tolist()})
    if name_field and name_field != id_field:
        tab[name_field] = cgdf[name_field].astype(str).to_numpy()
    tab["area_km2"] = (cgdf.geometry.area.to_numpy() * pc["unit2"] / 1e6) if not base.grid.is_geographic else np.nan
    tab["grid_area_km2"] = cidx.covered_area_m2() / 1e6
    inter = cgdf.geometry.intersection(pc["union"]).area.to_numpy()
    tab["overlaps_parcel"] = inter > 1e-9 * np.maximum(cgdf.geometry.area.to_numpy(), 1e-300)
    for key in ["gep_r_yuan"] + value_keys:
        if rest is None:
            s = pair_sums(cidx, base.rasters[key]["path"], None, chunk)
            tab[f"baseline_{key}"] = s["a"]
        else:
            s = pair_sums(cidx, base.rasters[key]["path"], rest.rasters[key]["path"], chunk)
            tab[f"baseline_{key}"] = s["a_all"]
            tab[f"restored_{key}"] = s["b"]
            tab[f"gain_{key}"] = s["diff"]
    return tab


def _rank_and_select(tab, id_field: str, basis: str, required: float):
    """Rank by ``basis`` (largest first), greedy selection (:func:`select_greedy`) of the eligible candidates, and
    the per-row selection columns. Returns (table sorted by rank, selected ids, total yuan/a, covered)."""
    ids = tab[id_field].tolist()
    with np.errstate(divide="ignore", invalid="ignore"):
        tab[f"{basis}_per_km2"] = np.where(tab["grid_area_km2"] > 0, tab[basis] / tab["grid_area_km2"], np.nan)
    eligible = ~tab["overlaps_parcel"].to_numpy()
    sel, total, covered = select_greedy(ids, tab[basis].to_numpy(), required, eligible)
    order = sorted(range(len(tab)), key=lambda i: (-np.nan_to_num(tab[basis].iloc[i], nan=-np.inf), i))
    tab["rank"] = 0
    tab.loc[order, "rank"] = np.arange(1, len(tab) + 1)
    tab["excluded_reason"] = np.where(tab["overlaps_parcel"], "overlaps the development parcel",
                                      np.where(~(tab[basis] > 0), f"{basis} <= 0", ""))
    tab["selected"] = tab[id_field].isin(sel)
    pos = {v: i for i, v in enumerate(sel)}
    tab["selection_order"] = tab[id_field].map(pos).astype("Int64") + 1
    tab = tab.sort_values("rank").reset_index(drop=True)
    cum = np.where(tab["selected"], tab[basis].where(tab["selected"], 0.0), 0.0)
    tab["cumulative_selected_yuan"] = np.where(tab["selected"], np.cumsum(cum), np.nan)
    return tab, sel, total, covered


def _run_entry(r: RunInfo | None):
    """The report's record of one run (path, name, hash, accounting year, scenario name); None for no run."""
    if r is None:
        return None
    m = r.manifest
    return {"path": str(r.path.resolve()), "run_name": m.get("run_name"), "run_hash": m.get("run_hash"),
            "accounting_year": m.get("accounting_year"),
            "scenario": ((m.get("config") or {}).get("scenario") or {}).get("name")}


def _fmt(x, nd=0):
    return "n/a" if x is None or not np.isfinite(x) else f"{x:,.{nd}f}"


def _markdown(rep, loss_tab, cand_tab, id_field, name_field) -> str:
    r = rep["runs"]
    lines = [f"# GEP-R offset report: {r['scenario']['run_name']} vs {r['baseline']['run_name']}", "",
             f"* Development parcel: {rep['parcel']['source']} ({rep['parcel']['n_polygons']} polygon(s), "
             f"{_fmt(rep['parcel']['area_km2'], 4)} km²)",
             f"* Baseline run: `{r['baseline']['path']}`; scenario run: `{r['scenario']['path']}`"
             + (f"; restoration run: `{r['restoration']['path']}`" if r["restoration"] else ""),
             f"* Offset ratio: **{rep['offset_ratio']['value']:g}** ({rep['offset_ratio']['source']})", "",
             "## Regulating value lost inside the parcel (yuan/a)", "",
             "| service | baseline | scenario | loss | loss × ratio |", "|---|---:|---:|---:|---:|"]
    for _, row in loss_tab[loss_tab["kind"].isin(["gep_r", "value"])].iterrows():
        name = "**GEP-R**" if row["key"] == "gep_r_yuan" else row["service"]
        lines.append(f"| {name} | {_fmt(row['baseline'])} | {_fmt(row['scenario'])} | {_fmt(row['loss'])} | "
                     f"{_fmt(row['required_at_ratio'])} |")
    lines += ["", f"GEP-R loss over the whole grid (all pixels the scenario changed): "
                  f"{_fmt(rep['loss']['gep_r_yuan_whole_grid'])} yuan/a.", "",
              f"**Compensation required: {_fmt(rep['required_compensation_yuan_per_year'])} yuan/a** "
              "(max(GEP-R loss inside the parcel, 0) × ratio: an annual flow of regulating value).", ""]
    sel = rep["selection"]
    if cand_tab is not None and sel is not None:
        basis = sel["basis"]
        lines += ["## Candidate parcels", "",
                  f"Ranked by `{basis}`; selected: {', '.join(map(str, sel['selected'])) or 'none'} "
                  f"({_fmt(sel['total_yuan'])} yuan/a; requirement "
                  f"{'covered' if sel['covered'] else 'NOT covered, shortfall ' + _fmt(sel['shortfall_yuan'])}).", "",
                  "| rank | id | area km² | " + basis + " | selected | note |", "|---:|---|---:|---:|---|---|"]
        for _, row in cand_tab.iterrows():
            label = str(row[id_field]) + (f" {row[name_field]}" if name_field and name_field in row else "")
            lines.append(f"| {row['rank']} | {label} | {_fmt(row['area_km2'], 4)} | {_fmt(row[basis])} | "
                         f"{'yes' if row['selected'] else ''} | {row['excluded_reason']} |")
        lines.append("")
    if rep["warnings"]:
        lines += ["## Warnings", ""] + [f"* {w}" for w in rep["warnings"]] + [""]
    lines += ["## Method", "", "Exact-coverage sums of the two runs' per-pixel rasters (yuan/a per pixel) over the "
              "parcel; loss = baseline − scenario; required = max(GEP-R loss, 0) × offset ratio; candidates' gain = "
              "restored − baseline; the smallest set is taken largest gain first. The ratio is a policy input, not a "
              "standard value. " + rep["context"], ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
def register(app) -> None:
    """Add ``gep offset`` to the typer ``app``."""
    import typer

    from ..cli_common import (command, debug_option, log_file_option, log_json_option, log_level_option,
                              quiet_option, verbose_option)

    @app.command("offset")
    def offset(baseline: Path = typer.Option(..., "--baseline", help="Finished run without the development."),
               scenario: Path = typer.Option(..., "--scenario", help="Finished run with the development scenario."),
               offset_ratio: float = typer.Option(..., "--offset-ratio",
                                                  help="Compensation per yuan/a of GEP-R lost (policy value, required)."),
               output: Path = typer.Option(..., "--output", "-o", help="Output folder."),
               parcel: Optional[Path] = typer.Option(None, "--parcel",
                                                     help="Polygon file of the development parcel (default: the "
                                                          "scenario run's edit polygons)."),
               parcel_layer: Optional[str] = typer.Option(None, "--parcel-layer"),
               candidates: Optional[Path] = typer.Option(None, "--candidates",
                                                         help="Polygon file of candidate compensation parcels."),
               id_field: Optional[str] = typer.Option(None, "--id-field", help="Id field of the candidates."),
               name_field: Optional[str] = typer.Option(None, "--name-field", help="Name field of the candidates."),
               candidates_layer: Optional[str] = typer.Option(None, "--candidates-layer"),
               restoration: Optional[Path] = typer.Option(None, "--restoration",
                                                          help="Finished run with the candidates restored."),
               ratio_source: Optional[str] = typer.Option(None, "--ratio-source",
                                                          help="Where the offset ratio comes from (recorded)."),
               quiet: bool = quiet_option(), verbose: int = verbose_option(),
               log_level: Optional[str] = log_level_option(), log_file: Optional[Path] = log_file_option(),
               log_json: bool = log_json_option(), debug: bool = debug_option()):
        """GEP-R offset (占补平衡): value lost in the parcel, compensation required, candidate parcels ranked."""
        with command(quiet, verbose, log_level, log_file, log_json, debug) as out:
            rep = offset_report(baseline, scenario, output, offset_ratio=offset_ratio, parcel=parcel,
                                parcel_layer=parcel_layer, candidates=candidates, id_field=id_field,
                                name_field=name_field, candidates_layer=candidates_layer, restoration=restoration,
                                ratio_source=ratio_source)
            out.result(f"GEP-R lost in the parcel: {rep['loss']['gep_r_yuan']:,.0f} yuan/a; required at ratio "
                       f"{rep['offset_ratio']['value']:g}: {rep['required_compensation_yuan_per_year']:,.0f} yuan/a")
            sel = rep["selection"]
            if sel:
                out.detail(f"selected ({sel['basis']}): {', '.join(map(str, sel['selected'])) or 'none'} = "
                           f"{sel['total_yuan']:,.0f} yuan/a; {'covered' if sel['covered'] else 'NOT covered'}")
            for w in rep["warnings"]:
                out.warning(w)
            out.detail(f"  report: {output / 'offset_summary.md'}")
