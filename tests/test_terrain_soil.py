"""Tests of gep_raster.kernels.terrain, gep_raster.kernels.soil and gep_raster.terrain.routing.

Expected values are computed by hand (arithmetic in the comments), or with the published
formulas written out literally in this file, independently of the kernel code.
"""
from __future__ import annotations

import math
import pathlib
import sys

import numpy as np
import pytest

try:  # the package is not installed in the venv; make the repo root importable
    import gep_raster  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from gep_raster.kernels.soil import (ls_factor_kernel, r_factor_from_annual_precip_kernel,
                                     rusle_kernel)
from gep_raster.kernels.terrain import aspect_factor_kernel, slope_kernel
from gep_raster.terrain.routing import flow_directions_d8, upslope_area

F32 = np.float32


# ======================================================================================
# slope / aspect factor (Horn 1981)
# ======================================================================================
def _plane(h, w, gx, gy, csx, csy):
    """z = gx·x + gy·y at cell centres; x eastwards, y southwards (row direction), metres."""
    r, c = np.mgrid[0:h, 0:w]
    return (gx * (c + 0.5) * csx + gy * (r + 0.5) * csy).astype(F32)


def test_slope_tilted_plane_is_exact_everywhere():
    # z = 0.1·x with 10 m cells -> z rises 1 m per column; Horn interior:
    # dz/dx = ((c+2f+i) − (a+2d+g)) / (8·10) = (4·(z+1) − 4·(z−1)) / 80 = 8/80 = 0.1
    # Edges/corners use the planar extrapolation (d = 2e − f, ...) -> also exactly 0.1.
    dem = _plane(6, 8, 0.1, 0.0, 10.0, 10.0)
    s = slope_kernel(dem, 10.0, 10.0)
    assert s.dtype == np.float32 and s.shape == dem.shape
    np.testing.assert_allclose(s, 0.1, rtol=1e-5)


def test_slope_anisotropic_plane_and_aspect_factor():
    # z = 0.1·x + 0.2·y, cells 10 m × 20 m -> slope = sqrt(0.1² + 0.2²) = sqrt(0.05) = 0.223607
    # x factor = (|0.1| + |0.2|) / sqrt(0.05) = 0.3 / 0.223607 = 1.341641
    dem = _plane(5, 7, 0.1, 0.2, 10.0, 20.0)
    np.testing.assert_allclose(slope_kernel(dem, 10.0, 20.0), math.sqrt(0.05), rtol=1e-5)
    np.testing.assert_allclose(aspect_factor_kernel(dem, 10.0, 20.0), 0.3 / math.sqrt(0.05),
                               rtol=1e-5)


def test_slope_centre_edge_rule_matches_gdal_compute_edges():
    # edges="centre": every missing neighbour := e (GDAL gdaldem -compute_edges).
    # z = column index (0.1·x, 10 m cells), so e = col, f = col + 1, d = col − 1.
    dem = _plane(6, 8, 0.1, 0.0, 10.0, 10.0)
    s = slope_kernel(dem, 10.0, 10.0, edges="centre")
    np.testing.assert_allclose(s[1:-1, 1:-1], 0.1, rtol=1e-5)  # interior unchanged
    # left edge (a = d = g = e):  dz/dx = ((c+2f+i) − 4e)/80 = 4·1/80 = 0.05
    np.testing.assert_allclose(s[1:-1, 0], 0.05, rtol=1e-5)
    # top edge (a = b = c = e):   dz/dx = ((e+2f+i) − (e+2d+g))/80 = (2·2 + 2)/80 = 0.075
    #                             dz/dy = ((g+2h+i) − 4e)/80 = (4·col − 4·col)/80 = 0
    np.testing.assert_allclose(s[0, 1:-1], 0.075, rtol=1e-5)
    # top-left corner (a=b=c=d=g=e, z=e+0.5 there):  dz/dx = ((e+2(e+1)+(e+1)) − 4e)/80 = 3/80
    #                                               dz/dy = ((e+2e+(e+1)) − 4e)/80 = 1/80
    np.testing.assert_allclose(s[0, 0], math.hypot(3 / 80, 1 / 80), rtol=1e-5)


