"""STAC inputs (gep_raster.grid.stac): static catalogues (local and over HTTP) and a STAC API searched through
pystac-client, filtering, the mosaic order, every error message; and the sample catalogue of
pipelines/make_sample_stac.py (deterministic, resolves to the real sample files).

Everything is offline: catalogues are written into tmp_path with pystac, HTTP servers run on 127.0.0.1 in a thread.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine

from http_range_server import RangeServer, closed_port

from gep_raster.errors import ConfigError, InputError
from gep_raster.grid.stac import StacError, StacResolution, bbox_intersects, parse_datetime_query, search_stac

REPO = Path(__file__).resolve().parents[1]
NAME = "inputs.et.path.stac"
UTC = timezone.utc
CORE = "https://api.stacspec.org/v1.0.0/core"
ITEM_SEARCH = "https://api.stacspec.org/v1.0.0/item-search"


# -- fixtures: tiny GeoTIFFs and catalogues ----------------------------------------------------------------------------
def _tif(path: Path, bbox) -> Path:
    w, s, e, n = bbox
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=2, height=2, count=1, dtype="uint8", crs="EPSG:4326",
                       transform=Affine((e - w) / 2, 0, w, 0, -(n - s) / 2, n), nodata=255) as ds:
        ds.write(np.ones((2, 2), np.uint8), 1)
    return path


def _t(s: str | None):
    return None if s is None else datetime.fromisoformat(s).replace(tzinfo=UTC)


def _item(spec: dict, data_dir: Path) -> pystac.Item:
    w, s, e, n = spec["bbox"]
    geom = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    item = pystac.Item(id=spec["id"], geometry=geom, bbox=list(spec["bbox"]), datetime=_t(spec.get("datetime")),
                       properties={}, start_datetime=_t(spec.get("start")), end_datetime=_t(spec.get("end")))
    for key in spec.get("assets", ["data"]):
        tif = _tif(data_dir / f"{spec['id']}_{key}.tif", spec["bbox"])
        item.add_asset(key, pystac.Asset(href=str(tif), media_type=pystac.MediaType.GEOTIFF, roles=["data"]))
    return item


#: the standard test catalogue: collection -> item specs
SPECS = {
    "lc": [
        {"id": "lc_a", "bbox": (0, 0, 1, 1), "datetime": "2020-06-01T00:00:00"},
        {"id": "lc_c", "bbox": (0, 0, 2, 1), "datetime": "2021-06-01T00:00:00"},
        {"id": "lc_b", "bbox": (1, 0, 2, 1), "datetime": "2021-06-01T00:00:00"},
        # datetime null: start/end range (2019); bbox removed from its JSON below, so geometry bounds are used
        {"id": "lc_d", "bbox": (5, 5, 6, 6), "start": "2019-01-01T00:00:00", "end": "2019-12-31T23:59:59"},
    ],
    "et": [
        {"id": "et_2020", "bbox": (0, 0, 2, 1), "datetime": "2020-01-01T00:00:00", "assets": ["data", "quality"]},
    ],
}


def make_catalog(folder: Path, specs=SPECS, *, sub_catalog: bool = True) -> Path:
    """A self-contained catalogue under ``folder``; collection ``et`` sits in a sub-catalogue (recursive walk)."""
    data = folder / "data"
    cat = pystac.Catalog(id="test", description="test catalogue")
    parent = cat
    for cid in sorted(specs):
        items = [_item(s, data) for s in specs[cid]]
        coll = pystac.Collection(id=cid, description=cid, license="MIT", extent=pystac.Extent(
            pystac.SpatialExtent([[-180, -90, 180, 90]]), pystac.TemporalExtent([[None, None]])))
        for it in items:
            coll.add_item(it)
        if cid == "et" and sub_catalog:
            parent = pystac.Catalog(id="climate", description="sub-catalogue")
            cat.add_child(parent)
            parent.add_child(coll)
        else:
            cat.add_child(coll)
    cat.normalize_hrefs(str(folder / "stac"))
    cat.make_all_asset_hrefs_relative()
    cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    for p in (folder / "stac").rglob("lc_d.json"):
        d = json.loads(p.read_text())
        del d["bbox"]
        p.write_text(json.dumps(d))
    return folder / "stac" / "catalog.json"


@pytest.fixture
def cat(tmp_path) -> Path:
    return make_catalog(tmp_path)


def ids(res: StacResolution) -> list[str]:
    return [a.item_id for a in res.assets]


# -- static, local ---------------------------------------------------------------------------------------------------
def test_collection_filter_and_mosaic_order(cat, tmp_path):
    res = search_stac(NAME, str(cat), asset="data", collection="lc")
    # newest first; 2021 tie broken by id; lc_d has datetime null -> its start_datetime (2019)
    assert ids(res) == ["lc_b", "lc_c", "lc_a", "lc_d"]
    assert [a.datetime for a in res.assets] == ["2021-06-01T00:00:00Z", "2021-06-01T00:00:00Z",
                                                "2020-06-01T00:00:00Z", "2019-01-01T00:00:00Z"]
    assert res.api is False and res.catalog == str(cat)
    assert {a.collection for a in res.assets} == {"lc"} and {a.asset_key for a in res.assets} == {"data"}
    assert res.hrefs == [str(tmp_path / "data" / f"{i}_data.tif") for i in ids(res)]
    assert all(Path(h).is_absolute() and Path(h).is_file() for h in res.hrefs)


def test_no_collection_walks_sub_catalogues(cat):
    res = search_stac(NAME, str(cat), asset="data")
    assert ids(res) == ["lc_b", "lc_c", "lc_a", "et_2020", "lc_d"]
    assert res.assets[3].collection == "et"
    assert ids(search_stac(NAME, str(cat), asset="quality", collection="et")) == ["et_2020"]


@pytest.mark.parametrize("bbox, expected", [
    ((0.2, 0.2, 0.8, 0.8), ["lc_c", "lc_a"]),
    ((1.5, 0.5, 1.6, 0.6), ["lc_b", "lc_c"]),
    ((2.0, 0.0, 3.0, 1.0), ["lc_b", "lc_c"]),          # touching the east edge counts (intersects)
    ((5.5, 5.5, 5.6, 5.6), ["lc_d"]),                  # lc_d has no bbox: geometry bounds
    ((179.0, 0.5, 0.5, 0.7), ["lc_c", "lc_a"]),        # west > east: crosses the antimeridian
])
def test_bbox_filter(cat, bbox, expected):
    res = search_stac(NAME, str(cat), asset="data", collection="lc", bbox=bbox)
    assert ids(res) == expected
    assert res.query["bbox"] == list(bbox) and res.query["filter"]["bbox"] == list(bbox)


@pytest.mark.parametrize("dt, expected, normalised", [
    ("2021-01-01/2021-12-31", ["lc_b", "lc_c"], "2021-01-01T00:00:00Z/2021-12-31T23:59:59.999999Z"),
    ("../2020-12-31", ["lc_a", "lc_d"], "../2020-12-31T23:59:59.999999Z"),
    ("2020-06-01T00:00:00Z/..", ["lc_b", "lc_c", "lc_a"], "2020-06-01T00:00:00Z/.."),
    ("/2019-06-30", ["lc_d"], "../2019-06-30T23:59:59.999999Z"),
    ("2019-06-15T12:00:00Z", ["lc_d"], "2019-06-15T12:00:00Z"),   # instant inside lc_d's range
    ("2020-06-01", ["lc_a"], "2020-06-01T00:00:00Z/2020-06-01T23:59:59.999999Z"),
    ("2019", ["lc_d"], "2019-01-01T00:00:00Z/2019-12-31T23:59:59.999999Z"),
])
def test_datetime_filter(cat, dt, expected, normalised):
    res = search_stac(NAME, str(cat), asset="data", collection="lc", datetime=dt)
    assert ids(res) == expected
    assert res.query["datetime"] == dt and res.query["filter"]["datetime"] == normalised


def test_datetime_with_offset_is_converted_to_utc(cat):
    res = search_stac(NAME, str(cat), asset="data", collection="lc", datetime="2020-06-01T02:00:00+02:00")
    assert ids(res) == ["lc_a"] and res.query["filter"]["datetime"] == "2020-06-01T00:00:00Z"
    # 2020-06-01T01:00Z / 2020-05-31T23:00Z once converted to UTC: the start is after the end
    with pytest.raises(ConfigError, match="the start is after the end"):
        search_stac(NAME, str(cat), asset="data", datetime="2020-05-31T20:00:00-05:00/2020-06-01T00:00:00+01:00")


def test_all_filters_together_and_describe(cat):
    res = search_stac(NAME, str(cat), asset="data", collection="lc", bbox=(0.5, 0.5, 1.5, 0.9),
                      datetime="2020-01-01/2021-12-31", max_items=3)
    assert ids(res) == ["lc_b", "lc_c", "lc_a"]
    d = res.describe()
    assert json.loads(json.dumps(d)) == d
    assert d["catalog"] == str(cat) and d["api"] is False
    assert d["query"] == {"collection": "lc", "asset": "data", "datetime": "2020-01-01/2021-12-31",
                          "bbox": [0.5, 0.5, 1.5, 0.9], "max_items": 3,
                          "filter": {"collections": ["lc"], "bbox": [0.5, 0.5, 1.5, 0.9],
                                     "datetime": "2020-01-01T00:00:00Z/2021-12-31T23:59:59.999999Z"}}
    assert d["items"][0] == {"id": "lc_b", "collection": "lc", "datetime": "2021-06-01T00:00:00Z", "asset": "data",
                             "href": res.hrefs[0]}


def test_relative_path_folder_and_file_url(cat, tmp_path):
    res = search_stac(NAME, "stac/catalog.json", asset="data", collection="lc", base_dir=tmp_path)
    assert res.catalog == str(cat) and len(res.assets) == 4
    assert search_stac(NAME, "stac", asset="data", collection="lc", base_dir=tmp_path).catalog == str(cat)
    assert search_stac(NAME, cat.as_uri(), asset="data", collection="lc").hrefs == res.hrefs
    coll = next(cat.parent.rglob("lc/collection.json"))
    assert ids(search_stac(NAME, str(coll), asset="data")) == ["lc_b", "lc_c", "lc_a", "lc_d"]


def test_parallel_calls_are_independent(cat):
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda c: search_stac(NAME, str(cat), asset="data", collection=c),
                              ["lc", "et", "lc", "et"]))
    assert [ids(r) for r in results] == [["lc_b", "lc_c", "lc_a", "lc_d"], ["et_2020"]] * 2


# -- errors ----------------------------------------------------------------------------------------------------------
def _err(cls, **kw):
    with pytest.raises(cls) as ei:
        search_stac(NAME, **kw)
    msg = str(ei.value)
    assert msg.startswith(NAME + ": "), msg
    assert ei.value.__cause__ is None and (ei.value.__suppress_context__ or ei.value.__context__ is None)
    return msg


def test_catalogue_not_found_not_json_not_stac(tmp_path):
    msg = _err(StacError, catalog=str(tmp_path / "nope" / "catalog.json"), asset="data")
    assert f"STAC catalogue {tmp_path / 'nope' / 'catalog.json'} not found" in msg
    (tmp_path / "bad.json").write_text("{not json")
    assert "bad.json: not JSON" in _err(StacError, catalog=str(tmp_path / "bad.json"), asset="data")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    msg = _err(StacError, catalog=str(tmp_path / "other.json"), asset="data")
    assert "other.json: not a STAC catalogue or collection (its 'type' is None" in msg
    (tmp_path / "list.json").write_text("[1, 2]")
    assert "not a STAC catalogue (the JSON is a list" in _err(StacError, catalog=str(tmp_path / "list.json"),
                                                               asset="data")
    (tmp_path / "empty").mkdir()
    assert "a folder without catalog.json or collection.json" in _err(StacError, catalog=str(tmp_path / "empty"),
                                                                       asset="data")
    assert issubclass(StacError, InputError)


def test_an_item_is_not_a_catalogue(cat):
    item = next(cat.parent.rglob("lc_a.json"))
    assert "not a STAC catalogue or collection (a STAC Item; give the catalog.json" in _err(
        StacError, catalog=str(item), asset="data")


def test_invalid_stac_catalogue(tmp_path):
    (tmp_path / "catalog.json").write_text('{"type": "Catalog", "id": "x"}')
    msg = _err(StacError, catalog=str(tmp_path / "catalog.json"), asset="data")
    assert "not valid STAC" in msg or "invalid STAC object" in msg


def test_no_item_matched_repeats_the_query(cat):
    msg = _err(StacError, catalog=str(cat), asset="data", collection="nope", bbox=(0, 0, 1, 1),
               datetime="2020-01-01/2020-12-31")
    assert (f"STAC catalogue {cat}: no item matches the query (collection='nope', bbox=[0.0, 0.0, 1.0, 1.0], "
            "datetime='2020-01-01/2020-12-31'); collections in the catalogue: et, lc") in msg
    msg = _err(StacError, catalog=str(cat), asset="data", bbox=(100, 10, 101, 11))
    assert "no item matches the query (any collection, bbox=[100.0, 10.0, 101.0, 11.0])" in msg


def test_missing_asset_key_lists_the_items_keys(cat):
    msg = _err(StacError, catalog=str(cat), asset="cog", collection="et")
    assert f"STAC catalogue {cat}: item 'et_2020' (collection 'et') has no asset 'cog'; its asset keys: data, " \
           "quality" in msg


def test_more_than_max_items_is_an_error(cat):
    msg = _err(StacError, catalog=str(cat), asset="data", collection="lc", max_items=3)
    assert f"STAC catalogue {cat}: more than max_items=3 items match (collection='lc'); narrow the query" in msg
    assert len(search_stac(NAME, str(cat), asset="data", collection="lc", max_items=4).assets) == 4


def test_missing_asset_file_and_broken_item_link(cat, tmp_path):
    (tmp_path / "data" / "lc_a_data.tif").unlink()
    msg = _err(StacError, catalog=str(cat), asset="data", collection="lc")
    assert f"item 'lc_a' asset 'data': file {tmp_path / 'data' / 'lc_a_data.tif'} not found" in msg
    broken = next(cat.parent.rglob("lc_b.json"))
    broken.unlink()
    msg = _err(StacError, catalog=str(cat), asset="data", collection="lc")
    assert f"cannot read {broken} while walking the catalogue: file not found" in msg


def test_broken_item_json_is_reported_with_its_path(cat):
    bad = next(cat.parent.rglob("lc_b.json"))
    bad.write_text("{oops")
    msg = _err(StacError, catalog=str(cat), asset="data", collection="lc")
    assert f"cannot read {bad} while walking the catalogue: not JSON" in msg


@pytest.mark.parametrize("kw, text", [
    ({"datetime": "2020-13-01"}, "datetime '2020-13-01': '2020-13-01' is not a valid date"),
    ({"datetime": "yesterday"}, "'yesterday' is not an RFC 3339 date-time or date"),
    ({"datetime": "../.."}, "both ends of the interval are open"),
    ({"datetime": "2021/2020"}, "the start is after the end"),
    ({"datetime": "2020/2021/2022"}, "at most one '/'"),
    ({"datetime": ""}, "datetime must be a non-empty string"),
    ({"bbox": (0, 0, 200, 1)}, "is not [west, south, east, north] in WGS84 degrees"),
    ({"bbox": (0, 1, 1, 0)}, "is not [west, south, east, north] in WGS84 degrees"),
    ({"bbox": (0, 0, 1)}, "bbox must be 4 finite numbers"),
    ({"bbox": "abc"}, "bbox must be 4 numbers"),
    ({"max_items": 0}, "max_items must be a positive integer, got 0"),
    ({"asset": ""}, "asset must be the non-empty key"),
    ({"collection": ""}, "collection must be a non-empty collection id"),
    ({"catalog": "s3://bucket/catalog.json"}, "unsupported URL scheme 's3'"),
    ({"catalog": ""}, "catalog must be a STAC API URL or a path/URL"),
])
def test_bad_query_is_a_config_error(cat, kw, text):
    args = {"catalog": str(cat), "asset": "data", **kw}
    assert text in _err(ConfigError, **args)


def test_helpers():
    s, e, norm = parse_datetime_query(NAME, "2024-02")
    assert (s, e) == (datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC))
    assert norm == "2024-02-01T00:00:00Z/2024-02-29T23:59:59.999999Z"
    assert parse_datetime_query(NAME, "2024-12/..")[1] is None
    assert parse_datetime_query(NAME, None) == (None, None, None)
    assert bbox_intersects((0, 0, 1, 1), (1, 1, 2, 2)) and not bbox_intersects((0, 0, 1, 1), (1.1, 0, 2, 1))
    assert bbox_intersects((170, 0, -170, 1), (-175, 0.5, -172, 0.6))
    assert not bbox_intersects((170, 0, -170, 1), (0, 0, 1, 1))


# -- HTTP: a static catalogue over HTTP, 404, refused ------------------------------------------------------------------
@contextmanager
def serve_files(folder: Path):
    """The files of ``folder`` over HTTP (tests/http_range_server.py); yields the base URL."""
    with RangeServer(folder) as srv:
        yield f"http://127.0.0.1:{srv.port}"


@contextmanager
def serve(handler):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def test_static_catalogue_over_http(cat, tmp_path):
    with serve_files(tmp_path) as base:
        res = search_stac(NAME, f"{base}/stac/catalog.json", asset="data", collection="lc", datetime="2021",
                          timeout_s=5)
        assert res.api is False and res.catalog == f"{base}/stac/catalog.json"
        assert ids(res) == ["lc_b", "lc_c"]
        assert res.hrefs == [f"{base}/data/lc_b_data.tif", f"{base}/data/lc_c_data.tif"]
        all_ = search_stac(NAME, f"{base}/stac/catalog.json", asset="data", timeout_s=5)
        assert ids(all_) == ["lc_b", "lc_c", "lc_a", "et_2020", "lc_d"]
        msg = _err(StacError, catalog=f"{base}/stac/nope.json", asset="data", timeout_s=5)
        assert f"STAC catalogue {base}/stac/nope.json: HTTP 404" in msg
        (next(tmp_path.rglob("lc_c.json"))).unlink()
        msg = _err(StacError, catalog=f"{base}/stac/catalog.json", asset="data", collection="lc", timeout_s=5)
        assert f"cannot read {base}/stac/lc/lc_c/lc_c.json while walking the catalogue: HTTP 404" in msg


def test_refused_connection():
    url = f"http://127.0.0.1:{closed_port()}/catalog.json"
    msg = _err(StacError, catalog=url, asset="data", timeout_s=5)
    assert f"STAC catalogue {url}: connection refused" in msg


def test_html_page_is_not_json(tmp_path):
    (tmp_path / "index.html").write_text("<html>hello</html>")
    with serve_files(tmp_path) as base:
        msg = _err(StacError, catalog=f"{base}/index.html", asset="data", timeout_s=5)
        assert f"STAC catalogue {base}/index.html: not JSON" in msg


# -- a minimal fake STAC API -----------------------------------------------------------------------------------------
def _parse_interval(text):
    def one(p):
        return None if p in ("..", "") else datetime.fromisoformat(p.replace("Z", "+00:00"))

    parts = text.split("/")
    return (one(parts[0]), one(parts[0])) if len(parts) == 1 else (one(parts[0]), one(parts[1]))


def _api_filter(features, params):
    out = []
    for f in features:
        if params.get("collections") and f.get("collection") not in params["collections"]:
            continue
        if params.get("bbox") and not bbox_intersects(tuple(f["bbox"]), tuple(params["bbox"])):
            continue
        if params.get("datetime"):
            q0, q1 = _parse_interval(params["datetime"])
            p = f["properties"]
            i0 = datetime.fromisoformat((p.get("start_datetime") or p["datetime"]).replace("Z", "+00:00"))
            i1 = datetime.fromisoformat((p.get("end_datetime") or p["datetime"]).replace("Z", "+00:00"))
            if (q1 is not None and i0 > q1) or (q0 is not None and i1 < q0):
                continue
        out.append(f)
    return out


def make_api_handler(features: list[dict], log: list, *, fail_search: int | None = None):
    """A STAC API: landing page (conformsTo core + item-search), /conformance, /search (GET and POST)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/geo+json" if "features" in body else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _search(self, params):
            log.append(params)
            if fail_search:
                return self._send(fail_search, {"code": "boom", "description": "search backend down"})
            feats = list(reversed(_api_filter(features, params)))  # server order is not the mosaic order
            limit = params.get("limit")
            self._send(200, {"type": "FeatureCollection", "features": feats[:int(limit)] if limit else feats,
                             "links": []})

        def do_GET(self):
            u = urlparse(self.path)
            base = f"http://{self.headers['Host']}"
            if u.path in ("", "/"):
                return self._send(200, {
                    "type": "Catalog", "id": "fake-api", "stac_version": "1.0.0", "description": "fake STAC API",
                    "conformsTo": [CORE, ITEM_SEARCH],
                    "links": [{"rel": "self", "href": base + "/", "type": "application/json"},
                              {"rel": "root", "href": base + "/", "type": "application/json"},
                              {"rel": "conformance", "href": base + "/conformance", "type": "application/json"},
                              {"rel": "search", "href": base + "/search", "type": "application/geo+json",
                               "method": "GET"},
                              {"rel": "search", "href": base + "/search", "type": "application/geo+json",
                               "method": "POST"}]})
            if u.path == "/conformance":
                return self._send(200, {"conformsTo": [CORE, ITEM_SEARCH]})
            if u.path == "/search":
                q = {k: v[0] for k, v in parse_qs(u.query).items()}
                params = {"method": "GET"}
                if "collections" in q:
                    params["collections"] = q["collections"].split(",")
                if "bbox" in q:
                    params["bbox"] = [float(v) for v in q["bbox"].split(",")]
                for k in ("datetime", "limit"):
                    if k in q:
                        params[k] = q[k]
                return self._search(params)
            self._send(404, {"code": "NotFound"})

        def do_POST(self):
            if urlparse(self.path).path != "/search":
                return self._send(404, {"code": "NotFound"})
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            self._search({"method": "POST", **body})

    return Handler


