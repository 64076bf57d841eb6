"""Forest carbon sink per parcel over a monitoring period (the quantity a forest carbon ticket, 林业碳票, certifies).

For each polygon of a layer (forest parcels) the carbon sink between two dates is given in t CO2e by two
methods, side by side:

* **remote sensing** (``rs``), from one or more finished ``gep run`` folders (accounting years): the
  exact-coverage zonal sum of ``rasters/physical/carbon_sequestration_tco2.tif`` (t CO2/a per pixel) over the
  parcel, ``S_r`` for run r (:func:`gep_raster.analysis.offset.pair_sums`, coverage fractions of
  :class:`gep_raster.accounts.zonal.CoverageIndex`), summed over the years of the period::

      F_y   = Σ_r w_{y,r} · S_r                 (t CO2/a, the parcel's flux in year y)
      RS    = Σ_{y in period} F_y               (t CO2e over the period)

  with ``w_{y,r}`` = 1 for the run of year y; for a year between two runs a and b (a < y < b) linear
  interpolation ``w_b = (y − a)/(b − a)``, ``w_a = 1 − w_b``; for a year before the first (after the last)
  run the flux of the first (last) run held constant (**extrapolated**, flagged). With one run every year
  takes its flux: ``RS = n · S`` (an assumption, flagged). Interpolating the parcel sums equals summing
  interpolated rasters where both runs are valid on the same pixels (flag ``valid_area_differs_between_runs``
  otherwise).

* **inventory** (volume-increment method), where a forest inventory CSV is given (one or more rows per
  parcel, e.g. sub-compartments 小班 of several forest types)::

      ΔV_i  = (V_end,i − V_start,i) · A_i                       (m3; V in m3/ha, A in ha)
      ΔC_i  = ΔV_i · D · BEF · (1 + R) · CF · 44/12              (t CO2e over the row's span)

  with the basic wood density D (t dry matter/m3), the biomass expansion factor BEF (above-ground biomass /
  stem biomass), the root-to-shoot ratio R and the carbon fraction CF (t C/t dry matter) of the row's forest
  type, from the factors table (``gep_raster/data/forest_carbon_factors.csv``, or ``factors``). This is the
  biomass-expansion chain of the IPCC 2006 Guidelines Vol. 4 ch. 2 and 4 (gain-loss form: with one set of
  factors for increment and removals, gross increment − removals = the net ΔV of two surveys, so the two-survey
  difference gives the same number) [U: the equations of Vol. 4 were not read, only the chapter's contents
  page; see ``METHODOLOGY``]. Only the living-tree biomass pools (above and below ground) are counted; dead
  wood, litter and soil are not.

Period convention
-----------------
A year number used as a bound is **1 January of that year**. The period ``[start, end)`` holds the
accounting years ``start, start + 1, ..., end − 1``: ``n = end − start`` years (``end > start``). A run of
accounting year Y gives the flux of calendar year Y. An inventory row's ``start_year``/``end_year`` are the
dates of its two volume surveys on the same convention (a survey made after the growing season of 2023 is the
stock at 2024): its ΔV is the growth of the years ``start_year .. end_year − 1``. Defaults, each bound on its
own: the explicit ``start``/``end``; else the inventory's bound when all its rows share it; else the first
run's year (start) and the last run's year + 1 (end), so that every run's year is inside the period.

An inventory row whose span differs from the period is scaled to it, ``ΔC_i · n / (end_year − start_year)``
(a constant annual increment; flag ``inventory_span_scaled``). Per parcel: ``difference = RS − INV`` and
``ratio = RS / INV`` (over the period).

The two figures measure different things: the carbon raster of a NEP run is the net ecosystem flux (soil
respiration included), of an NPP run a gross flux (overstates the sink), of a ``rates`` run per-class defaults,
of a ``stock_change`` run the mean annual change of the InVEST pools between two land-cover maps; the inventory
counts tree biomass only. Their difference is a plausibility check, not a correction.

Outputs (``out_dir``): ``carbon_sink_<name>.csv`` (one row per parcel), ``carbon_sink_<name>.gpkg`` (the same
with the parcels' geometry, CRS of the runs' grid) and ``carbon_sink_manifest.json`` (runs with paths, hashes
and years, the period and each year's source, formulas, factors used with source and evidence, inputs' sha256,
assumptions, warnings, and which methodology clauses were read). ``<name>`` is the layer name, else the parcel
file's stem.
"""
from __future__ import annotations

import datetime as _dt
import logging
import re
from pathlib import Path
from typing import Optional

import numpy as np

from .._version import __version__
from ..errors import ConfigError, InputError, TableError, VectorError
from .change import RunInfo, check_same_grid, load_run

log = logging.getLogger("gep_raster")

__all__ = ["load_factors", "read_inventory", "inventory_sink", "resolve_period", "year_weights", "carbon_sink",
           "register", "METHODOLOGY", "FORMULAS"]

#: t CO2 per t C (molar masses 44/12)
CO2_PER_C = 44.0 / 12.0
#: key (file stem) of the runs' carbon raster, t CO2/a per pixel
CARBON_KEY = "carbon_sequestration_tco2"
#: the default factors table, in package data
DEFAULT_FACTORS = "gep_raster/data/forest_carbon_factors.csv"
FACTOR_COLUMNS = ("forest_type", "name_zh", "wood_density_t_m3", "bef", "root_shoot", "carbon_fraction", "source",
                  "evidence")
#: plausible range of each factor: a guard against typos and unit slips (kg/m3 for t/m3, % for a fraction), not
#: a statement of what is right for a forest type
FACTOR_RANGES = {"wood_density_t_m3": (0.1, 1.2), "bef": (1.0, 5.0), "root_shoot": (0.0, 1.5),
                 "carbon_fraction": (0.3, 0.6)}
