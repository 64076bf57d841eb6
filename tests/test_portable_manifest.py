"""Portable manifests: input paths recorded relative to the config's folder and absolute (normalised), output paths
relative to the run folder, and finished run folders that still work with compare / VEP / offset once moved.

The sample runs (pipelines/sample*.yaml, read from their own folder so that their inputs are ``../sample_tiles/...``)
are written to a temporary folder; the tests that move them move them back.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

import conftest
from gep_raster.config import load_config
from gep_raster.outputs.provenance import (is_remote_path, normalise_path, portable_checksums, portable_files,
                                           portable_path)

REPO = Path(__file__).resolve().parents[1]
PIPELINES = REPO / "pipelines"
SAMPLES = ("sample", "sample_development", "sample_restoration")


@pytest.fixture(scope="module")
def sample_runs(tmp_path_factory):
    """The three sample runs (baseline, development, restoration) in ``<tmp>/orig/<name>``."""
    from gep_raster import pipeline

    root = tmp_path_factory.mktemp("portable") / "orig"
    out = {}
    for name in SAMPLES:
        cfg = load_config(PIPELINES / f"{name}.yaml", overrides={"output": {"dir": str(root / name)}})
        out[name] = pipeline.run(cfg, progress=False, workers=2).output_dir
    return out


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text(encoding="utf-8"))


def _input_records(m: dict) -> list[dict]:
    """Every ``{"path", "abs_path"}`` record of a manifest's inputs (sources, checksums, legend, layers, tables)."""
    recs = []

    def walk(x):
        if isinstance(x, dict):
            if "abs_path" in x:
                recs.append(x)
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    for key in ("inputs", "input_checksums", "legend", "layers", "economic_accounts", "price_index"):
        walk(m.get(key))
    walk(m["paths"]["config_file"])
    return recs


# ---------------------------------------------------------------------------------- manifest fields
def test_manifest_records_relative_and_absolute_input_paths(sample_runs):
    m = _manifest(sample_runs["sample"])
    base = Path(m["paths"]["base_dir"]["abs_path"])
    assert base == PIPELINES.resolve()
    assert m["config_file"] == str(PIPELINES.resolve() / "sample.yaml")
    assert m["paths"]["config_file"] == {"path": "sample.yaml", "abs_path": m["config_file"]}
    # the run folder finds the config's folder from where it was written
    assert (sample_runs["sample"] / m["paths"]["base_dir"]["from_run_dir"]).resolve() == base
    recs = _input_records(m)
    assert len(recs) > 40
    for r in recs:
        assert os.path.isabs(r["abs_path"]) and ".." not in Path(r["abs_path"]).parts, r
        assert r["abs_path"] == os.path.normpath(r["abs_path"]), r
        assert not os.path.isabs(r["path"]), r
        assert os.path.samefile(base / r["path"], r["abs_path"]), r  # relative path resolves to the same file
    lc = m["inputs"]["lc"]["files"]
    assert len(lc) == 4 and lc[0]["path"] == os.path.join("..", "sample_tiles", "data", "land_cover", "lc_r0_c0.tif")
    assert lc[0]["abs_path"] == str(REPO.resolve() / "sample_tiles/data/land_cover/lc_r0_c0.tif")
    # checksums keyed by the relative path; polygon layers, legend and tables among them
    keys = set(m["input_checksums"])
    for layer in ("county", "township", "special_units"):
        assert m["layers"][layer]["path"] in keys
    assert m["legend"]["path"] in keys and "legends/sample_extra.csv" in keys
    assert m["economic_accounts"]["table"]["path"] == "tables/sample_statistics.csv" in keys
    assert all(v["path"] == k and len(v["sha256"]) == 64 for k, v in m["input_checksums"].items())
    # outputs relative to the run folder
    for o in m["outputs"]:
        assert not os.path.isabs(o["path"]) and ".." not in Path(o["path"]).parts
        assert (sample_runs["sample"] / o["path"]).is_file(), o["path"]
    # no absolute path with '..' segments left (paths.base_dir.from_run_dir is relative: it has them)
    text = json.dumps({k: v for k, v in m.items() if k != "paths"})
    assert "/../" not in text and "pipelines/.." not in text


