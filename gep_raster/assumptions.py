"""The assumptions of a run: every stand-in, formula choice and regional transfer that changes a number.

:func:`run_assumptions` lists them for ``manifest.assumptions`` and ``gep validate`` (as warnings). Sources of
the entries:

* price and parameter rows marked [U] or [V2] (not verified in a primary source), legend rows whose notes
  say [U], [V2] or ASSUMPTION;
* what each service declares (:attr:`gep_raster.services.ServiceModel.assumptions`: constant K, the R
  equation, fixed slope length, [U] formulas ...);
* inputs standing in for others: ET = Kc·ET0 in the water balance in place of actual ET;
* services of the regulating account that the run leaves out (``enabled: false`` or not enabled): GEP-R is
  then the sum of fewer services;
* prices of another year than ``accounting_year`` without ``prices.price_index``;
* constants of the Garzê GEP 2010 account (Tibetan plateau) used by default in another region.

Each entry is one sentence naming the config key or parameter to change and, where it is a linear factor,
the size of its effect.
"""
from __future__ import annotations

__all__ = ["run_assumptions", "REGULATING_SERVICES"]

#: the regulating services of the engine, in account order (registry order)
def _regulating_services() -> tuple[str, ...]:
    from .services.registry import REGISTRY

    return tuple(REGISTRY)


REGULATING_SERVICES = _regulating_services()

_MARKS = ("[U]", "[V2]", "ASSUMPTION")


def _records(book) -> list[dict]:
    used = book.used_records()
    return used["prices"] + used["parameters"]


def _region_transfers(cfg, book) -> list[str]:
    """Parameters whose default comes from the Garzê account and were not replaced by the config."""
    keys = [r["key"] for r in book.used_records()["parameters"]
            if "garz" in str(r.get("source", "")).lower() and str(r.get("origin", "")).startswith("default")]
    if not keys:
        return []
    return [f"parameters {', '.join(keys)} are the defaults of the Garze GEP 2010 account (Tibetan plateau, Baima "
            "Zhuoga et al. 2017); applied to this region they are a regional transfer (ASSUMPTION): give local values "
            "with parameters: or parameters_table: (the soil-retention value per t is linear in each)"]


def _price_years(cfg, book) -> list[str]:
    if cfg.accounting_year is None or book.price_index is not None:
        return []
    other = sorted({(r["price_year"]) for r in book.used_records()["prices"]
                    if r.get("price_year") not in (None, cfg.accounting_year)})
    if not other:
        return []
    return [f"prices of price year(s) {other} are used for accounting year {cfg.accounting_year} without a price "
            "index: the values are in those years' yuan, not in accounting-year yuan (give prices.price_index, e.g. "
            "the national CPI, to move them)"]


def _left_out(cfg) -> list[str]:
    off = [s for s in REGULATING_SERVICES if not getattr(cfg.services, s).enabled]
    if not off:
        return []
    return [f"GEP-R leaves out {', '.join(off)} (not enabled in services.*): it is the sum of "
            f"{len(REGULATING_SERVICES) - len(off)} of the {len(REGULATING_SERVICES)} regulating services of the "
            "engine"]


def _stand_ins(cfg, model) -> list[str]:
    out = []
    if "water_conservation" in model.names and cfg.inputs.et is None and cfg.inputs.et0 is not None:
        if cfg.services.water_conservation.method == "water_balance":
            out.append("water conservation: ET = Kc * ET0 (reference ET times the legend's crop coefficient) stands "
                       "in for actual ET (inputs.et); where water limits ET it overestimates ET and underestimates "
                       "the conserved water (give an actual-ET product such as MOD16 as inputs.et)")
    return out


def run_assumptions(cfg, legend, model, book, econ=None) -> list[str]:
    """Every assumption of a configured run, one sentence each.

    Parameters
    ----------
    cfg : RunConfig
    legend : gep_raster.tables.Legend
    model : gep_raster.services.ServiceModel
    book : gep_raster.tables.PriceBook
        Its :meth:`used_records` must already hold the rows the services read (call after the model is built).
    econ : gep_raster.accounts.economic.EconomicAccounts, optional

    Returns
    -------
    list of str
        In the order: marked price/parameter rows, legend rows, service declarations, stand-in inputs, services
        left out, price years, regional transfers, economic accounts.

    Raises
    ------
    Nothing of its own: it reads objects that were validated when built.
    """
    out = []
    for rec in _records(book):
        if rec["evidence"] in ("U", "V2"):
            out.append(f"{rec['key']} = {rec['value']} {rec['unit']} is marked [{rec['evidence']}] "
                       f"(not verified in a primary source): {rec['source']}")
    if "notes" in legend.table.columns:
        for code, row in legend.table.iterrows():
            note = str(row.get("notes", ""))
            if any(m in note.upper() for m in _MARKS):
                out.append(f"legend class {code} ({row.get('name', '')}): {note}")
    out.extend(model.assumptions)
    if "carbon_sequestration" in model.names and model.service("carbon_sequestration").flags["method"] == "npp":
        out.append("carbon from NPP counts gross plant uptake (heterotrophic respiration not subtracted)")
    out += _stand_ins(cfg, model)
    out += _left_out(cfg)
    out += _price_years(cfg, book)
    out += _region_transfers(cfg, book)
    if econ is not None:
        if econ.is_illustrative():
            n = econ.illustrative_rows()
            out.append(f"economic_accounts: {n} of {len(econ.rows)} statistics rows of {econ.table_path} are "
                       "ILLUSTRATIVE [EX], not real statistics: EPV, ECV and GEP are illustrative")
        out.append("economic_accounts: the spatial allocation of EPV/ECV (allocate_to, weight) is an engine design "
                   "rule, not from a standard (methods note 3.1-3.2)")
    return out
