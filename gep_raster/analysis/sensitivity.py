"""Sensitivity of GEP-R to the prices and parameters that have a documented range.

For every key of a ranges table (default ``gep_raster/data/ranges.csv``: ``key,low,high[,unit],
source[,evidence]``, one row per price or parameter whose spread the methods note or a cited source
documents) the run's GEP-R total is computed with the key at its low and at its high value, all
other keys at their central (run) values, one at a time:

* **prices** and the parameters that only enter the valuation (soil retention: deposition ratio
  λ, bulk density ρ, soil N and P contents) are evaluated **exactly from the central run's totals**,
  without recomputing rasters: each service's value is an explicit function of its physical totals
  and of these keys (water conservation, carbon, oxygen, climate, flood: value = Q × price, linear,
  so V(p) = V_central × p / p_central; soil retention: V = Q × (λ/ρ·P_dredge + C_N·P_N + C_P·P_P);
  air purification: V = Σ_j Q_j × P_j). Each function is first checked against the central run
  (it must reproduce the service's value total to 1e-5); where it does not (a service changed its
  valuation), the key falls back to a rerun;
* **parameters that change physical quantities** (e.g. ``soil_retention.k_constant``) are evaluated
  by rerunning the pipeline (``force=True``, ``progress=False``) with a ``parameters`` override
  into a temporary folder under ``<output>/sensitivity/``, removed afterwards.

Keys whose service is disabled, or that the run does not use (e.g. the K constant when a K raster is
given), are skipped and listed with the reason. With ``prices.price_index`` the range ends of a price
are moved to the accounting year with the same index factor as the central price (the ends are read
as being in the central price's ``price_year``; the shipped rows say when their ends come from other
years).

Outputs in ``<output>/sensitivity/``:

* ``sensitivity.csv``: one row per key, ranked by swing = |GEP-R(high) − GEP-R(low)|;
* ``<layer>_low.csv``, ``<layer>_central.csv``, ``<layer>_high.csv``: the account tables of every
  layer for the combined cases. "low" = every key at the end of its range that gives the lower GEP-R
  (for a price its low end; for e.g. a bulk density its high end), "high" = the other end;
* ``tornado.png``: the swing of each key around the central GEP-R;
* ``manifest.json``: central run, ranges file (sha256), values used, method per key (``exact`` or
  ``rerun``), the checks of the value functions, skipped keys, combined cases, assumptions.

Command line: :func:`register` adds ``gep sensitivity CONFIG [-o OUT] [--ranges CSV]``.
"""
from __future__ import annotations

import datetime as _dt
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

from .._version import __version__
from ..config import RunConfig
from ..errors import ConfigError, TableError

log = logging.getLogger("gep_raster")

DEFAULT_RANGES = "gep_raster/data/ranges.csv"
RANGES_FORMAT = "key,low,high[,unit],source[,evidence]"

#: parameters that enter only the valuation of soil retention (Garzê): value per t of retained soil
#: = λ/ρ·P_dredge + C_N·P_N + C_P·P_P; the physical quantity (t/a) does not depend on them
_SOIL = {
    "lam": "soil_retention.sediment_deposition_ratio",
    "rho": "soil_retention.bulk_density",
    "cn": "soil_retention.soil_n_content",
    "cp": "soil_retention.soil_p_content",
    "ps": "soil_retention.dredging_cost",
    "pn": "soil_retention.nitrogen_price",
    "pp": "soil_retention.phosphorus_price",
}


# ---------------------------------------------------------------------------------------------
# ranges table
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Range:
    """One row of a ranges table: the documented spread of a price or parameter.

    ``low`` and ``high`` are in the unit of the key (for a price: yuan per unit in the price's
    ``price_year``); ``evidence`` is the weakest mark of the two ends; ``origin`` the file and line.
    """

    key: str
    low: float
    high: float
    unit: str | None
    source: str
    evidence: str
    origin: str


