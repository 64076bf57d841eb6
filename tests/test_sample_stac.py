"""STAC inputs on the sample (issue 21): pipelines/sample_stac.yaml finds every raster of the sample through the
static catalogue sample_tiles/stac/ (written by pipelines/make_sample_stac.py) and gives the same accounts, pixel
for pixel, as pipelines/sample.yaml; the same catalogue served over HTTP gives remote assets read by range."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
import yaml

from conftest import REPO, output_arrays, sample_config
from http_range_server import RangeServer

import gep_raster


def _numbers(csv: Path):
    import pandas as pd

    df = pd.read_csv(csv)
    return df.drop(columns=[c for c in df.columns if c in ("run_name",)])


def _normalised(folder: Path, rel: str) -> dict:
    """A catalogue JSON with its asset hrefs resolved to real absolute paths (the generator writes them relative
    to where the catalogue sits)."""
    doc = json.loads((folder / rel).read_text(encoding="utf-8"))
    for asset in doc.get("assets", {}).values():
        asset["href"] = os.path.realpath((folder / rel).parent / asset["href"])
    return doc


def test_committed_catalogue_is_the_generator_output(tmp_path):
    out = tmp_path / "stac"
    subprocess.run([sys.executable, str(REPO / "pipelines" / "make_sample_stac.py"), "-o", str(out)], check=True,
                   capture_output=True)
    committed = REPO / "sample_tiles" / "stac"
    a = sorted(p.relative_to(committed).as_posix() for p in committed.rglob("*") if p.is_file())
    b = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert a == b and len(a) > 20
    for rel in a:
        assert _normalised(committed, rel) == _normalised(out, rel), f"{rel} differs: rerun make_sample_stac.py"
    hrefs = [_normalised(committed, r)["assets"]["data"]["href"] for r in a if "assets" in _normalised(committed, r)]
    assert len(hrefs) == 4 + 4 + 12 + 1 + 1 and all(Path(h).is_file() for h in hrefs)


def test_sample_stac_yaml_is_sample_yaml_but_for_the_raster_paths():
    a = yaml.safe_load((REPO / "pipelines" / "sample.yaml").read_text(encoding="utf-8"))
    b = yaml.safe_load((REPO / "pipelines" / "sample_stac.yaml").read_text(encoding="utf-8"))
    for cfg in (a, b):
        cfg.pop("name"), cfg.pop("description"), cfg["output"].pop("dir")
        cfg["economic_accounts"]["weight_rasters"]["nep"].pop("path")
        for key in ("land_cover", "dem", "et", "carbon"):
            cfg["inputs"][key].pop("path")
        cfg["inputs"]["precipitation"].pop("monthly")
    assert a == b
    stac = yaml.safe_load((REPO / "pipelines" / "sample_stac.yaml").read_text(encoding="utf-8"))["inputs"]
    assert stac["precipitation"]["monthly"]["stac"]["collection"] == "sample-precipitation-monthly"


def test_sample_stac_run_equals_the_local_sample(tmp_path):
    local = sample_config(tmp_path, "local", chunk=256)
    stac = sample_config(tmp_path, "stac", chunk=256, source="sample_stac.yaml")
    r_local, r_stac = gep_raster.run(local), gep_raster.run(stac)
    assert r_stac.gep_r_yuan == r_local.gep_r_yuan
    assert r_stac.totals.equals(r_local.totals)
    a, b = output_arrays(tmp_path / "local"), output_arrays(tmp_path / "stac")
    assert a.keys() == b.keys() and len(a) > 5
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    for layer in ("county", "township", "special_units"):
        assert _numbers(tmp_path / "local" / "tables" / f"{layer}.csv").equals(
            _numbers(tmp_path / "stac" / "tables" / f"{layer}.csv")), layer
    m = json.loads((tmp_path / "stac" / "manifest.json").read_text(encoding="utf-8"))
    stac_rec = m["remote_inputs"]["stac"]
    assert set(stac_rec) >= {"inputs.land_cover.path", "inputs.dem.path", "inputs.precipitation.monthly",
                             "inputs.et.path", "inputs.carbon.path"}
    lc = stac_rec["inputs.land_cover.path"]
    assert [i["id"] for i in lc["items"]] == ["lc_r0_c0", "lc_r0_c1", "lc_r1_c0", "lc_r1_c1"]
    assert lc["items"][0]["href"]["abs_path"] == str(REPO / "sample_tiles" / "data" / "land_cover" / "lc_r0_c0.tif")
    months = [i["datetime"][:7] for i in stac_rec["inputs.precipitation.monthly"]["items"]]
    assert sorted(months) == [f"2024-{m:02d}" for m in range(1, 13)]
    # the monthly files are summed in date order: the source of month 1 is the January file
    prec = m["inputs"]["precip"]
    assert [Path(s["files"][0]["abs_path"]).name for s in prec["sum_of"]] == [
        f"precip_monthly_{k:02d}.tif" for k in range(1, 13)]
    # the ET query had no bbox: the reference grid's extent in WGS84 was used
    bbox = stac_rec["inputs.et.path"]["query"]["bbox"]
    assert bbox is not None and 117 < bbox[0] < bbox[2] < 119


def test_catalogue_served_over_http_reads_remote_assets(tmp_path):
    """The same static catalogue served by a local HTTP server: asset hrefs resolve to http:// URLs, read through
    /vsicurl/ by range requests; ET found this way gives the local run's numbers."""
    local = sample_config(tmp_path, "local", chunk=256)
    with RangeServer(REPO / "sample_tiles") as srv:
        p = sample_config(tmp_path, "http", chunk=256)
        cfg = yaml.safe_load(p.read_text(encoding="utf-8"))
        cfg["inputs"]["et"]["path"] = {"stac": {"catalog": srv.url("stac/catalog.json"), "collection": "sample-et",
                                                "asset": "data"}}
        p.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        r_http = gep_raster.run(p)
        assert srv.bytes_sent("data/climate/et_annual.tif") > 0
    r_local = gep_raster.run(local)
    assert r_http.gep_r_yuan == r_local.gep_r_yuan
    m = json.loads((tmp_path / "http" / "manifest.json").read_text(encoding="utf-8"))
    local_sums = json.loads((tmp_path / "local" / "manifest.json").read_text(encoding="utf-8"))["input_checksums"]
    local_et = next(v for k, v in local_sums.items() if k.endswith("climate/et_annual.tif"))
    key = "/vsicurl/" + srv.url("data/climate/et_annual.tif")
    assert m["input_checksums"][key]["sha256"] == local_et["sha256"]
    assert m["remote_inputs"]["stac"]["inputs.et.path"]["items"][0]["href"]["path"] == srv.url(
        "data/climate/et_annual.tif")


