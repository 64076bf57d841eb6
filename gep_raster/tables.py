"""Parameter tables: the land-cover legend, unit prices and method parameters.

Defaults ship in ``gep_raster/data/prices.csv`` and ``gep_raster/data/parameters.csv``; every
row carries its source and an evidence mark (V verified in the primary source, V-calc
arithmetic from verified numbers, V2 secondary source only, U unverified/assumption), copied
from the project's methods note. Users override any row from the run configuration
(``prices.table``, ``prices.overrides``, ``parameters_table``, ``parameters``), a price index
(``prices.price_index``, e.g. a CPI) moves every price from its price year to the accounting
year, and every output records the rows it used and where each came from.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from typing import TYPE_CHECKING

from .config_base import ECOSYSTEMS
from .errors import ConfigError, TableError

if TYPE_CHECKING:
    from .config import RunConfig

def _read_csv(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise TableError(f"{what}: file not found: {path}")
    try:
        return pd.read_csv(path, encoding="utf-8-sig")
    except Exception as exc:  # pandas raises many types
        raise TableError(f"{what}: cannot read CSV {path}: {exc}") from None


@dataclass
class Legend:
    """The validated legend. ``table`` is indexed by integer class code.

    ``path`` is the user's legend CSV (``legend.path``) or, with a product legend alone, the shipped product CSV;
    ``sources`` lists every file read (product CSV, user table, join tables), real paths only, in that order;
    ``product`` names the shipped product legend the table started from (``legend.product``), or None;
    ``nodata_codes`` are the product's codes that mean no data (they have no row)."""

    table: pd.DataFrame
    path: Path
    sources: list[str]
    product: str | None = None
    nodata_codes: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        """The legend in words for messages: ``product 'clcd' + /path/user.csv``, or the CSV path."""
        if self.product is None:
            return str(self.path)
        if self.sources and str(self.path) != self.sources[0]:  # a user table extends the product
            return f"product '{self.product}' + {self.path}"
        return f"product '{self.product}' ({self.path})"

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


def _check_codes(df: pd.DataFrame, where: str, code_column: str) -> pd.DataFrame:
    """Column ``code`` as int64: non-negative integers, unique, at most 65535 (TableError naming ``where``)."""
    codes = pd.to_numeric(df["code"], errors="coerce")
    if codes.isna().any() or (codes % 1 != 0).any() or (codes < 0).any():
        bad = df.loc[codes.isna() | (codes % 1 != 0) | (codes < 0), "code"].tolist()
        raise TableError(f"legend {where}: column '{code_column}' must hold non-negative integer class codes; "
                         f"bad: {bad}")
    df = df.copy()
    df["code"] = codes.astype(np.int64)
    if df["code"].duplicated().any():
        raise TableError(f"legend {where}: duplicate class code(s) {df.loc[df['code'].duplicated(), 'code'].tolist()}")
    if len(df) and df["code"].max() > 65535:
        raise TableError(f"legend {where}: class codes above 65535 are not supported")
    return df


def _extend_product(base: pd.DataFrame, user: pd.DataFrame, product: str, user_path: Path) -> pd.DataFrame:
    """The product's legend extended by a user table (both with an int64 ``code`` column).

    A user row whose code is a product class overrides the cells it fills (empty cells keep the product's value)
    and its ``notes`` are appended to the product's, with the overridden columns named; a user row with another
    code adds a class (it must give an ecosystem type). Columns the product lacks are added (empty on the product
    rows the user table does not fill)."""
    base = base.set_index("code").astype(object)
    user = user.set_index("code")
    for col in user.columns:
        if col not in base.columns:
            base[col] = np.nan
    new_codes = [c for c in user.index if c not in base.index]
    if new_codes:
        no_eco = [int(c) for c in new_codes
                  if "ecosystem" not in user.columns or _is_blank(user.at[c, "ecosystem"])]
        if no_eco:
            raise TableError(f"legend {user_path}: class code(s) {no_eco} are not classes of the product '{product}' "
                             f"(codes {base.index.tolist()}) and give no ecosystem type; add the column ecosystem "
                             f"(one of {list(ECOSYSTEMS)}) for them")
    for code, row in user.iterrows():
        if code not in base.index:
            base.loc[code] = pd.Series({c: (np.nan if _is_blank(row.get(c)) else row.get(c)) for c in base.columns})
            continue
        given = [c for c in user.columns if c != "notes" and not _is_blank(row[c])]
        for c in given:
            base.at[code, c] = row[c]
        user_note = "" if "notes" not in user.columns or _is_blank(row["notes"]) else str(row["notes"]).strip()
        if given or user_note:
            what = (f"{', '.join(given)} from the user table {user_path.name}" if given
                    else f"user table {user_path.name}")
            kept = "" if _is_blank(base.at[code, "notes"]) else _drop_note_items(str(base.at[code, "notes"]), given)
            base.at[code, "notes"] = " | ".join(x for x in (kept, what + (f": {user_note}" if user_note else "")) if x)
    return base.infer_objects().reset_index()


