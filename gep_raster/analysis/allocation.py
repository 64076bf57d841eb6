"""Eco-compensation fund allocation (生态补偿资金分配): ``gep allocate``.

A fund F (whole yuan) is split among the units of one layer (townships, counties, special units) by a rule the
user writes as weights over named indicators, with floors and caps per unit. The result sums **exactly** to F.

Indicators (per unit i; the names a rule uses):

* ``gep_r``, ``gep``: GEP-R / GEP of the accounting year (yuan/a). In a series (``gep series`` folder) the values
  at comparable (base-year) prices, ``gep_r_yuan_comparable`` / ``gep_yuan_comparable``; in a single run the
  run's ``gep_r_yuan`` / ``gep_yuan``;
* ``gep_r_per_km2``, ``gep_per_km2``: that value / ``area_km2`` (yuan/km²/a);
* ``gep_r_change``, ``gep_change``: comparable-price change vs the **previous** accounting year of the series,
  x(Y) − x(Y_prev) (yuan/a); ``gep_r_change_pct``, ``gep_change_pct``: 100 (x(Y) − x(Y_prev)) / |x(Y_prev)| (%);
* ``gep_r_change_base``, ``gep_change_base`` (yuan/a) and ``..._change_base_pct`` (%): the same vs the series'
  **base** year. Change indicators need a series; on a single run they are a :class:`ConfigError`;
* a column of the ``--statistics`` table (GDP per capita, population ...), joined on the layer's id field:
  ``stat:<column>``, or the bare column name when it is not a built-in name.

Allocation (every formula is the engine's own definition, see ``docs/allocation.md``):

1. normalised score s_ik of indicator k, per its ``normalise`` and ``direction``:
   ``share``: s_ik = x_ik / Σ_j x_jk (higher_gets_more; needs x ≥ 0; all 0: 1/n) or
   s_ik = (1/x_ik) / Σ_j (1/x_jk) (lower_gets_more; needs x > 0);
   ``minmax``: s_ik = (x_ik − min_k)/(max_k − min_k) or (max_k − x_ik)/(max_k − min_k); all equal: 1;
2. composite score S_i = Σ_k w_k s_ik with the weights normalised to Σ w_k = 1; raw share p_i = S_i / Σ_j S_j;
3. floors l_i and caps u_i by water-filling: a_i = min(u_i, max(l_i, λ p_i)), λ the level at which Σ a_i = F
   (units fixed at their floor or cap, the rest redistributed in proportion to p among the free units);
   infeasible limits (Σ l > F, Σ u < F) are a :class:`ConfigError` naming the sums;
4. largest-remainder rounding to the yuan: ⌊a_i⌋, then one yuan more to the units with the largest fractional
   parts (ties: ascending id) until the integers sum to F.

Presets (``preset: vertical | horizontal``; keys the user writes override them) are the engine's own definitions:
no published allocation formula was read. The motivation is the Sanming (Fujian) GEP pilot plan 2026-28, task
10: GEP-R-based allocation of eco-compensation funds, vertical transfers based on GEP, horizontal transfers based
on GEP-R and the development level of each area.

* ``vertical``: ``gep`` (share, higher gets more), weight 1: the fund in proportion to each unit's GEP;
* ``horizontal``: ``gep_r_per_km2`` (minmax, higher gets more) 0.5 and the development column (rule key
  ``development_column``, default ``gdp_per_capita_yuan``, minmax, lower gets more) 0.5. With ``pairs`` (a CSV
  of ``payer_id, receiver_id``) the units of the split are the pairs and each indicator of a pair is
  x(receiver) − x(payer): the amount of a pair is what its payer transfers to its receiver.

Outputs: ``allocation_<layer>.csv`` (per unit: id, name, every indicator's value and score, composite score,
share, floor/cap and flags, unrounded amount, ``allocated_yuan`` int), with pairs also
``allocation_<layer>_units.csv`` (paid, received, net per unit), and ``allocation_manifest.json``.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .._version import __version__
from ..errors import ConfigError, InputError
from .change import growth_pct, load_run

log = logging.getLogger("gep_raster")

__all__ = ["BUILTIN_INDICATORS", "PRESETS", "PRESET_STATUS", "FORMULAS", "IndicatorRule", "AllocationRule",
           "Indicator", "rule_from_dict", "load_rule", "resolve_indicators", "parse_fund", "normalise_scores",
           "water_fill", "largest_remainder", "allocate_fund", "SourceData", "open_source", "indicator_table",
           "read_statistics", "read_unit_limits", "read_pairs", "pair_table", "pair_unit_totals", "allocate",
           "register"]

#: built-in indicators: name -> (value column stem, kind, unit); kind "level", "per_km2", "change", "change_pct",
#: "change_base", "change_base_pct"
BUILTIN_INDICATORS: dict[str, tuple[str, str, str]] = {}
for _stem, _short in (("gep_r_yuan", "gep_r"), ("gep_yuan", "gep")):
    BUILTIN_INDICATORS.update({
        _short: (_stem, "level", "yuan/a"), f"{_short}_per_km2": (_stem, "per_km2", "yuan/km2/a"),
        f"{_short}_change": (_stem, "change", "yuan/a"), f"{_short}_change_pct": (_stem, "change_pct", "%"),
        f"{_short}_change_base": (_stem, "change_base", "yuan/a"),
        f"{_short}_change_base_pct": (_stem, "change_base_pct", "%")})

_KIND_WORDS = {
    "level": "{v} of the accounting year",
    "per_km2": "{v} of the accounting year / area_km2",
    "change": "{v}(year) - {v}(previous year of the series), comparable (base-year) prices",
    "change_pct": "100 * ({v}(year) - {v}(previous year)) / |{v}(previous year)|, comparable prices",
    "change_base": "{v}(year) - {v}(base year of the series), comparable (base-year) prices",
    "change_base_pct": "100 * ({v}(year) - {v}(base year)) / |{v}(base year)|, comparable prices",
}

#: the status of the presets, written into every manifest
PRESET_STATUS = ("engine's own definition: no published allocation formula was read. Motivation (not a formula "
                 "source): Sanming (Fujian) GEP pilot plan 2026-28, task 10, GEP-R-based allocation of "
                 "eco-compensation funds (vertical transfers based on GEP, horizontal transfers based on GEP-R and "
                 "the development level of each area)")

#: rule presets: name -> indicators (``{development}`` is replaced by the rule's ``development_column``)
PRESETS: dict[str, dict] = {
    "vertical": {"description": "fund from above in proportion to each unit's GEP",
                 "indicators": {"gep": {"weight": 1.0, "direction": "higher_gets_more", "normalise": "share"}}},
    "horizontal": {"description": "GEP-R per km2 (higher gets more) and development level (lower gets more), "
                                  "equal weights, min-max scores; with pairs: receiver - payer differences",
                   "indicators": {"gep_r_per_km2": {"weight": 0.5, "direction": "higher_gets_more",
                                                    "normalise": "minmax"},
                                  "{development}": {"weight": 0.5, "direction": "lower_gets_more",
                                                    "normalise": "minmax"}}},
}

#: the formulas in words (written into the manifest)
FORMULAS = {
    "share": "higher_gets_more: s_i = x_i / sum_j x_j (needs x >= 0; all x = 0: s_i = 1/n); lower_gets_more: "
             "s_i = (1/x_i) / sum_j (1/x_j) (needs x > 0)",
    "minmax": "higher_gets_more: s_i = (x_i - min x) / (max x - min x); lower_gets_more: s_i = (max x - x_i) / "
              "(max x - min x); all x equal: s_i = 1",
    "composite": "S_i = sum_k w_k s_ik, w_k = weight_k / sum of the weights (weight 0 drops an indicator)",
    "share_of_fund": "p_i = S_i / sum_j S_j",
    "floors_caps": "water-filling: a_i = min(cap_i, max(floor_i, lambda * p_i)) with lambda such that sum_i a_i = "
                   "fund (units at floor or cap fixed, the rest split in proportion to p_i among the free units)",
    "rounding": "largest remainder: floor(a_i), then +1 yuan to the units with the largest fractional parts (ties: "
                "ascending id) until sum_i allocated_i = fund exactly",
    "pairs": "with pairs: one allocation row per (payer, receiver) pair, each indicator x_pair = x(receiver) - "
             "x(payer); allocated_yuan of a pair = transfer from payer to receiver",
}

_ROUND_DECIMALS = 9  # fractional parts compared to 1e-9 yuan, so equal remainders tie and the id decides


# --------------------------------------------------------------------------------------
# rule
# --------------------------------------------------------------------------------------
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _whole_yuan(v, what: str):
    if v is None:
        return None
    f = float(v)
    if not math.isfinite(f) or f < 0 or f != math.floor(f):
        raise ValueError(f"{what} must be a whole, non-negative number of yuan, got {v}")
    return int(f)


class IndicatorRule(_Model):
    """One indicator of a rule: ``indicators.<name>: {weight, direction, normalise}``."""

    weight: float = Field(ge=0, allow_inf_nan=False, description="Weight (>= 0; normalised to sum 1; 0 drops it).")
    direction: Literal["higher_gets_more", "lower_gets_more"] = Field(
        "higher_gets_more", description="higher_gets_more: a larger value gives a larger score; lower_gets_more: "
                                        "a smaller value does (e.g. GDP per capita).")
    normalise: Optional[Literal["share", "minmax"]] = Field(
        None, description="Score of this indicator; null: the rule's normalise.")


class AllocationRule(_Model):
    """An allocation rule (YAML file of ``gep allocate --rule``); see ``docs/allocation.md``."""

    name: Optional[str] = Field(None, description="Label of the rule (recorded in the manifest).")
    preset: Optional[Literal["vertical", "horizontal"]] = Field(
        None, description="Fills the indicators (engine's own definitions); indicators given here override them.")
    indicators: dict[str, IndicatorRule] = Field(default_factory=dict, description="name -> weight, direction.")
    normalise: Literal["share", "minmax"] = Field("share", description="Default score of the indicators.")
    development_column: str = Field("gdp_per_capita_yuan", description=(
        "Statistics column of the development level used by the horizontal preset."))
    floor_yuan: int = Field(0, description="Floor of every unit (whole yuan).")
    cap_yuan: Optional[int] = Field(None, description="Cap of every unit (whole yuan); null: none.")
    unit_limits: Optional[str] = Field(None, description=(
        "CSV of per-unit floor_yuan / cap_yuan (id field of the layer), relative to the rule file."))
    pairs: Optional[str] = Field(None, description=(
        "CSV of payer_id, receiver_id pairs (horizontal transfers), relative to the rule file."))

    @field_validator("floor_yuan", "cap_yuan", mode="before")
    @classmethod
    def _whole(cls, v, info):
        return _whole_yuan(v, info.field_name)


@dataclass(frozen=True)
class Indicator:
    """A resolved indicator: rule key, output column, source (``builtin`` / ``statistics``), normalised weight."""

    key: str
    column: str
    source: str
    weight_given: float
    weight: float
    direction: str
    normalise: str


def _format_errors(where: str, exc: ValidationError) -> str:
    from ..config import _format_validation_error

    return _format_validation_error(where, exc, docs="docs/allocation.md")


def _indicator_list(items: list, where: str) -> dict:
    """``indicators`` written as a list of ``{name: ..., weight: ...}`` items, as the mapping ``name -> {...}``."""
    out = {}
    for n, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ConfigError(f"{where}: indicators.{n}: a list item needs a 'name' (or write indicators as a mapping "
                              "name -> {weight: ...})")
        if item["name"] in out:
            raise ConfigError(f"{where}: indicators.{n}: indicator '{item['name']}' given twice")
        out[item["name"]] = {k: v for k, v in item.items() if k != "name"}
    return out


def rule_from_dict(raw: dict, where: str = "rule") -> AllocationRule:
    """Validate a rule given as a mapping; a ``preset`` fills the indicators, the user's keys override them.

    Parameters
    ----------
    raw : dict
        The rule's keys (``preset``, ``indicators``, ``normalise``, ``floor_yuan``, ``cap_yuan`` ...).
        ``indicators`` is a mapping ``name -> {weight, direction, normalise}``, or a list of such items with a
        ``name`` key each.
    where : str
        What error messages name (the rule file).

    Returns
    -------
    AllocationRule
        With ``indicators`` = the preset's indicators updated field by field with the user's.

    Raises
    ------
    ConfigError
        Not a mapping, unknown key, bad value; the message names each key.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of keys (preset, indicators, normalise, ...)")
    raw = dict(raw)
    if isinstance(raw.get("indicators"), list):
        raw["indicators"] = _indicator_list(raw["indicators"], where)
    preset = raw.get("preset")
    if preset is not None and preset in PRESETS:
        dev = raw.get("development_column", "gdp_per_capita_yuan")
        merged = {k.replace("{development}", str(dev)): dict(v) for k, v in PRESETS[preset]["indicators"].items()}
        user = raw.get("indicators") or {}
        if not isinstance(user, dict):
            raise ConfigError(f"{where}: indicators: must be a mapping of indicator name -> {{weight: ...}}")
        for k, v in user.items():
            merged[k] = {**merged.get(k, {}), **v} if isinstance(v, dict) else v
        raw["indicators"] = merged
    try:
        return AllocationRule.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(where, exc)) from None