def load_ranges(path: str | Path | None = None) -> tuple[str, str, dict[str, Range]]:
    """Read and check a ranges table.

    Parameters
    ----------
    path : str or Path, optional
        CSV ``key,low,high[,unit],source[,evidence]``; default: the shipped
        ``gep_raster/data/ranges.csv``.

    Returns
    -------
    (label, sha256, ranges)
        File label for messages, sha256 of the file bytes, and the rows by key (file order).

    Raises
    ------
    TableError
        Naming the file, the line and the column: file missing or unreadable, a required column
        missing, a blank or duplicate key, ``low``/``high`` not finite numbers or ``low > high``, an
        empty ``source``, an unknown evidence mark.
    """
    import hashlib
    import io

    from ..tables import _is_blank, _line, normalize_evidence

    if path is None:
        data = resources.files("gep_raster.data").joinpath("ranges.csv").read_bytes()
        label = DEFAULT_RANGES
    else:
        p = Path(path)
        if not p.is_file():
            raise TableError(f"ranges: file not found: {p}")
        data = p.read_bytes()
        label = str(p)
    try:
        df = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig")
    except Exception as exc:  # pandas raises many types
        raise TableError(f"ranges {label}: cannot read CSV: {exc}") from None
    missing = [c for c in ("key", "low", "high", "source") if c not in df.columns]
    if missing:
        raise TableError(f"ranges {label}: column(s) {missing} missing (format: {RANGES_FORMAT}; "
                         f"found {list(df.columns)})")
    out: dict[str, Range] = {}
    lines: dict[str, int] = {}
    for i, r in enumerate(df.to_dict("records")):
        n = _line(i)
        if _is_blank(r["key"]):
            raise TableError(f"ranges {label}: line {n}, column 'key': empty")
        key = str(r["key"]).strip()
        at = f"ranges {label}: line {n} ({key})"
        if key in out:
            raise TableError(f"ranges {label}: key '{key}' appears twice (lines {lines[key]} and {n})")
        vals = {}
        for col in ("low", "high"):
            try:
                v = float(r[col])
            except (TypeError, ValueError):
                v = float("nan")
            if not np.isfinite(v):
                raise TableError(f"{at}, column '{col}': {r[col]!r} is not a finite number")
            vals[col] = v
        if vals["low"] > vals["high"]:
            raise TableError(f"{at}: low {vals['low']} is above high {vals['high']}")
        if _is_blank(r["source"]):
            raise TableError(f"{at}, column 'source': empty; say where each end of the range comes from")
        unit = None if _is_blank(r.get("unit")) else str(r["unit"]).strip()
        ev = normalize_evidence(r.get("evidence"), f"{at}, column 'evidence'")
        out[key] = Range(key, vals["low"], vals["high"], unit, str(r["source"]).strip(), ev, f"{label} line {n}")
        lines[key] = n
    return label, hashlib.sha256(data).hexdigest(), out


# ---------------------------------------------------------------------------------------------
# value functions: a service's value total as a function of its prices / valuation parameters
# ---------------------------------------------------------------------------------------------
@dataclass
class ValueModel:
    """Value of one service (yuan/a) as an explicit function of physical totals and key values.

    ``fn(t, v)``: ``t`` maps output keys to totals (a dict of floats, or a DataFrame of per-polygon
    sums), ``v`` maps price/parameter keys to values; returns the service's value (same shape as
    the entries of ``t``). ``keys``: the keys the function can vary exactly.
    """

    service: str
    description: str
    keys: frozenset
    fn: Callable
    check: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.check.get("ok"))


