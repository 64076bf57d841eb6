"""Change between two finished runs: per-pixel Δ rasters and per-polygon change tables.

Two output folders of ``gep run`` (two accounting years, before/after a project, current vs future
land cover, baseline vs scenario) are compared as **b − a**:

* ``rasters/delta/<key>_delta.tif``: per-pixel Δ (COG, NaN nodata) of GEP-R and of every service
  value raster (yuan/a per pixel), and of every physical raster (its own unit per pixel);
  Δ is NaN where either run has no value (the counts of such pixels are in the change manifest);
* ``tables/<layer>_change.csv`` (+ ``.gpkg`` when the run's GeoPackage is there): the polygons of
  each layer present in both runs, joined on the layer's id field, with for every quantity column
  ``<col>_a``, ``<col>_b``, ``<col>_delta`` = b − a and ``<col>_growth_pct`` = 100 (b − a) / |a|
  (NaN where a = 0; the absolute value keeps the sign of the change when a is negative, e.g. a net
  carbon emission); GEP, EPV and ECV columns are included when both tables have them;
* ``change_manifest.json``: the two runs (path, name, year, run hash), the shared grid and
  services, every file written with its unit, the run totals a, b, Δ, growth, the configuration
  keys that differ between the runs (``config_differences``: what, besides the data, a Δ reflects),
  and warnings (different prices or method notes, scenario not applied, NEP/NPP carbon rasters that
  do not follow a land-cover scenario ...).

Both runs must share the reference grid (manifest ``grid``: CRS, shape, transform within 10⁻⁶ of
a pixel) and the same set of services (value rasters); otherwise :class:`GridMismatchError` /
:class:`ConfigError` names both manifests and the difference.

Reading a Δ: when the prices or method settings of the two runs differ, a value Δ mixes a quantity
change with a price/method change (flagged in ``warnings``); physical Δ rasters isolate the quantity
change. This is the "evaluation of change in eco-product value" of the methods note §4 (Huzhou
DB3305/T 271-2023 §7, chapter title [V]; its formulas were not read, so the Δ and growth-rate
definitions here are the engine's, stated above).
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from .._version import __version__
from ..errors import ConfigError, GridMismatchError, InputError
from ..grid import GRID_TOLERANCE, RefGrid

log = logging.getLogger("gep_raster")

__all__ = ["RunInfo", "load_run", "input_base_dir", "check_same_grid", "check_same_services", "compare_runs", "growth_pct",
           "economic_columns", "register"]

#: table columns that are not quantities (not compared)
_AREA_COLUMNS = ("area_km2", "grid_area_km2", "valid_area_km2")
#: services of the economic accounts (:mod:`gep_raster.accounts.economic`): EPV, ECV rasters and the GEP raster
ECONOMIC_SERVICES = ("provisioning", "cultural", "gep")
#: account totals written by the economic accounts: EPV ``provisioning_yuan``, ECV ``cultural_yuan``,
#: GEP ``gep_yuan`` (also accepted: ``epv_yuan``, ``ecv_yuan``); items ``epv_<item>_yuan``, ``ecv_<item>_yuan``
_TOTALS = {"provisioning_yuan": "epv", "epv_yuan": "epv", "cultural_yuan": "ecv", "ecv_yuan": "ecv", "gep_yuan": "gep"}
_ITEM = re.compile(r"^(epv|ecv)_[a-z0-9_]+_yuan$")


def economic_columns(columns) -> dict[str, list[str]]:
    """EPV/ECV/GEP columns of an account table (names of :mod:`gep_raster.accounts.economic`).

    Returns
    -------
    dict
        ``{"gep": [...], "epv": [...], "ecv": [...], "epv_items": [...], "ecv_items": [...]}``:
        totals ``gep_yuan``; ``provisioning_yuan`` (or ``epv_yuan``); ``cultural_yuan`` (or
        ``ecv_yuan``); items ``epv_<item>_yuan``, ``ecv_<item>_yuan``. Per-km² columns excluded.
    """
    out = {"gep": [], "epv": [], "ecv": [], "epv_items": [], "ecv_items": []}
    for c in map(str, columns):
        if c in _TOTALS:
            out[_TOTALS[c]].append(c)
        elif _ITEM.match(c) and c not in _TOTALS:
            out[f"{c[:3]}_items"].append(c)
    return out


# --------------------------------------------------------------------------------------
# a finished run
# --------------------------------------------------------------------------------------
@dataclass
class RunInfo:
    """A finished run folder, read from its ``manifest.json``.

    Attributes
    ----------
    path : Path
        The output folder.
    manifest : dict
        The manifest.
    grid : RefGrid
        The reference grid (from ``manifest["grid"]``).
    rasters : dict
        ``key -> {"path": Path, "service", "kind", "unit", "description"}`` of the physical, value,
        GEP-R and GEP rasters (``key`` = file stem, e.g. ``water_conservation_yuan``).
    layers : dict
        ``name -> {"id_field", "name_field", "role", "csv": Path, "gpkg": Path | None}`` of the layers
        with a table.
    """

    path: Path
    manifest: dict
    grid: RefGrid
    rasters: dict = field(default_factory=dict)
    layers: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.manifest.get('run_name', '?')} ({self.path})"

    @property
    def value_keys(self) -> list[str]:
        """Keys of the regulating-service value rasters, in manifest order (GEP-R, EPV, ECV excluded)."""
        return [k for k, r in self.rasters.items() if r["kind"] == "value" and r["service"] not in ECONOMIC_SERVICES]

    @property
    def economic_keys(self) -> list[str]:
        """Keys of the EPV, ECV and GEP rasters (economic accounts), when the run has them."""
        return [k for k, r in self.rasters.items() if r["service"] in ECONOMIC_SERVICES]

    @property
    def physical_keys(self) -> list[str]:
        return [k for k, r in self.rasters.items() if r["kind"] == "physical"]

    @property
    def services(self) -> list[str]:
        """Services with a value raster, in manifest order."""
        out = []
        for k in self.value_keys:
            s = self.rasters[k]["service"]
            if s not in out:
                out.append(s)
        return out

    def read_table(self, layer: str):
        """The layer's account table (CSV) with the id and name fields read as text."""
        import pandas as pd

        info = self.layers[layer]
        dtype = {info["id_field"]: str, info["name_field"]: str}
        try:
            return pd.read_csv(info["csv"], dtype=dtype, encoding="utf-8-sig")
        except (OSError, ValueError) as exc:
            raise InputError(f"{info['csv']}: cannot read the account table of layer '{layer}' ({exc})") from None