def load_rule(path) -> AllocationRule:
    """Read and validate a rule YAML file (:func:`rule_from_dict`); relative ``unit_limits``/``pairs`` paths are
    resolved from the file's folder.

    Raises
    ------
    ConfigError
        File missing, not YAML, or a key is invalid.
    """
    from ..config import read_yaml_file

    p = Path(path)
    raw = read_yaml_file(p, "rule")
    rule = rule_from_dict(raw, where=str(p))
    upd = {k: str((p.parent / getattr(rule, k)).resolve()) for k in ("unit_limits", "pairs") if getattr(rule, k)}
    return rule.model_copy(update=upd) if upd else rule


def _as_rule(rule) -> AllocationRule:
    if isinstance(rule, AllocationRule):
        return rule
    if isinstance(rule, dict):
        return rule_from_dict(rule)
    return load_rule(rule)


def resolve_indicators(rule: AllocationRule) -> list[Indicator]:
    """The indicators with a weight > 0, weights normalised to sum 1, names resolved.

    A built-in name (:data:`BUILTIN_INDICATORS`) is built-in; ``stat:<column>`` and any other name are columns of
    the statistics table (output column: the name without ``stat:``).

    Raises
    ------
    ConfigError
        No indicator with a weight > 0; ``stat:`` with a built-in name or an empty column; one column twice.
    """
    rule = _as_rule(rule)
    used = {k: v for k, v in rule.indicators.items() if v.weight > 0}
    if not used:
        raise ConfigError(f"rule indicators: no indicator with a weight > 0 (given: {sorted(rule.indicators) or 'none'}"
                          f"; built-in: {', '.join(BUILTIN_INDICATORS)}; or a statistics column)")
    total = sum(v.weight for v in used.values())
    out, seen = [], {}
    for k, v in used.items():
        col = k[5:] if k.startswith("stat:") else k
        if k.startswith("stat:") and (not col or col in BUILTIN_INDICATORS):
            raise ConfigError(f"rule indicators.{k}: '{col}' is {'empty' if not col else 'a built-in indicator name'}"
                              "; a statistics column must be named otherwise")
        if col in seen:
            raise ConfigError(f"rule indicators: '{seen[col]}' and '{k}' name the same column '{col}'")
        seen[col] = k
        src = "builtin" if k in BUILTIN_INDICATORS else "statistics"
        out.append(Indicator(k, col, src, float(v.weight), float(v.weight) / total, v.direction,
                             v.normalise or rule.normalise))
    return out


