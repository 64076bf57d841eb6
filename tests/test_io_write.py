"""Tests of gep_raster.outputs.io_write, gep_raster.outputs.provenance and gep_raster.outputs.figures."""
from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from gep_raster.grid import RefGrid
from gep_raster.outputs.io_write import (BlockRasterWriter, OutputError, atomic_to_csv, atomic_to_gpkg,
                                 atomic_write_bytes, atomic_write_json, atomic_write_text,
                                 sha256_file, write_cog)
from gep_raster.outputs.provenance import StageTimer, input_checksums, machine_info, package_versions
from gep_raster.outputs.figures import plot_gep_r_map, plot_value_by_service

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _grid(h, w, res=30.0, epsg=4549):
    return RefGrid(CRS.from_epsg(epsg), Affine(res, 0, 500000.0, 0, -res, 3300000.0), w, h)


def _leftovers(folder: Path):
    """Temporary or sidecar files left in a folder."""
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name or p.name.endswith(".aux.xml")]


# ---------------------------------------------------------------------------------------
# rasters
# ---------------------------------------------------------------------------------------
def test_block_writer_threads_random_order_gives_valid_cog(tmp_path):
    h, w = 1100, 1300   # > 1024 on both sides: overviews; not a multiple of 512: edge tiles
    grid = _grid(h, w)
    rng = np.random.default_rng(42)
    data = (rng.random((h, w), dtype=np.float32) * 1e4).astype(np.float32)
    data[:37, :53] = np.nan
    data[500:520, 700:900] = np.nan
    windows = list(grid.block_windows(300))          # unaligned to the 512 tiles on purpose
    random.Random(1).shuffle(windows)
    out = tmp_path / "wc_value.tif"
    errors = []

    with BlockRasterWriter(out, grid) as writer:
        def work(ws):
            try:
                for r0, r1, c0, c1 in ws:
                    writer.write(r0, c0, data[r0:r1, c0:c1].astype(np.float64))  # cast on write
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(windows[i::2],)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert not out.exists()                          # nothing at the final path before finalize
        tags = {"service": "water_conservation", "price": 1.25, "params": {"k": [1, 2], "名称": "水源涵养"}}
        result = writer.finalize(tags=tags, description="Water conservation value", units="yuan/a")

    assert result == out and out.exists()
    assert _leftovers(tmp_path) == []
    with rasterio.open(out) as ds:
        prof = ds.profile
        assert prof["tiled"] and prof["blockxsize"] == 512 and prof["blockysize"] == 512
        assert prof["compress"].lower() == "deflate"
        assert prof["dtype"] == "float32" and ds.count == 1
        assert ds.crs == grid.crs and ds.transform == grid.transform
        assert np.isnan(ds.nodata)
        assert ds.overviews(1), "expected overviews for a raster > 1024 px"
        ims = ds.tags(ns="IMAGE_STRUCTURE")
        assert ims.get("LAYOUT") == "COG"
        assert ims.get("PREDICTOR") == "3"
        t = ds.tags()
        assert t["service"] == "water_conservation"
        assert t["price"] == "1.25"
        assert json.loads(t["params"]) == {"k": [1, 2], "名称": "水源涵养"}
        assert ds.descriptions[0] == "Water conservation value"
        assert ds.tags(1)["units"] == "yuan/a"
        assert ds.units[0] == "yuan/a"
        back = ds.read(1)
        ovr = ds.read(1, out_shape=(h // 2, w // 2))
    np.testing.assert_array_equal(back, data)            # NaN positions equal too
    assert np.isfinite(ovr).sum() > 0.9 * ovr.size       # NaN-aware averaging in overviews


def test_unwritten_pixels_are_nodata_and_write_cog(tmp_path):
    grid = _grid(600, 700)
    out = tmp_path / "partial.tif"
    with BlockRasterWriter(out, grid) as writer:
        writer.write(0, 0, np.ones((100, 100), np.float32))
        writer.finalize(tags={}, description="d", units="u")
    with rasterio.open(out) as ds:
        a = ds.read(1)
    assert (a[:100, :100] == 1).all() and np.isnan(a[100:, :]).all() and np.isnan(a[:, 100:]).all()

    small = _grid(40, 50)
    arr = np.arange(2000, dtype=np.float64).reshape(40, 50)
    arr[0, 0] = np.nan
    p = write_cog(tmp_path / "small.tif", arr, small, nodata=np.nan, units="t/ha/a",
                  description="Soil retention", tags={"n": np.int64(3), "ok": True})
    with rasterio.open(p) as ds:
        assert ds.dtypes[0] == "float32" and np.isnan(ds.nodata)
        assert ds.tags()["n"] == "3" and ds.tags()["ok"] == "true"
        assert ds.tags(1)["units"] == "t/ha/a" and ds.descriptions[0] == "Soil retention"
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        np.testing.assert_array_equal(ds.read(1), arr.astype(np.float32))

    cls = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    p = write_cog(tmp_path / "cls.tif", cls, _grid(2, 2), nodata=0, overview_resampling="NEAREST")
    with rasterio.open(p) as ds:
        assert ds.dtypes[0] == "uint8" and ds.nodata == 0
        np.testing.assert_array_equal(ds.read(1), cls)
    assert _leftovers(tmp_path) == []


def test_exception_inside_with_leaves_nothing(tmp_path):
    grid = _grid(300, 300)
    out = tmp_path / "broken.tif"
    with pytest.raises(RuntimeError, match="boom"):
        with BlockRasterWriter(out, grid) as writer:
            writer.write(0, 0, np.zeros((10, 10), np.float32))
            assert writer.tmp_path.exists()
            raise RuntimeError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError):
        writer.write(0, 0, np.zeros((1, 1), np.float32))


def test_existing_file_kept_when_write_fails(tmp_path):
    grid = _grid(50, 50)
    out = tmp_path / "keep.tif"
    write_cog(out, np.ones(grid.shape, np.float32), grid, units="u", description="old", tags={})
    before = sha256_file(out)
    with pytest.raises(RuntimeError):
        with BlockRasterWriter(out, grid) as writer:
            writer.write(0, 0, np.zeros(grid.shape, np.float32))
            raise RuntimeError("fail")
    assert sha256_file(out) == before
    assert _leftovers(tmp_path) == []


def test_block_writer_rejects_bad_blocks(tmp_path):
    grid = _grid(100, 100)
    with BlockRasterWriter(tmp_path / "x.tif", grid) as writer:
        with pytest.raises(ValueError, match="does not fit"):
            writer.write(90, 0, np.zeros((20, 5), np.float32))
        with pytest.raises(ValueError, match="2-D"):
            writer.write(0, 0, np.zeros((2, 2, 2), np.float32))
        with pytest.raises(ValueError, match="tag name"):
            writer.finalize(tags={"bad key": 1})
        writer.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="cannot cast"):
        with BlockRasterWriter(tmp_path / "i.tif", grid, dtype="int16", nodata=-1) as w:
            w.write(0, 0, np.zeros((2, 2), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_unfinalized_writer_warns_and_cleans(tmp_path):
    with pytest.warns(RuntimeWarning, match="without finalize"):
        with BlockRasterWriter(tmp_path / "y.tif", _grid(10, 10)) as writer:
            writer.write(0, 0, np.zeros((10, 10), np.float32))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------
# bytes / JSON / CSV / GPKG
# ---------------------------------------------------------------------------------------
def test_atomic_json_numpy_and_paths(tmp_path):
    obj = {
        "i": np.int64(7), "f": np.float32(0.5), "b": np.bool_(True), "arr": np.arange(3),
        "nan": float("nan"), "arr_nan": np.array([1.0, np.nan]), "path": Path("/data/lc.tif"),
        "名称": "青田县", "nested": {"t": (1, 2), np.int32(5): "five"},
    }
    p = atomic_write_json(tmp_path / "sub" / "manifest.json", obj)
    text = p.read_text(encoding="utf-8")
    assert "青田县" in text and "\n  " in text            # ensure_ascii False, indent 2
    back = json.loads(text)
    assert back == {"i": 7, "f": 0.5, "b": True, "arr": [0, 1, 2], "nan": None, "arr_nan": [1.0, None],
                    "path": "/data/lc.tif", "名称": "青田县", "nested": {"t": [1, 2], "5": "five"}}
    assert list(back) == list(map(str, obj))          # key order kept
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists()
    atomic_write_text(tmp_path / "t.txt", "héllo")
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "sub") == []


def _towns_gdf():
    import geopandas as gpd
    from shapely.geometry import box

    return gpd.GeoDataFrame(
        {"town_id": ["331122101", "331122102", "031122103"],
         "name": ["鹤城街道", "温溪镇", "东源镇"],
         "gep_yuan": [1.5e8, 2.25e7, 0.0]},
        geometry=[box(500000, 3290000, 505000, 3295000), box(505000, 3290000, 510000, 3295000),
                  box(500000, 3285000, 510000, 3290000)],
        crs="EPSG:4549")


def test_csv_roundtrip_keeps_string_ids_and_chinese(tmp_path):
    gdf = _towns_gdf()
    df = pd.DataFrame(gdf.drop(columns="geometry"))
    p = atomic_to_csv(df, tmp_path / "towns.csv")
    raw = p.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")                    # utf-8-sig default (Excel)
    back = pd.read_csv(p, dtype=str, encoding="utf-8-sig")
    assert list(back.columns) == ["town_id", "name", "gep_yuan"]
    assert back["town_id"].tolist() == ["331122101", "331122102", "031122103"]
    assert back["name"].tolist() == ["鹤城街道", "温溪镇", "东源镇"]
    p2 = atomic_to_csv(df, tmp_path / "plain.csv", encoding="utf-8")
    assert not p2.read_bytes().startswith(b"\xef\xbb\xbf")
    assert _leftovers(tmp_path) == []


def test_gpkg_roundtrip_keeps_string_ids_and_chinese(tmp_path):
    import geopandas as gpd

    gdf = _towns_gdf()
    p = atomic_to_gpkg(gdf, tmp_path / "towns.gpkg", layer="towns")
    back = gpd.read_file(p, layer="towns", engine="pyogrio")
    assert back["town_id"].tolist() == ["331122101", "331122102", "031122103"]
    assert all(isinstance(v, str) for v in back["town_id"])
    assert back["name"].tolist() == ["鹤城街道", "温溪镇", "东源镇"]
    assert back.crs.to_epsg() == 4549
    # replacing an existing file works and leaves no temp/journal files
    atomic_to_gpkg(gdf.iloc[:1], p, layer="towns")
    assert len(gpd.read_file(p, layer="towns", engine="pyogrio")) == 1
    assert sorted(x.name for x in tmp_path.iterdir()) == ["towns.gpkg"]


def test_sha256_and_input_checksums(tmp_path):
    import hashlib

    f = tmp_path / "a.bin"
    f.write_bytes(b"abc" * 1000)
    assert sha256_file(f, chunk=7) == hashlib.sha256(b"abc" * 1000).hexdigest()
    shp = tmp_path / "towns.shp"
    for ext in (".shp", ".shx", ".dbf", ".prj"):
        shp.with_suffix(ext).write_bytes(ext.encode())
    sums = input_checksums([f, shp, f])
    assert set(sums) == {str(f), str(shp), str(shp.with_suffix(".shx")), str(shp.with_suffix(".dbf")),
                         str(shp.with_suffix(".prj"))}
    assert sums[str(f)]["bytes"] == 3000 and len(sums[str(f)]["sha256"]) == 64
    from gep_raster.errors import InputError
    with pytest.raises(InputError):
        input_checksums([tmp_path / "missing.tif"])


# ---------------------------------------------------------------------------------------
# provenance
# ---------------------------------------------------------------------------------------
def test_stage_timer_and_provenance():
    timer = StageTimer()
    with timer.stage("read"):
        time.sleep(0.01)
    with pytest.raises(KeyError):
        with timer.stage("compute"):
            raise KeyError("x")
    with timer.stage("read"):
        pass
    d = timer.as_dict()
    assert list(d) == ["read", "compute"]
    assert d["read"] >= 0.009 and d["compute"] >= 0
    assert timer.counts() == {"read": 2, "compute": 1}

    v = package_versions()
    for k in ("python", "gep_raster", "numpy", "rasterio", "gdal", "pyproj", "proj", "pandas",
              "matplotlib", "pyflwdir", "exactextract", "xarray"):
        assert k in v
    assert v["numpy"] == np.__version__
    assert v["gdal"] == rasterio.__gdal_version__
    assert v["gep_raster"]
    json.dumps(v)
    m = machine_info()
    assert m["cpu_count"] >= 1 and m["ram_total_bytes"] > 0
    json.dumps(m)


# ---------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------
def _is_png(p: Path) -> bool:
    return p.stat().st_size > 0 and p.read_bytes()[:8] == PNG_MAGIC


def test_plot_gep_r_map(tmp_path):
    grid = _grid(300, 330)
    rng = np.random.default_rng(0)
    arr = (rng.random(grid.shape) * 900).astype(np.float32)   # yuan/a per 900 m2 pixel
    arr[:50] = np.nan
    towns = _towns_gdf()
    county = towns.dissolve()
    p = plot_gep_r_map(arr, grid, tmp_path / "maps" / "gep_r.png", title="GEP-R Qingtian",
                       polygons=[county, towns.to_crs("EPSG:4490")], polygon_labels=["county", "towns"])
    assert _is_png(p)
    # strided display of a "large" raster, explicit pixel area, CJK title without a CJK font
    p2 = plot_gep_r_map(arr, grid, tmp_path / "small.png", title="青田 GEP-R", pixel_area_m2=900.0,
                        max_display_px=100, north_arrow=False)
    assert _is_png(p2)
    p3 = plot_gep_r_map(np.full(grid.shape, np.nan, np.float32), grid, tmp_path / "empty.png",
                        title="empty")
    assert _is_png(p3)
    geo = RefGrid(CRS.from_epsg(4490), Affine(0.01, 0, 119.0, 0, -0.01, 28.5), 80, 60)
    p4 = plot_gep_r_map(np.ones(geo.shape, np.float32), geo, tmp_path / "geo.png", title="geo")
    assert _is_png(p4)
    with pytest.raises(ValueError):
        plot_gep_r_map(arr[:10], grid, tmp_path / "bad.png", title="x")
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "maps") == []


