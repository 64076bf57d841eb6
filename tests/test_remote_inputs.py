"""Remote inputs (issue 21): URLs and GDAL virtual paths read by window from a local HTTP server with range requests
(tests/http_range_server.py), offline. A run on remote inputs equals the run on the same files locally, pixel for
pixel; a 404, a refused connection and a truncated file each give a clear message, exit 1 and no output folder."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from typer.testing import CliRunner

from conftest import REPO, output_arrays, sample_config
from http_range_server import RangeServer, closed_port

from gep_raster.config import load_config, load_config_dict
from gep_raster.errors import RasterError
from gep_raster.grid.remote import (RemotePath, apply_gdal_options, explain_open_failure, http_url, is_remote_path,
                                    to_gdal_path)

SAMPLE_DATA = REPO / "sample_tiles" / "data"


@pytest.fixture(scope="module")
def server():
    with RangeServer(SAMPLE_DATA) as srv:
        yield srv


def _sample_with(tmp_path: Path, name: str, edit) -> Path:
    p = sample_config(tmp_path, name, chunk=256)
    cfg = yaml.safe_load(p.read_text(encoding="utf-8"))
    edit(cfg)
    p.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return p


# -- paths ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("given, gdal", [
    ("https://h.example/a/b.tif", "/vsicurl/https://h.example/a/b.tif"),
    ("http://127.0.0.1:8765/et_annual.tif", "/vsicurl/http://127.0.0.1:8765/et_annual.tif"),
    ("s3://bucket/key/dem.tif", "/vsis3/bucket/key/dem.tif"),
    ("gs://bucket/dem.tif", "/vsigs/bucket/dem.tif"),
    ("az://container/dem.tif", "/vsiaz/container/dem.tif"),
    ("/vsicurl/http://127.0.0.1:8765/et_annual.tif", "/vsicurl/http://127.0.0.1:8765/et_annual.tif"),
    ("/vsizip//vsicurl/https://h/a.zip/x.tif", "/vsizip//vsicurl/https://h/a.zip/x.tif"),
])
def test_urls_become_gdal_paths_never_mangled(given, gdal):
    assert is_remote_path(given)
    p = RemotePath(given)
    assert str(p) == gdal and p.given == given
    assert pickle.loads(pickle.dumps(p)) == p and pickle.loads(pickle.dumps(p)).given == given
    assert p.name == gdal.rsplit("/", 1)[1] and p.suffix == ".tif"


def test_http_url_behind_gdal_paths():
    assert http_url("/vsicurl/https://h/a.tif") == "https://h/a.tif"
    assert http_url("/vsizip//vsicurl/https://h/d/a.zip/x.tif") == "https://h/d/a.zip"
    assert http_url("/vsicurl?url=https%3A%2F%2Fh%2Fa.tif&use_head=no") == "https://h/a.tif"
    assert http_url("/vsis3/b/k.tif") is None
    assert not is_remote_path("file:///tmp/a.tif") and not is_remote_path("../a.tif")


def test_config_resolves_the_issue_path_verbatim(tmp_path):
    """The path of the issue was refused as 'file not found: /vsicurl/http:/127.0.0.1...' (its // collapsed)."""
    cfg = load_config(sample_config(tmp_path, "s"))
    path = "/vsicurl/http://127.0.0.1:8765/et_annual.tif"
    assert [str(f) for f in cfg.resolve_many(path, "inputs.et.path")] == [path]
    assert str(cfg.resolve("https://h/x.gpkg")) == "/vsicurl/https://h/x.gpkg"
    with pytest.raises(Exception, match="ftp"):
        cfg.resolve("ftp://h/a.tif")


def test_credentials_are_refused_in_the_config(tmp_path):
    raw = yaml.safe_load(sample_config(tmp_path, "s").read_text())
    raw["processing"]["remote"] = {"gdal_options": {"AWS_SECRET_ACCESS_KEY": "x", "AWS_REGION": "eu-west-1"}}
    with pytest.raises(Exception, match="AWS_SECRET_ACCESS_KEY.*environment"):
        load_config_dict(raw, base_dir=tmp_path)


def test_gdal_options_config_beats_environment_only_when_set_explicitly(tmp_path):
    from gep_raster.config import RemoteOptions

    env = {"GDAL_HTTP_TIMEOUT": "7", "GDAL_HTTP_MAX_RETRY": "9"}
    in_force = apply_gdal_options(RemoteOptions(max_retry=2, gdal_options={"AWS_REGION": "cn-north-1"}), env)
    assert env["GDAL_HTTP_TIMEOUT"] == "7" == in_force["GDAL_HTTP_TIMEOUT"]      # default: the user's env kept
    assert env["GDAL_HTTP_MAX_RETRY"] == "2"                                     # set in the config: it wins
    assert env["AWS_REGION"] == "cn-north-1" and env["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert env["CPL_VSIL_CURL_CACHE_SIZE"] == str(64 * 1024 * 1024)


# -- runs ------------------------------------------------------------------------------------------------------------
def test_run_on_remote_inputs_equals_the_local_run(tmp_path, server):
    """ET through /vsicurl/ (the issue's path), land-cover tiles as http:// URLs and the township layer (GPKG)
    remote: the same accounts and the same pixels as the local run; the manifest records URL, size, ETag,
    Last-Modified and a sha256 equal to the local file's."""
    import gep_raster

    local = sample_config(tmp_path, "local", chunk=256)
    lc_tiles = sorted((SAMPLE_DATA / "land_cover").glob("*.tif"))
    town = yaml.safe_load(local.read_text())["layers"]["township"]["path"]
    town_rel = Path(town).resolve().relative_to(SAMPLE_DATA.resolve()).as_posix()

    def edit(cfg):
        cfg["inputs"]["et"]["path"] = "/vsicurl/" + server.url("climate/et_annual.tif")
        cfg["inputs"]["land_cover"]["path"] = [server.url(f"land_cover/{t.name}") for t in lc_tiles]
        cfg["layers"]["township"]["path"] = server.url(town_rel)

    remote = _sample_with(tmp_path, "remote", edit)
    r_local, r_remote = gep_raster.run(local), gep_raster.run(remote)
    assert r_remote.gep_r_yuan == r_local.gep_r_yuan
    a, b = output_arrays(tmp_path / "local"), output_arrays(tmp_path / "remote")
    assert a.keys() == b.keys() and len(a) > 5
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    for layer in ("county", "township", "special_units"):
        ta = (tmp_path / "local" / "tables" / f"{layer}.csv").read_text(encoding="utf-8")
        tb = (tmp_path / "remote" / "tables" / f"{layer}.csv").read_text(encoding="utf-8")
        assert ta == tb, layer
    m = json.loads((tmp_path / "remote" / "manifest.json").read_text(encoding="utf-8"))
    et_key = "/vsicurl/" + server.url("climate/et_annual.tif")
    rec = m["input_checksums"][et_key]
    et_bytes = (SAMPLE_DATA / "climate" / "et_annual.tif").read_bytes()
    assert rec["sha256"] == hashlib.sha256(et_bytes).hexdigest() and rec["bytes"] == len(et_bytes)
    assert rec["etag"] and rec["last_modified"] and rec["url"] == et_key
    assert m["input_checksums"]["/vsicurl/" + server.url(town_rel)]["sha256"] == hashlib.sha256(
        Path(town).read_bytes()).hexdigest()
    ri = m["remote_inputs"]
    assert ri["gdal_options"]["GDAL_HTTP_MAX_RETRY"] == "3" and et_key in ri["files"]
    assert not any("SECRET" in k or "USERPWD" in k for k in ri["gdal_options"])
    assert "remote_inputs" not in json.loads((tmp_path / "local" / "manifest.json").read_text(encoding="utf-8"))


def test_windows_are_read_by_range_requests_not_whole_files(tmp_path):
    """A 256x256 window of a 2048x2048 tiled COG fetches a small part of the file (GDAL range requests)."""
    from gep_raster.grid.io_read import GridSource
    from gep_raster.grid.reference import RefGrid

    rng = np.random.default_rng(0)
    data = rng.random((2048, 2048), dtype=np.float32)  # incompressible: every tile costs its bytes
    f = tmp_path / "big.tif"
    transform = rasterio.transform.from_origin(500000, 3000000, 30, 30)
    with rasterio.open(f, "w", driver="COG", width=2048, height=2048, count=1, dtype="float32",
                       crs="EPSG:32650", transform=transform, nodata=-9999, BLOCKSIZE=256) as ds:
        ds.write(data, 1)
    size = f.stat().st_size
    with RangeServer(tmp_path) as srv:
        url = RemotePath(srv.url("big.tif"))
        grid = RefGrid.from_raster(f)
        src = GridSource("inputs.dem", [url], grid, "continuous")
        win = src.read(1024, 1280, 1024, 1280)
        np.testing.assert_array_equal(win, data[1024:1280, 1024:1280])
        sent = srv.bytes_sent("big.tif")
    assert 0 < sent < size / 8, (sent, size)


def _cli(args):
    from gep_raster.cli import app

    return CliRunner().invoke(app, args)


@pytest.mark.parametrize("case", ["404", "refused", "truncated"])
def test_bad_remote_input_is_refused_with_its_url_and_status(tmp_path, server, case):
    """gep validate and gep run name the URL and what went wrong; exit 1; the output folder is not created."""
    url = {"404": server.url("climate/no_such_file.tif"),
           "refused": f"http://127.0.0.1:{closed_port()}/et_annual.tif",
           "truncated": server.url("truncated/climate/et_annual.tif")}[case]
    expect = {"404": "HTTP 404", "refused": "connection refused", "truncated": url}[case]
    cfg = _sample_with(tmp_path, "bad", lambda c: c["inputs"]["et"].update(path=url))
    out_dir = tmp_path / "bad"
    for cmd in (["validate", str(cfg)], ["run", str(cfg), "-q"]):
        res = _cli(cmd)
        text = res.output
        assert res.exit_code == 1, (cmd, res.exit_code, text)
        assert expect in text and "inputs.et" in text, (cmd, text)
        assert "Traceback" not in text
    assert not out_dir.exists()


def test_remote_vector_layer_404_names_the_url(tmp_path, server):
    from gep_raster.accounts.layers import load_layer
    from gep_raster.errors import VectorError
    from gep_raster.grid.run_inputs import reference_grid

    url = server.url("polygons/missing.gpkg")
    cfg = load_config(_sample_with(tmp_path, "v", lambda c: c["layers"]["township"].update(path=url)))
    with pytest.raises(VectorError, match=r"layers\.township: cannot read remote layer .*missing\.gpkg: HTTP 404"):
        load_layer(cfg, "township", reference_grid(cfg))


def test_explain_open_failure_without_http():
    msg = explain_open_failure(RemotePath("s3://bucket/a.tif"), "Access Denied")
    assert msg == "s3://bucket/a.tif: Access Denied"


def test_remote_open_error_names_the_url(server):
    from gep_raster.grid.io_read import _open

    with pytest.raises(RasterError, match=r"cannot open remote raster http://127\.0\.0\.1:\d+/nope\.tif: HTTP 404"):
        _open(RemotePath(server.url("nope.tif")))


def test_headers_only_checksum_downloads_nothing_more(tmp_path, server):
    from gep_raster.outputs.provenance import input_checksums

    rel = "climate/precip_annual.tif"
    before = server.bytes_sent(rel)
    rec = input_checksums([RemotePath(server.url(rel))], remote_checksum=False)[to_gdal_path(server.url(rel))]
    assert rec["sha256"] is None and rec["bytes"] == (SAMPLE_DATA / rel).stat().st_size and rec["etag"]
    assert server.bytes_sent(rel) == before
    assert os.environ.get("AWS_SECRET_ACCESS_KEY") is None or "AWS_SECRET_ACCESS_KEY" not in json.dumps(rec)
