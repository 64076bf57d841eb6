"""GEP / GEP-R assessment of ecological protection (生态保护成效考核): targets evaluated per unit on a series.

``gep assess SERIES_DIR --targets targets.yaml -o OUT`` (or :func:`assess_series`) reads a multi-year account
(:mod:`gep_raster.analysis.series`) and a small YAML of targets, e.g. the Sanming pilot plan's "GEP +3 % over
2025, GEP-R stable or rising"::

    year: 2026                  # assessed year (default: the series' last year)
    targets:
      - {indicator: gep_yuan, measure: cum_pct, op: ">=", value: 3.0, label: "GEP +3 % over the base year"}
      - {indicator: gep_r_yuan, measure: yoy_pct, op: ">=", value: 0.0, label: "GEP-R not falling"}
      - {indicator: soil_retention_t, measure: value, op: ">=", value: 1.0e6, layers: [county]}
    fall_flag_pct: -5.0         # GEP-R falling more than 5 % year on year (comparable prices) is flagged

Per unit of every layer (and the region) it writes the measured value, the target, met / not met, the rank
among the layer's units (1 = highest measured value) and the services that drove the change (the largest
changes of service value at comparable prices over the target's period), in ``assessment_<layer>.csv``.

Measures: ``cum_pct`` (growth at comparable prices against the series' base year), ``yoy_pct`` (against the
previous year), ``comparable`` (the value at base-year prices), ``value`` (current prices for a value column;
the quantity for a physical column), ``per_km2`` (comparable value per km² of the unit). Comparisons are on the
numbers as written in the series tables; NaN (e.g. growth from 0) is "not met" and said so.

Fall flag: a unit whose GEP-R at comparable prices fell by more than ``fall_flag_pct`` against the previous
year is flagged; the pixels and services behind it come from the existing change machinery
(:func:`gep_raster.analysis.change.compare_runs` on the two years' runs: Δ rasters under ``change/``), summed
over the unit's pixels (pixel centre in the polygon): pixels with a GEP-R fall, the fall in yuan, and each
service's fall; plus a map ``figures/<layer>_gep_r_fall.png`` of ΔGEP-R with the flagged units outlined.

Source: the targets are the user's; the comparable-price growth is that of the series. The rule "met when the
measured value satisfies op value" and the driver ranking are the engine's own definitions (no published
assessment formula was read; Sanming pilot plan 2026-28 task 9 and the Zhejiang opinions motivate them).
"""
from __future__ import annotations

import datetime as _dt
import logging
import operator
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._version import __version__
from ..errors import ConfigError, InputError
from .series import REGION_ID, read_series_manifest

log = logging.getLogger("gep_raster")

__all__ = ["Target", "Targets", "load_targets", "evaluate", "assess_series", "register"]

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


class Target(BaseModel):
    """One target: ``indicator`` (a value column such as ``gep_yuan``, ``gep_r_yuan``, ``soil_retention_yuan``,
    or a physical column such as ``soil_retention_t``), ``measure``, ``op`` and ``value``."""

    model_config = ConfigDict(extra="forbid")
    indicator: str
    measure: Literal["cum_pct", "yoy_pct", "comparable", "value", "per_km2"] = "cum_pct"
    op: Literal[">=", ">", "<=", "<"] = ">="
    value: float
    label: str = ""
    #: layers the target applies to (default: every layer and the region)
    layers: Optional[list[str]] = None

    @property
    def id(self) -> str:
        return f"{self.indicator}_{self.measure}"


class Targets(BaseModel):
    """The targets file (``gep assess --targets``)."""

    model_config = ConfigDict(extra="forbid")
    year: Optional[int] = Field(None, description="Assessed year (default: the last year of the series).")
    base_year: Optional[int] = Field(None, description="Must equal the series' base year when given (a check).")
    targets: list[Target] = Field(..., min_length=1)
    fall_flag_pct: Optional[float] = Field(-5.0, description="Flag a GEP-R fall (comparable prices, year on year) "
                                           "below this percentage; null: no flag.")
    description: str = ""