def test_slope_horn_3x3_hand_case():
    # ESRI "How Slope works" example, cell 5 m:
    #   a b c     50 45 50
    #   d e f  =  30 30 30
    #   g h i      8 10 10
    dem = np.array([[50, 45, 50], [30, 30, 30], [8, 10, 10]], dtype=F32)
    s = slope_kernel(dem, 5.0, 5.0)
    # centre: dz/dx = ((50 + 2·30 + 10) − (50 + 2·30 + 8)) / (8·5) = (120 − 118)/40 = 0.05
    #         dz/dy = ((8 + 2·10 + 10) − (50 + 2·45 + 50)) / 40  = (38 − 190)/40  = −3.8
    #         slope = sqrt(0.05² + 3.8²) = 3.800329  (= 75.26°, ESRI gives 75.25°)
    assert s[1, 1] == pytest.approx(math.sqrt(0.05**2 + 3.8**2), rel=1e-6)
    # top-middle pixel (e = 45), row above missing:
    #  extrapolate: b = 2e − h = 90 − 30 = 60; a = b + d − e = 60 + 50 − 45 = 65; c = 65
    #   dz/dx = ((65 + 2·50 + 30) − (65 + 2·50 + 30))/40 = 0
    #   dz/dy = ((30 + 2·30 + 30) − (65 + 2·60 + 65))/40 = (120 − 250)/40 = −3.25
    assert s[0, 1] == pytest.approx(3.25, rel=1e-6)
    #  centre rule: a = b = c = 45 -> dz/dy = (120 − (45 + 90 + 45))/40 = −1.5, dz/dx = 0
    assert slope_kernel(dem, 5.0, 5.0, edges="centre")[0, 1] == pytest.approx(1.5, rel=1e-6)


def test_slope_nan_centre_and_nan_neighbour():
    dem = _plane(7, 7, 0.1, 0.0, 10.0, 10.0)
    dem[3, 3] = np.nan
    s = slope_kernel(dem, 10.0, 10.0)
    assert np.isnan(s[3, 3])
    assert np.isnan(s).sum() == 1
    # neighbours of the hole: NaN neighbour is treated like a grid edge -> plane still exact
    np.testing.assert_allclose(s[~np.isnan(s)], 0.1, rtol=1e-5)


def test_aspect_factor_flat_axis_and_diagonal():
    flat = np.full((4, 4), 12.0, dtype=F32)
    np.testing.assert_array_equal(aspect_factor_kernel(flat, 30.0, 30.0), 1.0)  # flat -> x = 1
    east = _plane(4, 5, 0.3, 0.0, 30.0, 30.0)  # alpha = 90°: |sin| + |cos| = 1 + 0 = 1
    np.testing.assert_allclose(aspect_factor_kernel(east, 30.0, 30.0), 1.0, rtol=1e-6)
    diag = _plane(4, 5, 0.3, 0.3, 30.0, 30.0)  # alpha = 45°: 2·sin 45° = sqrt(2)
    np.testing.assert_allclose(aspect_factor_kernel(diag, 30.0, 30.0), math.sqrt(2), rtol=1e-6)


@pytest.mark.parametrize("chunks", [(7, 5), (16, 16), (3, 11)])
@pytest.mark.parametrize("edges", ["extrapolate", "centre"])
def test_chunk_independence_map_overlap(chunks, edges):
    da = pytest.importorskip("dask.array")
    r, c = np.mgrid[0:40, 0:37].astype(np.float64)
    dem = (50 * np.sin(c / 7) * np.cos(r / 9) + 0.3 * c + 0.02 * r**2 + 300).astype(F32)
    dem[10:14, 5:9] = np.nan    # interior hole
    dem[20, 20] = np.nan        # single pixel
    dem[0:3, 30:37] = np.nan    # hole touching top/right edges
    dem[39, 0:5] = np.nan       # along the bottom edge
    dem[15:18, 14] = np.nan     # crosses chunk boundaries for some chunkings
    for fn in (slope_kernel, aspect_factor_kernel):
        ref = fn(dem, 10.0, 12.5, edges=edges)
        lazy = da.from_array(dem, chunks=chunks).map_overlap(
            fn, depth=1, boundary=np.nan, dtype=np.float32,
            cellsize_x=10.0, cellsize_y=12.5, edges=edges)
        got = lazy.compute(scheduler="threads")
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, ref)  # bit-identical, NaN at the same places


