"""``gep serve``: the parcel account (= the run's zonal table row of the same polygon, i.e. ``gep vep``), the JSON
API, tiles, downloads, refusals of bad uploads, path traversal, offline docs, and the map in a real browser.

One run is made for the module: pipelines/sample.yaml (absolute paths) whose ``special_units`` layer is a
GeoPackage written here with three parcels: P (an irregular polygon inside the county), Q (a MultiPolygon) and E
(a polygon across the grid's western edge). The served answer for each must equal that run's
``tables/special_units.csv`` row (rel 1e-9).

Browser tests: uvicorn in a child process (``python -m uvicorn --factory gep_raster.serve:app_from_env``),
Playwright driving Debian's Chromium (the ``page`` fixture; skipped, with the reason, where it is absent).
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import shapely

from conftest import REPO, sample_config

RTOL = 1e-9
#: the sample grid (EPSG:32650, 30 m): x 600000..618000, y 3115600..3130000
P_LONLAT = [(118.0905, 28.2155), (118.1072, 28.2121), (118.1163, 28.2236), (118.1101, 28.2352),
            (118.0987, 28.2391), (118.0889, 28.2287), (118.0905, 28.2155)]


def _utm_ring(cx, cy, r, n=9, seed=0):
    rng = np.random.default_rng(seed)
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = r * rng.uniform(0.7, 1.2, n)
    pts = [(cx + a * np.cos(t), cy + a * np.sin(t)) for t, a in zip(ang, rad)]
    return pts + [pts[0]]


def _parcels():
    """P (lon/lat), Q (MultiPolygon, UTM 50N) and E (across the western edge of the grid, UTM 50N), as shapely
    geometries in EPSG:4326 (written to the special-units GeoPackage in that CRS)."""
    import geopandas as gpd

    p = shapely.Polygon(P_LONLAT)
    q = shapely.MultiPolygon([shapely.Polygon(_utm_ring(606000, 3121000, 450, seed=1)),
                              shapely.Polygon(_utm_ring(607600, 3120500, 300, seed=2))])
    e = shapely.Polygon(_utm_ring(600150, 3124000, 700, seed=3))
    utm = gpd.GeoSeries([q, e], crs="EPSG:32650").to_crs(4326)
    return {"P": p, "Q": utm.iloc[0], "E": utm.iloc[1]}


@pytest.fixture(scope="module")
def su_run(tmp_path_factory):
    """A sample run whose special_units layer holds the parcels P, Q, E; returns (run folder, parcels)."""
    import geopandas as gpd
    import yaml

    import gep_raster

    folder = tmp_path_factory.mktemp("serve")
    parcels = _parcels()
    gpd.GeoDataFrame({"pid": list(parcels), "pname": [f"parcel {k}" for k in parcels]},
                     geometry=list(parcels.values()), crs="EPSG:4326").to_file(folder / "parcels.gpkg")
    cfg_path = sample_config(folder, "su", chunk=256)
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    cfg["name"] = "su"
    cfg["layers"]["special_units"] = {"path": str(folder / "parcels.gpkg"), "id_field": "pid", "name_field": "pname",
                                      "role": "special_unit"}
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    res = gep_raster.run(cfg_path, accept_warnings=True)
    return Path(res.output_dir), parcels


@pytest.fixture(scope="module")
def client(su_run):
    from fastapi.testclient import TestClient

    from gep_raster.serve import create_app

    return TestClient(create_app([su_run[0]]))


def _geojson(g) -> dict:
    return json.loads(shapely.to_geojson(g))


def _table_row(run_dir: Path, pid: str) -> dict:
    import pandas as pd

    t = pd.read_csv(run_dir / "tables" / "special_units.csv", dtype={"pid": str, "pname": str}, encoding="utf-8-sig")
    return t.set_index("pid").loc[pid].to_dict()


def _assert_row_equal(row: dict, table: dict):
    compared = 0
    for k, v in row.items():
        if k not in table:
            continue
        assert v == pytest.approx(table[k], rel=RTOL, abs=1e-9), k
        compared += 1
    assert compared >= 20


# --------------------------------------------------------------------------------------
# parcel numbers = the run's special-unit rows (gep vep)
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("pid", ["P", "Q", "E"])
def test_parcel_equals_special_unit_row(client, su_run, pid):
    run_dir, parcels = su_run
    r = client.post("/api/parcel", json={"run": "0", "geometry": _geojson(parcels[pid])})
    assert r.status_code == 200, r.text
    acc = r.json()
    table = _table_row(run_dir, pid)
    _assert_row_equal(acc["row"], table)
    for k in ("area_km2", "valid_area_km2", "gep_r_yuan", "provisioning_yuan", "cultural_yuan", "gep_yuan"):
        assert k in acc["row"]
    t = acc["totals"]
    assert t["gep_yuan"] == pytest.approx(t["gep_r_yuan"] + t["epv_yuan"] + t["ecv_yuan"], rel=1e-12)
    assert acc["units"]["gep_r_yuan"] == "yuan/a" and acc["units"]["area_km2"] == "km2"
    assert acc["units"]["water_conservation_m3"] == "m3/a"
    by_service = {s["service"]: s for s in acc["services"]}
    assert by_service["water_conservation"]["value_yuan"] == pytest.approx(table["water_conservation_yuan"], rel=RTOL)
    assert by_service["soil_retention"]["physical"]["soil_retention_t"] == pytest.approx(table["soil_retention_t"],
                                                                                        rel=RTOL)
    if pid == "E":  # across the grid edge: only the part on the grid is counted, as in the run's table
        assert acc["parcel"]["grid_area_km2"] < 0.9 * acc["parcel"]["area_km2"]
        assert any("partly outside" in w for w in acc["warnings"])


def test_parcel_equals_gep_vep(su_run, tmp_path):
    """The VEP of `gep vep` for P = the parcel's GEP, and its service values are the parcel's."""
    from gep_raster.analysis.change import load_run
    from gep_raster.analysis.vep import vep_account
    from gep_raster.serve.parcel import parcel_account

    run_dir, parcels = su_run
    vep = {row["pid"]: row for row in vep_account(run_dir, "special_units", tmp_path / "vep")["rows"]}
    run = load_run(run_dir)
    for pid, g in parcels.items():
        acc = parcel_account(run, g, "EPSG:4326")  # the pure function, no server
        assert acc["totals"]["gep_yuan"] == pytest.approx(vep[pid]["vep_yuan"], rel=RTOL)
        for k in run.value_keys + ["gep_r_yuan", "area_km2"]:
            assert acc["row"][k] == pytest.approx(vep[pid][k], rel=RTOL, abs=1e-9), k


def test_parcel_in_grid_crs_and_as_feature(client, su_run):
    """The same parcel given in the grid's CRS (crs member) or as a Feature(Collection): the same numbers."""
    import geopandas as gpd

    run_dir, parcels = su_run
    base = client.post("/api/parcel", json={"run": "su", "geometry": _geojson(parcels["P"])}).json()["row"]
    utm = gpd.GeoSeries([parcels["P"]], crs=4326).to_crs(32650).iloc[0]
    r = client.post("/api/parcel", json={"run": "su", "geometry": _geojson(utm), "crs": "EPSG:32650"})
    assert r.status_code == 200, r.text
    assert r.json()["row"]["gep_r_yuan"] == pytest.approx(base["gep_r_yuan"], rel=1e-6)
    fc = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
                                                     "geometry": _geojson(parcels["P"])}]}
    r = client.post("/api/parcel", json={"run": "su", "geometry": fc})
    assert r.status_code == 200 and r.json()["row"] == base