def read_manifest(run_dir: str | os.PathLike) -> tuple[Path, dict]:
    """The ``manifest.json`` of a finished run folder: its path and its content.

    Raises
    ------
    InputError
        No ``manifest.json`` in ``run_dir`` (not a finished run), or it is not readable JSON.
    """
    p = Path(run_dir)
    return read_json_manifest(p / "manifest.json", f"is {p} the output folder of a finished `gep run`? "
                              "(no manifest.json)")


def read_json_manifest(path: Path, missing_hint: str) -> tuple[Path, dict]:
    """A JSON manifest of an output folder: its path and content; :class:`InputError` naming the file when it is
    missing (with ``missing_hint``) or not readable JSON."""
    if not path.is_file():
        raise InputError(f"{path}: not found; {missing_hint}")
    try:
        return path, json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the manifest ({exc})") from None


def load_run(path) -> RunInfo:
    """Open a finished run folder.

    Parameters
    ----------
    path : path-like
        Output folder of ``gep run`` (holds ``manifest.json``, ``rasters/``, ``tables/``).

    Returns
    -------
    RunInfo

    Raises
    ------
    InputError
        No ``manifest.json`` (not a finished run), unreadable manifest, missing ``grid``/``outputs``,
        or a raster listed in the manifest is missing.
    """
    from affine import Affine
    from rasterio.crs import CRS

    p = Path(path)
    mpath, m = read_manifest(p)
    for key in ("grid", "outputs"):
        if key not in m:
            raise InputError(f"{mpath}: manifest has no '{key}' entry")
    g = m["grid"]
    try:
        grid = RefGrid(CRS.from_string(g["crs"]), Affine(*g["transform"][:6]), int(g["width"]), int(g["height"]))
    except Exception as exc:
        raise InputError(f"{mpath}: manifest 'grid' is unusable ({exc})") from None
    rasters = {}
    for o in m["outputs"]:
        if o.get("kind") in ("physical", "value", "gep_r", "gep") and str(o.get("path", "")).endswith((".tif", ".vrt")):
            rp = p / o["path"]
            if not rp.is_file():
                raise InputError(f"{mpath}: output raster {o['path']} listed in the manifest is missing ({rp})")
            rasters[Path(o["path"]).stem] = {"path": rp, "service": o.get("service"), "kind": o["kind"],
                                            "unit": o.get("unit", ""), "description": o.get("description", "")}
    if "gep_r_yuan" not in rasters:
        raise InputError(f"{mpath}: the manifest lists no GEP-R raster (rasters/gep_r_yuan.tif)")
    layers = {}
    cfg_layers = (m.get("config") or {}).get("layers") or {}
    for name, lc in cfg_layers.items():
        csv = p / "tables" / f"{name}.csv"
        if csv.is_file():
            gpkg = p / "tables" / f"{name}.gpkg"
            layers[name] = {"id_field": lc["id_field"], "name_field": lc["name_field"],
                            "role": lc.get("role", "admin"), "csv": csv, "gpkg": gpkg if gpkg.is_file() else None}
    return RunInfo(p, m, grid, rasters, layers)


