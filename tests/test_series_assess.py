"""Multi-year accounts at comparable prices (gep series) and target assessment (gep assess).

Three runs of the sample in three accounting years (2022, 2023, 2024) with prices moved to each year by the
real CPI table (pipelines/tables/cpi_china.csv), a wetter 2023 (precipitation x 1.06) and in 2024 a drier year
(x 0.93) with the development parcel of pipelines/sample_development.yaml converted to built-up. The expected
numbers are computed here from the runs' own tables (physical columns), the default price table and the CPI
file, not from the series code.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import REPO, sample_config
from gep_raster.analysis.assess import assess_series
from gep_raster.analysis.series import load_series, revalue, series_account
from gep_raster.cli import app
from gep_raster.errors import ConfigError

pytestmark = pytest.mark.slow
CPI = REPO / "pipelines" / "tables" / "cpi_china.csv"
DEV_TOWN = "331122103"
runner = CliRunner()


def _cpi() -> dict:
    with CPI.open(encoding="utf-8") as f:
        return {int(r["year"]): float(r["index"]) for r in csv.DictReader(f)}


def _default_prices() -> dict:
    """key -> (value, price_year) of gep_raster/data/prices.csv."""
    with (REPO / "gep_raster" / "data" / "prices.csv").open(encoding="utf-8-sig") as f:
        return {r["key"]: (float(r["value"]), int(r["price_year"])) for r in csv.DictReader(f)}


def _year_config(folder: Path, year: int, *, precip_scale: float = 1.0, develop: bool = False, extra=None) -> Path:
    p = sample_config(folder, f"y{year}", chunk=256)
    cfg = yaml.safe_load(p.read_text(encoding="utf-8"))
    cfg["accounting_year"] = year
    cfg["prices"] = {"price_index": str(CPI)}
    cfg["inputs"]["precipitation"]["scale"] = precip_scale
    if develop:
        dev = yaml.safe_load((REPO / "pipelines" / "sample_development.yaml").read_text(encoding="utf-8"))
        cfg["scenario"] = dev["scenario"]
    for k, v in (extra or {}).items():
        cfg[k] = v
    p.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return p


def _run(config: Path) -> Path:
    from gep_raster.api import run

    res = run(config)
    return Path(res.output_dir)


@pytest.fixture(scope="module")
def years(tmp_path_factory):
    folder = tmp_path_factory.mktemp("series")
    runs = {2022: _run(_year_config(folder, 2022)),
            2023: _run(_year_config(folder, 2023, precip_scale=1.06)),
            2024: _run(_year_config(folder, 2024, precip_scale=0.93, develop=True))}
    return folder, runs


@pytest.fixture(scope="module")
def series(years):
    folder, runs = years
    out = folder / "series"
    m = series_account([runs[2024], runs[2022], runs[2023]], out, base_year=2022)  # any order: sorted by year
    return out, m


def _table(run: Path, layer: str) -> pd.DataFrame:
    return pd.read_csv(run / "tables" / f"{layer}.csv", dtype={"town_code": str}, encoding="utf-8-sig") \
        .set_index("town_code")


def _by_hand_gep_r(run: Path, town: str, year_of_prices: int) -> float:
    """GEP-R of a township: its physical quantities (run table) x default prices moved from their price year
    to ``year_of_prices`` by the CPI x the valuation coefficients (parameters of the run's manifest)."""
    t = _table(run, "township").loc[town]
    m = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    cpi, prices = _cpi(), _default_prices()
    par = {r["key"]: r["value"] for r in m["parameters"]}

    def p(key):
        v, y = prices[key]
        return v * cpi[year_of_prices] / cpi[y]

    soil_uv = (par["soil_retention.sediment_deposition_ratio"] / par["soil_retention.bulk_density"]
               * p("soil_retention.dredging_cost") + par["soil_retention.soil_n_content"] * p("soil_retention.nitrogen_price")
               + par["soil_retention.soil_p_content"] * p("soil_retention.phosphorus_price"))
    return (t["water_conservation_m3"] * p("water_conservation.reservoir_cost")
            + t["soil_retention_t"] * soil_uv
            + t["carbon_sequestration_tco2"] * p("carbon_sequestration.co2_price")
            + t["oxygen_release_t"] * p("oxygen_release.o2_price")
            + sum(t[f"air_purification_{j}_t"] * p(f"air_purification.{j}_price") for j in ("so2", "nox", "dust"))
            + sum(t[f"water_purification_{j}_t"] * p(f"water_purification.{j}_price") for j in ("cod", "nh3n", "tp"))
            + t["climate_regulation_kwh"] * p("climate_regulation.electricity_price")
            + t["flood_regulation_m3"] * p("flood_regulation.reservoir_cost"))


def test_comparable_price_growth_by_hand_on_three_years(years, series):
    folder, runs = years
    out, m = series
    assert m["years"] == [2022, 2023, 2024] and m["base_year"] == 2022
    tab = pd.read_csv(out / "tables" / "township_series.csv", dtype={"town_code": str}, encoding="utf-8-sig")
    row = tab[tab["town_code"] == DEV_TOWN].set_index("year")
    vc = {y: _by_hand_gep_r(runs[y], DEV_TOWN, 2022) for y in (2022, 2023, 2024)}
    cur = {y: _by_hand_gep_r(runs[y], DEV_TOWN, y) for y in (2022, 2023, 2024)}
    for y in (2022, 2023, 2024):
        assert row.at[y, "gep_r_yuan_comparable"] == pytest.approx(vc[y], rel=1e-9)
        assert row.at[y, "gep_r_yuan"] == pytest.approx(cur[y], rel=1e-9)
        # the current-price GEP-R is the run's own table value (to float32 rounding of its rasters)
        assert row.at[y, "gep_r_yuan"] == pytest.approx(_table(runs[y], "township").at[DEV_TOWN, "gep_r_yuan"],
                                                        rel=1e-6)
    assert row.at[2023, "gep_r_yuan_yoy_pct"] == pytest.approx(100 * (vc[2023] - vc[2022]) / vc[2022], rel=1e-9)
    assert row.at[2024, "gep_r_yuan_yoy_pct"] == pytest.approx(100 * (vc[2024] - vc[2023]) / vc[2023], rel=1e-9)
    assert row.at[2024, "gep_r_yuan_cum_pct"] == pytest.approx(100 * (vc[2024] - vc[2022]) / vc[2022], rel=1e-9)
    assert row.at[2022, "gep_r_yuan_cum_pct"] == 0.0 and np.isnan(row.at[2022, "gep_r_yuan_yoy_pct"])
    # wetter 2023: more water conserved; drier 2024 with a forest parcel built over: GEP-R falls at 2022 prices
    assert row.at[2023, "water_conservation_m3_yoy_pct"] > 0 > row.at[2024, "water_conservation_m3_yoy_pct"]
    assert row.at[2024, "gep_r_yuan_cum_pct"] < 0
    # current prices rise with the CPI: the 2023 current-price value exceeds the comparable one
    cpi = _cpi()
    assert cpi[2023] > cpi[2022] and row.at[2023, "gep_r_yuan"] > row.at[2023, "gep_r_yuan_comparable"]


def test_epv_and_ecv_move_by_the_price_index_only(years, series):
    folder, runs = years
    out, m = series
    tab = pd.read_csv(out / "tables" / "township_series.csv", dtype={"town_code": str}, encoding="utf-8-sig")
    cpi = _cpi()
    for y in (2023, 2024):
        r = tab[(tab["town_code"] == DEV_TOWN) & (tab["year"] == y)].iloc[0]
        stats = _table(runs[y], "township").loc[DEV_TOWN]
        assert r["provisioning_yuan"] == stats["provisioning_yuan"]
        assert r["provisioning_yuan_comparable"] == pytest.approx(stats["provisioning_yuan"] * cpi[2022] / cpi[y],
                                                                  rel=1e-12)
        assert r["gep_yuan_comparable"] == pytest.approx(
            r["gep_r_yuan_comparable"] + r["provisioning_yuan_comparable"] + r["cultural_yuan_comparable"], rel=1e-12)
    assert m["epv_ecv_price_index"]["origin"].startswith("prices.price_index of run")


def test_quantity_and_price_split_sums_to_the_value_change(series):
    out, _ = series
    for layer in ("region", "county", "township", "special_units"):
        tab = pd.read_csv(out / "tables" / f"{layer}_series.csv", encoding="utf-8-sig")
        later = tab[tab["year"] > 2022]
        for c in ("gep_yuan", "gep_r_yuan", "soil_retention_yuan", "provisioning_yuan"):
            scale = np.abs(later[c]).max()
            np.testing.assert_allclose(later[f"{c}_change_quantity"] + later[f"{c}_change_price"],
                                       later[f"{c}_change"], rtol=0, atol=1e-12 * scale)
            np.testing.assert_allclose(later[f"{c}_cum_change_quantity"] + later[f"{c}_cum_change_price"],
                                       later[f"{c}_cum_change"], rtol=0, atol=1e-12 * scale)
        # base year: comparable = current, no change against itself
        base = tab[tab["year"] == 2022]
        assert (base["gep_r_yuan_comparable"] == base["gep_r_yuan"]).all()
        assert (base["gep_r_yuan_cum_change_price"] == 0).all()


def test_township_sums_equal_the_county_in_every_year(series):
    out, _ = series
    t = pd.read_csv(out / "tables" / "township_series.csv", encoding="utf-8-sig").groupby("year").sum(numeric_only=True)
    c = pd.read_csv(out / "tables" / "county_series.csv", encoding="utf-8-sig").set_index("year")
    for col in ("gep_r_yuan", "gep_r_yuan_comparable", "gep_yuan_comparable", "water_conservation_m3"):
        np.testing.assert_allclose(t[col], c[col], rtol=1e-9)


def test_same_quantities_give_zero_comparable_growth(years, tmp_path):
    """The same inputs accounted in 2023 and 2024: only prices move (CPI), comparable growth is exactly 0."""
    folder, runs = years
    again = _run(_year_config(tmp_path, 2021))
    m = series_account([again, runs[2022]], tmp_path / "s", figures=False)
    tab = pd.read_csv(tmp_path / "s" / "tables" / "township_series.csv", encoding="utf-8-sig")
    later = tab[tab["year"] == 2022]
    assert (later["gep_r_yuan_yoy_pct"] == 0.0).all()
    assert (later["gep_r_yuan_change_quantity"] == 0.0).all()
    assert (later["gep_r_yuan_change_price"] > 0).all()  # CPI 2022 > 2021
    assert m["layers"]["township"]["revalue_check_max_rel"] < 1e-6


def test_series_refuses_runs_whose_methods_differ(years, tmp_path):
    folder, runs = years
    p = _year_config(tmp_path, 2021)
    cfg = yaml.safe_load(p.read_text(encoding="utf-8"))
    cfg["services"]["water_conservation"]["negative_values"] = "keep"
    cfg["parameters"] = {"soil_retention.bulk_density": {"value": 1.3, "source": "test: a local bulk density"}}
    p.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    other = _run(p)
    with pytest.raises(ConfigError) as e:
        series_account([runs[2022], other], tmp_path / "refused")
    msg = str(e.value)
    assert "config.services.water_conservation.negative_values" in msg
    assert "parameters.soil_retention.bulk_density" in msg and "1.3 vs 0.93" in msg
    assert not (tmp_path / "refused" / "series_manifest.json").exists()
    m = series_account([runs[2022], other], tmp_path / "accepted", accept=["config.services.", "parameters."],
                       figures=False)
    codes = {d["code"] for d in m["comparability"]["accepted"]}
    assert {"config.services.water_conservation.negative_values", "parameters.soil_retention.bulk_density"} <= codes
    # the CLI says the same and exits 2 (configuration error)
    r = runner.invoke(app, ["series", str(runs[2022]), str(other), "-o", str(tmp_path / "cli")])
    assert r.exit_code == 2 and "not comparable" in r.output and "--accept" in r.output


def test_series_refuses_prices_not_in_their_year_and_epv_without_index(years, tmp_path):
    folder, runs = years
    p = _year_config(tmp_path, 2025)
    cfg = yaml.safe_load(p.read_text(encoding="utf-8"))
    del cfg["prices"]
    p.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    plain = _run(p)
    with pytest.raises(ConfigError, match=r"prices\.basis.*2010\] yuan, not in 2025 yuan"):
        series_account([runs[2022], plain], tmp_path / "a")
    # accepted: the 2022 run's index moves EPV/ECV; but the CPI table ends in 2024: the message says so
    with pytest.raises(Exception, match="no index value for year 2025"):
        series_account([runs[2022], plain], tmp_path / "b", accept=["prices.basis"])


def test_valuation_terms_reproduce_every_value_column(years):
    s = load_series(list(years[1].values()))
    for y, run in zip(s.years, s.runs):
        t = run.read_table("township")
        q = {c: t[c].to_numpy(float) for c in run.physical_keys if c in t.columns}
        for svc, terms in s.valuation[y].items():
            np.testing.assert_allclose(revalue(q, terms, s.prices[y]), t[f"{svc}_yuan"], rtol=1e-6)


def test_assessment_met_rank_drivers_and_fall_flag(years, series, tmp_path):
    folder, runs = years
    out, m = series
    tg = tmp_path / "targets.yaml"
    tg.write_text(yaml.safe_dump({
        "targets": [{"indicator": "gep_yuan", "measure": "cum_pct", "op": ">=", "value": 3.0},
                    {"indicator": "gep_r_yuan", "measure": "yoy_pct", "op": ">=", "value": 0.0},
                    {"indicator": "soil_retention_t", "measure": "value", "op": ">=", "value": 4.0e6,
                     "layers": ["township"]}],
        "fall_flag_pct": -1.0}), encoding="utf-8")
    a = assess_series(out, tg, tmp_path / "assess")
    res = pd.read_csv(tmp_path / "assess" / "assessment_township.csv", dtype={"town_code": str}, encoding="utf-8-sig")
    ser = pd.read_csv(out / "tables" / "township_series.csv", dtype={"town_code": str}, encoding="utf-8-sig")
    last = ser[ser["year"] == 2024].set_index("town_code")
    res = res.set_index("town_code")
    for town in res.index:
        assert bool(res.at[town, "gep_yuan_cum_pct_met"]) == bool(last.at[town, "gep_yuan_cum_pct"] >= 3.0)
        assert bool(res.at[town, "soil_retention_t_value_met"]) == bool(last.at[town, "soil_retention_t"] >= 4.0e6)
        assert bool(res.at[town, "fall_flagged"]) == bool(last.at[town, "gep_r_yuan_yoy_pct"] < -1.0)
    # rank 1 = the highest cumulative GEP growth
    best = last["gep_yuan_cum_pct"].idxmax()
    assert res.at[best, "gep_yuan_cum_pct_rank"] == 1
    # the developed township falls more than the others (the parcel), and is flagged with pixels behind it
    falls = last["gep_r_yuan_yoy_pct"]
    assert falls.idxmin() == DEV_TOWN and res.at[DEV_TOWN, "fall_flagged"]
    rows = {r["town_code"]: r for r in a["falls"]["units"] if r["layer"] == "township"}
    assert rows[DEV_TOWN]["pixels_gep_r_fall"] > 340  # the drier year lowers more than the 340 built-up pixels
    assert rows[DEV_TOWN]["gep_r_fall_yuan"] < 0
    assert (tmp_path / "assess" / "change" / "rasters" / "delta" / "gep_r_yuan_delta.tif").is_file()
    assert (tmp_path / "assess" / "figures" / "township_gep_r_fall.png").is_file()
    # drivers: the largest service change at comparable prices against the previous year comes first
    svc = [c[:-len("_yuan_comparable")] for c in ser.columns if c.endswith("_yuan_comparable")
           and c[:-len("_yuan_comparable")] in m["services"]]
    prev = ser[ser["year"] == 2023].set_index("town_code")
    d = {s: last.at[DEV_TOWN, f"{s}_yuan_comparable"] - prev.at[DEV_TOWN, f"{s}_yuan_comparable"] for s in svc}
    top = max(d, key=lambda s: abs(d[s]))
    assert res.at[DEV_TOWN, "drivers_yoy"].startswith(top)
    # the CLI
    r = runner.invoke(app, ["assess", str(out), "-t", str(tg), "-o", str(tmp_path / "assess_cli")])
    assert r.exit_code == 0, r.output
    assert "units meet every target" in r.output


def test_assessment_refuses_bad_targets(series, tmp_path):
    out, _ = series
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets:\n  - {indicator: no_such_column, value: 1}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="indicator 'no_such_column' is not a column"):
        assess_series(out, bad, tmp_path / "x")
    bad.write_text("targets:\n  - {indicator: gep_yuan, op: '=>', value: 1}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.yaml: targets.0.op"):
        assess_series(out, bad, tmp_path / "x")
    bad.write_text("base_year: 2023\ntargets:\n  - {indicator: gep_yuan, value: 1}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="--base-year 2023"):
        assess_series(out, bad, tmp_path / "x")
