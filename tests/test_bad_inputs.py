"""Hostile inputs: `gep run` refuses every one with a message naming the file/key and the problem, and leaves the
output folder of an earlier good run exactly as it was (nothing computed from garbage, nothing lost).

Each case starts from a copy of one finished run of the tiny dataset (tests/conftest.py::make_tiny), breaks one
thing, runs ``gep run`` through the CLI and checks: exit code ≠ 0, the key words of the message, no traceback or
GDAL log line in the output, and the sha256 of every file under the output folder unchanged (no file added).
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from typer.testing import CliRunner

from gep_raster.cli import app

from conftest import make_tiny, write_raster

H, W = 40, 50
T30 = Affine(30, 0, 500000, 0, -30, 3000000)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The tiny run folder with a finished good run in out/."""
    folder = tmp_path_factory.mktemp("tiny_template")
    cfg = make_tiny(folder)
    res = CliRunner().invoke(app, ["run", str(cfg), "--quiet"])
    assert res.exit_code == 0, res.output
    return folder


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _edit(cfg: Path, old: str, new: str) -> Path:
    text = cfg.read_text()
    assert old in text, old
    cfg.write_text(text.replace(old, new))
    return cfg


def _read(folder, name):
    with rasterio.open(folder / name) as ds:
        return ds.read(1)


def _write_layer(folder, name, geoms, ids, crs="EPSG:32650", id_field="town_code"):
    import geopandas as gpd

    gpd.GeoDataFrame({id_field: ids, "town_name": [f"t{i}" for i in range(len(ids))]}, geometry=geoms,
                     crs=crs).to_file(folder / name)


def _box(c0, r0, c1, r1):
    import shapely

    return shapely.box(500000 + c0 * 30, 3000000 - r1 * 30, 500000 + c1 * 30, 3000000 - r0 * 30)


# ----------------------------------------------------------------------------------------------- the cases
def missing_land_cover(d, cfg):
    return _edit(cfg, "land_cover: {path: lc.tif}", "land_cover: {path: missing.tif}")


def empty_dem_file(d, cfg):
    (d / "dem.tif").write_bytes(b"")
    return cfg