_NOTE_ITEM = re.compile(r"^(?P<cols>[a-z0-9_]+(?:, [a-z0-9_]+)*)(?P<rest>(?: \[|: ).*)$", re.S)


def _drop_note_items(note: str, columns: list[str]) -> str:
    """A product ``notes`` cell (items ``col[, col] [MARK] source`` or ``col: text`` joined by `` | ``) without
    what it says about ``columns`` (the columns a user table replaced)."""
    out = []
    for item in note.split(" | "):
        m = _NOTE_ITEM.match(item)
        if not m:
            out.append(item)
            continue
        cols = [c for c in m["cols"].split(", ") if c not in columns]
        if cols:
            out.append(", ".join(cols) + m["rest"])
    return " | ".join(out)


def _read_user_legend(cfg: RunConfig) -> tuple[Path | None, pd.DataFrame | None]:
    """``legend.path`` read, its columns renamed (``legend.columns``) and its code column called ``code``."""
    lc = cfg.legend
    if lc.path is None:
        return None, None
    path = cfg.resolve(lc.path)
    user = _read_csv(path, "legend.path")
    if lc.code_column not in user.columns:
        raise TableError(f"legend {path}: code column '{lc.code_column}' not found (columns: {list(user.columns)})")
    user = user.rename(columns={v: k for k, v in lc.columns.items()})
    return path, user.rename(columns={lc.code_column: "code"})


def _join_tables(cfg: RunConfig, df: pd.DataFrame, where: str, product: str | None,
                 sources: list[str]) -> pd.DataFrame:
    """The ``legend.join`` tables merged into ``df`` by class code (each file appended to ``sources``)."""
    for j in cfg.legend.join:
        jpath = cfg.resolve(j.path)
        jdf = _read_csv(jpath, "legend.join.path")
        missing = [c for c in [j.code_column, *j.columns.values()] if c not in jdf.columns]
        if missing:
            raise TableError(f"legend join table {jpath}: column(s) {missing} not found (columns: {list(jdf.columns)})")
        jdf = jdf[[j.code_column, *j.columns.values()]].rename(
            columns={v: k for k, v in j.columns.items()} | {j.code_column: "code"})
        overlap = [c for c in j.columns if c in df.columns]
        if overlap:
            hint = " (to change a product legend's column, give it in legend.path)" if product else ""
            raise TableError(f"legend join table {jpath}: column(s) {overlap} already in the legend {where}; remove "
                             f"one{hint}")
        if product is not None:  # product codes are int64 already: join on the same type
            jdf = _check_codes(jdf, str(jpath), j.code_column)
        df = df.merge(jdf, on="code", how="left")
        sources.append(str(jpath))
    return df