# --------------------------------------------------------------------------------------
# arithmetic
# --------------------------------------------------------------------------------------
def parse_fund(fund) -> int:
    """The fund as a whole number of yuan.

    Parameters
    ----------
    fund : int, float, str or Decimal
        E.g. ``100000000``, ``1e8``, ``"100_000_000"``, ``"1,000,000"``.

    Returns
    -------
    int
        yuan, > 0.

    Raises
    ------
    ConfigError
        Not a number, not whole yuan, or not positive.
    """
    try:
        d = Decimal(str(fund).replace("_", "").replace(",", "").strip())
    except InvalidOperation:
        raise ConfigError(f"fund: '{fund}' is not a number of yuan") from None
    if not d.is_finite() or d != d.to_integral_value():
        raise ConfigError(f"fund: {fund} yuan is not a whole number of yuan (the allocation is rounded to the yuan; "
                          "give the fund in whole yuan)")
    if d <= 0:
        raise ConfigError(f"fund: must be positive, got {fund} yuan")
    return int(d)


def normalise_scores(x, method: str, direction: str, *, name: str = "indicator", ids=None) -> np.ndarray:
    """Normalised scores of one indicator (formulas: :data:`FORMULAS`).

    Parameters
    ----------
    x : array-like, shape (n,)
        Indicator values (float64).
    method : {"share", "minmax"}
    direction : {"higher_gets_more", "lower_gets_more"}
    name : str
        Indicator name (for messages).
    ids : array-like, shape (n,), optional
        Unit ids (for messages).

    Returns
    -------
    numpy.ndarray, float64, shape (n,)
        Scores in [0, 1]; with ``share`` they sum to 1.

    Raises
    ------
    InputError
        A value is NaN or infinite.
    ConfigError
        ``share`` with a negative value (or a value <= 0 with lower_gets_more): use ``normalise: minmax``.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    ids = np.asarray(ids if ids is not None else np.arange(len(x)), dtype=object)
    if not np.isfinite(x).all():
        raise InputError(f"indicator {name}: no finite value for ids {ids[~np.isfinite(x)].tolist()[:20]}")
    if method == "minmax":
        lo, hi = float(x.min()), float(x.max())
        if hi == lo:
            return np.ones_like(x)
        return (x - lo) / (hi - lo) if direction == "higher_gets_more" else (hi - x) / (hi - lo)
    if method != "share":
        raise ConfigError(f"indicator {name}: normalise must be share or minmax, got {method!r}")
    if direction == "higher_gets_more":
        if (x < 0).any():
            raise ConfigError(f"indicator {name}: normalise share needs values >= 0; negative for ids "
                              f"{ids[x < 0].tolist()[:20]} ({x[x < 0].tolist()[:5]}); use normalise: minmax")
        s = x.sum()
        return x / s if s > 0 else np.full_like(x, 1.0 / len(x))
    if (x <= 0).any():
        raise ConfigError(f"indicator {name}: normalise share with lower_gets_more (1/x) needs values > 0; <= 0 for "
                          f"ids {ids[x <= 0].tolist()[:20]}; use normalise: minmax")
    inv = 1.0 / x
    return inv / inv.sum()


def _limit_arrays(n: int, total: int, floors, caps) -> tuple[np.ndarray, np.ndarray]:
    lo = np.zeros(n) if floors is None else np.broadcast_to(np.asarray(floors, np.float64), (n,)).copy()
    hi = np.full(n, np.inf) if caps is None else np.broadcast_to(np.asarray(caps, np.float64), (n,)).copy()
    hi = np.where(np.isnan(hi), np.inf, hi)
    if np.isnan(lo).any() or (lo < 0).any():
        raise ConfigError("floors must be >= 0 yuan (no NaN)")
    bad = np.flatnonzero(lo > hi)
    if bad.size:
        raise ConfigError(f"floor > cap for {bad.size} unit(s) (positions {bad.tolist()[:10]}: floors "
                          f"{lo[bad].tolist()[:5]}, caps {hi[bad].tolist()[:5]} yuan)")
    if lo.sum() > total:
        raise ConfigError(f"infeasible floors: the {n} floors sum to {lo.sum():,.0f} yuan > fund {total:,.0f} yuan; "
                          "lower the floors or raise the fund")
    if hi.sum() < total:
        raise ConfigError(f"infeasible caps: the {n} caps sum to {hi.sum():,.0f} yuan < fund {total:,.0f} yuan; "
                          "raise the caps or lower the fund")
    return lo, hi


def water_fill(shares, total, floors=None, caps=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``total`` in proportion to ``shares`` within per-unit floors and caps (water-filling).

    a_i = min(u_i, max(l_i, λ p_i)) with the level λ at which Σ a_i = total (exact: λ is found on the piecewise
    linear Σ a(λ) between its breakpoints l_i/p_i, u_i/p_i). Units with p_i = 0 get their floor.

    Parameters
    ----------
    shares : array-like, shape (n,)
        p_i >= 0, not all 0 (need not sum to 1).
    total : float
        Amount to split (yuan).
    floors, caps : array-like, shape (n,) or scalar, optional
        l_i >= 0 (default 0), u_i (default none; NaN or inf = none), yuan.

    Returns
    -------
    amounts : numpy.ndarray, float64, shape (n,)
        a_i, yuan; Σ = total within rounding error.
    at_floor, at_cap : numpy.ndarray, bool, shape (n,)
        The floor binds (λ p_i <= l_i, l_i > 0) / the cap binds (λ p_i >= u_i).

    Raises
    ------
    ConfigError
        Floor > cap, Σ floors > total, Σ caps < total, or the units with p_i > 0 cannot take the rest.
    """
    p = np.asarray(shares, dtype=np.float64).reshape(-1)
    n = len(p)
    if n == 0 or not np.isfinite(p).all() or (p < 0).any() or not (p > 0).any():
        raise ConfigError("water_fill: shares must be finite, >= 0 and not all 0")
    lo, hi = _limit_arrays(n, total, floors, caps)
    pos = p > 0
    fixed0 = lo[~pos].sum()

    def g(lam):
        return np.clip(lam * p[pos], lo[pos], hi[pos]).sum() + fixed0

    pp = p[pos]
    bps = np.unique(np.concatenate([[0.0], lo[pos] / pp, (hi[pos] / pp)[np.isfinite(hi[pos])]]))
    if g(bps[-1]) < total:  # beyond the last breakpoint only uncapped units grow
        seg_lo, seg_hi = bps[-1], np.inf
        if not (pos & np.isinf(hi)).any():
            raise ConfigError(f"infeasible caps: the units with a score > 0 are all at their cap "
                              f"({g(bps[-1]):,.0f} yuan with the floors of the others) < fund {total:,.0f} yuan; "
                              "units with a score 0 get only their floor")
    elif g(bps[0]) >= total:
        seg_lo = seg_hi = 0.0
    else:
        a, b = 0, len(bps) - 1  # g(bps[a]) < total <= g(bps[b])
        while b - a > 1:
            m = (a + b) // 2
            a, b = (m, b) if g(bps[m]) < total else (a, m)
        seg_lo, seg_hi = bps[a], bps[b]
    with np.errstate(divide="ignore", invalid="ignore"):
        r_lo, r_hi = np.where(pos, lo / p, np.inf), np.where(pos, hi / p, np.inf)
    at_cap = pos & (r_hi <= seg_lo) & (seg_hi > 0)
    at_floor = ~pos | (r_lo >= seg_hi)
    free = ~at_cap & ~at_floor
    rest = total - hi[at_cap].sum() - lo[at_floor].sum()
    lam = rest / p[free].sum() if free.any() else 0.0
    amounts = np.where(at_cap, hi, np.where(at_floor, lo, lam * p))
    return amounts, at_floor & (lo > 0), at_cap


