"""Multi-year GEP account: several finished runs of one region, one per accounting year, at current and at
comparable (constant) prices.

``gep series RUN_DIR... -o OUT`` (or :func:`series_account`) holds the runs together and writes, per unit of
every layer and for the whole region, GEP, GEP-R, EPV, ECV and every service, in physical units and in value:

* **current prices**: each year's physical quantities valued at its own prices (the run's prices, moved to
  its accounting year when the run had ``prices.price_index``). Every regulating-service value of the engine
  is linear in its prices, V = Σ_j Q_j × u_j with unit values u_j = Σ_k c_jk × p_k (manifest ``valuation``:
  the physical raster, the price keys and the coefficients, e.g. λ/ρ for dredging in soil retention), so the
  series recomputes V_t = Σ_j Q_j,t u_j(p_t) from the tables' physical columns; this equals the run's value
  column to the float32 rounding of its rasters (checked: more than 1e-5 relative is an error; the largest
  difference is recorded in ``series_manifest.json``, 2.2e-8 on the sample);
* **comparable prices of a base year b** (``*_comparable``): the physical quantities of year t valued at the
  base year's prices, V_t(b) = Σ_j Q_j,t u_j(p_b); identical quantities give identical comparable values.
  EPV and ECV have no physical quantity in the engine (they are statistics in yuan): they are moved by the
  price index only, V_t(b) = V_t × I_b / I_t (``--price-index``, a CSV ``year,index``, or the runs'
  ``prices.price_index``). GEP-R(b) = Σ services(b) and GEP(b) = GEP-R(b) + EPV(b) + ECV(b);
* **growth at comparable prices**: ``*_yoy_pct`` = 100 (V_t(b) − V_{t−1}(b)) / |V_{t−1}(b)| and ``*_cum_pct`` =
  100 (V_t(b) − V_b) / |V_b| (NaN where the denominator is 0);
* **the split of a value change** into a quantity and a price part, both exact by construction:
  year on year, ΔV = V_t − V_{t−1} = [V_t(t−1) − V_{t−1}] (``*_change_quantity``: this year's quantities at
  last year's prices, a Laspeyres volume change) + [V_t − V_t(t−1)] (``*_change_price``: a Paasche price
  change); against the base year, V_t − V_b = [V_t(b) − V_b] (``*_cum_change_quantity``) + [V_t − V_t(b)]
  (``*_cum_change_price``).

Comparability: the runs must share the grid, the services, the service method settings
(``config.services``), the method parameters (manifest ``parameters``), the legend's per-class parameters,
the carbon method and the layers' units and polygons; otherwise :class:`ConfigError` names every difference
with a code (e.g. ``parameters.soil_retention.bulk_density``) that ``accept=[code]`` (``--accept CODE``, or
``all``) lets through; accepted differences are recorded in ``series_manifest.json``. Prices may differ: that
is what comparable prices take out. Land cover, climate inputs, scenario edits, statistics tables and the
accounting year are data.

Sources: the comparable-price principle (physical quantity × base-year price) is the one used by the Chinese
GEP accounting practice for growth assessment (Sanming pilot plan: "GEP +3 % over 2025"; the methods note
§1.3 on price bases); the engine's formulas above are its own statement of it, no published formula for the
quantity/price split was read (the split is the textbook Laspeyres-volume / Paasche-price decomposition).
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .._version import __version__
from ..errors import ConfigError, InputError
from .change import (RunInfo, _flatten, _records, check_same_grid, economic_columns, growth_pct,
                     input_base_dir, load_run)

log = logging.getLogger("gep_raster")

__all__ = ["SeriesRuns", "load_series", "comparability_differences", "revalue", "account_frame", "series_table",
           "series_account", "register", "REGION_ID"]

#: id of the whole-region row (``tables/region_series.csv``)
REGION_ID = "region"
#: the columns derived from every value column V (in this order after V)
VALUE_DERIVED = ("comparable", "yoy_pct", "cum_pct", "change", "change_quantity", "change_price", "cum_change",
                 "cum_change_quantity", "cum_change_price")
PHYSICAL_DERIVED = ("yoy_pct", "cum_pct")
#: largest relative difference allowed between a run's value column and its physical columns x valuation
#: (float32 rasters summed per unit: measured at most 2.2e-8 on the sample's township table)
REVALUE_TOLERANCE = 1e-5
#: the definitions written in ``series_manifest.json``
DEFINITIONS = {
    "current": "V_t = sum_j Q_j,t u_j(p_t) for a regulating service (u_j = sum_k c_jk p_k, manifest "
               "valuation; equal to the run's value column to float32 rounding, see revalue_check); EPV/ECV "
               "as in the run's table",
    "comparable": "V_t(b) = sum_j Q_j,t u_j(p_b) for a regulating service; EPV/ECV: V_t * I_b / I_t; GEP-R "
                  "and GEP: sums of their parts at base-year prices",
    "yoy_pct": "100 (V_t(b) - V_t-1(b)) / |V_t-1(b)|, comparable prices",
    "cum_pct": "100 (V_t(b) - V_b) / |V_b|, comparable prices",
    "change": "V_t - V_t-1 at current prices = change_quantity + change_price",
    "change_quantity": "V_t(t-1) - V_t-1: this year's quantities at last year's prices (Laspeyres volume)",
    "change_price": "V_t - V_t(t-1) (Paasche price change)",
    "cum_change": "V_t - V_b = cum_change_quantity (V_t(b) - V_b) + cum_change_price (V_t - V_t(b))",
    "physical yoy_pct / cum_pct": "growth of the physical quantity against the previous / base year",
    "source": "engine's own statement of the comparable-price principle (physical quantity x base-year "
              "price); no published formula for the quantity/price split was read",
}
#: run configuration sections whose differences change a method (not data)
_METHOD_CONFIG = ("services.", "inputs.carbon.method", "inputs.carbon.unit", "inputs.carbon.years",
                  "inputs.carbon.pool_columns", "economic_accounts.exclude_outside_region",
                  "economic_accounts.layer")


@dataclass
class SeriesRuns:
    """The runs of a series, sorted by accounting year.

    Attributes
    ----------
    runs : list of RunInfo
    years : list of int
    prices : dict
        year -> {price key: value (yuan of that year per unit)} from each manifest's ``prices``.
    valuation : dict
        year -> manifest ``valuation`` (service -> terms).
    """

    runs: list
    years: list
    prices: dict
    valuation: dict

    def run(self, year: int) -> RunInfo:
        return self.runs[self.years.index(year)]


def load_series(paths: Sequence) -> SeriesRuns:
    """Open the finished runs of a series and sort them by accounting year.

    Parameters
    ----------
    paths : sequence of path-like
        Two or more output folders of ``gep run``.

    Returns
    -------
    SeriesRuns

    Raises
    ------
    InputError
        A folder is not a finished run (see :func:`gep_raster.analysis.change.load_run`), or its manifest has
        no ``valuation`` (made before gep_raster 0.x recorded it: rerun it).
    ConfigError
        Fewer than two runs, a run without ``accounting_year``, or two runs of the same year.
    """
    if len(paths) < 2:
        raise ConfigError(f"gep series needs two or more runs (accounting years), got {len(paths)}")
    runs = [load_run(p) for p in paths]
    seen = {}
    for r in runs:
        y = r.manifest.get("accounting_year")
        if y is None:
            raise ConfigError(f"run {r.path}: its manifest has no accounting_year; set `accounting_year` in the run's "
                              "config so that the series knows its year")
        if y in seen:
            raise ConfigError(f"runs {seen[y]} and {r.path} have the same accounting_year {y}; a series holds one run "
                              "per year")
        seen[y] = r.path
        if not r.manifest.get("valuation"):
            raise InputError(f"{r.path / 'manifest.json'}: no 'valuation' entry (how each value raster is made from "
                             "its physical rasters and prices); the run was made by an older gep_raster: rerun it")
    runs.sort(key=lambda r: r.manifest["accounting_year"])
    years = [int(r.manifest["accounting_year"]) for r in runs]
    return SeriesRuns(runs, years, {y: _records(r.manifest, "prices") for y, r in zip(years, runs)},
                      {y: r.manifest["valuation"] for y, r in zip(years, runs)})


# --------------------------------------------------------------------------------------
# comparability
# --------------------------------------------------------------------------------------
def _legend_records(m: dict) -> dict:
    rows = ((m.get("legend") or {}).get("table")) or []
    out = {}
    for row in rows:
        code = row.get("code", row.get("index"))
        for k, v in row.items():
            if k not in ("code", "index", "name", "name_zh", "notes", "source"):
                out[f"{code}.{k}"] = None if isinstance(v, float) and np.isnan(v) else v
    return out


def comparability_differences(s: SeriesRuns) -> list[dict]:
    """What differs between the runs of a series in a way that breaks comparability.

    Parameters
    ----------
    s : SeriesRuns

    Returns
    -------
    list of dict
        ``{"code": ..., "what": ...}``, one per difference against the first run (codes: ``grid``,
        ``services``, ``config.<key>`` for a method setting, ``parameters.<key>``, ``legend.<code>.<column>``,
        ``valuation.<service>``, ``layers.<name>.units``, ``layers.<name>.polygons``, ``layers.<name>.missing``).
        Empty when the runs are comparable. Never raises.
    """
    out = _price_basis_differences(s)
    a = s.runs[0]
    fa = _flatten(a.manifest.get("config") or {})
    la = _legend_records(a.manifest)
    pa = _records(a.manifest, "parameters")
    for b in s.runs[1:]:
        tag = f"{a.manifest['accounting_year']} ({a.path}) vs {b.manifest['accounting_year']} ({b.path})"
        try:
            check_same_grid(a, b)
        except Exception as exc:
            out.append({"code": "grid", "what": f"{tag}: {exc}"})
        if set(a.value_keys) != set(b.value_keys):
            out.append({"code": "services", "what": f"{tag}: services differ (only in the first: "
                        f"{sorted(set(a.value_keys) - set(b.value_keys))}, only in the other: "
                        f"{sorted(set(b.value_keys) - set(a.value_keys))})"})
        fb = _flatten(b.manifest.get("config") or {})
        for k in sorted(set(fa) | set(fb)):
            if k.startswith(_METHOD_CONFIG) and fa.get(k) != fb.get(k):
                out.append({"code": f"config.{k}", "what": f"{tag}: method setting {k}: {fa.get(k)!r} vs {fb.get(k)!r}"})
        pb = _records(b.manifest, "parameters")
        for k in sorted(set(pa) | set(pb), key=str):
            if pa.get(k) != pb.get(k):
                out.append({"code": f"parameters.{k}", "what": f"{tag}: parameter {k}: {pa.get(k)} vs {pb.get(k)}"})
        lb = _legend_records(b.manifest)
        for k in sorted(set(la) | set(lb)):
            if la.get(k) != lb.get(k):
                out.append({"code": f"legend.{k}", "what": f"{tag}: legend class {k.split('.')[0]}, column "
                            f"{k.split('.', 1)[1]}: {la.get(k)!r} vs {lb.get(k)!r}"})
        va, vb = a.manifest.get("valuation") or {}, b.manifest.get("valuation") or {}
        for svc in sorted(set(va) & set(vb)):
            ka = [(t["physical"], sorted(t["price_coefficients"])) for t in va[svc]]
            kb = [(t["physical"], sorted(t["price_coefficients"])) for t in vb[svc]]
            if ka != kb:
                out.append({"code": f"valuation.{svc}", "what": f"{tag}: valuation of {svc} differs: {ka} vs {kb}"})
        out.extend(_layer_differences(a, b, tag))
    return out


def _price_basis_differences(s: SeriesRuns) -> list[dict]:
    """Runs whose prices are not in their accounting year's yuan (no ``prices.price_index``: each price stays in
    the yuan of its ``price_year``), so "prices of year t" would not be year t's prices."""
    out = []
    for y, r in zip(s.years, s.runs):
        off = sorted({int(p.get("value_year") or p.get("price_year")) for p in (r.manifest.get("prices") or [])
                      if (p.get("value_year") or p.get("price_year")) not in (None, y)})
        if off:
            out.append({"code": "prices.basis", "what": f"run {y} ({r.path}): its prices are in {off} yuan, not in "
                        f"{y} yuan (the run has no prices.price_index), so its values are not at {y} prices; rerun "
                        "with prices.price_index, or accept"})
    return out