def input_base_dir(r: RunInfo) -> Path:
    """The folder a finished run's config-relative input paths resolve from (the run's config file folder).

    The run folder may have been moved or copied since the run. Tried in order, the first that fits is returned:
    the folder at ``manifest.paths.base_dir.from_run_dir`` from the run folder ``r.path`` (the run moved together
    with its project folder), then ``paths.base_dir.abs_path`` and the folder of ``config_file`` (the inputs where
    they were at run time); a candidate fits when it is a folder holding the config file (of the recorded name, when
    the run had a config file).

    Parameters
    ----------
    r : RunInfo
        The run (:func:`load_run`).

    Returns
    -------
    Path
        The folder; the last recorded one (or the run folder, for a manifest without paths) when none fits, so that a
        missing input is reported with the path it was expected at. Never raises.
    """
    m = r.manifest
    rec = (m.get("paths") or {}).get("base_dir") or {}
    cfile = m.get("config_file")
    name = Path(cfile).name if cfile else None
    candidates = []
    if rec.get("from_run_dir"):
        candidates.append(r.path / rec["from_run_dir"])
    if rec.get("abs_path"):
        candidates.append(Path(rec["abs_path"]))
    if cfile:
        candidates.append(Path(cfile).parent)
    for c in candidates:
        if c.is_dir() and (name is None or (c / name).is_file()):
            return Path(os.path.normpath(c.absolute()))
    return candidates[-1] if candidates else r.path


def check_same_grid(a: RunInfo, b: RunInfo, tol: float = GRID_TOLERANCE) -> None:
    """Raise :class:`GridMismatchError` unless the two runs share the reference grid.

    CRS, width and height must be equal and the six transform coefficients equal within
    ``tol`` × pixel size (the tolerance of :meth:`RefGrid.almost_equals`)."""
    if a.grid.almost_equals(b.grid, tol):
        return
    ga, gb = a.manifest["grid"], b.manifest["grid"]
    diffs = [f"{k}: {ga.get(k)} vs {gb.get(k)}" for k in ("crs", "width", "height", "transform") if ga.get(k) != gb.get(k)]
    raise GridMismatchError(f"runs {a.path} and {b.path} are not on the same grid (manifest 'grid' differs: "
                            f"{'; '.join(diffs) or 'transform beyond tolerance'}); compare runs made on one "
                            "reference grid")


def check_same_services(a: RunInfo, b: RunInfo) -> list[str]:
    """The regulating services both runs computed; :class:`ConfigError` if the sets differ.

    Returns
    -------
    list of str
        Regulating-service value raster keys shared by both runs (order of run a). The economic
        accounts (EPV, ECV, GEP) are not part of this check (see :func:`compare_runs`)."""
    ka, kb = set(a.value_keys), set(b.value_keys)
    if ka != kb:
        raise ConfigError(f"runs {a.path} and {b.path} computed different services: only in a: "
                          f"{sorted(ka - kb) or 'none'}; only in b: {sorted(kb - ka) or 'none'} (compare runs with the "
                          "same services enabled)")
    return list(a.value_keys)


