"""VEP (特定地域单元生态产品价值): the account of each special unit of a run, and a projection.

VEP of a special unit (a parcel to lease or pledge, a project area, a village) is the value of all
ecosystem products located there: the zonal sum of the per-pixel regulating-service values (GEP-R)
plus, where the run has them, the provisioning (EPV) and cultural (ECV) values allocated to the unit
(methods note §4, engine implication 1). The account comes from the run's table of a layer with
``role: special_unit`` (exact coverage fractions, so sub-pixel units get their share).

Account (``vep_account.csv``), one row per unit: id, name, area, every service's physical quantity
and value, GEP-R, the EPV/ECV (and GEP) columns when present, and

* ``vep_yuan`` = ``gep_yuan`` when the run wrote a GEP column (:mod:`gep_raster.accounts.economic`: GEP-R +
  ``provisioning_yuan`` + ``cultural_yuan``), else GEP-R + EPV + ECV (EPV = ``provisioning_yuan``, or
  ``epv_yuan``, or the sum of the ``epv_<item>_yuan`` columns; ECV likewise with ``cultural_yuan``);
  a missing account counts 0 and is named in ``vep_basis``;
* ``vep_yuan_per_km2`` = VEP / polygon area; ``share_<service>_pct`` = service value / VEP × 100.

Projection of future expected value (optional; ``years`` T, growth rate g, discount rate r, all
three required, none has a default):

    V_t = V0 (1 + g)^t,  PV_t = V_t / (1 + r)^t,  t = 1 .. T
    NPV = Σ_{t=1..T} V0 (1 + g)^t / (1 + r)^t = V0 · A,   A = Σ_{t=1..T} q^t,  q = (1 + g)/(1 + r)

V0 is the accounting year's VEP (yuan/a, at the run's prices); year t is the t-th year after the
accounting year (end-of-year flows, the first one already grown once). g and r must be on the same
basis (both real or both nominal). These are user inputs, not standard values (transaction practice
in the methods note §4 spreads payments over 25 years, Jinyun PV, [V2]; no discount rate is given
there). ``vep_projection.csv`` lists V_t and PV_t per unit and year; ``vep_account.json`` records
the formula, the parameters and the annuity factor A.
"""
from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import Optional

import numpy as np

from .._version import __version__
from .change import RunInfo, economic_columns, load_run
from ..errors import ConfigError

log = logging.getLogger("gep_raster")

__all__ = ["vep_account", "annuity_factor", "projection", "register"]


def annuity_factor(years: int, growth: float, discount: float) -> float:
    """A = Σ_{t=1..T} ((1 + g)/(1 + r))^t.

    Parameters
    ----------
    years : int
        T ≥ 1.
    growth, discount : float
        g and r as fractions per year (0.02 = 2 %/a), each > −1.

    Returns
    -------
    float
        The factor that turns the accounting year's annual value V0 into the NPV of T years.

    Raises
    ------
    ConfigError
        T < 1 or not an integer, g or r ≤ −1 or not finite.
    """
    _check_params(years, growth, discount)
    t = np.arange(1, int(years) + 1, dtype=np.float64)
    return float(np.sum(((1.0 + growth) / (1.0 + discount)) ** t))


def _check_params(years, growth, discount):
    if years is None or growth is None or discount is None:
        raise ConfigError("projection: give all three of --years, --growth and --discount (none has a default)")
    if int(years) != years or years < 1:
        raise ConfigError(f"projection: --years must be a whole number >= 1, got {years}")
    for name, v in (("growth", growth), ("discount", discount)):
        if not np.isfinite(v) or v <= -1:
            raise ConfigError(f"projection: --{name} must be a fraction per year > -1 (0.02 = 2 %/a), got {v}")


