"""Provisioning (EPV) and cultural (ECV) accounts from statistics tables, allocated to pixels.

GEP = EPV + ERV + ECV (methods note §1.1). The regulating part (ERV = GEP-R) is computed per pixel
by the services; provisioning (物质产品) and cultural (文化服务) values come from statistics per
administrative unit (yearbook output values, water supplied × price, hydropower, tourism revenue,
methods note §3) and are spread over the unit's pixels by an explicit rule recorded in the
manifest. With ``exclude_outside_region`` the share of a value that originates outside the region
is subtracted (GB/T 46869-2025: GEP "minus the eco-product value that comes from outside the
region", methods note §1.1 and §6.10).

Configuration (``economic_accounts`` in the run YAML)
----------------------------------------------------
``table``
    CSV of statistics (format below), path relative to the YAML.
``layer``
    Name of the ``layers.<name>`` entry whose ``id_field`` the table's ``unit_id`` refers to
    (the *allocation layer*, e.g. ``township`` or ``county``).
``exclude_outside_region``
    ``true``: subtract ``value_yuan × outside_share`` from every row (GB/T 46869-2025).
    ``false`` (default): count the whole value; the outside share is still reported.
``weight_rasters``
    Optional ``{name: {path: ...}}`` rasters (any :class:`~gep_raster.config.RasterInput`) that a
    row may name in its ``weight`` column (e.g. an NPP raster to weight crop output).

Statistics table
----------------
UTF-8 CSV (a BOM is accepted), one row per (unit, account, item); other columns (e.g. ``notes``)
are ignored:

==================  =====================================================================
column              meaning
==================  =====================================================================
``unit_id``         id of a polygon of the allocation layer (its ``id_field``, as text)
``account``         ``provisioning`` (EPV) or ``cultural`` (ECV)
``item``            lower-case name ``[a-z][a-z0-9_]*``, e.g. agriculture, forestry,
                    livestock, fishery, water_supply, hydropower, tourism; it names the
                    table columns ``epv_<item>_yuan`` / ``ecv_<item>_yuan``
``value_yuan``      value of the item in the unit, yuan/a (finite, ≥ 0)
``year``            statistics year (integer; a year other than ``accounting_year`` is
                    reported as a warning)
``source``          where the number comes from (yearbook, table, page). Illustrative
                    numbers must say so, e.g. ``ILLUSTRATIVE [EX], not real statistics``
``allocate_to``     ``;``-separated ecosystem types (forest, shrub, grassland, wetland,
                    cropland, urban, water, bare: every legend class of that type) and/or
                    integer class codes of the legend, e.g. ``cropland``, ``forest;shrub``,
                    ``7;8;9``
``weight``          ``area`` or the name of one of ``weight_rasters``
``outside_share``   0..1, share of the value that originates outside the region
==================  =====================================================================

Every cell is checked (unknown unit id, unknown account, bad item name, non-numeric or negative
value, empty or unknown allocation, unknown weight, share outside 0..1, duplicate
(unit, account, item)); all problems are reported at once in one :class:`TableError` whose lines
name the file, the row (1-based data row and file line) and the column.

Allocation rule
---------------
Counted value of a row k (unit u, item i): ``V_k = value_yuan × (1 − outside_share)`` when
``exclude_outside_region`` is true, else ``V_k = value_yuan``. The eligible pixels of the row are
those whose land-cover class is in ``allocate_to``; the amount of row k in pixel p is::

    a_k(p) = V_k · f_u(p) · A(p) · w_k(p) / D_k,      D_k = Σ_q f_u(q) · A(q) · w_k(q)

with ``f_u(p)`` the exact coverage fraction of pixel p by unit u (exactextract, the allocation
layer's :class:`~gep_raster.accounts.zonal.CoverageIndex`), ``A(p)`` the pixel area (m2), ``w_k(p)`` = 1
for ``weight: area`` or the weight raster's value (NaN, nodata and negative weights count as 0),
and the sum over every eligible pixel of the grid. The pixel value of an item is Σ_k a_k(p) over
the rows of that item; ``provisioning_yuan`` / ``cultural_yuan`` are the sums over the items of
each account; land-cover nodata pixels are NaN. The denominators D_k come from a pre-pass over
fixed windows of :data:`PREPASS_TILE` pixels (so that they, and therefore every pixel, do not
depend on ``output.chunk_size``).

Unallocated value
-----------------
A row whose unit has no eligible pixel with positive weight on the grid (D_k = 0: no such class
in the unit, the unit outside the grid, or all weights 0) cannot be located: it appears in no
raster, is listed in the manifest (``economic_accounts.unallocated``) and logged as a warning,
and is **still counted in its unit's row** of the allocation layer's table (EPV/ECV per polygon
include all value).

Per-polygon tables
------------------
* Allocation layer: ``provisioning_yuan``, ``cultural_yuan`` and the item columns are the
  unit's counted statistics (Σ_k V_k of its rows), exactly; this equals the value allocated to
  its pixels plus its unallocated value.
* Layers the allocation layer nests in (``nests_in`` chain, e.g. the county above townships):
  the sum of their children's rows (each child counted in the parent holding most of it), so
  a county = Σ of its townships' statistics.
* Every other layer (special units, finer layers): the coverage-weighted sum of the EPV/ECV
  rasters, like the regulating services (a pixel's amount is taken as spread evenly over the
  pixel). Unallocated value is in no such sum.
* ``gep_yuan = gep_r_yuan + provisioning_yuan + cultural_yuan`` in every row;
  ``gep_yuan_per_km2`` per valid km2.

The pixel raster ``rasters/gep_yuan.tif`` = GEP-R + EPV + ECV per pixel; where GEP-R is NaN
(e.g. a missing climate input) but the pixel carries EPV/ECV, GEP-R counts as 0 (as in the
tables, which skip NaN), and the pixel is NaN only where all three are missing.

Sources: methods note §1.1 (GEP = EPV + ERV + ECV; GB/T 46869-2025 exclusion of value from outside
the region [V, release news]), §3.1–3.2 (statistics-based provisioning and cultural values, Garzê
2010 [V]; allocation rules are an engine design, not from a standard), §6.10 (basis of EPV and
how to implement the exclusion: open question).
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from ..config_base import ECOSYSTEMS
from ..errors import ConfigError, TableError
from ..services.base import OutputSpec

if TYPE_CHECKING:  # pragma: no cover
    from .layers import Layer
    from ..config import RunConfig
    from ..grid import RefGrid
    from ..tables import Legend
    from .zonal import CoverageIndex

log = logging.getLogger("gep_raster")

#: account name -> prefix of the item columns
ACCOUNTS = {"provisioning": "epv", "cultural": "ecv"}
#: required columns of the statistics table, in documentation order
COLUMNS = ("unit_id", "account", "item", "value_yuan", "year", "source", "allocate_to", "weight",
           "outside_share")
#: relative tolerance of raster total = located statistics (float32 pixels)
CONSERVATION_RTOL = 1e-6
#: window (pixels) of the denominator pre-pass; fixed so that results do not depend on output.chunk_size
PREPASS_TILE = 1024

_ITEM_RE = re.compile(r"^[a-z][a-z0-9_]*$")

ALLOCATION_RULE = ("a_k(p) = V_k * f_u(p) * A(p) * w_k(p) / sum_q[f_u(q) * A(q) * w_k(q)] over the eligible "
                   "pixels q (class in allocate_to) of unit u; V_k = value_yuan * (1 - outside_share) if "
                   "exclude_outside_region else value_yuan; f_u = exact coverage fraction of the pixel by u; "
                   "A = pixel area m2; w = 1 (weight: area) or the weight raster (NaN/negative -> 0)")
TABLE_RULE = ("allocation layer: the unit's counted statistics (allocated + unallocated value); layers the "
              "allocation layer nests in: sum of their children's rows; other layers: coverage-weighted sum "
              "of the EPV/ECV rasters. gep_yuan = gep_r_yuan + provisioning_yuan + cultural_yuan")
UNALLOCATED_RULE = ("a row whose unit has no eligible pixel with positive weight on the grid cannot be located: "
                    "it is in no raster, is listed here, and is still counted in its unit's table row")


@dataclass(frozen=True)
class EconomicOutputSpec(OutputSpec):
    """An output of the economic accounts; ``rel_path`` is its raster path (``write`` outputs only)."""

    rel_path: str = ""

    @property
    def path(self) -> str:  # noqa: D401
        return self.rel_path


@dataclass(frozen=True)
class AllocationRule:
    """Eligible classes and weight of a group of statistics rows.

    Attributes
    ----------
    classes : tuple of int
        Land-cover class codes whose pixels receive value.
    weight : str
        ``"area"`` or the name of a weight raster.
    allocate_to : str
        The table's ``allocate_to`` text (normalised: tokens joined by ``;``).
    """

    classes: tuple
    weight: str
    allocate_to: str


# --------------------------------------------------------------------------------------
# statistics table
# --------------------------------------------------------------------------------------
def _norm_id(v) -> str:
    """Text form of a unit id: integral numbers without decimals (1.0 -> '1'), text stripped."""
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


def load_statistics(path: Path, *, unit_ids: Sequence, layer_name: str, id_field: str, legend: "Legend",
                    weight_names: Sequence[str], accounting_year: int | None = None) -> pd.DataFrame:
    """Read and validate a statistics table.

    Parameters
    ----------
    path : Path
        The CSV (format in the module docstring).
    unit_ids : sequence
        Ids of the allocation layer's polygons, in layer order (compared as text, see ``_norm_id``).
    layer_name, id_field : str
        Allocation layer name and its id field (for messages).
    legend : Legend
        The run's legend (class codes and their ``ecosystem``).
    weight_names : sequence of str
        Names of the configured ``weight_rasters``.
    accounting_year : int, optional
        Rows of another year are logged as a warning.

    Returns
    -------
    pandas.DataFrame
        One row per statistics row, in file order, with columns ``row`` (1-based data row),
        ``line`` (file line), ``unit_id`` (str), ``unit`` (int, polygon position in the layer),
        ``account``, ``item``, ``value_yuan`` (float, yuan/a), ``year`` (int), ``source``,
        ``allocate_to`` (normalised text), ``classes`` (tuple of int codes), ``weight``,
        ``outside_share`` (float).

    Raises
    ------
    TableError
        The file is missing or unreadable, a required column is missing, the table is empty, or
        any cell is invalid. All cell problems are listed, one line each naming the file, the
        row and the column.
    """
    df = _read_statistics_csv(path)
    id_pos: dict[str, int] = {}
    for i, v in enumerate(unit_ids):
        id_pos.setdefault(_norm_id(v), i)
    ctx = _StatisticsContext(path, id_pos, layer_name, id_field, legend, legend.table["ecosystem"],
                             set(int(c) for c in legend.codes), weight_names, accounting_year)
    problems: list[str] = []
    out = []
    seen: dict[tuple, int] = {}
    for i, rec in enumerate(df.to_dict("records")):
        row, line = i + 1, i + 2

        def bad(col, msg):
            problems.append(f"{path.name} row {row} (line {line}), column '{col}': {msg}")

        rec = {k: (v.strip() if isinstance(v, str) else v) for k, v in rec.items()}
        parsed = _statistics_row(rec, row, ctx, bad)
        key = (parsed["unit_id"], parsed["account"], parsed["item"])
        if key in seen:
            bad("item", f"duplicate of row {seen[key]} (same unit_id, account and item); merge the two rows")
        else:
            seen[key] = row
        out.append({"row": row, "line": line, **parsed})
    if len(problems) == 1:
        raise TableError(f"economic_accounts.table {path}: {problems[0]}")
    if problems:
        raise TableError(f"economic_accounts.table {path}: {len(problems)} problems:\n  - " + "\n  - ".join(problems))
    return pd.DataFrame(out)


def _read_statistics_csv(path: Path) -> pd.DataFrame:
    """The statistics CSV as text cells (UTF-8, BOM allowed), with the required :data:`COLUMNS` and a row.

    Raises
    ------
    TableError
        Missing, unreadable, a required column missing, or no row.
    """
    if not path.is_file():
        raise TableError(f"economic_accounts.table: file not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except Exception as exc:  # pandas raises many types
        raise TableError(f"economic_accounts.table: cannot read CSV {path}: {exc}") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise TableError(f"economic_accounts.table {path}: column(s) {missing} missing "
                         f"(required: {list(COLUMNS)}; found: {list(df.columns)})")
    if len(df) == 0:
        raise TableError(f"economic_accounts.table {path}: the table holds no rows")
    return df


@dataclass(frozen=True)
class _StatisticsContext:
    """What a statistics row is checked against: the layer's ids, the legend, the weight rasters, the year."""

    path: Path
    id_pos: dict
    layer_name: str
    id_field: str
    legend: "Legend"
    eco: pd.Series
    codes: set
    weight_names: Sequence[str]
    accounting_year: int | None