def build_value_models(totals: dict, central: dict, price_service: dict[str, str],
                       services: list[str]) -> dict[str, ValueModel]:
    """Value functions of the enabled services, each checked against the central run.

    Parameters
    ----------
    totals : dict
        Central run totals by output key (``manifest['totals'][k]['sum']``).
    central : dict
        Central values of every price and parameter used by the run (price values as used,
        i.e. after any price-index correction).
    price_service : dict
        Price key -> service, for the prices the run uses.
    services : list of str
        Enabled services.

    Returns
    -------
    dict
        Service -> :class:`ValueModel` for the services with a known function; a model whose check
        fails (relative difference above 1e-5) is returned with ``check['ok'] = False``.
    """
    models: dict[str, ValueModel] = {}
    for s in services:
        pkeys = sorted(k for k, sv in price_service.items() if sv == s)
        vkey = f"{s}_yuan"
        if vkey not in totals or not pkeys:
            continue
        model = None
        if s == "soil_retention" and set(pkeys) <= set(_SOIL.values()) and all(k in central for k in _SOIL.values()) \
                and "soil_retention_t" in totals:
            k = _SOIL

            def fn(t, v, k=k):
                return t["soil_retention_t"] * (v[k["lam"]] / v[k["rho"]] * v[k["ps"]] + v[k["cn"]] * v[k["pn"]]
                                                + v[k["cp"]] * v[k["pp"]])

            model = ValueModel(s, "Q_t * (lambda/rho * P_dredge + C_N * P_N + C_P * P_P) (Garze)",
                               frozenset(_SOIL.values()), fn)
        elif s == "air_purification":
            qk = {k: f"air_purification_{k.split('.', 1)[1].removesuffix('_price')}_t" for k in pkeys}
            if all(q in totals for q in qk.values()):
                def fn(t, v, qk=qk):
                    return sum(t[q] * v[k] for k, q in qk.items())

                model = ValueModel(s, "sum_j Q_j * P_j (capacity method)", frozenset(qk), fn)
        elif len(pkeys) == 1 and central.get(pkeys[0], 0) > 0:
            p0, k0 = central[pkeys[0]], pkeys[0]

            def fn(t, v, k0=k0, p0=p0, vkey=vkey):
                return t[vkey] * (v[k0] / p0)

            model = ValueModel(s, f"value linear in its only price: V_central * p / {p0:g}", frozenset({k0}), fn)
        if model is None:
            continue
        got, want = float(model.fn(totals, central)), float(totals[vkey])
        rel = abs(got - want) / max(abs(want), abs(got), 1e-300) if (got or want) else 0.0
        model.check = {"function_at_central": got, "run_total": want, "rel_diff": rel, "ok": bool(rel <= 1e-5)}
        if not model.ok:
            log.warning("sensitivity: the value function of %s (%s) gives %.6g, the run %.6g (rel. diff %.2g); "
                        "its keys are rerun instead", s, model.description, got, want, rel)
        models[s] = model
    return models


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
@dataclass
class SensitivityResult:
    """Outputs of :func:`run_sensitivity`.

    ``table``: the content of ``sensitivity.csv``; ``tables``: layer -> {"low", "central", "high"}
    account tables (DataFrames, no geometry); ``manifest``: the content of ``manifest.json``.
    """

    output_dir: Path
    table: pd.DataFrame
    tables: dict
    manifest: dict
    manifest_path: Path


@dataclass
class _Row:
    key: str
    kind: str
    service: str
    unit: str
    range_low: float
    range_high: float
    factor: float
    low: float
    central: float
    high: float
    evidence: str
    source: str
    origin: str
    method: str = ""
    gep_low: float = float("nan")
    gep_high: float = float("nan")


def _variant_config(cfg: RunConfig, out_dir: Path, *, prices: dict, params: dict, keep_layers: bool) -> RunConfig:
    """Copy of ``cfg`` writing to ``out_dir`` with price and parameter overrides (and without layers)."""
    from pydantic import ValidationError

    d = cfg.to_json_dict()
    d["output"] = {**d["output"], "dir": str(out_dir)}
    if not keep_layers and not d.get("economic_accounts"):
        d["layers"] = {}
    d.setdefault("prices", {}).setdefault("overrides", {})
    for key, o in prices.items():
        d["prices"]["overrides"][key] = o
    d.setdefault("parameters", {})
    for key, o in params.items():
        d["parameters"][key] = o
    try:
        new = RunConfig.model_validate(d)
    except ValidationError as exc:  # pragma: no cover - the config was valid a moment ago
        raise ConfigError(f"sensitivity: cannot build the variant configuration: {exc}") from None
    new.source_path, new.config_dir = cfg.source_path, cfg.config_dir
    return new


def _overrides(rows: list[_Row], ends: dict[str, str], book) -> tuple[dict, dict]:
    """Config overrides putting each key of ``ends`` (key -> 'low'/'high') at that end of its range."""
    prices, params = {}, {}
    for r in rows:
        if r.key not in ends:
            continue
        end = ends[r.key]
        raw = r.range_low if end == "low" else r.range_high
        src = f"sensitivity, {end} end of the range ({r.origin}): {r.source}"
        if r.kind == "price":
            p = book.prices[r.key]
            prices[r.key] = {"value": raw, "unit": p.unit, "price_year": p.price_year, "source": src,
                             "evidence": r.evidence}
        else:
            params[r.key] = {"value": raw, "source": src, "evidence": r.evidence}
    return prices, params


