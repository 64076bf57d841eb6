"""Parameter tables: the land-cover legend, unit prices and method parameters.

Defaults ship in ``gep_raster/data/prices.csv`` and ``gep_raster/data/parameters.csv``; every
row carries its source and an evidence mark (V verified in the primary source, V-calc
arithmetic from verified numbers, V2 secondary source only, U unverified/assumption), copied
from the project's methods note. Users override any row from the run configuration, and
every output records the rows it used.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from .config import ECOSYSTEMS, RunConfig
from .errors import TableError

def required_legend_columns(cfg: RunConfig) -> dict[str, tuple]:
    """Legend columns the enabled services need: column -> (valid min, valid max, unit, meaning).

    Each service declares its own columns (``Service.legend_columns(cfg)``)."""
    from .services.registry import REGISTRY

    need: dict[str, tuple] = {}
    for name in cfg.services.enabled():
        need.update(REGISTRY[name].Service.legend_columns(cfg))
    return need


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise TableError(f"{what}: file not found: {path}")
    try:
        return pd.read_csv(path, encoding="utf-8-sig")
    except Exception as exc:  # pandas raises many types
        raise TableError(f"{what}: cannot read CSV {path}: {exc}") from None


@dataclass
class Legend:
    """The validated legend. ``table`` is indexed by integer class code."""

    table: pd.DataFrame
    path: Path
    sources: list[str]

    @property
    def codes(self) -> np.ndarray:
        return self.table.index.to_numpy()

    def lut(self, column: str, fill=np.nan, dtype=np.float32) -> np.ndarray:
        """Look-up array of shape (max_code + 2,): ``lut[code] = value``; codes without a row get ``fill``.

        The last entry (index max_code + 1) is a guard that any out-of-range code maps to."""
        n = int(self.codes.max()) + 2
        out = np.full(n, fill, dtype=dtype)
        out[self.codes] = self.table[column].to_numpy().astype(dtype)
        return out

    def ecosystem_lut(self, ecosystems: list[str]) -> np.ndarray:
        """uint8 LUT: 1 where the class's ecosystem type is in ``ecosystems``, else 0."""
        n = int(self.codes.max()) + 2
        out = np.zeros(n, dtype=np.uint8)
        mask = self.table["ecosystem"].isin(ecosystems).to_numpy()
        out[self.codes[mask]] = 1
        return out


def load_legend(cfg: RunConfig, required: dict[str, tuple] | None = None) -> Legend:
    """Load, join and validate the land-cover legend.

    Raises
    ------
    TableError
        Naming the file, the column and the row (class code) that is wrong: missing column,
        duplicate or non-integer code, unknown ecosystem type, value out of range.
    """
    lc = cfg.legend
    path = cfg.resolve(lc.path)
    df = _read_csv(path, "legend.path")
    if lc.code_column not in df.columns:
        raise TableError(f"legend {path}: code column '{lc.code_column}' not found (columns: {list(df.columns)})")
    sources = [str(path)]
    df = df.rename(columns={v: k for k, v in lc.columns.items()})
    df = df.rename(columns={lc.code_column: "code"})
    for j in lc.join:
        jpath = cfg.resolve(j.path)
        jdf = _read_csv(jpath, "legend.join.path")
        missing = [c for c in [j.code_column, *j.columns.values()] if c not in jdf.columns]
        if missing:
            raise TableError(f"legend join table {jpath}: column(s) {missing} not found (columns: {list(jdf.columns)})")
        jdf = jdf[[j.code_column, *j.columns.values()]].rename(
            columns={v: k for k, v in j.columns.items()} | {j.code_column: "code"})
        overlap = [c for c in j.columns if c in df.columns]
        if overlap:
            raise TableError(f"legend join table {jpath}: column(s) {overlap} already in the legend {path}; remove one")
        df = df.merge(jdf, on="code", how="left")
        sources.append(str(jpath))
    codes = pd.to_numeric(df["code"], errors="coerce")
    if codes.isna().any() or (codes % 1 != 0).any() or (codes < 0).any():
        bad = df.loc[codes.isna() | (codes % 1 != 0) | (codes < 0), "code"].tolist()
        raise TableError(f"legend {path}: column '{lc.code_column}' must hold non-negative integer class codes; bad: {bad}")
    df["code"] = codes.astype(np.int64)
    if df["code"].duplicated().any():
        raise TableError(f"legend {path}: duplicate class code(s) {df.loc[df['code'].duplicated(), 'code'].tolist()}")
    if df["code"].max() > 65535:
        raise TableError(f"legend {path}: class codes above 65535 are not supported")
    if "ecosystem" not in df.columns:
        raise TableError(f"legend {path}: column 'ecosystem' is missing (one of {list(ECOSYSTEMS)} per class)")
    bad = df.loc[~df["ecosystem"].isin(ECOSYSTEMS), ["code", "ecosystem"]]
    if len(bad):
        raise TableError(f"legend {path}: column 'ecosystem' has unknown type(s) "
                         f"{bad.to_dict('records')}; allowed: {list(ECOSYSTEMS)}")
    df = df.set_index("code").sort_index()
    for col, (lo, hi, unit, meaning) in (required or {}).items():
        if col not in df.columns:
            raise TableError(f"legend {path}: column '{col}' is missing; it is needed for {meaning} ({unit})")
        vals = pd.to_numeric(df[col], errors="coerce")
        if vals.isna().any():
            raise TableError(f"legend {path}: column '{col}' is empty or not a number for class code(s) "
                             f"{df.index[vals.isna()].tolist()}")
        out = (vals < lo) | (vals > hi)
        if out.any():
            raise TableError(f"legend {path}: column '{col}' ({unit}) must lie in [{lo}, {hi}]; class code(s) "
                             f"{df.index[out].tolist()} have {vals[out].tolist()}")
        df[col] = vals.astype(float)
    return Legend(df, path, sources)


