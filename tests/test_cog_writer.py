"""The COG written once from block tiles (gep_raster.outputs.cog_writer, BlockStore's cog layout).

Checked against GDAL: GDAL reads every level back pixel for pixel, reports LAYOUT=COG, rio-cogeo's validator
accepts the file, georeferencing and metadata equal those of GDAL's own COG driver; overviews are checked
against 2 x 2 NaN means computed here with numpy; the file is byte-identical for every block size on the tile
lattice, and pixel-identical to GDAL's COG (the path for blocks off the lattice).
"""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rio_cogeo.cogeo import cog_validate

from gep_raster.grid import RefGrid
from gep_raster.outputs import cog_writer
from gep_raster.outputs.block_store import BlockStore
from gep_raster.outputs.io_write import write_cog

H, W = 1700, 2300
TAGS = {"run_hash": "abc", "service": "test", "prices": {"a.b": 1.5}}


def _field(h=H, w=W, seed=0):
    rng = np.random.default_rng(seed)
    a = (np.cumsum(rng.normal(size=(h, w)), axis=1) + 10 * rng.normal(size=(h, w))).astype(np.float32)
    a[:300, :200] = np.nan  # a nodata corner: all-NaN overview cells and partly-NaN ones
    a[rng.random((h, w)) < 0.05] = np.nan
    return a


def _grid(h=H, w=W):
    return RefGrid(CRS.from_epsg(32650), Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 3300000.0), w, h)


