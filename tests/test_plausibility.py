"""Plausibility checks: the bounds table, one warning per row outside its bound, pre-run checks, the run hook."""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from gep_raster import plausibility as pl
from gep_raster.config import load_config
from gep_raster.plausibility import RunStats, check_run, manifest_record, pre_run_checks, stats_from_totals

REPO = Path(__file__).resolve().parents[1]
RUN_KEYS = [b.key for b in pl.BOUNDS if b.phase == "run"]
SERVICES = ("water_conservation", "soil_retention", "carbon_sequestration", "climate_regulation")


def inside() -> RunStats:
    """1,000 ha with every quantity inside its bound."""
    return RunStats(area_ha=1000.0, water_area_ha=1000.0,
                    gep_r_yuan=1e7 * 10.0,  # 1e7 yuan/km2 over 10 km2
                    service_values_yuan={"water_conservation": 4e7, "soil_retention": 1e7,
                                         "carbon_sequestration": 1e7, "climate_regulation": 4e7},
                    soil_retention_t=100.0 * 1000, potential_erosion_mean=300.0,
                    water_conservation_m3=500.0 * 10 * 1000,  # 500 mm over 1,000 ha
                    water_deficit_m3=0.0, water_negative_rule="clip", flood_regulation_m3=None,
                    precip_mean_mm=1200.0, et_mean_mm=600.0, carbon_sequestration_tco2=5.0 * 1000)


def keys(diags) -> list[str]:
    return [d.key for d in diags]


# ------------------------------------------------------------------------------ the table
def test_table_rows_are_complete_and_marked():
    assert len({b.key for b in pl.BOUNDS}) == len(pl.BOUNDS)
    for b in pl.BOUNDS:
        assert b.evidence in ("V", "V-calc", "V2", "U"), b.key
        assert b.phase in ("run", "pre-run"), b.key
        assert b.basis in ("mass balance", "definition", "published accounts", "argument", "engineering flag")
        assert b.source and b.note and b.unit and b.quantity
        assert (b.high is None) or (b.high_from is None), b.key
        assert b.low is not None or b.high is not None or b.high_from, b.key
        if b.evidence == "U":  # an unverified bound says so in its source
            assert "[U]" in b.source, b.key
    assert set(RUN_KEYS) == set(pl._NEEDS)


def test_bound_numbers_follow_from_the_published_figures():
    """Arithmetic on the gep-methods.md §7 figures (Garzê 2010 [V], Shenzhen 2020 [V2])."""
    b = pl._BY_KEY
    assert b["soil_retention.retained_per_ha"].high == pytest.approx(38.86e8 / 14_968_770, abs=0.05)  # 259.6
    assert b["gep_r.per_km2"].low == pytest.approx(6842.28e8 / 149_687.7, rel=1e-3)  # 4.571e6
    assert b["gep_r.per_km2"].high == pytest.approx(0.65e8 * 699.52 / 1303.82, rel=1e-3)  # 3.487e7
    assert b["gep_r.max_service_share"].high == pytest.approx(488.24 / 699.52, abs=5e-4)  # 0.698
    assert b["carbon_sequestration.per_ha"].high == pytest.approx(10 * 44 / 12, abs=0.01)
    assert pl.GARZE_WATER_MM == pytest.approx(214.8, abs=0.05)
    assert pl.GARZE_CARBON_T_HA == pytest.approx(2.07, abs=0.005)


def test_markdown_table_is_the_one_in_the_docs():
    md = pl.bounds_table_markdown()
    lines = md.strip().splitlines()
    assert len(lines) == 2 + len(pl.BOUNDS)
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines[2:])
    assert all(line.count(" | ") == 9 for line in lines[2:]), "a cell holds an unescaped |"
    doc = (REPO / "docs" / "plausibility.md").read_text(encoding="utf-8")
    assert md in doc, "docs/plausibility.md: paste the output of gep_raster.plausibility.bounds_table_markdown()"
    for b in pl.BOUNDS:  # one explaining sentence per row
        assert b.note in doc, b.key


# ------------------------------------------------------------------------------ run checks, one per row
def test_inside_every_bound_gives_no_warning():
    assert check_run(inside()) == []
    rec = manifest_record(inside())
    assert [c["status"] for c in rec["checks"]] == ["ok"] * len(RUN_KEYS)
    assert rec["warnings"] == []