@dataclass(frozen=True)
class Price:
    key: str
    service: str
    value: float
    unit: str
    price_year: int
    source: str
    evidence: str


@dataclass(frozen=True)
class Parameter:
    key: str
    service: str
    value: float
    unit: str
    source: str
    evidence: str


def _default_table(name: str) -> pd.DataFrame:
    with resources.files("gep_raster.data").joinpath(name).open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh)


class PriceBook:
    """Unit prices and method parameters in force for a run (defaults + table + overrides)."""

    def __init__(self, prices: dict[str, Price], params: dict[str, Parameter]):
        self.prices = prices
        self.params = params
        self._used: set[str] = set()

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "PriceBook":
        """Raises TableError naming the file/key when a price table is malformed."""
        df = _default_table("prices.csv")
        if cfg.prices.table:
            path = cfg.resolve(cfg.prices.table)
            user = _read_csv(path, "prices.table")
            need = ["key", "value", "unit", "price_year", "source"]
            missing = [c for c in need if c not in user.columns]
            if missing:
                raise TableError(f"prices.table {path}: column(s) {missing} missing (need {need})")
            unknown = sorted(set(user["key"]) - set(df["key"]))
            if unknown:
                raise TableError(f"prices.table {path}: unknown price key(s) {unknown}; known: {sorted(df['key'])}")
            user = user.assign(evidence=user.get("evidence", "user"))
            df = pd.concat([df[~df["key"].isin(user["key"])], user], ignore_index=True)
        prices = {}
        for r in df.to_dict("records"):
            prices[r["key"]] = Price(r["key"], r.get("service") or r["key"].split(".")[0], float(r["value"]),
                                     r["unit"], int(r["price_year"]), r["source"], str(r["evidence"]))
        for key, o in cfg.prices.overrides.items():
            if key not in prices:
                raise TableError(f"prices.overrides.{key}: unknown price key; known: {sorted(prices)}")
            if o.unit != prices[key].unit:
                raise TableError(f"prices.overrides.{key}: unit '{o.unit}' differs from the expected '{prices[key].unit}'")
            prices[key] = Price(key, prices[key].service, o.value, o.unit, o.price_year, o.source, o.evidence)
        pdf = _default_table("parameters.csv")
        params = {r["key"]: Parameter(r["key"], r["service"], float(r["value"]), r["unit"], r["source"],
                                      str(r["evidence"])) for r in pdf.to_dict("records")}
        for key, o in cfg.parameters.items():
            if key not in params:
                raise TableError(f"parameters.{key}: unknown parameter key; known: {sorted(params)}")
            params[key] = Parameter(key, params[key].service, o.value, params[key].unit, o.source, o.evidence)
        for key, p in prices.items():
            if not np.isfinite(p.value) or p.value < 0:
                raise TableError(f"price '{key}' must be a finite non-negative number, got {p.value}")
        return cls(prices, params)

    def price(self, key: str) -> float:
        self._used.add(key)
        return self.prices[key].value

    def param(self, key: str) -> float:
        self._used.add(key)
        return self.params[key].value

    def used_records(self) -> dict:
        """Rows used by the run, for the manifest: {'prices': [...], 'parameters': [...]}."""
        return {
            "prices": [asdict(self.prices[k]) for k in sorted(self._used) if k in self.prices],
            "parameters": [asdict(self.params[k]) for k in sorted(self._used) if k in self.params],
        }