def _nanmean2(a):
    """2 x 2 means of the non-NaN pixels (edge cells partial), float64 sums, float32 result."""
    h, w = a.shape
    p = np.full((h + h % 2, w + w % 2), np.nan, np.float64)
    p[:h, :w] = a
    cells = p.reshape(p.shape[0] // 2, 2, p.shape[1] // 2, 2)
    n = np.isfinite(cells).sum(axis=(1, 3))
    s = np.where(np.isfinite(cells), cells, 0.0)
    s = ((s[:, 0, :, 0] + s[:, 0, :, 1]) + s[:, 1, :, 0]) + s[:, 1, :, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan).astype(np.float32)


def _store(tmp_path, name, chunk, grid, a):
    rows = [min(chunk, grid.height - r) for r in range(0, grid.height, chunk)]
    cols = [min(chunk, grid.width - c) for c in range(0, grid.width, chunk)]
    store = BlockStore(tmp_path / name / "state", tmp_path / name, grid, [("v", "v.tif")], "key", (rows, cols), "cog")
    for _, r0, c0, h, w in store.blocks():
        store.commit(r0, c0, a[None, r0:r0 + h, c0:c0 + w], [0], (np.zeros(1), np.zeros(1), {}))
    return store


def _publish(store):
    return store.publish("v", tags=TAGS, description="value of the test", units="yuan/a per pixel")


def test_pyramid_follows_gdal_overviews_auto():
    assert cog_writer.CogLevels(1700, 2300).shapes == [(1700, 2300), (850, 1150), (425, 575), (213, 288)]
    assert cog_writer.CogLevels(512, 512).shapes == [(512, 512)]
    assert cog_writer.CogLevels(513, 10).tiles == [(2, 1), (1, 1)]


def test_predictor_3_by_hand():
    # 1.0f = 3F 80 00 00, 2.0f = 40 00 00 00: planes (MSB first) 3F 40 | 80 00 | 00 00 | 00 00, then differences
    got = cog_writer._predict_float(np.array([[1.0, 2.0]], np.float32))
    assert got.tolist() == [[0x3F, 0x01, (0x80 - 0x40) % 256, (0x00 - 0x80) % 256, 0, 0, 0, 0]]


@pytest.mark.parametrize("chunk", [1024, 512, 4096])
def test_blockstore_cog_read_back_by_gdal_at_every_level(tmp_path, chunk):
    grid, a = _grid(), _field()
    store = _store(tmp_path, f"c{chunk}", chunk, grid, a)
    assert store.direct and store.direct_levels == {1024: 2, 512: 1, 4096: 4}[chunk]
    path = _publish(store)
    assert cog_validate(str(path)) == (True, [], [])
    expect = [a]
    for _ in range(3):
        expect.append(_nanmean2(expect[-1]))
    with rasterio.open(path) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.overviews(1) == [2, 4, 8] and ds.block_shapes == [(512, 512)]
        np.testing.assert_array_equal(ds.read(1), a)
    for k in (1, 2, 3):
        with rasterio.open(path, overview_level=k - 1) as ds:
            np.testing.assert_array_equal(ds.read(1), expect[k])


def test_byte_identical_for_every_block_size_and_pixel_identical_to_gdal(tmp_path):
    grid, a = _grid(), _field(seed=1)
    files = [_publish(_store(tmp_path, f"c{c}", c, grid, a)).read_bytes() for c in (512, 1024, 2048, 4096)]
    assert all(f == files[0] for f in files[1:])
    off = _store(tmp_path, "c700", 700, grid, a)  # off the tile lattice: GDAL's COG of the block tiles
    assert not off.direct
    ref = write_cog(tmp_path / "gdal.tif", a, grid, tags=TAGS, description="value of the test",
                    units="yuan/a per pixel")
    for gdal_path in (_publish(off), ref):
        with rasterio.open(tmp_path / "c512" / "v.tif") as ours, rasterio.open(gdal_path) as gdal:
            np.testing.assert_array_equal(ours.read(1), gdal.read(1))
            assert ours.crs == gdal.crs and ours.transform == gdal.transform
            assert np.isnan(ours.nodata) and np.isnan(gdal.nodata)
            assert ours.tags() == gdal.tags() and ours.tags(1) == gdal.tags(1)
            assert ours.descriptions == gdal.descriptions == ("value of the test",)
            assert ours.overviews(1) == gdal.overviews(1)
            assert ours.profile["compress"] == gdal.profile["compress"] == "deflate"
            assert ours.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"


def test_resume_keeps_committed_spools_and_recomputes_a_damaged_one(tmp_path):
    grid, a = _grid(), _field(seed=2)
    store = _store(tmp_path, "r", 1024, grid, a)
    assert sorted(store.finished()) == list(range(6))
    again = BlockStore(tmp_path / "r" / "state", tmp_path / "r", grid, [("v", "v.tif")], "key", store_chunks(store),
                       "cog")
    spool = again.tile_path("v", 1024, 1024)
    spool.write_bytes(spool.read_bytes()[:-1])  # cut short (a torn copy): that block is computed again
    assert sorted(again.finished()) == [0, 1, 2, 3, 5]
    again.commit(1024, 1024, a[None, 1024:, 1024:2048], [0], (np.zeros(1), np.zeros(1), {}))
    assert _publish(again).read_bytes() == _publish(_store(tmp_path, "s", 1024, grid, a)).read_bytes()


def store_chunks(store):
    return store.heights, store.widths


def test_bigtiff_layout_read_by_gdal(tmp_path, monkeypatch):
    monkeypatch.setattr(cog_writer, "BIGTIFF_ABOVE", 0)
    grid, a = _grid(900, 1100), _field(900, 1100, seed=3)
    path = _publish(_store(tmp_path, "b", 512, grid, a))
    assert path.read_bytes()[2:4] == b"\x2b\x00"  # BigTIFF
    assert cog_validate(str(path))[0]
    with rasterio.open(path) as ds:
        np.testing.assert_array_equal(ds.read(1), a)
        assert ds.tags()["run_hash"] == "abc"


def test_tile_errors_are_named():
    with pytest.raises(ValueError, match="at most 512 x 512"):
        cog_writer.encode_tile(np.zeros((513, 2), np.float32))
    with pytest.raises(cog_writer.CogError, match="do not match the pyramid"):
        cog_writer.assemble("/nonexistent/x.tif", (600, 600), [], [1], [[1]], {})


@pytest.mark.slow
def test_sample_run_on_the_tile_lattice_equals_the_gdal_path(tmp_path):
    """The sample with 512 px blocks (2 blocks, COG tiles compressed on the block threads) against 256 px blocks
    (off the lattice: GDAL's COG driver over block tiles): every raster a valid COG, equal pixels and overviews;
    a rerun resumes and leaves the files byte for byte as they were."""
    from gep_raster.config import load_config
    from gep_raster.pipeline import run

    from conftest import sample_config

    runs = {c: run(load_config(sample_config(tmp_path, f"c{c}", chunk=c, workers=2)), progress=False)
            for c in (512, 256)}
    assert runs[512].manifest["execution"]["cog_writer"].startswith("tiles compressed on the block threads (1 of 2")
    assert runs[256].manifest["execution"]["cog_writer"].startswith("GDAL COG driver")
    paths = sorted(p.relative_to(runs[512].output_dir) for p in (runs[512].output_dir / "rasters").rglob("*.tif"))
    assert len(paths) > 20
    for rel in paths:
        ours, gdal = runs[512].output_dir / rel, runs[256].output_dir / rel
        assert cog_validate(str(ours)) == (True, [], []), rel
        assert cog_validate(str(gdal))[0], rel
        with rasterio.open(ours) as a, rasterio.open(gdal) as b:
            np.testing.assert_array_equal(a.read(1), b.read(1), err_msg=str(rel))
            assert a.overviews(1) == b.overviews(1) == [2]
            assert a.tags(1) == b.tags(1) and a.descriptions == b.descriptions
        with rasterio.open(ours, overview_level=0) as a, rasterio.open(gdal, overview_level=0) as b:
            np.testing.assert_array_equal(a.read(1), b.read(1), err_msg=f"overview of {rel}")
    before = {rel: (runs[512].output_dir / rel).read_bytes() for rel in paths}
    again = run(load_config(sample_config(tmp_path, "c512", chunk=512, workers=2)), progress=False)
    assert again.manifest["resumed_rasters"] is True
    assert {rel: (again.output_dir / rel).read_bytes() for rel in paths} == before


@pytest.mark.parametrize("chunk", [1024, 700, 64])
def test_tiles_layout_block_tiles_equal_gdal_tiles(tmp_path, chunk):
    """The tiles layout's block tiles (written here, not by GDAL) against GDAL's write_tile of the same block:
    same pixels, CRS, transform, nodata and internal tiling; the VRT mosaic reads back the whole raster."""
    from gep_raster.outputs.io_write import write_tile

    h, w = (700, 900) if chunk == 64 else (H, W)
    grid, a = _grid(h, w), _field(h, w, seed=4)
    rows = [min(chunk, grid.height - r) for r in range(0, grid.height, chunk)]
    cols = [min(chunk, grid.width - c) for c in range(0, grid.width, chunk)]
    store = BlockStore(tmp_path / "state", tmp_path, grid, [("v", "v.vrt")], "key", (rows, cols), "tiles")
    for _, r0, c0, bh, bw in store.blocks():
        store.commit(r0, c0, a[None, r0:r0 + bh, c0:c0 + bw], [0], (np.zeros(1), np.zeros(1), {}))
    for _, r0, c0, bh, bw in list(store.blocks())[:3] + list(store.blocks())[-1:]:
        ref = write_tile(tmp_path / "ref.tif", a[r0:r0 + bh, c0:c0 + bw], grid, r0, c0, num_threads=1)
        assert ref > 0
        with rasterio.open(store.tile_path("v", r0, c0)) as ours, rasterio.open(tmp_path / "ref.tif") as gdal:
            np.testing.assert_array_equal(ours.read(1), gdal.read(1))
            assert ours.crs == gdal.crs and ours.transform == gdal.transform
            assert np.isnan(ours.nodata) and ours.block_shapes == gdal.block_shapes
            assert ours.profile["compress"] == "deflate" and ours.overviews(1) == []
    vrt = _publish(store)
    with rasterio.open(vrt) as ds:
        np.testing.assert_array_equal(ds.read(1), a)
        assert ds.tags()["run_hash"] == "abc" and ds.tags(1)["units"] == "yuan/a per pixel"


@pytest.mark.parametrize("layout", ["tiles", "cog"])
def test_blocks_committed_on_threads_at_once(tmp_path, layout):
    """Blocks committed by four threads at once from a fresh store (the first commits make the georeferencing
    template): the published raster is the array."""
    from concurrent.futures import ThreadPoolExecutor

    grid, a = _grid(1500, 1600), _field(1500, 1600, seed=5)
    chunk = 512
    rows = [min(chunk, grid.height - r) for r in range(0, grid.height, chunk)]
    cols = [min(chunk, grid.width - c) for c in range(0, grid.width, chunk)]
    rel = "v.vrt" if layout == "tiles" else "v.tif"
    store = BlockStore(tmp_path / "state", tmp_path, grid, [("v", rel)], "key", (rows, cols), layout)

    def commit(b):
        _, r0, c0, h, w = b
        store.commit(r0, c0, a[None, r0:r0 + h, c0:c0 + w], [0], (np.zeros(1), np.zeros(1), {}))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(commit, list(store.blocks())))
    with rasterio.open(_publish(store)) as ds:
        np.testing.assert_array_equal(ds.read(1), a)


def test_copy_without_copy_file_range_gives_the_same_file(tmp_path, monkeypatch):
    """A file system or OS without ``os.copy_file_range`` (EXDEV, ENOSYS): the spooled tiles are copied through
    Python and the COG is byte-identical."""
    import errno
    import os

    grid, a = _grid(1200, 1300), _field(1200, 1300, seed=6)
    ref = _publish(_store(tmp_path, "a", 512, grid, a)).read_bytes()

    def refuse(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    assert _publish(_store(tmp_path, "b", 512, grid, a)).read_bytes() == ref