INVENTORY_COLUMNS = ("forest_type", "area_ha", "volume_start_m3_ha", "volume_end_m3_ha", "start_year", "end_year")
#: a parcel is flagged when the two figures differ by more than this fraction of the inventory figure (a screening
#: threshold of this engine, from no methodology)
DIFFERENCE_FLAG = 0.5

FORMULAS = {
    "rs_flux_year": "F_y = sum_r w_{y,r} * S_r, S_r = sum over parcel pixels of coverage fraction x "
                    "carbon_sequestration_tco2 of run r (t CO2/a; NaN pixels skipped)",
    "rs_weights": "w = 1 for the run of year y; between runs a < y < b: w_b = (y - a)/(b - a), w_a = 1 - w_b; "
                  "before the first / after the last run: the first / last run's flux held constant",
    "rs_sink": "RS = sum over the years y of [start, end) of F_y (t CO2e)",
    "inventory_delta_volume": "dV = (volume_end_m3_ha - volume_start_m3_ha) x area_ha (m3)",
    "inventory_sink": "dC = dV x D x BEF x (1 + R) x CF x 44/12 (t CO2e over start_year..end_year-1)",
    "inventory_period": "INV = sum over the parcel's rows of dC x n_period / (end_year - start_year)",
    "difference": "RS - INV (t CO2e)", "ratio": "RS / INV"}

#: what of the methodologies was read (only what is listed under ``read``), and what was not
METHODOLOGY = {
    "read": [
        "IPCC 2006 Guidelines Vol. 4 ch. 4 (Forest Land): title page and table of contents only (section 4.2 "
        "Forest Land Remaining Forest Land, 4.2.1 Biomass), in a web copy; no equation, no table text",
        "IPCC 2006 Vol. 4 Table 4.4 (root-to-shoot ratio R): the temperate, boreal and subtropical-dry rows in a "
        "third-party transcription (CSV of the JRC forest_puller project) [V2]; the subtropical-humid rows that "
        "apply to south China were not in it",
        "IPCC 2006 Vol. 4 Table 4.5 (BCEF): the temperate rows in the same transcription [V2] (BCEF = D x BEF in "
        "t biomass per m3; not used by this engine, which takes D and BEF separately)",
        "IPCC GPG-LULUCF 2003 Annex 3A.1: table of contents only (Tables 3A.1.8 R, 3A.1.9 wood densities, "
        "3A.1.10 BEFs exist) [V2]",
        "AR-CM-003-V01 森林经营碳汇项目方法学 (CCER forest-management methodology, 2014): the front matter "
        "(编制说明: built on the CDM templates and the IPCC 2006 Guidelines) and the start of its contents, in a "
        "web copy; none of its formulas or parameter tables"],
    "not_read": [
        "IPCC 2006 Vol. 4 ch. 2 (generic methods: gain-loss and stock-difference equations) and ch. 4 Tables "
        "4.3 (carbon fraction, 0.47 is believed to be the default [V2: cited so in third-party code]), 4.4 "
        "subtropical rows, 4.5, 4.13/4.14 (basic wood densities)",
        "三明林业碳票碳减排量计量方法 (Sanming forestry carbon ticket methodology) and the Fujian forestry carbon "
        "ticket rules: not found, not read; its boundary, baseline, leakage, permanence/buffer deductions and "
        "monitoring-period clauses are NOT implemented",
        "LY/T 2253 (造林项目碳汇计量监测指南): not read",
        "省级温室气体清单编制指南 (试行, 2011) and the CCER afforestation methodology AR-CM-001 annex tables of "
        "D, BEF, R, CF by tree species: not read; the default factors are recalled values marked [U]",
        "the bamboo (毛竹) methodologies: not read; bamboo stands have no stem volume and are not covered by the "
        "volume-increment method here"]}