def _statistics_row(rec: dict, row: int, ctx: _StatisticsContext, bad) -> dict:
    """One row parsed (unit position, account, item, value, year, source, allocation classes, weight, outside
    share); every invalid cell reported with ``bad(column, message)``."""
    uid = rec["unit_id"]
    unit = ctx.id_pos.get(uid, -1)
    if uid == "":
        bad("unit_id", "empty")
    elif unit < 0:
        known = list(ctx.id_pos)
        bad("unit_id", f"'{uid}' is not an id of layers.{ctx.layer_name} (field '{ctx.id_field}'); known ids: "
                       f"{known[:12]}{' ...' if len(known) > 12 else ''}")
    account = rec["account"].lower()
    if account not in ACCOUNTS:
        bad("account", f"'{rec['account']}' is not one of {list(ACCOUNTS)}")
    item = rec["item"]
    if not _ITEM_RE.match(item):
        bad("item", f"'{item}' is not a lower-case name [a-z][a-z0-9_]* (it names the table columns)")
    try:
        value = float(rec["value_yuan"])
        if not math.isfinite(value) or value < 0:
            bad("value_yuan", f"'{rec['value_yuan']}' must be a finite number >= 0 (yuan/a)")
    except ValueError:
        value = float("nan")
        bad("value_yuan", f"'{rec['value_yuan']}' is not a number (yuan/a)")
    try:
        year = int(rec["year"])
        if ctx.accounting_year is not None and year != ctx.accounting_year:
            log.warning("economic_accounts.table %s row %d: year %d differs from accounting_year %d",
                        ctx.path.name, row, year, ctx.accounting_year)
    except ValueError:
        year = -1
        bad("year", f"'{rec['year']}' is not an integer year")
    if rec["source"] == "":
        bad("source", "empty; say where the number comes from (or 'ILLUSTRATIVE [EX]')")
    tokens, classes = _allocation_classes(rec["allocate_to"], ctx, bad)
    weight = rec["weight"]
    if weight != "area" and weight not in ctx.weight_names:
        bad("weight", f"'{weight}' is neither 'area' nor a name of economic_accounts.weight_rasters "
                      f"({sorted(ctx.weight_names)})")
    try:
        share = float(rec["outside_share"])
        if not (0.0 <= share <= 1.0):
            bad("outside_share", f"{rec['outside_share']} is outside 0..1")
    except ValueError:
        share = float("nan")
        bad("outside_share", f"'{rec['outside_share']}' is not a number in 0..1 (write 0 if no value "
                             "comes from outside the region)")
    return {"unit_id": uid, "unit": unit, "account": account, "item": item, "value_yuan": value, "year": year,
            "source": rec["source"], "allocate_to": ";".join(tokens), "classes": tuple(sorted(classes)),
            "weight": weight, "outside_share": share}