def test_path_helpers_normalise_local_paths_and_keep_remote_ones_verbatim(tmp_path):
    url = "/vsicurl/https://example.org/tiles//lc_r0_c0.tif"
    for p in (url, "https://example.org/a//b.tif", "s3://bucket/key//x.tif", "/vsizip//data/a.zip/x.tif"):
        assert is_remote_path(p)
        assert normalise_path(p) == p
        assert portable_path(p, tmp_path) == {"path": p, "abs_path": p}
    assert not is_remote_path("/data/vsi/x.tif") and not is_remote_path("relative/x.tif")
    base = tmp_path / "pipelines"
    assert portable_path(f"{base}/../tiles/./a.tif", base) == {"path": os.path.join("..", "tiles", "a.tif"),
                                                               "abs_path": str(tmp_path / "tiles" / "a.tif")}
    assert portable_path("legends//x.csv", base) == {"path": os.path.join("legends", "x.csv"),
                                                     "abs_path": str(base / "legends" / "x.csv")}
    assert normalise_path("a/../b.tif", base) == str(base / "b.tif")
    assert portable_files([url, base / "a.tif"], base) == [{"path": url, "abs_path": url},
                                                          {"path": "a.tif", "abs_path": str(base / "a.tif")}]
    sums = portable_checksums({f"{base}/../t/a.tif": {"sha256": "0" * 64, "bytes": 3},
                               str(tmp_path / "t" / "a.tif"): {"sha256": "0" * 64, "bytes": 3},  # same file
                               url: {"sha256": "1" * 64, "bytes": 4}}, base)
    rel = os.path.join("..", "t", "a.tif")
    assert list(sums) == [rel, url]
    assert sums[rel] == {"path": rel, "abs_path": str(tmp_path / "t" / "a.tif"), "sha256": "0" * 64, "bytes": 3}
    assert sums[url]["abs_path"] == url


def test_portable_tree_rewrites_files_and_path_records(tmp_path):
    from gep_raster.pipeline.manifest import portable_tree

    base = str(tmp_path)
    tree = {"lc": {"name": "inputs.land_cover", "files": [f"{base}/x/../lc.tif"]},
            "precip": {"sum_of": [{"files": ["/vsicurl/https://h//p.tif"]}]},
            "w": {"path": "../w.tif", "band": 1}, "done": {"path": "a", "abs_path": "/a"}}
    out = portable_tree(tree, base)
    assert out["lc"] == {"name": "inputs.land_cover", "files": [{"path": "lc.tif", "abs_path": str(tmp_path / "lc.tif")}]}
    assert out["precip"]["sum_of"][0]["files"] == [{"path": "/vsicurl/https://h//p.tif",
                                                   "abs_path": "/vsicurl/https://h//p.tif"}]
    assert out["w"] == {"path": os.path.join("..", "w.tif"), "abs_path": str(tmp_path.parent / "w.tif"), "band": 1}
    assert out["done"] == {"path": "a", "abs_path": "/a"}
    assert tree["lc"]["files"] == [f"{base}/x/../lc.tif"]  # a copy: the input is not changed
    assert portable_tree({"table": {"path": "t.csv"}, "other": {"path": "o"}}, base, keys=("table",)) == \
        {"table": {"path": "t.csv", "abs_path": str(tmp_path / "t.csv")}, "other": {"path": "o"}}


def test_output_checksums_drop_absolute_paths_only(sample_runs):
    import importlib.util

    spec = importlib.util.spec_from_file_location("output_checksums", REPO / "bench" / "output_checksums.py")
    oc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(oc)
    m = _manifest(sample_runs["sample"])
    s = oc._scrub(m, str(sample_runs["sample"]))
    assert "paths" not in s and "config_file" not in s
    text = json.dumps(s)
    assert '"abs_path"' not in text
    assert s["inputs"]["lc"]["files"][0] == {"path": m["inputs"]["lc"]["files"][0]["path"]}
    assert set(s["input_checksums"]) == set(m["input_checksums"])


