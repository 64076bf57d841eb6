"""What the report shows, section by section, read from a finished run folder (and a change folder): plain dicts
and lists for the templates, every number taken from the run's manifest and tables (or, for the ecosystem-type
matrix, summed from its rasters), never recomputed from inputs.

Sources of each section:

1. summary: ``manifest["totals"]`` (``gep_r_yuan``, ``provisioning_yuan`` = EPV, ``cultural_yuan`` = ECV,
   ``gep_yuan``), the account area ``manifest["diagnostics"]["plausibility"]["stats"]["area_ha"]`` (pixels with
   a GEP-R value × pixel area), population and GDP from the options or the statistics table;
2. services: ``manifest["valuation"]`` (per service the terms physical key × ``unit_value_yuan``, with
   ``price_coefficients``: unit value = Σ coefficient × price), ``manifest["prices"]`` (value, unit, price year,
   source, evidence, price-index move), physical and value totals from ``manifest["totals"]``;
3. ecosystem types: :func:`gep_raster.report.matrix.ecosystem_matrix`;
4. units: ``tables/<layer>.csv``, units from ``manifest["outputs"]``;
6. change: ``change_manifest.json`` and ``tables/<layer>_change.csv`` of a ``gep compare`` folder;
7. methods: ``manifest["methods"]``, ``["parameters"]``, ``["prices"]``;
8. assumptions: ``manifest["assumptions"]``, ``["diagnostics"]`` (plausibility checks and warnings),
   ``["validation"]["warnings"]``, ``["hierarchy_checks"]``, ``["economic_accounts"]``;
9. provenance: ``manifest["run_hash"]``, ``["config_sha256"]``, ``["input_checksums"]``, ``["package_versions"]``,
   ``["config"]``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InputError
from .labels import ecosystem_name, labels, service_name, term_name, unit_text

__all__ = ["summary_section", "service_section", "matrix_section", "layer_sections", "change_section",
           "methods_section", "assumptions_section", "provenance_section", "population_gdp"]


def _total(m: dict, key: str):
    v = ((m.get("totals") or {}).get(key) or {}).get("sum")
    return None if v is None else float(v)


def _unit(m: dict, key: str) -> str:
    return ((m.get("totals") or {}).get(key) or {}).get("unit") or ""


def _div(a, b):
    if a is None or b in (None, 0) or not all(math.isfinite(float(x)) for x in (a, b)):
        return None
    return float(a) / float(b)


def account_area_km2(m: dict, grid) -> tuple[float | None, str]:
    """Area of the account (km²) and its basis: the plausibility stats' area of the pixels with a GEP-R value, else
    the GEP-R raster's valid pixels × the mean pixel area."""
    stats = ((m.get("diagnostics") or {}).get("plausibility") or {}).get("stats") or {}
    if stats.get("area_ha") is not None:
        return float(stats["area_ha"]) / 100.0, str(stats.get("scope", "manifest diagnostics.plausibility.stats"))
    n = ((m.get("totals") or {}).get("gep_r_yuan") or {}).get("valid_pixels")
    if n is None:
        return None, "unknown"
    return float(n) * float(np.mean(grid.row_pixel_area_m2)) / 1e6, "valid GEP-R pixels x mean pixel area"


# --------------------------------------------------------------------------------------------------------------
# 1 summary
# --------------------------------------------------------------------------------------------------------------
def population_gdp(run, population: float | None = None, gdp: float | None = None) -> dict:
    """Population (persons) and GDP (yuan/a) of the account area, and where each came from.

    The options win; otherwise the economic statistics table of the run (``manifest["economic_accounts"]["table"]``)
    is read for the columns ``population`` and ``gdp_yuan`` (or ``gdp``): the rows of the accounting year when the
    table has a ``year`` column, one value per ``unit_id`` (its first non-empty cell), summed over the units.

    Returns
    -------
    dict
        ``population``, ``population_source``, ``gdp``, ``gdp_source`` (None where neither gives a value).

    Raises
    ------
    ConfigError
        ``population`` or ``gdp`` given but not a positive finite number.
    """
    for name, v in (("--population", population), ("--gdp", gdp)):
        if v is not None and not (math.isfinite(float(v)) and float(v) > 0):
            raise ConfigError(f"report: {name} must be a positive number, got {v}")
    out = {"population": None if population is None else float(population),
           "population_source": "option --population" if population is not None else None,
           "gdp": None if gdp is None else float(gdp), "gdp_source": "option --gdp" if gdp is not None else None}
    if out["population"] is not None and out["gdp"] is not None:
        return out
    stats = _statistics(run)
    if stats is None:
        return out
    df, path = stats
    for key, cols in (("population", ("population",)), ("gdp", ("gdp_yuan", "gdp"))):
        col = next((c for c in cols if c in df.columns), None)
        if out[key] is None and col is not None and "unit_id" in df.columns:
            v = _pd_numeric(df[["unit_id", col]].dropna()).groupby("unit_id")[col].first()
            if len(v):
                out[key], out[f"{key}_source"] = float(v.sum()), f"{path}: column {col}, {len(v)} unit(s)"
    return out