def _layer_differences(a: RunInfo, b: RunInfo, tag: str) -> list[dict]:
    out = []
    for name in sorted(set(a.layers) | set(b.layers)):
        if name not in a.layers or name not in b.layers:
            out.append({"code": f"layers.{name}.missing", "what": f"{tag}: layer '{name}' has a table in one run only"})
            continue
        ia, ib = a.layers[name]["id_field"], b.layers[name]["id_field"]
        if ia != ib:
            out.append({"code": f"layers.{name}.units", "what": f"{tag}: layer '{name}' id field {ia!r} vs {ib!r}"})
            continue
        ta, tb = a.read_table(name), b.read_table(name)
        ids_a, ids_b = set(ta[ia]), set(tb[ib])
        if ids_a != ids_b:
            out.append({"code": f"layers.{name}.units", "what": f"{tag}: layer '{name}' units differ (only in the first: "
                        f"{sorted(ids_a - ids_b)[:10]}, only in the other: {sorted(ids_b - ids_a)[:10]})"})
            continue
        if "area_km2" in ta and "area_km2" in tb:
            m = ta[[ia, "area_km2"]].merge(tb[[ib, "area_km2"]], on=ia)
            bad = m[~np.isclose(m["area_km2_x"], m["area_km2_y"], rtol=1e-6, atol=1e-9)]
            if len(bad):
                out.append({"code": f"layers.{name}.polygons", "what": f"{tag}: layer '{name}': {len(bad)} polygon(s) "
                            f"have another area (e.g. {bad.iloc[0, 0]}: {bad.iloc[0, 1]:.6f} vs {bad.iloc[0, 2]:.6f} km2)"})
    return out


