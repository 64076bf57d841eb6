"""Every user mistake gets a clear message that names the key/file/column and the problem."""
from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from gep_raster.cli import app
from gep_raster.config import load_config
from gep_raster.errors import ConfigError, ValidationFailed
from gep_raster.pipeline import run
from gep_raster.validation import validate

from conftest import write_raster


def edit(cfg_path, old, new, name="edited.yaml"):
    text = cfg_path.read_text()
    assert old in text, old
    p = cfg_path.parent / name
    p.write_text(text.replace(old, new))
    return p


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_syntax_error(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_unknown_key_is_named(tiny):
    p = edit(tiny, "name: tiny", "name: tiny\nouptut_dir: x")
    with pytest.raises(ConfigError, match=r"ouptut_dir: unknown key"):
        load_config(p)


def test_missing_required_key_is_named(tiny):
    p = edit(tiny, "legend: {path: legend.csv}", "")
    with pytest.raises(ConfigError, match=r"legend: required key is missing"):
        load_config(p)


def test_bad_value_is_named(tiny):
    p = edit(tiny, "chunk_size: 64", "chunk_size: 3")
    with pytest.raises(ConfigError, match=r"output.chunk_size: .*greater than or equal to 64"):
        load_config(p)


def test_precipitation_needs_path_or_monthly(tiny):
    p = edit(tiny, "precipitation: {path: p.tif}", "precipitation: {scale: 1}")
    with pytest.raises(ConfigError, match=r"inputs.precipitation: give exactly one of 'path'"):
        load_config(p)


def test_water_conservation_needs_et(tiny):
    p = edit(tiny, "et: {path: et.tif}", "")
    with pytest.raises(ConfigError, match="neither inputs.et nor inputs.et0"):
        load_config(p)


def test_input_file_not_found_names_key(tiny):
    p = edit(tiny, "dem: {path: dem.tif}", "dem: {path: missing_dem.tif}")
    rep = validate(load_config(p))
    assert any("inputs.dem.path: file not found" in m and "missing_dem.tif" in m for m in rep.problems)


def test_monthly_needs_twelve_files(tiny):
    p = edit(tiny, "precipitation: {path: p.tif}", "precipitation: {monthly: [p.tif, p.tif]}")
    rep = validate(load_config(p))
    assert any("inputs.precipitation.monthly: expected 12 monthly rasters, found 2" in m for m in rep.problems)


def test_legend_missing_column_names_file_and_column(tiny):
    leg = tiny.parent / "legend.csv"
    leg.write_text(leg.read_text().replace("runoff_coef", "runof_coef"))
    with pytest.raises(ValidationFailed, match=r"legend .*legend.csv: column 'runoff_coef' is missing"):
        run(load_config(tiny), progress=False)


def test_legend_value_out_of_range(tiny):
    leg = tiny.parent / "legend.csv"
    leg.write_text(leg.read_text().replace("1,broadleaf forest,forest,0.0267,0.006", "1,broadleaf forest,forest,2.67,0.006"))
    with pytest.raises(ValidationFailed, match=r"column 'runoff_coef' \(fraction\) must lie in \[0.0, 1.0\]; class code\(s\) \[1\]"):
        run(load_config(tiny), progress=False)


def test_legend_unknown_ecosystem(tiny):
    leg = tiny.parent / "legend.csv"
    leg.write_text(leg.read_text().replace(",paddy,cropland,", ",paddy,ricefield,"))
    with pytest.raises(ValidationFailed, match="unknown type.*ricefield"):
        run(load_config(tiny), progress=False)


def test_class_present_but_not_in_legend(tiny):
    leg = tiny.parent / "legend.csv"
    leg.write_text("\n".join(l for l in leg.read_text().splitlines() if not l.startswith("4,")) + "\n")
    with pytest.raises(ValidationFailed, match=r"class code\(s\) \[4\] occur in inputs.land_cover \(4: \d+ px\) but have no legend row"):
        run(load_config(tiny), progress=False)
    rep = validate(load_config(tiny))
    assert any("class code(s) [4]" in m for m in rep.problems)


def test_layer_missing_id_field(tiny):
    p = edit(tiny, "id_field: town_code", "id_field: town_id")
    with pytest.raises(ValidationFailed, match=r"layers.township.id_field: field 'town_id' not found in .*towns.gpkg"):
        run(load_config(p), progress=False)


def test_polygons_outside_rasters(tiny, tmp_path):
    import geopandas as gpd
    import shapely

    gpd.GeoDataFrame({"u": ["far"], "n": ["far away"]}, geometry=[shapely.box(0, 0, 10, 10)],
                     crs="EPSG:32650").to_file(tiny.parent / "far.gpkg")
    p = edit(tiny, "path: units.gpkg, id_field: unit_id, name_field: unit_name",
             "path: far.gpkg, id_field: u, name_field: n")
    rep = validate(load_config(p))
    assert any("layers.special_units: no polygon of" in m and "overlaps the rasters" in m for m in rep.problems)


def test_raster_without_crs(tiny):
    write_raster(tiny.parent / "nocrs.tif", np.ones((40, 50), np.float32), crs=None, nodata=-9999.0)
    p = edit(tiny, "et: {path: et.tif}", "et: {path: nocrs.tif}")
    rep = validate(load_config(p))
    assert any("inputs.et.path" in m and "has no CRS" in m for m in rep.problems)


def test_implausible_values_flagged(tiny):
    # precipitation given in 0.01 mm (scaled integers) without `scale`
    write_raster(tiny.parent / "p_scaled.tif", np.full((40, 50), 150000.0, np.float32), nodata=-9999.0)
    p = edit(tiny, "precipitation: {path: p.tif}", "precipitation: {path: p_scaled.tif}")
    rep = validate(load_config(p))
    assert any("inputs.precipitation.path" in m and "outside the plausible range 0..12000 mm/a" in m
               for m in rep.problems)


def test_geographic_grid_refused_for_soil_retention(tiny):
    from affine import Affine

    write_raster(tiny.parent / "lc_geo.tif", np.ones((40, 50), np.uint8), crs="EPSG:4326",
                 transform=Affine(0.0003, 0, 117.0, 0, -0.0003, 27.0), nodata=255)
    p = edit(tiny, "land_cover: {path: lc.tif}", "land_cover: {path: lc_geo.tif}")
    rep = validate(load_config(p))
    assert any("soil retention needs a projected grid" in m for m in rep.problems)


def test_validate_reports_all_problems_at_once(tiny):
    p = edit(tiny, "dem: {path: dem.tif}", "dem: {path: nodem.tif}")
    text = p.read_text().replace("id_field: town_code", "id_field: nope")
    p.write_text(text)
    rep = validate(load_config(p))
    assert len(rep.problems) >= 2


def test_price_override_unit_mismatch(tiny):
    p = edit(tiny, "name: tiny", "name: tiny\nprices:\n  overrides:\n    water_conservation.reservoir_cost:\n"
                                 "      {value: 6.11, unit: yuan/t, price_year: 2020, source: test}")
    with pytest.raises(ValidationFailed, match="prices.overrides.water_conservation.reservoir_cost: unit 'yuan/t' differs"):
        run(load_config(p), progress=False)


def test_cli_validate_exit_codes_and_no_traceback(tiny):
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(tiny)])
    assert ok.exit_code == 0, ok.output
    assert "OK" in ok.output
    p = edit(tiny, "dem: {path: dem.tif}", "dem: {path: nodem.tif}")
    bad = runner.invoke(app, ["validate", str(p)])
    assert bad.exit_code == 1
    assert "problem: inputs.dem.path: file not found" in bad.output
    assert "Traceback" not in bad.output
    worse = runner.invoke(app, ["run", str(tiny.parent / "missing.yaml")])
    assert worse.exit_code == 2
    assert "error: config file not found" in worse.output
    assert "Traceback" not in worse.output