def growth_pct(a, b):
    """Growth rate in percent, 100 (b − a) / |a|; NaN where a is 0 or NaN.

    Parameters
    ----------
    a, b : float or array-like
        Values of run a and run b (same unit).

    Returns
    -------
    float or numpy.ndarray
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where((a != 0) & np.isfinite(a), 100.0 * (b - a) / np.abs(a), np.nan)
    return g if g.ndim else float(g)


def _flatten(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = d
    return out


def config_differences(a: RunInfo, b: RunInfo) -> list[dict]:
    """Configuration keys whose values differ between the two runs (``name``, ``description`` and
    ``output`` left out): what, besides the data, distinguishes a from b.

    Returns
    -------
    list of dict
        ``{"key": "inputs.land_cover.path", "a": ..., "b": ...}`` (dotted keys, absent = None)."""
    fa = _flatten((a.manifest.get("config") or {}))
    fb = _flatten((b.manifest.get("config") or {}))
    return [{"key": k, "a": fa.get(k), "b": fb.get(k)} for k in sorted(set(fa) | set(fb))
            if k not in ("name", "description") and not k.startswith("output.") and fa.get(k) != fb.get(k)]


def _records(m: dict, section: str) -> dict:
    return {r.get("key"): r.get("value") for r in (m.get(section) or []) if isinstance(r, dict)}


def run_warnings(a: RunInfo, b: RunInfo, services: list[str] | None = None) -> list[str]:
    """Differences between two runs that change the meaning of their Δ (prices, parameters, methods,
    scenario inputs not applied, carbon rasters that do not follow land-cover edits)."""
    out = []
    for section in ("prices", "parameters"):
        ra, rb = _records(a.manifest, section), _records(b.manifest, section)
        diff = [f"{k}: {ra.get(k)} vs {rb.get(k)}" for k in sorted(set(ra) | set(rb), key=str) if ra.get(k) != rb.get(k)]
        if diff:
            out.append(f"{section} differ between the runs ({'; '.join(diff[:8])}{' ...' if len(diff) > 8 else ''}): "
                       "a value Δ mixes the change of quantity with this change")
    ma, mb = a.manifest.get("methods") or {}, b.manifest.get("methods") or {}
    for s in sorted(set(ma) | set(mb)):
        if services is not None and s not in services:
            continue
        if ma.get(s) != mb.get(s):
            out.append(f"method of {s} differs: a: {ma.get(s)!r}; b: {mb.get(s)!r}")
    ca = ((a.manifest.get("config") or {}).get("inputs") or {}).get("carbon") or {}
    cb = ((b.manifest.get("config") or {}).get("inputs") or {}).get("carbon") or {}
    if "stock_change" in (ca.get("method"), cb.get("method")) and (services is None or "carbon_sequestration" in services):
        out.append("carbon sequestration is a carbon-stock change (land_cover -> alternate_land_cover, spread over "
                   "`years`) in at least one run: it is the flux of a land-cover transition, so its Δ compares "
                   "transitions, not the sequestration of two landscapes")
    for r in (a, b):
        out.extend(scenario_warnings(r))
    return out


def scenario_warnings(r: RunInfo) -> list[str]:
    """Warnings about a run's land-cover scenario (config ``scenario``), read from its manifest."""
    out = []
    cfg = r.manifest.get("config") or {}
    sc = cfg.get("scenario")
    if not sc:
        return out
    inputs = r.manifest.get("inputs") or {}
    lc = inputs.get("lc") or {}
    if "scenario" not in lc:
        out.append(f"run {r.label}: its config has scenario '{sc.get('name')}' but the manifest's land-cover input "
                   "shows no scenario: the scenario was NOT applied (pipeline hook missing?)")
    set_keys = {k for e in sc.get("edits", []) for k in (e.get("set_inputs") or {})}
    for key in sorted(set_keys):
        src = next((v for v in inputs.values() if isinstance(v, dict) and v.get("name") == f"inputs.{key}"), None)
        if src is None or "scenario" not in src:
            out.append(f"run {r.label}: scenario set_inputs.{key} was NOT applied to inputs.{key} (pipeline hook "
                       "gep_raster.analysis.scenario.wrap_inputs missing?)")
    method = ((cfg.get("inputs") or {}).get("carbon") or {}).get("method")
    if method in ("nep", "npp") and "carbon" not in set_keys:
        out.append(f"run {r.label}: carbon comes from an {method.upper()} raster, which does not follow the scenario's "
                   "land-cover edits (edited pixels keep their observed flux); set `set_inputs: {carbon: ...}` on the "
                   "edits to change it")
    return out