# ---------------------------------------------------------------------------------- moved run folders
def _results(runs: dict, out: Path) -> dict:
    """compare, VEP and offset of the sample runs ``runs`` (folders), written under ``out``."""
    from gep_raster.analysis.change import compare_runs
    from gep_raster.analysis.offset import offset_report
    from gep_raster.analysis.vep import vep_account

    cmp = compare_runs(runs["sample"], runs["sample_development"], out / "cmp")
    vep = vep_account(runs["sample"], "special_units", out / "vep", years=5, growth=0.02, discount=0.04)
    off = offset_report(runs["sample"], runs["sample_development"], out / "off", offset_ratio=1.5,
                        candidates=PIPELINES / "data/sample_candidate_parcels.gpkg", id_field="cand_id",
                        restoration=runs["sample_restoration"])
    tables = {p.name: pd.read_csv(p) for p in sorted((out / "cmp" / "tables").glob("*.csv"))}
    return {"cmp_totals": cmp["totals"], "cmp_rasters": [{k: r[k] for k in ("path", "sum_delta", "pixels_both")}
                                                          for r in cmp["rasters"]],
            "cmp_tables": tables, "cmp_n_outputs": len(cmp["outputs"]),
            "vep_totals": vep["totals"], "vep_rows": vep["rows"], "vep_npv": vep["projection"]["npv_total_yuan"],
            "off_loss": off["loss"], "off_required": off["required_compensation_yuan_per_year"],
            "off_parcel": off["parcel"], "off_selection": off["selection"],
            "off_table": pd.read_csv(out / "off" / "offset_report.csv")}


def _cli(runs: dict, out: Path) -> dict:
    """The same through ``gep compare``, ``gep vep`` and ``gep offset`` (typer CliRunner on gep_raster.cli.app)."""
    from typer.testing import CliRunner

    from gep_raster.cli import app

    cli = CliRunner()
    for args in (["compare", str(runs["sample"]), str(runs["sample_development"]), "-o", str(out / "c")],
                 ["vep", str(runs["sample"]), "--layer", "special_units", "-o", str(out / "v")],
                 ["offset", "--baseline", str(runs["sample"]), "--scenario", str(runs["sample_development"]),
                  "--offset-ratio", "1.0", "-o", str(out / "o")]):
        r = cli.invoke(app, args)
        assert r.exit_code == 0, (args, r.output)
    return {"c": json.loads((out / "c/change_manifest.json").read_text())["totals"],
            "v": json.loads((out / "v/vep_account.json").read_text())["totals"],
            "o": json.loads((out / "o/offset_report.json").read_text())["loss"]}


def _assert_same(a: dict, b: dict) -> None:
    for k in a:
        if isinstance(a[k], pd.DataFrame):
            pd.testing.assert_frame_equal(a[k], b[k])
        elif isinstance(a[k], dict) and a[k] and all(isinstance(v, pd.DataFrame) for v in a[k].values()):
            assert a[k].keys() == b[k].keys()
            for n in a[k]:
                pd.testing.assert_frame_equal(a[k][n], b[k][n])
        else:  # JSON text: NaN (a growth rate where a = 0) equals NaN
            assert json.dumps(a[k], sort_keys=True) == json.dumps(b[k], sort_keys=True), k


def test_moved_run_folders_give_the_same_compare_vep_and_offset(sample_runs, tmp_path):
    ref = _results(sample_runs, tmp_path / "ref")
    ref_cli = _cli(sample_runs, tmp_path / "ref_cli")
    assert ref["off_loss"]["gep_r_yuan"] > 0 and ref["off_selection"]["selected"]
    assert "edits of scenario" in ref["off_parcel"]["source"]  # the parcel from the scenario run's own edits
    moved = {n: tmp_path / "elsewhere" / "deeper" / f"{n}_moved" for n in SAMPLES}
    try:
        for n in SAMPLES:  # rename the originals: nothing is left where the runs were written
            shutil.move(sample_runs[n], moved[n])
            assert not sample_runs[n].exists()
        got = _results(moved, tmp_path / "after")
        got_cli = _cli(moved, tmp_path / "after_cli")
    finally:
        for n in SAMPLES:
            if moved[n].exists():
                shutil.move(moved[n], sample_runs[n])
    off_parcel = dict(got["off_parcel"])
    off_parcel["source"] = off_parcel["source"].replace(str(moved["sample_development"]),
                                                        str(sample_runs["sample_development"]))
    got["off_parcel"] = off_parcel
    _assert_same(ref, got)
    assert json.dumps(ref_cli, sort_keys=True) == json.dumps(got_cli, sort_keys=True)
    rep = json.loads((tmp_path / "after/off/offset_report.json").read_text())
    assert rep["runs"]["baseline"]["path"] == str(moved["sample"].resolve())  # the folder it was given