def _whole_total(total) -> int:
    try:
        d = Decimal(str(total))
    except InvalidOperation:
        raise ConfigError(f"largest_remainder: total '{total}' is not a number") from None
    if not d.is_finite() or d != d.to_integral_value() or d < 0:
        raise ConfigError(f"largest_remainder: total {total} is not a whole, non-negative number of yuan")
    return int(d)


def largest_remainder(amounts, total, *, keys=None) -> np.ndarray:
    """Round ``amounts`` to whole yuan so that they sum exactly to ``total`` (largest-remainder method).

    Each unit gets ⌊a_i⌋; the k = total − Σ⌊a_i⌋ units with the largest fractional parts get one yuan more.
    Fractional parts are compared to 1e-9 yuan; ties go to the smaller key.

    Parameters
    ----------
    amounts : array-like, shape (n,)
        Non-negative amounts (yuan) that sum to ``total`` within rounding error.
    total : int
        Whole yuan.
    keys : array-like, shape (n,), optional
        Tie-break keys (e.g. unit ids; ascending wins); default the position.

    Returns
    -------
    numpy.ndarray, int64, shape (n,)
        Σ = total exactly; each value is ⌊a_i⌋ or ⌊a_i⌋ + 1.

    Raises
    ------
    ConfigError
        ``total`` not a whole number, an amount negative or not finite, or Σ amounts differs from ``total``.
    """
    total = _whole_total(total)
    a = np.asarray(amounts, dtype=np.float64).reshape(-1)
    if not np.isfinite(a).all() or (a < -1e-9).any():
        raise ConfigError("largest_remainder: amounts must be finite and >= 0")
    a = np.maximum(a, 0.0)
    near = np.rint(a)
    a = np.where(np.isclose(a, near, rtol=1e-12, atol=1e-7), near, a)
    tol = max(1e-6 * max(len(a), 1), 1e-9 * total)
    if abs(a.sum() - total) > tol:
        raise ConfigError(f"largest_remainder: the amounts sum to {a.sum():,.6f}, not to the total {total:,}")
    base = np.floor(a).astype(np.int64)
    k = int(total - base.sum())
    if not 0 <= k <= len(a):
        raise ConfigError(f"largest_remainder: {k} yuan to hand out among {len(a)} amounts")
    rem = np.round(a - base, _ROUND_DECIMALS)
    tie = np.arange(len(a)) if keys is None else np.argsort(np.argsort(np.asarray(keys).astype(str), kind="stable"),
                                                            kind="stable")
    order = np.lexsort((tie, -rem))
    base[order[:k]] += 1
    return base


# --------------------------------------------------------------------------------------
# the allocation of a table
# --------------------------------------------------------------------------------------
def _limits(table, id_field: str, rule: AllocationRule, limits) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit floors and caps (yuan, float64 (n,); cap inf = none): the rule's, replaced by ``limits`` rows."""
    n = len(table)
    lo = np.full(n, float(rule.floor_yuan))
    hi = np.full(n, np.inf if rule.cap_yuan is None else float(rule.cap_yuan))
    if limits is not None and len(limits):
        pos = {v: i for i, v in enumerate(table[id_field].astype(str))}
        unknown = sorted(set(limits[id_field].astype(str)) - set(pos))
        if unknown:
            raise InputError(f"unit limits: ids not in the table: {unknown[:20]}")
        idx = np.array([pos[v] for v in limits[id_field].astype(str)], dtype=np.int64)
        for col, arr in (("floor_yuan", lo), ("cap_yuan", hi)):
            if col in limits:
                v = limits[col].to_numpy(np.float64)
                ok = np.isfinite(v)
                arr[idx[ok]] = v[ok]
    return lo, hi