def test_terrain_value_errors():
    with pytest.raises(ValueError, match="2-D"):
        slope_kernel(np.zeros((2, 3, 3), dtype=F32), 10.0, 10.0)
    with pytest.raises(ValueError, match="2-D"):
        aspect_factor_kernel(np.zeros(5, dtype=F32), 10.0, 10.0)
    with pytest.raises(ValueError, match="cellsize_x"):
        slope_kernel(np.zeros((3, 3), dtype=F32), 0.0, 10.0)
    with pytest.raises(ValueError, match="cellsize_y"):
        aspect_factor_kernel(np.zeros((3, 3), dtype=F32), 10.0, -5.0)
    with pytest.raises(ValueError, match="cellsize_x"):
        slope_kernel(np.zeros((3, 3), dtype=F32), float("nan"), 10.0)
    with pytest.raises(ValueError, match="floating"):
        slope_kernel(np.zeros((3, 3), dtype=np.int16), 10.0, 10.0)
    with pytest.raises(ValueError, match="edges"):
        slope_kernel(np.zeros((3, 3), dtype=F32), 10.0, 10.0, edges="mirror")


# ======================================================================================
# LS factor (Desmet & Govers 1996, McCool 1987/1989, InVEST SDR)
# ======================================================================================
def _ls_literal(pct, cells, x, m, D, l_max):
    """The formula from the InVEST SDR user guide, written out literally (float64)."""
    theta = math.atan(pct / 100.0)
    S = 10.8 * math.sin(theta) + 0.03 if pct < 9 else 16.8 * math.sin(theta) - 0.5
    A = (cells - 1) * D**2  # contributing area at the cell inlet (m²)
    L = ((A + D**2) ** (m + 1) - A ** (m + 1)) / (D ** (m + 2) * x**m * 22.13**m)
    return min(L, l_max) * S, L, S


def _m_beta(pct):
    """m = beta/(1+beta), beta = (sin θ/0.0896)/(3·sin θ^0.8 + 0.56) for slopes > 9 %."""
    st = math.sin(math.atan(pct / 100.0))
    beta = (st / 0.0896) / (3 * st**0.8 + 0.56)
    return beta / (1 + beta)


def test_ls_factor_all_slope_classes_and_l_max():
    D = 30.0
    l_max = 25.0  # like InVEST's test_ls_factor: only the last (huge-area) pixel is capped
    pct = [0.5, 1.5, 4.0, 7.0, 12.0, 15.0]
    cells = [1.0, 10.0, 100.0, 200.0, 100.0, 1.0e7]
    x = [1.0, 1.0, 1.0, math.sqrt(2.0), 1.0, 1.0]
    # m from the slope class table: ≤1 % 0.2 | ≤3.5 % 0.3 | ≤5 % 0.4 | ≤9 % 0.5 | >9 % β/(1+β)
    m = [0.2, 0.3, 0.4, 0.5, _m_beta(12.0), _m_beta(15.0)]
    # e.g. pixel 0 (0.5 %, ridge, A = 0): L = D^(2·1.2)/(D^2.2·22.13^0.2) = (30/22.13)^0.2
    #      = 1.0627; S = 10.8·sin(atan 0.005) + 0.03 = 0.08400 -> LS = 0.0893
    exp = [_ls_literal(p, n, xx, mm, D, l_max) for p, n, xx, mm in zip(pct, cells, x, m)]
    assert exp[0][1] == pytest.approx((30 / 22.13) ** 0.2, rel=1e-12)
    assert all(e[1] < l_max for e in exp[:-1]) and exp[-1][1] > l_max

    slope = np.array([[p / 100.0 for p in pct]], dtype=F32)
    got = ls_factor_kernel(slope, np.array([cells], dtype=F32), np.array([x], dtype=F32), D,
                           l_max=l_max)
    assert got.dtype == np.float32 and got.shape == (1, 6)
    np.testing.assert_allclose(got[0], [e[0] for e in exp], rtol=1e-5)
    # last pixel is exactly l_max · S
    assert got[0, -1] == pytest.approx(l_max * exp[-1][2], rel=1e-5)

    # no cap: the huge-area pixel gets its full L (float64 literal is still accurate here)
    got_inf = ls_factor_kernel(slope, np.array([cells], dtype=F32), np.array([x], dtype=F32),
                               D, l_max=None)
    np.testing.assert_allclose(got_inf[0, -1], exp[-1][1] * exp[-1][2], rtol=1e-5)
    # default l_max = 122 (InVEST default) caps it at 122·S
    got_def = ls_factor_kernel(slope, np.array([cells], dtype=F32), np.array([x], dtype=F32), D)
    assert got_def[0, -1] == pytest.approx(122.0 * exp[-1][2], rel=1e-5)
    np.testing.assert_allclose(got_def[0, :-1], got[0, :-1], rtol=1e-6)