def _check_required(df: pd.DataFrame, required: dict[str, tuple], where: str, product: str | None) -> None:
    """Every column a service needs is there, numeric and in range (converted to float in place)."""
    for col, (lo, hi, unit, meaning) in required.items():
        if col not in df.columns:
            hint = (f"; the product legend '{product}' has no value for it (the methods note gives none): add the "
                    f"column in a user table (legend.path)") if product else ""
            raise TableError(f"legend {where}: column '{col}' is missing; it is needed for {meaning} ({unit}){hint}")
        vals = pd.to_numeric(df[col], errors="coerce")
        if vals.isna().any():
            hint = (f"; the product legend '{product}' leaves it empty where the methods note gives no value for "
                    "the class's ecosystem type: fill it in a user table (legend.path), see docs/legends.md"
                    ) if product else ""
            raise TableError(f"legend {where}: column '{col}' is empty or not a number for class code(s) "
                             f"{df.index[vals.isna()].tolist()}{hint}")
        out = (vals < lo) | (vals > hi)
        if out.any():
            raise TableError(f"legend {where}: column '{col}' ({unit}) must lie in [{lo}, {hi}]; class code(s) "
                             f"{df.index[out].tolist()} have {vals[out].tolist()}")
        df[col] = vals.astype(float)


def load_legend(cfg: RunConfig, required: dict[str, tuple] | None = None) -> Legend:
    """Load, join and validate the land-cover legend.

    With ``legend.product`` the table starts from the shipped legend of that product
    (``gep_raster/data/legends/<product>.csv``, :mod:`gep_raster.legends`) and ``legend.path``, when given, is
    a user table extending it (:func:`_extend_product`); without it ``legend.path`` is the whole legend.
    ``legend.code_column`` and ``legend.columns`` apply to the user table; ``legend.join`` tables are joined last.

    Raises
    ------
    TableError
        Naming the file, the column and the row (class code) that is wrong: missing column,
        duplicate or non-integer code, unknown ecosystem type, value out of range, a product cell left empty
        that an enabled service needs.
    ConfigError
        Unknown ``legend.product``.
    """
    lc = cfg.legend
    product = getattr(lc, "product", None)
    sources: list[str] = []
    nodata_codes: tuple[int, ...] = ()
    path, user = _read_user_legend(cfg)
    if product is not None:
        from .legends import get_product, product_legend, product_path

        entry = get_product(product)
        product, nodata_codes = entry.name, tuple(entry.nodata)
        ppath = product_path(product)
        sources.append(str(ppath))
        df = product_legend(product)
        if user is not None:
            user = _check_codes(user, str(path), lc.code_column)
            hidden = sorted(set(user["code"].tolist()) & set(nodata_codes))
            if hidden:
                raise TableError(f"legend {path}: class code(s) {hidden} are no-data codes of the product "
                                 f"'{product}' ({entry.nodata_note}); remove their rows, or leave legend.product out "
                                 "and give the whole legend in legend.path")
            df = _extend_product(df, user, product, path)
            sources.append(str(path))
            where = f"{path} (extending product '{product}')"
        else:
            path, where = ppath, f"{ppath} (product '{product}')"
    else:
        df, where = user, str(path)
        sources.append(str(path))
    df = _join_tables(cfg, df, where, product, sources)
    df = _check_codes(df, where, lc.code_column if product is None or lc.path is not None else "code")
    if "ecosystem" not in df.columns:
        raise TableError(f"legend {where}: column 'ecosystem' is missing (one of {list(ECOSYSTEMS)} per class)")
    bad = df.loc[~df["ecosystem"].isin(ECOSYSTEMS), ["code", "ecosystem"]]
    if len(bad):
        raise TableError(f"legend {where}: column 'ecosystem' has unknown type(s) "
                         f"{bad.to_dict('records')}; allowed: {list(ECOSYSTEMS)}")
    df = df.set_index("code").sort_index()
    _check_required(df, required or {}, where, product)
    return Legend(df, path, sources, product=product, nodata_codes=nodata_codes)


# ======================================================================================
# Prices, parameters and the price index
# ======================================================================================
#: Evidence marks of the methods note (§ "How to read the evidence marks"); "user" = given by the user
#: without a mark. [U] and [V2] rows are listed in the manifest's ``assumptions``.
EVIDENCE_MARKS = ("V", "V-calc", "V2", "U", "EX")