# --------------------------------------------------------------------------------------
# rasters
# --------------------------------------------------------------------------------------
def _read(ds, r0, r1, c0, c1) -> np.ndarray:
    from rasterio.windows import Window

    a = ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0)).astype(np.float64)
    nd = ds.nodata
    if nd is not None and np.isfinite(nd):
        a[a == nd] = np.nan
    return a


def _delta_raster(key: str, a: RunInfo, b: RunInfo, out_path: Path, chunk: int, tags: dict) -> dict:
    import rasterio

    from ..outputs.io_write import BlockRasterWriter

    ra, rb = a.rasters[key], b.rasters[key]
    grid = a.grid
    s_a = s_b = s_d = 0.0
    n_both = n_a = n_b = 0
    with rasterio.open(ra["path"]) as da_, rasterio.open(rb["path"]) as db_:
        for ds, r in ((da_, a), (db_, b)):
            if (ds.height, ds.width) != grid.shape:
                raise GridMismatchError(f"{ds.name}: shape {(ds.height, ds.width)} differs from the run's grid "
                                        f"{grid.shape} ({r.path / 'manifest.json'})")
        w = BlockRasterWriter(out_path, grid)
        try:
            for r0, r1, c0, c1 in grid.block_windows(chunk):
                va, vb = _read(da_, r0, r1, c0, c1), _read(db_, r0, r1, c0, c1)
                fa, fb = np.isfinite(va), np.isfinite(vb)
                both = fa & fb
                d = np.where(both, vb - va, np.nan)
                w.write(r0, c0, d.astype(np.float32))
                n_both += int(both.sum())
                n_a += int((fa & ~fb).sum())
                n_b += int((fb & ~fa).sum())
                s_a += float(va[both].sum())
                s_b += float(vb[both].sum())
                s_d += float(d[both].sum())
            unit = ra["unit"]
            w.finalize(tags={**tags, "key": key, "service": ra["service"], "kind": f"delta_{ra['kind']}",
                             "units": unit, "formula": "run b - run a; NaN where either run has no value"},
                       description=f"Change (run b - run a) of: {ra['description'] or key}", units=unit)
        except BaseException:
            w.abort()
            raise
    return {"key": key, "service": ra["service"], "kind": ra["kind"], "unit": ra["unit"],
            "pixels_both": n_both, "pixels_only_a": n_a, "pixels_only_b": n_b,
            "sum_a_where_both": s_a, "sum_b_where_both": s_b, "sum_delta": s_d}


# --------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------
def _quantity_columns(ta, tb, id_field: str, name_field: str) -> list[str]:
    import pandas as pd

    skip = {id_field, name_field, "geometry", *_AREA_COLUMNS}
    common = [c for c in ta.columns if c in tb.columns and c not in skip
              and pd.api.types.is_numeric_dtype(ta[c]) and pd.api.types.is_numeric_dtype(tb[c])]
    econ = economic_columns(common)
    first = [c for c in ("gep_yuan",) if c in common] + [c for c in ("gep_r_yuan",) if c in common] \
        + econ["epv"] + econ["ecv"] + econ["epv_items"] + econ["ecv_items"]
    return first + [c for c in common if c not in first]