def test_ls_factor_counts_from_the_log_table_and_computed():
    # integer counts n with n - 1 < 4096 take log(n-1) and log1p(1/(n-1)) from a table, others (n - 1 >= 4096,
    # fractional MFD counts) compute them: both equal the literal formula on either side of the table's end
    D = 10.0
    cells = [2.0, 3.0, 4096.0, 4097.0, 4098.0, 2.5, 4096.5, 12345.25, 60000.0]
    for pct, x in ((12.0, 1.2), (3.0, 1.0), (8.0, math.sqrt(2.0))):
        m = _m_beta(pct) if pct > 9 else {3.0: 0.3, 8.0: 0.5}[pct]
        exp = [_ls_literal(pct, n, x, m, D, np.inf)[0] for n in cells]
        got = ls_factor_kernel(np.full((1, len(cells)), pct / 100.0, dtype=F32), np.array([cells], dtype=F32),
                               np.full((1, len(cells)), x, dtype=F32), D, l_max=None)
        np.testing.assert_allclose(got[0], exp, rtol=2e-7)


def test_ls_factor_random_pixels_equal_the_formula_and_do_not_depend_on_the_block():
    # every slope class, ridge cells (n = 1), table and computed counts, fractional (MFD) counts, l_max, nodata;
    # the kernel works in strips of rows, so sub-blocks cut the strips elsewhere: the same float32 values
    rng = np.random.default_rng(7)
    h, w = 150, 97
    slope = (rng.random((h, w)) ** 2 * 0.6).astype(F32)
    slope[rng.random((h, w)) < 0.3] *= 0.1
    slope[5, 5] = 0.0
    cells = np.floor(rng.pareto(0.8, (h, w)) + 1).astype(F32)
    cells[rng.random((h, w)) < 0.1] += 0.5
    cells[3, :7] = [1.0, 4096.0, 4097.0, 1e6, 2.5, 0.5, np.nan]
    x = (1 + rng.random((h, w)) * 0.414).astype(F32)
    x[7, 7] = np.nan
    slope[8, 8] = np.nan
    slope[9, 9] = -0.1
    D, l_max = 10.0, 60.0
    got = ls_factor_kernel(slope, cells, x, D, l_max=l_max)
    parts = np.block([[ls_factor_kernel(slope[r:r + 61, c:c + 40], cells[r:r + 61, c:c + 40], x[r:r + 61, c:c + 40],
                                        D, l_max=l_max) for c in range(0, w, 40)] for r in range(0, h, 61)])
    np.testing.assert_array_equal(parts, got)
    bad = np.isnan(slope) | np.isnan(cells) | np.isnan(x) | (slope < 0) | (cells < 1)
    assert np.isnan(got[bad]).all() and np.isfinite(got[~bad]).all()
    for r, c in zip(*np.nonzero(~bad)):
        if (r * w + c) % 7:
            continue  # every 7th valid pixel against the literal formula
        pct = float(slope[r, c]) * 100.0
        if pct <= 9.0 or slope[r, c] <= np.float32(0.09):
            m = 0.2 if slope[r, c] <= np.float32(0.01) else 0.3 if slope[r, c] <= np.float32(0.035) else (
                0.4 if slope[r, c] <= np.float32(0.05) else 0.5)
        else:
            m = _m_beta(pct)
        exp = _ls_literal(pct, float(cells[r, c]), float(x[r, c]), m, D, l_max)[0]
        assert got[r, c] == pytest.approx(exp, rel=2e-6, abs=1e-12), (r, c)


def test_ls_factor_9_percent_boundary_and_nan():
    # float32(0.09) is the 9 % class: S = 16.8·sin θ − 0.5 (s ≥ 9 %), m = 0.5 (5 < s ≤ 9 %)
    # ridge cell (n = 1): L = (D/22.13)^0.5 = (30/22.13)^0.5 = 1.16432
    slope = np.array([[0.09, np.nan, 0.05, 0.05]], dtype=F32)
    cells = np.array([[1.0, 5.0, np.nan, 0.0]], dtype=F32)  # 0 cells is invalid (< 1)
    x = np.ones((1, 4), dtype=F32)
    got = ls_factor_kernel(slope, cells, x, 30.0)
    st = math.sin(math.atan(0.09))
    assert got[0, 0] == pytest.approx((30 / 22.13) ** 0.5 * (16.8 * st - 0.5), rel=1e-5)
    assert np.isnan(got[0, 1:]).all()