def load_targets(path) -> Targets:
    """Read and validate a targets YAML.

    Raises
    ------
    ConfigError
        File missing, not YAML, or a key invalid (the message names the file and the key).
    """
    from ..config import read_yaml_file

    p = Path(path)
    data = read_yaml_file(p, "targets")
    try:
        return Targets.model_validate(data or {})
    except ValidationError as exc:
        from ..config import _format_validation_error

        raise ConfigError(_format_validation_error(p, exc, docs="docs/series_assessment.md")) from None


def _measured(tab, t: Target, table_path: str):
    """The measured value of a target for every row of a series table (float64 array)."""
    ind = t.indicator
    if ind not in tab.columns:
        known = [c for c in tab.columns if c.endswith(("_yuan", "_t", "_m3", "_tco2", "_kwh"))
                 and not c.endswith("_pct")]
        raise ConfigError(f"target {t.id}: indicator '{ind}' is not a column of {table_path} (columns: {known})")
    is_value = f"{ind}_comparable" in tab.columns
    if t.measure in ("cum_pct", "yoy_pct"):
        return tab[f"{ind}_{t.measure}"].to_numpy(dtype=np.float64)
    if t.measure == "value":
        return tab[ind].to_numpy(dtype=np.float64)
    if not is_value:
        raise ConfigError(f"target {t.id}: measure '{t.measure}' needs a value column (yuan); '{ind}' is a physical "
                          "quantity: use measure value, cum_pct or yoy_pct")
    v = tab[f"{ind}_comparable"].to_numpy(dtype=np.float64)
    if t.measure == "comparable":
        return v
    if "area_km2" not in tab.columns:
        raise ConfigError(f"target {t.id}: per_km2 needs area_km2, which {table_path} lacks")
    with np.errstate(divide="ignore", invalid="ignore"):
        return v / tab["area_km2"].to_numpy(dtype=np.float64)


def _drivers(tab, idf: str, services: list[str], year: int, ref_year: Optional[int], n: int = 3) -> dict:
    """unit id -> "svc +x; svc -y" of the ``n`` largest changes of service value at comparable prices between
    ``ref_year`` and ``year`` (absolute value), and the same as a list of dicts."""
    cur = tab[tab["year"] == year].set_index(idf)
    if ref_year is None or ref_year not in set(tab["year"]):
        return {}
    ref = tab[tab["year"] == ref_year].set_index(idf)
    out = {}
    for uid in cur.index:
        d = []
        for s in services:
            c = f"{s}_yuan_comparable"
            if c in cur.columns:
                d.append((s, float(cur.at[uid, c] - ref.at[uid, c])))
        for c in ("provisioning_yuan_comparable", "cultural_yuan_comparable"):
            if c in cur.columns:
                d.append((c.replace("_yuan_comparable", ""), float(cur.at[uid, c] - ref.at[uid, c])))
        d = [x for x in d if np.isfinite(x[1]) and x[1] != 0.0]
        d.sort(key=lambda x: (-abs(x[1]), x[0]))
        out[uid] = d[:n]
    return out