def _check_accepted(diffs: list[dict], accept: Sequence[str]) -> tuple[list, list]:
    """Split the differences into accepted and refused ones (``accept``: codes, prefixes ending in '.', or 'all')."""
    acc = set(accept or ())
    ok, bad = [], []
    for d in diffs:
        code = d["code"]
        hit = "all" in acc or code in acc or any(code.startswith(p.rstrip("*")) for p in acc if p.endswith((".", "*")))
        (ok if hit else bad).append(d)
    return ok, bad


# --------------------------------------------------------------------------------------
# valuation at other prices
# --------------------------------------------------------------------------------------
def revalue(quantities, terms: list[dict], prices: dict) -> np.ndarray:
    """Value of one service from its physical quantities at a given price set.

    Parameters
    ----------
    quantities : mapping
        physical key -> float64 array (n,) of physical quantities (e.g. t/a of each pollutant per unit).
    terms : list of dict
        The service's manifest ``valuation`` terms: ``physical``, ``price_coefficients`` {price key: c}.
    prices : dict
        price key -> unit price (yuan per unit of the price's quantity).

    Returns
    -------
    numpy.ndarray, float64 (n,)
        Σ_terms Q × Σ_k c_k × p_k, yuan/a.

    Raises
    ------
    ConfigError
        A price key of the terms is missing from ``prices``, or a physical quantity is missing.
    """
    total = 0.0
    for t in terms:
        if t["physical"] not in quantities:
            raise ConfigError(f"valuation needs the physical quantity {t['physical']}, which the table lacks")
        uv = 0.0
        for k, c in t["price_coefficients"].items():
            if k not in prices:
                raise ConfigError(f"price {k} is not among the prices of the base year's run")
            uv += float(c) * float(prices[k])
        total = total + np.asarray(quantities[t["physical"]], dtype=np.float64) * uv
    return np.asarray(total, dtype=np.float64)