def projection(v0, years: int, growth: float, discount: float):
    """Annual values and present values of a constant-growth stream.

    Parameters
    ----------
    v0 : array-like, shape (n,)
        Values of the accounting year (yuan/a).
    years, growth, discount
        See :func:`annuity_factor`.

    Returns
    -------
    t : numpy.ndarray, shape (T,)
        1 .. T.
    values : numpy.ndarray, shape (n, T)
        V_t = V0 (1 + g)^t (yuan/a).
    present : numpy.ndarray, shape (n, T)
        PV_t = V_t / (1 + r)^t (yuan).
    npv : numpy.ndarray, shape (n,)
        Σ_t PV_t (yuan).
    """
    _check_params(years, growth, discount)
    v0 = np.asarray(v0, dtype=np.float64).reshape(-1)
    t = np.arange(1, int(years) + 1, dtype=np.float64)
    values = v0[:, None] * (1.0 + growth) ** t[None, :]
    present = values / (1.0 + discount) ** t[None, :]
    return t.astype(int), values, present, present.sum(axis=1)


def vep_account(run, layer: str, out_dir, *, years: int | None = None, growth: float | None = None,
                discount: float | None = None) -> dict:
    """VEP account of the special units of a finished run, with an optional NPV projection.

    Parameters
    ----------
    run : path-like
        Output folder of a finished run.
    layer : str
        Name of a layer of the run with ``role: special_unit`` (its table ``tables/<layer>.csv``).
    out_dir : path-like
        Output folder (created): ``vep_account.csv``, ``vep_account.json`` and, with a projection,
        ``vep_projection.csv``.
    years, growth, discount : optional
        Projection horizon T (years), growth rate g and discount rate r (fractions per year); give
        all three or none.

    Returns
    -------
    dict
        The content of ``vep_account.json`` (parameters, formula, units, totals, per-unit rows).

    Raises
    ------
    InputError
        Not a finished run; table unreadable.
    ConfigError
        Unknown layer, a layer whose role is not ``special_unit``, incomplete or invalid projection
        parameters.
    """
    from ..outputs.io_write import atomic_to_csv, atomic_write_json

    r = load_run(run)
    _check_special_unit_layer(r, layer)
    projecting = any(v is not None for v in (years, growth, discount))
    if projecting:
        _check_params(years, growth, discount)
    acc, cols = _account_columns(r, layer)
    vep, basis = _vep_column(acc, cols["econ"])
    _vep_shares(acc, vep, cols)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = ["vep_account.csv", "vep_account.json"]
    proj_info = None
    if projecting:
        rows, proj_info = _projection(acc, cols, vep, int(years), float(growth), float(discount),
                                      r.manifest.get("accounting_year"))
        atomic_to_csv(rows, out / "vep_projection.csv")
        files.append("vep_projection.csv")
    atomic_to_csv(acc, out / "vep_account.csv")
    units = {"area_km2": "km2", "valid_area_km2": "km2", "vep_yuan": "yuan/a", "vep_yuan_per_km2": "yuan/km2/a",
             "gep_r_yuan": "yuan/a", "vep_npv_yuan": "yuan"}
    for k in cols["phys"] + cols["vals"]:
        units[k] = r.rasters[k]["unit"].replace(" per pixel", "")
    for k in cols["econ_cols"]:
        units[k] = "yuan/a"
    res = {
        "gep_raster_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "kind": "vep",
        "run": {"path": str(r.path.resolve()), "run_name": r.manifest.get("run_name"),
                "run_hash": r.manifest.get("run_hash"), "accounting_year": r.manifest.get("accounting_year")},
        "layer": layer, "id_field": cols["idf"], "name_field": cols["nmf"],
        "vep_basis": basis,
        "definition": "VEP = value of all ecosystem products located in the unit: GEP-R (exact-coverage zonal sum of "
                      "the per-pixel service values) + EPV + ECV when present (methods note §4)",
        "services": r.services,
        "units": {c: units.get(c, "%" if c.endswith("_pct") else "") for c in acc.columns},
        "totals": {"vep_yuan": float(np.nansum(vep)), "gep_r_yuan": float(acc["gep_r_yuan"].sum())},
        "projection": proj_info,
        "outputs": files,
        "rows": acc.astype(object).where(acc.notna(), None).to_dict("records"),
    }
    atomic_write_json(out / "vep_account.json", res)
    return res


