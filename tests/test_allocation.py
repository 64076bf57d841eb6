"""Eco-compensation fund allocation (``gep allocate``, gep_raster.analysis.allocation): every expected number is
computed by hand in the test from the formulas of docs/allocation.md."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gep_raster.analysis.allocation import (allocate, allocate_fund, largest_remainder, load_rule, parse_fund,
                                            read_statistics, register, rule_from_dict, water_fill)
from gep_raster.errors import ConfigError, InputError

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def sample_run(tmp_path_factory) -> Path:
    """A fresh run of pipelines/sample.yaml in a temporary folder (never a left-over out/sample)."""
    import gep_raster

    out = tmp_path_factory.mktemp("sample_run") / "sample"
    gep_raster.run(REPO / "pipelines" / "sample.yaml", output_dir=out)
    return out


def write_series(folder: Path, gep_r: dict, *, area=None, gdp=None) -> Path:
    """A `gep series` folder: series_manifest.json and tables/town_series.csv (long format, one row per unit and
    year). ``gep_r``: {year: [value of T1, T2, T3]} at comparable prices; current prices = 1.1 x comparable."""
    ids, names = ["T1", "T2", "T3"], ["甲", "乙", "丙"]
    area = area or [10.0, 20.0, 40.0]
    rows = []
    years = sorted(gep_r)
    for y in years:
        for i, (uid, nm) in enumerate(zip(ids, names)):
            v = gep_r[y][i]
            v0 = gep_r[years[0]][i]
            rows.append({"town_code": uid, "town_name": nm, "year": y, "area_km2": area[i],
                         "gep_r_yuan": 1.1 * v, "gep_r_yuan_comparable": v,
                         "gep_r_yuan_yoy_pct": np.nan, "gep_r_yuan_cum_pct": 100 * (v - v0) / v0,
                         "gep_yuan": 2.2 * v, "gep_yuan_comparable": 2 * v})
    (folder / "tables").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "tables" / "town_series.csv", index=False, encoding="utf-8-sig")
    (folder / "series_manifest.json").write_text(json.dumps({
        "layers": {"town": {"id_field": "town_code", "name_field": "town_name", "table": "tables/town_series.csv"}},
        "years": years, "base_year": years[0]}), encoding="utf-8")
    return folder


# ---------------------------------------------------------------------------------- largest remainder
def test_largest_remainder_small_example_sums_exactly():
    # 10 yuan among shares 1/3, 1/3, 1/3 -> 3.333 each: floors 9, the 1 yuan left goes to the smallest key
    out = largest_remainder([10 / 3, 10 / 3, 10 / 3], 10, keys=["c", "a", "b"])
    assert out.dtype == np.int64 and out.tolist() == [3, 4, 3] and out.sum() == 10
    # 2.6, 3.3, 4.1 (sum 10): floors 2, 3, 4 = 9; largest remainder .6 -> [3, 3, 4]
    assert largest_remainder([2.6, 3.3, 4.1], 10).tolist() == [3, 3, 4]
    # equal remainders 1.5, 1.5 and total 5: one yuan left, the tie goes to key 'a' (position 1)
    assert largest_remainder([1.5, 1.5, 2.0], 5, keys=["b", "a", "c"]).tolist() == [1, 2, 2]
    with pytest.raises(ConfigError, match="not to the total"):
        largest_remainder([1.0, 2.0], 5)
    with pytest.raises(ConfigError, match="whole"):
        largest_remainder([1.25, 1.25], 2.5)


# ---------------------------------------------------------------------------------- a hand-computed allocation
def test_three_units_by_hand():
    t = pd.DataFrame({"id": ["A", "B", "C"], "name": ["a", "b", "c"],
                      "gep_r_per_km2": [200.0, 100.0, 100.0], "gdp": [2.0, 1.0, 1.0]})
    rule = {"indicators": {"gep_r_per_km2": {"weight": 3}, "gdp": {"weight": 2, "direction": "lower_gets_more"}}}
    res = allocate_fund(t, "id", 1003, rule, name_field="name")
    # weights 3, 2 -> 0.6, 0.4; share scores 200/400 = .5, .25, .25; 1/gdp = .5, 1, 1 (sum 2.5) -> .2, .4, .4
    assert np.allclose(res["score_gep_r_per_km2"], [0.5, 0.25, 0.25])
    assert np.allclose(res["score_gdp"], [0.2, 0.4, 0.4])
    # S = .6 x .5 + .4 x .2 = .38; .6 x .25 + .4 x .4 = .31
    assert np.allclose(res["composite_score"], [0.38, 0.31, 0.31]) and np.allclose(res["share"], [0.38, 0.31, 0.31])
    # 1003 x .38 = 381.14, 1003 x .31 = 310.93: floors 381 + 310 + 310 = 1001, 2 yuan to the .93 remainders
    assert np.allclose(res["amount_unrounded_yuan"], [381.14, 310.93, 310.93])
    assert res["allocated_yuan"].tolist() == [381, 311, 311] and res["allocated_yuan"].sum() == 1003
    assert list(res.columns[:2]) == ["id", "name"] and not res["at_floor"].any() and not res["at_cap"].any()
    # docs/allocation.md: with floor_yuan 320, B and C (310.93) are fixed at 320 and A gets 1003 - 640 = 363
    res = allocate_fund(t, "id", 1003, {**rule, "floor_yuan": 320}, name_field="name")
    assert res["allocated_yuan"].tolist() == [363, 320, 320] and res["at_floor"].tolist() == [False, True, True]


def test_four_units_minmax_by_hand():
    t = pd.DataFrame({"id": ["u1", "u2", "u3", "u4"], "x": [10.0, 20.0, 30.0, 50.0], "y": [5.0, 5.0, 1.0, 3.0]})
    rule = {"normalise": "minmax", "indicators": {"x": {"weight": 0.5}, "y": {"weight": 0.5,
                                                                            "direction": "lower_gets_more"}}}
    res = allocate_fund(t, "id", 1000, rule)
    # x: (x - 10)/40 = 0, .25, .5, 1; y lower: (5 - y)/4 = 0, 0, 1, .5
    assert np.allclose(res["score_x"], [0, 0.25, 0.5, 1]) and np.allclose(res["score_y"], [0, 0, 1, 0.5])
    # S = 0, .125, .75, .75 (sum 1.625) -> shares 0, 1/13, 6/13, 6/13 -> 0, 76.92, 461.54, 461.54
    assert np.allclose(res["share"], [0, 1 / 13, 6 / 13, 6 / 13])
    # floors 0 + 76 + 461 + 461 = 998, 2 yuan left: to .923 (u2), then the .538 tie goes to the smaller id, u3
    assert res["allocated_yuan"].tolist() == [0, 77, 462, 461]


# ---------------------------------------------------------------------------------- floors and caps
def test_water_filling_by_hand_releases_a_cap():
    # p = .4 .3 .2 .1, fund 1000, floor 200, cap 350. First pass 400 300 200 100: u1 capped, u4 floored; 450 left
    # for u2, u3 (lambda 900) puts u3 at 180 < 200, so u3 is floored too; then 250 for u2 alone (lambda 833.3)
    # gives u1 only 333 < 350: the cap no longer binds. Final: u1, u2 free with 600 -> lambda = 600/.7
    a, at_floor, at_cap = water_fill([0.4, 0.3, 0.2, 0.1], 1000, 200, 350)
    lam = 600 / 0.7
    assert np.allclose(a, [0.4 * lam, 0.3 * lam, 200, 200])  # 342.857, 257.143, 200, 200
    assert at_floor.tolist() == [False, False, True, True] and at_cap.tolist() == [False, False, False, False]
    t = pd.DataFrame({"id": ["u1", "u2", "u3", "u4"], "x": [4.0, 3.0, 2.0, 1.0]})
    res = allocate_fund(t, "id", 1000, {"indicators": {"x": {"weight": 1}}, "floor_yuan": 200, "cap_yuan": 350})
    # 342.857 + 257.143 + 200 + 200: floors 999, the 1 yuan goes to .857
    assert res["allocated_yuan"].tolist() == [343, 257, 200, 200]
    # a cap that binds: cap 300 -> u1 300, then 500 for u2..u4 by .3 .2 .1 = 250, 166.7 < 200 -> floored ...
    a, at_floor, at_cap = water_fill([0.4, 0.3, 0.2, 0.1], 1000, 200, 300)
    # u1 300 (cap), u3 200, u4 200 (floors), u2 300 (cap: 1000 - 700 = 300 <= 300)
    assert np.allclose(a, [300, 300, 200, 200]) and at_cap[0] and at_floor[2] and at_floor[3]


def test_infeasible_floors_and_caps():
    t = pd.DataFrame({"id": ["a", "b", "c"], "x": [1.0, 2.0, 3.0]})
    with pytest.raises(ConfigError, match=r"infeasible floors: the 3 floors sum to 1,200 yuan > fund 1,000 yuan"):
        allocate_fund(t, "id", 1000, {"indicators": {"x": {"weight": 1}}, "floor_yuan": 400})
    with pytest.raises(ConfigError, match=r"infeasible caps: the 3 caps sum to 900 yuan < fund 1,000 yuan"):
        allocate_fund(t, "id", 1000, {"indicators": {"x": {"weight": 1}}, "cap_yuan": 300})
    with pytest.raises(ConfigError, match="floor_yuan must be a whole"):
        rule_from_dict({"indicators": {"x": {"weight": 1}}, "floor_yuan": 10.5})


def _reference_fill(p, total, lo, hi):
    """Bisection on lambda of sum(clip(lambda p, lo, hi)) = total (a slow, independent reference)."""
    a, b = 0.0, 1.0
    while np.clip(b * p, lo, hi).sum() < total:
        b *= 2
    for _ in range(200):
        m = (a + b) / 2
        a, b = (m, b) if np.clip(m * p, lo, hi).sum() < total else (a, m)
    return np.clip(b * p, lo, hi)


def test_random_allocations_sum_exactly_and_keep_limits():
    rng = np.random.default_rng(20260301)
    for trial in range(150):
        n = int(rng.integers(1, 25))
        fund = int(rng.integers(n, 10**10))
        x = rng.random(n) * 10 ** rng.uniform(0, 9)
        lo = np.floor(rng.random(n) * fund / n * 0.8)
        hi = np.where(rng.random(n) < 0.5, np.inf, np.ceil(lo + rng.random(n) * fund))
        if hi.sum() < fund:
            hi[int(rng.integers(n))] = np.inf
        t = pd.DataFrame({"id": [f"u{i:02d}" for i in range(n)], "x": x})
        limits = pd.DataFrame({"id": t["id"], "floor_yuan": lo, "cap_yuan": np.where(np.isinf(hi), np.nan, hi)})
        res = allocate_fund(t, "id", fund, {"indicators": {"x": {"weight": 1}}}, limits=limits)
        got = res["allocated_yuan"].to_numpy()
        assert got.sum() == fund, trial
        assert (got >= lo).all() and (got <= hi).all(), trial
        ref = _reference_fill(x / x.sum(), fund, lo, hi)
        assert np.allclose(res["amount_unrounded_yuan"], ref, rtol=1e-9, atol=1e-3), trial
        assert (np.abs(got - ref) < 1 + 1e-6).all(), trial


# ---------------------------------------------------------------------------------- a series
def test_series_indicators_and_higher_gep_r_raises_the_share(tmp_path):
    s = write_series(tmp_path / "s", {2024: [100.0, 200.0, 400.0], 2025: [110.0, 180.0, 400.0],
                                      2026: [121.0, 200.0, 300.0]})
    rule = {"indicators": {"gep_r": {"weight": 1}, "gep_r_change": {"weight": 1, "normalise": "minmax"},
                           "gep_r_change_base_pct": {"weight": 1, "normalise": "minmax"}}}
    m = allocate(s, "town", 1_000_000, rule, tmp_path / "o")
    t = pd.read_csv(tmp_path / "o" / "allocation_town.csv", dtype={"town_code": str}, encoding="utf-8-sig")
    assert m["inputs"]["source"]["year"] == 2026 and m["inputs"]["source"]["previous_year"] == 2025
    # 2026 comparable values, change vs 2025 (11, 20, -100), growth since 2024 (21 %, 0 %, -25 %)
    assert t["gep_r"].tolist() == [121.0, 200.0, 300.0]
    assert np.allclose(t["gep_r_change"], [11, 20, -100]) and np.allclose(t["gep_r_change_base_pct"], [21, 0, -25])
    # scores: share 121/621, 200/621, 300/621; minmax of change (x + 100)/120: 111/120, 1, 0; of growth (x+25)/46
    s1 = np.array([121, 200, 300]) / 621
    s2 = np.array([111 / 120, 1.0, 0.0])
    s3 = np.array([46 / 46, 25 / 46, 0.0])
    S = (s1 + s2 + s3) / 3
    assert np.allclose(t["share"], S / S.sum()) and t["allocated_yuan"].sum() == 1_000_000
    assert m["totals"]["sum_equals_fund"] and m["totals"]["allocated_yuan"] == 1_000_000
    assert len(m["inputs"]["source"]["table"]["sha256"]) == 64

    # one unit's GEP-R raised (T2 200 -> 260 in 2026): its share rises (per km2, share and minmax)
    for norm in ("share", "minmax"):
        r = {"normalise": norm, "indicators": {"gep_r_per_km2": {"weight": 1}}}
        a = allocate(s, "town", 10_000, r, tmp_path / "a")
        sa = pd.read_csv(tmp_path / "a" / "allocation_town.csv", encoding="utf-8-sig")["share"][1]
        s2_ = write_series(tmp_path / "s2", {2024: [100.0, 200.0, 400.0], 2025: [110.0, 180.0, 400.0],
                                             2026: [121.0, 260.0, 300.0]})
        allocate(s2_, "town", 10_000, r, tmp_path / "b")
        sb = pd.read_csv(tmp_path / "b" / "allocation_town.csv", encoding="utf-8-sig")["share"][1]
        assert sb > sa and a["totals"]["sum_equals_fund"]
    # the first year has no previous year
    with pytest.raises(ConfigError, match="first year of series"):
        allocate(s, "town", 10_000, {"indicators": {"gep_r_change": {"weight": 1}}}, tmp_path / "c", year=2024)
    with pytest.raises(ConfigError, match="not an accounting year of series"):
        allocate(s, "town", 10_000, {"indicators": {"gep_r": {"weight": 1}}}, tmp_path / "c", year=2023)
    # a negative change cannot be scored by share
    with pytest.raises(ConfigError, match="normalise share needs values >= 0; negative for ids"):
        allocate(s, "town", 10_000, {"indicators": {"gep_r_change": {"weight": 1}}}, tmp_path / "c")


def test_lower_gets_more_with_statistics(tmp_path):
    s = write_series(tmp_path / "s", {2024: [100.0, 100.0, 100.0]}, area=[1.0, 1.0, 1.0])
    stats = tmp_path / "stats.csv"
    pd.DataFrame({"town_code": ["T3", "T1", "T2"], "gdp_per_capita_yuan": [40000, 10000, 20000]}).to_csv(
        stats, index=False)
    m = allocate(s, "town", 7000, {"indicators": {"stat:gdp_per_capita_yuan": {"weight": 1, "direction":
                                                                                "lower_gets_more"}}},
                 tmp_path / "o", statistics=stats)
    t = pd.read_csv(tmp_path / "o" / "allocation_town.csv", encoding="utf-8-sig")
    # 1/x = 1e-4, 5e-5, 2.5e-5 -> 4/7, 2/7, 1/7 of 7000 = 4000, 2000, 1000
    assert t["allocated_yuan"].tolist() == [4000, 2000, 1000]
    assert m["inputs"]["statistics"]["sha256"] and m["rule"]["indicators"][0]["source"] == "statistics"
    higher = allocate(s, "town", 7000, {"indicators": {"gdp_per_capita_yuan": {"weight": 1}}}, tmp_path / "h",
                      statistics=stats)
    assert higher["totals"]["allocated_yuan"] == 7000
    th = pd.read_csv(tmp_path / "h" / "allocation_town.csv", encoding="utf-8-sig")
    assert th["allocated_yuan"].tolist() == [1000, 2000, 4000]  # 10000/70000 of 7000 ...
    # a statistics table with a year column: only the rows of the accounting year (2024) are used
    pd.DataFrame({"town_code": ["T1", "T2", "T3"] * 2, "year": [2023] * 3 + [2024] * 3,
                  "pop": [9, 9, 9, 1, 1, 2]}).to_csv(stats, index=False)
    allocate(s, "town", 100, {"indicators": {"pop": {"weight": 1}}}, tmp_path / "y", statistics=stats)
    ty = pd.read_csv(tmp_path / "y" / "allocation_town.csv", encoding="utf-8-sig")
    assert ty["allocated_yuan"].tolist() == [25, 25, 50]


def test_horizontal_pairs_by_hand(tmp_path):
    s = write_series(tmp_path / "s", {2024: [300.0, 100.0, 200.0]}, area=[1.0, 1.0, 1.0])
    stats = tmp_path / "stats.csv"
    pd.DataFrame({"town_code": ["T1", "T2", "T3"], "gdp_per_capita_yuan": [1.0, 4.0, 2.0]}).to_csv(stats, index=False)
    pairs = tmp_path / "pairs.csv"
    pd.DataFrame({"payer_id": ["T2", "T3", "T2"], "receiver_id": ["T1", "T1", "T3"]}).to_csv(pairs, index=False)
    m = allocate(s, "town", 1000, {"preset": "horizontal"}, tmp_path / "o", statistics=stats, pairs=pairs)
    t = pd.read_csv(tmp_path / "o" / "allocation_town.csv", encoding="utf-8-sig")
    # receiver - payer: GEP-R/km2 200, 100, 100 -> minmax 1, 0, 0; GDP pc -3, -1, -2 -> lower minmax 1, 0, .5
    assert t["pair"].tolist() == ["T2->T1", "T3->T1", "T2->T3"]
    assert np.allclose(t["gep_r_per_km2"], [200, 100, 100]) and np.allclose(t["gdp_per_capita_yuan"], [-3, -1, -2])
    # S = .5 (1 + 1), .5 (0 + 0), .5 (0 + .5) = 1, 0, .25 -> shares .8, 0, .2
    assert t["allocated_yuan"].tolist() == [800, 0, 200]
    u = pd.read_csv(tmp_path / "o" / "allocation_town_units.csv", encoding="utf-8-sig")
    assert u["net_received_yuan"].tolist() == [800, -1000, 200] and m["mode"] == "pairs"
    assert "engine's own definition" in m["rule"]["preset_status"] and "Sanming" in m["rule"]["preset_status"]


# ---------------------------------------------------------------------------------- errors
def test_errors(tmp_path, sample_run):
    s = write_series(tmp_path / "s", {2024: [100.0, 200.0, 300.0]})
    with pytest.raises(ConfigError, match=r"indicators.gep_r_per_km: unknown indicator \(built-in: gep_r"):
        allocate(s, "town", 1000, {"indicators": {"gep_r_per_km": {"weight": 1}}}, tmp_path / "o")
    stats = tmp_path / "stats.csv"
    pd.DataFrame({"town_code": ["T1", "T3"], "pop": [10, 20]}).to_csv(stats, index=False)
    with pytest.raises(InputError, match=r"stats.csv: 1 id\(s\) of the layer missing from column 'town_code': "
                                         r"\['T2'\]"):
        allocate(s, "town", 1000, {"indicators": {"pop": {"weight": 1}}}, tmp_path / "o", statistics=stats)
    pd.DataFrame({"town_code": ["T1", "T2", "T3"], "pop": ["10", "n/a", None]}).to_csv(stats, index=False)
    with pytest.raises(InputError, match=r"column 'pop': missing or non-numeric values for ids \['T2', 'T3'\]"):
        read_statistics(stats, "town_code", ["T1", "T2", "T3"], ["pop"])
    for bad in (1000.5, "12.3", "abc", 0):
        with pytest.raises(ConfigError, match="fund"):
            parse_fund(bad)
    assert parse_fund("1e8") == 100_000_000 and parse_fund("1_000") == 1000
    with pytest.raises(ConfigError, match="a change indicator needs a series"):
        allocate(sample_run, "township", 1000, {"indicators": {"gep_r_change": {"weight": 1}}}, tmp_path / "o")
    with pytest.raises(ConfigError, match="no indicator with a weight > 0"):
        allocate_fund(pd.DataFrame({"id": ["a"]}), "id", 10,
                      {"preset": "vertical", "indicators": {"gep": {"weight": 0}}})
    rf = tmp_path / "rule.yaml"
    rf.write_text("indicators:\n  gep_r: {wieght: 1}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"rule.yaml: indicators.gep_r.wieght: unknown key"):
        load_rule(rf)
    rf.write_text("indicators:\n  - {name: gep_r, weight: 2}\n  - {name: gep, weight: 1}\nfloor_yuan: 1e3\n",
                  encoding="utf-8")
    r = load_rule(rf)  # indicators as a list of named items; 1e3 (a YAML string) as whole yuan
    assert list(r.indicators) == ["gep_r", "gep"] and r.indicators["gep_r"].weight == 2 and r.floor_yuan == 1000
    with pytest.raises(InputError, match="neither series_manifest.json"):
        allocate(tmp_path, "town", 1000, {"indicators": {"gep_r": {"weight": 1}}}, tmp_path / "o")


# ---------------------------------------------------------------------------------- CLI on the sample run
def test_cli_on_the_sample_run(tmp_path, sample_run):
    import typer
    from typer.testing import CliRunner

    app = typer.Typer()

    @app.callback()
    def main():  # a group (as the gep app), so the command is called by its name
        """The gep app."""

    register(app)
    town = pd.read_csv(sample_run / "tables" / "township.csv", dtype={"town_code": str}, encoding="utf-8-sig")
    ids = town["town_code"].tolist()
    stats = tmp_path / "statistics.csv"
    pd.DataFrame({"town_code": ids, "gdp_per_capita_yuan": np.linspace(30000, 90000, len(ids))}).to_csv(
        stats, index=False, encoding="utf-8-sig")
    limits = tmp_path / "limits.csv"
    pd.DataFrame({"town_code": [ids[0]], "floor_yuan": [20_000_000]}).to_csv(limits, index=False)
    rule = tmp_path / "rule.yaml"
    rule.write_text("name: test rule\npreset: horizontal\nindicators:\n  gep_r: {weight: 1}\nfloor_yuan: 100000\n"
                    "unit_limits: limits.csv\n", encoding="utf-8")
    fund = 123_456_789
    cli = CliRunner()
    r = cli.invoke(app, ["allocate", str(sample_run), "--layer", "township", "--fund", str(fund), "--rule",
                         str(rule), "--statistics", str(stats), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert f"allocated {fund:,} yuan among {len(ids)} units of layer township" in r.output
    t = pd.read_csv(tmp_path / "out" / "allocation_township.csv", dtype={"town_code": str}, encoding="utf-8-sig")
    m = json.loads((tmp_path / "out" / "allocation_manifest.json").read_text(encoding="utf-8"))
    assert t["allocated_yuan"].sum() == fund and m["totals"]["allocated_yuan"] == fund
    assert t["town_code"].tolist() == ids and (t["allocated_yuan"] >= 100_000).all()
    assert t.loc[0, "allocated_yuan"] >= 20_000_000
    for c in ("town_name", "gep_r", "score_gep_r", "gep_r_per_km2", "gdp_per_capita_yuan", "composite_score",
              "share", "amount_unrounded_yuan", "at_floor", "at_cap"):
        assert c in t.columns, c
    assert np.allclose(t["gep_r"], town["gep_r_yuan"])
    assert [i["name"] for i in m["rule"]["indicators"]] == ["gep_r_per_km2", "gdp_per_capita_yuan", "gep_r"]
    assert np.allclose([i["weight"] for i in m["rule"]["indicators"]], [0.25, 0.25, 0.5])
    assert m["inputs"]["source"]["kind"] == "run" and len(m["inputs"]["unit_limits"]["sha256"]) == 64

    r = cli.invoke(app, ["allocate", str(sample_run), "--layer", "township", "--fund", "1000000", "--preset",
                         "vertical", "-o", str(tmp_path / "v")])
    assert r.exit_code == 0, r.output
    v = pd.read_csv(tmp_path / "v" / "allocation_township.csv", encoding="utf-8-sig")
    assert v["allocated_yuan"].sum() == 1_000_000
    assert np.allclose(v["share"], town["gep_yuan"] / town["gep_yuan"].sum())
    r = cli.invoke(app, ["allocate", str(sample_run), "--layer", "township", "--fund", "1000.5", "--preset",
                         "vertical", "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "not a whole number of yuan" in r.output


@pytest.mark.parametrize("what", ["config", "rule", "targets"])
def test_one_yaml_reader_for_configs_rules_and_targets(tmp_path, what):
    """config.load_config, allocation.load_rule and assess.load_targets read YAML through one helper: the same
    messages for a missing file and a syntax error."""
    from gep_raster.analysis.allocation import load_rule
    from gep_raster.analysis.assess import load_targets
    from gep_raster.config import load_config
    from gep_raster.errors import ConfigError

    read = {"config": load_config, "rule": load_rule, "targets": load_targets}[what]
    with pytest.raises(ConfigError, match=f"^{what} file not found: .*nope.yaml"):
        read(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\nb: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        read(bad)