def _allocation_classes(text: str, ctx: _StatisticsContext, bad) -> tuple[list[str], set[int]]:
    """``allocate_to`` (ecosystem types and/or class codes separated by ';') as its tokens and the legend class
    codes they name."""
    tokens = [t.strip() for t in text.split(";") if t.strip()]
    classes: set[int] = set()
    if not tokens:
        bad("allocate_to", "empty allocation; give ecosystem types or class codes separated by ';'")
    for t in tokens:
        if t.lower() in ECOSYSTEMS:
            hit = [int(c) for c in ctx.eco.index[ctx.eco.to_numpy() == t.lower()]]
            if not hit:
                bad("allocate_to", f"ecosystem type '{t}' matches no class of the legend {ctx.legend.label}")
            classes.update(hit)
        elif re.fullmatch(r"\d+", t):
            if int(t) not in ctx.codes:
                bad("allocate_to", f"class code {t} is not in the legend {ctx.legend.label}")
            classes.add(int(t))
        else:
            bad("allocate_to", f"'{t}' is neither an ecosystem type {list(ECOSYSTEMS)} nor an integer class code")
    return tokens, classes


# --------------------------------------------------------------------------------------
# pure block computation (numpy arrays + coverage entries)
# --------------------------------------------------------------------------------------
def _entry_bases(lc: np.ndarray, weights: dict, row_area_m2: np.ndarray, entries, rule_lut: np.ndarray,
                 rule_weight: Sequence[str]) -> np.ndarray:
    """``f · A · eligible · w`` of every coverage entry of a block, for every rule: float64 (n_rules, n_entries)."""
    poly, rr, cc, frac = entries
    n_rules, n_codes = rule_lut.shape
    code = lc[rr, cc].astype(np.int64)
    code = np.where((code >= 0) & (code < n_codes - 1), code, n_codes - 1)  # guard entry = not eligible
    fa = frac * row_area_m2[rr]
    out = np.empty((n_rules, poly.size), np.float64)
    wcache: dict[str, np.ndarray] = {}
    for r in range(n_rules):
        b = fa * rule_lut[r, code]
        name = rule_weight[r]
        if name != "area":
            if name not in wcache:
                wv = np.asarray(weights[name])[rr, cc].astype(np.float64)
                wcache[name] = np.where(np.isfinite(wv) & (wv > 0), wv, 0.0)
            b = b * wcache[name]
        out[r] = b
    return out