# --------------------------------------------------------------------------------------
# factors and inventory tables
# --------------------------------------------------------------------------------------
def _read_csv(path, what: str):
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise TableError(f"{what}: file not found: {p}")
    try:
        return pd.read_csv(p, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise TableError(f"{what}: cannot read {p} as CSV ({exc})") from None


def _numeric(df, col: str, what: str, path, *, integer: bool = False):
    """Column ``col`` as float64 (int64 with ``integer``); TableError naming file, column and CSV lines when a
    cell is empty or not a number."""
    import pandas as pd

    v = pd.to_numeric(df[col].str.strip(), errors="coerce")
    bad = [int(i) + 2 for i in np.flatnonzero(~np.isfinite(v.to_numpy(np.float64)))]
    if integer and not bad:
        bad = [int(i) + 2 for i in np.flatnonzero(v.to_numpy() != np.round(v.to_numpy()))]
    if bad:
        raise TableError(f"{what} {path}: column '{col}' is empty or not a{'n integer' if integer else ' number'} on "
                         f"line(s) {bad[:10]}")
    return v.to_numpy(np.int64 if integer else np.float64)


def load_factors(path=None):
    """The forest-type factors of the volume-increment method.

    Parameters
    ----------
    path : path-like, optional
        CSV with columns ``forest_type, name_zh, wood_density_t_m3, bef, root_shoot, carbon_fraction, source,
        evidence`` (UTF-8, BOM allowed). Default: the package table ``gep_raster/data/forest_carbon_factors.csv``.
        A given table replaces the default as a whole.

    Returns
    -------
    factors : pandas.DataFrame
        Indexed by ``forest_type`` (text, unique): ``wood_density_t_m3`` D (t dry matter per m3 of stem volume),
        ``bef`` (above-ground / stem biomass, ≥ 1), ``root_shoot`` R (below / above-ground biomass),
        ``carbon_fraction`` CF (t C / t dry matter), all float64; ``name_zh``, ``source``, ``evidence`` (one of
        ``V``, ``V-calc``, ``V2``, ``U``, ``EX``, ``user``) and ``line`` (CSV line).
    source : str
        The file read (path, or ``default: ...``).

    Raises
    ------
    TableError
        File missing or unreadable, a column missing, an empty or duplicate forest type, a factor not a number or
        outside :data:`FACTOR_RANGES`, an unknown evidence mark; the message names the file, column and line.
    """
    from importlib import resources

    from ..tables import normalize_evidence

    if path is None:
        source = f"default: {DEFAULT_FACTORS}"
        with resources.as_file(resources.files("gep_raster.data").joinpath("forest_carbon_factors.csv")) as p:
            df, where = _read_csv(p, "factors"), DEFAULT_FACTORS
    else:
        where = str(Path(path))
        df, source = _read_csv(path, "factors"), str(Path(path).resolve())
    missing = [c for c in FACTOR_COLUMNS if c not in df.columns]
    if missing:
        raise TableError(f"factors {where}: column(s) {missing} missing (format: {', '.join(FACTOR_COLUMNS)}; "
                         f"found {list(df.columns)})")
    df = df.copy()
    df["forest_type"] = df["forest_type"].str.strip()
    if (df["forest_type"] == "").any() or df["forest_type"].duplicated().any():
        dup = sorted(set(df.loc[df["forest_type"].duplicated(), "forest_type"]))
        raise TableError(f"factors {where}: column 'forest_type' has empty or duplicate values {dup}")
    for col, (lo, hi) in FACTOR_RANGES.items():
        df[col] = _numeric(df, col, "factors", where)
        bad = df.loc[(df[col] < lo) | (df[col] > hi), ["forest_type", col]]
        if len(bad):
            raise TableError(f"factors {where}: column '{col}' outside the plausible range [{lo}, {hi}] for "
                             f"{bad.to_dict('records')} (check the unit: {col})")
    df["evidence"] = [normalize_evidence(v, f"factors {where}: line {i + 2}, column 'evidence'")
                      for i, v in enumerate(df["evidence"])]
    df["line"] = np.arange(2, len(df) + 2)
    return df.set_index("forest_type"), source


def read_inventory(path, id_field: str, factors):
    """Read and check a forest inventory table.

    Parameters
    ----------
    path : path-like
        CSV (UTF-8, BOM allowed) with the column ``id_field`` (the parcel id, as in the parcel layer) and
        :data:`INVENTORY_COLUMNS`: ``forest_type`` (a key of the factors table), ``area_ha`` (forest area of the
        row, ha, > 0), ``volume_start_m3_ha``, ``volume_end_m3_ha`` (standing stem volume per hectare at the two
        surveys, m3/ha, ≥ 0), ``start_year``, ``end_year`` (survey dates on the period convention of the module
        docstring, integers, end_year > start_year). Several rows per parcel are allowed (summed).
    id_field : str
        Name of the parcel id column.
    factors : pandas.DataFrame
        From :func:`load_factors`.

    Returns
    -------
    pandas.DataFrame
        One row per CSV row: ``id_field`` (text), ``forest_type`` (text), ``area_ha``, ``volume_start_m3_ha``,
        ``volume_end_m3_ha`` (float64), ``start_year``, ``end_year`` (int64), ``line`` (CSV line).

    Raises
    ------
    TableError
        File missing or unreadable, a column missing, an empty id, a value not a number, a negative volume,
        area ≤ 0, end_year ≤ start_year, or a forest type not in the factors table; the message names the file,
        the column and the line(s).
    """
    df = _read_csv(path, "inventory")
    need = [id_field, *INVENTORY_COLUMNS]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise TableError(f"inventory {path}: column(s) {missing} missing (need {need}; found {list(df.columns)})")
    out = df[[id_field, "forest_type"]].apply(lambda s: s.str.strip())
    empty = [int(i) + 2 for i in np.flatnonzero((out[id_field] == "").to_numpy())]
    if empty:
        raise TableError(f"inventory {path}: column '{id_field}' is empty on line(s) {empty[:10]}")
    for col in ("area_ha", "volume_start_m3_ha", "volume_end_m3_ha"):
        out[col] = _numeric(df, col, "inventory", path)
    for col in ("start_year", "end_year"):
        out[col] = _numeric(df, col, "inventory", path, integer=True)
    checks = [(out["area_ha"] <= 0, "area_ha must be > 0"),
              ((out["volume_start_m3_ha"] < 0) | (out["volume_end_m3_ha"] < 0), "volumes must be >= 0 (m3/ha)"),
              (out["end_year"] <= out["start_year"], "end_year must be after start_year")]
    for bad, msg in checks:
        lines = [int(i) + 2 for i in np.flatnonzero(bad.to_numpy())]
        if lines:
            raise TableError(f"inventory {path}: {msg} (line(s) {lines[:10]})")
    unknown = ~out["forest_type"].isin(factors.index)
    if unknown.any():
        lines = [int(i) + 2 for i in np.flatnonzero(unknown.to_numpy())]
        raise TableError(f"inventory {path}: column 'forest_type' has value(s) "
                         f"{sorted(set(out.loc[unknown, 'forest_type']))} (line(s) {lines[:10]}) not in the factors "
                         f"table (known: {list(factors.index)}); add the type to a factors table (--factors)")
    out["line"] = np.arange(2, len(out) + 2)
    return out


def inventory_sink(inv, factors, n_period: int):
    """Volume-increment carbon sink of every inventory row.

    Parameters
    ----------
    inv : pandas.DataFrame
        From :func:`read_inventory`.
    factors : pandas.DataFrame
        From :func:`load_factors`.
    n_period : int
        Years of the period (the row's sink is scaled to it when its span differs).

    Returns
    -------
    pandas.DataFrame
        ``inv`` with ``wood_density_t_m3``, ``bef``, ``root_shoot``, ``carbon_fraction`` of the row's type,
        ``delta_volume_m3`` = (V_end − V_start) × area_ha (m3), ``sink_tco2e`` = ΔV × D × BEF × (1 + R) × CF × 44/12
        (t CO2e over the row's span), ``span_years`` = end_year − start_year and ``sink_period_tco2e`` =
        sink_tco2e × n_period / span_years (t CO2e over the period).
    """
    out = inv.copy()
    f = factors.loc[out["forest_type"]]
    for col in ("wood_density_t_m3", "bef", "root_shoot", "carbon_fraction"):
        out[col] = f[col].to_numpy(np.float64)
    out["delta_volume_m3"] = (out["volume_end_m3_ha"] - out["volume_start_m3_ha"]) * out["area_ha"]
    out["sink_tco2e"] = (out["delta_volume_m3"] * out["wood_density_t_m3"] * out["bef"] * (1.0 + out["root_shoot"])
                         * out["carbon_fraction"] * CO2_PER_C)
    out["span_years"] = out["end_year"] - out["start_year"]
    out["sink_period_tco2e"] = out["sink_tco2e"] * n_period / out["span_years"]
    return out


# --------------------------------------------------------------------------------------
# period and interpolation weights
# --------------------------------------------------------------------------------------
def _as_year(v, what: str) -> int | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: '{v}' is not a year") from None
    if not np.isfinite(f) or f != round(f):
        raise ConfigError(f"{what}: '{v}' is not a whole year")
    return int(f)


def resolve_period(run_years, start=None, end=None, inventory=None) -> tuple[int, int, dict]:
    """The period ``[start, end)`` (years; module docstring, *Period convention*).

    Parameters
    ----------
    run_years : sequence of int
        Accounting years of the runs (at least one).
    start, end : int, optional
        Explicit bounds (1 January of each year).
    inventory : pandas.DataFrame, optional
        From :func:`read_inventory`: its common ``start_year`` / ``end_year`` are the defaults when every row
        shares them.

    Returns
    -------
    start, end : int
    origin : dict
        ``{"start": "argument" | "inventory" | "first run year", "end": "argument" | "inventory" |
        "last run year + 1"}``.

    Raises
    ------
    ConfigError
        A bound is not a whole year, or ``end <= start``.
    """
    s, e = _as_year(start, "start"), _as_year(end, "end")
    origin = {"start": "argument", "end": "argument"}
    if s is None:
        if inventory is not None and inventory["start_year"].nunique() == 1:
            s, origin["start"] = int(inventory["start_year"].iloc[0]), "inventory"
        else:
            s, origin["start"] = int(min(run_years)), "first run year"
    if e is None:
        if inventory is not None and inventory["end_year"].nunique() == 1:
            e, origin["end"] = int(inventory["end_year"].iloc[0]), "inventory"
        else:
            e, origin["end"] = int(max(run_years)) + 1, "last run year + 1"
    if e <= s:
        raise ConfigError(f"period: end ({e}, {origin['end']}) must be after start ({s}, {origin['start']}); the "
                          "period [start, end) holds the years start .. end - 1")
    return s, e, origin


def year_weights(run_years, start: int, end: int) -> list[dict]:
    """Weight of each run in the flux of each year of ``[start, end)``.

    Parameters
    ----------
    run_years : sequence of int
        Distinct accounting years of the runs.
    start, end : int
        The period (``end > start``).

    Returns
    -------
    list of dict
        One per year y, in order: ``{"year": y, "source": "run" | "interpolated" | "extrapolated",
        "weights": {run_year: w}}`` with weights summing to 1 (module docstring, ``w_{y,r}``).
    """
    ys = sorted(int(y) for y in run_years)
    out = []
    for y in range(int(start), int(end)):
        if y in ys:
            w, src = {y: 1.0}, "run"
        elif y < ys[0] or y > ys[-1]:
            w, src = {ys[0] if y < ys[0] else ys[-1]: 1.0}, "extrapolated"
        else:
            b = next(v for v in ys if v > y)
            a = max(v for v in ys if v < y)
            wb = (y - a) / (b - a)
            w, src = {a: 1.0 - wb, b: wb}, "interpolated"
        out.append({"year": y, "source": src, "weights": w})
    return out


# --------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------
def _load_runs(runs) -> tuple[list[RunInfo], list[str]]:
    """The runs, sorted by accounting year, each with a carbon raster, all on the first run's grid, with distinct
    years; and the warnings their carbon methods call for.

    Raises
    ------
    ConfigError
        No run given, or two runs of the same accounting year.
    InputError, GridMismatchError
        A folder is not a finished run, has no ``accounting_year`` or no carbon raster; runs on different grids.
    """
    if not runs:
        raise ConfigError("carbon-sink: give at least one finished run folder")
    infos = [load_run(r) for r in runs]
    for r in infos:
        if CARBON_KEY not in r.rasters:
            raise InputError(f"{r.path / 'manifest.json'}: the run has no carbon raster (rasters/physical/"
                             f"{CARBON_KEY}.tif is not among its outputs); run it with services.carbon_sequestration "
                             "enabled")
        if _as_int(r.manifest.get("accounting_year")) is None:
            raise InputError(f"{r.path / 'manifest.json'}: 'accounting_year' missing or not a year "
                             f"({r.manifest.get('accounting_year')!r})")
        check_same_grid(infos[0], r)
    infos.sort(key=lambda r: _year(r))
    years = [_year(r) for r in infos]
    dup = sorted({y for y in years if years.count(y) > 1})
    if dup:
        raise ConfigError(f"carbon-sink: several runs of accounting year(s) {dup} "
                          f"({[str(r.path) for r in infos if _year(r) in dup]}); give one "
                          "run per year")
    return infos, _method_warnings(infos)


def _year(r: RunInfo) -> int:
    """The run's accounting year (checked by :func:`_load_runs`)."""
    return _as_int(r.manifest["accounting_year"])


def _as_int(v) -> int | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if np.isfinite(f) and f == round(f) else None


def _carbon_method(r: RunInfo) -> dict:
    cfg = r.manifest.get("config") or {}
    c = (cfg.get("inputs") or {}).get("carbon") or {}
    s = (cfg.get("services") or {}).get("carbon_sequestration") or {}
    return {"method": c.get("method", "rates"), "years": c.get("years"),
            "negative_values": s.get("negative_values", "keep")}


def _method_warnings(infos: list[RunInfo]) -> list[str]:
    """What each run's carbon method means for the remote-sensing figure."""
    out = []
    for r in infos:
        m, y = _carbon_method(r), _year(r)
        if m["method"] == "npp":
            out.append(f"run {y} ({r.path}): carbon method 'npp' is a gross flux (NPP x 1.63), not a net sink: the "
                       "remote-sensing figure overstates the sink")
        elif m["method"] == "rates":
            out.append(f"run {y} ({r.path}): carbon method 'rates' applies per-class default rates (legend "
                       "carbon_tco2_ha): the figure follows land cover, not measured growth")
        elif m["method"] == "stock_change":
            out.append(f"run {y} ({r.path}): carbon method 'stock_change': the raster is the mean annual change of "
                       f"the InVEST pools between two land-cover maps {m['years']} years apart, spread evenly over "
                       "those years; its pools (per the pools table) may include soil and dead matter")
        if m["negative_values"] == "clip":
            out.append(f"run {y} ({r.path}): negative fluxes were clipped to 0 "
                       "(services.carbon_sequestration.negative_values: clip): net emissions are hidden and the "
                       "sink is overstated where a parcel emits")
    if len({_carbon_method(r)["method"] for r in infos}) > 1:
        out.append("the runs use different carbon methods "
                   f"({ {_year(r): _carbon_method(r)['method'] for r in infos} }): the "
                   "interpolated years mix them")
    return out


# --------------------------------------------------------------------------------------
# remote-sensing figure
# --------------------------------------------------------------------------------------
def _rs_columns(gdf, infos: list[RunInfo], weights: list[dict], chunk: int) -> tuple[dict, dict]:
    """Per parcel: areas, each run's zonal sum and valid area, each year's flux and the sink over the period.

    Returns (columns, per_run) where ``columns`` maps output column -> array of shape (n_parcels,) and
    ``per_run`` maps run year -> {"sum_tco2": array, "valid_area_m2": array}.
    """
    from ..accounts.zonal import CoverageIndex
    from .offset import pair_sums

    grid = infos[0].grid
    index = CoverageIndex.build(gdf, grid, layer_name="parcels")
    per_run = {}
    for r in infos:
        s = pair_sums(index, r.rasters[CARBON_KEY]["path"], None, chunk)
        per_run[_year(r)] = {"sum_tco2": s["a"], "valid_area_m2": s["area_m2"]}
    unit2 = (grid.crs.linear_units_factor[1] ** 2) if (grid.crs.linear_units_factor and not grid.is_geographic) \
        else np.nan
    area_m2 = gdf.geometry.area.to_numpy() * unit2
    valid = np.vstack([v["valid_area_m2"] for v in per_run.values()])
    cols = {"area_ha": area_m2 / 1e4, "area_km2": area_m2 / 1e6, "grid_area_ha": index.covered_area_m2() / 1e4,
            "valid_area_ha": valid.min(axis=0) / 1e4}
    total = np.zeros(len(gdf))
    for w in weights:
        f = sum(wt * per_run[ry]["sum_tco2"] for ry, wt in w["weights"].items())
        cols[f"flux_{w['year']}_tco2"] = f
        total = total + f
    cols["rs_sink_tco2e"] = total
    cols["rs_mean_tco2e_per_year"] = total / len(weights)
    cols["_valid_differs"] = (valid.max(axis=0) - valid.min(axis=0)) > 1e-6 * np.maximum(valid.max(axis=0), 1.0)
    return cols, per_run


# --------------------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------------------
def _inventory_columns(tab, id_field: str, rows, start: int, end: int) -> list[str]:
    """Add the per-parcel inventory columns (sums over the parcel's rows) to ``tab``; returns the inventory ids
    that are not parcels."""
    rows = rows.assign(_scaled=rows["span_years"] != end - start,
                       _other=(rows["start_year"] != start) | (rows["end_year"] != end))
    g = rows.groupby(id_field, sort=False)
    agg = {"inventory_forest_types": g["forest_type"].agg(lambda s: "+".join(dict.fromkeys(s))),
           "inventory_area_ha": g["area_ha"].sum(),
           "inventory_start_year": g["start_year"].min(), "inventory_end_year": g["end_year"].max(),
           "inventory_delta_volume_m3": g["delta_volume_m3"].sum(),
           "inventory_sink_tco2e": g["sink_tco2e"].sum(),
           "inventory_sink_period_tco2e": g["sink_period_tco2e"].sum(),
           "_scaled": g["_scaled"].any(), "_other": g["_other"].any(),
           "_mixed_years": g["start_year"].nunique().gt(1) | g["end_year"].nunique().gt(1)}
    ids = tab[id_field]
    for k, v in agg.items():
        tab[k] = ids.map(v).astype("Int64") if k.endswith("_year") else ids.map(v).to_numpy()
    return sorted(set(rows[id_field]) - set(ids))


def _flags(tab, any_extrapolated: bool, single_run: bool, has_inventory: bool) -> list[str]:
    """The ``flags`` text of every parcel (``;``-separated names, documented in docs/carbon_sink.md)."""
    n = len(tab)
    conds = {
        "outside_grid": tab["grid_area_ha"].to_numpy() <= 0,
        "partly_outside_grid": (tab["grid_area_ha"] > 0) & (tab["grid_area_ha"] < tab["area_ha"] * (1 - 1e-6)),
        "nodata_pixels": (tab["grid_area_ha"] > 0) & (tab["valid_area_ha"] < tab["grid_area_ha"] * (1 - 1e-6)),
        "valid_area_differs_between_runs": tab["_valid_differs"].to_numpy(bool),
        "rs_single_run_constant_flux": np.full(n, single_run),
        "rs_extrapolated_years": np.full(n, any_extrapolated and not single_run),
        "rs_net_source": tab["rs_sink_tco2e"].to_numpy() < 0}
    if has_inventory:
        inv = tab["inventory_sink_period_tco2e"].to_numpy(np.float64)
        rs = tab["rs_sink_tco2e"].to_numpy(np.float64)
        with np.errstate(invalid="ignore"):
            conds.update({
                "no_inventory": ~np.isfinite(inv),
                "inventory_span_scaled": tab["_scaled"].eq(True).to_numpy(),
                "inventory_years_differ_from_period": tab["_other"].eq(True).to_numpy(),
                "inventory_years_mixed": tab["_mixed_years"].eq(True).to_numpy(),
                "inventory_area_exceeds_parcel": (tab["inventory_area_ha"] > tab["area_ha"] * 1.01).to_numpy(bool),
                "inventory_net_loss": inv < 0,
                "sign_differs": np.isfinite(inv) & (np.sign(inv) != np.sign(rs)),
                f"methods_differ_over_{int(DIFFERENCE_FLAG * 100)}pct":
                    np.isfinite(inv) & (np.abs(rs - inv) > DIFFERENCE_FLAG * np.abs(inv))})
    names = list(conds)
    arr = np.vstack([np.asarray(conds[k], bool) for k in names])
    return [";".join(k for k, on in zip(names, arr[:, i]) if on) for i in range(n)]


def _parcel_table(gdf, id_field: str, name_field, rs_cols: dict, inv_rows, start: int, end: int,
                  weights: list[dict], single_run: bool):
    """The output table (one row per parcel, layer order) and the inventory ids that are not parcels."""
    import pandas as pd

    tab = pd.DataFrame({id_field: gdf[id_field].astype(str).to_numpy()})
    if name_field and name_field != id_field:
        tab[name_field] = gdf[name_field].astype(str).to_numpy()
    for k, v in rs_cols.items():
        tab[k] = v
    orphans = []
    if inv_rows is not None:
        orphans = _inventory_columns(tab, id_field, inv_rows, start, end)
        inv = tab["inventory_sink_period_tco2e"].to_numpy(np.float64)
        tab["difference_tco2e"] = tab["rs_sink_tco2e"] - inv
        with np.errstate(divide="ignore", invalid="ignore"):
            tab["ratio_rs_to_inventory"] = np.where(np.isfinite(inv) & (inv != 0), tab["rs_sink_tco2e"] / inv, np.nan)
    tab["flags"] = _flags(tab, any(w["source"] == "extrapolated" for w in weights), single_run, inv_rows is not None)
    return tab.drop(columns=[c for c in tab.columns if c.startswith("_")]), orphans


# --------------------------------------------------------------------------------------
def carbon_sink(runs, parcels, id_field: str, out_dir, *, start=None, end=None, inventory=None, factors=None,
                name_field: str | None = None, parcels_layer: str | None = None, chunk: int = 1024) -> dict:
    """Forest carbon sink per parcel over a period, by remote sensing and by the inventory (module docstring).

    Parameters
    ----------
    runs : path-like or sequence of path-like
        Finished run folders (one per accounting year, same grid), each with ``carbon_sequestration_tco2``.
    parcels : path-like
        Polygon file of the forest parcels (any CRS; reprojected to the runs' grid).
    id_field : str
        Field of unique parcel ids (read as text); also the id column of ``inventory``.
    out_dir : path-like
        Output folder (created); files are replaced atomically.
    start, end : int, optional
        The period ``[start, end)`` (1 January of each year; defaults in the module docstring).
    inventory : path-like, optional
        Forest inventory CSV (:func:`read_inventory`); without it only the remote-sensing figure is given.
    factors : path-like, optional
        Factors table (:func:`load_factors`); default the package table.
    name_field : str, optional
        Field of parcel names, copied to the outputs.
    parcels_layer : str, optional
        Layer of a multi-layer parcel file (also names the outputs).
    chunk : int
        Raster rows read at a time.

    Returns
    -------
    dict
        The manifest (also ``out_dir/carbon_sink_manifest.json``), with ``"table"``: the output
        :class:`pandas.DataFrame` (not written to the JSON).

    Raises
    ------
    ConfigError
        No run, two runs of one year, a bound not a year, ``end <= start``.
    InputError, GridMismatchError
        A run is not finished, has no carbon raster or no accounting year; runs on different grids.
    VectorError
        Parcel file missing or unreadable, not polygons, id or name field missing, duplicate ids.
    TableError
        Inventory or factors table missing, a column missing, a bad value, a forest type not in the factors.
    """
    from .offset import read_polygons

    infos, warnings = _load_runs([runs] if isinstance(runs, (str, Path)) else list(runs))
    years = [_year(r) for r in infos]
    gdf = read_polygons(parcels, infos[0].grid, layer=parcels_layer, what="--parcels", id_field=id_field)
    if name_field and name_field not in gdf.columns:
        raise VectorError(f"--parcels: name field '{name_field}' not found in {parcels} "
                          f"(fields: {[c for c in gdf.columns if c != 'geometry']})")
    fac = fac_source = inv = None
    if inventory is not None:
        fac, fac_source = load_factors(factors)
        inv = read_inventory(inventory, id_field, fac)
    elif factors is not None:
        warnings.append(f"factors table {factors} given without an inventory: not used")
    s, e, origin = resolve_period(years, start, end, inv)
    weights = year_weights(years, s, e)
    rs_cols, per_run = _rs_columns(gdf, infos, weights, chunk)
    inv_rows = inventory_sink(inv, fac, e - s) if inv is not None else None
    tab, orphans = _parcel_table(gdf, id_field, name_field, rs_cols, inv_rows, s, e, weights, len(infos) == 1)
    if orphans:
        warnings.append(f"inventory ids not in the parcel layer (rows ignored): {orphans[:20]}")
    if np.isfinite(tab["area_ha"]).all() and (tab["grid_area_ha"] <= 0).any():
        warnings.append(f"parcels outside the runs' grid (sink 0): "
                        f"{tab.loc[tab['grid_area_ha'] <= 0, id_field].tolist()[:20]}")
    ctx = {"infos": infos, "per_run": per_run, "weights": weights, "period": (s, e, origin), "gdf": gdf,
           "parcels": parcels, "parcels_layer": parcels_layer, "id_field": id_field, "name_field": name_field,
           "inventory": inventory, "inv_rows": inv_rows, "factors": fac, "factors_source": fac_source,
           "warnings": warnings}
    return _write_outputs(tab, ctx, Path(out_dir))


def _output_name(parcels, layer) -> str:
    return re.sub(r"[^\w-]+", "_", str(layer) if layer else Path(parcels).stem).strip("_") or "parcels"


def _write_outputs(tab, ctx: dict, out: Path) -> dict:
    """Write the CSV, the GeoPackage and the manifest; returns the manifest with ``table``."""
    import geopandas as gpd

    from ..outputs.io_write import atomic_to_csv, atomic_to_gpkg, atomic_write_json

    name = _output_name(ctx["parcels"], ctx["parcels_layer"])
    out.mkdir(parents=True, exist_ok=True)
    csv, gpkg = out / f"carbon_sink_{name}.csv", out / f"carbon_sink_{name}.gpkg"
    atomic_to_csv(tab, csv)
    geo = gpd.GeoDataFrame(tab.copy(), geometry=ctx["gdf"].geometry.to_numpy(), crs=ctx["gdf"].crs)
    atomic_to_gpkg(geo, gpkg, layer=f"carbon_sink_{name}")
    manifest = _manifest(tab, ctx, [csv.name, gpkg.name, "carbon_sink_manifest.json"])
    atomic_write_json(out / "carbon_sink_manifest.json", manifest)
    for w in ctx["warnings"]:
        log.warning("carbon-sink: %s", w)
    return {**manifest, "table": tab}


def _manifest(tab, ctx: dict, files: list[str]) -> dict:
    """The manifest of the outputs (module docstring)."""
    from ..outputs.io_write import sha256_file

    s, e, origin = ctx["period"]
    inv_rows, fac = ctx["inv_rows"], ctx["factors"]
    runs = [{"path": str(r.path.resolve()), "run_name": r.manifest.get("run_name"),
             "run_hash": r.manifest.get("run_hash"), "accounting_year": _year(r),
             **{f"carbon_{k}": v for k, v in _carbon_method(r).items()},
             "carbon_raster": str(Path(r.rasters[CARBON_KEY]["path"]).resolve()),
             "carbon_raster_sha256": sha256_file(r.rasters[CARBON_KEY]["path"]),
             "carbon_raster_unit": r.rasters[CARBON_KEY]["unit"],
             "total_weight_years": sum(w["weights"].get(_year(r), 0.0)
                                       for w in ctx["weights"]),
             "parcels_sum_tco2_per_year": float(ctx["per_run"][_year(r)]["sum_tco2"].sum())}
            for r in ctx["infos"]]
    inventory = None
    if inv_rows is not None:
        used = sorted(set(inv_rows["forest_type"]))
        inventory = {"path": str(Path(ctx["inventory"]).resolve()), "sha256": sha256_file(ctx["inventory"]),
                     "rows": int(len(inv_rows)), "volume_unit": "m3/ha", "area_unit": "ha",
                     "factors": {"source": ctx["factors_source"],
                                 "sha256": _factors_sha256(ctx["factors_source"]),
                                 "used": {t: {k: (float(fac.loc[t, k]) if k in FACTOR_RANGES else fac.loc[t, k])
                                              for k in ("name_zh", *FACTOR_RANGES, "source", "evidence")}
                                          for t in used}}}
    totals = {c: float(np.nansum(tab[c].to_numpy(np.float64))) for c in
              ("rs_sink_tco2e", "inventory_sink_tco2e", "inventory_sink_period_tco2e") if c in tab}
    return {
        "gep_raster_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "kind": "carbon_sink", "runs": runs, "grid": ctx["infos"][0].manifest["grid"],
        "period": {"start": s, "end": e, "n_years": e - s, "years": list(range(s, e)), "origin": origin,
                   "convention": "a bound is 1 January of its year; [start, end) holds the accounting years "
                                 "start .. end - 1; a run of accounting year Y gives the flux of calendar year Y"},
        "years": [{**w, "weights": {str(k): v for k, v in w["weights"].items()}} for w in ctx["weights"]],
        "parcels": {"path": str(Path(ctx["parcels"]).resolve()), "sha256": sha256_file(ctx["parcels"]),
                    "layer": ctx["parcels_layer"], "id_field": ctx["id_field"], "name_field": ctx["name_field"],
                    "n": int(len(tab))},
        "inventory": inventory, "formulas": FORMULAS, "units": _UNITS,
        "assumptions": _assumptions(ctx, inv_rows is not None), "methodology": METHODOLOGY,
        "totals": totals, "outputs": files, "warnings": ctx["warnings"]}


def _factors_sha256(source: str) -> str:
    """sha256 of the factors table read (the package file for the default)."""
    from importlib import resources

    from ..outputs.io_write import sha256_file

    if source.startswith("default"):
        with resources.as_file(resources.files("gep_raster.data").joinpath("forest_carbon_factors.csv")) as p:
            return sha256_file(p)
    return sha256_file(source)


_UNITS = {"area_ha": "ha", "area_km2": "km2", "grid_area_ha": "ha", "valid_area_ha": "ha", "flux_<year>_tco2": "t CO2/a",
          "rs_sink_tco2e": "t CO2e over the period", "rs_mean_tco2e_per_year": "t CO2e/a",
          "inventory_area_ha": "ha", "inventory_delta_volume_m3": "m3", "inventory_sink_tco2e": "t CO2e over the "
          "rows' own spans", "inventory_sink_period_tco2e": "t CO2e over the period",
          "difference_tco2e": "t CO2e", "ratio_rs_to_inventory": "1"}


def _assumptions(ctx: dict, with_inventory: bool) -> list[str]:
    """The assumptions behind these figures (those that apply to this call)."""
    w = ctx["weights"]
    out = ["a run's carbon raster is the flux of its whole accounting year (t CO2/a), the parcel sum counts "
           "pixels by their covered fraction and skips nodata pixels"]
    if len(ctx["infos"]) == 1:
        out.append(f"one run only: its flux is taken for every one of the {len(w)} years (RS = n x flux)")
    if any(x["source"] == "interpolated" for x in w):
        out.append("years between two runs: flux interpolated linearly in time between the parcel sums of the two "
                   f"runs (years {[x['year'] for x in w if x['source'] == 'interpolated']})")
    if any(x["source"] == "extrapolated" for x in w) and len(ctx["infos"]) > 1:
        out.append("years outside the runs: the nearest run's flux held constant (years "
                   f"{[x['year'] for x in w if x['source'] == 'extrapolated']})")
    if with_inventory:
        out += ["inventory volumes are standing stem volume per ha of the row's area at the two survey dates; the "
                "factors of the row's forest type apply to all of its growth",
                "the inventory figure counts living-tree biomass (above + below ground) only; no dead wood, litter, "
                "soil, harvested wood products, leakage, baseline or buffer deduction"]
        if ctx["inv_rows"]["sink_period_tco2e"].ne(ctx["inv_rows"]["sink_tco2e"]).any():
            out.append("inventory rows whose span differs from the period are scaled by n_period / span "
                       "(a constant annual increment)")
        u = sorted({t for t in ctx["inv_rows"]["forest_type"] if ctx["factors"].loc[t, "evidence"] in ("U", "V2")})
        if u:
            out.append(f"factors of forest type(s) {u} are marked [U]/[V2] in the factors table: values not read in "
                       "their primary source")
    return out


# --------------------------------------------------------------------------------------
def register(app) -> None:
    """Add ``gep carbon-sink RUN... --parcels FILE --id-field F -o OUT`` to the typer ``app``."""
    import typer

    from ..cli_common import (command, debug_option, log_file_option, log_json_option, log_level_option,
                              quiet_option, verbose_option)

    @app.command("carbon-sink")
    def carbon_sink_cmd(
            runs: list[Path] = typer.Argument(..., help="Finished run folders (one per accounting year, same grid)."),
            parcels: Path = typer.Option(..., "--parcels", help="Polygon file of the forest parcels."),
            id_field: str = typer.Option(..., "--id-field", help="Parcel id field (also the inventory's id column)."),
            output: Path = typer.Option(..., "--output", "-o", help="Output folder."),
            start: Optional[int] = typer.Option(None, "--start", help="First year of the period (1 January)."),
            end: Optional[int] = typer.Option(None, "--end", help="End of the period (1 January; years start..end-1)."),
            inventory: Optional[Path] = typer.Option(None, "--inventory", help="Forest inventory CSV (volume method)."),
            factors: Optional[Path] = typer.Option(None, "--factors", help="Factors table replacing the default."),
            name_field: Optional[str] = typer.Option(None, "--name-field", help="Parcel name field."),
            parcels_layer: Optional[str] = typer.Option(None, "--parcels-layer", help="Layer of the parcel file."),
            quiet: bool = quiet_option(), verbose: int = verbose_option(),
            log_level: Optional[str] = log_level_option(), log_file: Optional[Path] = log_file_option(),
            log_json: bool = log_json_option(), debug: bool = debug_option()):
        """Forest carbon sink per parcel over a period (t CO2e): remote sensing and inventory, side by side."""
        with command(quiet, verbose, log_level, log_file, log_json, debug) as out:
            m = carbon_sink(runs, parcels, id_field, output, start=start, end=end, inventory=inventory,
                            factors=factors, name_field=name_field, parcels_layer=parcels_layer)
            p, t = m["period"], m["totals"]
            line = (f"carbon sink {p['start']}-{p['end'] - 1} ({p['n_years']} a), {m['parcels']['n']} parcels: "
                    f"remote sensing {t['rs_sink_tco2e']:,.1f} t CO2e")
            if "inventory_sink_period_tco2e" in t:
                line += f", inventory {t['inventory_sink_period_tco2e']:,.1f} t CO2e"
            out.result(line)
            for w in m["warnings"]:
                out.warning(w)
            out.detail(f"  table: {output / m['outputs'][0]}")