def test_map_outlines_are_every_ring_of_every_polygon():
    """The map draws each exterior and interior ring as one line; missing and empty geometries draw nothing."""
    import shapely
    from shapely.geometry import MultiPolygon, Polygon, box

    from gep_raster.outputs.figures import _outline_collection

    holed = Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], [[(2, 2), (4, 2), (4, 4), (2, 4)]])
    multi = MultiPolygon([box(20, 0, 21, 1), box(30, 0, 32, 2)])
    lc = _outline_collection(np.array([holed, None, shapely.Polygon(), multi], dtype=object), color="black")
    segs = [np.asarray(s) for s in lc.get_segments()]
    assert len(segs) == 4  # exterior + hole, two parts
    assert [len(s) for s in segs] == [5, 5, 5, 5]  # closed rings of 4 corners
    np.testing.assert_array_equal(segs[0][[0, 2]], [[0, 0], [10, 10]])
    np.testing.assert_array_equal(segs[1][[0, 2]], [[2, 2], [4, 4]])
    assert {tuple(s.min(axis=0)) + tuple(s.max(axis=0)) for s in segs[2:]} == {(20, 0, 21, 1), (30, 0, 32, 2)}
    assert len(_outline_collection(np.array([], dtype=object)).get_segments()) == 0


def test_plot_value_by_service(tmp_path):
    vals = {"Water conservation": 3.2e9, "Soil retention": 1.1e9, "Carbon sequestration": 4.5e8,
            "水质净化": 2.0e7}
    p = plot_value_by_service(vals, tmp_path / "bars.png", title="GEP-R by service")
    assert _is_png(p)
    p2 = plot_value_by_service({"a": 12.0, "b": 0.0}, tmp_path / "bars2.png", title="small")
    assert _is_png(p2)
    with pytest.raises(ValueError):
        plot_value_by_service({}, tmp_path / "none.png", title="x")
    with pytest.raises(ValueError):
        plot_value_by_service({"a": float("nan")}, tmp_path / "nan.png", title="x")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bars.png", "bars2.png"]