def prepass_block(lc: np.ndarray, weights: dict, row_area_m2: np.ndarray, entries, rule_lut: np.ndarray,
                  rule_weight: Sequence[str], n_units: int) -> np.ndarray:
    """Allocation denominators of one block.

    Parameters
    ----------
    lc : int32 (h, w)
        Land-cover class codes, -1 = nodata.
    weights : dict of str -> float32 (h, w)
        Weight rasters named by the rules (NaN / nodata / negative count as 0).
    row_area_m2 : float64 (h,)
        Pixel area per row of the block, m2.
    entries : tuple (poly int32, row int32, col int32, frac float64)
        Coverage entries of the block (:meth:`CoverageIndex.entries`), rows/cols relative to the block.
    rule_lut : uint8 (n_rules, n_codes)
        1 where a class code is eligible for a rule; the last column is a guard (0).
    rule_weight : sequence of str, length n_rules
        ``"area"`` or a key of ``weights``.
    n_units : int
        Number of polygons of the allocation layer.

    Returns
    -------
    float64 (n_units, n_rules)
        Σ over the block's entries of ``f_u · A · eligible · w`` per unit and rule
        (m2, times the weight's unit for weighted rules).
    """
    n_rules = rule_lut.shape[0]
    out = np.zeros((n_units, n_rules), np.float64)
    poly = entries[0]
    if poly.size == 0 or n_rules == 0:
        return out
    bases = _entry_bases(lc, weights, row_area_m2, entries, rule_lut, rule_weight)
    for r in range(n_rules):
        out[:, r] = np.bincount(poly, weights=bases[r], minlength=n_units)[:n_units]
    return out


def allocate_block(lc: np.ndarray, weights: dict, row_area_m2: np.ndarray, entries, rule_lut: np.ndarray,
                   rule_weight: Sequence[str], coef: np.ndarray) -> np.ndarray:
    """Allocated value of every item in every pixel of one block.

    Parameters
    ----------
    lc, weights, row_area_m2, entries, rule_lut, rule_weight
        As :func:`prepass_block`.
    coef : float64 (n_units, n_rules, n_items)
        Counted value per unit of weighted area, ``Σ_k V_k / D_k`` over the rows k of that unit, rule
        and item (yuan/a per m2, or per m2 × weight unit); 0 where nothing is allocated.

    Returns
    -------
    float64 (n_items, h, w)
        Yuan/a per pixel, ``Σ_entries f·A·eligible·w·coef``; NaN where ``lc`` is nodata. Each pixel
        depends only on its own entries, so the result does not depend on how the grid is cut
        into blocks.
    """
    h, w = lc.shape
    n_units, n_rules, n_items = coef.shape
    out = np.zeros((n_items, h * w), np.float64)
    poly, rr, cc, _ = entries
    if poly.size and n_items:
        flat = rr.astype(np.int64) * w + cc
        bases = _entry_bases(lc, weights, row_area_m2, entries, rule_lut, rule_weight)
        used = coef.any(axis=0)  # (n_rules, n_items)
        for j in range(n_items):
            wj = None
            for r in range(n_rules):
                if not used[r, j]:
                    continue
                term = bases[r] * coef[poly, r, j]
                wj = term if wj is None else wj + term
            if wj is not None:
                out[j] = np.bincount(flat, weights=wj, minlength=h * w)
    out = out.reshape(n_items, h, w)
    out[:, lc < 0] = np.nan
    return out


