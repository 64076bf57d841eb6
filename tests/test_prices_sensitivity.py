"""Prices over time (price index), parameter localisation (parameters_table) and sensitivity.

Hand-computed numbers: a made-up index (2010: 80, 2015: 100, 2020: 120) moves a 2010 price by
120/80 = 1.5 and a 2015 price by 120/100 = 1.2 to the accounting year 2020; the shipped China CPI
chain gives index[2020]/index[2010] = 1.054 x 1.026 x 1.026 x 1.020 x 1.014 x 1.020 x 1.016 x 1.021
x 1.029 x 1.025 = 1.2806555 (annual rates 2011..2020). Sensitivity totals are checked against the
value formulas of the methods note applied to the central run's physical totals, and against reruns.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from gep_raster.config import load_config
from gep_raster.errors import ConfigError, TableError
from gep_raster.pipeline import run
from gep_raster.analysis.sensitivity import load_ranges, register, run_sensitivity
from gep_raster.tables import PriceBook, PriceIndex

from conftest import REPO


def with_keys(cfg_path, text: str, name: str = "edited.yaml"):
    """The tiny config with extra top-level YAML ``text`` after ``name: tiny``."""
    body = cfg_path.read_text()
    assert "name: tiny\n" in body
    p = cfg_path.parent / name
    p.write_text(body.replace("name: tiny\n", "name: tiny\n" + text.strip("\n") + "\n", 1))
    return p


def write(folder, name, text):
    p = folder / name
    p.write_text(text.lstrip("\n"), encoding="utf-8")
    return p


INDEX = "year,index,source\n2010,80,made up\n2015,100,made up\n2020,120,made up\n"


# ------------------------------------------------------------------------------------------ price index
def test_price_index_moves_every_price_to_the_accounting_year(tiny):
    d = tiny.parent
    write(d, "index.csv", INDEX)
    write(d, "p.csv", "key,value,unit,price_year,source,evidence\n"
                      "air_purification.so2_price,1000,yuan/t,2015,test table,[v2]\n")
    cfg = load_config(with_keys(tiny, "accounting_year: 2020\nprices: {table: p.csv, price_index: index.csv}"))
    book = PriceBook.from_config(cfg)
    # 7.06 yuan/m3 (2010) x 120/80 = 10.59 yuan/m3 (2020)
    assert book.price("water_conservation.reservoir_cost") == pytest.approx(10.59, rel=1e-12)
    # 1000 yuan/t (2015) x 120/100 = 1200 yuan/t (2020)
    assert book.price("air_purification.so2_price") == pytest.approx(1200.0, rel=1e-12)
    used = {r["key"]: r for r in book.used_records()["prices"]}
    w = used["water_conservation.reservoir_cost"]
    assert (w["original_value"], w["price_year"], w["index_price_year"], w["index_accounting_year"],
            w["index_factor"], w["value_year"]) == (7.06, 2010, 80.0, 120.0, 1.5, 2020)
    assert w["origin"] == "default: gep_raster/data/prices.csv" and w["price_index"].endswith("index.csv")
    s = used["air_purification.so2_price"]
    assert s["index_factor"] == pytest.approx(1.2) and s["original_value"] == 1000.0
    assert s["evidence"] == "V2" and "p.csv line 2" in s["origin"]
    idx = book.used_records()["price_index"]
    assert idx["accounting_year"] == 2020 and idx["values"] == {"2010": 80.0, "2015": 100.0, "2020": 120.0}
    assert any(str(f).endswith("index.csv") for f in book.files)


def test_no_price_index_leaves_prices_unchanged(tiny):
    book = PriceBook.from_config(load_config(tiny))
    p = book.prices["carbon_sequestration.co2_price"]
    assert p.value == p.original_value == 380.0 and p.index_factor is None
    assert book.used_records()["price_index"] is None


def test_price_index_needs_accounting_year(tiny):
    write(tiny.parent, "index.csv", INDEX)
    cfg = load_config(with_keys(tiny, "prices: {price_index: index.csv}"))
    with pytest.raises(ConfigError, match=r"prices.price_index is set \(index.csv\) but accounting_year is missing"):
        PriceBook.from_config(cfg)


def test_price_index_missing_year_names_file_and_year(tiny):
    d = tiny.parent
    write(d, "index.csv", "year,index\n2015,100\n2020,120\n")
    cfg = load_config(with_keys(tiny, "accounting_year: 2020\nprices: {price_index: index.csv}"))
    with pytest.raises(TableError) as e:
        PriceBook.from_config(cfg)
    msg = str(e.value)
    assert "index.csv" in msg and "year(s) [2010]" in msg and "water_conservation.reservoir_cost" in msg
    cfg = load_config(with_keys(tiny, "accounting_year: 2021\nprices: {price_index: index.csv}", "e2.yaml"))
    with pytest.raises(TableError, match=r"index.csv: no index value for year 2021 \(needed for accounting_year"):
        PriceBook.from_config(cfg)


@pytest.mark.parametrize("body, match", [
    ("year,index\n2010,80\n2015,0\n2020,120\n", r"line 3 \(year 2015\), column 'index': the index must be > 0, got 0"),
    ("year,index\n2010,80\n2015,-3\n", r"line 3 \(year 2015\), column 'index': the index must be > 0"),
    ("year,index\n2010,80\n2010,90\n", r"year 2010 appears twice \(lines 2 and 3\)"),
    ("year,index\n2010.5,80\n", r"line 2, column 'year': 2010.5 is not a whole number"),
    ("year,index\n2010,abc\n", r"line 2 \(year 2010\), column 'index': 'abc' is not a finite number"),
    ("year,cpi\n2010,80\n", r"column\(s\) \['index'\] missing"),
])
def test_price_index_file_errors(tiny, body, match):
    write(tiny.parent, "index.csv", body)
    cfg = load_config(with_keys(tiny, "accounting_year: 2020\nprices: {price_index: index.csv}"))
    with pytest.raises(TableError, match=match) as e:
        PriceBook.from_config(cfg)
    assert "index.csv" in str(e.value)


def test_shipped_china_cpi_is_a_consistent_chain():
    path = REPO / "pipelines/tables/cpi_china.csv"
    idx = PriceIndex.load(path)
    df = pd.read_csv(path)
    assert list(idx.values) == list(range(2005, 2025)) and idx.values[2005] == 100.0
    rate = dict(zip(df["year"], df["annual_rate"]))
    for y in range(2006, 2025):  # each level = previous level x (previous year = 100 rate) / 100
        assert idx.values[y] == pytest.approx(idx.values[y - 1] * rate[y] / 100, rel=1e-7), y
    assert idx.factor(2010, 2020) == pytest.approx(1.2806555, rel=1e-7)  # hand product, see module docstring
    # no official NBS page could be read: no row may claim [V]
    assert set(df["evidence"]) <= {"V2", "U"}
    assert df["source"].str.len().min() > 20


# ------------------------------------------------------------------------------------------ parameters_table
def test_parameters_table_overrides_defaults_and_records_origin(tiny):
    d = tiny.parent
    write(d, "zj.csv", "key,value,source,evidence\n"
                       "soil_retention.bulk_density,1.30,made-up regional value for the test,EX\n")
    cfg = load_config(with_keys(tiny, "parameters_table: zj.csv\nparameters:\n"
                                      "  soil_retention.k_constant: {value: 0.025, source: config test}"))
    book = PriceBook.from_config(cfg)
    assert book.param("soil_retention.bulk_density") == 1.30
    assert book.param("soil_retention.k_constant") == 0.025
    book.param("soil_retention.soil_n_content")
    recs = {r["key"]: r for r in book.used_records()["parameters"]}
    assert recs["soil_retention.bulk_density"]["origin"].startswith("parameters_table: ")
    assert recs["soil_retention.bulk_density"]["origin"].endswith("zj.csv line 2")
    assert recs["soil_retention.bulk_density"]["evidence"] == "EX"
    assert recs["soil_retention.bulk_density"]["unit"] == "t/m3"
    assert recs["soil_retention.k_constant"]["origin"] == "config: parameters.soil_retention.k_constant"
    assert recs["soil_retention.soil_n_content"]["origin"] == "default: gep_raster/data/parameters.csv"


@pytest.mark.parametrize("body, match", [
    ("key,value,source\nsoil_retention.bulk_densty,1.3,x\n",
     r"zj.csv: unknown parameter key\(s\) 'soil_retention.bulk_densty' \(line 2\)"),
    ("key,value\nsoil_retention.bulk_density,1.3\n", r"zj.csv: column\(s\) \['source'\] missing"),
    ("key,val,source\nsoil_retention.bulk_density,1.3,x\n", r"zj.csv: column\(s\) \['value'\] missing"),
    ("key,value,source\nsoil_retention.bulk_density,heavy,x\n",
     r"zj.csv: line 2 \(soil_retention.bulk_density\), column 'value': 'heavy' is not a finite number"),
    ("key,value,source\nsoil_retention.bulk_density,1.3,\n",
     r"zj.csv: line 2 \(soil_retention.bulk_density\), column 'source': empty"),
    ("key,value,source,unit\nsoil_retention.bulk_density,1300,x,kg/m3\n",
     r"line 2 \(soil_retention.bulk_density\), column 'unit': 'kg/m3' differs from the expected 't/m3'"),
    ("key,value,source,evidence\nsoil_retention.bulk_density,1.3,x,verified\n",
     r"line 2 \(soil_retention.bulk_density\), column 'evidence': evidence mark 'verified' is not one of"),
    ("key,value,source\nsoil_retention.bulk_density,1.3,x\nsoil_retention.bulk_density,1.2,y\n",
     r"duplicate parameter key\(s\), lines \{'soil_retention.bulk_density': \[2, 3\]\}"),
])
def test_parameters_table_errors_name_file_line_and_column(tiny, body, match):
    write(tiny.parent, "zj.csv", body)
    cfg = load_config(with_keys(tiny, "parameters_table: zj.csv"))
    with pytest.raises(TableError, match=match) as e:
        PriceBook.from_config(cfg)
    assert "parameters_table" in str(e.value)


@pytest.mark.parametrize("body, match", [
    ("key,value,unit,price_year,source\ncarbon_sequestration.co2_price,100,yuan/t C,2020,x\n",
     r"p.csv: line 2 \(carbon_sequestration.co2_price\), column 'unit': 'yuan/t C' differs from the expected "
     r"'yuan/t CO2'"),
    ("key,value,unit,price_year,source\ncarbon_sequestration.co2_price,100,yuan/t CO2,20x0,x\n",
     r"p.csv: line 2 \(carbon_sequestration.co2_price\), column 'price_year': '20x0' is not a whole number"),
    ("key,value,unit,source\ncarbon_sequestration.co2_price,100,yuan/t CO2,x\n",
     r"column\(s\) \['price_year'\] missing"),
    ("key,value,unit,price_year,source\nco2_price,100,yuan/t CO2,2020,x\n",
     r"unknown price key\(s\) 'co2_price' \(line 2\)"),
])
def test_prices_table_errors_name_file_line_and_column(tiny, body, match):
    write(tiny.parent, "p.csv", body)
    cfg = load_config(with_keys(tiny, "prices: {table: p.csv}"))
    with pytest.raises(TableError, match=match):
        PriceBook.from_config(cfg)


# ------------------------------------------------------------------------------------------ ranges
def test_shipped_ranges_name_known_keys_units_and_marks(tiny):
    label, sha, ranges = load_ranges()
    assert label == "gep_raster/data/ranges.csv" and len(sha) == 64
    book = PriceBook.from_config(load_config(tiny))
    for r in ranges.values():
        rec = book.prices.get(r.key) or book.params.get(r.key)
        assert rec is not None and r.unit == rec.unit, r.key
        assert r.low < r.high and r.evidence in ("V", "V-calc", "V2", "U") and len(r.source) > 40, r.key
    # documented ranges of the methods note (2.1, 2.3-2.5, 2.7, 6.2)
    wc = ranges["water_conservation.reservoir_cost"]
    assert (wc.low, wc.high) == (0.67, 7.06)
    assert (ranges["air_purification.so2_price"].low, ranges["air_purification.dust_price"].high) == (830, 230)
    assert ranges["carbon_sequestration.co2_price"].evidence == "V2"  # 29.57 is a platform default [V2]
    assert ranges["soil_retention.k_constant"].evidence == "U"  # an illustration, not a documented range


@pytest.mark.parametrize("body, match", [
    ("key,low,high,source\nnope.key,1,2,x\n", r"line 2: unknown key 'nope.key'"),
    ("key,low,high,unit,source\ncarbon_sequestration.co2_price,10,100,yuan/t C,x\n",
     r"line 2, column 'unit': 'yuan/t C' differs from the unit of carbon_sequestration.co2_price"),
    ("key,low,high,source\ncarbon_sequestration.co2_price,100,10,x\n",
     r"line 2 \(carbon_sequestration.co2_price\): low 100.0 is above high"),
    ("key,low,source\ncarbon_sequestration.co2_price,100,x\n", r"column\(s\) \['high'\] missing"),
    ("key,low,high,source\ncarbon_sequestration.co2_price,-5,10,x\n", r"a price cannot be negative"),
])
def test_ranges_errors_are_reported_before_any_run(tiny, body, match):
    p = write(tiny.parent, "r.csv", body)
    cfg = load_config(tiny)
    with pytest.raises(TableError, match=match) as e:
        run_sensitivity(cfg, ranges=p)
    assert "r.csv" in str(e.value)
    assert not (tiny.parent / "out").exists()  # nothing was computed


# ------------------------------------------------------------------------------------------ sensitivity
def test_sensitivity_exact_from_central_totals_with_price_index(tiny):
    d = tiny.parent
    write(d, "index.csv", "year,index\n2010,100\n2020,125\n")  # factor 1.25
    rng = write(d, "r.csv", "key,low,high,unit,source,evidence\n"
                            "water_conservation.reservoir_cost,0.67,7.06,yuan/m3,test,V\n"
                            "carbon_sequestration.co2_price,29.57,380,yuan/t CO2,test,V2\n"
                            "air_purification.so2_price,830,1200,yuan/t,test,V\n"
                            "soil_retention.bulk_density,0.93,1.30,t/m3,test (value-only parameter),EX\n"
                            "flood_regulation.reservoir_cost,0.67,7.06,yuan/m3,test,V\n")
    cfg = load_config(with_keys(tiny, "accounting_year: 2020\nprices: {price_index: index.csv}"))
    res = run_sensitivity(cfg, ranges=rng)
    man = res.manifest
    central = json.loads(open(man["central_run"]["manifest"]).read())
    tot = {k: v["sum"] for k, v in central["totals"].items()}
    g = tot["gep_r_yuan"]
    # the pipeline used 7.06 x 1.25 = 8.825 yuan/m3
    used = {p["key"]: p["value"] for p in central["prices"]}
    assert used["water_conservation.reservoir_cost"] == pytest.approx(8.825)
    assert tot["water_conservation_yuan"] == pytest.approx(tot["water_conservation_m3"] * 8.825, rel=1e-6)
    t = res.table.set_index("key")
    assert set(t["method"]) == {"exact"} and list(res.table["rank"]) == [1, 2, 3, 4]
    w = t.loc["water_conservation.reservoir_cost"]
    assert (w["low"], w["central"], w["high"]) == pytest.approx((0.8375, 8.825, 8.825))  # 0.67 x 1.25
    assert w["gep_r_low_yuan"] == pytest.approx(g - tot["water_conservation_yuan"] * (1 - 0.67 / 7.06), rel=1e-9)
    assert w["gep_r_high_yuan"] == pytest.approx(g, rel=1e-12)
    c = t.loc["carbon_sequestration.co2_price"]
    assert c["gep_r_low_yuan"] == pytest.approx(g - tot["carbon_sequestration_tco2"] * (380 - 29.57) * 1.25, rel=1e-6)
    s = t.loc["air_purification.so2_price"]
    assert s["gep_r_low_yuan"] == pytest.approx(g - tot["air_purification_so2_t"] * (1200 - 830) * 1.25, rel=1e-6)
    # bulk density enters only lambda/rho * P_dredge: lambda 0.24, P_dredge 15.58 x 1.25 = 19.475 yuan/m3
    b = t.loc["soil_retention.bulk_density"]
    assert b["index_factor"] == 1.0 and b["central"] == 0.93
    assert b["gep_r_high_yuan"] == pytest.approx(g + tot["soil_retention_t"] * 0.24 * 19.475 * (1 / 1.30 - 1 / 0.93),
                                                 rel=1e-6)
    assert b["swing_yuan"] == pytest.approx(abs(b["gep_r_high_yuan"] - b["gep_r_low_yuan"]))
    assert w["swing_share_of_central"] == pytest.approx(w["swing_yuan"] / g)
    assert man["skipped"] == [{"key": "flood_regulation.reservoir_cost",
                               "reason": "service 'flood_regulation' is disabled in this run"}]
    # combined "low" case: prices at their low ends, bulk density at its HIGH end (lower value)
    low = man["combined"]["low"]
    assert low["method"] == "exact" and low["values"]["soil_retention.bulk_density"]["end"] == "high"
    assert low["values"]["carbon_sequestration.co2_price"]["end"] == "low"
    # ... equals a full rerun of the pipeline with the same overrides (to float32 rounding of the pixels)
    rerun_cfg = load_config(with_keys(tiny, """
