"""The numba priority flood (gep_raster.kernels.priority_flood) against pyflwdir and hand-worked grids."""
from __future__ import annotations

import numpy as np
import pytest
from pyflwdir import from_array, streams
from pyflwdir.dem import fill_depressions

from gep_raster.kernels.priority_flood import d8_accumulate_along_order, priority_flood_d8
from gep_raster.terrain.routing import fill_depressions_d8, upslope_area

SENTINEL = float(np.finfo(np.float32).min)
T30 = (30.0, 0.0, 0.0, 0.0, -30.0, 0.0)


def _pyflwdir(z):
    """pyflwdir's D8 codes and int counts for a float32 DEM with NaN nodata (the reference)."""
    valid = ~np.isnan(z)
    _, d8 = fill_depressions(np.where(valid, z, np.float32(SENTINEL)).astype(np.float32), outlets="edge",
                             nodata=SENTINEL, max_depth=-1.0)
    f = from_array(d8, ftype="d8", check_ftype=False)
    acc = streams.accuflux(idxs_ds=f.idxs_ds, seq=f.idxs_seq, data=np.ones(f.size, np.int32), nodata=-9999)
    return d8, np.where(valid, acc.reshape(z.shape), 0)


def _random_dems(n):
    """DEMs with many ties (integer levels: flats and closed depressions), NaN holes, -0.0 and +0.0."""
    rng = np.random.default_rng(20261122)
    for t in range(n):
        h, w = (int(v) for v in rng.integers(1, 48, 2))
        if t % 3 == 0:
            z = (rng.random((h, w)) * 10).astype(np.float32)
        else:
            z = rng.integers(0, int(rng.integers(1, 8)), (h, w)).astype(np.float32)
        if t % 4 == 0:
            z[rng.random((h, w)) < 0.2] = np.nan
        if t % 5 == 0:
            z[z == 0] = -0.0
        if np.isnan(z).all():
            continue
        yield z


def test_d8_codes_and_counts_identical_to_pyflwdir_on_random_dems():
    n = 0
    for z in _random_dems(400):
        valid = ~np.isnan(z)
        d8_ref, acc_ref = _pyflwdir(z)
        d8, order = priority_flood_d8(np.where(valid, z, np.float32(0)), valid)
        np.testing.assert_array_equal(d8, d8_ref)
        assert sorted(order.tolist()) == np.flatnonzero(valid).tolist()  # every valid cell once
        np.testing.assert_array_equal(d8_accumulate_along_order(d8, order), acc_ref)
        n += 1
    assert n > 300


def test_identical_to_pyflwdir_on_real_dem(shared):
    import rasterio

    path = shared / "invest_gura_kenya" / "DEM_gura.tif"
    if not path.exists():
        pytest.skip(f"{path} not present")
    with rasterio.open(path) as ds:
        z = ds.read(1, masked=True).astype(np.float32).filled(np.nan)
    d8_ref, acc_ref = _pyflwdir(z)
    valid = ~np.isnan(z)
    d8, order = priority_flood_d8(np.where(valid, z, np.float32(0)), valid)
    np.testing.assert_array_equal(d8, d8_ref)
    up = upslope_area(z, T30)
    np.testing.assert_array_equal(np.where(valid, up, 0), acc_ref.astype(np.float32))
    assert np.isnan(up[~valid]).all()


def test_flood_order_puts_every_cell_after_its_receiver():
    z = np.array([[5, 5, 5, 5, 5], [5, 2, 3, 1, 5], [5, 4, 0, 4, 5], [5, 5, 5, 5, 4]], np.float32)
    valid = np.ones(z.shape, bool)
    d8, order = priority_flood_d8(z, valid)
    pos = np.empty(z.size, int)
    pos[order] = np.arange(order.size)
    step = {1: (0, 1), 2: (1, 1), 4: (1, 0), 8: (1, -1), 16: (0, -1), 32: (-1, -1), 64: (-1, 0), 128: (-1, 1)}
    for r in range(z.shape[0]):
        for c in range(z.shape[1]):
            if d8[r, c] != 0:
                dr, dc = step[int(d8[r, c])]
                assert pos[(r + dr) * z.shape[1] + c + dc] < pos[r * z.shape[1] + c]


def test_hand_worked_pit_fill_and_counts():
    # a closed pit (0) in a 3 x 3 interior at 3 m, a rim at 5 m, and one rim cell (bottom-right corner) at 4 m
    z = np.array([[5, 5, 5, 5, 5],
                  [5, 3, 3, 3, 5],
                  [5, 3, 0, 3, 5],
                  [5, 3, 3, 3, 5],
                  [5, 5, 5, 5, 4]], np.float32)
    filled, d8 = fill_depressions_d8(z)
    # the corner (4 m) leaves the queue first; it floods (3, 3), which is raised to 4 m; the interior is raised
    # to that spill level and drains out through the corner, the only pit
    np.testing.assert_array_equal(filled[1:4, 1:4], np.full((3, 3), 4, np.float32))
    assert filled[0, 0] == 5 and filled[4, 4] == 4
    assert d8[4, 4] == 0 and (d8 != 0).sum() == 24
    assert d8[3, 3] == 2  # SE, to the corner
    assert d8[2, 2] == 2  # the pit is first reached from (3, 3), the first interior cell out of the queue
    up = upslope_area(z, T30)
    assert up[4, 4] == 25  # every cell drains through the corner
    assert up[3, 3] == 25 - 3  # all but the corner and the two rim cells it floods itself, (3, 4) and (4, 3)
    assert up[3, 4] == 1 and up[4, 3] == 1
    # a 1 x 5 ramp: the lowest cell is the outlet, counts 5..1 up the ramp
    np.testing.assert_array_equal(upslope_area(np.array([[1, 2, 3, 4, 5]], np.float32), T30), [[5, 4, 3, 2, 1]])


def test_errors():
    with pytest.raises(ValueError, match="float32"):
        priority_flood_d8(np.zeros((3, 3)), np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="one shape"):
        priority_flood_d8(np.zeros((3, 3), np.float32), np.ones((3, 4), bool))
    z = np.zeros((3, 3), np.float32)
    z[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        priority_flood_d8(z, np.ones((3, 3), bool))