def allocate_fund(table, id_field: str, fund_yuan, rule, *, name_field: str | None = None, limits=None):
    """Split ``fund_yuan`` among the rows of ``table`` by ``rule`` (scores, water-filling, largest remainder).

    Parameters
    ----------
    table : pandas.DataFrame
        One row per unit: ``id_field`` (unique), optionally ``name_field``, and a float column per indicator of the
        rule, named by :attr:`Indicator.column` (the rule key without ``stat:``).
    id_field : str
        Unit id column (ties of the rounding go to the smaller id, as text).
    fund_yuan : int or str
        The fund, whole yuan (:func:`parse_fund`).
    rule : AllocationRule, dict or path
        The rule (:func:`rule_from_dict`, :func:`load_rule`).
    name_field : str, optional
        Unit name column, copied to the result.
    limits : pandas.DataFrame, optional
        Per-unit ``floor_yuan`` / ``cap_yuan`` (NaN: the rule's) by ``id_field`` (:func:`read_unit_limits`).

    Returns
    -------
    pandas.DataFrame
        In the order of ``table``: id, name, per indicator ``<column>`` (value) and ``score_<column>``,
        ``composite_score``, ``share`` (p_i), ``floor_yuan``, ``cap_yuan`` (NaN: none), ``amount_unrounded_yuan``
        (a_i, float), ``at_floor``, ``at_cap`` (bool), ``allocated_yuan`` (int64, Σ = fund exactly).

    Raises
    ------
    ConfigError
        Bad fund, rule, infeasible floors/caps, an indicator column missing from ``table``.
    InputError
        Missing id column, duplicate ids, non-finite indicator values.
    """
    import pandas as pd

    rule = _as_rule(rule)
    fund = parse_fund(fund_yuan)
    inds = resolve_indicators(rule)
    if id_field not in table.columns:
        raise InputError(f"allocation table: id field '{id_field}' missing (columns: {list(table.columns)})")
    ids = table[id_field].astype(str).to_numpy()
    if len(ids) == 0:
        raise InputError("allocation table: no units")
    if pd.Series(ids).duplicated().any():
        raise InputError(f"allocation table: duplicate ids in '{id_field}': "
                         f"{sorted(set(pd.Series(ids)[pd.Series(ids).duplicated()]))[:10]}")
    missing = [i.column for i in inds if i.column not in table.columns]
    if missing:
        raise ConfigError(f"allocation table: no column for indicator(s) {missing} (columns: {list(table.columns)})")
    out = pd.DataFrame({id_field: table[id_field].to_numpy()})
    if name_field and name_field != id_field and name_field in table.columns:
        out[name_field] = table[name_field].to_numpy()
    comp = np.zeros(len(table))
    for ind in inds:
        x = pd.to_numeric(table[ind.column], errors="coerce").to_numpy(np.float64)
        s = normalise_scores(x, ind.normalise, ind.direction, name=ind.key, ids=ids)
        out[ind.column], out[f"score_{ind.column}"] = x, s
        comp += ind.weight * s
    out["composite_score"] = comp
    out["share"] = comp / comp.sum()
    lo, hi = _limits(table, id_field, rule, limits)
    amounts, at_floor, at_cap = water_fill(out["share"].to_numpy(), fund, lo, hi)
    out["floor_yuan"], out["cap_yuan"] = lo, np.where(np.isinf(hi), np.nan, hi)
    out["amount_unrounded_yuan"] = amounts
    out["at_floor"], out["at_cap"] = at_floor, at_cap
    out["allocated_yuan"] = largest_remainder(amounts, fund, keys=ids)
    return out


# --------------------------------------------------------------------------------------
# sources: a series folder or a run folder
# --------------------------------------------------------------------------------------
@dataclass
class SourceData:
    """The layer table(s) an allocation reads.

    Attributes
    ----------
    kind : str
        ``series`` or ``run``.
    path : Path
        The folder.
    layer, id_field, name_field : str
    year : int or None
        Accounting year of ``table``.
    table : pandas.DataFrame
        Rows of ``year`` (ids as text).
    previous, base : pandas.DataFrame or None
        Rows of the previous / base year of a series (None for a run, or when ``year`` is the first/base year).
    previous_year, base_year : int or None
    files : dict
        ``role -> Path`` of the files read (manifest, table), hashed into the allocation manifest.
    info : dict
        Run name / hash, series years, price basis.
    """

    kind: str
    path: Path
    layer: str
    id_field: str
    name_field: str
    year: Optional[int]
    table: object
    previous: object = None
    base: object = None
    previous_year: Optional[int] = None
    base_year: Optional[int] = None
    files: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def open_source(source_dir, layer: str, *, year: int | None = None) -> SourceData:
    """Open a series folder (``series_manifest.json``, written by ``gep series``) or a run folder (``manifest.json``).

    Parameters
    ----------
    source_dir : path-like
    layer : str
        Layer name.
    year : int, optional
        Accounting year; default the last year of the series (a run: its accounting year; another year is an error).

    Raises
    ------
    InputError
        Neither manifest; unreadable table; a column missing; duplicate ids.
    ConfigError
        Unknown layer, year not in the series / not the run's year.
    """
    p = Path(source_dir)
    if (p / "series_manifest.json").is_file():
        return _open_series(p, layer, year)
    if (p / "manifest.json").is_file():
        return _open_run(p, layer, year)
    raise InputError(f"{p}: neither series_manifest.json (a `gep series` folder) nor manifest.json (a finished "
                     "`gep run` folder)")


def _open_run(p: Path, layer: str, year) -> SourceData:
    r = load_run(p)
    if layer not in r.layers:
        raise ConfigError(f"layer '{layer}' has no table in run {p} (layers with a table: {sorted(r.layers)})")
    ry = r.manifest.get("accounting_year")
    if year is not None and ry is not None and int(year) != int(ry):
        raise ConfigError(f"--year {year}: run {p} is the account of {ry}; for another year give a series folder")
    info = r.layers[layer]
    t = r.read_table(layer)
    _check_ids(t, info["id_field"], info["csv"])
    return SourceData("run", p, layer, info["id_field"], info["name_field"], None if ry is None else int(ry), t,
                      files={"manifest": p / "manifest.json", "table": info["csv"]},
                      info={"run_name": r.manifest.get("run_name"), "run_hash": r.manifest.get("run_hash"),
                            "price_basis": "the run's prices (no comparable prices, no change indicators)"})