def _pd_numeric(df):
    import pandas as pd

    c = df.columns[1]
    return df.assign(**{c: pd.to_numeric(df[c], errors="coerce")}).dropna()


def _statistics(run):
    """(statistics table of the run's economic accounts, its path), or None when the run has none or it is gone."""
    import pandas as pd

    from ..analysis.change import input_base_dir

    t = ((run.manifest.get("economic_accounts") or {}).get("table")) or {}
    cands = [Path(t["abs_path"])] if t.get("abs_path") else []
    if t.get("path"):
        cands.append(input_base_dir(run) / t["path"])
    for p in cands:
        if p.is_file():
            try:
                df = pd.read_csv(p, dtype={"unit_id": str}, encoding="utf-8-sig")
            except (OSError, ValueError):
                return None
            if "year" in df.columns and run.manifest.get("accounting_year") is not None:
                df = df[pd.to_numeric(df["year"], errors="coerce") == int(run.manifest["accounting_year"])]
            return df, str(p)
    return None


def summary_section(run, lang: str, pop: dict) -> dict:
    """Section 1: GEP, GEP-R, EPV, ECV (yuan/a), per km², per capita, GEP/GDP, service shares of GEP-R."""
    t, m = labels(lang), run.manifest
    gep_r, epv, ecv = _total(m, "gep_r_yuan"), _total(m, "provisioning_yuan"), _total(m, "cultural_yuan")
    gep = _total(m, "gep_yuan")
    has_econ = gep is not None
    gep_key = "gep_yuan" if has_econ else "gep_r_yuan"
    gep = gep if has_econ else gep_r
    area, basis = account_area_km2(m, run.grid)
    yuan, per_km2 = unit_text("yuan/a", lang), unit_text("yuan/km2/a", lang)
    rows = [_row("gep", t["gep"], gep, yuan, gep_key), _row("gep_r", t["gep_r"], gep_r, yuan, "gep_r_yuan")]
    if epv is not None:
        rows.append(_row("epv", t["epv"], epv, yuan, "provisioning_yuan"))
    if ecv is not None:
        rows.append(_row("ecv", t["ecv"], ecv, yuan, "cultural_yuan"))
    rows += [_row("area", t["area"], area, unit_text("km2", lang), "area_km2"),
             _row("gep_per_km2", t["gep_per_km2"], _div(gep, area), per_km2, "gep_per_km2"),
             _row("gep_r_per_km2", t["gep_r_per_km2"], _div(gep_r, area), per_km2, "gep_r_per_km2")]
    per_cap = f"{unit_text('yuan', lang)}/{t['persons']}/{unit_text('a', lang)}"
    if pop["population"] is not None:
        rows += [_row("population", t["population"], pop["population"], t["persons"], "population",
                      pop["population_source"]),
                 _row("gep_per_capita", t["gep_per_capita"], _div(gep, pop["population"]), per_cap, "gep_per_capita"),
                 _row("gep_r_per_capita", t["gep_r_per_capita"], _div(gep_r, pop["population"]), per_cap,
                      "gep_r_per_capita")]
    if pop["gdp"] is not None:
        rows += [_row("gdp", t["gdp"], pop["gdp"], yuan, "gdp", pop["gdp_source"]),
                 _row("gep_gdp", t["gep_gdp"], _div(gep, pop["gdp"]), t["ratio"], "gep_gdp")]
    shares = [{"service": s, "label": service_name(s, lang), "value": _total(m, f"{s}_yuan"),
               "share_pct": None if not gep_r else 100.0 * (_total(m, f"{s}_yuan") or 0.0) / gep_r}
              for s in run.services]
    return {"rows": rows, "has_econ": has_econ, "area_basis": basis, "shares": shares,
            "no_population": pop["population"] is None and pop["gdp"] is None}