DEFAULT_PRICES = "gep_raster/data/prices.csv"
DEFAULT_PARAMETERS = "gep_raster/data/parameters.csv"


@dataclass(frozen=True)
class Price:
    """One unit price in force for a run.

    ``value`` is the price the services use (yuan per ``unit``). Without a price index it equals
    ``original_value`` and is in ``price_year`` yuan. With ``prices.price_index`` it is moved to the
    accounting year: ``value = original_value × index[accounting_year] / index[price_year]``
    (CPI-ratio correction as in 高天岩, methods note §1.3 step 4 [V]) and ``value_year`` is the
    accounting year. ``origin`` names the file (and line) or config key the row came from.
    """

    key: str
    service: str
    value: float
    unit: str
    price_year: int
    source: str
    evidence: str
    origin: str = f"default: {DEFAULT_PRICES}"
    original_value: float | None = None
    value_year: int | None = None
    price_index: str | None = None
    index_price_year: float | None = None
    index_accounting_year: float | None = None
    index_factor: float | None = None


@dataclass(frozen=True)
class Parameter:
    """One method parameter in force for a run; ``origin`` names the file (and line) or config key."""

    key: str
    service: str
    value: float
    unit: str
    source: str
    evidence: str
    origin: str = f"default: {DEFAULT_PARAMETERS}"


def _default_table(name: str) -> pd.DataFrame:
    with resources.files("gep_raster.data").joinpath(name).open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh)


