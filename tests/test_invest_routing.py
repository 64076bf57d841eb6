"""Routing, slope and LS with InVEST SDR 3.20 semantics (pygeoprocessing 2.4), numbers by hand.

The rules are pygeoprocessing's (``routing.pyx``: flow_dir_d8, flow_dir_mfd, flow_accumulation_*, extract_streams_*;
``geoprocessing_core.calculate_slope``) and InVEST's (``sdr._calculate_ls_factor``); every expected value below is
worked out from those rules in the comments. Equality with InVEST itself on whole DEMs: ``test_invest_peer.py``
and bench/crosscheck_invest.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from gep_raster.kernels import invest_routing as ir
from gep_raster.kernels.soil import ls_factor_invest_3_20_kernel
from gep_raster.kernels.terrain import slope_percent_invest_kernel
from gep_raster.terrain.routing import fill_pits, route, upslope_cells

F32 = np.float32
SQ2 = math.sqrt(2.0)


def d8(z):
    z = np.asarray(z, F32)
    v = np.isfinite(z)
    fd = ir.flow_dir_d8(fill_pits(z), v)
    return fd, ir.accumulate_d8(fd, v)


def test_d8_steepest_descent_weights_diagonals_by_one_over_sqrt2():
    # centre 10 m; E 9 m (drop 1), SE 8.5 m (drop 1.5 / sqrt2 = 1.0607): SE is steeper -> code 7
    z = np.full((3, 3), 20.0, F32)
    z[1, 1], z[1, 2], z[2, 2] = 10.0, 9.0, 8.5
    fd, _ = d8(z)
    assert fd[1, 1] == 7
    # SE 8.7 m: 1.3 / sqrt2 = 0.919 < 1 -> E (code 0); the flood D8 would take the lowest neighbour (SE)
    z[2, 2] = 8.7
    assert d8(z)[0][1, 1] == 0
    assert route(z, method="d8_flood")["upslope"][2, 2] >= 2  # the flood D8 sends the centre to SE
    # tie E (drop 1) and N (drop 1): the first direction of E, NE, N, ... wins -> E
    z = np.full((3, 3), 20.0, F32)
    z[1, 1], z[1, 2], z[0, 1] = 10.0, 9.0, 9.0
    assert d8(z)[0][1, 1] == 0


def test_d8_row_and_plateau_drains():
    # a slope: every cell flows E; the last cell has no lower neighbour -> a one-cell plateau drained only by
    # the grid edge: its first orthogonal off-grid neighbour is E (code 0)
    fd, acc = d8([[4, 3, 2, 1, 0]])
    assert fd.tolist() == [[0, 0, 0, 0, 0]]
    np.testing.assert_array_equal(acc, [[1, 2, 3, 4, 5]])
    # plateau 5 5 5 5 then 4: cell 3 drains downhill (distance 0); the plateau cells route to it by distance
    # (cell 2 at 1, cell 1 at 2, ...), each pointing at the neighbour it was reached from (E); the off-grid
    # drains of the plateau are dropped because a downhill drain exists
    fd, acc = d8([[5, 5, 5, 5, 4]])
    assert fd.tolist() == [[0, 0, 0, 0, 0]]
    np.testing.assert_array_equal(acc, [[1, 2, 3, 4, 5]])
    # a plateau with no downhill drain (one row, all equal): each cell takes its nodata drains in direction order:
    # E (valid, same height) is skipped, NE (off grid) is taken, N (orthogonal, off grid) replaces it and stays;
    # the last cell's E is off the grid, orthogonal and first -> E
    fd, acc = d8([[5, 5, 5]])
    assert fd.tolist() == [[2, 2, 0]]
    np.testing.assert_array_equal(acc, [[1, 1, 1]])


def test_d8_plateau_shortest_path_uses_sqrt2_steps():
    # 5 x 5 flat at 5 m with one lower cell at the SE corner (1 m): a drain at (4, 4)'s neighbours;
    # the centre (2, 2) is sqrt2 * 2 from the drain (3, 3) diagonally, so it points SE (code 7)
    z = np.full((5, 5), 5.0, F32)
    z[4, 4] = 1.0
    fd, acc = d8(z)
    assert fd[2, 2] == 7 and fd[3, 3] == 7
    assert acc[4, 4] == 25  # everything reaches the outlet


def test_filled_pit_routes_out():
    z = np.array([[9, 9, 9, 9], [9, 2, 5, 9], [9, 9, 5, 0]], F32)  # pit 2 m, pour point 5 m, outlet 0 m
    f = fill_pits(z)
    assert f[1, 1] == 5.0 and f[2, 3] == 0.0
    fd, acc = d8(z)
    assert acc[2, 3] == 12


def test_mfd_ridge_and_pyramid_by_hand():
    # ridge 0 1 2 1 0: the crest sends half each way (int(0.5 + 0.5*15) = 8 of 16) -> 2.5 1.5 1 1.5 2.5
    v = np.ones((1, 5), bool)
    z = np.array([[0, 1, 2, 1, 0]], F32)
    fd = ir.flow_dir_mfd(z, v)
    assert (fd[0, 2] >> 0) & 0xF == 8 and (fd[0, 2] >> 16) & 0xF == 8
    np.testing.assert_allclose(ir.accumulate_mfd(fd, v), [[2.5, 1.5, 1.0, 1.5, 2.5]])
    # 3 x 3 pyramid, peak 1 m over 8 neighbours at 0 m: shares 1/(4 + 4/sqrt2) = 0.1464 (orthogonal) and 0.1036
    # (diagonal): int(0.5 + 15*0.1464) = int(2.70) = 2, int(0.5 + 15*0.1036) = int(2.05) = 2 -> eight 2/16
    z = np.zeros((3, 3), F32)
    z[1, 1] = 1.0
    v = np.ones((3, 3), bool)
    fd = ir.flow_dir_mfd(z, v)
    assert all((int(fd[1, 1]) >> (4 * k)) & 0xF == 2 for k in range(8))
    acc = ir.accumulate_mfd(fd, v)
    np.testing.assert_allclose(acc[0], [1.125, 1.125, 1.125])
    assert acc[1, 1] == 1.0
    # aspect term of InVEST 3.13: (4*1 + 4*sqrt2)*2/16 at the peak
    x = ir.flow_length_factor(fd, packed=True)
    assert x[1, 1] == pytest.approx((4 + 4 * SQ2) / 8, rel=1e-6)


def test_streams_by_threshold():
    z = np.array([[4, 3, 2, 1, 0]], F32)
    out = route(z, method="d8", threshold_flow_accumulation=3)
    np.testing.assert_array_equal(out["stream"], [[0, 0, 0, 1, 1]])  # D8: upslope > 3 (strict)
    out = route(z, method="mfd", threshold_flow_accumulation=3)
    # MFD: the outlet (5 cells, flows off the grid) starts the stream; traced upstream while acc >= 3;
    # cell 1 (2 cells) reaches only the trace threshold 0.7*3 = 2.1? no (2 < 2.1) -> not a stream
    np.testing.assert_array_equal(out["stream"], [[0, 0, 1, 1, 1]])
    assert "stream" not in route(z, method="mfd")


def test_slope_percent_rule_on_a_plane_and_its_corner():
    # plane z = 3 m per 30 m column (10 %): interior, edges and corners exact (the middle cell stands in for a
    # missing outer one: a - b with weight 1, 2(d - e) with weight 2)
    z = np.tile(3.0 * np.arange(6, dtype=F32), (5, 1))
    s = slope_percent_invest_kernel(z, 30.0, 30.0)
    np.testing.assert_allclose(s, 10.0, rtol=1e-6)
    # b and c of cell (2, 2) missing: pair a - c falls back to (a - e)*sqrt2 [weight 1]; 2(d - f) [4]; g - i [2]:
    # dz/dx = (-3*sqrt2 - 12 - 6) / (7*30); y: a - g = 0 [2], 2(e - h) = 0 [2], f - i = 0 [1]
    zb = z.copy()
    zb[1, 2:4] = np.nan
    want = 100 * (3 * SQ2 + 18) / (7 * 30)
    assert slope_percent_invest_kernel(zb, 30.0, 30.0)[2, 2] == pytest.approx(want, rel=1e-6)
    # a NaN neighbour counts as the grid edge: map_overlap(depth 1, boundary NaN) = one call
    z2 = z.copy()
    z2[2, 3] = np.nan
    s2 = slope_percent_invest_kernel(z2, 30.0, 30.0)
    assert np.isnan(s2[2, 3]) and s2[2, 2] == pytest.approx(10.0, rel=1e-6)
    np.testing.assert_array_equal(slope_percent_invest_kernel(np.pad(z2, 1, constant_values=np.nan), 30.0, 30.0,
                                                              trim=1), s2)


def test_ls_invest_3_20_by_hand():
    # 20 %, FA 5, D 30 m: theta = atan(0.2); A = sqrt(4*900) = 60; x = |sin| + |cos|
    t = math.atan(0.2)
    sin, cos = math.sin(t), math.cos(t)
    beta = (sin / 0.0896) / (3 * sin ** 0.8 + 0.56)
    m = beta / (1 + beta)
    x = sin + cos
    a = 60.0
    lf = ((a + 900) ** (m + 1) - a ** (m + 1)) / (30 ** (m + 2) * x ** m * 22.13 ** m)
    s = 16.8 * sin - 0.5
    assert m == pytest.approx(0.6141838, rel=1e-6)
    out = ls_factor_invest_3_20_kernel(np.array([[20.0, 4.0, np.nan]], F32), np.array([[5.0, 1.0, 3.0]]), 30.0)
    assert out[0, 0] == pytest.approx(lf * s, rel=1e-6)
    # 4 %: m = 0.4, S = 10.8 sin + 0.03, ridge cell FA = 1 (A = 0): L = 900^1.4 / (30^2.4 x^0.4 22.13^0.4)
    t = math.atan(0.04)
    x = math.sin(t) + math.cos(t)
    want = 900 ** 1.4 / (30 ** 2.4 * x ** 0.4 * 22.13 ** 0.4) * (10.8 * math.sin(t) + 0.03)
    assert out[0, 1] == pytest.approx(want, rel=1e-6)
    assert np.isnan(out[0, 2])
    # l_max caps L
    capped = ls_factor_invest_3_20_kernel(np.array([[20.0]], F32), np.array([[1e6]]), 30.0, l_max=2.0)
    assert capped[0, 0] == pytest.approx(2.0 * s, rel=1e-6)


def test_route_methods_and_errors():
    z = np.tile(100 - 0.5 * np.arange(6, dtype=F32), (7, 1))
    z[0, 0] = np.nan
    for m in ("d8", "mfd", "d8_flood"):
        out = route(z, method=m, threshold_flow_accumulation=4)
        assert set(out) == {"filled_dem", "upslope", "flow_aspect", "stream"}
        assert all(a.dtype == F32 and a.shape == z.shape and np.isnan(a[0, 0]) for a in out.values())
        np.testing.assert_array_equal(out["upslope"], upslope_cells(z, None, method=m))
    # mass: every valid cell drains through an outlet column (all flow is eastward on this plane)
    assert route(z, method="mfd")["upslope"][:, -1].sum() == pytest.approx(41.0, rel=1e-12)
    with pytest.raises(ValueError, match="routing method"):
        route(z, method="dinf")
    with pytest.raises(ValueError, match="projected grid"):
        route(z, method="mfd", latlon=True)
    with pytest.raises(ValueError, match="threshold"):
        route(z, threshold_flow_accumulation=0)
    with pytest.raises(ValueError, match="no option"):
        upslope_cells(z, None, method="d8", exponent=1.1)
    with pytest.raises(ValueError, match="no valid"):
        route(np.full((3, 3), np.nan, F32))