def change_table(ta, tb, id_field: str, name_field: str):
    """Join two account tables of one layer on ``id_field`` and compute the change columns.

    Parameters
    ----------
    ta, tb : pandas.DataFrame
        Tables of run a and run b (``tables/<layer>.csv``), ids as text.
    id_field, name_field : str
        The layer's id and name fields.

    Returns
    -------
    pandas.DataFrame
        One row per id in either table (outer join, order of a then b-only ids): ``id_field``,
        ``name_field``, ``in_runs`` (``both``, ``a_only``, ``b_only``), ``area_km2`` (of a, else b),
        then for every quantity column ``c`` common to both tables: ``c_a``, ``c_b``,
        ``c_delta`` = b − a, ``c_growth_pct`` = 100 (b − a)/|a|.

    Raises
    ------
    InputError
        ``id_field`` missing from a table, or duplicate ids.
    """
    import pandas as pd

    for t, lab in ((ta, "a"), (tb, "b")):
        if id_field not in t.columns:
            raise InputError(f"table of run {lab}: id field '{id_field}' missing (columns: {list(t.columns)})")
        if t[id_field].duplicated().any():
            raise InputError(f"table of run {lab}: duplicate ids in '{id_field}': "
                             f"{t.loc[t[id_field].duplicated(), id_field].tolist()[:10]}")
    cols = _quantity_columns(ta, tb, id_field, name_field)
    keep = [id_field] + ([name_field] if name_field in ta.columns and name_field != id_field else [])
    left = ta[keep + [c for c in ("area_km2",) if c in ta.columns] + cols]
    right = tb[[id_field] + [c for c in (name_field, "area_km2") if c in tb.columns and c != id_field] + cols]
    j = left.merge(right, on=id_field, how="outer", suffixes=("_a", "_b"), indicator=True, sort=False)
    order = {v: i for i, v in enumerate(list(ta[id_field]) + [x for x in tb[id_field] if x not in set(ta[id_field])])}
    j = j.sort_values(id_field, key=lambda s: s.map(order)).reset_index(drop=True)
    out = pd.DataFrame({id_field: j[id_field]})
    if name_field != id_field and f"{name_field}_a" in j:
        out[name_field] = j[f"{name_field}_a"].fillna(j.get(f"{name_field}_b"))
    out["in_runs"] = j["_merge"].map({"both": "both", "left_only": "a_only", "right_only": "b_only"}).astype(str)
    if "area_km2_a" in j:
        out["area_km2"] = j["area_km2_a"].fillna(j.get("area_km2_b"))
    new = {}
    for c in cols:
        a, b = j[f"{c}_a"].to_numpy(np.float64), j[f"{c}_b"].to_numpy(np.float64)
        new[f"{c}_a"] = a
        new[f"{c}_b"] = b
        new[f"{c}_delta"] = b - a
        new[f"{c}_growth_pct"] = growth_pct(a, b)
    # one concat: column-by-column inserts fragment the frame (pandas PerformanceWarning on wide tables)
    return pd.concat([out, pd.DataFrame(new, index=out.index)], axis=1)


# --------------------------------------------------------------------------------------
def compare_runs(run_a, run_b, out_dir, *, include_physical: bool = True, chunk: int = 1024) -> dict:
    """Compare two finished runs (b − a): Δ rasters, per-layer change tables, ``change_manifest.json``.

    Parameters
    ----------
    run_a, run_b : path-like
        Output folders of two finished runs on the same grid with the same services (e.g. two
        years; before/after a project; current vs future land cover). Δ = b − a.
    out_dir : path-like
        Output folder (created); files inside are replaced atomically.
    include_physical : bool
        Also write Δ rasters of the physical quantities (m³/a, t/a, t CO2/a per pixel).
    chunk : int
        Rows/columns of the windows read at a time (memory ≈ 3 × chunk² × 8 bytes).

    Returns
    -------
    dict
        The change manifest (also written to ``out_dir/change_manifest.json``).

    Raises
    ------
    InputError
        A folder is not a finished run, or a raster/table is missing or unreadable.
    GridMismatchError
        The runs are not on the same grid.
    ConfigError
        The runs computed different services, or a layer's id field differs between the runs.
    """
    from ..outputs.io_write import atomic_write_json

    a, b = load_run(run_a), load_run(run_b)
    check_same_grid(a, b)
    value_keys = check_same_services(a, b)
    out = Path(out_dir)
    (out / "rasters" / "delta").mkdir(parents=True, exist_ok=True)
    keys, skipped = _delta_keys(a, b, value_keys, include_physical)
    rasters = _delta_rasters(a, b, keys, out, chunk)
    tables = []
    for name in a.layers:
        if name not in b.layers:
            skipped.append(f"layer '{name}': table only in run a")
            continue
        tables.append(_layer_change(name, a, b, out))
    for name in b.layers:
        if name not in a.layers:
            skipped.append(f"layer '{name}': table only in run b")
    manifest = {
        "gep_raster_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "kind": "change",
        "run_a": _run_entry(a), "run_b": _run_entry(b),
        "definition": {"delta": "b - a (per pixel: NaN where either run has no value)",
                       "growth_pct": "100 * (b - a) / |a|; null where a = 0",
                       "tables": "outer join on the layer's id field; in_runs = both / a_only / b_only"},
        "grid": a.manifest["grid"],
        "services": a.services,
        "methods": {"a": a.manifest.get("methods"), "b": b.manifest.get("methods")},
        "config_differences": config_differences(a, b),
        "outputs": ([{"path": r["path"], "service": r["service"], "kind": f"delta_{r['kind']}", "unit": r["unit"]}
                     for r in rasters]
                    + [{"path": t["path"], "service": "all", "kind": "change_table", "layer": t["layer"],
                        "unit": "see the run's table units"} for t in tables]
                    + [{"path": t["gpkg"], "service": "all", "kind": "change_table", "layer": t["layer"],
                        "unit": "see the run's table units", "format": "gpkg"} for t in tables if "gpkg" in t]),
        "rasters": rasters,
        "tables": tables,
        "skipped": skipped,
        "totals": _total_changes(a, b),
        "warnings": run_warnings(a, b, a.services),
    }
    atomic_write_json(out / "change_manifest.json", manifest)
    for w in manifest["warnings"]:
        log.warning("compare: %s", w)
    return manifest