def api_features(tmp_path: Path, *, self_links=True, relative=False) -> list[dict]:
    out = []
    for cid, specs in SPECS.items():
        for spec in specs:
            it = _item(spec, tmp_path / "api_data")
            d = it.to_dict(include_self_link=False)
            d["collection"] = cid
            d["links"] = ([{"rel": "self", "href": f"http://stac.invalid/collections/{cid}/items/{spec['id']}",
                            "type": "application/geo+json"}] if self_links else [])
            for a in d["assets"].values():
                # an absolute local file in an API item is a file:// URI (a bare /path would resolve against the
                # item's http self href, RFC 3986)
                a["href"] = f"./{Path(a['href']).name}" if relative else Path(a["href"]).as_uri()
            out.append(d)
    return out


def test_fake_api_searched_through_pystac_client(tmp_path):
    log = []
    with serve(make_api_handler(api_features(tmp_path), log)) as base:
        res = search_stac(NAME, base + "/", asset="data", collection="lc", bbox=(0.5, 0.2, 1.5, 0.8),
                          datetime="2020-01-01/2021-12-31", timeout_s=5)
        assert res.api is True and res.catalog == base + "/"
        assert ids(res) == ["lc_b", "lc_c", "lc_a"]                   # re-ordered: newest first, ties by id
        assert res.hrefs == [str(tmp_path / "api_data" / f"{i}_data.tif") for i in ids(res)]
        assert log[-1] == {"method": "POST", "collections": ["lc"], "bbox": [0.5, 0.2, 1.5, 0.8],
                           "datetime": "2020-01-01T00:00:00Z/2021-12-31T23:59:59.999999Z", "limit": 100}
        assert res.query["filter"] == {"collections": ["lc"], "bbox": [0.5, 0.2, 1.5, 0.8],
                                       "datetime": "2020-01-01T00:00:00Z/2021-12-31T23:59:59.999999Z",
                                       "search": base + "/search"}
        d = res.describe()
        assert d["api"] is True and [i["id"] for i in d["items"]] == ["lc_b", "lc_c", "lc_a"]
        # the range item (datetime null) through the API
        assert [a.datetime for a in search_stac(NAME, base, asset="data", datetime="../2019-12-31",
                                                timeout_s=5).assets] == ["2019-01-01T00:00:00Z"]