def evaluate(tab, idf: str, nmf: str, targets: Targets, year: int, base_year: int, services: list[str],
             table_path: str = "series table"):
    """Evaluate the targets on one layer's series table for one year.

    Parameters
    ----------
    tab : pandas.DataFrame
        ``tables/<layer>_series.csv`` of a series (id read as str).
    idf, nmf : str
        Id and name fields.
    targets : Targets
    year, base_year : int
        Assessed year and the series' base year.
    services : list of str
        Regulating services of the series (for the drivers).

    Returns
    -------
    pandas.DataFrame
        One row per unit: id, name, ``year``, per target ``<id>_value``, ``<id>_target`` (op and value as text),
        ``<id>_met`` (bool), ``<id>_rank`` (1 = highest measured value; ties share the best rank), ``all_met``,
        ``targets_met`` (count), ``drivers_cum`` / ``drivers_yoy`` (largest service changes at comparable prices
        against the base / previous year, yuan/a), ``gep_r_yoy_pct``.

    Raises
    ------
    ConfigError
        An indicator that is not a column; the year not in the table.
    """
    import pandas as pd

    years = sorted(int(y) for y in tab["year"].unique())
    if year not in years:
        raise ConfigError(f"assessed year {year} is not in {table_path} (years {years})")
    prev = years[years.index(year) - 1] if years.index(year) else None
    rows = tab[tab["year"] == year].reset_index(drop=True)
    out = pd.DataFrame({idf: rows[idf].astype(str), nmf: rows[nmf].astype(str), "year": year})
    n_met = np.zeros(len(rows), dtype=np.int64)
    for t in targets.targets:
        v = _measured(rows, t, table_path)
        met = np.isfinite(v) & _OPS[t.op](np.where(np.isfinite(v), v, 0.0), t.value)
        out[f"{t.id}_value"] = v
        out[f"{t.id}_target"] = f"{t.op} {t.value:g}"
        out[f"{t.id}_met"] = met
        out[f"{t.id}_rank"] = pd.Series(v).rank(ascending=False, method="min").to_numpy()
        n_met += met
    out["targets_met"] = n_met
    out["all_met"] = n_met == len(targets.targets)
    for label, ref in (("cum", base_year if base_year != year else None), ("yoy", prev)):
        drv = _drivers(tab, idf, services, year, ref)
        out[f"drivers_{label}"] = [
            "; ".join(f"{s} {d:+,.0f}" for s, d in drv.get(uid, [])) for uid in out[idf]]
    if "gep_r_yuan_yoy_pct" in rows:
        out["gep_r_yoy_pct"] = rows["gep_r_yuan_yoy_pct"].to_numpy(dtype=np.float64)
    return out