def _row(key, label, value, unit, data_key, source=None) -> dict:
    yuan = data_key.endswith("yuan") or data_key in ("gdp",)
    return {"key": key, "data_key": data_key, "label": label, "value": value, "unit": unit, "source": source,
            "value_1e8": (value / 1e8) if (yuan and value is not None) else None}


# --------------------------------------------------------------------------------------------------------------
# 2 services
# --------------------------------------------------------------------------------------------------------------
def _price_unit(phys_unit: str, lang: str) -> str:
    u = phys_unit[:-2] if phys_unit.endswith("/a") else phys_unit
    return unit_text(f"yuan/{u}", lang)


def _price_rows(coefs: dict, prices: dict, lang: str, t: dict) -> list[dict]:
    out = []
    for key, coef in coefs.items():
        p = prices.get(key) or {}
        moved = None
        if p.get("index_factor") not in (None, 1.0):
            moved = t["price_moved"].format(year=p.get("index_accounting_year"), orig=p.get("original_value"),
                                            factor=f"{float(p['index_factor']):.6g}")
        out.append({"key": key, "coefficient": float(coef), "value": p.get("value"),
                    "unit": unit_text(p.get("unit"), lang), "price_year": p.get("price_year"),
                    "source": p.get("source"), "evidence": p.get("evidence"), "moved": moved})
    return out


def service_section(run, lang: str) -> dict:
    """Section 2: per service the terms physical total × unit value = value, the prices behind each unit value, and
    the service's value total (its value raster's sum); EPV/ECV items with their statistics source."""
    t, m = labels(lang), run.manifest
    prices = {p["key"]: p for p in (m.get("prices") or []) if isinstance(p, dict) and "key" in p}
    valuation = m.get("valuation") or {}
    services = []
    for s in run.services:
        terms = []
        for term in valuation.get(s) or []:
            phys = term.get("physical")
            q, uv = _total(m, phys), term.get("unit_value_yuan")
            terms.append({"physical_key": phys, "label": term_name(phys, s, lang), "physical": q,
                          "unit": unit_text(_unit(m, phys), lang), "unit_value": uv,
                          "price_unit": _price_unit(_unit(m, phys), lang),
                          "computed": None if q is None or uv is None else q * float(uv),
                          "prices": _price_rows(term.get("price_coefficients") or {}, prices, lang, t)})
        value = _total(m, f"{s}_yuan")
        computed = sum(x["computed"] for x in terms) if terms and all(x["computed"] is not None for x in terms) \
            else None
        services.append({"service": s, "label": service_name(s, lang), "terms": terms, "value": value,
                         "computed": computed, "rel_diff": _rel(computed, value)})
    return {"services": services, "econ": _econ_items(run, lang), "gep_r": _total(m, "gep_r_yuan")}


def _rel(a, b):
    if a is None or b is None:
        return None
    return 0.0 if a == b else abs(a - b) / max(abs(a), abs(b))


def _item_name(col: str, lang: str) -> str:
    """Name of an EPV/ECV item column ``epv_<item>_yuan`` / ``ecv_<item>_yuan`` in ``lang``."""
    from .labels import TERM_NAMES

    item = col[4:-5]
    return TERM_NAMES[item][0 if lang == "en" else 1] if item in TERM_NAMES else item.replace("_", " ")


def _econ_items(run, lang: str) -> dict | None:
    """EPV/ECV item totals (``epv_<item>_yuan``, ``ecv_<item>_yuan``) with the statistics' sources."""
    from ..analysis.change import economic_columns

    m = run.manifest
    ea = m.get("economic_accounts")
    if not ea:
        return None
    cols = economic_columns((m.get("totals") or {}).keys())
    rows = [{"key": c, "account": service_name("provisioning" if c.startswith("epv") else "cultural", lang),
             "label": _item_name(c, lang), "value": _total(m, c)} for c in cols["epv_items"] + cols["ecv_items"]]
    table = ea.get("table") or {}
    return {"rows": rows, "sources": table.get("sources") or [], "illustrative": bool(table.get("illustrative")),
            "table": table.get("path"), "exclusion_basis": ea.get("exclusion_basis")}