def test_overview_factor():
    from gep_raster.outputs.block_store import overview_factor

    assert overview_factor((2000, 100)) == 8
    assert overview_factor((8192, 8192)) == 8       # 1024 px
    assert overview_factor((16384, 16384)) == 8     # 2048 px
    assert overview_factor((16385, 10)) == 16
    assert overview_factor((32768, 32768)) == 16    # 2048 px
    assert overview_factor((40000, 70000)) == 64    # 1094 px


def test_tiles_layout_overview_is_the_block_mean_by_hand(tmp_path):
    from gep_raster.outputs.block_store import BlockStore

    h, w = 40, 48  # blocks of 16 x 16 (the last row of blocks 8 px high); overview factor 8 -> 5 x 6 cells
    grid = _grid(h, w)
    rng = np.random.default_rng(11)
    full = rng.random((2, h, w)).astype(np.float32) * 100
    full[0, 0:8, 0:8] = np.nan            # a cell with no valid pixel -> NaN
    full[0, 8:16, 8:16] = np.nan
    full[0, 8, 8] = 5.0                   # a cell with one valid pixel -> that value
    chunks = ((16, 16, 8), (16, 16, 16))
    store = BlockStore(tmp_path / "state", tmp_path, grid, [("a", "rasters/a.vrt"), ("b", "rasters/b.vrt")],
                       "run", chunks, "tiles")
    assert store.overview_factor == 8 and store.overviews
    for bi, r0, c0, bh, bw in store.blocks():
        part = (np.zeros(2), np.zeros(2, np.int64), {})
        store.commit(r0, c0, full[:, r0:r0 + bh, c0:c0 + bw], [0, 1], part)
    vrt = store.publish("a", tags={}, description="a", units="yuan")
    ov_path = tmp_path / "rasters" / "a.tiles" / "overview_x8.tif"
    assert ov_path.exists()
    with rasterio.open(ov_path) as ds:
        ov = ds.read(1)
    assert ov.shape == (5, 6)
    assert np.isnan(ov[0, 0]) and ov[1, 1] == np.float32(5.0)
    cells = full[0].reshape(5, 8, 6, 8).astype(np.float64)
    n = np.isfinite(cells).sum(axis=(1, 3))
    expect = np.where(n > 0, np.nansum(cells, axis=(1, 3)) / np.maximum(n, 1), np.nan)
    np.testing.assert_allclose(ov, expect, rtol=1e-6)
    with rasterio.open(vrt) as ds:  # the VRT declares it as its overview
        assert ds.overviews(1) == [8]
        np.testing.assert_array_equal(ds.read(1), full[0])
    # "b" was assembled in the same pass over the journal as "a" and kept until its publish
    assert set(store._ov_cache) == {"b"}
    store.publish("b", tags={}, description="b", units="yuan")
    assert store._ov_cache == {}
    with rasterio.open(tmp_path / "rasters" / "b.tiles" / "overview_x8.tif") as ds:
        np.testing.assert_allclose(ds.read(1), full[1].reshape(5, 8, 6, 8).astype(np.float64).mean(axis=(1, 3)),
                                   rtol=1e-6)