def _is_blank(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == ""


def normalize_evidence(raw, where: str) -> str:
    """Canonical evidence mark of a user table cell.

    Parameters
    ----------
    raw : object
        Cell content: ``V``, ``[V]``, ``v-calc``, ``V2``, ``U``, ``EX`` (brackets, case and
        surrounding blanks ignored) or empty (-> ``"user"``).
    where : str
        Location for the message, e.g. ``"parameters_table x.csv: line 3, column 'evidence'"``.

    Returns
    -------
    str
        One of ``V``, ``V-calc``, ``V2``, ``U``, ``EX`` or ``user``.

    Raises
    ------
    TableError
        The cell holds something else (a typo would otherwise hide a [U] row from the assumptions).
    """
    if _is_blank(raw):
        return "user"
    s = str(raw).strip().strip("[]").strip()
    for mark in (*EVIDENCE_MARKS, "user"):
        if s.lower() == mark.lower():
            return mark
    raise TableError(f"{where}: evidence mark '{raw}' is not one of [V], [V-calc], [V2], [U], [EX] "
                     "(or empty for a user value)")


def _line(i: int) -> int:
    """CSV line number of data row ``i`` (0-based; line 1 is the header)."""
    return int(i) + 2


def _need_columns(df: pd.DataFrame, need: list[str], what: str, path: Path, fmt: str) -> None:
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise TableError(f"{what} {path}: column(s) {missing} missing (format: {fmt}; found {list(df.columns)})")


def _check_keys(df: pd.DataFrame, known, what: str, path: Path, kind: str, default_file: str) -> None:
    """Blank, duplicate and unknown keys, each reported with its CSV line."""
    keys = df["key"]
    blank = [_line(i) for i, k in enumerate(keys) if _is_blank(k)]
    if blank:
        raise TableError(f"{what} {path}: column 'key' is empty on line(s) {blank}")
    keys = keys.astype(str).str.strip()
    dup = keys[keys.duplicated(keep=False)]
    if len(dup):
        lines = {k: [_line(i) for i in dup.index[dup == k]] for k in sorted(set(dup))}
        raise TableError(f"{what} {path}: duplicate {kind} key(s), lines {lines}; keep one row per key")
    unknown = [(k, _line(i)) for i, k in enumerate(keys) if k not in known]
    if unknown:
        raise TableError(f"{what} {path}: unknown {kind} key(s) "
                         f"{', '.join(f'{k!r} (line {n})' for k, n in unknown)}; known keys are those of "
                         f"{default_file}: {sorted(known)}")


def _number(v, where: str, *, integer: bool = False) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        x = float("nan")
    if not np.isfinite(x) or (integer and x != int(x)):
        raise TableError(f"{where}: {v!r} is not {'a whole number' if integer else 'a finite number'}")
    return int(x) if integer else x


def _text(v, where: str) -> str:
    if _is_blank(v):
        raise TableError(f"{where}: empty; give the source (publication, table, page) of the value")
    return str(v).strip()


@dataclass(frozen=True)
class PriceIndex:
    """A price index (e.g. a CPI): one positive level per year, any base.

    ``factor(from_year, to_year) = index[to_year] / index[from_year]`` moves a price from
    ``from_year`` yuan to ``to_year`` yuan (CPI ratio, 高天岩 2017 via the methods note §1.3 [V]).
    """

    path: Path
    values: dict
    sources: dict

    @classmethod
    def load(cls, path: str | Path, what: str = "prices.price_index") -> "PriceIndex":
        """Read a CSV ``year,index[,source]`` (other columns, e.g. ``evidence``, are kept in the file only).

        Raises
        ------
        TableError
            Naming the file, the line and the column: file missing or unreadable, column ``year`` or
            ``index`` missing, a year that is not a whole number or appears twice, an index that is not
            a finite number or is not > 0.
        """
        path = Path(path)
        df = _read_csv(path, what)
        _need_columns(df, ["year", "index"], what, path, "year,index[,source]")
        if not len(df):
            raise TableError(f"{what} {path}: the table has no rows")
        values, sources, lines = {}, {}, {}
        for i, r in enumerate(df.to_dict("records")):
            year = _number(r["year"], f"{what} {path}: line {_line(i)}, column 'year'", integer=True)
            idx = _number(r["index"], f"{what} {path}: line {_line(i)} (year {year}), column 'index'")
            if idx <= 0:
                raise TableError(f"{what} {path}: line {_line(i)} (year {year}), column 'index': the index must be "
                                 f"> 0, got {idx}")
            if year in values:
                raise TableError(f"{what} {path}: year {year} appears twice (lines {lines[year]} and {_line(i)})")
            values[year], lines[year] = idx, _line(i)
            src = r.get("source")
            sources[year] = "" if _is_blank(src) else str(src)
        return cls(path, dict(sorted(values.items())), sources)

    def value(self, year: int, *, needed_for: str = "") -> float:
        """Index level of ``year``; TableError naming the file and the year when the index lacks it."""
        if year not in self.values:
            years = list(self.values)
            raise TableError(f"prices.price_index {self.path}: no index value for year {year}"
                             + (f" (needed for {needed_for})" if needed_for else "")
                             + f"; the index covers {years[0]}-{years[-1]}"
                             + (f" with gaps (years present: {years})" if len(years) != years[-1] - years[0] + 1
                                else "") + "; add the year or change the price_year/accounting_year")
        return self.values[year]

    def factor(self, from_year: int, to_year: int, *, needed_for: str = "") -> float:
        """``index[to_year] / index[from_year]`` (dimensionless)."""
        return self.value(to_year, needed_for=needed_for) / self.value(from_year, needed_for=needed_for)

    def describe(self) -> dict:
        return {"path": str(self.path), "years": [min(self.values), max(self.values)],
                "values": {str(k): v for k, v in self.values.items()}}


class PriceBook:
    """Unit prices and method parameters in force for a run.

    Layers, later ones winning:

    * prices: ``gep_raster/data/prices.csv`` → ``prices.table`` (CSV
      ``key,value,unit,price_year,source[,evidence][,service]``) → ``prices.overrides.<key>``; then,
      with ``prices.price_index``, every price is moved from its ``price_year`` to ``accounting_year``;
    * parameters: ``gep_raster/data/parameters.csv`` → ``parameters_table`` (CSV
      ``key,value,source[,evidence][,unit]``, e.g. regional values) → ``parameters.<key>``.

    :meth:`price` and :meth:`param` record the keys a run uses; :meth:`used_records` returns those
    rows (with ``origin``: the file and line or the config key they came from) for the manifest.
    """

    def __init__(self, prices: dict[str, Price], params: dict[str, Parameter], *,
                 price_index: PriceIndex | None = None, accounting_year: int | None = None,
                 files: list[Path] | None = None):
        self.prices = prices
        self.params = params
        self.price_index = price_index
        self.accounting_year = accounting_year
        #: user files read (prices.table, parameters_table, prices.price_index), for input checksums
        self.files: list[Path] = list(files or [])
        self._used: set[str] = set()

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: RunConfig) -> "PriceBook":
        """Build the book of a run from the defaults and the configuration.

        Raises
        ------
        TableError
            A user table is missing, unreadable or malformed; the message names the file, the line
            and the column (missing column, unknown/duplicate/blank key, value not a number, unit
            different from the default's, empty source, unknown evidence mark), or the price-index
            file and the year it lacks.
        ConfigError
            ``prices.price_index`` is given without ``accounting_year``.
        """
        files: list[Path] = []
        prices = cls._load_prices(cfg, files)
        params = cls._load_params(cfg, files)
        index = None
        if cfg.prices.price_index:
            if cfg.accounting_year is None:
                raise ConfigError(f"prices.price_index is set ({cfg.prices.price_index}) but accounting_year is "
                                  "missing: add 'accounting_year: <year>' so that every price can be moved from its "
                                  "price_year to the accounting year")
            path = cfg.resolve(cfg.prices.price_index)
            index = PriceIndex.load(path)
            files.append(path)
            prices = cls._apply_index(prices, index, int(cfg.accounting_year))
        for key, p in prices.items():
            if not np.isfinite(p.value) or p.value < 0:
                raise TableError(f"price '{key}' ({p.origin}) must be a finite non-negative number, got {p.value}")
        return cls(prices, params, price_index=index, accounting_year=cfg.accounting_year, files=files)

    @staticmethod
    def _load_prices(cfg: RunConfig, files: list[Path]) -> dict[str, Price]:
        df = _default_table("prices.csv")
        prices: dict[str, Price] = {}
        for r in df.to_dict("records"):
            prices[r["key"]] = Price(r["key"], r.get("service") or r["key"].split(".")[0], float(r["value"]),
                                     r["unit"], int(r["price_year"]), r["source"], str(r["evidence"]),
                                     original_value=float(r["value"]))
        if cfg.prices.table:
            path = cfg.resolve(cfg.prices.table)
            what = "prices.table"
            user = _read_csv(path, what)
            _need_columns(user, ["key", "value", "unit", "price_year", "source"], what, path,
                          "key,value,unit,price_year,source[,evidence][,service]")
            _check_keys(user, set(prices), what, path, "price", DEFAULT_PRICES)
            files.append(path)
            for i, r in enumerate(user.to_dict("records")):
                key = str(r["key"]).strip()
                at = f"{what} {path}: line {_line(i)} ({key})"
                default = prices[key]
                unit = _text(r["unit"], f"{at}, column 'unit'")
                if unit != default.unit:
                    raise TableError(f"{at}, column 'unit': '{unit}' differs from the expected '{default.unit}'; "
                                     "convert the value (e.g. per t C x 12/44 = per t CO2)")
                value = _number(r["value"], f"{at}, column 'value'")
                prices[key] = Price(key, default.service, value, unit,
                                    _number(r["price_year"], f"{at}, column 'price_year'", integer=True),
                                    _text(r["source"], f"{at}, column 'source'"),
                                    normalize_evidence(r.get("evidence"), f"{at}, column 'evidence'"),
                                    origin=f"prices.table: {path} line {_line(i)}", original_value=value)
        for key, o in cfg.prices.overrides.items():
            if key not in prices:
                raise TableError(f"prices.overrides.{key}: unknown price key; known: {sorted(prices)}")
            if o.unit != prices[key].unit:
                raise TableError(f"prices.overrides.{key}: unit '{o.unit}' differs from the expected "
                                 f"'{prices[key].unit}'")
            prices[key] = Price(key, prices[key].service, o.value, o.unit, o.price_year, o.source, o.evidence,
                                origin=f"config: prices.overrides.{key}", original_value=float(o.value))
        return prices

    @staticmethod
    def _load_params(cfg: RunConfig, files: list[Path]) -> dict[str, Parameter]:
        pdf = _default_table("parameters.csv")
        params = {r["key"]: Parameter(r["key"], r["service"], float(r["value"]), r["unit"], r["source"],
                                      str(r["evidence"])) for r in pdf.to_dict("records")}
        if cfg.parameters_table:
            path = cfg.resolve(cfg.parameters_table)
            what = "parameters_table"
            user = _read_csv(path, what)
            _need_columns(user, ["key", "value", "source"], what, path, "key,value,source[,evidence][,unit]")
            _check_keys(user, set(params), what, path, "parameter", DEFAULT_PARAMETERS)
            files.append(path)
            for i, r in enumerate(user.to_dict("records")):
                key = str(r["key"]).strip()
                at = f"{what} {path}: line {_line(i)} ({key})"
                default = params[key]
                if "unit" in user.columns and not _is_blank(r.get("unit")) and str(r["unit"]).strip() != default.unit:
                    raise TableError(f"{at}, column 'unit': '{str(r['unit']).strip()}' differs from the expected "
                                     f"'{default.unit}'; convert the value")
                params[key] = Parameter(key, default.service, _number(r["value"], f"{at}, column 'value'"),
                                        default.unit, _text(r["source"], f"{at}, column 'source'"),
                                        normalize_evidence(r.get("evidence"), f"{at}, column 'evidence'"),
                                        origin=f"parameters_table: {path} line {_line(i)}")
        for key, o in cfg.parameters.items():
            if key not in params:
                raise TableError(f"parameters.{key}: unknown parameter key; known: {sorted(params)}")
            params[key] = Parameter(key, params[key].service, o.value, params[key].unit, o.source, o.evidence,
                                    origin=f"config: parameters.{key}")
        return params

    @staticmethod
    def _apply_index(prices: dict[str, Price], index: PriceIndex, year: int) -> dict[str, Price]:
        index.value(year, needed_for=f"accounting_year {year}")
        missing = sorted({p.price_year for p in prices.values() if p.price_year not in index.values})
        if missing:
            need = {y: sorted(k for k, p in prices.items() if p.price_year == y) for y in missing}
            raise TableError(f"prices.price_index {index.path}: no index value for year(s) {missing}, needed to move "
                             f"the price(s) {need} from their price_year to accounting_year {year}; the index covers "
                             f"{min(index.values)}-{max(index.values)}")
        out = {}
        for key, p in prices.items():
            f = index.factor(p.price_year, year, needed_for=f"price '{key}'")
            out[key] = replace(p, value=p.original_value * f, value_year=year, price_index=str(index.path),
                               index_price_year=index.values[p.price_year], index_accounting_year=index.values[year],
                               index_factor=f)
        return out

    # ------------------------------------------------------------------------------------------
    def price(self, key: str) -> float:
        """Unit price in force (yuan per unit, accounting-year yuan when a price index is set); recorded."""
        self._used.add(key)
        return self.prices[key].value

    def param(self, key: str) -> float:
        """Method parameter in force; recorded."""
        self._used.add(key)
        return self.params[key].value

    def used_records(self) -> dict:
        """Rows used by the run, for the manifest.

        Returns
        -------
        dict
            ``prices``: one dict per price used (``value`` = price used; ``original_value``,
            ``price_year``, ``index_price_year``, ``index_accounting_year``, ``index_factor``,
            ``value_year`` document the price-index correction; ``origin`` the file/line or key);
            ``parameters``: one dict per parameter used (with ``origin``); ``price_index``: the index
            file and its values, or None.
        """
        return {
            "prices": [asdict(self.prices[k]) for k in sorted(self._used) if k in self.prices],
            "parameters": [asdict(self.params[k]) for k in sorted(self._used) if k in self.params],
            "price_index": ({**self.price_index.describe(), "accounting_year": self.accounting_year}
                            if self.price_index else None),
        }