# --------------------------------------------------------------------------------------------------------------
# 3 ecosystem types
# --------------------------------------------------------------------------------------------------------------
def matrix_section(run, lang: str, *, chunk: int = 1024) -> dict:
    """Section 3: value per service (rows) and ecosystem type (columns), the classes behind each type."""
    from .matrix import UNCLASSIFIED, MatrixUnavailable, ecosystem_matrix

    t, m = labels(lang), run.manifest
    px = m.get("land_cover_classes_px") or {}
    legend = [{"code": r.get("code"), "name": (r.get("name_zh") if lang == "zh" and r.get("name_zh") else
                                                r.get("name")), "ecosystem": ecosystem_name(r.get("ecosystem"), lang),
               "pixels": px.get(str(r.get("code")))}
              for r in ((m.get("legend") or {}).get("table") or [])]
    try:
        mx = ecosystem_matrix(run, chunk=chunk)
    except MatrixUnavailable as exc:
        return {"available": False, "reason": str(exc), "legend": legend}
    keep = [i for i, e in enumerate(mx["ecosystems"]) if e != UNCLASSIFIED or
            any(r["values"][i] for r in mx["rows"].values())]
    cols = [{"key": mx["ecosystems"][i], "label": t["unclassified"] if mx["ecosystems"][i] == UNCLASSIFIED
             else ecosystem_name(mx["ecosystems"][i], lang)} for i in keep]
    rows = []
    for k, r in mx["rows"].items():
        s = run.rasters[k]["service"] if k in run.rasters else k
        label = t["gep_r"] if k == "gep_r_yuan" else (t["gep"] if k == "gep_yuan" else service_name(s, lang))
        rows.append({"key": k, "label": label, "by_eco": [r["values"][i] for i in keep], "total": r["total"],
                     "manifest_total": r["manifest_total"], "strong": k in ("gep_r_yuan", "gep_yuan")})
    diff = mx["max_rel_diff"]
    return {"available": True, "cols": cols, "rows": rows, "area_km2": [mx["area_km2"][i] for i in keep],
            "area_total": float(sum(mx["area_km2"])), "legend": legend, "notes": mx["notes"],
            "note": t["matrix_note"].format(diff="–" if diff is None else f"{diff:.1e}"), "max_rel_diff": diff}


# --------------------------------------------------------------------------------------------------------------
# 4 units
# --------------------------------------------------------------------------------------------------------------
def _col_label(run, col: str, lang: str) -> str:
    t = labels(lang)
    if col in t:
        return t[col]
    if col == "gep_r_yuan":
        return t["gep_r"]
    if col == "gep_yuan":
        return t["gep"]
    r = run.rasters.get(col)
    if r is not None and r["kind"] == "physical":
        return term_name(col, r["service"], lang)
    if r is not None:
        return service_name(r["service"], lang)
    if col.startswith(("epv_", "ecv_")):
        return _item_name(col, lang)
    return col


#: most numeric columns of one table of section 4 (wider tables are split, id and name repeated): fits A4
TABLE_COLUMNS = 8


