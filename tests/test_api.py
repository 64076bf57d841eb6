"""The Python face: ``gep_raster.load_config``, ``validate``, ``run`` and ``read_run`` at the top level, with a
config given as a YAML path, a dict or a config object."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

import gep_raster
from gep_raster.errors import ConfigError, InputError

from conftest import make_tiny


def test_top_level_names_without_heavy_imports():
    code = ("import sys, gep_raster; assert callable(gep_raster.run) and callable(gep_raster.validate); "
            "assert callable(gep_raster.load_config) and callable(gep_raster.read_run); "
            "print(int('numba' in sys.modules), int('gep_raster.pipeline' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", "import gep_raster, sys; print(int('numba' in sys.modules))"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0"]  # importing the package compiles nothing
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert set(gep_raster.__all__) >= {"run", "validate", "load_config", "read_run", "__version__"}


def test_validate_is_the_function_even_after_the_validation_module_is_imported():
    import gep_raster.validation  # noqa: F401  (the module of the checks)

    assert callable(gep_raster.validate) and gep_raster.validate.__module__ == "gep_raster.api"


def test_dict_config_resolves_relative_paths_from_base_dir(tmp_path, monkeypatch):
    cfg_path = make_tiny(tmp_path)
    raw = yaml.safe_load(cfg_path.read_text())
    cfg = gep_raster.load_config(raw, base_dir=tmp_path)
    assert cfg.resolve("lc.tif") == tmp_path.resolve() / "lc.tif"
    assert cfg.output_dir == tmp_path.resolve() / "out"
    # without base_dir: the current folder at the time of the call
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    cfg2 = gep_raster.load_config(raw)
    monkeypatch.chdir(other)
    assert cfg2.resolve("lc.tif") == tmp_path.resolve() / "lc.tif"
    # a YAML path with base_dir is refused; an unknown key is named; other types are refused
    with pytest.raises(ConfigError, match="base_dir is only for a config given as a dict"):
        gep_raster.load_config(cfg_path, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="ouptut: unknown key"):
        gep_raster.load_config({**raw, "ouptut": 1}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="not int"):
        gep_raster.load_config(42)


def test_overrides_on_a_config_object_keep_its_folder(tmp_path):
    cfg = gep_raster.load_config(make_tiny(tmp_path))
    moved = gep_raster.load_config(cfg, {"output": {"dir": "out2"}})
    assert moved.output_dir == tmp_path.resolve() / "out2"
    assert moved.source_path == cfg.source_path
    assert gep_raster.load_config(cfg) is cfg


def test_run_from_a_dict_equals_the_run_from_the_yaml(tmp_path):
    cfg_path = make_tiny(tmp_path)
    from_yaml = gep_raster.run(cfg_path, output_dir=tmp_path / "a", accept_warnings=True)
    raw = yaml.safe_load(cfg_path.read_text())
    from_dict = gep_raster.run(raw, base_dir=tmp_path, output_dir=tmp_path / "b", accept_warnings=True)
    ta, tb = from_yaml.totals, from_dict.totals
    assert list(ta.columns) == ["sum", "unit", "valid_pixels"]
    assert ta.loc["gep_r_yuan", "unit"] == "yuan/a"
    np.testing.assert_array_equal(ta["sum"].to_numpy(), tb["sum"].to_numpy())
    assert from_dict.gep_r_yuan == ta.loc["gep_r_yuan", "sum"] > 0
    # the tables: one GeoDataFrame per layer; the two townships add up to the county's covered part
    assert set(from_dict.tables) == {"county", "township", "special_units"}
    towns = from_dict.tables["township"]
    assert len(towns) == 2 and towns.crs is not None
    county = from_dict.tables["county"]
    assert towns["gep_r_yuan"].sum() == pytest.approx(float(county["gep_r_yuan"].sum()), rel=1e-9)
    # the outputs: absolute paths of files that exist
    outs = from_dict.outputs
    assert (tmp_path / "b" / "rasters" / "gep_r_yuan.tif").resolve() == outs["rasters/gep_r_yuan.tif"]
    assert all(p.is_file() for p in outs.values())
    # read back from the folder: the same totals and tables
    back = gep_raster.read_run(tmp_path / "b")
    np.testing.assert_array_equal(back.totals["sum"].to_numpy(), tb["sum"].to_numpy())
    np.testing.assert_allclose(back.tables["township"]["gep_r_yuan"].to_numpy(), towns["gep_r_yuan"].to_numpy())


def test_validate_reports_problems_without_raising(tmp_path):
    cfg_path = make_tiny(tmp_path)
    raw = yaml.safe_load(cfg_path.read_text())
    raw["inputs"]["et"]["path"] = "no_et.tif"
    rep = gep_raster.validate(raw, base_dir=tmp_path)
    assert not rep.ok
    assert [p for p in rep.problems if "inputs.et.path: file not found" in p] == [
        f"inputs.et.path: file not found: {os.path.join(tmp_path.resolve(), 'no_et.tif')}"]


def test_read_run_of_a_folder_that_is_no_run(tmp_path):
    with pytest.raises(InputError, match="no manifest.json"):
        gep_raster.read_run(tmp_path)