# --------------------------------------------------------------------------------------
# the account of one set of units (a layer, or the region)
# --------------------------------------------------------------------------------------
def account_frame(r: RunInfo, layer: str | None):
    """One year's account of a layer (its table) or of the region (manifest totals) with the columns a series uses.

    Returns
    -------
    (pandas.DataFrame, str, str)
        The frame indexed by unit id (str), the id field and the name field (``unit_id``/``unit_name`` and one row
        :data:`REGION_ID` for the region).
    """
    import pandas as pd

    if layer is None:
        tot = {k: v.get("sum") for k, v in (r.manifest.get("totals") or {}).items()}
        df = pd.DataFrame([{"unit_id": REGION_ID, "unit_name": r.manifest.get("run_name") or REGION_ID, **tot}])
        return df.set_index("unit_id", drop=False), "unit_id", "unit_name"
    info = r.layers[layer]
    t = r.read_table(layer)
    return t.set_index(info["id_field"], drop=False), info["id_field"], info["name_field"]


def _columns(s: SeriesRuns, frame) -> tuple[list[str], list[str], dict]:
    """Value columns (GEP, GEP-R, EPV/ECV totals and items, services) and physical columns of a frame."""
    r0 = s.runs[0]
    services = r0.services
    econ = economic_columns(frame.columns)
    values = ([c for c in ("gep_yuan", "gep_r_yuan") if c in frame.columns] + econ["epv"] + econ["ecv"]
              + econ["epv_items"] + econ["ecv_items"] + [f"{svc}_yuan" for svc in services if f"{svc}_yuan" in frame])
    phys = [k for k in r0.physical_keys if k in frame.columns]
    return values, phys, econ


