"""The command line as a scheduler sees it: one exit-code table for every command, one logging setup (-q, -v,
--log-level, --log-file, --log-json), each problem reported once, flags shown as flags in the help."""
from __future__ import annotations

import json
import logging

import pytest
from typer.testing import CliRunner

from gep_raster import cli_common
from gep_raster.cli import app
from gep_raster.errors import ConfigError, GepError, InputError, RasterError, ValidationFailed
from gep_raster.outputs.io_write import OutputError
from gep_raster.terrain.hydro_units import RoutingBudgetError

from conftest import make_tiny

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny config and its finished run (``out/``), once for the module."""
    folder = tmp_path_factory.mktemp("cli_tiny")
    cfg = make_tiny(folder)
    res = runner.invoke(app, ["run", str(cfg), "-q", "--accept-warnings"])
    assert res.exit_code == 0, res.output
    return cfg, folder / "out"


def _edit(cfg, old, new, name):
    text = cfg.read_text()
    assert old in text, old
    p = cfg.parent / name
    p.write_text(text.replace(old, new))
    return p


# -- the exit-code table -------------------------------------------------------------------------------------------
def test_exit_code_table_maps_every_error_class():
    assert cli_common.exit_code_for(ConfigError("x")) == 2
    assert cli_common.exit_code_for(InputError("x")) == 1
    assert cli_common.exit_code_for(RasterError("x")) == 1  # a subclass of InputError
    assert cli_common.exit_code_for(ValidationFailed(["a"])) == 1
    assert cli_common.exit_code_for(OutputError("x")) == 3
    assert cli_common.exit_code_for(RoutingBudgetError("x")) == 3
    assert cli_common.exit_code_for(GepError("x")) == 3
    assert cli_common.exit_code_for(KeyboardInterrupt()) == 130
    assert set(cli_common.EXIT_CODES) == {0, 1, 2, 3, 130}


COMMANDS = ["run", "validate", "sensitivity", "compare", "offset", "vep", "report", "serve"]


@pytest.mark.parametrize("name", COMMANDS)
def test_unknown_option_is_a_usage_error(name):
    res = runner.invoke(app, [name, "--no-such-option"])
    assert res.exit_code == 2, res.output
    assert "No such option" in res.output


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_the_logging_options_shown_as_flags(name):
    res = runner.invoke(app, [name, "--help"])
    assert res.exit_code == 0, res.output
    for flag in ("--quiet", "-q", "--verbose", "-v", "--log-level", "--log-file", "--log-json", "--debug"):
        assert flag in res.output, (name, flag)
    assert "<bool>" not in res.output  # flags take no value


@pytest.mark.parametrize("name", ["run", "validate", "sensitivity"])
def test_missing_config_exits_2_once_without_traceback(tmp_path, name):
    res = runner.invoke(app, [name, str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2, res.output
    assert res.output.count("config file not found") == 1
    assert "Traceback" not in res.output


def test_unknown_config_key_exits_2(tmp_path):
    cfg = make_tiny(tmp_path)
    bad = _edit(cfg, "name: tiny", "name: tiny\nouptut_dir: x", "unknown_key.yaml")
    for name in ("run", "validate"):
        res = runner.invoke(app, [name, str(bad)])
        assert res.exit_code == 2, res.output
        assert "ouptut_dir: unknown key" in res.output


def test_missing_input_file_exits_1_and_is_reported_once(tmp_path):
    cfg = make_tiny(tmp_path)
    bad = _edit(cfg, "et: {path: et.tif}", "et: {path: no_et.tif}", "missing_input.yaml")
    res = runner.invoke(app, ["validate", str(bad)])
    assert res.exit_code == 1, res.output
    assert res.output.count("inputs.et.path: file not found") == 1
    assert "1 problem(s) found" in res.output
    run = runner.invoke(app, ["run", str(bad)])
    assert run.exit_code == 1, run.output
    assert run.output.count("inputs.et.path: file not found") == 1
    assert "Traceback" not in run.output


def test_bad_log_level_is_a_usage_error(tmp_path):
    res = runner.invoke(app, ["validate", str(tmp_path / "x.yaml"), "--log-level", "loud"])
    assert res.exit_code == 2
    assert "not a log level" in res.output


def test_interrupted_run_exits_130_with_resume_hint(tmp_path, monkeypatch):
    import gep_raster.pipeline

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(gep_raster.pipeline, "run", interrupted)
    res = runner.invoke(app, ["run", str(make_tiny(tmp_path))])
    assert res.exit_code == 130, res.output
    assert "run the same command again to resume" in res.output


def test_locked_output_exits_3(tmp_path, monkeypatch):
    import gep_raster.pipeline

    def locked(*a, **k):
        raise OutputError("out: another gep run holds the lock")

    monkeypatch.setattr(gep_raster.pipeline, "run", locked)
    res = runner.invoke(app, ["run", str(make_tiny(tmp_path))])
    assert res.exit_code == 3, res.output
    assert "error: out: another gep run holds the lock" in res.output


def test_compare_vep_offset_on_a_folder_that_is_no_run_exit_1(tmp_path, tiny_run):
    cfg, out = tiny_run
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        "compare": ["compare", str(empty), str(out), "-o", str(tmp_path / "c")],
        "vep": ["vep", str(empty), "--layer", "special_units", "-o", str(tmp_path / "v")],
        "offset": ["offset", "--baseline", str(empty), "--scenario", str(out), "--offset-ratio", "1", "--parcel",
                   str(cfg.parent / "units.gpkg"), "-o", str(tmp_path / "o")],
    }
    for name, args in cases.items():
        res = runner.invoke(app, args)
        assert res.exit_code == 1, (name, res.output)
        assert "manifest.json" in res.output and "Traceback" not in res.output, (name, res.output)


def test_vep_and_compare_succeed_with_exit_0(tmp_path, tiny_run):
    cfg, out = tiny_run
    res = runner.invoke(app, ["vep", str(out), "--layer", "special_units", "-o", str(tmp_path / "v"), "-q"])
    assert res.exit_code == 0, res.output
    assert len(res.output.strip().splitlines()) == 1  # -q: the one-line result only
    res = runner.invoke(app, ["compare", str(out), str(out), "-o", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output


# -- logging -------------------------------------------------------------------------------------------------------
def test_quiet_run_prints_one_line_and_no_info(tmp_path, caplog):
    cfg = make_tiny(tmp_path)
    res = runner.invoke(app, ["run", str(cfg), "-q", "--accept-warnings"])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run 'tiny' finished in"), res.output
    assert "INFO" not in res.output


def test_log_levels_from_the_options():
    assert cli_common.console_level(quiet=True) == logging.ERROR
    assert cli_common.console_level() == logging.WARNING
    assert cli_common.console_level(verbose=1) == logging.INFO
    assert cli_common.console_level(verbose=2) == logging.DEBUG
    assert cli_common.console_level(quiet=True, log_level="info") == logging.INFO  # --log-level wins


def test_setup_logging_keeps_libraries_at_warning_and_does_not_stack_handlers():
    root = logging.getLogger()
    cli_common.setup_logging(verbose=1)
    cli_common.setup_logging(verbose=1)
    assert sum(h in cli_common._INSTALLED for h in root.handlers) == 1
    assert logging.getLogger("gep_raster").level == logging.INFO
    for name in ("pyogrio", "rasterio", "numba", "distributed"):
        assert logging.getLogger(name).level == logging.WARNING
    cli_common.setup_logging(verbose=2)
    assert logging.getLogger("pyogrio").level == logging.INFO


def test_gdal_messages_are_folded_into_gep_raster(tmp_path):
    log_file = tmp_path / "gdal.jsonl"
    cli_common.setup_logging(log_file=log_file, log_json=True)
    logging.getLogger("rasterio._env").warning("CPLE_AppDefined in TIFFReadDirectory: odd tag")
    for h in cli_common._INSTALLED:
        h.flush()
    rec = json.loads(log_file.read_text(encoding="utf-8").strip().splitlines()[-1])
    assert rec["logger"] == "gep_raster.gdal"
    assert rec["message"] == "GDAL: CPLE_AppDefined in TIFFReadDirectory: odd tag"
    assert rec["level"] == "WARNING"


def test_log_file_json_lines_hold_the_run_info_even_with_quiet(tmp_path):
    cfg = make_tiny(tmp_path)
    log_file = tmp_path / "run.jsonl"
    res = runner.invoke(app, ["run", str(cfg), "-q", "--accept-warnings", "--log-file", str(log_file), "--log-json"])
    assert res.exit_code == 0, res.output
    assert "INFO" not in res.output
    records = [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]
    assert records, "the log file is empty"
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any(r["level"] == "INFO" and r["logger"].startswith("gep_raster") for r in records)
    assert not any(r["logger"].startswith(("pyogrio", "rasterio", "numba")) for r in records)


def test_log_file_that_cannot_be_opened_is_a_usage_error(tmp_path):
    cfg = make_tiny(tmp_path)
    res = runner.invoke(app, ["validate", str(cfg), "--log-file", str(tmp_path / "no" / "such" / "dir.log")])
    assert res.exit_code == 2, res.output
    assert "cannot open" in res.output


def test_a_command_leaves_no_logging_handler_behind(tmp_path):
    """After a command the handlers it installed are gone: a later in-process run must not write to the
    (closed) stream the command's console handler held."""
    import logging

    from gep_raster.cli_common import _INSTALLED

    before = list(logging.getLogger().handlers)
    r = runner.invoke(app, ["validate", str(tmp_path / "missing.yaml")])
    assert r.exit_code != 0
    assert _INSTALLED == [] and logging.getLogger().handlers == before