@pytest.mark.parametrize("key, change, value_txt, bound_txt, unit", [
    ("soil_retention.potential_erosion_mean", {"potential_erosion_mean": 1500.0}, "1500", "1000", "t/ha/a"),
    ("soil_retention.retained_per_ha", {"soil_retention_t": 400.0 * 1000}, "400", "259.6", "t/ha/a"),
    ("carbon_sequestration.per_ha", {"carbon_sequestration_tco2": 50.0 * 1000}, "50", "36.67", "t CO2/ha/a"),
    ("carbon_sequestration.per_ha", {"carbon_sequestration_tco2": -2.0 * 1000}, "-2", "lower bound 0", "t CO2/ha/a"),
    ("gep_r.per_km2", {"gep_r_yuan": 5e7 * 10.0,
                       "service_values_yuan": {"water_conservation": 2e8, "soil_retention": 5e7,
                                               "carbon_sequestration": 5e7, "climate_regulation": 2e8}},
     "5e+07", "3.487e+07", "yuan/km2/a"),
    ("gep_r.per_km2", {"gep_r_yuan": 1e6 * 10.0,
                       "service_values_yuan": {"water_conservation": 4e6, "soil_retention": 1e6,
                                               "carbon_sequestration": 1e6, "climate_regulation": 4e6}},
     "1e+06", "lower bound 4.571e+06", "yuan/km2/a"),
    ("gep_r.max_service_share", {"service_values_yuan": {"water_conservation": 8e7, "soil_retention": 1e7,
                                                         "carbon_sequestration": 5e6, "climate_regulation": 5e6}},
     "0.8", "0.698", "fraction"),
])
def test_outside_a_fixed_bound_gives_exactly_that_warning(key, change, value_txt, bound_txt, unit):
    diags = check_run(replace(inside(), **change))
    assert keys(diags) == [key]
    d = diags[0]
    assert d.level == "warning" and d.unit == unit
    b = pl._BY_KEY[key]
    assert f"= {value_txt} {unit}" in d.message
    assert f"{bound_txt} {unit}" in d.message
    assert f"evidence [{b.evidence}]" in d.message and b.source in d.message
    assert (d.low, d.high) == (b.low, b.high)
    if b.evidence == "U":
        assert "unverified [U] bound" in d.message
    rec = manifest_record(replace(inside(), **change), diags)
    assert [c["key"] for c in rec["checks"] if c["status"] == "warning"] == [key]
    assert rec["warnings"][0]["value"] == pytest.approx(d.value)


def test_water_depth_above_precipitation():
    # 1,500 mm stored with 1,200 mm of rain: above P, and so above the surplus P - ET = 600 too
    s = replace(inside(), water_conservation_m3=1500.0 * 10 * 1000)
    assert keys(check_run(s)) == ["water_conservation.depth_vs_precip",
                                  "water_conservation.balance_plus_flood_vs_surplus"]
    d = check_run(s)[0]
    assert "= 1500 mm/a is above the upper bound 1200 mm/a (mean P of the run)" in d.message
    assert d.high == 1200.0 and d.evidence == "V-calc"
    # inside P but above P - ET: only the surplus row
    s = replace(inside(), water_conservation_m3=700.0 * 10 * 1000)
    assert keys(check_run(s)) == ["water_conservation.balance_plus_flood_vs_surplus"]


def test_flood_on_top_of_the_water_balance_exceeds_the_surplus():
    s = replace(inside(), flood_regulation_m3=150.0 * 10 * 1000)  # 500 + 150 > 1200 - 600
    diags = check_run(s)
    assert keys(diags) == ["water_conservation.balance_plus_flood_vs_surplus"]
    m = diags[0].message
    assert "= 650 mm/a is above the upper bound 600 mm/a (mean P − mean ET of the run)" in m
    assert "water balance 500 mm/a + flood regulation 150 mm/a" in m
    assert "[U]" in m and "§6 item 4" in m
    assert check_run(replace(inside(), flood_regulation_m3=90.0 * 10 * 1000)) == []