def series_table(s: SeriesRuns, layer: str | None, base_year: int, index=None):
    """The long multi-year table of a layer (or the region): one row per unit and year.

    Parameters
    ----------
    s : SeriesRuns
    layer : str or None
        A layer of the runs, or None for the whole region (manifest totals).
    base_year : int
        Year whose prices are the comparable prices; one of ``s.years``.
    index : PriceIndex or None
        Price index for EPV/ECV (no physical quantity); None: they are kept at current prices
        (the caller records it).

    Returns
    -------
    (pandas.DataFrame, dict)
        The table (columns: id, name, ``year``, ``area_km2`` where the layer has it, then per value column V:
        V and V_<d> for d in :data:`VALUE_DERIVED`; per physical column P: P, P_yoy_pct, P_cum_pct) and the
        units of its columns.

    Raises
    ------
    ConfigError
        The base year is not a year of the series; a price or a physical quantity needed by the revaluation
        is missing.
    """
    import pandas as pd

    if base_year not in s.years:
        raise ConfigError(f"base year {base_year} is not an accounting year of the series ({s.years})")
    frames = {y: account_frame(r, layer) for y, r in zip(s.years, s.runs)}
    f0, idf, nmf = frames[s.years[0]]
    ids = list(f0.index)
    values, phys, econ = _columns(s, f0)
    econ_cols = set(econ["epv"] + econ["ecv"] + econ["epv_items"] + econ["ecv_items"])
    services = s.runs[0].services
    n = len(ids)

    def col(y, c):
        f = frames[y][0]
        return f.loc[ids, c].to_numpy(dtype=np.float64) if c in f.columns else np.full(n, np.nan)

    def at_prices(y, price_year):
        """year y's values at the prices of price_year: {value column: float64 array (n,)}."""
        out = {}
        q = {p: col(y, p) for p in phys}
        for svc in services:
            out[f"{svc}_yuan"] = revalue(q, s.valuation[y][svc], s.prices[price_year])
        f = 1.0 if (price_year == y or index is None) else index.factor(y, price_year, needed_for="EPV/ECV")
        for c in econ_cols:
            out[c] = col(y, c) * f
        gep_r = sum(out[f"{svc}_yuan"] for svc in services)
        if "gep_r_yuan" in values:
            out["gep_r_yuan"] = gep_r
        if "gep_yuan" in values:
            out["gep_yuan"] = gep_r + sum(out[c] for c in (*econ["epv"][:1], *econ["ecv"][:1]))
        return out

    check = _revalue_check(s, services, col, at_prices)

    base = at_prices(base_year, base_year)
    rows = []
    prev_c = prev_v = None
    for i, y in enumerate(s.years):
        fr = frames[y][0]
        cur = at_prices(y, y)
        comp = at_prices(y, base_year)
        prevp = at_prices(y, s.years[i - 1]) if i else None
        d = {idf: ids, nmf: fr.loc[ids, nmf].astype(str).to_numpy(), "year": np.full(n, y)}
        if "area_km2" in fr.columns:
            d["area_km2"] = col(y, "area_km2")
        for c in values:
            v, vc, vb = cur[c], comp[c], base[c]
            d[c] = v
            d[f"{c}_comparable"] = vc
            d[f"{c}_yoy_pct"] = growth_pct(prev_c[c], vc) if i else np.full(n, np.nan)
            d[f"{c}_cum_pct"] = growth_pct(vb, vc)
            d[f"{c}_change"] = v - prev_v[c] if i else np.full(n, np.nan)
            d[f"{c}_change_quantity"] = prevp[c] - prev_v[c] if i else np.full(n, np.nan)
            d[f"{c}_change_price"] = v - prevp[c] if i else np.full(n, np.nan)
            d[f"{c}_cum_change"] = v - vb
            d[f"{c}_cum_change_quantity"] = vc - vb
            d[f"{c}_cum_change_price"] = v - vc
        for p in phys:
            q = col(y, p)
            d[p] = q
            d[f"{p}_yoy_pct"] = growth_pct(col(s.years[i - 1], p), q) if i else np.full(n, np.nan)
            d[f"{p}_cum_pct"] = growth_pct(col(base_year, p), q)
        rows.append(pd.DataFrame(d))
        prev_c, prev_v = comp, cur
    tab = pd.concat(rows, ignore_index=True).sort_values([idf, "year"], kind="stable").reset_index(drop=True)
    units = _units(s, values, phys, base_year)
    tab.attrs["revalue_check"] = check
    return tab, units


