"""Reading inputs onto the reference grid: tiles = one file, warping, nodata, class checks."""
from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from conftest import write_raster
from gep_raster.errors import RasterError
from gep_raster.grid import RefGrid
from gep_raster.io_read import GridSource, grid_from_files

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