def _open_series(p: Path, layer: str, year) -> SourceData:
    import pandas as pd

    mpath = p / "series_manifest.json"
    try:
        m = json.loads(mpath.read_text(encoding="utf-8"))
        layers, years = m["layers"], sorted(int(y) for y in m["years"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{mpath}: cannot read the series manifest (needs 'layers' and 'years': {exc})") from None
    if layer not in layers:
        raise ConfigError(f"layer '{layer}' is not a layer of series {p} (layers: {sorted(layers)})")
    li = layers[layer]
    idf, nmf = li["id_field"], li.get("name_field", li["id_field"])
    csv = p / li.get("table", f"tables/{layer}_series.csv")
    try:
        t = pd.read_csv(csv, dtype={idf: str, nmf: str}, encoding="utf-8-sig")
    except (OSError, ValueError) as exc:
        raise InputError(f"{csv}: cannot read the series table of layer '{layer}' ({exc})") from None
    for c in (idf, "year"):
        if c not in t.columns:
            raise InputError(f"{csv}: column '{c}' missing (columns: {list(t.columns)})")
    y = years[-1] if year is None else int(year)
    if y not in years:
        raise ConfigError(f"--year {year}: not an accounting year of series {p} (years: {years})")
    base_year = int(m.get("base_year", years[0]))
    prev_year = max((v for v in years if v < y), default=None)
    rows = {v: t[t["year"] == v].reset_index(drop=True) for v in {y, prev_year, base_year} if v is not None}
    for v, rt in rows.items():
        _check_ids(rt, idf, csv, f" (year {v})")
    if len(rows[y]) == 0:
        raise InputError(f"{csv}: no rows of year {y}")
    return SourceData("series", p, layer, idf, nmf, y, rows[y], rows.get(prev_year), rows.get(base_year)
                      if base_year != y else None, prev_year, base_year, files={"manifest": mpath, "table": csv},
                      info={"years": years, "price_basis": f"comparable prices of the base year {base_year}"})


def _check_ids(t, idf: str, where, extra: str = "") -> None:
    if idf not in t.columns:
        raise InputError(f"{where}: id field '{idf}' missing{extra} (columns: {list(t.columns)})")
    d = t[idf].duplicated()
    if d.any():
        raise InputError(f"{where}: duplicate ids in '{idf}'{extra}: {t.loc[d, idf].tolist()[:10]}")


# --------------------------------------------------------------------------------------
# indicator values
# --------------------------------------------------------------------------------------
def _column(src: SourceData, t, col: str, ind: str) -> np.ndarray:
    if col not in t.columns:
        hint = " (the run has no economic accounts: use gep_r)" if col.startswith("gep_yuan") else ""
        raise InputError(f"{src.files['table']}: column '{col}' missing, needed by indicator {ind}{hint}")
    return t[col].to_numpy(np.float64)


def _aligned(src: SourceData, other, col: str, ind: str, which: str, year) -> np.ndarray:
    """``col`` of ``other`` (rows of another year) in the order of ``src.table``."""
    idf = src.id_field
    s = other.set_index(idf)[col] if col in other.columns else None
    if s is None:
        return _column(src, other, col, ind)
    miss = [i for i in src.table[idf] if i not in s.index]
    if miss:
        raise InputError(f"{src.files['table']}: ids of year {src.year} without a row in the {which} year {year} "
                         f"(indicator {ind}): {miss[:20]}")
    return s.reindex(src.table[idf]).to_numpy(np.float64)


def _builtin_values(src: SourceData, key: str) -> np.ndarray:
    """Values of a built-in indicator (float64 (n,), in the order of ``src.table``)."""
    stem, kind, _ = BUILTIN_INDICATORS[key]
    if src.kind == "run" and kind.startswith("change"):
        raise ConfigError(f"indicator {key}: a change indicator needs a series (`gep series` folder, comparable "
                          f"prices); {src.path} is a single run")
    col = f"{stem}_comparable" if src.kind == "series" else stem
    x = _column(src, src.table, col, key)
    if kind == "level":
        return x
    if kind == "per_km2":
        a = _column(src, src.table, "area_km2", key)
        bad = ~(a > 0)
        if bad.any():
            raise InputError(f"{src.files['table']}: area_km2 <= 0 or missing for ids "
                             f"{src.table.loc[bad, src.id_field].tolist()[:20]} (indicator {key})")
        return x / a
    which, year, other = (("previous", src.previous_year, src.previous) if kind in ("change", "change_pct")
                          else ("base", src.base_year, src.base))
    if other is None:
        raise ConfigError(f"indicator {key}: the year {src.year} is the {'first' if which == 'previous' else 'base'} "
                          f"year of series {src.path}; there is no {which} year to compare with (--year)")
    x0 = _aligned(src, other, col, key, which, year)
    return x - x0 if kind in ("change", "change_base") else np.asarray(growth_pct(x0, x), dtype=np.float64)


def indicator_table(src: SourceData, rule, statistics=None):
    """One row per unit of ``src`` with the value of every indicator of ``rule``.

    Parameters
    ----------
    src : SourceData
        :func:`open_source`.
    rule : AllocationRule, dict or path
    statistics : pandas.DataFrame, optional
        :func:`read_statistics` (indexed like ``src.table``); needed for statistics indicators.

    Returns
    -------
    pandas.DataFrame
        ``id_field``, ``name_field``, ``area_km2`` (when present), and a float64 column per indicator
        (:attr:`Indicator.column`).

    Raises
    ------
    ConfigError
        An indicator that is neither built-in nor a statistics column; a change indicator on a run.
    InputError
        A column missing; ids missing from the previous/base year.
    """
    import pandas as pd

    rule = _as_rule(rule)
    t = src.table
    keep = [c for c in dict.fromkeys([src.id_field, src.name_field, "area_km2"]) if c in t.columns]
    out = pd.DataFrame({c: t[c].to_numpy() for c in keep})
    for ind in resolve_indicators(rule):
        if ind.source == "builtin":
            out[ind.column] = _builtin_values(src, ind.key)
        elif statistics is None or ind.column not in statistics.columns:
            have = [] if statistics is None else [c for c in statistics.columns if c != src.id_field]
            raise ConfigError(f"rule indicators.{ind.key}: unknown indicator (built-in: {', '.join(BUILTIN_INDICATORS)}"
                              f"; statistics columns: {have if statistics is not None else 'no --statistics given'})")
        else:
            out[ind.column] = statistics[ind.column].to_numpy(np.float64)
    return out


def read_statistics(path, id_field: str, ids, columns, *, year: int | None = None):
    """The statistics table (GDP per capita, population ...) aligned to the units ``ids``.

    Parameters
    ----------
    path : path-like
        CSV (UTF-8, BOM allowed) with ``id_field`` and the ``columns``; with a ``year`` column only the rows of
        ``year`` are used.
    id_field : str
        The layer's id field (read as text).
    ids : sequence of str
        The units, in order.
    columns : sequence of str
        Columns the rule uses (checked numeric and complete); unknown names are left for the caller to report.

    Returns
    -------
    pandas.DataFrame
        ``id_field`` and every numeric column of the file, one row per id of ``ids``, in that order.

    Raises
    ------
    InputError
        File unreadable, id column missing, duplicate ids, ids of the layer missing, missing or non-numeric values
        in a used column (the message names the file, the column and the ids).
    """
    import pandas as pd

    p = Path(path)
    try:
        s = pd.read_csv(p, dtype={id_field: str}, encoding="utf-8-sig")
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: cannot read the statistics table ({exc})") from None
    if id_field not in s.columns:
        raise InputError(f"{p}: id column '{id_field}' (the layer's id field) missing (columns: {list(s.columns)})")
    if "year" in s.columns and year is not None:
        yrs = pd.to_numeric(s["year"], errors="coerce")
        if not (yrs == int(year)).any():
            raise InputError(f"{p}: no rows of the accounting year {year} in column 'year' (years there: "
                             f"{sorted(int(v) for v in yrs.dropna().unique())}); give statistics of {year}")
        s = s[yrs == int(year)]
    s = s.assign(**{id_field: s[id_field].astype(str).str.strip()})
    _check_ids(s, id_field, p)
    ids = [str(i) for i in ids]
    miss = [i for i in ids if i not in set(s[id_field])]
    if miss:
        raise InputError(f"{p}: {len(miss)} id(s) of the layer missing from column '{id_field}': {miss[:20]}")
    s = s.set_index(id_field).reindex(ids)
    for c in columns:
        if c in s.columns:
            v = pd.to_numeric(s[c], errors="coerce")
            bad = pd.Series(~np.isfinite(v.to_numpy(np.float64, na_value=np.nan)), index=s.index)
            if bad.any():
                raise InputError(f"{p}: column '{c}': missing or non-numeric values for ids "
                                 f"{list(s.index[bad])[:20]} ({s.loc[bad, c].tolist()[:5]})")
            s[c] = v.astype(np.float64)
    return s.reset_index()


def read_unit_limits(path, id_field: str, ids):
    """Per-unit floors/caps CSV: ``id_field``, ``floor_yuan`` and/or ``cap_yuan`` (blank: the rule's value).

    Returns
    -------
    pandas.DataFrame
        ``id_field``, ``floor_yuan``, ``cap_yuan`` (float64 whole yuan, NaN blank).

    Raises
    ------
    InputError
        Unreadable, id column or both limit columns missing, ids not in the layer, duplicate ids, values that are not
        whole non-negative yuan.
    """
    import pandas as pd

    p = Path(path)
    try:
        t = pd.read_csv(p, dtype={id_field: str}, encoding="utf-8-sig")
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: cannot read the unit limits ({exc})") from None
    if id_field not in t.columns or not {"floor_yuan", "cap_yuan"} & set(t.columns):
        raise InputError(f"{p}: needs column '{id_field}' and floor_yuan and/or cap_yuan (columns: {list(t.columns)})")
    _check_ids(t, id_field, p)
    unknown = sorted(set(t[id_field].astype(str)) - {str(i) for i in ids})
    if unknown:
        raise InputError(f"{p}: ids not in the layer: {unknown[:20]}")
    out = pd.DataFrame({id_field: t[id_field].astype(str)})
    for c in ("floor_yuan", "cap_yuan"):
        raw = t[c] if c in t.columns else pd.Series([np.nan] * len(t))
        v = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
        bad = (raw.notna().to_numpy() & np.isnan(v)) | (v < 0) | (np.isfinite(v) & (v != np.floor(v)))
        if bad.any():
            raise InputError(f"{p}: column '{c}': not whole non-negative yuan for ids "
                             f"{out.loc[bad, id_field].tolist()[:20]}")
        out[c] = v
    return out


# --------------------------------------------------------------------------------------
# pairs (horizontal transfers)
# --------------------------------------------------------------------------------------
def read_pairs(path, ids):
    """Pairs CSV: ``payer_id``, ``receiver_id`` (ids of the layer, as text; one row per pair).

    Raises
    ------
    InputError
        Unreadable, a column missing, an id not in the layer, payer = receiver, a pair twice.
    """
    import pandas as pd

    p = Path(path)
    try:
        t = pd.read_csv(p, dtype={"payer_id": str, "receiver_id": str}, encoding="utf-8-sig")
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: cannot read the pairs ({exc})") from None
    for c in ("payer_id", "receiver_id"):
        if c not in t.columns:
            raise InputError(f"{p}: column '{c}' missing (columns: {list(t.columns)})")
    t = t[["payer_id", "receiver_id"]].astype(str)
    known = {str(i) for i in ids}
    unknown = sorted((set(t["payer_id"]) | set(t["receiver_id"])) - known)
    if unknown:
        raise InputError(f"{p}: ids not in the layer: {unknown[:20]}")
    same = t["payer_id"] == t["receiver_id"]
    if same.any() or t.duplicated().any() or not len(t):
        raise InputError(f"{p}: every row must be one distinct pair of two different units (same unit: "
                         f"{t.loc[same, 'payer_id'].tolist()[:10]}; repeated: {t[t.duplicated()].values.tolist()[:5]}"
                         f"; rows: {len(t)})")
    return t.reset_index(drop=True)


def pair_table(units, pairs, id_field: str, name_field: str, columns):
    """One row per pair: ``pair`` (``payer->receiver``), ids, names, ``<c>_payer``, ``<c>_receiver`` and
    ``<c>`` = receiver − payer for every indicator column ``c``."""
    import pandas as pd

    u = units.set_index(units[id_field].astype(str))
    pay, rec = pairs["payer_id"].to_numpy(), pairs["receiver_id"].to_numpy()
    out = pd.DataFrame({"pair": [f"{a}->{b}" for a, b in zip(pay, rec)], "payer_id": pay, "receiver_id": rec})
    if name_field in u.columns and name_field != id_field:
        out["payer_name"], out["receiver_name"] = u.loc[pay, name_field].to_numpy(), u.loc[rec, name_field].to_numpy()
    for c in columns:
        xa, xb = u.loc[pay, c].to_numpy(np.float64), u.loc[rec, c].to_numpy(np.float64)
        out[f"{c}_payer"], out[f"{c}_receiver"], out[c] = xa, xb, xb - xa
    return out


def pair_unit_totals(units, alloc, id_field: str, name_field: str):
    """Per unit: ``paid_yuan``, ``received_yuan``, ``net_received_yuan`` (int64) of a pair allocation."""
    import pandas as pd

    paid = alloc.groupby("payer_id")["allocated_yuan"].sum()
    recv = alloc.groupby("receiver_id")["allocated_yuan"].sum()
    ids = units[id_field].astype(str)
    out = pd.DataFrame({id_field: units[id_field].to_numpy()})
    if name_field in units.columns and name_field != id_field:
        out[name_field] = units[name_field].to_numpy()
    out["paid_yuan"] = paid.reindex(ids).fillna(0).to_numpy(np.int64)
    out["received_yuan"] = recv.reindex(ids).fillna(0).to_numpy(np.int64)
    out["net_received_yuan"] = out["received_yuan"] - out["paid_yuan"]
    return out


# --------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------
def _sha(p) -> dict:
    from ..outputs.io_write import sha256_file

    p = Path(p)
    return {"path": str(p.resolve()), "sha256": sha256_file(p)}


def _indicator_record(ind: Indicator, src: SourceData) -> dict:
    rec = {"name": ind.key, "column": ind.column, "source": ind.source, "weight_given": ind.weight_given,
           "weight": ind.weight, "direction": ind.direction, "normalise": ind.normalise}
    if ind.source == "builtin":
        stem, kind, unit = BUILTIN_INDICATORS[ind.key]
        col = f"{stem}_comparable" if src.kind == "series" else stem
        rec.update(unit=unit, definition=_KIND_WORDS[kind].format(v=col))
    else:
        rec.update(unit="as in the statistics table", definition=f"column '{ind.column}' of the statistics table")
    return rec


def _prepare(source_dir, layer, rule, year, statistics, unit_limits, pairs):
    """Source, rule, unit table with indicator values, limits and pairs of an allocation."""
    rule = _as_rule(rule)
    src = open_source(source_dir, layer, year=year)
    ids = src.table[src.id_field].astype(str).tolist()
    inds = resolve_indicators(rule)
    stats = None
    if statistics is not None:
        stats = read_statistics(statistics, src.id_field, ids, [i.column for i in inds if i.source == "statistics"],
                                year=src.year)
    units = indicator_table(src, rule, stats)
    limits_path = unit_limits or rule.unit_limits
    pairs_path = pairs or rule.pairs
    if limits_path and pairs_path:
        raise ConfigError("unit_limits apply to units, not to pairs: give one of unit_limits and pairs")
    limits = read_unit_limits(limits_path, src.id_field, ids) if limits_path else None
    pair_rows = read_pairs(pairs_path, ids) if pairs_path else None
    return rule, src, inds, units, limits, limits_path, pair_rows, pairs_path


def allocate(source_dir, layer: str, fund_yuan, rule, out_dir, *, year: int | None = None, statistics=None,
             unit_limits=None, pairs=None) -> dict:
    """Allocate a fund among the units (or pairs) of a layer; write the table and ``allocation_manifest.json``.

    Parameters
    ----------
    source_dir : path-like
        A ``gep series`` folder (``series_manifest.json``) or a finished ``gep run`` folder (``manifest.json``).
    layer : str
        Layer name.
    fund_yuan : int or str
        The fund (whole yuan).
    rule : path, dict or AllocationRule
        The rule (``docs/allocation.md``).
    out_dir : path-like
        Output folder (created; files replaced atomically).
    year : int, optional
        Accounting year of a series (default its last year).
    statistics : path-like, optional
        Statistics CSV joined on the layer's id field.
    unit_limits, pairs : path-like, optional
        Override the rule's ``unit_limits`` / ``pairs``.

    Returns
    -------
    dict
        The manifest (also written to ``out_dir/allocation_manifest.json``).

    Raises
    ------
    ConfigError
        Bad fund or rule, unknown indicator or layer, change indicator on a run, infeasible floors/caps.
    InputError
        Unreadable or incomplete inputs (the message names the file, the column and the ids).
    """
    from ..outputs.io_write import atomic_to_csv, atomic_write_json

    fund = parse_fund(fund_yuan)
    rule, src, inds, units, limits, limits_path, pair_rows, pairs_path = _prepare(
        source_dir, layer, rule, year, statistics, unit_limits, pairs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outputs = [f"allocation_{layer}.csv"]
    if pair_rows is None:
        res = allocate_fund(units, src.id_field, fund, rule, name_field=src.name_field, limits=limits)
        if "area_km2" in units and "area_km2" not in res:
            res.insert(2 if src.name_field in res else 1, "area_km2", units["area_km2"].to_numpy())
    else:
        ptab = pair_table(units, pair_rows, src.id_field, src.name_field, [i.column for i in inds])
        res = allocate_fund(ptab, "pair", fund, rule)
        for c in reversed([c for c in ptab.columns if c not in res.columns]):
            res.insert(1, c, ptab[c].to_numpy())
        atomic_to_csv(pair_unit_totals(units, res, src.id_field, src.name_field), out / f"allocation_{layer}_units.csv")
        outputs.append(f"allocation_{layer}_units.csv")
    atomic_to_csv(res, out / f"allocation_{layer}.csv")
    m = _manifest(src, rule, inds, res, fund, statistics, limits_path, pairs_path, outputs)
    atomic_write_json(out / "allocation_manifest.json", m)
    return m


def _manifest(src, rule, inds, res, fund, statistics, limits_path, pairs_path, outputs) -> dict:
    total = int(res["allocated_yuan"].sum())
    if total != fund:  # cannot happen: largest_remainder guarantees it
        raise ConfigError(f"allocation sums to {total} yuan, not the fund {fund} yuan")
    inputs = {"source": {"kind": src.kind, "path": str(src.path.resolve()), "year": src.year,
                         "previous_year": src.previous_year, "base_year": src.base_year, **src.info,
                         **{k: _sha(v) for k, v in src.files.items()}}}
    for k, v in (("statistics", statistics), ("unit_limits", limits_path), ("pairs", pairs_path)):
        if v:
            inputs[k] = _sha(v)
    idc = "pair" if pairs_path else src.id_field
    return {
        "gep_raster_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "kind": "allocation", "layer": src.layer, "id_field": src.id_field, "name_field": src.name_field,
        "mode": "pairs" if pairs_path else "units",
        "inputs": inputs,
        "rule": {"name": rule.name, "preset": rule.preset,
                 "preset_description": PRESETS[rule.preset]["description"] if rule.preset else None,
                 "preset_status": PRESET_STATUS if rule.preset else "user-defined rule (no preset)",
                 "definitions_status": "engine's own definitions (normalisation, water-filling, rounding); no "
                                       "published allocation formula was read",
                 "resolved": rule.model_dump(mode="json"),
                 "indicators": [_indicator_record(i, src) for i in inds]},
        "formulas": FORMULAS,
        "units": {"allocated_yuan": "yuan (integer)", "amount_unrounded_yuan": "yuan", "floor_yuan": "yuan",
                  "cap_yuan": "yuan", "share": "fraction of the fund (before floors/caps)", "area_km2": "km2"},
        "totals": {"fund_yuan": fund, "allocated_yuan": total, "sum_equals_fund": total == fund,
                   "rows": int(len(res)), "at_floor": res.loc[res["at_floor"], idc].astype(str).tolist(),
                   "at_cap": res.loc[res["at_cap"], idc].astype(str).tolist()},
        "outputs": outputs,
    }


def register(app) -> None:
    """Add ``gep allocate SOURCE --layer L --fund YUAN (--rule R | --preset P) -o OUT`` to the typer ``app``."""
    import typer

    from ..cli_common import (command, debug_option, log_file_option, log_json_option, log_level_option,
                              quiet_option, verbose_option)

    @app.command("allocate")
    def allocate_cmd(source: Path = typer.Argument(..., help="A `gep series` folder or a finished `gep run` folder."),
                     layer: str = typer.Option(..., "--layer", help="Layer whose units share the fund."),
                     fund: str = typer.Option(..., "--fund", help="The fund, whole yuan (e.g. 100000000 or 1e8)."),
                     output: Path = typer.Option(..., "--output", "-o", help="Output folder."),
                     rule: Optional[Path] = typer.Option(None, "--rule", help="Rule YAML (docs/allocation.md)."),
                     preset: Optional[str] = typer.Option(None, "--preset", help="vertical or horizontal, without a "
                                                                                 "rule file."),
                     year: Optional[int] = typer.Option(None, "--year", help="Accounting year (series; default last)."),
                     statistics: Optional[Path] = typer.Option(
                         None, "--statistics", help="Statistics CSV joined on the layer's id field."),
                     unit_limits: Optional[Path] = typer.Option(None, "--unit-limits", help="Per-unit floor_yuan/"
                                                                                            "cap_yuan CSV."),
                     pairs: Optional[Path] = typer.Option(None, "--pairs", help="payer_id,receiver_id CSV "
                                                                                "(horizontal transfers)."),
                     quiet: bool = quiet_option(), verbose: int = verbose_option(),
                     log_level: Optional[str] = log_level_option(), log_file: Optional[Path] = log_file_option(),
                     log_json: bool = log_json_option(), debug: bool = debug_option()):
        """Split a fund (yuan) among the units of a layer by a rule over GEP-R / GEP / statistics indicators."""
        with command(quiet, verbose, log_level, log_file, log_json, debug) as out:
            if (rule is None) == (preset is None):
                raise ConfigError("give exactly one of --rule FILE and --preset vertical|horizontal")
            r = load_rule(rule) if rule is not None else rule_from_dict({"preset": preset}, where="--preset")
            m = allocate(source, layer, fund, r, output, year=year, statistics=statistics, unit_limits=unit_limits,
                         pairs=pairs)
            t = m["totals"]
            out.result(f"allocated {t['allocated_yuan']:,} yuan among {t['rows']} {m['mode']} of layer {layer} "
                       f"(rule: {m['rule']['name'] or m['rule']['preset'] or rule}) -> {output}")
            weights = ", ".join(f"{i['name']} {i['weight']:.3g}" for i in m["rule"]["indicators"])
            out.detail(f"  indicators (weight): {weights}; at floor: {t['at_floor'] or 'none'}; "
                       f"at cap: {t['at_cap'] or 'none'}")
            if m["rule"]["preset"]:
                out.detail("  preset: engine's own definition (no published formula was read)")