def _tornado(table: pd.DataFrame, gep_c: float, path: Path, title: str) -> Path:
    """Horizontal bars of GEP-R(low) − central and GEP-R(high) − central per key, PNG (Agg), atomic."""
    import contextlib

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..outputs.io_write import atomic_path

    ctx, safe = contextlib.nullcontext(), (lambda s: s)
    with contextlib.suppress(Exception):
        from ..outputs.figures import _mpl_context, _safe  # CJK-capable fonts when installed

        ctx, safe = _mpl_context(), _safe
    t = table.sort_values("swing_yuan", ascending=True)
    n = max(len(t), 1)
    scale, unit = 1.0, "yuan/a"
    span = float(np.nanmax(np.abs(np.r_[t["gep_r_low_yuan"] - gep_c, t["gep_r_high_yuan"] - gep_c, 0.0])))
    for s, u in ((1e8, "10^8 yuan/a"), (1e4, "10^4 yuan/a")):
        if span >= s:
            scale, unit = s, u
            break
    with ctx:
        fig = Figure(figsize=(8.0, 1.2 + 0.45 * n), dpi=150)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(111)
        y = np.arange(len(t))
        lo = (t["gep_r_low_yuan"].to_numpy() - gep_c) / scale
        hi = (t["gep_r_high_yuan"].to_numpy() - gep_c) / scale
        ax.barh(y, lo, color="#d95f02", label="key at its low end")
        ax.barh(y, hi, color="#1b9e77", label="key at its high end")
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(y)
        ax.set_yticklabels([safe(f"{k} [{e}]") for k, e in zip(t["key"], t["evidence"])], fontsize=8)
        ax.set_xlabel(safe(f"change of GEP-R from the central {gep_c / scale:,.4g} ({unit})"))
        ax.set_title(safe(title), fontsize=10)
        if len(t):
            ax.legend(fontsize=8, loc="best")
        ax.grid(axis="x", alpha=0.3)
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", bbox_inches="tight")
    return path