def _revalue_check(s: SeriesRuns, services, col, at_prices) -> dict:
    """Largest relative difference, per ``year.column``, between the run's value column and its physical
    columns x valuation; :class:`InputError` above :data:`REVALUE_TOLERANCE`."""
    check = {}
    for y in s.years:
        cur = at_prices(y, y)
        for c in [f"{svc}_yuan" for svc in services] + ["gep_r_yuan"]:
            if c in cur:
                t = col(y, c)
                with np.errstate(divide="ignore", invalid="ignore"):
                    rel = np.where(t != 0, np.abs(cur[c] - t) / np.abs(t), np.abs(cur[c] - t))
                check[f"{y}.{c}"] = float(np.nanmax(rel)) if rel.size else 0.0
    worst = max(check, key=check.get) if check else None
    if worst is not None and check[worst] > REVALUE_TOLERANCE:
        y, c = worst.split(".", 1)
        raise InputError(f"run {y} ({s.run(int(y)).path}): its physical quantities x the manifest's valuation give "
                         f"{c} {check[worst]:.2e} (relative) away from the table's {c}; the valuation record does "
                         "not describe the table (edited table or manifest?)")
    return check


def _units(s: SeriesRuns, values, phys, base_year) -> dict:
    r0 = s.runs[0]
    u = {"year": "accounting year", "area_km2": "km2"}
    for c in values:
        u[c] = "yuan/a (prices of the year)"
        u[f"{c}_comparable"] = f"yuan/a ({base_year} prices)"
        for d in VALUE_DERIVED[1:]:
            u[f"{c}_{d}"] = "%" if d.endswith("pct") else ("yuan/a" if "change" in d else "")
    for p in phys:
        u[p] = r0.rasters[p]["unit"].replace(" per pixel", "") if p in r0.rasters else ""
        u[f"{p}_yoy_pct"] = u[f"{p}_cum_pct"] = "%"
    return u


# --------------------------------------------------------------------------------------
# price index for EPV / ECV
# --------------------------------------------------------------------------------------
def _price_index(s: SeriesRuns, price_index, needed: bool, accepted: list):
    """The price index for EPV/ECV: the given CSV, else the base run's ``prices.price_index``. Returns
    (PriceIndex | None, record)."""
    from ..tables import PriceIndex

    path = None
    origin = None
    if price_index is not None:
        path, origin = Path(price_index), "--price-index"
    else:
        for r in s.runs:
            pi = ((r.manifest.get("config") or {}).get("prices") or {}).get("price_index")
            if pi:
                p = Path(pi)
                path = p if p.is_absolute() else input_base_dir(r) / p
                origin = f"prices.price_index of run {r.path}"
                break
    if path is None:
        if needed and "price_index" not in {d["code"] for d in accepted}:
            raise ConfigError("the runs have EPV/ECV accounts (statistics in yuan, no physical quantity): give "
                              "--price-index CSV (year,index, e.g. a CPI) to move them to base-year prices, or "
                              "--accept price_index to keep them at current prices (recorded in the manifest)")
        return None, None
    idx = PriceIndex.load(path, what="series price index")
    for y in s.years:
        idx.value(y, needed_for="EPV/ECV at comparable prices")
    return idx, {**idx.describe(), "origin": origin}