@pytest.mark.parametrize("layout", ["tiles", "cog"])
def test_block_tiles_codec_by_layout(tmp_path, layout):
    """The tiles layout's tiles are the final files: DEFLATE. The cog layout's tiles are temporary: ZSTD level 1,
    and the COG made from them is DEFLATE with the values unchanged."""
    from gep_raster.outputs.block_store import BlockStore

    h, w = 32, 48
    grid = _grid(h, w)
    full = np.random.default_rng(5).random((1, h, w)).astype(np.float32)
    full[0, 3, 4] = np.nan
    ext = ".vrt" if layout == "tiles" else ".tif"
    store = BlockStore(tmp_path / "state", tmp_path, grid, [("a", f"rasters/a{ext}")], "run",
                       ((16, 16), (16, 16, 16)), layout, deflate_level=3)
    for _, r0, c0, bh, bw in store.blocks():
        store.commit(r0, c0, full[:, r0:r0 + bh, c0:c0 + bw], [0], (np.zeros(1), np.zeros(1, np.int64), {}))
    with rasterio.open(store.tile_path("a", 16, 32)) as ds:
        assert ds.profile["compress"] == ("deflate" if layout == "tiles" else "zstd")
        assert ds.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
        np.testing.assert_array_equal(ds.read(1), full[0, 16:32, 32:48])
    out = store.publish("a", tags={}, description="a", units="yuan")
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read(1), full[0])
        if layout == "cog":
            assert ds.profile["compress"] == "deflate"
            assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