def run_sensitivity(cfg: RunConfig, *, ranges: str | Path | None = None, central=None, workers: int | None = None,
                    progress: bool = False, force: bool = False, keep_work: bool = False) -> SensitivityResult:
    """One-at-a-time sensitivity of GEP-R to every price/parameter with a documented range.

    Parameters
    ----------
    cfg : RunConfig
        The run (validated config).
    ranges : str or Path, optional
        Ranges CSV (``key,low,high[,unit],source[,evidence]``); default ``gep_raster/data/ranges.csv``.
    central : RunResult, optional
        The finished central run of ``cfg``; when None it is run (or resumed) here.
    workers : int, optional
        Dask threads for the central run and the reruns.
    progress : bool
        Progress bar for the central run (reruns never show one).
    force : bool
        Recompute the central run even if an identical finished run exists.
    keep_work : bool
        Keep the rerun folders (``sensitivity/.work-*``) for inspection.

    Returns
    -------
    SensitivityResult
        Written to ``<output_dir>/sensitivity/``: ``sensitivity.csv`` (columns ``rank, key, kind,
        service, unit, low, central, high`` (values used, unit of the key; prices in accounting-year
        yuan when a price index is set), ``gep_r_low_yuan, gep_r_central_yuan, gep_r_high_yuan``
        (GEP-R total, yuan/a), ``swing_yuan`` = \\|high − low\\|, ``swing_share_of_central`` (fraction
        of the central GEP-R), ``method`` (``exact`` from the central totals, or ``rerun``),
        ``range_low, range_high`` (as in the ranges file), ``index_factor``, ``evidence``,
        ``source``), ``<layer>_{low,central,high}.csv``, ``tornado.png``, ``manifest.json``.

    Raises
    ------
    TableError
        The ranges file is malformed, names an unknown key, or its unit differs from the key's.
    GepError
        Any error of the central run or of a rerun (with the pipeline's message).
    """
    from ..outputs.io_write import atomic_write_json
    from ..pipeline import run as run_pipeline
    from ..tables import PriceBook

    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    book = PriceBook.from_config(cfg)
    label, rsha, ranges_rows = load_ranges(ranges)
    _check_ranges(ranges_rows, book)  # before any computation
    if central is None:
        t0 = time.perf_counter()
        central = run_pipeline(cfg, workers=workers, progress=progress, force=force)
        timings["central_run"] = time.perf_counter() - t0
    ev = _Evaluator.for_central(cfg, book, central, workers)
    rows, skipped = _rows(ranges_rows, book, ev)
    sens_dir = central.output_dir / "sensitivity"
    sens_dir.mkdir(parents=True, exist_ok=True)
    ev.work = Path(tempfile.mkdtemp(prefix=".work-", dir=sens_dir))
    ev.rows = rows
    try:
        t0 = time.perf_counter()
        for row in rows:
            ev.one_at_a_time(row)
        timings["one_at_a_time"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        combined, case_tables = ev.combined_cases(central)
        timings["combined"] = time.perf_counter() - t0
    finally:
        if not keep_work:
            shutil.rmtree(ev.work, ignore_errors=True)
    table = _sensitivity_table(rows, ev.gep_c)
    outputs = _write_outputs(cfg, table, case_tables, ev.gep_c, sens_dir)
    manifest = _sensitivity_manifest(cfg, central, ev, rows, table, label, rsha, skipped, combined, outputs)
    timings["total"] = time.perf_counter() - t_start
    manifest["timings_s"] = timings
    manifest_path = sens_dir / "manifest.json"
    atomic_write_json(manifest_path, manifest)
    return SensitivityResult(sens_dir, table, case_tables, manifest, manifest_path)


def _check_ranges(ranges_rows: dict, book) -> None:
    """Every range names a known price or parameter, in its unit; a price range does not go below 0.

    Raises
    ------
    TableError
        Naming the ranges file row (``origin``) and the column.
    """
    for r in ranges_rows.values():
        rec = book.prices.get(r.key) or book.params.get(r.key)
        if rec is None:
            raise TableError(f"ranges {r.origin}: unknown key '{r.key}' (not a price of gep_raster/data/prices.csv "
                             "nor a parameter of gep_raster/data/parameters.csv)")
        if r.unit is not None and r.unit != rec.unit:
            raise TableError(f"ranges {r.origin}, column 'unit': '{r.unit}' differs from the unit of {r.key}, "
                             f"'{rec.unit}'; convert the range")
        if r.key in book.prices and r.low < 0:
            raise TableError(f"ranges {r.origin}, column 'low': a price cannot be negative, got {r.low}")


@dataclass
class _Evaluator:
    """GEP-R totals of the central run with some keys at other values: exactly from the central totals (value
    functions, :func:`build_value_models`) or by a pipeline rerun in ``work``."""

    cfg: RunConfig
    book: object
    workers: Optional[int]
    manifest: dict
    totals: dict
    gep_c: float
    used_prices: set
    used_params: set
    enabled: list
    central_vals: dict
    models: dict
    rows: list = field(default_factory=list)
    work: Optional[Path] = None
    reruns: list = field(default_factory=list)

    @classmethod
    def for_central(cls, cfg: RunConfig, book, central, workers) -> "_Evaluator":
        """From the central run's manifest; the configuration's prices and parameters must equal the run's.

        Raises
        ------
        ConfigError
            A price or parameter of the book differs from the one recorded in the central run's manifest.
        """
        m = central.manifest
        totals = {k: float(v["sum"]) for k, v in m["totals"].items()}
        used_prices = {p["key"] for p in m["prices"]}
        used_params = {p["key"] for p in m["parameters"]}
        enabled = list(cfg.services.enabled())
        central_vals = {k: book.prices[k].value for k in used_prices if k in book.prices}
        central_vals.update({k: book.params[k].value for k in used_params if k in book.params})
        for rec in m["prices"] + m["parameters"]:  # the book must agree with the run it analyses
            if rec["key"] in central_vals and not np.isclose(central_vals[rec["key"]], rec["value"], rtol=1e-12):
                raise ConfigError(f"sensitivity: {rec['key']} is {central_vals[rec['key']]} in the configuration but "
                                  f"{rec['value']} in the central run's manifest {central.manifest_path}; rerun the "
                                  "central run (--force)")
        price_service = {k: book.prices[k].service for k in used_prices if k in book.prices}
        models = build_value_models(totals, central_vals, price_service, enabled)
        return cls(cfg, book, workers, m, totals, totals["gep_r_yuan"], used_prices, used_params, enabled,
                   central_vals, models)

    def rerun(self, tag: str, ends: dict[str, str], keep_layers: bool):
        """The pipeline rerun with the keys of ``ends`` at their ``"low"``/``"high"`` end (force, no progress)."""
        from ..pipeline import run as run_pipeline

        pr, pa = _overrides(self.rows, ends, self.book)
        vcfg = _variant_config(self.cfg, self.work / tag, prices=pr, params=pa, keep_layers=keep_layers)
        t0 = time.perf_counter()
        log.info("sensitivity: rerun '%s' (%s)", tag, ", ".join(f"{k} {e}" for k, e in ends.items()))
        res = run_pipeline(vcfg, workers=self.workers, progress=False, force=True)
        self.reruns.append({"tag": tag, "ends": ends, "seconds": time.perf_counter() - t0,
                            "gep_r_yuan": res.manifest["totals"]["gep_r_yuan"]["sum"]})
        return res

    def exact_gep(self, values: dict) -> float:
        """GEP-R total with ``values`` (key -> used value) replacing the central ones (exact keys only)."""
        v = {**self.central_vals, **values}
        delta = 0.0
        for s, mdl in self.models.items():
            if any(k in mdl.keys for k in values):
                delta += float(mdl.fn(self.totals, v)) - float(mdl.fn(self.totals, self.central_vals))
        return self.gep_c + delta

    def one_at_a_time(self, row: _Row) -> None:
        """``row.gep_low``/``gep_high``: exact when the service's value function holds the key, else two reruns."""
        mdl = self.models.get(row.service)
        if mdl is not None and mdl.ok and row.key in mdl.keys:
            row.method = "exact"
            row.gep_low = self.exact_gep({row.key: row.low})
            row.gep_high = self.exact_gep({row.key: row.high})
        else:
            row.method = "rerun"
            for end in ("low", "high"):
                res = self.rerun(f"{row.key}-{end}", {row.key: end}, False)
                setattr(row, f"gep_{end}", res.manifest["totals"]["gep_r_yuan"]["sum"])

    def combined_cases(self, central) -> tuple[dict, dict]:
        """Every key at the end giving the lower (``low``) / higher (``high``) GEP-R: totals and layer tables
        (exact when every row is exact, else one rerun per case). Returns (combined, case_tables)."""
        rows = self.rows
        ends_low = {r.key: ("low" if r.gep_low <= r.gep_high else "high") for r in rows}
        ends_high = {k: ("high" if e == "low" else "low") for k, e in ends_low.items()}
        all_exact = all(r.method == "exact" for r in rows)
        central_tables = {name: pd.DataFrame(tab.drop(columns="geometry", errors="ignore"))
                          for name, tab in central.tables.items()}
        combined: dict = {}
        case_tables: dict[str, dict] = {name: {"central": t} for name, t in central_tables.items()}
        for case, ends in (("low", ends_low), ("high", ends_high)):
            used_vals = {r.key: (r.low if ends[r.key] == "low" else r.high) for r in rows}
            if all_exact:
                total = self.exact_gep(used_vals)
                for name, tab in central_tables.items():
                    case_tables[name][case] = _exact_table(tab, self.models, self.central_vals, used_vals)
                method = "exact"
            else:
                res = self.rerun(f"all-{case}", ends, True)
                total = res.manifest["totals"]["gep_r_yuan"]["sum"]
                for name in central_tables:
                    case_tables[name][case] = pd.DataFrame(res.tables[name].drop(columns="geometry", errors="ignore"))
                method = "rerun"
            combined[case] = {
                "definition": ("every key at the end of its range giving the "
                               + ("lower" if case == "low" else "higher") + " GEP-R (one-at-a-time result)"),
                "method": method, "gep_r_yuan": total,
                "values": {r.key: {"end": ends[r.key], "value": used_vals[r.key], "unit": r.unit} for r in rows}}
        return combined, case_tables


def _rows(ranges_rows: dict, book, ev: _Evaluator) -> tuple[list[_Row], list[dict]]:
    """The ranges this run uses, as rows with their values in the run's units (prices moved to the accounting
    year by the central price's index factor); the others as ``skipped`` (key, reason)."""
    rows: list[_Row] = []
    skipped: list[dict] = []
    for r in ranges_rows.values():
        if r.key in book.prices:
            kind, rec = "price", book.prices[r.key]
            used = r.key in ev.used_prices
        else:
            kind, rec = "parameter", book.params[r.key]
            used = r.key in ev.used_params
        if rec.service not in ev.enabled:
            skipped.append({"key": r.key, "reason": f"service '{rec.service}' is disabled in this run"})
            continue
        if not used:
            skipped.append({"key": r.key, "reason": "not used by this run (the enabled service does not read it with "
                                                    "this configuration, e.g. a raster or a config key replaces it)"})
            continue
        factor = float(rec.index_factor) if kind == "price" and getattr(rec, "index_factor", None) else 1.0
        rows.append(_Row(r.key, kind, rec.service, rec.unit, r.low, r.high, factor, r.low * factor,
                         float(ev.central_vals[r.key]), r.high * factor, r.evidence, r.source, r.origin))
    return rows, skipped


#: columns of sensitivity.csv
SENSITIVITY_COLUMNS = ["rank", "key", "kind", "service", "unit", "low", "central", "high", "gep_r_low_yuan",
                       "gep_r_central_yuan", "gep_r_high_yuan", "swing_yuan", "swing_share_of_central", "method",
                       "range_low", "range_high", "index_factor", "evidence", "source"]


def _sensitivity_table(rows: list[_Row], gep_c: float) -> pd.DataFrame:
    """sensitivity.csv: one row per key, ranked by swing = |GEP-R(high) - GEP-R(low)| (yuan/a), largest first."""
    recs = []
    for r in rows:
        swing = abs(r.gep_high - r.gep_low)
        recs.append({"key": r.key, "kind": r.kind, "service": r.service, "unit": r.unit, "low": r.low,
                     "central": r.central, "high": r.high, "gep_r_low_yuan": r.gep_low, "gep_r_central_yuan": gep_c,
                     "gep_r_high_yuan": r.gep_high, "swing_yuan": swing,
                     "swing_share_of_central": swing / abs(gep_c) if gep_c else float("nan"), "method": r.method,
                     "range_low": r.range_low, "range_high": r.range_high, "index_factor": r.factor,
                     "evidence": r.evidence, "source": r.source})
    cols = SENSITIVITY_COLUMNS
    table = pd.DataFrame(recs, columns=[c for c in cols if c != "rank"])
    table = table.sort_values("swing_yuan", ascending=False, kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table[cols]


def _write_outputs(cfg: RunConfig, table: pd.DataFrame, case_tables: dict, gep_c: float, sens_dir: Path) -> list:
    """sensitivity.csv, ``<layer>_{low,central,high}.csv`` and tornado.png (atomic); returns their manifest rows."""
    from ..outputs.io_write import atomic_to_csv

    outputs = []
    atomic_to_csv(table, sens_dir / "sensitivity.csv")
    outputs.append({"path": "sensitivity.csv", "kind": "table", "unit": "see columns",
                    "description": "one row per key: GEP-R total at the low/central/high value, swing, rank"})
    for name, cases in case_tables.items():
        for case in ("low", "central", "high"):
            if case in cases:
                atomic_to_csv(cases[case], sens_dir / f"{name}_{case}.csv")
                outputs.append({"path": f"{name}_{case}.csv", "kind": "table", "layer": name, "case": case,
                                "unit": "as tables/<layer>.csv"})
    _tornado(table, gep_c, sens_dir / "tornado.png",
             f"GEP-R sensitivity, {cfg.name}" + (f" ({cfg.accounting_year})" if cfg.accounting_year else ""))
    outputs.append({"path": "tornado.png", "kind": "figure", "unit": "yuan/a",
                    "description": "change of the GEP-R total with each key at its low / high end"})
    return outputs


def _sensitivity_manifest(cfg: RunConfig, central, ev: _Evaluator, rows: list[_Row], table: pd.DataFrame,
                          label: str, rsha: str, skipped: list, combined: dict, outputs: list) -> dict:
    """manifest.json of the sensitivity folder (without ``timings_s``)."""
    m = central.manifest
    assumptions = [f"range of {r.key} ({r.range_low:g}-{r.range_high:g} {r.unit}) is marked [{r.evidence}]: {r.source}"
                   for r in rows if r.evidence not in ("V", "V-calc")]
    if any(r.kind == "price" and r.factor != 1.0 for r in rows):
        assumptions.append("price ranges were moved to the accounting year with the index factor of the central "
                           "price (their ends are read as being in the central price's price_year)")
    return {
        "gep_raster_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "run_name": cfg.name,
        "accounting_year": cfg.accounting_year,
        "central_run": {"output_dir": str(central.output_dir), "manifest": str(central.manifest_path),
                        "run_hash": m.get("run_hash"), "config_sha256": m.get("config_sha256"),
                        "gep_r_yuan": ev.gep_c},
        "ranges": {"path": label, "sha256": rsha, "format": RANGES_FORMAT},
        "price_index": m.get("price_index"),
        "method": ("one at a time; 'exact': GEP-R recomputed from the central run's totals with the service's value "
                   "function (checked against the run); 'rerun': pipeline rerun with a parameters/prices override. "
                   "Combined cases: every key at the end giving the lower (low) or higher (high) GEP-R"),
        "value_functions": [{"service": s, "function": mdl.description, "keys": sorted(mdl.keys), **mdl.check}
                            for s, mdl in ev.models.items()],
        "rows": table.to_dict("records"),
        "range_origins": {r.key: r.origin for r in rows},
        "skipped": skipped,
        "combined": combined,
        "reruns": ev.reruns,
        "assumptions": assumptions,
        "outputs": outputs,
    }


def _exact_table(tab: pd.DataFrame, models: dict, central: dict, values: dict) -> pd.DataFrame:
    """Account table with ``values`` replacing the central key values, from the central table's sums."""
    out = tab.copy()
    v = {**central, **values}
    delta_total = 0.0
    for s, mdl in models.items():
        if not any(k in mdl.keys for k in values):
            continue
        d = mdl.fn(out, v) - mdl.fn(out, central)
        out[f"{s}_yuan"] = out[f"{s}_yuan"] + d
        delta_total = delta_total + d
    # GEP-R and, with economic accounts, GEP = GEP-R + EPV + ECV move by the same amount
    for col in ("gep_r_yuan", "gep_yuan"):
        if col in out:
            out[col] = out[col] + delta_total
            if f"{col}_per_km2" in out and "valid_area_km2" in out:
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[f"{col}_per_km2"] = np.where(out["valid_area_km2"] > 0, out[col] / out["valid_area_km2"],
                                                     np.nan)
    return out


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def register(app) -> None:
    """Add the command ``gep sensitivity CONFIG [-o OUT] [--ranges CSV]`` to a typer ``app``."""
    import typer

    from ..cli_common import (command, debug_option, log_file_option, log_json_option, log_level_option,
                              quiet_option, verbose_option)

    @app.command("sensitivity")
    def sensitivity(config: Path = typer.Argument(..., help="Run configuration (YAML)."),
                    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                                          help="Override output.dir of the config."),
                    ranges: Optional[Path] = typer.Option(None, "--ranges",
                                                          help=f"Ranges CSV ({RANGES_FORMAT}); default: the "
                                                               "shipped gep_raster/data/ranges.csv."),
                    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, help="Dask threads."),
                    force: bool = typer.Option(False, "--force", help="Recompute the central run."),
                    quiet: bool = quiet_option(), verbose: int = verbose_option(),
                    log_level: Optional[str] = log_level_option(), log_file: Optional[Path] = log_file_option(),
                    log_json: bool = log_json_option(), debug: bool = debug_option()):
        """GEP-R at the low and high end of every documented price/parameter range (OUT/sensitivity/)."""
        from ..config import load_config

        with command(quiet, verbose, log_level, log_file, log_json, debug) as out:
            cfg = load_config(config, overrides={"output": {"dir": str(output.resolve())}} if output else None)
            res = run_sensitivity(cfg, ranges=ranges, workers=workers, progress=not quiet, force=force)
            m = res.manifest
            out.result(f"sensitivity of '{cfg.name}': central GEP-R {m['central_run']['gep_r_yuan']:,.0f} yuan/a "
                       f"-> {res.output_dir}")
            for r in res.table.to_dict("records"):
                out.detail(f"  {r['rank']:>2}. {r['key']:40s} [{r['evidence']}] {r['low']:>10.4g} .. "
                           f"{r['high']:<10.4g} -> {r['gep_r_low_yuan']:>18,.0f} .. {r['gep_r_high_yuan']:<18,.0f} "
                           f"swing {100 * r['swing_share_of_central']:.1f} % ({r['method']})")
            for sk in m["skipped"]:
                out.detail(f"  skipped {sk['key']}: {sk['reason']}")
            for case in ("low", "high"):
                if case in m["combined"]:
                    out.detail(f"  all {case}: GEP-R {m['combined'][case]['gep_r_yuan']:,.0f} yuan/a")