def _check_special_unit_layer(r: RunInfo, layer: str) -> None:
    """``layer`` is a layer of the run, with role ``special_unit`` and a table. Raises ConfigError otherwise."""
    cfg_layers = (r.manifest.get("config") or {}).get("layers") or {}
    if layer not in cfg_layers:
        raise ConfigError(f"layer '{layer}' is not a layer of run {r.path} (layers: {sorted(cfg_layers)})")
    role = cfg_layers[layer].get("role", "admin")
    if role != "special_unit":
        sp = [n for n, lc in cfg_layers.items() if lc.get("role") == "special_unit"]
        raise ConfigError(f"layers.{layer} of run {r.path} has role '{role}', not special_unit; VEP is the account of "
                          f"special units (layers with role special_unit: {sp or 'none'})")
    if layer not in r.layers:
        raise ConfigError(f"run {r.path}: no table tables/{layer}.csv for layer '{layer}'")


def _account_columns(r: RunInfo, layer: str):
    """The layer's table reduced to id, name, areas, physical quantities, values, GEP-R and economic columns; and
    a dict of the column groups (``idf``, ``nmf``, ``phys``, ``vals``, ``econ``, ``econ_cols``)."""
    info = r.layers[layer]
    idf, nmf = info["id_field"], info["name_field"]
    t = r.read_table(layer)
    cols = [idf] + ([nmf] if nmf != idf else []) + [c for c in ("area_km2", "valid_area_km2") if c in t]
    phys = [k for k in r.physical_keys if k in t.columns]
    vals = [k for k in r.value_keys if k in t.columns]
    econ = economic_columns(t.columns)
    econ_cols = econ["gep"] + econ["epv"] + econ["ecv"] + econ["epv_items"] + econ["ecv_items"]
    acc = t[cols + phys + vals + ["gep_r_yuan"] + econ_cols].copy()
    return acc, {"idf": idf, "nmf": nmf, "phys": phys, "vals": vals, "econ": econ, "econ_cols": econ_cols}


def _vep_column(acc, econ: dict) -> tuple[np.ndarray, str]:
    """VEP per unit (yuan/a, float64 (n,)): the run's GEP column, else GEP-R + EPV + ECV (their totals, or the
    sum of their items; 0 when absent); and the description of that basis."""
    def total(kind):
        if econ[kind]:
            return acc[econ[kind][0]].to_numpy(np.float64), econ[kind][0]
        items = econ[f"{kind}_items"]
        if items:
            return acc[items].sum(axis=1).to_numpy(np.float64), " + ".join(items)
        return np.zeros(len(acc)), None

    epv, epv_src = total("epv")
    ecv, ecv_src = total("ecv")
    if econ["gep"]:
        return acc["gep_yuan"].to_numpy(np.float64), "gep_yuan (the run's GEP = GEP-R + EPV + ECV column)"
    vep = acc["gep_r_yuan"].to_numpy(np.float64) + epv + ecv
    basis = ("gep_r_yuan" + (f" + EPV ({epv_src})" if epv_src else "") + (f" + ECV ({ecv_src})" if ecv_src else "")
             + ("" if epv_src and ecv_src else
                f"; {' and '.join(k for k, s in (('EPV', epv_src), ('ECV', ecv_src)) if not s)} not in the run "
                "(counted 0)"))
    return vep, basis


def _vep_shares(acc, vep: np.ndarray, cols: dict) -> None:
    """Adds ``vep_yuan``, ``vep_yuan_per_km2`` and ``share_<value>_pct`` (% of VEP; NaN where VEP = 0) to ``acc``."""
    econ = cols["econ"]
    acc["vep_yuan"] = vep
    with np.errstate(divide="ignore", invalid="ignore"):
        acc["vep_yuan_per_km2"] = np.where(acc["area_km2"] > 0, vep / acc["area_km2"], np.nan) if "area_km2" in acc \
            else np.nan
        for k in cols["vals"] + ["gep_r_yuan"] + econ["epv"] + econ["ecv"]:  # shares of VEP
            acc[f"share_{k.removesuffix('_yuan')}_pct"] = np.where(vep != 0, 100.0 * acc[k].to_numpy(np.float64) / vep,
                                                                 np.nan)