# --------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------
def series_account(runs: Sequence, out_dir, *, base_year: int | None = None, price_index=None,
                   accept: Sequence[str] = (), figures: bool = True, top_units: int = 6) -> dict:
    """Multi-year account of several runs (one per accounting year) at current and comparable prices.

    Parameters
    ----------
    runs : sequence of path-like
        Output folders of ``gep run`` (two or more, any order; sorted by accounting year).
    out_dir : path-like
        Output folder (created): ``tables/<layer>_series.csv`` (+ ``.gpkg`` with the polygons),
        ``tables/region_series.csv``, ``figures/<layer>_series.png``, ``series_manifest.json``.
    base_year : int, optional
        Year of the comparable prices (default: the first year); one of the runs' years.
    price_index : path-like, optional
        CSV ``year,index`` for EPV/ECV (default: the runs' ``prices.price_index``).
    accept : sequence of str
        Codes of comparability differences accepted (:func:`comparability_differences`; a prefix ending in
        ``.``, or ``all``), plus ``price_index`` to keep EPV/ECV at current prices.
    figures : bool
        Write the figures.
    top_units : int
        Units drawn as small multiples per layer (largest GEP-R in the base year).

    Returns
    -------
    dict
        The content of ``series_manifest.json``.

    Raises
    ------
    InputError, ConfigError
        See :func:`load_series`; :class:`ConfigError` listing every refused comparability difference with its
        code; a base year that is not a run's year; EPV/ECV without a price index (unless accepted).
    """
    from ..outputs.io_write import atomic_to_csv, atomic_write_json

    s = load_series(runs)
    diffs = comparability_differences(s)
    accepted, refused = _check_accepted(diffs, accept)
    if refused:
        lines = "\n".join(f"  - [{d['code']}] {d['what']}" for d in refused)
        raise ConfigError(f"the runs are not comparable ({len(refused)} difference(s)):\n{lines}\n"
                          "accept them explicitly with --accept CODE (repeatable; a prefix ending in '.', or 'all'): "
                          "accepted differences are recorded in series_manifest.json")
    base = int(base_year) if base_year is not None else s.years[0]
    if base not in s.years:
        raise ConfigError(f"--base-year {base} is not an accounting year of the runs ({s.years})")
    econ_present = bool(s.runs[0].economic_keys)
    pi_accept = [{"code": "price_index", "what": "EPV/ECV kept at current prices (no price index)"}
                 for a in (accept or ()) if a in ("price_index", "all")][:1]
    index, index_rec = _price_index(s, price_index, econ_present, pi_accept)
    if econ_present and index is None:
        accepted.extend(pi_accept)
    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    files, layers_rec = [], {}
    for name in [None, *s.runs[0].layers]:
        tab, units = series_table(s, name, base, index)
        stem = "region" if name is None else name
        rel = f"tables/{stem}_series.csv"
        atomic_to_csv(tab, out / rel)
        files.append(rel)
        rec = {"table": rel, "rows": int(len(tab)), "units": units,
               "revalue_check_max_rel": max(tab.attrs["revalue_check"].values(), default=0.0)}
        if name is not None:
            info = s.runs[-1].layers[name]
            rec.update(id_field=info["id_field"], name_field=info["name_field"], role=info["role"])
            if info["gpkg"] is not None:
                rec["gpkg"] = _series_gpkg(tab, info, out / f"tables/{name}_series.gpkg", name)
                files.append(rec["gpkg"])
            if figures:
                rec["figure"] = _series_figure(tab, info["id_field"], info["name_field"], name, base,
                                               out / f"figures/{name}_series.png", top_units)
                files.append(rec["figure"])
        layers_rec[stem] = rec
    region = layers_rec.pop("region")
    manifest = {
        "gep_raster_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "kind": "series",
        "years": s.years,
        "base_year": base,
        "runs": [{"year": y, "path": str(r.path.resolve()), "run_name": r.manifest.get("run_name"),
                  "run_hash": r.manifest.get("run_hash"), "config_sha256": r.manifest.get("config_sha256"),
                  "price_index": (r.manifest.get("price_index") or None)} for y, r in zip(s.years, s.runs)],
        "services": s.runs[0].services,
        "prices": {str(y): s.prices[y] for y in s.years},
        "epv_ecv_price_index": index_rec,
        "valuation": s.valuation[base],
        "definitions": DEFINITIONS,
        "comparability": {"differences": diffs, "accepted": accepted,
                          "checked": ["grid", "services", "config.services.* and carbon method", "parameters",
                                      "legend per-class parameters", "valuation terms", "layer units and polygons"]},
        "region": region,
        "layers": layers_rec,
        "outputs": files,
    }
    atomic_write_json(out / "series_manifest.json", manifest)
    for d in accepted:
        log.warning("series: accepted difference [%s] %s", d["code"], d["what"])
    return manifest


def _series_gpkg(tab, info: dict, path: Path, name: str) -> str:
    """The long table joined to the layer's polygons (one feature per unit and year)."""
    import geopandas as gpd

    from ..outputs.io_write import atomic_to_gpkg

    idf = info["id_field"]
    geo = gpd.read_file(info["gpkg"])[[idf, "geometry"]]
    geo[idf] = geo[idf].astype(str)
    gdf = gpd.GeoDataFrame(tab.merge(geo, on=idf, how="left"), geometry="geometry", crs=geo.crs)
    atomic_to_gpkg(gdf, path, layer=f"{name}_series")
    return str(Path("tables") / path.name)