def test_clipped_deficit_is_taken_out_of_the_balance():
    # reported 700 mm after clipping, 150 mm of negative balances removed: net 550 <= 600
    s = replace(inside(), water_conservation_m3=700.0 * 10 * 1000, water_deficit_m3=150.0 * 10 * 1000)
    assert check_run(s) == []
    # negatives kept: the reported figure is the net balance, 700 > 600
    kept = replace(s, water_negative_rule="keep")
    diags = check_run(kept)
    assert keys(diags) == ["water_conservation.balance_plus_flood_vs_surplus"]
    assert "clipping" not in diags[0].message
    # clipped, with flood on top: the message says how much clipping adds
    diags = check_run(replace(s, flood_regulation_m3=100.0 * 10 * 1000))
    assert "clipping negative balances adds 150 mm/a" in diags[0].message


def test_run_derived_bound_allows_rounding():
    """InVEST AWY: water yield = P - AET exactly; float32 sums may put it a hair above the mean surplus."""
    s = replace(inside(), water_conservation_m3=600.0 * 1.0005 * 10 * 1000)  # 0.3 mm over, tolerance 1.2 mm
    assert check_run(s) == []
    assert keys(check_run(replace(s, water_conservation_m3=602.0 * 10 * 1000))) == [
        "water_conservation.balance_plus_flood_vs_surplus"]


def test_rows_without_their_quantities_are_skipped():
    s = RunStats(area_ha=1000.0, gep_r_yuan=1e8, service_values_yuan={"a": 9e7, "b": 1e7})
    assert check_run(s) == []  # two services: the share is not judged
    rec = manifest_record(s)
    status = {c["key"]: c["status"] for c in rec["checks"]}
    assert status["gep_r.per_km2"] == "ok"
    assert {k for k, v in status.items() if v == "skipped"} == set(RUN_KEYS) - {"gep_r.per_km2"}
    assert check_run(RunStats(area_ha=0.0)) == []


def test_run_checks_for_enabled_services():
    assert [b.key for b in pl.run_checks_for(["carbon_sequestration"])] == ["carbon_sequestration.per_ha",
                                                                            "gep_r.per_km2"]
    assert {b.key for b in pl.run_checks_for(SERVICES)} == set(RUN_KEYS)


def test_stats_from_totals():
    totals = {"gep_r_yuan": 2e6, "water_conservation_yuan": 1e6, "soil_retention_yuan": 1e6,
              "soil_retention_t": 3000.0, "potential_erosion": 40 * 250.0, "water_conservation_m3": 9000.0,
              "water_deficit_m3": 10.0, "precipitation_mm": 30 * 1000.0, "et_mm": 30 * 400.0}
    valid = {"gep_r_yuan": 40, "potential_erosion": 40, "water_conservation_m3": 30, "precipitation_mm": 30,
             "et_mm": 30}
    s = stats_from_totals(totals, valid, 900.0, {"water_conservation": "water_conservation_yuan",
                                                 "soil_retention": "soil_retention_yuan",
                                                 "carbon_sequestration": "carbon_sequestration_yuan"},
                          water_negative_rule="clip")
    assert s.area_ha == pytest.approx(40 * 0.09) and s.water_area_ha == pytest.approx(30 * 0.09)
    assert s.potential_erosion_mean == 250.0 and s.precip_mean_mm == 1000.0 and s.et_mean_mm == 400.0
    assert s.service_values_yuan == {"water_conservation": 1e6, "soil_retention": 1e6}
    assert s.flood_regulation_m3 is None and s.carbon_sequestration_tco2 is None
    assert "40 px" in s.scope
    with pytest.raises(ValueError, match="pixel_area_m2"):
        stats_from_totals(totals, valid, 0.0, {})
    with pytest.raises(ValueError, match="gep_r_yuan"):
        stats_from_totals(totals, {}, 900.0, {})


# ------------------------------------------------------------------------------ pre-run checks
def test_pre_run_checks_inside_give_nothing():
    assert pre_run_checks(k_constant=0.03, storm_precip_mm=200, annual_precip_max_mm=1500, hot_days=40,
                          hot_season_et_factor=1.5) == []
    assert pre_run_checks() == []
    assert pre_run_checks(hot_days=float("nan"), hot_season_et_factor=1.0) == []  # D from a raster