def test_fake_api_get_and_post_agree(tmp_path):
    from pystac_client import Client

    log = []
    with serve(make_api_handler(api_features(tmp_path), log)) as base:
        client = Client.open(base, timeout=5)
        got = {m: sorted(i.id for i in client.search(method=m, collections=["lc"], bbox=[0.5, 0.2, 1.5, 0.8],
                                                     datetime="2021").items()) for m in ("GET", "POST")}
    assert got == {"GET": ["lc_b", "lc_c"], "POST": ["lc_b", "lc_c"]}
    assert [p["method"] for p in log] == ["GET", "POST"]


def test_fake_api_errors(tmp_path):
    log = []
    with serve(make_api_handler(api_features(tmp_path), log)) as base:
        msg = _err(StacError, catalog=base, asset="data", collection="lc", max_items=2, timeout_s=5)
        assert f"STAC API {base}: more than max_items=2 items match (collection='lc'); narrow the query" in msg
        assert log[-1]["limit"] == 3
        msg = _err(StacError, catalog=base, asset="data", collection="nope", timeout_s=5)
        assert f"STAC API {base}: no item matches the query (collection='nope')" in msg
        msg = _err(StacError, catalog=base, asset="cog", collection="et", timeout_s=5)
        assert "item 'et_2020' (collection 'et') has no asset 'cog'; its asset keys: data, quality" in msg
    with serve(make_api_handler(api_features(tmp_path), log, fail_search=500)) as base:
        msg = _err(StacError, catalog=base, asset="data", timeout_s=5)
        assert f"STAC API {base}: search failed: HTTP 500" in msg and "search backend down" in msg