def test_window_coverage_equals_whole_grid(su_run):
    """The coverage fractions on the parcel's window are those on the whole grid, cell for cell."""
    import geopandas as gpd

    from gep_raster.accounts.zonal import CoverageIndex
    from gep_raster.analysis.change import load_run
    from gep_raster.serve.parcel import _window, window_coverage

    run_dir, parcels = su_run
    grid = load_run(run_dir).grid
    t = grid.transform
    rng = np.random.default_rng(7)
    geoms = list(gpd.GeoSeries(list(parcels.values()), crs=4326).to_crs(grid.crs.to_wkt()))
    for i in range(15):
        cx, cy = t.c + rng.uniform(30, 570) * 30, t.f - rng.uniform(30, 450) * 30
        g = shapely.Polygon(_utm_ring(cx, cy, rng.uniform(60, 1500), n=int(rng.integers(4, 30)), seed=i))
        if g.is_valid:
            geoms.append(g)
    n = 0
    for g in geoms:
        full = CoverageIndex.build(gpd.GeoSeries([g], crs=grid.crs.to_wkt()), grid)
        r0, r1, c0, c1 = _window(g, grid)
        win = window_coverage(g, grid, r0, r1, c0, c1)
        a, b = full.entries(r0, r1, c0, c1), win.entries(0, r1 - r0, 0, c1 - c0)
        assert full.n_entries == win.n_entries == len(a[0])
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_allclose(win.covered_area_m2(), full.covered_area_m2(), rtol=1e-13)
        n += len(a[0])
    assert n > 10_000


