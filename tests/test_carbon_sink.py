"""Forest carbon sink per parcel (``gep carbon-sink``): remote-sensing and inventory figures, by hand.

Synthetic runs: a grid of 8 rows x 10 columns of 30 m pixels (900 m2 = 0.09 ha), EPSG:32650, origin
x0 = 500000, y1 = 3000000; pixel (row r, col c) spans x0 + 30c .. x0 + 30(c + 1), y1 - 30(r + 1) .. y1 - 30r.
Carbon rasters (t CO2/a per pixel):

* run 2024: v = 1 + 0.25 c (exact in float32), pixel (5, 9) NaN;
* run 2026: v = 3 everywhere.

Parcels (on the pixel lattice, so the exact-coverage sums are hand sums):

* P1: columns 2-4, rows 1-2 (6 px, 0.54 ha): S_2024 = 2 x (1.5 + 1.75 + 2.0) = 10.5; S_2026 = 6 x 3 = 18;
* P2: columns 5-6.5 (column 6 half covered), rows 1-2: S_2024 = 2 x 2.25 + 2 x 0.5 x 2.5 = 7.0;
  S_2026 = 2 x 3 + 2 x 0.5 x 3 = 9.0;
* P3: columns 8-12, rows 5-6 (10 px, 0.9 ha; only columns 8-9 on the grid: 0.36 ha): S_2024 = 3.0 + 3.0 + 3.25
  = 9.25 (pixel (5, 9) NaN: valid 0.27 ha); S_2026 = 4 x 3 = 12.

Interpolated 2025: P1 (10.5 + 18)/2 = 14.25; P2 (7 + 9)/2 = 8; P3 (9.25 + 12)/2 = 10.625.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import write_raster
from gep_raster.analysis.carbon_sink import (CO2_PER_C, carbon_sink, inventory_sink, load_factors, read_inventory,
                                             resolve_period, year_weights)
from gep_raster.errors import ConfigError, GridMismatchError, InputError, TableError, VectorError

X0, Y1, PX, H, W = 500000.0, 3000000.0, 30.0, 8, 10
TEST_FACTORS = """forest_type,name_zh,wood_density_t_m3,bef,root_shoot,carbon_fraction,source,evidence
test_a,甲,0.5,1.5,0.2,0.5,round test numbers,EX
test_b,乙,0.4,1.25,0.25,0.5,round test numbers,EX
"""


def box(c0, c1, r0, r1):
    """Polygon of columns c0..c1 and rows r0..r1 (pixel edges; floats allowed)."""
    import shapely

    return shapely.box(X0 + PX * c0, Y1 - PX * r1, X0 + PX * c1, Y1 - PX * r0)


def make_run(folder: Path, year: int, carbon, *, x0: float = X0, method: str = "nep", clip: bool = False) -> Path:
    """A minimal finished run folder that :func:`gep_raster.analysis.change.load_run` accepts."""
    from affine import Affine

    (folder / "rasters" / "physical").mkdir(parents=True)
    tr = Affine(PX, 0, x0, 0, -PX, Y1)
    write_raster(folder / "rasters" / "gep_r_yuan.tif", np.zeros((H, W), np.float32), transform=tr, nodata=np.nan)
    outputs = [{"path": "rasters/gep_r_yuan.tif", "service": "gep_r", "kind": "gep_r", "unit": "yuan/a per pixel"}]
    if carbon is not None:
        write_raster(folder / "rasters" / "physical" / "carbon_sequestration_tco2.tif", np.asarray(carbon, np.float32),
                     transform=tr, nodata=np.nan)
        outputs.append({"path": "rasters/physical/carbon_sequestration_tco2.tif", "service": "carbon_sequestration",
                        "kind": "physical", "unit": "t CO2/a per pixel"})
    m = {"run_name": f"syn{year}", "accounting_year": year, "run_hash": f"hash{year}",
         "grid": {"crs": "EPSG:32650", "transform": [PX, 0.0, x0, 0.0, -PX, Y1], "width": W, "height": H},
         "outputs": outputs,
         "config": {"inputs": {"carbon": {"method": method}},
                    "services": {"carbon_sequestration": {"negative_values": "clip" if clip else "keep"}}}}
    (folder / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    return folder


def carbon_2024():
    v = np.tile(1 + 0.25 * np.arange(W, dtype=np.float32), (H, 1))
    v[5, 9] = np.nan
    return v


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    import geopandas as gpd

    f = tmp_path_factory.mktemp("carbon_sink")
    r24 = make_run(f / "run2024", 2024, carbon_2024())
    r26 = make_run(f / "run2026", 2026, np.full((H, W), 3.0, np.float32))
    gdf = gpd.GeoDataFrame({"pid": ["P1", "P2", "P3"], "pname": ["一号", "二号", "三号"]},
                           geometry=[box(2, 5, 1, 3), box(5, 6.5, 1, 3), box(8, 13, 5, 7)], crs="EPSG:32650")
    gdf.to_file(f / "parcels.gpkg")
    (f / "factors.csv").write_text(TEST_FACTORS, encoding="utf-8")
    pd.DataFrame({"pid": ["P1", "P2", "P2"], "forest_type": ["test_a", "test_a", "test_b"],
                  "area_ha": [0.54, 0.1, 0.08], "volume_start_m3_ha": [100, 50, 200],
                  "volume_end_m3_ha": [120, 60, 190], "start_year": [2024] * 3,
                  "end_year": [2026] * 3}).to_csv(f / "inventory.csv", index=False)
    return {"f": f, "r24": r24, "r26": r26, "parcels": f / "parcels.gpkg", "factors": f / "factors.csv",
            "inventory": f / "inventory.csv"}


def row(tab, pid):
    return tab.set_index("pid").loc[pid]


# ======================================================================================
# period and weights
# ======================================================================================
def test_year_weights_interpolate_and_extrapolate():
    w = year_weights([2024, 2028], 2023, 2030)
    assert [x["year"] for x in w] == list(range(2023, 2030))
    assert [x["source"] for x in w] == ["extrapolated", "run", "interpolated", "interpolated", "interpolated", "run",
                                        "extrapolated"]
    assert w[0]["weights"] == {2024: 1.0} and w[-1]["weights"] == {2028: 1.0}
    assert w[2]["weights"] == pytest.approx({2024: 0.75, 2028: 0.25})
    assert w[3]["weights"] == pytest.approx({2024: 0.5, 2028: 0.5})
    assert all(sum(x["weights"].values()) == pytest.approx(1.0) for x in w)


def test_period_defaults_and_errors():
    assert resolve_period([2024, 2026])[:2] == (2024, 2027)  # every run's year inside
    assert resolve_period([2024])[:2] == (2024, 2025)
    inv = pd.DataFrame({"start_year": [2020, 2020], "end_year": [2025, 2026]})
    s, e, origin = resolve_period([2024], inventory=inv)
    assert (s, e) == (2020, 2025) and origin == {"start": "inventory", "end": "last run year + 1"}
    assert resolve_period([2024], 2010, 2012)[:2] == (2010, 2012)
    with pytest.raises(ConfigError, match=r"end \(2024, argument\) must be after start \(2024, argument\)"):
        resolve_period([2024], 2024, 2024)
    with pytest.raises(ConfigError, match="end .2020, argument. must be after start .2024, first run year"):
        resolve_period([2024, 2026], end=2020)
    with pytest.raises(ConfigError, match="not a whole year"):
        resolve_period([2024], 2024.5, 2026)


# ======================================================================================
# remote-sensing figure
# ======================================================================================
def test_two_runs_interpolated_by_hand(case, tmp_path):
    m = carbon_sink([case["r26"], case["r24"]], case["parcels"], "pid", tmp_path, name_field="pname")
    tab = m["table"]
    assert m["period"]["start"] == 2024 and m["period"]["end"] == 2027 and m["period"]["n_years"] == 3
    assert [y["source"] for y in m["years"]] == ["run", "interpolated", "run"]
    p1, p2, p3 = row(tab, "P1"), row(tab, "P2"), row(tab, "P3")
    assert (p1["flux_2024_tco2"], p1["flux_2025_tco2"], p1["flux_2026_tco2"]) == pytest.approx((10.5, 14.25, 18.0))
    assert p1["rs_sink_tco2e"] == pytest.approx(42.75) and p1["rs_mean_tco2e_per_year"] == pytest.approx(14.25)
    assert p2["rs_sink_tco2e"] == pytest.approx(7.0 + 8.0 + 9.0)           # half-covered column by its fraction
    assert p3["rs_sink_tco2e"] == pytest.approx(9.25 + 10.625 + 12.0)
    assert p1["area_ha"] == pytest.approx(0.54) and p1["grid_area_ha"] == pytest.approx(0.54)
    assert p2["area_ha"] == pytest.approx(0.27) and p3["area_ha"] == pytest.approx(0.9)
    assert p3["grid_area_ha"] == pytest.approx(0.36) and p3["valid_area_ha"] == pytest.approx(0.27)
    assert p1["flags"] == "" and p1["pname"] == "一号"
    assert set(p3["flags"].split(";")) == {"partly_outside_grid", "nodata_pixels", "valid_area_differs_between_runs"}
    assert "inventory_sink_tco2e" not in tab.columns
    runs = {r["accounting_year"]: r for r in m["runs"]}
    assert runs[2024]["total_weight_years"] == pytest.approx(1.5) and runs[2026]["total_weight_years"] == 1.5
    assert len(runs[2024]["carbon_raster_sha256"]) == 64 and runs[2024]["run_hash"] == "hash2024"
    assert m["totals"]["rs_sink_tco2e"] == pytest.approx(42.75 + 24.0 + 31.875)
    # files: CSV, GPKG with geometry, manifest
    csv = pd.read_csv(tmp_path / "carbon_sink_parcels.csv", dtype={"pid": str}, encoding="utf-8-sig")
    assert csv["rs_sink_tco2e"].tolist() == pytest.approx(tab["rs_sink_tco2e"].tolist())
    import geopandas as gpd

    g = gpd.read_file(tmp_path / "carbon_sink_parcels.gpkg")
    assert len(g) == 3 and g.crs.to_epsg() == 32650 and g.geometry.area.iloc[0] == pytest.approx(5400.0)
    disk = json.loads((tmp_path / "carbon_sink_manifest.json").read_text(encoding="utf-8"))
    assert disk["years"][1]["weights"] == {"2024": 0.5, "2026": 0.5} and "table" not in disk
    assert disk["methodology"]["read"] and disk["methodology"]["not_read"]
    assert len(disk["parcels"]["sha256"]) == 64 and disk["outputs"][0] == "carbon_sink_parcels.csv"


def test_explicit_period_with_extrapolation(case, tmp_path):
    m = carbon_sink([case["r24"], case["r26"]], case["parcels"], "pid", tmp_path, start=2022, end=2029)
    p1 = row(m["table"], "P1")
    assert p1["rs_sink_tco2e"] == pytest.approx(3 * 10.5 + 14.25 + 3 * 18.0)   # 2022-2024, 2025, 2026-2028
    assert "rs_extrapolated_years" in p1["flags"]
    assert any("nearest run's flux held constant" in a and "2022" in a for a in m["assumptions"])
    m = carbon_sink([case["r24"], case["r26"]], case["parcels"], "pid", tmp_path, start=2024, end=2026)
    assert row(m["table"], "P1")["rs_sink_tco2e"] == pytest.approx(10.5 + 14.25)


def test_single_run_flux_times_years_flagged(case, tmp_path):
    m = carbon_sink(case["r26"], case["parcels"], "pid", tmp_path, start=2020, end=2025)
    p1 = row(m["table"], "P1")
    assert p1["rs_sink_tco2e"] == pytest.approx(5 * 18.0)
    assert "rs_single_run_constant_flux" in p1["flags"]
    assert any("one run only" in a and "RS = n x flux" in a for a in m["assumptions"])


def test_method_warnings(case, tmp_path):
    r = make_run(tmp_path / "npp", 2030, np.ones((H, W)), method="npp", clip=True)
    m = carbon_sink([case["r24"], r], case["parcels"], "pid", tmp_path / "o")
    w = " | ".join(m["warnings"])
    assert "gross flux" in w and "clipped to 0" in w and "different carbon methods" in w


# ======================================================================================
# inventory figure, both side by side
# ======================================================================================
def test_inventory_by_hand_side_by_side(case, tmp_path):
    m = carbon_sink([case["r24"], case["r26"]], case["parcels"], "pid", tmp_path, inventory=case["inventory"],
                    factors=case["factors"])
    tab = m["table"]
    assert (m["period"]["start"], m["period"]["end"]) == (2024, 2026)     # the inventory's common span
    assert m["period"]["origin"] == {"start": "inventory", "end": "inventory"}
    p1, p2, p3 = row(tab, "P1"), row(tab, "P2"), row(tab, "P3")
    # P1: dV = (120 - 100) m3/ha x 0.54 ha = 10.8 m3; dC = 10.8 x 0.5 x 1.5 x 1.2 x 0.5 x 44/12 = 17.82 t CO2e
    assert p1["inventory_delta_volume_m3"] == pytest.approx(10.8)
    assert p1["inventory_sink_tco2e"] == pytest.approx(17.82)
    assert p1["inventory_sink_period_tco2e"] == pytest.approx(17.82)
    # remote sensing 2024 + 2025 = 10.5 + 14.25 = 24.75, side by side
    assert p1["rs_sink_tco2e"] == pytest.approx(24.75)
    assert p1["difference_tco2e"] == pytest.approx(24.75 - 17.82)
    assert p1["ratio_rs_to_inventory"] == pytest.approx(24.75 / 17.82)
    assert p1["flags"] == "" and p1["inventory_forest_types"] == "test_a"
    # P2: test_a 10 m3/ha x 0.1 ha = 1.0 m3 -> 1.0 x 0.45 x 44/12 = 1.65; test_b -10 x 0.08 = -0.8 m3 ->
    # -0.8 x 0.4 x 1.25 x 1.25 x 0.5 x 44/12 = -0.25 x 44/12 = -0.916667; sum 0.733333
    assert p2["inventory_sink_tco2e"] == pytest.approx(1.65 - 0.25 * 44 / 12)
    assert p2["inventory_forest_types"] == "test_a+test_b" and p2["inventory_area_ha"] == pytest.approx(0.18)
    assert p2["rs_sink_tco2e"] == pytest.approx(15.0) and "methods_differ_over_50pct" in p2["flags"]
    assert np.isnan(p3["inventory_sink_tco2e"]) and np.isnan(p3["ratio_rs_to_inventory"])
    assert "no_inventory" in p3["flags"]
    used = m["inventory"]["factors"]["used"]
    assert used["test_a"] == {"name_zh": "甲", "wood_density_t_m3": 0.5, "bef": 1.5, "root_shoot": 0.2,
                              "carbon_fraction": 0.5, "source": "round test numbers", "evidence": "EX"}
    assert len(m["inventory"]["sha256"]) == 64 and len(m["inventory"]["factors"]["sha256"]) == 64
    csv = pd.read_csv(tmp_path / "carbon_sink_parcels.csv", dtype={"pid": str}, encoding="utf-8-sig")
    assert {"rs_sink_tco2e", "inventory_sink_period_tco2e", "difference_tco2e", "ratio_rs_to_inventory",
            "flags"} <= set(csv.columns)


def test_default_factors_chinese_fir_by_hand(case, tmp_path):
    inv = tmp_path / "inv.csv"
    inv.write_text("pid,forest_type,area_ha,volume_start_m3_ha,volume_end_m3_ha,start_year,end_year\n"
                   "P1,chinese_fir,0.54,100,120,2024,2026\n", encoding="utf-8")
    m = carbon_sink([case["r24"], case["r26"]], case["parcels"], "pid", tmp_path / "o", inventory=inv)
    # the shipped 杉木 row: D 0.307, BEF 1.634, R 0.246, CF 0.510 (all [U])
    want = 10.8 * 0.307 * 1.634 * (1 + 0.246) * 0.510 * 44 / 12
    assert row(m["table"], "P1")["inventory_sink_tco2e"] == pytest.approx(want)
    assert m["inventory"]["factors"]["source"].startswith("default")
    assert m["inventory"]["factors"]["used"]["chinese_fir"]["evidence"] == "U"
    assert any("marked [U]/[V2]" in a for a in m["assumptions"])


def test_shipped_factors_table():
    f, source = load_factors()
    assert source == "default: gep_raster/data/forest_carbon_factors.csv"
    assert {"chinese_fir", "masson_pine"} <= set(f.index)
    assert set(f["evidence"]) <= {"V", "V-calc", "V2", "U"} and (f["source"].str.len() > 20).all()
    assert f.loc["masson_pine", ["wood_density_t_m3", "bef", "root_shoot", "carbon_fraction"]].tolist() == \
        [0.380, 1.472, 0.187, 0.460]


def test_inventory_span_scaled_to_period(case, tmp_path):
    factors, _ = load_factors(case["factors"])
    inv = tmp_path / "inv.csv"
    inv.write_text("pid,forest_type,area_ha,volume_start_m3_ha,volume_end_m3_ha,start_year,end_year\n"
                   "P1,test_a,1,100,150,2020,2030\n", encoding="utf-8")
    rows = inventory_sink(read_inventory(inv, "pid", factors), factors, 2)
    assert rows["sink_tco2e"].iloc[0] == pytest.approx(50 * 0.45 * CO2_PER_C)
    assert rows["sink_period_tco2e"].iloc[0] == pytest.approx(50 * 0.45 * CO2_PER_C * 2 / 10)
    m = carbon_sink([case["r24"], case["r26"]], case["parcels"], "pid", tmp_path / "o", inventory=inv,
                    factors=case["factors"], start=2024, end=2026)
    p1 = row(m["table"], "P1")
    assert p1["inventory_sink_period_tco2e"] == pytest.approx(50 * 0.45 * CO2_PER_C / 5)
    assert {"inventory_span_scaled", "inventory_years_differ_from_period",
            "inventory_area_exceeds_parcel"} <= set(p1["flags"].split(";"))


# ======================================================================================
# errors
# ======================================================================================
def test_run_errors(case, tmp_path):
    other = make_run(tmp_path / "shifted", 2025, np.ones((H, W)), x0=X0 + 300)
    with pytest.raises(GridMismatchError, match="not on the same grid"):
        carbon_sink([case["r24"], other], case["parcels"], "pid", tmp_path / "o")
    nocarbon = make_run(tmp_path / "nocarbon", 2025, None)
    with pytest.raises(InputError, match=r"nocarbon.*manifest.json: the run has no carbon raster"):
        carbon_sink([case["r24"], nocarbon], case["parcels"], "pid", tmp_path / "o")
    with pytest.raises(ConfigError, match=r"several runs of accounting year\(s\) \[2024\]"):
        carbon_sink([case["r24"], case["r24"]], case["parcels"], "pid", tmp_path / "o")
    with pytest.raises(InputError, match="no manifest.json"):
        carbon_sink([tmp_path], case["parcels"], "pid", tmp_path / "o")
    with pytest.raises(ConfigError, match="end .2024, argument. must be after start .2024"):
        carbon_sink(case["r24"], case["parcels"], "pid", tmp_path / "o", start=2024, end=2024)


def test_parcel_errors(case, tmp_path):
    import geopandas as gpd
    import shapely

    with pytest.raises(VectorError, match=r"--parcels: file not found: .*missing.gpkg"):
        carbon_sink(case["r24"], tmp_path / "missing.gpkg", "pid", tmp_path / "o")
    with pytest.raises(VectorError, match=r"id field 'nope' not found in .*parcels.gpkg"):
        carbon_sink(case["r24"], case["parcels"], "nope", tmp_path / "o")
    with pytest.raises(VectorError, match=r"name field 'nope' not found in .*parcels.gpkg"):
        carbon_sink(case["r24"], case["parcels"], "pid", tmp_path / "o", name_field="nope")
    pts = tmp_path / "points.gpkg"
    gpd.GeoDataFrame({"pid": ["a"]}, geometry=[shapely.Point(X0 + 45, Y1 - 45)], crs="EPSG:32650").to_file(pts)
    with pytest.raises(VectorError, match=r"points.gpkg holds \['Point'\] geometries"):
        carbon_sink(case["r24"], pts, "pid", tmp_path / "o")


def test_inventory_and_factor_errors(case, tmp_path):
    factors, _ = load_factors(case["factors"])
    good = pd.read_csv(case["inventory"], dtype=str)
    bad = tmp_path / "bad.csv"
    good.drop(columns=["volume_end_m3_ha"]).to_csv(bad, index=False)
    with pytest.raises(TableError, match=r"inventory .*bad.csv: column\(s\) \['volume_end_m3_ha'\] missing"):
        read_inventory(bad, "pid", factors)
    good.assign(forest_type=["test_a", "bamboo", "test_b"]).to_csv(bad, index=False)
    with pytest.raises(TableError, match=r"bad.csv: column 'forest_type' has value\(s\) \['bamboo'\] \(line\(s\) \[3\]\) "
                                         r"not in the factors table"):
        carbon_sink(case["r24"], case["parcels"], "pid", tmp_path / "o", inventory=bad, factors=case["factors"])
    good.assign(end_year=["2024", "2026", "2026"]).to_csv(bad, index=False)
    with pytest.raises(TableError, match=r"end_year must be after start_year \(line\(s\) \[2\]\)"):
        read_inventory(bad, "pid", factors)
    good.assign(area_ha=["0.5", "x", "1"]).to_csv(bad, index=False)
    with pytest.raises(TableError, match=r"column 'area_ha' is empty or not a number on line\(s\) \[3\]"):
        read_inventory(bad, "pid", factors)
    with pytest.raises(TableError, match=r"column\(s\) \['parcel'\] missing"):
        read_inventory(case["inventory"], "parcel", factors)
    with pytest.raises(TableError, match="inventory: file not found"):
        carbon_sink(case["r24"], case["parcels"], "pid", tmp_path / "o", inventory=tmp_path / "none.csv")
    fbad = tmp_path / "f.csv"
    fbad.write_text(TEST_FACTORS.replace(",bef,", ",befx,"), encoding="utf-8")
    with pytest.raises(TableError, match=r"factors .*f.csv: column\(s\) \['bef'\] missing"):
        load_factors(fbad)
    fbad.write_text(TEST_FACTORS.replace("test_a,甲,0.5,", "test_a,甲,500,"), encoding="utf-8")
    with pytest.raises(TableError, match=r"column 'wood_density_t_m3' outside the plausible range"):
        load_factors(fbad)
    fbad.write_text(TEST_FACTORS.replace(",EX\ntest_b", ",maybe\ntest_b"), encoding="utf-8")
    with pytest.raises(TableError, match=r"line 2, column 'evidence': evidence mark 'maybe'"):
        load_factors(fbad)


# ======================================================================================
# CLI
# ======================================================================================
def test_cli(case, tmp_path):
    import typer
    from typer.testing import CliRunner

    from gep_raster.analysis import carbon_sink as mod

    app = typer.Typer()

    @app.callback()
    def main():
        """Test app."""

    mod.register(app)
    cli = CliRunner()
    args = ["carbon-sink", str(case["r24"]), str(case["r26"]), "--parcels", str(case["parcels"]), "--id-field", "pid",
            "-o", str(tmp_path / "o")]
    r = cli.invoke(app, args + ["--inventory", str(case["inventory"]), "--factors", str(case["factors"]),
                                "--name-field", "pname"])
    assert r.exit_code == 0, r.output
    assert "carbon sink 2024-2025 (2 a), 3 parcels: remote sensing" in r.output and "inventory" in r.output
    assert (tmp_path / "o" / "carbon_sink_parcels.gpkg").exists()
    r = cli.invoke(app, args + ["--start", "2026", "--end", "2024"])
    assert r.exit_code == 2 and "must be after start" in r.output
    r = cli.invoke(app, args[:-2] + ["--id-field", "zz", "-o", str(tmp_path / "o")])
    assert r.exit_code == 1 and "id field 'zz' not found" in r.output