def _series_figure(tab, idf: str, nmf: str, name: str, base: int, path: Path, top: int) -> str:
    """Lines over the years: the layer's GEP / GEP-R at comparable and current prices, and small multiples of the
    units with the largest GEP-R in the base year."""
    from ..outputs.figures import _mpl_context, _new_figure, _safe, _save_png

    years = sorted(tab["year"].unique())
    tot = tab.groupby("year").sum(numeric_only=True)
    b = tab[tab["year"] == base].sort_values("gep_r_yuan_comparable", ascending=False)
    units = list(b[idf].head(top))
    ncol = 3
    nrow = 1 + (len(units) + ncol - 1) // ncol
    path.parent.mkdir(parents=True, exist_ok=True)
    with _mpl_context():
        fig = _new_figure((11, 2.6 * nrow + 0.6))
        gs = fig.add_gridspec(nrow, ncol)
        ax = fig.add_subplot(gs[0, :])
        for c, lab in (("gep_yuan", "GEP"), ("gep_r_yuan", "GEP-R")):
            if f"{c}_comparable" in tot:
                line, = ax.plot(years, tot.loc[years, f"{c}_comparable"] / 1e8, marker="o",
                                label=f"{lab}, {base} prices")
                ax.plot(years, tot.loc[years, c] / 1e8, ls="--", color=line.get_color(), label=f"{lab}, current prices")
        ax.set_title(_safe(f"{name}: sum over {tab[idf].nunique()} units"))
        ax.set_ylabel("1e8 yuan/a")
        ax.set_xticks(years)
        ax.legend(fontsize=8)
        for k, uid in enumerate(units):
            sub = tab[tab[idf] == uid].sort_values("year")
            a2 = fig.add_subplot(gs[1 + k // ncol, k % ncol])
            a2.plot(sub["year"], sub["gep_r_yuan_comparable"] / 1e8, marker="o")
            a2.plot(sub["year"], sub["gep_r_yuan"] / 1e8, ls="--", color="grey")
            nm = _safe(str(sub[nmf].iloc[0]))
            a2.set_title(f"{uid} {nm}" if "?" not in nm else str(uid), fontsize=9)  # no CJK font: the id alone
            a2.set_xticks(years)
            a2.tick_params(labelsize=7)
        fig.suptitle(_safe(f"GEP-R over the years ({base} prices solid, current prices dashed), 1e8 yuan/a"))
        fig.tight_layout()
        _save_png(fig, path)
    return str(Path("figures") / path.name)


def register(app) -> None:
    """Add ``gep series RUN_DIR... -o OUT`` to the typer ``app``."""
    import typer

    from ..cli_common import (command, debug_option, log_file_option, log_json_option, log_level_option,
                              quiet_option, verbose_option)

    @app.command("series")
    def series(runs: list[Path] = typer.Argument(..., help="Output folders of finished runs, one per accounting year."),
               output: Path = typer.Option(..., "--output", "-o", help="Output folder of the multi-year account."),
               base_year: Optional[int] = typer.Option(None, "--base-year", help="Year of the comparable prices "
                                                       "(default: the first year)."),
               price_index: Optional[Path] = typer.Option(None, "--price-index", help="CSV year,index (e.g. a CPI) "
                                                          "moving EPV/ECV to base-year prices (default: the runs' "
                                                          "prices.price_index)."),
               accept: list[str] = typer.Option([], "--accept", help="Accept a comparability difference by its code "
                                                "(repeatable; a prefix ending in '.', or 'all'); recorded."),
               no_figures: bool = typer.Option(False, "--no-figures", help="Do not draw the figures."),
               quiet: bool = quiet_option(), verbose: int = verbose_option(),
               log_level: Optional[str] = log_level_option(), log_file: Optional[Path] = log_file_option(),
               log_json: bool = log_json_option(), debug: bool = debug_option()):
        """Multi-year account: every run's accounts at current and comparable (base-year) prices, growth, and the
        split of each value change into quantity and price."""
        with command(quiet, verbose, log_level, log_file, log_json, debug) as out:
            m = series_account(runs, output, base_year=base_year, price_index=price_index, accept=accept,
                               figures=not no_figures)
            out.result(f"series {m['years'][0]}-{m['years'][-1]} ({len(m['years'])} years, {m['base_year']} prices) "
                       f"written to {output}")
            import pandas as pd

            reg = pd.read_csv(Path(output) / m["region"]["table"], encoding="utf-8-sig")
            for _, row in reg.iterrows():
                for c in ("gep_yuan", "gep_r_yuan"):
                    if c in reg:
                        g = row[f"{c}_cum_pct"]
                        out.detail(f"  {int(row['year'])} {c:10s} current {row[c]:>18,.0f}  at {m['base_year']} "
                                   f"prices {row[c + '_comparable']:>18,.0f} yuan/a  ({g:+.2f} % vs {m['base_year']})")
            for d in m["comparability"]["accepted"]:
                out.warning(f"accepted [{d['code']}] {d['what']}")


# used by assess / allocate to read a series folder
def read_series_manifest(series_dir: str | os.PathLike) -> tuple[Path, dict]:
    """The ``series_manifest.json`` of a ``gep series`` output folder.

    Raises
    ------
    InputError
        Missing or unreadable.
    """
    from .change import read_json_manifest

    return read_json_manifest(Path(series_dir) / "series_manifest.json",
                              f"is {series_dir} the output folder of `gep series`?")