def assess_series(series_dir, targets_path, out_dir) -> dict:
    """Evaluate a targets file on a multi-year account, per unit of every layer and for the region.

    Parameters
    ----------
    series_dir : path-like
        Output folder of ``gep series``.
    targets_path : path-like
        Targets YAML (:class:`Targets`).
    out_dir : path-like
        Output folder (created): ``assessment_<layer>.csv`` (layers and ``region``), ``assessment_manifest.json``,
        and, when a unit is flagged for a GEP-R fall, ``change/`` (Δ rasters and tables of the two years, from
        ``gep compare``), ``figures/<layer>_gep_r_fall.png`` and the per-unit fall in ``assessment_falls.csv``.

    Returns
    -------
    dict
        The content of ``assessment_manifest.json``.

    Raises
    ------
    InputError
        Not a series folder; a table missing.
    ConfigError
        Invalid targets; ``base_year`` differing from the series'; an unknown indicator or layer.
    """
    import pandas as pd

    from ..outputs.io_write import atomic_to_csv, atomic_write_json

    _, sm = read_series_manifest(series_dir)
    tg = load_targets(targets_path)
    base = int(sm["base_year"])
    if tg.base_year is not None and tg.base_year != base:
        raise ConfigError(f"{targets_path}: base_year {tg.base_year} but the series {series_dir} is at {base} prices; "
                          f"rerun `gep series ... --base-year {tg.base_year}`")
    year = int(tg.year) if tg.year is not None else int(sm["years"][-1])
    if year not in sm["years"]:
        raise ConfigError(f"{targets_path}: year {year} is not a year of the series ({sm['years']})")
    layers = {"region": {"table": sm["region"]["table"], "id_field": "unit_id", "name_field": "unit_name"},
              **sm["layers"]}
    for t in tg.targets:
        for ln in t.layers or []:
            if ln not in layers:
                raise ConfigError(f"{targets_path}: target {t.id}: layer '{ln}' is not in the series ({sorted(layers)})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results, files, tables = {}, [], {}
    for name, info in layers.items():
        tp = Path(series_dir) / info["table"]
        if not tp.is_file():
            raise InputError(f"{tp}: table of layer '{name}' listed in the series manifest is missing")
        idf, nmf = info["id_field"], info["name_field"]
        tab = pd.read_csv(tp, dtype={idf: str, nmf: str}, encoding="utf-8-sig")
        mine = Targets(year=tg.year, targets=[t for t in tg.targets if t.layers is None or name in t.layers],
                       fall_flag_pct=tg.fall_flag_pct)
        if not mine.targets:
            continue
        res = evaluate(tab, idf, nmf, mine, year, base, sm["services"], str(tp))
        if tg.fall_flag_pct is not None and "gep_r_yoy_pct" in res:
            res["fall_flagged"] = np.isfinite(res["gep_r_yoy_pct"]) & (res["gep_r_yoy_pct"] < tg.fall_flag_pct)
        rel = f"assessment_{name}.csv"
        atomic_to_csv(res, out / rel)
        files.append(rel)
        tables[name] = (res, info)
        results[name] = {"table": rel, "units": int(len(res)), "all_met": int(res["all_met"].sum()),
                         "not_all_met": res.loc[~res["all_met"], idf].tolist(),
                         "per_target": {t.id: {"met": int(res[f"{t.id}_met"].sum()),
                                               "not_met": res.loc[~res[f"{t.id}_met"], idf].tolist()}
                                        for t in mine.targets},
                         "fall_flagged": (res.loc[res["fall_flagged"], idf].tolist() if "fall_flagged" in res else [])}
    falls = None
    if any(r["fall_flagged"] for n, r in results.items() if n != "region") and year != sm["years"][0]:
        falls = _fall_analysis(sm, tables, year, out)
        files.extend(falls["files"])
    manifest = {
        "gep_raster_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "kind": "assessment",
        "series": {"path": str(Path(series_dir).resolve()), "years": sm["years"], "base_year": base},
        "year": year,
        "targets_file": str(Path(targets_path).resolve()),
        "targets": tg.model_dump(),
        "definitions": {
            "met": "measured value <op> target value; a NaN measure (e.g. growth from 0) is not met",
            "rank": "1 = highest measured value among the layer's units (ties share the best rank)",
            "drivers": "the 3 largest changes (absolute) of service value at comparable prices, against the base "
                       "year (drivers_cum) and the previous year (drivers_yoy), yuan/a",
            "fall_flagged": f"GEP-R at comparable prices year on year below {tg.fall_flag_pct} %",
            "source": "engine's own definitions (no published assessment formula read); targets are the user's",
        },
        "results": results,
        "falls": falls,
        "outputs": files,
    }
    atomic_write_json(out / "assessment_manifest.json", manifest)
    return manifest


def _fall_analysis(sm: dict, tables: dict, year: int, out: Path) -> dict:
    """Δ rasters between the previous and the assessed year (``gep compare``) and, per flagged unit, the pixels
    (centre in the polygon) with a GEP-R fall, the fall and each service's fall."""
    import geopandas as gpd
    import pandas as pd
    import rasterio
    from rasterio.features import rasterize

    from ..outputs.io_write import atomic_to_csv
    from .change import compare_runs, load_run

    years = sm["years"]
    prev = years[years.index(year) - 1]
    run_of = {r["year"]: r["path"] for r in sm["runs"]}
    for y in (prev, year):
        if not Path(run_of[y]).is_dir():
            raise InputError(f"run of {y} ({run_of[y]}) listed in the series manifest is missing: the fall map needs it")
    chdir = out / "change"
    cm = compare_runs(run_of[prev], run_of[year], chdir, include_physical=False)
    rb = load_run(run_of[year])
    deltas = {r["key"]: chdir / r["path"] for r in cm["rasters"]}
    with rasterio.open(deltas["gep_r_yuan"]) as ds:
        dg = ds.read(1).astype(np.float64)
    svc = {k: rasterio.open(p).read(1).astype(np.float64) for k, p in deltas.items()
           if k.endswith("_yuan") and k not in ("gep_r_yuan", "gep_yuan", "provisioning_yuan", "cultural_yuan")}
    rows, files = [], [str(Path("change") / "change_manifest.json")]
    for name, (res, info) in tables.items():
        if name == "region" or "fall_flagged" not in res or not res["fall_flagged"].any():
            continue
        layer = rb.layers.get(name)
        if layer is None or layer["gpkg"] is None:
            continue
        idf = info["id_field"]
        gdf = gpd.read_file(layer["gpkg"])
        gdf[idf] = gdf[idf].astype(str)
        gdf = gdf.to_crs(rb.grid.crs) if gdf.crs is not None else gdf
        flagged = gdf[gdf[idf].isin(res.loc[res["fall_flagged"], idf])]
        for _, f in flagged.iterrows():
            m = rasterize([(f.geometry, 1)], out_shape=rb.grid.shape, transform=rb.grid.transform, fill=0,
                          dtype="uint8").astype(bool)
            fall = m & np.isfinite(dg) & (dg < 0)
            row = {"layer": name, idf: f[idf], "pixels": int(m.sum()), "pixels_gep_r_fall": int(fall.sum()),
                   "gep_r_fall_yuan": float(dg[fall].sum())}
            for k, a in svc.items():
                row[f"{k.replace('_yuan', '')}_fall_yuan"] = float(np.nansum(np.where(m & (a < 0), a, 0.0)))
            rows.append(row)
        fig = _fall_figure(dg, rb.grid, gdf, flagged, name, prev, year, out / "figures" / f"{name}_gep_r_fall.png")
        files.append(fig)
    if rows:
        atomic_to_csv(pd.DataFrame(rows), out / "assessment_falls.csv")
        files.append("assessment_falls.csv")
    return {"previous_year": prev, "year": year, "change_dir": "change", "units": rows,
            "pixel_rule": "pixel centre inside the polygon (rasterio.features.rasterize, all_touched=False)",
            "files": files}


def _fall_figure(dg, grid, gdf, flagged, name: str, prev: int, year: int, path: Path) -> str:
    from ..outputs.figures import _mpl_context, _new_figure, _outline_collection, _save_png

    path.parent.mkdir(parents=True, exist_ok=True)
    x0, y0 = grid.transform.c, grid.transform.f
    x1 = x0 + grid.transform.a * grid.width
    y1 = y0 + grid.transform.e * grid.height
    lim = float(np.nanpercentile(np.abs(dg), 99)) if np.isfinite(dg).any() else 1.0
    with _mpl_context():
        fig = _new_figure((8, 6.5))
        ax = fig.add_subplot(1, 1, 1)
        im = ax.imshow(dg, extent=(x0, x1, y1, y0), cmap="RdBu", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.add_collection(_outline_collection(np.asarray(gdf.geometry.values), colors="0.4", linewidths=0.5))
        ax.add_collection(_outline_collection(np.asarray(flagged.geometry.values), colors="k", linewidths=2.0))
        ax.set_xlim(x0, x1)
        ax.set_ylim(min(y0, y1), max(y0, y1))
        ax.set_aspect("equal")
        ax.set_title(f"{name}: change of GEP-R {prev} -> {year} (yuan/a per pixel); flagged units outlined")
        fig.colorbar(im, ax=ax, shrink=0.8, label="yuan/a per pixel (current prices, run b - run a)")
        _save_png(fig, path)
    return str(Path("figures") / path.name)


def register(app) -> None:
    """Add ``gep assess SERIES_DIR --targets FILE -o OUT`` to the typer ``app``."""
    import typer

    from ..cli_common import (command, debug_option, log_file_option, log_json_option, log_level_option,
                              quiet_option, verbose_option)

    @app.command("assess")
    def assess(series_dir: Path = typer.Argument(..., help="Output folder of `gep series`."),
               targets: Path = typer.Option(..., "--targets", "-t", help="Targets YAML."),
               output: Path = typer.Option(..., "--output", "-o", help="Output folder of the assessment."),
               quiet: bool = quiet_option(), verbose: int = verbose_option(),
               log_level: Optional[str] = log_level_option(), log_file: Optional[Path] = log_file_option(),
               log_json: bool = log_json_option(), debug: bool = debug_option()):
        """Assessment: targets (growth at comparable prices, floors) evaluated per unit, met / not met, rank, the
        services that drove the change, and GEP-R falls flagged with their pixels."""
        with command(quiet, verbose, log_level, log_file, log_json, debug) as out:
            m = assess_series(series_dir, targets, output)
            out.result(f"assessment of {m['year']} ({m['series']['base_year']} prices) written to {output}")
            for name, r in m["results"].items():
                out.detail(f"  {name:14s} {r['all_met']}/{r['units']} units meet every target"
                           + (f"; not: {', '.join(map(str, r['not_all_met'][:8]))}" if r["not_all_met"] else "")
                           + (f"; GEP-R fall flagged: {', '.join(map(str, r['fall_flagged']))}"
                              if r["fall_flagged"] else ""))
            if REGION_ID in (m["results"].get("region") or {}).get("not_all_met", []):
                out.warning("the region as a whole does not meet every target")