def _delta_keys(a: RunInfo, b: RunInfo, value_keys: list, include_physical: bool) -> tuple[list, list]:
    """Rasters to compare (GEP-R, values, economic rasters of both runs, physical quantities if asked) and the
    skipped ones (economic rasters of one run only)."""
    keys = ["gep_r_yuan"] + value_keys
    econ_a, econ_b = set(a.economic_keys), set(b.economic_keys)
    keys += [k for k in a.economic_keys if k in econ_b]
    skipped = [f"raster {k}: only in run {'a' if k in econ_a else 'b'} (economic accounts)"
               for k in sorted(econ_a ^ econ_b)]
    if include_physical:
        keys += [k for k in a.physical_keys if k in b.rasters]
    return keys, skipped


def _delta_rasters(a: RunInfo, b: RunInfo, keys: list, out: Path, chunk: int) -> list[dict]:
    """``rasters/delta/<key>_delta.tif`` (b − a) of every key, with its sums and growth where both have values."""
    tags = {"gep_raster_version": __version__, "run_a": str(a.path), "run_b": str(b.path),
            "run_a_hash": a.manifest.get("run_hash", ""), "run_b_hash": b.manifest.get("run_hash", "")}
    rasters = []
    for key in keys:
        rel = Path("rasters") / "delta" / f"{key}_delta.tif"
        info = _delta_raster(key, a, b, out / rel, chunk, tags)
        info["path"] = str(rel)
        info["growth_pct_where_both"] = growth_pct(info["sum_a_where_both"], info["sum_b_where_both"])
        rasters.append(info)
    return rasters


def _layer_change(name: str, a: RunInfo, b: RunInfo, out: Path) -> dict:
    """``tables/<layer>_change.csv`` (and .gpkg when a run has the layer's geometry) of one layer; its manifest
    entry (rows matched / only in a / only in b, columns compared, a warning when polygon areas differ).

    Raises
    ------
    ConfigError
        The layer's id field differs between the runs.
    """
    from ..outputs.io_write import atomic_to_csv

    la, lb = a.layers[name], b.layers[name]
    if la["id_field"] != lb["id_field"]:
        raise ConfigError(f"layer '{name}': id field '{la['id_field']}' in run a ({a.path}) but "
                          f"'{lb['id_field']}' in run b ({b.path}); the tables cannot be joined")
    ta, tb = a.read_table(name), b.read_table(name)
    tab = change_table(ta, tb, la["id_field"], la["name_field"])
    csv = out / "tables" / f"{name}_change.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    atomic_to_csv(tab, csv)
    entry = {"layer": name, "path": str(csv.relative_to(out)), "id_field": la["id_field"],
             "rows": int(len(tab)), "matched": int((tab["in_runs"] == "both").sum()),
             "only_a": tab.loc[tab["in_runs"] == "a_only", la["id_field"]].tolist(),
             "only_b": tab.loc[tab["in_runs"] == "b_only", la["id_field"]].tolist(),
             "columns_compared": [c[:-2] for c in tab.columns if c.endswith("_a") and c != "area_km2"]}
    if "area_km2" in ta and "area_km2" in tb:
        m = ta[[la["id_field"], "area_km2"]].merge(tb[[la["id_field"], "area_km2"]], on=la["id_field"])
        bad = m[~np.isclose(m["area_km2_x"], m["area_km2_y"], rtol=1e-6, atol=1e-9)]
        if len(bad):
            entry["warning"] = (f"{len(bad)} polygon(s) have another area in run b (e.g. id {bad.iloc[0, 0]}): "
                                "the layers' polygons differ, so the change mixes a boundary change")
    if la["gpkg"] or lb["gpkg"]:
        entry["gpkg"] = _change_gpkg(name, tab, la, lb, out)
    return entry