# --------------------------------------------------------------------------------------
# downloads
# --------------------------------------------------------------------------------------
def test_downloads_csv_and_geojson(client, su_run):
    run_dir, parcels = su_run
    body = {"run": "su", "geometry": _geojson(parcels["P"])}
    acc = client.post("/api/parcel", json=body).json()
    r = client.post("/api/parcel?format=csv", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"] and ".csv" in r.headers["content-disposition"]
    rows = {row["quantity"]: row for row in csv.DictReader(io.StringIO(r.text))}
    assert set(acc["row"]) <= set(rows)
    for k, v in acc["row"].items():
        assert float(rows[k]["value"]) == v, k
        assert rows[k]["unit"] == acc["units"][k]
    assert rows["gep_r_yuan"]["unit"] == "yuan/a" and rows["soil_retention_t"]["unit"] == "t/a"
    r = client.post("/api/parcel?format=geojson", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 1
    f = fc["features"][0]
    assert f["geometry"]["type"] == "Polygon"
    assert shapely.geometry.shape(f["geometry"]).symmetric_difference(parcels["P"]).area < 1e-10
    for k, v in acc["row"].items():
        assert f["properties"][k] == v
    assert fc["units"]["gep_yuan"] == "yuan/a"
    assert client.post("/api/parcel?format=xml", json=body).status_code == 422


# --------------------------------------------------------------------------------------
# uploads
# --------------------------------------------------------------------------------------
def _upload(client, data: bytes, name: str, run="su", make_valid=False, url="/api/parcel"):
    return client.post(url, data={"run": run, "make_valid": "true" if make_valid else "false"},
                       files={"file": (name, data, "application/octet-stream")})


def _gpkg_bytes(tmp_path, geoms, crs) -> bytes:
    import geopandas as gpd

    p = tmp_path / "up.gpkg"
    gpd.GeoDataFrame({"a": range(len(geoms))}, geometry=geoms, crs=crs).to_file(p)
    return p.read_bytes()


def _zipped_shapefile(tmp_path, geoms, crs, *, prj=True) -> bytes:
    import geopandas as gpd

    import tempfile

    d = Path(tempfile.mkdtemp(dir=tmp_path))
    gpd.GeoDataFrame({"a": range(len(geoms))}, geometry=geoms, crs=crs).to_file(d / "parcel.shp")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(d.iterdir()):
            if prj or f.suffix != ".prj":
                zf.write(f, f"folder/{f.name}")
    return buf.getvalue()


def test_uploads_geojson_gpkg_shapefile(client, su_run, tmp_path):
    import geopandas as gpd

    run_dir, parcels = su_run
    table = _table_row(run_dir, "P")
    utm = list(gpd.GeoSeries([parcels["P"]], crs=4326).to_crs(32650))
    fc = {"type": "FeatureCollection",
          "features": [{"type": "Feature", "properties": {"n": 1}, "geometry": _geojson(parcels["P"])}]}
    uploads = {"p.geojson": json.dumps(fc).encode(), "p.gpkg": _gpkg_bytes(tmp_path, [parcels["P"]], 4326),
               "p.zip": _zipped_shapefile(tmp_path, [parcels["P"]], 4326)}
    for name, data in uploads.items():
        r = _upload(client, data, name)
        assert r.status_code == 200, (name, r.text)
        _assert_row_equal(r.json()["row"], table)
        assert r.json()["source"]["upload"] == name
    # a shapefile in the grid CRS (the .prj says so): the same parcel, reprojected the other way
    r = _upload(client, _zipped_shapefile(tmp_path, utm, 32650), "utm.zip")
    assert r.status_code == 200, r.text
    assert r.json()["row"]["gep_r_yuan"] == pytest.approx(table["gep_r_yuan"], rel=1e-6)
    # no .prj but lon/lat coordinates: taken as WGS84, with a warning
    r = _upload(client, _zipped_shapefile(tmp_path, [parcels["P"]], 4326, prj=False), "noprj.zip")
    assert r.status_code == 200, r.text
    assert any("no CRS" in w for w in r.json()["warnings"])
    _assert_row_equal(r.json()["row"], table)


def test_bad_uploads_4xx_with_message(client, su_run, tmp_path):
    import geopandas as gpd

    run_dir, parcels = su_run
    p_utm = gpd.GeoSeries([parcels["P"]], crs=4326).to_crs(32650).iloc[0]
    point = {"type": "Point", "coordinates": [118.1, 28.22]}
    line = {"type": "Feature", "properties": {}, "geometry": {"type": "LineString",
                                                                "coordinates": [[118.1, 28.22], [118.11, 28.23]]}}
    bowtie = {"type": "Polygon", "coordinates": [[[118.09, 28.21], [118.11, 28.23], [118.11, 28.21], [118.09, 28.23],
                                                  [118.09, 28.21]]]}
    beijing = {"type": "Polygon", "coordinates": [[[116.3, 39.9], [116.31, 39.9], [116.31, 39.91], [116.3, 39.91],
                                                   [116.3, 39.9]]]}
    huge = {"type": "Polygon", "coordinates": [[[117.9, 28.1], [118.3, 28.1], [118.3, 28.4], [117.9, 28.4],
                                                [117.9, 28.1]]]}
    projected_geojson = json.dumps({"type": "Feature", "properties": {}, "geometry": _geojson(p_utm)}).encode()
    cases = [
        # (how, payload, expected status, code, words of the message)
        ("json", {"run": "su", "geometry": point}, 422, "not_polygon", "not a polygon"),
        ("file", (json.dumps(line).encode(), "line.geojson"), 422, "not_polygon", "LineString"),
        ("file", (_zipped_shapefile(tmp_path, [p_utm], 32650, prj=False), "noprj.zip"), 422, "no_crs", ".prj"),
        ("file", (projected_geojson, "utm_without_crs.geojson"), 422, "not_lonlat", "not lon/lat"),
        ("json", {"run": "su", "geometry": beijing}, 422, "outside_extent", "outside the run's extent"),
        ("json", {"run": "su", "geometry": bowtie}, 422, "invalid_geometry", "Self-intersection"),
        ("file", (json.dumps(bowtie).encode(), "bowtie.geojson"), 422, "invalid_geometry", "make_valid"),
        ("json", {"run": "su", "geometry": huge}, 422, "too_large", "10 %"),
        ("json", {"run": "nope", "geometry": _geojson(parcels["P"])}, 404, "not_found", "unknown run"),
        ("file", (json.dumps(point).encode(), "x.geojson", "nope"), 404, "not_found", "unknown run"),
        ("file", (b"this is not a geo file", "x.geojson"), 422, "unreadable", "not a GeoJSON, GeoPackage or zipped"),
        ("file", (b"{not json", "x.geojson"), 422, "unreadable", "not readable JSON"),
        ("file", (b"SQLite format 3\x00" + b"\x00garbage" * 50, "x.gpkg"), 422, "unreadable", "cannot read"),
        ("file", (b"PK\x03\x04garbage", "x.zip"), 422, "unreadable", "zip"),
        ("file", (_zip_of({"readme.txt": b"hi"}), "noshp.zip"), 422, "unreadable", "exactly one .shp"),
        ("file", (b"", "empty.geojson"), 422, "unreadable", "empty"),
        ("json", {"run": "su", "geometry": {"type": "Polygon", "coordinates": [[1, 2]]}}, 422, "bad_request",
         "not a GeoJSON geometry"),
        ("json", {"run": "su"}, 422, "bad_request", "geometry"),
    ]
    for how, payload, status, code, words in cases:
        if how == "json":
            r = client.post("/api/parcel", json=payload)
        else:
            r = _upload(client, payload[0], payload[1], run=payload[2] if len(payload) > 2 else "su")
        assert r.status_code == status, (payload if how == "json" else payload[1], r.text)
        body = r.json()
        assert body["code"] == code, body
        assert words.lower() in body["detail"].lower(), body
        assert "Traceback" not in r.text
    # make_valid repairs the bow-tie
    r = client.post("/api/parcel", json={"run": "su", "geometry": bowtie, "make_valid": True})
    assert r.status_code == 200 and any("make_valid" in w for w in r.json()["warnings"])
    r = _upload(client, json.dumps(bowtie).encode(), "bowtie.geojson", make_valid=True)
    assert r.status_code == 200
    # not JSON, unsupported content type, form without file
    r = client.post("/api/parcel", content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not JSON" in r.json()["detail"]
    r = client.post("/api/parcel", content=b"hello", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = client.post("/api/parcel", data={"run": "su"}, files={"other": ("a", b"x")})
    assert r.status_code == 422 and "no 'file'" in r.json()["detail"]


def _zip_of(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, v in members.items():
            zf.writestr(k, v)
    return buf.getvalue()


def test_upload_size_limit_413(su_run):
    from fastapi.testclient import TestClient

    from gep_raster.serve import create_app

    c = TestClient(create_app([su_run[0]], max_upload_bytes=20_000))
    big = json.dumps({"type": "Feature", "properties": {"pad": "x" * 30_000},
                      "geometry": _geojson(su_run[1]["P"])}).encode()
    r = _upload(c, big, "big.geojson")
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    r = c.post("/api/parcel", json={"run": "su", "geometry": _geojson(su_run[1]["P"]), "pad": "x" * 30_000})
    assert r.status_code == 413
    assert c.post("/api/parcel", json={"run": "su", "geometry": _geojson(su_run[1]["P"])}).status_code == 200


def test_unexpected_error_is_json_500_without_traceback(su_run, monkeypatch, caplog):
    from fastapi.testclient import TestClient

    import gep_raster.serve.parcel as parcel_mod
    from gep_raster.serve import create_app

    def boom(*a, **k):
        raise RuntimeError("secret /internal/path detail")

    monkeypatch.setattr(parcel_mod, "parcel_account", boom)
    c = TestClient(create_app([su_run[0]]), raise_server_exceptions=False)
    with caplog.at_level("ERROR", logger="gep_raster.serve"):
        r = c.post("/api/parcel", json={"run": "su", "geometry": _geojson(su_run[1]["P"])})
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert r.json()["code"] == "internal" and "internal error" in r.json()["detail"]
    assert "secret" not in r.text and "Traceback" not in r.text
    assert any("secret" in (rec.exc_text or "") or rec.exc_info for rec in caplog.records)


# --------------------------------------------------------------------------------------
# API, tiles, path traversal, docs
# --------------------------------------------------------------------------------------
def test_api_runs_lists_the_run(client, su_run):
    r = client.get("/api/runs")
    assert r.status_code == 200
    runs = r.json()["runs"]
    assert len(runs) == 1
    run = runs[0]
    assert run["id"] == "su" and run["index"] == 0 and run["name"] == "su" and run["accounting_year"] == 2024
    assert "water_conservation" in run["services"] and run["has_gep"]
    keys = {x["key"] for x in run["rasters"]}
    assert {"gep_r_yuan", "water_conservation_yuan", "soil_retention_t", "provisioning_yuan"} <= keys
    assert {x["name"] for x in run["layers"]} == {"county", "township", "special_units"}
    w, s, e, n = run["bounds_wgs84"]
    assert 117.9 < w < e < 118.3 and 28.1 < s < n < 28.4
    assert run["grid"]["crs"] == "EPSG:32650" and run["grid"]["width"] == 600
    assert str(su_run[0]) not in r.text and str(su_run[0].parent) not in r.text  # no file-system paths
    assert client.get("/api/runs/0").json()["id"] == "su"
    assert r.json()["limits"]["max_area_share"] == 0.1


def test_layer_geojson_with_accounts(client, su_run):
    import pandas as pd

    run_dir, _ = su_run
    r = client.get("/api/runs/su/layers/township")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    fc = r.json()
    t = pd.read_csv(run_dir / "tables" / "township.csv", dtype={"town_code": str}, encoding="utf-8-sig")
    assert len(fc["features"]) == len(t)
    f = fc["features"][0]
    row = t.set_index("town_code").loc[f["properties"]["town_code"]]
    assert f["properties"]["gep_r_yuan"] == pytest.approx(row["gep_r_yuan"], rel=1e-12)
    lon, lat = np.asarray(shapely.geometry.shape(f["geometry"]).centroid.coords[0])
    assert 117.9 < lon < 118.3 and 28.1 < lat < 28.4  # WGS84
    assert fc["units"]["gep_r_yuan"] == "yuan/a" and fc["id_field"] == "town_code"
    assert client.get("/api/runs/su/layers/nope").status_code == 404


def _tile_of(lon, lat, z):
    import morecantile

    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, z)
    return t.x, t.y


def test_tiles_inside_and_outside(client, su_run):
    from PIL import Image

    x, y = _tile_of(118.105, 28.225, 13)
    r = client.get(f"/tiles/su/gep_r_yuan/13/{x}/{y}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    im = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGBA"))
    assert im.shape == (256, 256, 4) and (im[..., 3] > 0).mean() > 0.9
    assert len(np.unique(im[..., :3].reshape(-1, 3), axis=0)) > 10  # a colour scale, not one colour
    r = client.get(f"/tiles/su/soil_retention_t/12/{x // 2}/{y // 2}.png")
    assert r.status_code == 200 and (np.asarray(Image.open(io.BytesIO(r.content)).convert("RGBA"))[..., 3] > 0).any()
    for z, tx, ty in ((13, 0, 0), (5, 3, 7)):  # far from the run
        r = client.get(f"/tiles/su/gep_r_yuan/{z}/{tx}/{ty}.png")
        assert r.status_code in (200, 204, 404)
        if r.status_code == 200:
            assert (np.asarray(Image.open(io.BytesIO(r.content)).convert("RGBA"))[..., 3] == 0).all()
    assert client.get("/tiles/su/gep_r_yuan/3/8/0.png").status_code == 404  # x out of range at z 3
    lg = client.get("/api/runs/su/rasters/gep_r_yuan/legend").json()
    assert lg["max"] > lg["min"] > 0 and lg["unit"] == "yuan/a per pixel" and len(lg["colors"]) == 11


@pytest.mark.parametrize("url", [
    "/tiles/su/..%2Fmanifest.json/1/0/0.png", "/tiles/su/..%2F..%2Fmanifest/1/0/0.png", "/tiles/su/%2E%2E/1/0/0.png",
    "/tiles/..%2Fsu/gep_r_yuan/1/0/0.png", "/tiles/%2E%2E/gep_r_yuan/1/0/0.png",
    "/tiles/su/ls_factor/12/0/0.png",  # an existing file of the run, not in the whitelist (intermediate)
    "/tiles/su/rasters%2Fgep_r_yuan.tif/12/0/0.png", "/tiles/su/..%5Cmanifest.json/1/0/0.png",
    "/api/runs/..%2F..%2Fetc/layers/county", "/api/runs/su/layers/..%2F..%2Fmanifest",
    "/api/runs/su/layers/%2E%2E%2Ftables%2Fcounty", "/api/runs/%2E%2E", "/api/runs/su/rasters/..%2Fgep_r_yuan/legend",
    "/static/..%2F..%2Fserve%2Fapp.py", "/static/%2E%2E/app.py"])
def test_path_traversal_404(client, url):
    r = client.get(url)
    assert r.status_code == 404, (url, r.status_code, r.text[:200])
    assert "Traceback" not in r.text


def test_run_path_traversal_in_parcel_404(client, su_run):
    for run in ("../su", "..", "/etc/passwd", str(su_run[0])):
        r = client.post("/api/parcel", json={"run": run, "geometry": _geojson(su_run[1]["P"])})
        assert r.status_code == 404, run


def _local_refs(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html) + re.findall(r"url:\s*'([^']+)'", html)


def test_docs_and_page_reference_only_local_urls(client):
    r = client.get("/docs")
    assert r.status_code == 200
    refs = _local_refs(r.text)
    assert len(refs) >= 4
    for u in refs:
        assert u.startswith("/") and not u.startswith("//"), u
        assert client.get(u).status_code == 200, u
    assert "http://" not in r.text and "https://" not in r.text and "cdn" not in r.text.lower()
    spec = client.get("/openapi.json").json()
    assert {"/api/runs", "/api/parcel", "/api/runs/{run_id}/layers/{layer}",
            "/tiles/{run_id}/{raster}/{z}/{x}/{y}.png"} <= set(spec["paths"])
    page = client.get("/")
    assert page.status_code == 200
    for u in _local_refs(page.text):
        assert "://" not in u and not u.startswith("//"), u
        assert client.get("/" + u.lstrip("/")).status_code == 200, u
    static = Path(__import__("gep_raster.serve", fromlist=["x"]).__file__).parent / "static"
    for f in ("index.html", "app.js", "app.css"):
        text = (static / f).read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, f
    for f in ("leaflet/leaflet.js", "leaflet/leaflet.css", "leaflet/LICENSE", "swagger-ui/swagger-ui-bundle.js",
              "swagger-ui/swagger-ui.css", "swagger-ui/LICENSE"):
        assert (static / "vendor" / f).is_file(), f


def test_create_app_refuses_non_runs(tmp_path):
    from gep_raster.errors import ConfigError, InputError
    from gep_raster.serve import create_app

    with pytest.raises(InputError, match="manifest.json"):
        create_app([tmp_path])
    with pytest.raises(ConfigError):
        create_app([])


def test_cli_serve_registered(monkeypatch, su_run):
    """``register(app)`` adds ``serve``; it builds the app and hands it to uvicorn.run with host and port."""
    import typer
    from typer.testing import CliRunner

    import uvicorn

    from gep_raster.serve import register

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    app = typer.Typer()
    register(app)

    @app.command("other")
    def other():  # a second command, so that typer keeps "serve" as a sub-command
        pass

    res = CliRunner().invoke(app, ["serve", str(su_run[0]), "--port", "8123", "-q"])
    assert res.exit_code == 0, res.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    assert "serving 1 run(s) on http://127.0.0.1:8123/" in res.output
    res = CliRunner().invoke(app, ["serve", "/nonexistent/run"])
    assert res.exit_code == 1 and "manifest.json" in res.output


# --------------------------------------------------------------------------------------
# the map in a real browser (uvicorn in a child process)
# --------------------------------------------------------------------------------------
def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def server(su_run):
    """uvicorn serving the run in a child process (GDAL/pyogrio may hold the GIL: not a thread of this process)."""
    port = _free_port()
    env = dict(os.environ, GEP_SERVE_RUNS=str(su_run[0]), PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "gep_raster.serve:app_from_env",
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                            env=env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(url + "/api/runs", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            out = proc.stdout.read().decode(errors="replace")
            pytest.fail(f"uvicorn did not start: {out[-2000:]}")
        time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stdout.close()


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url + "/api/parcel", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _wait_tiles(page):
    page.wait_for_function("Array.from(document.querySelectorAll('img.leaflet-tile'))"
                           ".some(i => i.complete && i.naturalWidth > 0)", timeout=30_000)


def _shown(page, sel: str) -> float:
    return float(page.locator(sel).get_attribute("data-value"))


def test_browser_map_draw_upload(page, server, su_run, tmp_path):
    run_dir, parcels = su_run
    external = []
    page.on("request", lambda req: external.append(req.url) if not req.url.startswith(server) and
            not req.url.startswith(("data:", "blob:")) else None)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/")
    _wait_tiles(page)
    page.wait_for_function("gepApp.state.layersReady === true", timeout=30_000)
    assert page.locator("#legend .bar").count() == 1
    assert page.locator("#raster-select option").count() >= 20

    # an account row on click: the centre of special unit P
    pt = page.evaluate("([lat, lon]) => { const p = gepApp.map.latLngToContainerPoint([lat, lon]); "
                       "const r = document.getElementById('map').getBoundingClientRect(); "
                       "return [r.left + p.x, r.top + p.y]; }", [parcels["P"].centroid.y, parcels["P"].centroid.x])
    page.mouse.click(*pt)
    page.wait_for_selector(".leaflet-popup-content .popup-table", timeout=10_000)
    assert "parcel P" in page.locator(".leaflet-popup-content").inner_text()

    # draw a parcel by clicking the map, compare the shown GEP-R with the API's for the same polygon
    box = page.locator("#map").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.click("#draw-start")
    for dx, dy in ((-30, -25), (35, -30), (40, 20), (0, 38), (-35, 25)):
        page.mouse.click(cx + dx, cy + dy)
    page.click("#draw-finish")
    page.wait_for_selector("#result-gep-r", timeout=30_000)
    drawn = page.evaluate("gepApp.state.lastParcel")
    assert drawn["type"] == "Polygon" and len(drawn["coordinates"][0]) == 6
    api = _post(server, {"run": "su", "geometry": drawn})
    assert _shown(page, "#result-gep-r") == pytest.approx(api["totals"]["gep_r_yuan"], rel=1e-12)
    assert _shown(page, "#result-gep") == pytest.approx(api["totals"]["gep_yuan"], rel=1e-12)
    shown_text = page.locator("#result-gep-r").inner_text()
    assert float(shown_text.replace(",", "")) == pytest.approx(api["totals"]["gep_r_yuan"], abs=0.5)

    # a bad file through the file input: the message is shown
    bad = tmp_path / "point.geojson"
    bad.write_text(json.dumps({"type": "Point", "coordinates": [118.1, 28.22]}))
    page.set_input_files("#parcel-file", str(bad))
    page.wait_for_selector("#message.error:not([hidden])", timeout=20_000)
    assert "not a polygon" in page.locator("#message").inner_text()

    # a parcel file through the file input: the numbers of the run's table for P
    good = tmp_path / "p.geojson"
    good.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": _geojson(parcels["P"])}]}))
    page.set_input_files("#parcel-file", str(good))
    page.wait_for_function("document.getElementById('message').hidden && !document.getElementById('result').hidden",
                           timeout=20_000)
    table = _table_row(run_dir, "P")
    page.wait_for_function(f"Math.abs(Number(document.getElementById('result-area').dataset.value) - "
                           f"{table['area_km2']}) < 1e-9", timeout=20_000)
    assert _shown(page, "#result-gep-r") == pytest.approx(table["gep_r_yuan"], rel=RTOL)
    assert _shown(page, "#result-gep") == pytest.approx(table["gep_yuan"], rel=RTOL)

    # the downloads work from the page
    with page.expect_download() as dl:
        page.click("#download-csv")
    text = Path(dl.value.path()).read_text(encoding="utf-8")
    assert text.startswith("quantity,service,kind,value,unit") and "gep_r_yuan" in text

    # screenshot for the README (< 400 KB)
    page.evaluate("gepApp.map.setView(gepApp.state.parcelLayer.getBounds().getCenter(), gepApp.map.getZoom() + 1); "
                  "document.getElementById('panel').scrollTop = 0")
    page.wait_for_timeout(300)
    _wait_tiles(page)
    page.wait_for_function("Array.from(document.querySelectorAll('img.leaflet-tile'))"
                           ".every(i => i.complete)", timeout=30_000)
    page.wait_for_timeout(500)
    out = REPO / "docs" / "img" / "serve.png"
    _screenshot(page, out)
    assert out.stat().st_size < 400_000
    assert not errors, errors
    assert not external, external[:5]


def _screenshot(page, out: Path) -> None:
    """The page as a palette PNG (256 colours: the tiles' viridis and the UI fit)."""
    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    im = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)


def test_browser_docs_offline(page, server):
    """Swagger UI at /docs renders from the vendored files alone."""
    external = []
    page.on("request", lambda req: external.append(req.url) if not req.url.startswith(server) else None)
    page.goto(server + "/docs")
    page.wait_for_selector(".swagger-ui .information-container", timeout=30_000)
    page.wait_for_selector(".opblock-summary-path[data-path=\"/api/parcel\"]", timeout=30_000)
    assert not external, external[:5]