def test_fake_api_relative_asset_hrefs(tmp_path):
    with serve(make_api_handler(api_features(tmp_path, relative=True), [])) as base:
        res = search_stac(NAME, base, asset="data", collection="et", timeout_s=5)
        assert res.hrefs == ["http://stac.invalid/collections/et/items/et_2020_data.tif"]  # against the self href
    with serve(make_api_handler(api_features(tmp_path, self_links=False, relative=True), [])) as base:
        msg = _err(StacError, catalog=base, asset="data", collection="et", timeout_s=5)
        assert ("item 'et_2020' asset 'data' href './et_2020_data.tif' is relative and cannot be resolved (the item "
                "has no self href)") in msg


def test_landing_page_without_item_search_is_walked_statically(cat, tmp_path):
    d = json.loads(cat.read_text())
    d["conformsTo"] = [CORE]  # a static catalogue that declares only core: no search
    cat.write_text(json.dumps(d))
    with serve_files(tmp_path) as base:
        res = search_stac(NAME, f"{base}/stac/catalog.json", asset="data", collection="et", timeout_s=5)
    assert res.api is False and ids(res) == ["et_2020"]


# -- the sample catalogue (pipelines/make_sample_stac.py) ------------------------------------------------------------
def _run_maker(out: Path):
    subprocess.run([sys.executable, str(REPO / "pipelines" / "make_sample_stac.py"), "-o", str(out)], check=True,
                   capture_output=True, text=True, cwd=REPO)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sample_stac(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("sample_stac")
    _run_maker(base / "a")
    _run_maker(base / "b")
    return base / "a", base / "b"


def test_make_sample_stac_is_deterministic(sample_stac):
    a, b = sample_stac
    ta, tb = _tree(a), _tree(b)
    assert len(ta) == 1 + 5 + 4 + 4 + 1 + 12 + 1
    assert ta == tb
    for rel, data in ta.items():
        d = json.loads(data)
        if d["type"] == "Feature":
            assert not Path(d["assets"]["data"]["href"]).is_absolute()      # committable: relative hrefs
            assert all(ln["rel"] != "self" for ln in d["links"])


def test_sample_stac_resolves_to_the_sample_files(sample_stac):
    import yaml
    from rasterio.warp import transform_bounds

    cat = sample_stac[0] / "catalog.json"
    data = REPO / "sample_tiles" / "data"
    year = yaml.safe_load((REPO / "pipelines" / "sample.yaml").read_text(encoding="utf-8"))["accounting_year"]
    expect = {"sample-land-cover": sorted(data.glob("land_cover/*.tif")), "sample-dem": sorted(data.glob("dem/*.tif")),
              "sample-et": [data / "climate" / "et_annual.tif"], "sample-nep": [data / "nep_tc_ha.tif"],
              "sample-precipitation-monthly": sorted(data.glob("climate/precip_monthly_*.tif"))}
    for cid, files in expect.items():
        res = search_stac(NAME, str(cat), asset="data", collection=cid)
        assert sorted(res.hrefs) == [str(p.resolve()) for p in files], cid
        for a in res.assets:
            with rasterio.open(a.href) as src:
                w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
            item = pystac.read_file(next(cat.parent.rglob(f"{a.item_id}.json")))
            assert item.bbox == pytest.approx([w, s, e, n], abs=1e-6)
            assert item.properties["proj:code"] == f"EPSG:{src.crs.to_epsg()}"
            assert item.properties["proj:shape"] == [src.height, src.width]
    monthly = search_stac(NAME, str(cat), asset="data", collection="sample-precipitation-monthly")
    assert ids(monthly) == [f"precip_monthly_{m:02d}" for m in range(12, 0, -1)]
    assert monthly.assets[0].datetime == f"{year}-12-01T00:00:00Z"
    march = search_stac(NAME, str(cat), asset="data", collection="sample-precipitation-monthly",
                        datetime=f"{year}-03")
    assert ids(march) == ["precip_monthly_03"]
    # a point well inside the north-west land-cover tile (x 600000-609000, y 3122800-3130000, EPSG:32650)
    from pyproj import Transformer

    lon, lat = Transformer.from_crs("EPSG:32650", "EPSG:4326", always_xy=True).transform(604500, 3126400)
    nw = search_stac(NAME, str(cat), asset="data", collection="sample-land-cover",
                     bbox=(lon - 1e-3, lat - 1e-3, lon + 1e-3, lat + 1e-3))
    assert ids(nw) == ["lc_r0_c0"]
    with pytest.raises(StacError, match=f"no item matches the query \\(any collection, datetime='{year + 1}'\\)"):
        search_stac(NAME, str(cat), asset="data", datetime=str(year + 1))