def test_validate_checks_statistics_table(tiny):
    (tiny.parent / "stats.csv").write_text(
        "unit_id,account,item,value_yuan,year,source,allocate_to,weight,outside_share\n"
        "330000009,provisioning,agriculture,1000,2024,test,cropland,area,0\n")
    p = edit(tiny, "name: tiny", "name: tiny\neconomic_accounts: {table: stats.csv, layer: township}")
    rep = validate(load_config(p))
    assert any("stats.csv" in m and "330000009" in m for m in rep.problems), rep.problems


def test_validate_scenario_outside_grid(tiny):
    p = edit(tiny, "name: tiny", "name: tiny\nscenario:\n  name: far\n  edits:\n"
                                 "    - {wkt: 'POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))', to_class: 4}")
    rep = validate(load_config(p))
    assert any("scenario 'far': no pixel centre" in m for m in rep.problems), rep.problems


def test_memory_budget_too_small_for_blocks_and_routing(tiny):
    """A 512 MB budget leaves nothing after the 512 MB fixed overhead: validate names the budget for the
    blocks and for flow routing; the run stops with the block-size message."""
    cfg = load_config(tiny, overrides={"processing": {"memory_budget_mb": 512}, "output": {"dir": "out"}})
    cfg.output.chunk_size = None
    rep = validate(cfg)
    text = "\n".join(rep.problems)
    assert "processing.memory_budget_mb = 512 MB cannot hold" in text
    assert "flow routing (d8) of the whole DEM needs about 40 B/px x 2,000 px = 0.00 GiB" in text
    assert "inputs.hydro_units" in text
    with pytest.raises(ValidationFailed, match="memory_budget_mb = 512 MB cannot hold 4 blocks|cannot hold"):
        run(cfg, progress=False, workers=2)


def test_validate_reports_block_size_and_units(tiny):
    import geopandas as gpd
    import shapely

    gpd.GeoDataFrame({"hu": ["A", "B"]}, geometry=[shapely.box(500000, 2998800, 500600, 3000000),
                                                   shapely.box(500600, 2998800, 501500, 3000000)],
                     crs="EPSG:32650").to_file(tiny.parent / "hu.gpkg")
    cfg = load_config(tiny, overrides={"inputs": {"hydro_units": {"path": "hu.gpkg", "id_field": "hu"}}})
    cfg.output.chunk_size = None
    rep = validate(cfg)
    assert not rep.problems, rep.problems
    info = "\n".join(rep.info)
    assert "memory budget 2048 MB: blocks of 512 x 512 px" in info  # the 40 x 50 grid needs one 512 block
    # unit B: 900 m x 1200 m = 40 rows x 30 columns = 1,200 px (the larger of the two)
    assert "2 units, largest 'B' 40 x 30 px" in info