def _column_groups(cols: list[str], n: int) -> list[list[str]]:
    """``cols`` in consecutive groups of at most ``n`` (balanced: 11 columns by 8 give 6 + 5)."""
    if not cols:
        return []
    k = -(-len(cols) // max(1, n))
    size = -(-len(cols) // k)
    return [cols[i:i + size] for i in range(0, len(cols), size)]


def layer_sections(run, lang: str) -> list[dict]:
    """Section 4: per layer the value per service and totals (yuan/a) and the physical quantities (with units), each
    split into tables of at most :data:`TABLE_COLUMNS` numeric columns besides the area."""
    from ..analysis.change import economic_columns
    from ..outputs.figures import layer_label

    t = labels(lang)
    cfg_layers = (run.manifest.get("config") or {}).get("layers") or {}
    out = []
    for name, info in run.layers.items():
        df = run.read_table(name)
        idf, nmf = info["id_field"], info["name_field"]
        econ = economic_columns(df.columns)
        vals = [k for k in run.value_keys if k in df] + ["gep_r_yuan"] + econ["epv"] + econ["ecv"] + econ["gep"] \
            + [c for c in ("gep_r_yuan_per_km2", "gep_yuan_per_km2") if c in df]
        phys = [k for k in run.physical_keys if k in df]
        area = [c for c in ("area_km2",) if c in df]
        tables = []
        for title, group in ((t["values_table"], vals), (t["physical_table"], phys)):
            for part, chunk in enumerate(_column_groups(group, TABLE_COLUMNS - len(area))):
                cols = area + chunk
                heads = [{"col": c, "label": _col_label(run, c, lang), "unit": _table_unit(run, c, lang)}
                         for c in cols]
                rows = [{"id": str(r[idf]), "name": str(r[nmf]) if nmf != idf and nmf in df else "",
                         "cells": [{"col": c, "value": _float(r[c])} for c in cols]} for _, r in df.iterrows()]
                tables.append({"title": title if part == 0 else f"{title} ({part + 1})", "heads": heads,
                               "rows": rows})
        role = info.get("role", "admin")
        parent = (cfg_layers.get(name) or {}).get("nests_in")
        out.append({"name": name, "label": layer_label(name, lang), "role": t[f"layer_role_{role}"]
                    if f"layer_role_{role}" in t else role, "nests_in": t["nests_in"].format(parent=parent)
                    if parent else None, "id_field": idf, "name_field": nmf, "tables": tables, "n": len(df)})
    return out


def _table_unit(run, col: str, lang: str) -> str:
    if col.endswith("_per_km2"):
        return unit_text("yuan/km2/a", lang)
    if col in ("area_km2", "valid_area_km2"):
        return unit_text("km2", lang)
    r = run.rasters.get(col)
    if r is not None:
        u = r["unit"]
        return unit_text(_unit(run.manifest, col) or u, lang)
    return unit_text("yuan/a", lang) if col.endswith("_yuan") else ""


def _float(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# --------------------------------------------------------------------------------------------------------------
# 6 change
# --------------------------------------------------------------------------------------------------------------
def change_section(run, compare, lang: str) -> dict | None:
    """Section 6 from a ``gep compare`` folder: run totals a, b, Δ, growth; per layer GEP-R (and GEP) change.

    Raises
    ------
    InputError
        ``compare`` holds no readable ``change_manifest.json`` or it is not a change manifest.
    """
    from ..analysis.change import read_json_manifest

    if compare is None:
        return None
    t = labels(lang)
    d = Path(compare)
    _, cm = read_json_manifest(d / "change_manifest.json", "is it the output folder of `gep compare`?")
    if cm.get("kind") != "change":
        raise InputError(f"{d / 'change_manifest.json'}: not a change manifest (kind {cm.get('kind')!r})")
    h = run.manifest.get("run_hash")
    role = "b" if cm["run_b"].get("run_hash") == h else ("a" if cm["run_a"].get("run_hash") == h else None)
    totals = [{"key": k, "label": _col_label(run, k, lang) if k != "gep_r_yuan" else t["gep_r"], **v}
              for k, v in (cm.get("totals") or {}).items() if k.endswith("_yuan") and not k.startswith(("epv_", "ecv_"))]
    layers = [_change_layer(d, e, run, lang) for e in cm.get("tables") or []]
    delta = d / "rasters" / "delta" / "gep_r_yuan_delta.tif"
    same_grid = cm.get("grid") == run.manifest.get("grid")
    return {"path": str(d.resolve()), "run_a": cm["run_a"], "run_b": cm["run_b"], "role": role,
            "role_text": t[f"change_role_{role}"] if role else t["change_role_none"], "totals": totals,
            "layers": [x for x in layers if x is not None], "warnings": list(cm.get("warnings") or []),
            "config_differences": [{"key": c["key"], "a": _short(c.get("a")), "b": _short(c.get("b"))}
                                   for c in cm.get("config_differences") or []],
            "delta_raster": str(delta) if delta.is_file() and same_grid else None}


def _short(v, n: int = 300) -> str:
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= n else s[:n] + " …"


def _change_layer(d: Path, entry: dict, run, lang: str) -> dict | None:
    import pandas as pd

    from ..outputs.figures import layer_label

    p = d / entry["path"]
    if not p.is_file():
        return None
    idf = entry.get("id_field")
    info = run.layers.get(entry["layer"]) or {}
    nmf = info.get("name_field")
    df = pd.read_csv(p, dtype={idf: str, **({nmf: str} if nmf else {})}, encoding="utf-8-sig")
    keys = [k for k in ("gep_r_yuan", "gep_yuan") if f"{k}_a" in df]
    rows = [{"id": str(r[idf]), "name": str(r[nmf]) if nmf and nmf in df else "", "in_runs": r.get("in_runs"),
             "cells": [{"col": f"{k}_{s}", "value": _float(r[f"{k}_{s}"])} for k in keys
                       for s in ("a", "b", "delta", "growth_pct")]} for _, r in df.iterrows()]
    return {"layer": entry["layer"], "label": layer_label(entry["layer"], lang), "cols": keys,
            "key_labels": [labels(lang)["gep_r"] if k == "gep_r_yuan" else labels(lang)["gep"] for k in keys],
            "rows": rows, "warning": entry.get("warning")}


# --------------------------------------------------------------------------------------------------------------
# 7 methods, 8 assumptions, 9 provenance
# --------------------------------------------------------------------------------------------------------------
def methods_section(run, lang: str) -> dict:
    """Section 7: the run's method note per service, every parameter and price used with source and evidence."""
    m = run.manifest
    methods = [{"service": s, "label": service_name(s, lang), "text": txt} for s, txt in (m.get("methods") or {}).items()]
    params = [{**p, "unit": unit_text(p.get("unit"), lang)} for p in (m.get("parameters") or []) if isinstance(p, dict)]
    prices = [{**p, "unit": unit_text(p.get("unit"), lang)} for p in (m.get("prices") or []) if isinstance(p, dict)]
    return {"methods": methods, "parameters": params, "prices": prices, "profile": m.get("profile"),
            "legend_sources": [s.get("path") if isinstance(s, dict) else str(s)
                               for s in (m.get("legend") or {}).get("sources") or []]}


def assumptions_section(run, lang: str) -> dict:
    """Section 8: every assumption, plausibility check and warning, accepted validation warnings, diagnostics and
    nesting checks."""
    m = run.manifest
    diag = m.get("diagnostics") or {}
    pl = diag.get("plausibility") or {}
    other = []
    for svc, d in diag.items():
        if svc != "plausibility" and isinstance(d, dict):
            other += [{"service": service_name(svc, lang), "key": k, "value": v} for k, v in d.items()]
    hier = []
    for h in m.get("hierarchy_checks") or []:
        diffs = [c.get("rel_diff_children_vs_covered") for c in (h.get("columns") or {}).values()]
        diffs = [abs(float(x)) for x in diffs if x is not None]
        hier.append({"parent_layer": h.get("parent_layer"), "child_layer": h.get("child_layer"),
                     "parent": f"{h.get('parent_id')} {h.get('parent_name') or ''}".strip(),
                     "n_children": h.get("n_children"), "max_rel_diff": max(diffs) if diffs else None})
    ea = m.get("economic_accounts") or {}
    val = m.get("validation") or {}
    return {"assumptions": list(m.get("assumptions") or []), "checks": list(pl.get("checks") or []),
            "warnings": [w.get("message", str(w)) if isinstance(w, dict) else str(w) for w in pl.get("warnings") or []],
            "validation": [str(w) for w in val.get("warnings") or []], "diagnostics": other, "hierarchy": hier,
            "illustrative": bool((ea.get("table") or {}).get("illustrative")),
            "unallocated": ea.get("unallocated") or [], "plausibility_table": pl.get("table")}


def provenance_section(run, lang: str) -> dict:
    """Section 9: hashes, versions, input checksums, package versions and the configuration as run."""
    m = run.manifest
    checks = [{"path": k, "sha256": v.get("sha256") or v.get("etag") or "", "bytes": v.get("bytes") or v.get("size")}
              for k, v in (m.get("input_checksums") or {}).items() if isinstance(v, dict)]
    return {"run_hash": m.get("run_hash"), "config_sha256": m.get("config_sha256"),
            "version": m.get("gep_raster_version"), "created": m.get("created_utc"), "config_file": m.get("config_file"),
            "run_dir": str(run.path.resolve()), "inputs": checks,
            "packages": sorted((m.get("package_versions") or {}).items()),
            "config": json.dumps(m.get("config") or {}, ensure_ascii=False, indent=2, default=str)}