def combine_block(items: np.ndarray, item_accounts: Sequence[str], gep_r: np.ndarray) -> dict[str, np.ndarray]:
    """Account totals and GEP of a block from its item values.

    Parameters
    ----------
    items : float64 (n_items, h, w)
        Output of :func:`allocate_block` (NaN = land-cover nodata).
    item_accounts : sequence of str, length n_items
        ``provisioning`` or ``cultural`` for each item.
    gep_r : float32 or float64 (h, w)
        GEP-R of the block, yuan/a per pixel (NaN = nodata).

    Returns
    -------
    dict with float64 (h, w) arrays ``provisioning_yuan``, ``cultural_yuan`` (NaN where land cover is
    nodata) and ``gep_yuan`` = GEP-R + EPV + ECV, GEP-R counted as 0 where it is NaN and the pixel
    carries EPV/ECV, NaN where all three are missing.
    """
    h, w = gep_r.shape
    nodata = np.zeros((h, w), bool)
    acc = {}
    for name in ACCOUNTS:
        sel = [j for j, a in enumerate(item_accounts) if a == name]
        s = np.zeros((h, w), np.float64)
        for j in sel:
            s = s + np.nan_to_num(items[j], nan=0.0)
        acc[name] = s
    if items.shape[0]:
        nodata = np.isnan(items[0])
    epv, ecv = acc["provisioning"], acc["cultural"]
    g = np.asarray(gep_r, np.float64)
    econ = epv + ecv
    gep = np.where(np.isnan(g), np.where(econ != 0, econ, np.nan), g + econ)
    gep[nodata] = np.nan
    epv = np.where(nodata, np.nan, epv)
    ecv = np.where(nodata, np.nan, ecv)
    return {"provisioning_yuan": epv, "cultural_yuan": ecv, "gep_yuan": gep}


def _read_tiles(source, tile: int):
    """Dask array (H, W) of ``source`` read in square windows of ``tile`` pixels (the pre-pass windows).

    Named by the tile size (GridSource.to_dask names its graph by source only, so two chunkings of one
    source must not share that name)."""
    import dask.array as da

    def _block(block_info=None):
        (ra, rb), (ca, cb) = block_info[None]["array-location"]
        return source.read(ra, rb, ca, cb)

    chunks = da.core.normalize_chunks((tile, tile), shape=source.grid.shape)
    return da.map_blocks(_block, chunks=chunks, dtype=source.dtype, meta=np.empty((0, 0), source.dtype),
                         name=f"econ-read-{source.name}-{tile}-{id(source):x}")