accounting_year: 2020
prices:
  price_index: index.csv
  overrides:
    water_conservation.reservoir_cost: {value: 0.67, unit: yuan/m3, price_year: 2010, source: t}
    carbon_sequestration.co2_price: {value: 29.57, unit: yuan/t CO2, price_year: 2010, source: t}
    air_purification.so2_price: {value: 830, unit: yuan/t, price_year: 2010, source: t}
parameters:
  soil_retention.bulk_density: {value: 1.30, source: t}
""", "rerun.yaml"), overrides={"output": {"dir": str(d / "rerun_out")}})
    ref = run(rerun_cfg, progress=False)
    assert low["gep_r_yuan"] == pytest.approx(ref.manifest["totals"]["gep_r_yuan"]["sum"], rel=1e-6)
    for layer in ("county", "township", "special_units"):
        got = res.tables[layer]["low"]
        want = ref.tables[layer]
        for col in ("water_conservation_yuan", "soil_retention_yuan", "gep_r_yuan", "gep_r_yuan_per_km2"):
            np.testing.assert_allclose(got[col].to_numpy(), want[col].to_numpy(), rtol=2e-6)
        # the physical columns are those of the central run
        np.testing.assert_allclose(got["soil_retention_t"], res.tables[layer]["central"]["soil_retention_t"])
    county_high = pd.read_csv(res.output_dir / "county_high.csv", dtype={"county_code": str})
    assert county_high["gep_r_yuan"].iloc[0] == pytest.approx(res.tables["county"]["high"]["gep_r_yuan"].iloc[0])


def test_sensitivity_command_default_ranges_reruns_physical_parameter(tiny, tmp_path):
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop():  # a second command so that typer keeps 'sensitivity' as a sub-command
        pass

    out = tmp_path / "cli_out"
    r = CliRunner().invoke(app, ["sensitivity", str(tiny), "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    assert "central GEP-R" in r.output and len(r.output.strip().splitlines()) == 1  # -q: the one-line result
    sdir = out / "sensitivity"
    man = json.loads((sdir / "manifest.json").read_text())
    assert "oxygen_release.o2_price" in [s["key"] for s in man["skipped"]]
    central = json.loads((out / "manifest.json").read_text())
    tot = {k: v["sum"] for k, v in central["totals"].items()}
    g = tot["gep_r_yuan"]
    t = pd.read_csv(sdir / "sensitivity.csv").set_index("key")
    # K constant changes the physical soil retention: rerun. With a constant K, Q = R*K*LS*(1-CP)*A is
    # linear in K, so GEP-R(K) = GEP-R + V_soil x (K / 0.03 - 1): 0.018 -> -40 %, 0.041 -> +36.67 % of V_soil
    k = t.loc["soil_retention.k_constant"]
    assert k["method"] == "rerun" and k["evidence"] == "U"
    assert k["gep_r_low_yuan"] == pytest.approx(g + tot["soil_retention_yuan"] * (0.018 / 0.03 - 1), rel=1e-5)
    assert k["gep_r_high_yuan"] == pytest.approx(g + tot["soil_retention_yuan"] * (0.041 / 0.03 - 1), rel=1e-5)
    assert t.loc["water_conservation.reservoir_cost", "method"] == "exact"
    assert t["rank"].tolist() == sorted(t["rank"]) and t["swing_yuan"].is_monotonic_decreasing
    reasons = {s["key"]: s["reason"] for s in man["skipped"]}
    assert set(reasons) == {"flood_regulation.reservoir_cost", "oxygen_release.o2_price",
                            "climate_regulation.electricity_price"}
    assert all("disabled" in v for v in reasons.values())
    assert man["combined"]["low"]["method"] == "rerun"  # a physical parameter is in play
    assert man["combined"]["low"]["gep_r_yuan"] < g < man["combined"]["high"]["gep_r_yuan"]
    assert any("soil_retention.k_constant" in a and "[U]" in a for a in man["assumptions"])
    for o in man["outputs"]:
        assert (sdir / o["path"]).is_file(), o["path"]
    assert (sdir / "tornado.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for case in ("low", "central", "high"):  # nesting still holds in every case
        county = pd.read_csv(sdir / f"county_{case}.csv")
        towns = pd.read_csv(sdir / f"township_{case}.csv")
        assert towns["gep_r_yuan"].sum() == pytest.approx(county["gep_r_yuan"].iloc[0], rel=1e-6)
    assert not [p for p in sdir.iterdir() if p.name.startswith(".work-")]  # rerun folders removed
    assert not [p for p in sdir.rglob("*") if ".tmp" in p.name]


def test_sensitivity_skips_a_parameter_the_run_does_not_use(tiny):
    from conftest import write_raster

    d = tiny.parent
    write_raster(d / "k.tif", np.full((40, 50), 0.03, np.float32), nodata=-1.0)
    p = with_keys(tiny, "")
    p.write_text(p.read_text().replace("et: {path: et.tif}", "et: {path: et.tif}\n  k_factor: {path: k.tif}"))
    rng = write(d, "r.csv", "key,low,high,source,evidence\nsoil_retention.k_constant,0.018,0.041,test,U\n")
    res = run_sensitivity(load_config(p), ranges=rng)
    assert res.table.empty
    assert res.manifest["skipped"][0]["key"] == "soil_retention.k_constant"
    assert res.manifest["skipped"][0]["reason"].startswith("not used by this run")
    pd.testing.assert_frame_equal(res.tables["county"]["low"], res.tables["county"]["central"])
    assert (res.output_dir / "tornado.png").is_file()