def test_pre_run_k_constant_is_info_because_its_range_is_unverified():
    diags = pre_run_checks(k_constant=0.3)
    assert keys(diags) == ["soil_retention.k_constant"] and diags[0].level == "info"
    assert "= 0.3 t*ha*h/(ha*MJ*mm) is above the upper bound 0.041" in diags[0].message
    assert "[U]" in diags[0].message and "Willamette" in diags[0].message


def test_pre_run_storm_above_annual_precipitation_is_a_warning():
    diags = pre_run_checks(storm_precip_mm=2000, annual_precip_max_mm=1600)
    assert keys(diags) == ["flood_regulation.storm_vs_annual_precip"] and diags[0].level == "warning"
    assert "= 2000 mm is above the upper bound 1600 mm (largest sampled annual P" in diags[0].message


def test_pre_run_hot_season_et_is_a_warning():
    diags = pre_run_checks(hot_days=200, hot_season_et_factor=2.0)
    assert keys(diags) == ["climate_regulation.hot_season_et"] and diags[0].level == "warning"
    assert "= 400 days is above the upper bound 366 days (hot_season_et_factor 2 × hot_days 200)" in diags[0].message


def test_validate_lists_the_checks_and_reports_pre_run_findings(tiny):
    from gep_raster.validation import validate

    rep = validate(load_config(tiny))
    assert not rep.problems, rep.problems
    line = next(i for i in rep.info if i.startswith("plausibility: after the run"))
    assert "gep_r.per_km2" in line and "soil_retention.retained_per_ha" in line
    assert not [w for w in rep.warnings if w.startswith("plausibility")]
    cfg = load_config(tiny, overrides={"services": {"climate_regulation": {
        "enabled": True, "hot_days": 200, "hot_season_et_factor": 2.0}}})
    rep = validate(cfg)
    hot = [w for w in rep.warnings if "climate_regulation.hot_season_et" in w]
    assert len(hot) == 1 and "= 400 days" in hot[0]


# ------------------------------------------------------------------------------ end to end
def test_run_manifest_has_the_plausibility_diagnostics(tiny, tmp_path, caplog):
    from gep_raster.pipeline import run

    with caplog.at_level(logging.WARNING, logger="gep_raster"):
        res = run(load_config(tiny, overrides={"output": {"dir": str(tmp_path / "out")}}), progress=False)
    m = res.manifest
    assert "water_conservation" in m["diagnostics"]  # the existing entries stay
    rec = m["diagnostics"]["plausibility"]
    assert set(rec) == {"scope", "stats", "checks", "warnings", "table"}
    assert [c["key"] for c in rec["checks"]] == RUN_KEYS
    for c in rec["checks"]:
        assert set(c) == {"key", "service", "quantity", "unit", "value", "low", "high", "basis", "evidence",
                          "status"}
        assert c["status"] in ("ok", "warning", "skipped")
    status = {c["key"]: c["status"] for c in rec["checks"]}
    assert status["gep_r.per_km2"] != "skipped" and status["soil_retention.retained_per_ha"] != "skipped"
    # the numbers are the manifest's totals over the valid area
    area_km2 = m["totals"]["gep_r_yuan"]["valid_pixels"] * 900.0 / 1e6
    per_km2 = next(c for c in rec["checks"] if c["key"] == "gep_r.per_km2")["value"]
    assert per_km2 == pytest.approx(m["totals"]["gep_r_yuan"]["sum"] / area_km2)
    assert rec["stats"]["area_ha"] == pytest.approx(area_km2 * 100)
    # every warning is a check with status warning, logged once, and in the file
    warned = [w["key"] for w in rec["warnings"]]
    assert warned == [k for k, v in status.items() if v == "warning"]
    for w in rec["warnings"]:
        assert set(w) == {"key", "service", "level", "message", "value", "low", "high", "unit", "evidence", "source"}
        assert w["level"] == "warning"
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("plausibility: ")]
    assert logged == [f"plausibility: {w['message']}" for w in rec["warnings"]]
    on_disk = json.loads(res.manifest_path.read_text(encoding="utf-8"))
    assert on_disk["diagnostics"]["plausibility"]["checks"] == rec["checks"]