def truncated_dem(d, cfg):
    b = (d / "dem.tif").read_bytes()
    (d / "dem.tif").write_bytes(b[: len(b) // 2])
    return cfg


def precipitation_not_a_raster(d, cfg):
    (d / "p.tif").write_text("this is not a GeoTIFF\n")
    return cfg


def _tiles(d, cfg, second_crs="EPSG:32650", second_transform=None):
    dem = _read(d, "dem.tif")
    (d / "tiles").mkdir()
    write_raster(d / "tiles/a.tif", dem[:, :25], nodata=-9999.0)
    write_raster(d / "tiles/b.tif", dem[:, 25:], crs=second_crs, nodata=-9999.0,
                 transform=second_transform or Affine(30, 0, 500000 + 25 * 30, 0, -30, 3000000))
    return _edit(cfg, "dem: {path: dem.tif}", "dem: {path: tiles/}")


def dem_tiles_mixed_crs(d, cfg):
    return _tiles(d, cfg, second_crs="EPSG:32651")


def dem_tile_with_fill_and_no_nodata(d, cfg):
    dem = _read(d, "dem.tif")
    (d / "tiles").mkdir()
    write_raster(d / "tiles/a.tif", dem[:, :25], nodata=-9999.0)
    b = dem[:, 25:].copy()
    b[:, -3:] = -32768.0  # fill value, no nodata tag on this tile
    write_raster(d / "tiles/b.tif", b, transform=Affine(30, 0, 500000 + 25 * 30, 0, -30, 3000000))
    return _edit(cfg, "dem: {path: dem.tif}", "dem: {path: tiles/}")


def dem_tiles_conflicting_overlap(d, cfg):
    dem = _read(d, "dem.tif")
    (d / "tiles").mkdir()
    write_raster(d / "tiles/a.tif", dem[:, :30], nodata=-9999.0)
    write_raster(d / "tiles/b.tif", dem[:, 20:] + 100, nodata=-9999.0,  # overlaps a by 10 columns, 100 m higher
                 transform=Affine(30, 0, 500000 + 20 * 30, 0, -30, 3000000))
    return _edit(cfg, "dem: {path: dem.tif}", "dem: {path: tiles/}")


def land_cover_in_degrees_with_soil(d, cfg):
    lc = _read(d, "lc.tif")
    write_raster(d / "lc.tif", lc, crs="EPSG:4326", transform=Affine(0.0003, 0, 117.0, 0, -0.0003, 27.0),
                 nodata=255)
    for name in ("dem.tif", "p.tif", "et.tif"):
        a = _read(d, name)
        write_raster(d / name, a, crs="EPSG:4326", transform=Affine(0.0003, 0, 117.0, 0, -0.0003, 27.0),
                     nodata=-9999.0)
    return cfg


def dem_fill_without_nodata_tag(d, cfg):
    dem = _read(d, "dem.tif")
    dem[:5, :5] = -9999.0
    write_raster(d / "dem.tif", dem)  # no nodata tag
    return cfg


def et_fill_without_nodata_tag(d, cfg):
    et = _read(d, "et.tif")
    et[10:20, 10:20] = -9999.0
    write_raster(d / "et.tif", et)
    return cfg


def et_only_nodata(d, cfg):
    write_raster(d / "et.tif", np.full((H, W), -9999.0, np.float32), nodata=-9999.0)
    return cfg


def precipitation_all_nan(d, cfg):
    write_raster(d / "p.tif", np.full((H, W), np.nan, np.float32), nodata=np.nan)
    return cfg


def dem_only_nodata(d, cfg):
    write_raster(d / "dem.tif", np.full((H, W), -9999.0, np.float32), nodata=-9999.0)
    return cfg


def precipitation_negative(d, cfg):
    write_raster(d / "p.tif", _read(d, "p.tif") - 2000.0, nodata=-9999.0)
    return cfg


def precipitation_scaled_x10(d, cfg):
    write_raster(d / "p.tif", _read(d, "p.tif") * 10, nodata=-9999.0)
    return cfg


def et_above_precipitation_everywhere(d, cfg):
    write_raster(d / "et.tif", _read(d, "p.tif") + 600.0, nodata=-9999.0)
    return cfg


def monthly_precipitation_11_files(d, cfg):
    p = _read(d, "p.tif")
    for m in range(1, 12):
        write_raster(d / f"pm_{m:02d}.tif", p / 12, nodata=-9999.0)
    return _edit(cfg, "precipitation: {path: p.tif}", "precipitation: {monthly: pm_*.tif}")


def band_beyond_count(d, cfg):
    return _edit(cfg, "dem: {path: dem.tif}", "dem: {path: dem.tif, band: 3}")


def legend_missing_class(d, cfg):
    leg = d / "legend.csv"
    leg.write_text("\n".join(x for x in leg.read_text().splitlines() if not x.startswith("4,")) + "\n")
    return cfg


def legend_missing_column(d, cfg):
    leg = d / "legend.csv"
    leg.write_text(leg.read_text().replace("runoff_coef", "runof_coef"))
    return cfg


def legend_duplicate_code(d, cfg):
    leg = d / "legend.csv"
    lines = leg.read_text().splitlines()
    leg.write_text("\n".join(lines + [lines[2].replace("paddy", "paddy again")]) + "\n")
    return cfg


def legend_non_numeric(d, cfg):
    leg = d / "legend.csv"
    leg.write_text(leg.read_text().replace("2,paddy,cropland,0.10,", "2,paddy,cropland,ten percent,"))
    return cfg


def legend_out_of_range(d, cfg):
    leg = d / "legend.csv"
    leg.write_text(leg.read_text().replace("1,broadleaf forest,forest,0.0267,", "1,broadleaf forest,forest,2.67,"))
    return cfg


def legend_file_missing(d, cfg):
    (d / "legend.csv").unlink()
    return cfg


def price_wrong_unit(d, cfg):
    cfg.write_text(cfg.read_text() + "prices:\n  overrides:\n    water_conservation.reservoir_cost: "
                   "{value: 7.06, unit: yuan/t, price_year: 2010, source: test}\n")
    return cfg


def price_negative(d, cfg):
    cfg.write_text(cfg.read_text() + "prices:\n  overrides:\n    water_conservation.reservoir_cost: "
                   "{value: -7.06, unit: yuan/m3, price_year: 2010, source: test}\n")
    return cfg


def yaml_syntax_error(d, cfg):
    return _edit(cfg, "name: tiny", "name: [tiny")


def unknown_key(d, cfg):
    return _edit(cfg, "output: {dir: out, chunk_size: 64}", "output: {dir: out, chunk_size: 64, compresion: lzw}")


def wrong_type(d, cfg):
    return _edit(cfg, "chunk_size: 64", "chunk_size: big")


def python_tag(d, cfg):
    return _edit(cfg, "name: tiny", f"name: !!python/object/apply:os.system ['touch {d}/PWNED']")


def unset_variable(d, cfg):
    return _edit(cfg, "dem: {path: dem.tif}", "dem: {path: '${GEP_NO_SUCH_VARIABLE_X}/dem.tif'}")


def config_file_missing(d, cfg):
    cfg.unlink()
    return cfg


def polygons_outside_grid(d, cfg):
    import shapely

    far = [shapely.box(900000, 100000, 901000, 101000), shapely.box(901000, 100000, 902000, 101000)]
    _write_layer(d, "towns.gpkg", far, ["330000001", "330000002"])
    return cfg


def layer_without_crs(d, cfg):
    _write_layer(d, "towns.gpkg", [_box(0, 0, 25, 40), _box(25, 0, 50, 40)], ["330000001", "330000002"], crs=None)
    return cfg


def layer_invalid_geometry(d, cfg):
    import shapely

    bowtie = shapely.Polygon([(500000, 3000000), (501500, 2998800), (501500, 3000000), (500000, 2998800)])
    _write_layer(d, "towns.gpkg", [bowtie, _box(25, 0, 50, 40)], ["330000001", "330000002"])
    return cfg


def layer_empty_geometry(d, cfg):
    import shapely

    _write_layer(d, "towns.gpkg", [shapely.Polygon(), _box(25, 0, 50, 40)], ["330000001", "330000002"])
    return cfg


def layer_null_geometry(d, cfg):
    _write_layer(d, "towns.gpkg", [None, _box(25, 0, 50, 40)], ["330000001", "330000002"])
    return cfg


def layer_missing_id_field(d, cfg):
    return _edit(cfg, "id_field: town_code", "id_field: town_id")


def layer_duplicate_ids(d, cfg):
    _write_layer(d, "towns.gpkg", [_box(0, 0, 25, 40), _box(25, 0, 50, 40)], ["330000001", "330000001"])
    return cfg


def child_outside_parent(d, cfg):
    # the second township reaches 20 columns (600 m) east of the county
    _write_layer(d, "towns.gpkg", [_box(0, 0, 25, 40), _box(25, 0, 70, 40)], ["330000001", "330000002"])
    return cfg


def layer_file_missing(d, cfg):
    (d / "towns.gpkg").unlink()
    return cfg


def output_is_the_input_folder(d, cfg):
    return _edit(cfg, "output: {dir: out,", "output: {dir: .,")


def output_contains_the_inputs(d, cfg):
    return _edit(cfg, "output: {dir: out,", "output: {dir: ..,")


def output_is_a_file(d, cfg):
    return _edit(cfg, "output: {dir: out,", "output: {dir: legend.csv,")


def output_inside_a_file(d, cfg):
    return _edit(cfg, "output: {dir: out,", "output: {dir: legend.csv/out,")


def output_read_only(d, cfg):
    if os.geteuid() == 0:
        pytest.skip("running as root: a read-only folder is still writable")
    os.chmod(d / "out", 0o555)
    return cfg


def memory_budget_too_small(d, cfg):
    return _edit(cfg, "output: {dir: out, chunk_size: 64}",
                 "processing: {memory_budget_mb: 100}\noutput: {dir: out, chunk_size: 64}")


def memory_budget_beyond_any_machine(d, cfg):
    return _edit(cfg, "output: {dir: out, chunk_size: 64}",
                 "processing: {memory_budget_mb: 1000000000}\noutput: {dir: out, chunk_size: 64}")


def chunk_size_too_small(d, cfg):
    return _edit(cfg, "chunk_size: 64", "chunk_size: 10")


def workers_zero(d, cfg):
    return _edit(cfg, "output: {dir: out, chunk_size: 64}", "processing: {workers: 0}\noutput: {dir: out, chunk_size: 64}")


def workers_absurd(d, cfg):
    return _edit(cfg, "output: {dir: out, chunk_size: 64}",
                 "processing: {workers: 100000}\noutput: {dir: out, chunk_size: 64}")


def land_cover_fractional_codes(d, cfg):
    lc = _read(d, "lc.tif").astype(np.float32)
    lc[lc == 2] = 2.5
    write_raster(d / "lc.tif", lc, nodata=255)
    return cfg


#: (case, regular expression the message must match)
CASES = [
    (missing_land_cover, r"inputs.land_cover.*missing.tif"),
    (empty_dem_file, r"inputs.dem.*dem.tif"),
    (truncated_dem, r"inputs.dem.*dem.tif"),
    (precipitation_not_a_raster, r"inputs.precipitation.*p.tif"),
    # a tile labelled with another CRS (same coordinates): it lands elsewhere and is named
    (dem_tiles_mixed_crs, r"inputs.dem.path: .*tiles/b.tif does not overlap the reference grid"),
    (dem_tile_with_fill_and_no_nodata, r"inputs.dem.path: .*tiles/b.tif band 1 has values -32768"),
    (dem_tiles_conflicting_overlap, r"inputs.dem.path: tiles a.tif and b.tif overlap by about 10 x 40 px and hold "
                                    r"different values on 100% of it"),
    (land_cover_in_degrees_with_soil, r"geographic.*soil retention"),
    (dem_fill_without_nodata_tag, r"inputs.dem.*dem.tif band 1 has values -9999.*outside the plausible range"),
    (et_fill_without_nodata_tag, r"inputs.et.*et.tif band 1 has values -9999.*outside the plausible range"),
    (et_only_nodata, r"inputs.et.*et.tif band 1 holds only nodata"),
    (precipitation_all_nan, r"inputs.precipitation.*p.tif band 1 holds only nodata"),
    (dem_only_nodata, r"inputs.dem.*dem.tif band 1 holds only nodata"),
    (precipitation_negative, r"inputs.precipitation.*p.tif band 1 has values -\d+.*outside the plausible range"),
    (precipitation_scaled_x10, r"inputs.precipitation.*p.tif band 1 has values .*outside the plausible range"),
    (et_above_precipitation_everywhere, r"inputs.et: mean actual ET 2,\d{3} mm/a exceeds inputs.precipitation mean 1,\d{3} mm/a"),
    (monthly_precipitation_11_files, r"inputs.precipitation.monthly: expected 12 monthly rasters, found 11"),
    (band_beyond_count, r"inputs.dem.*has 1 band\(s\), band 3"),
    (legend_missing_class, r"class code\(s\) \[4\] occur in inputs.land_cover"),
    (legend_missing_column, r"legend.csv: column 'runoff_coef' is missing"),
    (legend_duplicate_code, r"legend.*legend.csv.*duplicate"),
    (legend_non_numeric, r"legend.*legend.csv.*runoff_coef.*(number|numeric)"),
    (legend_out_of_range, r"column 'runoff_coef' \(fraction\) must lie in \[0.0, 1.0\]"),
    (legend_file_missing, r"legend.*legend.csv"),
    (price_wrong_unit, r"prices.overrides.water_conservation.reservoir_cost: unit 'yuan/t' differs"),
    (price_negative, r"water_conservation.reservoir_cost.*(negative|>= 0|greater than or equal)"),
    (yaml_syntax_error, r"not valid YAML"),
    (unknown_key, r"compresion: unknown key"),
    (wrong_type, r"output.chunk_size"),
    (python_tag, r"not valid YAML"),
    (unset_variable, r"GEP_NO_SUCH_VARIABLE_X"),
    (config_file_missing, r"config file not found"),
    (polygons_outside_grid, r"layers.township: no polygon of .*towns.gpkg overlaps the rasters"),
    (layer_without_crs, r"layers.township.*(CRS|crs)"),
    (layer_invalid_geometry, r"layers.township: polygon\(s\) \['330000001'\] have invalid geometry"),
    (layer_empty_geometry, r"layers.township: feature\(s\) \['330000001'\] of .*towns.gpkg have an empty or null geometry"),
    (layer_null_geometry, r"layers.township: feature\(s\) \['330000001'\] of .*towns.gpkg have an empty or null geometry"),
    (layer_missing_id_field, r"layers.township.id_field: field 'town_id' not found"),
    (layer_duplicate_ids, r"layers.township.*duplicate"),
    (child_outside_parent, r"layers.township: polygon\(s\) \[.*'330000002 \(4\d%\)'\] lie partly outside layers.county"),
    (layer_file_missing, r"layers.township.*towns.gpkg"),
    (output_is_the_input_folder, r"output.dir: .* contains input file\(s\)"),
    (output_contains_the_inputs, r"output.dir: .* contains input file\(s\)"),
    (output_is_a_file, r"output.dir: .*legend.csv is not a folder"),
    (output_inside_a_file, r"output.dir: .*out is not a folder \(.*legend.csv is a file\)"),
    (output_read_only, r"output.dir.*not writable"),
    (memory_budget_too_small, r"processing.memory_budget_mb"),
    (memory_budget_beyond_any_machine, r"processing.memory_budget_mb = 1,000,000,000 MB is more than the memory of this machine"),
    (chunk_size_too_small, r"output.chunk_size"),
    (workers_zero, r"processing.workers"),
    (workers_absurd, r"processing.workers.*less than or equal to 1024"),
    (land_cover_fractional_codes, r"inputs.land_cover.*(integer|fraction)"),
]


@pytest.mark.parametrize("case, pattern", CASES, ids=[c.__name__ for c, _ in CASES])
def test_gep_run_refuses(template, tmp_path, case, pattern):
    import re

    d = tmp_path / "run"
    shutil.copytree(template, d)
    before = _snapshot(d / "out")
    cfg = case(d, d / "run.yaml")
    res = CliRunner().invoke(app, ["run", str(cfg), "--quiet"])
    out = res.output
    assert res.exit_code != 0, out
    assert re.search(pattern, out, re.S), out
    assert "Traceback" not in out and "rasterio._env" not in out and "GDAL signalled" not in out, out
    assert not (d / "PWNED").exists()
    if (d / "out").is_dir():
        os.chmod(d / "out", 0o755)
        assert _snapshot(d / "out") == before  # nothing added, nothing changed


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40
