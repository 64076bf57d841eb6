"""Reading inputs onto the reference grid: tiles = one file, warping, nodata, class checks."""
from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from conftest import write_raster
from gep_raster.errors import RasterError
from gep_raster.grid import RefGrid
from gep_raster.grid.io_read import GridSource, grid_from_files

T = Affine(30, 0, 500000, 0, -30, 3000000)


def test_tiles_read_identical_to_single_file(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.normal(1500, 100, (60, 70)).astype(np.float32)
    a[5, 5] = -9999
    write_raster(tmp_path / "one.tif", a, transform=T, nodata=-9999.0)
    # 2 x 2 tiles overlapping by 3 pixels
    tiles = []
    for i, (r0, r1) in enumerate(((0, 33), (30, 60))):
        for j, (c0, c1) in enumerate(((0, 38), (35, 70))):
            t = T * Affine.translation(c0, r0)
            p = tmp_path / f"t{i}{j}.tif"
            write_raster(p, a[r0:r1, c0:c1], transform=t, nodata=-9999.0)
            tiles.append(p)
    g1 = RefGrid.from_raster(tmp_path / "one.tif")
    g4 = grid_from_files(sorted(tiles), "inputs.x")
    assert g4.almost_equals(g1)
    one = GridSource("one", [tmp_path / "one.tif"], g1, "continuous").read_all()
    four = GridSource("four", sorted(tiles), g1, "continuous")
    np.testing.assert_array_equal(one, four.read_all())
    # chunked reads equal too
    np.testing.assert_array_equal(one, four.to_dask((17, 23)).compute())
    assert np.isnan(one[5, 5])


def test_open_handles_per_thread_are_bounded(tmp_path, monkeypatch):
    # 12 tiles of one row; a thread keeps the HANDLES_PER_THREAD most recent open, reopens a closed one
    import gep_raster.grid.io_read as io_read

    monkeypatch.setattr(io_read, "HANDLES_PER_THREAD", 3)
    a = np.arange(10 * 120, dtype=np.float32).reshape(10, 120)
    tiles = []
    for j in range(12):
        p = tmp_path / f"t{j:02d}.tif"
        write_raster(p, a[:, 10 * j:10 * j + 10], transform=T * Affine.translation(10 * j, 0), nodata=-9999.0)
        tiles.append(p)
    src = GridSource("tiles", tiles, grid_from_files(tiles, "inputs.x"), "continuous")
    for j in range(12):
        np.testing.assert_array_equal(src.read(0, 10, 10 * j, 10 * j + 10), a[:, 10 * j:10 * j + 10])
    handles = src._local.handles
    assert list(handles) == tiles[-3:] and all(not ds.closed for ds in handles.values())
    np.testing.assert_array_equal(src.read(2, 9, 0, 25), a[2:9, 0:25])  # tiles 0-2 reopened
    assert list(handles) == [tiles[11], tiles[0], tiles[1], tiles[2]][-3:]


def test_other_crs_is_warped_onto_grid(tmp_path):
    # a constant field in EPSG:4326 around the grid: bilinear warping keeps the constant
    lc = np.ones((20, 20), np.uint8)
    write_raster(tmp_path / "lc.tif", lc, transform=T, nodata=255)
    g = RefGrid.from_raster(tmp_path / "lc.tif")
    geo = np.full((50, 50), 1234.5, np.float32)
    write_raster(tmp_path / "geo.tif", geo, crs="EPSG:4326", transform=Affine(0.001, 0, 116.98, 0, -0.001, 27.13),
                 nodata=-9999.0)
    src = GridSource("inputs.nep", [tmp_path / "geo.tif"], g, "continuous")
    out = src.read_all()
    assert np.allclose(out, 1234.5)
    assert src.describe()["resampling"] == ["bilinear"]


def test_categorical_float_raster_with_huge_nodata(tmp_path):
    a = np.array([[1, 3], [-3.3999999521443642e38, 19]], np.float32)
    write_raster(tmp_path / "lc.tif", a, transform=T, nodata=-3.3999999521443642e38)
    g = RefGrid.from_raster(tmp_path / "lc.tif")
    out = GridSource("inputs.land_cover", [tmp_path / "lc.tif"], g, "categorical").read_all()
    assert out.dtype == np.int32
    assert out.tolist() == [[1, 3], [-1, 19]]


def test_non_integer_classes_rejected(tmp_path):
    write_raster(tmp_path / "lc.tif", np.array([[1.5, 2.0]], np.float32), transform=T)
    g = RefGrid.from_raster(tmp_path / "lc.tif")
    with pytest.raises(RasterError, match="inputs.land_cover: .*lc.tif holds non-integer class codes"):
        GridSource("inputs.land_cover", [tmp_path / "lc.tif"], g, "categorical").read_all()


def test_missing_band(tmp_path):
    write_raster(tmp_path / "x.tif", np.ones((2, 2), np.float32), transform=T)
    g = RefGrid.from_raster(tmp_path / "x.tif")
    with pytest.raises(RasterError, match="inputs.dem: .*x.tif has 1 band\\(s\\); band 2 was asked for"):
        GridSource("inputs.dem", [tmp_path / "x.tif"], g, "continuous", band=2)


def test_int16_source_is_interpolated_in_float(tmp_path):
    # 3 x 3 source pixels of 60 m, columns 100, 101, 102: bilinear at the 30 m pixel centres gives fractions
    src = np.tile(np.array([100, 101, 102], np.int16), (3, 1))
    write_raster(tmp_path / "p.tif", src, transform=Affine(60, 0, 500000, 0, -60, 3000000), nodata=-32767)
    write_raster(tmp_path / "lc.tif", np.ones((6, 6), np.uint8), transform=T, nodata=255)
    g = RefGrid.from_raster(tmp_path / "lc.tif")
    out = GridSource("p", [tmp_path / "p.tif"], g, "continuous").read_all()
    # centre of grid column 2 is x = 75 m -> source pixel-centre coordinate 75/60 - 0.5 = 0.75 -> 100.75
    assert out[2, 2] == pytest.approx(100.75)
    # column 3: x = 105 m -> 1.25 -> 101.25
    assert out[3, 3] == pytest.approx(101.25)


def test_bilinear_same_crs_equals_a_reference_by_hand(tmp_path):
    """Coarse source in the grid's CRS (the separable fast path): every pixel equals bilinear interpolation at
    its exact pixel-centre position, computed here from the formula; nodata neighbours are dropped and the
    other weights renormalised; pixels outside the source are NaN; windows of any size give the same values."""
    rng = np.random.default_rng(7)
    src = (rng.random((7, 9)) * 100).astype(np.float32)
    src[2, 3] = -9999.0  # nodata
    st = Affine(70, 0, 500010, 0, -70, 3000020)  # 70 m pixels, not aligned with the 30 m grid
    write_raster(tmp_path / "p.tif", src, transform=st, nodata=-9999.0)
    write_raster(tmp_path / "lc.tif", np.ones((20, 24), np.uint8), transform=T, nodata=255)  # reaches past the source
    g = RefGrid.from_raster(tmp_path / "lc.tif")
    gs = GridSource("p", [tmp_path / "p.tif"], g, "continuous")
    out = gs.read_all()
    ok = src != -9999.0
    ref = np.full(out.shape, np.nan)
    for r in range(out.shape[0]):
        for c in range(out.shape[1]):
            x, y = 500000 + (c + 0.5) * 30, 3000000 - (r + 0.5) * 30
            fc, fr = (x - 500010) / 70 - 0.5, (3000020 - y) / 70 - 0.5
            if not (-0.5 <= fr <= 7 - 0.5 and -0.5 <= fc <= 9 - 0.5):
                continue  # outside the source: no value
            r0, c0 = int(np.floor(fr)), int(np.floor(fc))
            acc = wsum = 0.0
            for rr, wy in ((r0, 1 - (fr - r0)), (r0 + 1, fr - r0)):
                for cc, wx in ((c0, 1 - (fc - c0)), (c0 + 1, fc - c0)):
                    if 0 <= rr < 7 and 0 <= cc < 9 and ok[rr, cc] and wy * wx > 0:
                        acc += wy * wx * float(src[rr, cc])
                        wsum += wy * wx
            ref[r, c] = acc / wsum if wsum > 0 else np.nan
    assert np.isnan(out[:, -1]).all() and np.isfinite(ref).sum() > 300  # 24 x 30 m = 720 m > 9 x 70 m + 10 m
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-4, equal_nan=True)
    # windows of other sizes: identical values
    parts = np.vstack([np.hstack([gs.read(r, min(r + 7, 20), c, min(c + 5, 24)) for c in range(0, 24, 5)])
                       for r in range(0, 20, 7)])
    assert np.array_equal(parts, out, equal_nan=True)