# --------------------------------------------------------------------------------------
# the accounts of a run
# --------------------------------------------------------------------------------------
@dataclass
class EconomicAccounts:
    """The statistics of a run, their allocation rules, and (after the pre-pass) the denominators.

    Build with :meth:`from_config`; run :meth:`compute_denominators` (pre-pass) before
    :meth:`compute_block` / :meth:`compute_dask`.
    """

    layer_name: str
    id_field: str
    unit_ids: list
    table_path: Path
    table_sha256: str
    exclude_outside_region: bool
    rows: pd.DataFrame
    rules: list[AllocationRule]
    items: list[tuple[str, str]]  # (account, item)
    rule_lut: np.ndarray  # uint8 (n_rules, n_codes)
    weight_specs: dict = field(default_factory=dict)  # name -> RasterInput
    denominators: np.ndarray | None = None  # float64 (n_units, n_rules)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_config(cls, cfg: "RunConfig", legend: "Legend", layers: dict[str, "Layer"]) -> "EconomicAccounts":
        """Validate ``cfg.economic_accounts`` and its statistics table.

        Raises
        ------
        ConfigError
            ``economic_accounts.layer`` names no configured layer.
        TableError
            The statistics table is missing or invalid (see :func:`load_statistics`).
        """
        ec = cfg.economic_accounts
        if ec.layer not in layers:
            raise ConfigError(f"economic_accounts.layer: no layer named '{ec.layer}' in layers "
                              f"(configured: {sorted(layers)})")
        layer = layers[ec.layer]
        path = cfg.resolve(ec.table)
        ids = layer.gdf[layer.config.id_field].tolist()
        rows = load_statistics(path, unit_ids=ids, layer_name=ec.layer, id_field=layer.config.id_field,
                               legend=legend, weight_names=list(ec.weight_rasters),
                               accounting_year=cfg.accounting_year)
        rows["counted_yuan"] = (rows["value_yuan"] * (1.0 - rows["outside_share"]) if ec.exclude_outside_region
                                else rows["value_yuan"])
        rows["outside_yuan"] = rows["value_yuan"] * rows["outside_share"]
        rules: list[AllocationRule] = []
        rule_of = []
        for rec in rows.itertuples():
            r = AllocationRule(rec.classes, rec.weight, rec.allocate_to)
            key = (r.classes, r.weight)
            idx = next((i for i, q in enumerate(rules) if (q.classes, q.weight) == key), None)
            if idx is None:
                rules.append(r)
                idx = len(rules) - 1
            rule_of.append(idx)
        rows["rule"] = rule_of
        items: list[tuple[str, str]] = []
        for acc in ACCOUNTS:  # provisioning items first, then cultural, each in order of appearance
            for it in rows.loc[rows["account"] == acc, "item"]:
                if (acc, it) not in items:
                    items.append((acc, it))
        rows["item_index"] = [items.index((a, i)) for a, i in zip(rows["account"], rows["item"])]
        n_codes = int(legend.codes.max()) + 2
        lut = np.zeros((len(rules), n_codes), np.uint8)
        for r, rule in enumerate(rules):
            lut[r, list(rule.classes)] = 1
        return cls(layer_name=ec.layer, id_field=layer.config.id_field, unit_ids=ids, table_path=path,
                   table_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                   exclude_outside_region=ec.exclude_outside_region, rows=rows, rules=rules, items=items,
                   rule_lut=lut, weight_specs=dict(ec.weight_rasters))

    # ---------------------------------------------------------------- outputs
    @property
    def n_units(self) -> int:
        return len(self.unit_ids)

    @property
    def rule_weight(self) -> list[str]:
        return [r.weight for r in self.rules]

    @property
    def weights_used(self) -> list[str]:
        """Names of the weight rasters some row uses (in rule order)."""
        out: list[str] = []
        for r in self.rules:
            if r.weight != "area" and r.weight not in out:
                out.append(r.weight)
        return out

    def item_key(self, account: str, item: str) -> str:
        return f"{ACCOUNTS[account]}_{item}_yuan"

    @property
    def item_keys(self) -> list[str]:
        return [self.item_key(a, i) for a, i in self.items]

    @property
    def zonal_keys(self) -> list[str]:
        """Columns added to every layer's table (summed per polygon): account totals, then items."""
        return ["provisioning_yuan", "cultural_yuan", *self.item_keys]

    @property
    def outputs(self) -> list[OutputSpec]:
        """The rasters appended to the run's outputs (the item ones are summed but not written)."""
        u = "yuan/a per pixel"
        outs: list[OutputSpec] = [
            EconomicOutputSpec("provisioning_yuan", "provisioning", "value", u,
                               "EPV: provisioning value from statistics, allocated to pixels, yuan per pixel per year",
                               rel_path="rasters/value/provisioning_yuan.tif"),
            EconomicOutputSpec("cultural_yuan", "cultural", "value", u,
                               "ECV: cultural value from statistics, allocated to pixels, yuan per pixel per year",
                               rel_path="rasters/value/cultural_yuan.tif"),
            EconomicOutputSpec("gep_yuan", "gep", "gep", u,
                               "GEP = EPV + GEP-R + ECV, yuan per pixel per year", rel_path="rasters/gep_yuan.tif"),
        ]
        for a, i in self.items:
            outs.append(EconomicOutputSpec(self.item_key(a, i), a, "economic_item", u,
                                           f"{a} item '{i}' allocated to pixels, yuan per pixel per year",
                                           write=False))
        return outs

    @property
    def output_keys(self) -> list[str]:
        return [o.key for o in self.outputs]

    @property
    def note(self) -> str:
        return ("EPV/ECV from statistics per unit of layers." + self.layer_name + ", allocated: " + ALLOCATION_RULE
                + ("; outside-region share subtracted (GB/T 46869-2025)" if self.exclude_outside_region
                   else "; outside-region share NOT subtracted"))

    # ---------------------------------------------------------------- pre-pass
    def dask_inputs(self, lc_source, weight_sources: dict, chunks, tile: int = PREPASS_TILE):
        """Land cover and the used weight rasters as dask arrays read in the pre-pass windows.

        They are read window by window exactly as in :meth:`compute_denominators` (windows of ``tile``
        pixels) and then rechunked to ``chunks``: a warped input read through other windows may differ
        slightly (GDAL resampling at window edges), and the allocation is conservative only if the main
        pass sees the very values the denominators were summed from.

        Returns
        -------
        (lc, weights) : dask array int32 (H, W), dict of name -> dask array float32 (H, W)
        """
        lc = _read_tiles(lc_source, tile).rechunk(chunks)
        w = {n: _read_tiles(weight_sources[f"econ_weight.{n}"], tile).rechunk(chunks) for n in self.weights_used}
        return lc, w

    def open_weight_sources(self, cfg: "RunConfig", grid: "RefGrid") -> dict:
        """Lazy sources of every configured weight raster, keyed ``econ_weight.<name>``."""
        from ..grid.io_read import GridSource

        out = {}
        for name, spec in self.weight_specs.items():
            key = f"economic_accounts.weight_rasters.{name}"
            out[f"econ_weight.{name}"] = GridSource(key, cfg.resolve_many(spec.path, f"{key}.path"), grid,
                                                    "continuous", band=spec.band, nodata=spec.nodata,
                                                    scale=spec.scale, resampling=spec.resampling)
        return out

    def compute_denominators(self, lc_source, weight_sources: dict, index: "CoverageIndex",
                             tile: int = PREPASS_TILE) -> np.ndarray:
        """Pre-pass: read land cover and the used weight rasters window by window, sum the denominators.

        Parameters
        ----------
        lc_source : GridSource
            Land cover on the reference grid (categorical).
        weight_sources : dict
            ``econ_weight.<name>`` -> GridSource (from :meth:`open_weight_sources`).
        index : CoverageIndex
            Coverage of the allocation layer.
        tile : int
            Window size; fixed (:data:`PREPASS_TILE`) so the sums do not depend on ``output.chunk_size``.

        Returns
        -------
        float64 (n_units, n_rules)
            Also stored in :attr:`denominators`.
        """
        grid = index.grid
        D = np.zeros((self.n_units, len(self.rules)), np.float64)
        for r0, r1, c0, c1 in grid.block_windows(tile):
            ent = index.entries(r0, r1, c0, c1)
            if ent[0].size == 0:
                continue
            lc = lc_source.read(r0, r1, c0, c1)
            w = {n: weight_sources[f"econ_weight.{n}"].read(r0, r1, c0, c1) for n in self.weights_used}
            D += prepass_block(lc, w, grid.row_pixel_area_m2[r0:r1], ent, self.rule_lut, self.rule_weight,
                               self.n_units)
        self.denominators = D
        return D

    def coefficients(self) -> np.ndarray:
        """float64 (n_units, n_rules, n_items): Σ V_k / D_k of the rows of each unit, rule and item (0 if D_k = 0)."""
        if self.denominators is None:
            raise RuntimeError("EconomicAccounts: run compute_denominators (the pre-pass) first")
        C = np.zeros((self.n_units, len(self.rules), len(self.items)), np.float64)
        for rec in self.rows.itertuples():
            d = self.denominators[rec.unit, rec.rule]
            if d > 0:
                C[rec.unit, rec.rule, rec.item_index] += rec.counted_yuan / d
        return C

    # ---------------------------------------------------------------- main pass
    def compute_block(self, lc: np.ndarray, weights: dict, row_area_m2: np.ndarray, entries, gep_r: np.ndarray,
                      coef: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Every economic output of one block (float32 arrays, keys :attr:`output_keys`).

        ``lc`` int32 (h, w), ``weights`` name -> float32 (h, w), ``row_area_m2`` float64 (h,), ``entries``
        the allocation layer's coverage entries of the block, ``gep_r`` GEP-R (h, w) yuan/a per pixel.
        """
        coef = self.coefficients() if coef is None else coef
        items = allocate_block(lc, weights, row_area_m2, entries, self.rule_lut, self.rule_weight, coef)
        res = combine_block(items, [a for a, _ in self.items], gep_r)
        for j, k in enumerate(self.item_keys):
            res[k] = items[j]
        return {k: res[k].astype(np.float32) for k in self.output_keys}

    def compute_dask(self, stacked, gep_r_pos: int, lc, weights: dict, index: "CoverageIndex",
                     row_area_m2: np.ndarray):
        """Append the economic outputs to the services' stacked dask array.

        Parameters
        ----------
        stacked : dask array float32 (n, H, W)
            Service outputs (chunks along rows/cols match ``lc``).
        gep_r_pos : int
            Position of ``gep_r_yuan`` in ``stacked``.
        lc : dask array int32 (H, W)
        weights : dict of name -> dask array float32 (H, W)
            The weight rasters of :attr:`weights_used`.
        index : CoverageIndex
            Coverage of the allocation layer.
        row_area_m2 : float64 (H,)

        Returns
        -------
        dask array float32 (n + len(output_keys), H, W)
        """
        import dask.array as da

        coef = self.coefficients()
        names = self.weights_used
        okeys = self.output_keys
        n_in = stacked.shape[0]

        def _fn(block, lcb, *wbs, block_info=None):
            _, (r0, r1), (c0, c1) = block_info[None]["array-location"]
            ent = index.entries(r0, r1, c0, c1)
            res = self.compute_block(lcb, dict(zip(names, wbs)), row_area_m2[r0:r1], ent, block[gep_r_pos], coef)
            return np.concatenate([block, np.stack([res[k] for k in okeys])])

        return da.map_blocks(_fn, stacked, lc, *[weights[n] for n in names], dtype=np.float32,
                             chunks=((n_in + len(okeys),),) + lc.chunks, meta=np.empty((0, 0, 0), np.float32))

    # ---------------------------------------------------------------- tables and manifest
    def unit_values(self, allocated_only: bool = False) -> np.ndarray:
        """float64 (n_units, len(zonal_keys)): counted statistics per unit (provisioning, cultural, items).

        ``allocated_only``: leave out the rows that could not be located (needs the pre-pass)."""
        out = np.zeros((self.n_units, len(self.zonal_keys)), np.float64)
        for rec in self.rows.itertuples():
            if allocated_only and not self.denominators[rec.unit, rec.rule] > 0:
                continue
            out[rec.unit, 0 if rec.account == "provisioning" else 1] += rec.counted_yuan
            out[rec.unit, 2 + rec.item_index] += rec.counted_yuan
        return out

    def unallocated(self) -> list[dict]:
        """Rows whose value could not be located (D_k = 0), with the reason."""
        if self.denominators is None:
            raise RuntimeError("EconomicAccounts: run compute_denominators (the pre-pass) first")
        out = []
        for rec in self.rows.itertuples():
            if self.denominators[rec.unit, rec.rule] > 0:
                continue
            w = "" if rec.weight == "area" else f" with positive weight '{rec.weight}'"
            out.append({"unit_id": rec.unit_id, "account": rec.account, "item": rec.item, "row": rec.row,
                        "counted_yuan": float(rec.counted_yuan), "allocate_to": rec.allocate_to,
                        "reason": f"no pixel of class(es) {list(rec.classes)}{w} inside unit {rec.unit_id} on the "
                                  "grid; counted in the unit's table row, in no raster"})
        return out

    def warn_unallocated(self) -> None:
        for u in self.unallocated():
            log.warning("economic_accounts: %s '%s' of %s %s (%.6g yuan, table row %d) cannot be located: %s",
                        u["account"], u["item"], self.layer_name, u["unit_id"], u["counted_yuan"], u["row"],
                        u["reason"])

    def plot_values(self) -> dict[str, float]:
        """Bars for the value chart: EPV and ECV totals (counted statistics, yuan/a); labels end in
        ``[EX]`` when some statistics are illustrative."""
        v = self.unit_values().sum(axis=0)
        mark = " [EX]" if self.is_illustrative() else ""
        return {f"Provisioning (EPV){mark}": float(v[0]), f"Cultural (ECV){mark}": float(v[1])}

    def illustrative_rows(self) -> int:
        """Number of statistics rows whose source says ``[EX]`` or ``ILLUSTRATIVE``."""
        return int(self.rows["source"].str.contains(r"\[EX\]|ILLUSTRATIVE", case=False, regex=True).sum())

    def is_illustrative(self) -> bool:
        return self.illustrative_rows() > 0

    def manifest(self, raster_totals: dict, layer_rules: dict, allocation_layer_raster_sums: np.ndarray | None,
                 covered_area_m2: np.ndarray | None = None, polygon_area_km2: np.ndarray | None = None) -> dict:
        """The ``economic_accounts`` section of the manifest.

        Parameters
        ----------
        raster_totals : dict
            Whole-grid sums of the ``provisioning_yuan`` and ``cultural_yuan`` rasters (yuan/a).
        layer_rules : dict
            Layer name -> how its EPV/ECV columns were obtained.
        allocation_layer_raster_sums : float64 (n_units, 2), optional
            Coverage-weighted sums of the provisioning and cultural rasters over the allocation layer.
        covered_area_m2, polygon_area_km2 : float64 (n_units,), optional
            Area of each unit on the grid and its polygon area (to flag units partly outside the grid).
        """
        rows = self.rows
        D = self.denominators
        rules_rec = []
        for rec in rows.itertuples():
            d = float(D[rec.unit, rec.rule]) if D is not None else None
            rules_rec.append({
                "row": rec.row, "unit_id": rec.unit_id, "account": rec.account, "item": rec.item,
                "value_yuan": float(rec.value_yuan), "year": int(rec.year), "source": rec.source,
                "allocate_to": rec.allocate_to, "classes": list(rec.classes), "weight": rec.weight,
                "outside_share": float(rec.outside_share), "outside_yuan": float(rec.outside_yuan),
                "counted_yuan": float(rec.counted_yuan), "column": self.item_key(rec.account, rec.item),
                "denominator": d, "denominator_unit": "m2" if rec.weight == "area" else f"m2 x {rec.weight}",
                "allocated": bool(d is not None and d > 0)})
        unalloc = self.unallocated()
        tot = {acc: float(rows.loc[rows["account"] == acc, "counted_yuan"].sum()) for acc in ACCOUNTS}
        un = {acc: float(sum(u["counted_yuan"] for u in unalloc if u["account"] == acc)) for acc in ACCOUNTS}
        check = {}
        for acc, key in (("provisioning", "provisioning_yuan"), ("cultural", "cultural_yuan")):
            rt = float(raster_totals.get(key, 0.0))
            expect = tot[acc] - un[acc]
            rel = abs(rt - expect) / max(abs(expect), 1e-300) if (rt or expect) else 0.0
            check[key] = {"raster_total_yuan": rt, "statistics_minus_unallocated_yuan": expect, "rel_diff": rel,
                          "ok": bool(rel <= CONSERVATION_RTOL)}
            if rel > CONSERVATION_RTOL:
                log.warning("economic_accounts: the %s raster sums to %.9g yuan but the located statistics are "
                            "%.9g yuan (relative difference %.3g)", key, rt, expect, rel)
        sec = {
            "table": {"path": str(self.table_path), "sha256": self.table_sha256, "rows": int(len(rows)),
                      "columns": list(COLUMNS), "sources": sorted(set(rows["source"])),
                      "illustrative": self.is_illustrative()},
            "layer": self.layer_name,
            "id_field": self.id_field,
            "exclude_outside_region": self.exclude_outside_region,
            "exclusion_basis": "GB/T 46869-2025: GEP minus the eco-product value that comes from outside the region "
                               "[V, release news; methods note 1.1, 6.10]",
            "allocation_rule": ALLOCATION_RULE,
            "table_rule": TABLE_RULE,
            "unallocated_rule": UNALLOCATED_RULE,
            "prepass_tile_px": PREPASS_TILE,
            "rules": rules_rec,
            "weight_rasters": {k: v.model_dump(mode="json") for k, v in self.weight_specs.items()},
            "layer_rules": layer_rules,
            "items": [{"account": a, "item": i, "column": self.item_key(a, i)} for a, i in self.items],
            "totals": {"provisioning_yuan": tot["provisioning"], "cultural_yuan": tot["cultural"],
                       "value_before_exclusion_yuan": float(rows["value_yuan"].sum()),
                       "outside_share_yuan": float(rows["outside_yuan"].sum()),
                       "outside_share_subtracted": self.exclude_outside_region,
                       "unallocated_yuan": un["provisioning"] + un["cultural"]},
            "unallocated": unalloc,
            "conservation_check": check,
        }
        if allocation_layer_raster_sums is not None:
            diff = self.unit_values(allocated_only=True)[:, :2] - allocation_layer_raster_sums
            sec["allocation_layer_raster_check"] = {
                "note": "table rows of the allocation layer are its statistics; the coverage-weighted sums of the "
                        "EPV/ECV rasters over its polygons differ from the allocated statistics (unallocated value "
                        "left out) by the value in pixels cut by a unit boundary: a raster holds one amount per "
                        "pixel, which the zonal sum spreads evenly over the pixel",
                "max_abs_unit_difference_yuan": float(np.abs(diff).max()) if diff.size else 0.0,
                "total_difference_yuan": float(diff.sum())}
        if covered_area_m2 is not None and polygon_area_km2 is not None:
            part = []
            for u in range(self.n_units):
                pa = float(polygon_area_km2[u])
                share = float(covered_area_m2[u]) / 1e6 / pa if pa > 0 else 0.0
                if share < 0.999 and (rows["unit"] == u).any():
                    part.append({"unit_id": _norm_id(self.unit_ids[u]), "share_on_grid": share})
            sec["units_partly_outside_grid"] = part
            for p in part:
                log.warning("economic_accounts: unit %s of %s lies %.1f%% outside the grid; its whole statistics "
                            "are placed on its part inside the grid", p["unit_id"], self.layer_name,
                            100 * (1 - p["share_on_grid"]))
        return sec