def _change_gpkg(name: str, tab, la: dict, lb: dict, out: Path) -> str:
    """The change table joined to the polygons of run a (and those only in run b) as ``tables/<layer>_change.gpkg``;
    returns its path relative to ``out``."""
    import geopandas as gpd
    import pandas as pd

    from ..outputs.io_write import atomic_to_gpkg

    idf = la["id_field"]
    gpkg_src = la["gpkg"] or lb["gpkg"]
    geo = gpd.read_file(gpkg_src)[[idf, "geometry"]]
    geo[idf] = geo[idf].astype(str)
    if lb["gpkg"] is not None and gpkg_src != lb["gpkg"]:
        gb = gpd.read_file(lb["gpkg"])[[idf, "geometry"]]
        gb[idf] = gb[idf].astype(str)
        geo = gpd.GeoDataFrame(pd.concat([geo, gb[~gb[idf].isin(geo[idf])]], ignore_index=True),
                               geometry="geometry", crs=geo.crs)
    gdf = gpd.GeoDataFrame(tab.merge(geo, on=idf, how="left"), geometry="geometry", crs=geo.crs)
    gp = out / "tables" / f"{name}_change.gpkg"
    atomic_to_gpkg(gdf, gp, layer=f"{name}_change")
    return str(gp.relative_to(out))


def _total_changes(a: RunInfo, b: RunInfo) -> dict:
    """Every manifest total present in both runs: unit, a, b, delta = b − a, growth_pct."""
    totals = {}
    ta_, tb_ = a.manifest.get("totals") or {}, b.manifest.get("totals") or {}
    for k in ta_:
        if k in tb_:
            va, vb = ta_[k].get("sum"), tb_[k].get("sum")
            if va is None or vb is None:
                continue
            totals[k] = {"unit": ta_[k].get("unit"), "a": va, "b": vb, "delta": vb - va, "growth_pct": growth_pct(va, vb)}
    return totals


def _run_entry(r: RunInfo) -> dict:
    """The change manifest's record of one run (path, name, year, hashes, scenario name)."""
    m = r.manifest
    return {"path": str(r.path.resolve()), "run_name": m.get("run_name"), "accounting_year": m.get("accounting_year"),
            "run_hash": m.get("run_hash"), "config_sha256": m.get("config_sha256"),
            "scenario": ((m.get("config") or {}).get("scenario") or {}).get("name")}


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------
def register(app) -> None:
    """Add ``gep compare RUN_A RUN_B -o OUT`` to the typer ``app``."""
    import typer

    from ..cli_common import (command, debug_option, log_file_option, log_json_option, log_level_option,
                              quiet_option, verbose_option)

    @app.command("compare")
    def compare(run_a: Path = typer.Argument(..., help="Output folder of the first run (a)."),
                run_b: Path = typer.Argument(..., help="Output folder of the second run (b); changes are b - a."),
                output: Path = typer.Option(..., "--output", "-o", help="Output folder of the change report."),
                no_physical: bool = typer.Option(False, "--no-physical", help="Only value and GEP-R Δ rasters."),
                quiet: bool = quiet_option(), verbose: int = verbose_option(),
                log_level: Optional[str] = log_level_option(), log_file: Optional[Path] = log_file_option(),
                log_json: bool = log_json_option(), debug: bool = debug_option()):
        """Change between two finished runs (b - a): Δ rasters, per-layer change tables, change_manifest.json."""
        with command(quiet, verbose, log_level, log_file, log_json, debug) as out:
            m = compare_runs(run_a, run_b, output, include_physical=not no_physical)
            out.result(f"change {m['run_a']['run_name']} -> {m['run_b']['run_name']} written to {output}")
            for k, t in m["totals"].items():
                if k.endswith("_yuan"):
                    g = t["growth_pct"]
                    out.detail(f"  {k:32s} a {t['a']:>18,.0f}  b {t['b']:>18,.0f}  Δ {t['delta']:>+18,.0f} yuan/a"
                               + (f"  ({g:+.2f} %)" if g is not None and np.isfinite(g) else ""))
            for w in m["warnings"]:
                out.warning(w)