def _projection(acc, cols: dict, vep: np.ndarray, years: int, growth: float, discount: float, year0):
    """NPV of every unit (adds ``vep_npv_yuan`` to ``acc``) and the per-year projection table; returns
    (table, the account's projection record)."""
    import pandas as pd

    idf, nmf = cols["idf"], cols["nmf"]
    tt, values, present, npv = projection(vep, years, growth, discount)
    A = annuity_factor(years, growth, discount)
    acc["vep_npv_yuan"] = npv
    n, T = values.shape
    rows = pd.DataFrame({idf: np.repeat(acc[idf].to_numpy(), T)})
    if nmf != idf:
        rows[nmf] = np.repeat(acc[nmf].to_numpy(), T)
    rows["t"] = np.tile(tt, n)
    rows["year"] = (np.tile(tt, n) + int(year0)) if year0 is not None else pd.NA
    rows["value_yuan"] = values.reshape(-1)
    rows["discount_factor"] = np.tile(1.0 / (1.0 + discount) ** tt, n)
    rows["present_value_yuan"] = present.reshape(-1)
    info = {"years": years, "growth": growth, "discount": discount,
            "parameters_source": "user input (not standard values)",
            "formula": "NPV = sum_{t=1..T} V0 (1+g)^t / (1+r)^t = V0 * A, A = sum_{t=1..T} ((1+g)/(1+r))^t; "
                       "V0 = accounting-year VEP; t = years after the accounting year (end-of-year flows)",
            "annuity_factor": A, "first_year": (int(year0) + 1) if year0 is not None else None,
            "npv_total_yuan": float(npv.sum())}
    return rows, info


def register(app) -> None:
    """Add ``gep vep RUN --layer L [--years T --growth g --discount r] -o OUT`` to the typer ``app``."""
    import typer

    from ..cli_common import (command, debug_option, log_file_option, log_json_option, log_level_option,
                              quiet_option, verbose_option)

    @app.command("vep")
    def vep(run: Path = typer.Argument(..., help="Output folder of a finished run."),
            layer: str = typer.Option(..., "--layer", help="Layer with role special_unit."),
            output: Path = typer.Option(..., "--output", "-o", help="Output folder."),
            years: Optional[int] = typer.Option(None, "--years", min=1, help="Projection horizon T (years)."),
            growth: Optional[float] = typer.Option(None, "--growth", help="Growth rate g of the annual value (0.02 = 2 %/a)."),
            discount: Optional[float] = typer.Option(None, "--discount", help="Discount rate r (0.045 = 4.5 %/a)."),
            quiet: bool = quiet_option(), verbose: int = verbose_option(),
            log_level: Optional[str] = log_level_option(), log_file: Optional[Path] = log_file_option(),
            log_json: bool = log_json_option(), debug: bool = debug_option()):
        """VEP account of the special units of RUN; with --years/--growth/--discount also the NPV of future value."""
        with command(quiet, verbose, log_level, log_file, log_json, debug) as out:
            res = vep_account(run, layer, output, years=years, growth=growth, discount=discount)
            idf, nmf = res["id_field"], res["name_field"]
            out.result(f"VEP of {len(res['rows'])} special unit(s) of layer {layer}: "
                       f"{sum(r['vep_yuan'] for r in res['rows']):,.0f} yuan/a -> {output}")
            for row in res["rows"]:
                line = f"  {row[idf]} {row.get(nmf, '') if nmf != idf else ''}: VEP {row['vep_yuan']:,.0f} yuan/a"
                if res["projection"]:
                    line += f"; NPV {res['projection']['years']} years {row['vep_npv_yuan']:,.0f} yuan"
                out.detail(line)
            out.detail(f"  basis: {res['vep_basis']}; written to {output}")