def test_copied_run_folder_gives_the_same_totals(sample_runs, tmp_path):
    from gep_raster.analysis.change import compare_runs

    copy = shutil.copytree(sample_runs["sample_development"], tmp_path / "copy" / "dev")
    a = compare_runs(sample_runs["sample"], sample_runs["sample_development"], tmp_path / "c1")
    b = compare_runs(sample_runs["sample"], copy, tmp_path / "c2")
    assert json.dumps(a["totals"]) == json.dumps(b["totals"])
    assert [r["sum_delta"] for r in a["rasters"]] == [r["sum_delta"] for r in b["rasters"]]


# ---------------------------------------------------------------------------------- scenario edit files
def test_scenario_edit_files_found_after_the_run_folder_or_the_project_moved(tmp_path):
    """offset without --parcel reads the scenario run's edit polygons relative to its config's folder: found at the
    recorded place when only the run folders moved, and relative to the run folder when the project moved whole."""
    import geopandas as gpd
    import shapely

    from gep_raster import pipeline
    from gep_raster.analysis.change import input_base_dir, load_run
    from gep_raster.analysis.offset import offset_report

    proj = tmp_path / "proj"
    proj.mkdir()
    cfgp = conftest.make_tiny(proj)
    gpd.GeoDataFrame({"n": [1]}, geometry=[shapely.box(500600, 2998950, 500900, 2999250)],
                     crs="EPSG:32650").to_file(proj / "parcel.gpkg")
    runs = {}
    for name, sc in (("base", None), ("dev", {"name": "dev", "edits": [{"path": "parcel.gpkg", "to_class": 4}]})):
        ov = {"output": {"dir": f"out/{name}"}, **({"scenario": sc} if sc else {})}
        runs[name] = pipeline.run(load_config(cfgp, overrides=ov), progress=False, workers=1).output_dir
    assert input_base_dir(load_run(runs["dev"])) == proj.resolve()
    ref = offset_report(runs["base"], runs["dev"], tmp_path / "r0", offset_ratio=1.0)
    assert ref["loss"]["gep_r_yuan"] > 0 and ref["parcel"]["grid_area_km2"] == pytest.approx(0.09)

    # 1. only the run folders move (the project with its config and parcel file stays)
    alone = tmp_path / "shared" / "runs"
    alone.mkdir(parents=True)
    for name in runs:
        shutil.move(proj / "out" / name, alone / name)
    assert input_base_dir(load_run(alone / "dev")) == proj.resolve()
    r1 = offset_report(alone / "base", alone / "dev", tmp_path / "r1", offset_ratio=1.0)
    for name in runs:
        shutil.move(alone / name, proj / "out" / name)

    # 2. the whole project moves (config, inputs and runs; the old folder is gone)
    proj2 = tmp_path / "moved" / "proj2"
    proj2.parent.mkdir()
    shutil.move(proj, proj2)
    assert not proj.exists()
    assert input_base_dir(load_run(proj2 / "out/dev")) == proj2.resolve()
    r2 = offset_report(proj2 / "out/base", proj2 / "out/dev", tmp_path / "r2", offset_ratio=1.0)
    for r in (r1, r2):
        assert r["loss"] == ref["loss"] and r["parcel"]["grid_area_km2"] == ref["parcel"]["grid_area_km2"]
        assert r["required_compensation_yuan_per_year"] == ref["required_compensation_yuan_per_year"]
