"""manifest.assumptions and gep validate warnings: one test per rule of gep_raster/assumptions.py."""
from __future__ import annotations

import pandas as pd

from gep_raster.assumptions import run_assumptions
from gep_raster.config import load_config
from gep_raster.services import ServiceModel
from gep_raster.tables import PriceBook, load_legend
from gep_raster.services.registry import required_legend_columns
from gep_raster.validation import validate


def assumptions_of(cfg_path, **over):
    cfg = load_config(cfg_path, overrides=over or None)
    legend = load_legend(cfg, required_legend_columns(cfg))
    book = PriceBook.from_config(cfg)
    model = ServiceModel.from_config(cfg, legend, book, cell_size=30.0, geographic=False)
    return run_assumptions(cfg, legend, model, book)


def test_et_from_kc_times_et0_is_a_stand_in(tiny):
    assert not any("ET = Kc * ET0" in a for a in assumptions_of(tiny))  # actual ET given
    p = tiny.parent / "et0.yaml"
    p.write_text(tiny.read_text().replace("et: {path: et.tif}", "et0: {path: et.tif}"))
    (a,) = [a for a in assumptions_of(p) if "ET = Kc * ET0" in a]
    assert "stands in for actual ET (inputs.et)" in a


def test_services_left_out_of_gep_r(tiny):
    (a,) = [a for a in assumptions_of(tiny) if a.startswith("GEP-R leaves out")]
    from gep_raster.services.registry import REGISTRY

    n = len(REGISTRY)  # every registered service is a regulating service of the account
    # tiny enables the four default services: the others are left out
    assert "oxygen_release, water_purification, climate_regulation, flood_regulation, pest_control" in a
    assert f"4 of the {n} regulating services" in a
    over = {"services": {"oxygen_release": {"enabled": True}}}
    (a,) = [a for a in assumptions_of(tiny, **over) if a.startswith("GEP-R leaves out")]
    assert "oxygen_release" not in a and f"5 of the {n}" in a


def test_price_year_without_index(tiny):
    assert not any("price index" in a for a in assumptions_of(tiny))  # no accounting_year: nothing to compare
    got = [a for a in assumptions_of(tiny, accounting_year=2020) if "without a price index" in a]
    assert got == ["prices of price year(s) [2010] are used for accounting year 2020 without a price index: the "
                   "values are in those years' yuan, not in accounting-year yuan (give prices.price_index, e.g. the "
                   "national CPI, to move them)"]
    (tiny.parent / "cpi.csv").write_text("year,index\n2010,100\n2020,128.6\n")
    over = {"accounting_year": 2020, "prices": {"price_index": "cpi.csv"}}
    assert not any("without a price index" in a for a in assumptions_of(tiny, **over))


def test_garze_constants_are_a_regional_transfer(tiny):
    (a,) = [a for a in assumptions_of(tiny) if "Garze GEP 2010 account (Tibetan plateau" in a]
    assert "soil_retention.bulk_density" in a and "soil_retention.sediment_deposition_ratio" in a
    over = {"parameters": {"soil_retention.bulk_density": {"value": 1.3, "source": "local soil survey"}}}
    (a,) = [a for a in assumptions_of(tiny, **over) if "Garze GEP 2010 account (Tibetan plateau" in a]
    assert "soil_retention.bulk_density" not in a and "soil_retention.soil_n_content" in a


def test_legend_rows_marked_v2_are_listed(tiny):
    leg = pd.read_csv(tiny.parent / "legend.csv")
    leg.loc[leg.code == 2, "notes"] = "runoff coefficient of the national table [V2]"
    leg.to_csv(tiny.parent / "legend.csv", index=False)
    got = [a for a in assumptions_of(tiny) if a.startswith("legend class")]
    assert got == ["legend class 2 (paddy): runoff coefficient of the national table [V2]"]


def test_validate_warns_with_every_assumption(tiny):
    rep = validate(load_config(tiny))
    assert rep.assumptions == assumptions_of(tiny)
    assert any("Renard & Freimund (1994)" in w for w in rep.assumptions)
    assert any("K = 0.03" in w for w in rep.assumptions)
    assert any("GEP-R leaves out" in w for w in rep.assumptions)


def test_gep_validate_prints_assumptions_as_warnings(tiny):
    from typer.testing import CliRunner

    from gep_raster.cli import app

    res = CliRunner().invoke(app, ["validate", str(tiny)])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("warning: assumption: ")]
    assert len(lines) == len(assumptions_of(tiny))
    assert any("Renard & Freimund (1994)" in ln for ln in lines)