def test_ls_factor_value_errors():
    a = np.ones((2, 2), dtype=F32)
    with pytest.raises(ValueError, match="2-D"):
        ls_factor_kernel(np.ones((2, 2, 2), dtype=F32), a, a, 30.0)
    with pytest.raises(ValueError, match="same shape"):
        ls_factor_kernel(a, np.ones((2, 3), dtype=F32), a, 30.0)
    with pytest.raises(ValueError, match="cell_size"):
        ls_factor_kernel(a, a, a, 0.0)
    with pytest.raises(ValueError, match="l_max"):
        ls_factor_kernel(a, a, a, 30.0, l_max=-1.0)


# ======================================================================================
# RUSLE and R factor
# ======================================================================================
def test_rusle_potential_and_actual():
    # A_p = R·K·LS = 5000 · 0.025 · 4 = 500 t/ha/a ; A_a = A_p · C · P = 500 · 0.006 · 1 = 3
    one = np.ones((1, 1), dtype=F32)
    pot, act = rusle_kernel(5000 * one, 0.025 * one, 4 * one, 0.006 * one, one)
    assert pot.dtype == np.float32 and act.dtype == np.float32
    assert pot[0, 0] == pytest.approx(500.0, rel=1e-6)
    assert act[0, 0] == pytest.approx(3.0, rel=1e-5)
    # retention Q = A_p − A_a = 500·(1 − 0.006) = 497
    assert pot[0, 0] - act[0, 0] == pytest.approx(497.0, rel=1e-5)


def test_rusle_broadcast_and_nan():
    r = np.array([[5000.0, np.nan], [5000.0, 5000.0]], dtype=F32)
    k = np.full((2, 2), 0.025, dtype=F32)
    ls = np.array([[4.0, 4.0], [4.0, 4.0]], dtype=F32)
    c = np.array([[0.006, 0.006], [np.nan, 0.5]], dtype=F32)
    pot, act = rusle_kernel(r, k, ls, c, 1.0)  # scalar P broadcast
    assert np.isnan(pot[0, 1]) and np.isnan(act[0, 1])
    assert np.isnan(pot[1, 0]) and np.isnan(act[1, 0])  # NaN C -> both NaN (shared mask)
    assert act[1, 1] == pytest.approx(250.0, rel=1e-6)   # 500 · 0.5 · 1
    with pytest.raises(ValueError, match="2-D"):
        rusle_kernel(np.ones(3), 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="broadcast"):
        rusle_kernel(np.ones((2, 3)), np.ones((3, 2)), 1.0, 1.0, 1.0)


def test_r_factor_renard_freimund():
    p = np.array([[600.0, 1600.0, 0.0, np.nan, -5.0, 850.0]], dtype=F32)
    got = r_factor_from_annual_precip_kernel(p)
    # P = 600 ≤ 850:  R = 0.0483 · 600^1.61 = 0.0483 · e^(1.61·ln 600) = 0.0483 · 29 704 ≈ 1434.7
    assert got[0, 0] == pytest.approx(0.0483 * 600.0**1.61, rel=1e-6)
    assert got[0, 0] == pytest.approx(1434.7, rel=1e-3)
    # P = 1600 > 850: R = 587.8 − 1.219·1600 + 0.004105·1600² = 587.8 − 1950.4 + 10 508.8 = 9146.2
    assert got[0, 1] == pytest.approx(9146.2, rel=1e-6)
    assert got[0, 2] == 0.0
    assert np.isnan(got[0, 3]) and np.isnan(got[0, 4])
    # 850 mm uses the power branch: 0.0483 · 850^1.61 ≈ 2516 (quadratic would give 2517.5)
    assert got[0, 5] == pytest.approx(0.0483 * 850.0**1.61, rel=1e-6)
    with pytest.raises(ValueError, match="2-D"):
        r_factor_from_annual_precip_kernel(np.ones((2, 2, 2), dtype=F32))


# ======================================================================================
# routing (pyflwdir)
# ======================================================================================
TRANSFORM = (30.0, 0.0, 500000.0, 0.0, -30.0, 4000000.0)