def test_inputs_as_lazy_xarray_equal_the_local_files():
    """gep_raster.grid.xarray_view: the STAC sample's ET and land cover as dask-backed DataArrays on the reference
    grid (rioxarray CRS and transform), equal to the local sample's whatever the chunking."""
    import dask.array

    import gep_raster.grid.xarray_view as xv

    et_stac = xv.open_input(REPO / "pipelines" / "sample_stac.yaml", "et", 100)
    et_local = xv.open_input(REPO / "pipelines" / "sample.yaml", "et", 256)
    assert isinstance(et_stac.data, dask.array.Array) and et_stac.dims == ("y", "x")
    assert et_stac.shape == (480, 600) and et_stac.dtype == np.float32 and et_stac.attrs["units"] == "mm/a"
    assert et_stac.rio.crs.to_epsg() == 32650
    with rasterio.open(REPO / "sample_tiles" / "data" / "land_cover" / "lc_r0_c0.tif") as ds:
        assert et_stac.rio.transform().c == ds.transform.c and et_stac.rio.transform().f == ds.transform.f
        assert float(et_stac.x[0]) == ds.transform.c + 15.0
    np.testing.assert_array_equal(et_stac.values, et_local.values)
    lc = xv.open_input(REPO / "pipelines" / "sample_stac.yaml", "land_cover")
    assert lc.dtype == np.int32 and lc.rio.nodata == -1
    with rasterio.open(REPO / "sample_tiles" / "data" / "land_cover" / "lc_r0_c0.tif") as ds:
        tile = ds.read(1)
    np.testing.assert_array_equal(lc.values[: tile.shape[0], : tile.shape[1]],
                                  np.where(tile == ds.nodata, -1, tile) if ds.nodata is not None else tile)


def test_a_query_matching_nothing_is_refused_naming_the_collections(tmp_path):
    from typer.testing import CliRunner

    from gep_raster.cli import app

    p = sample_config(tmp_path, "bad", chunk=256, source="sample_stac.yaml")
    cfg = yaml.safe_load(p.read_text(encoding="utf-8"))
    cfg["inputs"]["et"]["path"]["stac"]["collection"] = "sample-evapotranspiration"
    p.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    for cmd in (["validate", str(p)], ["run", str(p), "-q"]):
        res = CliRunner().invoke(app, cmd)
        assert res.exit_code == 1, res.output
        assert "inputs.et.path.stac" in res.output and "no item matches" in res.output
        assert "collections in the catalogue: sample-dem, sample-et" in res.output
    assert not (tmp_path / "bad").exists()