def _v_valley(h=9, w=11):
    """V-shaped valley: the thalweg is column w//2 and drops 1 m per row southwards.

    The sides rise 10 m per column away from the thalweg, so the lowest cell is the bottom of
    the thalweg (the single outlet). The top row and the outer columns are ridge cells.
    """
    r, c = np.mgrid[0:h, 0:w]
    return (10.0 * np.abs(c - w // 2) + (h - 1 - r) + 100.0).astype(F32)


def test_upslope_area_v_valley():
    dem = _v_valley()
    h, w = dem.shape
    up = upslope_area(dem, TRANSFORM)
    assert up.dtype == np.float32 and up.shape == dem.shape
    assert up[h - 1, w // 2] == h * w                   # outlet gets every cell (99)
    np.testing.assert_array_equal(up[0, :], 1.0)        # top row: ridge cells
    np.testing.assert_array_equal(up[:, 0], 1.0)        # outer columns: ridge cells
    np.testing.assert_array_equal(up[:, -1], 1.0)
    assert up.min() == 1.0                              # count includes the cell itself
    assert np.all(np.diff(up[:, w // 2]) > 0)           # thalweg accumulates downstream


def test_upslope_area_nan_pit_and_conservation():
    dem = _v_valley()
    h, w = dem.shape
    dem[4, 8] = np.nan          # hole in a side slope
    dem[0, 0] = np.nan          # nodata corner
    dem[3, w // 2] = 90.0       # a pit in the thalweg (below the outlet): must be filled
    n_valid = int(np.isfinite(dem).sum())  # 99 − 2 = 97
    up = upslope_area(dem, TRANSFORM)
    np.testing.assert_array_equal(np.isnan(up), np.isnan(dem))   # NaN preserved exactly
    assert up[h - 1, w // 2] == n_valid                          # everything reaches the outlet
    # conservation in general: the outlets (pits) of the D8 network hold all valid cells
    flw = flow_directions_d8(dem, TRANSFORM)
    assert up.ravel()[flw.idxs_pit].sum() == n_valid
    assert up.ravel()[flw.idxs_pit].tolist() == [float(n_valid)]


def test_upslope_area_value_errors():
    with pytest.raises(ValueError, match="2-D"):
        upslope_area(np.zeros((2, 3, 3), dtype=F32), TRANSFORM)
    with pytest.raises(ValueError, match="no valid"):
        upslope_area(np.full((4, 4), np.nan, dtype=F32), TRANSFORM)
    with pytest.raises(ValueError, match="floating"):
        upslope_area(np.zeros((4, 4), dtype=np.int32), TRANSFORM)


@pytest.mark.parametrize("edges", ["extrapolate", "centre"])
def test_slope_aspect_kernel_is_both_kernels_and_trims_a_halo(edges):
    from gep_raster.kernels.terrain import slope_aspect_kernel

    rng = np.random.default_rng(3)
    dem = (rng.random((23, 31)) * 80 + 100).astype(F32)
    dem[4:7, 9:12] = np.nan
    dem[0, 3] = np.nan
    dem[22, 30] = np.nan
    t = slope_aspect_kernel(dem, 30.0, 25.0, edges=edges)
    assert t.shape == (2, 23, 31) and t.dtype == F32
    np.testing.assert_array_equal(t[0], slope_kernel(dem, 30.0, 25.0, edges=edges))
    np.testing.assert_array_equal(t[1], aspect_factor_kernel(dem, 30.0, 25.0, edges=edges))
    # a NaN halo (map_overlap's boundary) is dropped: the result is the unpadded call
    padded = np.pad(dem, 1, constant_values=np.nan)
    np.testing.assert_array_equal(slope_aspect_kernel(padded, 30.0, 25.0, edges=edges, trim=1), t)
    # the hand value of one interior pixel: Horn sums of its 3 x 3 window
    w = dem[14:17, 19:22].astype(np.float64)
    p = ((w[0, 2] + 2 * w[1, 2] + w[2, 2]) - (w[0, 0] + 2 * w[1, 0] + w[2, 0])) / (8 * 30.0)
    q = ((w[2, 0] + 2 * w[2, 1] + w[2, 2]) - (w[0, 0] + 2 * w[0, 1] + w[0, 2])) / (8 * 25.0)
    assert t[0, 15, 20] == np.float32(math.hypot(p, q))
    assert t[1, 15, 20] == np.float32((abs(p) + abs(q)) / math.hypot(p, q))
    with pytest.raises(ValueError, match="trim"):
        slope_aspect_kernel(dem, 30.0, 30.0, trim=12)
