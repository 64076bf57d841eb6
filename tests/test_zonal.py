"""Tests of gep_raster.accounts.zonal: exact coverage fractions (exactextract) and block accumulation."""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from exactextract import exact_extract
from exactextract.raster import NumPyRasterSource
from rasterio.crs import CRS

from gep_raster.errors import CRSError, VectorError
from gep_raster.grid import RefGrid
from gep_raster.accounts.zonal import CoverageIndex

UTM50 = CRS.from_epsg(32650)


def utm_grid(width, height, res=10.0, left=500_000.0, top=3_000_000.0):
    return RefGrid(UTM50, Affine(res, 0, left, 0, -res, top), width, height)


def gdf(geoms, crs="EPSG:32650"):
    return gpd.GeoDataFrame({"name": [f"p{i}" for i in range(len(geoms))]},
                            geometry=list(geoms), crs=crs)


def pixel_box(grid, row, col, x0=0.0, x1=1.0, y0=0.0, y1=1.0):
    """Box covering the fractions [x0,x1] (left→right) × [y0,y1] (top→bottom) of a pixel."""
    a, e = grid.transform.a, grid.transform.e
    left = grid.transform.c + col * a
    top = grid.transform.f + row * e
    return shapely.box(left + x0 * a, top + y1 * e, left + x1 * a, top + y0 * e)


# ---------------------------------------------------------------------------------------
# 1. exact fractions on a tiny grid
# ---------------------------------------------------------------------------------------
def test_half_pixel_and_subpixel_polygons():
    g = utm_grid(4, 4)
    values = np.arange(1, 17, dtype=np.float64).reshape(4, 4) * 10.0  # pixel (1,2) = 70
    half = pixel_box(g, 1, 2, x0=0.0, x1=0.5)                       # left half of (1,2)
    tiny = pixel_box(g, 2, 1, x0=0.25, x1=0.5, y0=0.5, y1=0.75)     # 2.5 m × 2.5 m in (2,1)
    ci = CoverageIndex.build(gdf([half, tiny]), g, layer_name="t")

    assert ci.n_polygons == 2
    sums = ci.zonal_sum(values)
    assert sums[0] == pytest.approx(0.5 * values[1, 2], rel=1e-12)
    assert sums[1] == pytest.approx(0.0625 * values[2, 1], rel=1e-12)

    poly, row, col, frac = ci.entries(0, 4, 0, 4)
    assert poly.dtype == np.int32 and row.dtype == np.int32 and frac.dtype == np.float64
    assert sorted(zip(poly.tolist(), row.tolist(), col.tolist())) == [(0, 1, 2), (1, 2, 1)]
    assert frac[poly == 0][0] == pytest.approx(0.5, abs=1e-12)
    assert frac[poly == 1][0] == pytest.approx(0.0625, abs=1e-12)

    area = ci.covered_area_m2()
    assert area.dtype == np.float64 and area.shape == (2,)
    assert area[0] == pytest.approx(50.0, rel=1e-12)
    assert area[1] == pytest.approx(6.25, rel=1e-12)


def test_polygon_outside_grid_is_kept_with_no_entries():
    g = utm_grid(4, 4)
    far = shapely.box(0, 0, 10, 10)  # far away from the grid
    inside = pixel_box(g, 0, 0)
    ci = CoverageIndex.build(gdf([far, inside]), g, layer_name="t")
    assert ci.n_polygons == 2
    np.testing.assert_array_equal(ci.zonal_sum(np.ones((4, 4))), [0.0, 1.0])
    np.testing.assert_array_equal(ci.covered_area_m2(), [0.0, 100.0])


def test_windowed_entries_are_relative_and_complete():
    g = utm_grid(4, 4)
    big = shapely.box(*g.bounds)
    ci = CoverageIndex.build(gdf([big]), g, layer_name="t")
    poly, row, col, frac = ci.entries(1, 3, 2, 4)
    assert list(zip(row.tolist(), col.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    np.testing.assert_allclose(frac, 1.0)
    with pytest.raises(ValueError):
        ci.entries(0, 5, 0, 4)


# ---------------------------------------------------------------------------------------
# 2. agreement with exactextract's own "sum"
# ---------------------------------------------------------------------------------------
def random_polygons(grid, n, rng):
    left, bottom, right, top = grid.bounds
    px = grid.res[0]
    out = []
    for i in range(n):
        kind = i % 5
        cx = rng.uniform(left - 3 * px, right + 3 * px)
        cy = rng.uniform(bottom - 3 * px, top + 3 * px)
        if kind == 0:    # tiny, sub-pixel
            r = rng.uniform(0.05, 0.4) * px
            out.append(shapely.Point(cx, cy).buffer(r, quad_segs=6))
        elif kind == 1:  # star-ish polygon
            k = rng.integers(5, 12)
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = rng.uniform(1, 12, k) * px
            out.append(shapely.Polygon(np.c_[cx + rad * np.cos(ang), cy + rad * np.sin(ang)]))
        elif kind == 2:  # crosses the left/top edge of the grid
            d = rng.uniform(0.1, 9.9, 2) * px
            out.append(shapely.box(left - d[0], top - d[1] - 3 * px, left + d[1], top + d[0]))
        elif kind == 3:  # multipolygon
            a = shapely.Point(cx, cy).buffer(rng.uniform(1, 5) * px)
            b = shapely.Point(cx + 15 * px, cy - 3 * px).buffer(rng.uniform(0.5, 3) * px)
            out.append(shapely.MultiPolygon([a, b]))
        else:            # rotated rectangle
            w, h = rng.uniform(0.5, 20, 2) * px
            rect = shapely.box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            out.append(shapely.affinity.rotate(rect, rng.uniform(0, 90)))
    geoms = [shapely.make_valid(p) if not p.is_valid else p for p in out]
    # make_valid can return GeometryCollections: keep the polygonal part
    fixed = []
    for p in geoms:
        if p.geom_type not in ("Polygon", "MultiPolygon"):
            p = shapely.union_all([q for q in getattr(p, "geoms", [p])
                                   if q.geom_type in ("Polygon", "MultiPolygon")])
        fixed.append(p)
    return fixed


def test_matches_exactextract_sum():
    rng = np.random.default_rng(42)
    g = utm_grid(40, 30, res=30.0)
    values = rng.gamma(2.0, 5.0, size=g.shape)
    polys = random_polygons(g, 50, rng)
    layer = gdf(polys)
    ci = CoverageIndex.build(layer, g, layer_name="random")
    ours = ci.zonal_sum(values)

    left, bottom, right, top = g.bounds
    src = NumPyRasterSource(values, left, bottom, right, top, srs_wkt=g.crs.to_wkt())
    ref = exact_extract(src, layer, ["sum"], output="pandas")["sum"].to_numpy(dtype=float)

    assert (ours > 0).sum() > 25          # the test exercises real overlaps
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9 * values.max())

    # covered area = planar area of polygon ∩ grid. exactextract stores coverage fractions
    # as float32, so areas carry a relative error of a few 1e-8 on boundary cells.
    expected_area = shapely.area(shapely.intersection(np.array(polys, dtype=object),
                                                      shapely.box(*g.bounds)))
    np.testing.assert_allclose(ci.covered_area_m2(), expected_area, rtol=2e-7, atol=1e-6)


# ---------------------------------------------------------------------------------------
# 3. block-wise accumulation = whole-array sum
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bh,bw", [(7, 5), (16, 16), (3, 11), (30, 40), (1, 1)])
def test_blockwise_equals_whole(bh, bw):
    rng = np.random.default_rng(7)
    g = utm_grid(40, 30, res=30.0)
    ci = CoverageIndex.build(gdf(random_polygons(g, 40, rng)), g, layer_name="random")
    values = rng.random((3,) + g.shape).astype(np.float32)
    values[:, rng.random(g.shape) < 0.1] = np.nan
    whole2 = ci.zonal_sum(values[0])
    whole3 = ci.zonal_sum(values)
    assert whole3.shape == (ci.n_polygons, 3)
    np.testing.assert_allclose(whole3[:, 0], whole2, rtol=1e-12)

    out2 = np.zeros(ci.n_polygons)
    out3 = np.zeros((ci.n_polygons, 3))
    va = np.zeros(ci.n_polygons)
    for r0 in range(0, g.height, bh):
        for c0 in range(0, g.width, bw):
            r1, c1 = min(r0 + bh, g.height), min(c0 + bw, g.width)
            ci.accumulate(values[0, r0:r1, c0:c1], r0, c0, out2, va)
            ci.accumulate(values[:, r0:r1, c0:c1], r0, c0, out3)
    np.testing.assert_allclose(out2, whole2, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(out3, whole3, rtol=1e-12, atol=1e-300)
    va_whole = np.zeros(ci.n_polygons)
    ci.accumulate(values[0], 0, 0, np.zeros(ci.n_polygons), va_whole)
    np.testing.assert_allclose(va, va_whole, rtol=1e-12)


def test_accumulate_rejects_bad_inputs():
    g = utm_grid(8, 8)
    ci = CoverageIndex.build(gdf([shapely.box(*g.bounds)]), g, layer_name="t")
    with pytest.raises(ValueError):
        ci.accumulate(np.ones((4, 4)), 6, 0, np.zeros(1))          # runs off the grid
    with pytest.raises(ValueError):
        ci.accumulate(np.ones((2, 4, 4)), 0, 0, np.zeros(1))       # out needs (1, 2)
    with pytest.raises(TypeError):
        ci.accumulate(np.ones((4, 4)), 0, 0, np.zeros(1, np.float32))
    with pytest.raises(ValueError):
        ci.zonal_sum(np.ones((4, 4)))


# ---------------------------------------------------------------------------------------
# 4. partition identity
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("xoff,yoff,rtol", [
    (80.0, 60.0, 1e-12),   # split lines on pixel edges: every fraction is exactly 1
    (87.3, 61.9, 2e-7),    # split lines inside pixels: float32 fractions of exactextract
])
def test_partition_identity(xoff, yoff, rtol):
    rng = np.random.default_rng(3)
    g = utm_grid(23, 17, res=10.0)
    left, bottom, right, top = g.bounds
    xm, ym = left + xoff, bottom + yoff
    tiles = [shapely.box(left, ym, xm, top), shapely.box(xm, ym, right, top),
             shapely.box(left, bottom, xm, ym), shapely.box(xm, bottom, right, ym)]
    ci = CoverageIndex.build(gdf(tiles), g, layer_name="tiles")
    values = rng.random(g.shape) * 100
    sums = ci.zonal_sum(values)
    assert np.all(sums > 0)
    assert sums.sum() == pytest.approx(values.sum(), rel=rtol)
    # per-cell fractions of the partition add up to one
    per_cell = np.zeros(g.shape)
    np.add.at(per_cell, (ci.row, ci.col), ci.frac)
    np.testing.assert_allclose(per_cell, 1.0, rtol=rtol)
    grid_area = g.row_pixel_area_m2.sum() * g.width
    assert ci.covered_area_m2().sum() == pytest.approx(grid_area, rel=rtol)
    expected = shapely.area(np.array(tiles, dtype=object))
    np.testing.assert_allclose(ci.covered_area_m2(), expected, rtol=rtol)
    # union of the tiles = the whole grid
    u = CoverageIndex.build_union(gdf(tiles), g, "tiles")
    assert u.n_polygons == 1
    assert u.zonal_sum(values)[0] == pytest.approx(values.sum(), rel=1e-12)
    assert u.covered_area_m2()[0] == pytest.approx(grid_area, rel=1e-12)


def test_union_does_not_double_count_overlaps():
    g = utm_grid(10, 10)
    left, bottom, right, top = g.bounds
    a = shapely.box(left, bottom, left + 60, top)
    b = shapely.box(left + 40, bottom, right, top)  # overlaps a over 20 m
    values = np.ones(g.shape)
    per = CoverageIndex.build(gdf([a, b]), g, layer_name="t").zonal_sum(values)
    assert per.sum() == pytest.approx(120.0)
    u = CoverageIndex.build_union(gdf([a, b]), g, layer_name="t")
    assert u.zonal_sum(values)[0] == pytest.approx(100.0)
    assert u.covered_area_m2()[0] == pytest.approx(100 * 100.0)


# ---------------------------------------------------------------------------------------
# 5. NaN handling
# ---------------------------------------------------------------------------------------
def test_nan_skipped_in_sum_and_valid_area():
    g = utm_grid(4, 4)
    poly = pixel_box(g, 1, 1, 0.5, 1.0) | pixel_box(g, 1, 2, 0.0, 1.0)  # ½ of (1,1) + (1,2)
    ci = CoverageIndex.build(gdf([poly]), g, layer_name="t")
    values = np.full(g.shape, 4.0, dtype=np.float32)
    values[1, 2] = np.nan
    out = np.zeros(1)
    va = np.zeros(1)
    ci.accumulate(values, 0, 0, out, va)
    assert out[0] == pytest.approx(2.0)            # ½ × 4, the NaN pixel skipped
    assert va[0] == pytest.approx(50.0)            # only ½ pixel of 100 m2 is valid
    assert ci.covered_area_m2()[0] == pytest.approx(150.0)

    # 3-D: NaN is skipped per band; valid area follows band 0
    stack = np.stack([values, np.full(g.shape, 2.0, np.float32)])
    out3 = np.zeros((1, 2))
    va3 = np.zeros(1)
    ci.accumulate(stack, 0, 0, out3, va3)
    np.testing.assert_allclose(out3, [[2.0, 3.0]])
    assert va3[0] == pytest.approx(50.0)

    # bands: a subset of the stack in any order; out has one column per listed band, valid area follows the
    # first listed band (band 1 has no NaN: ½ + 1 pixel of 100 m2 = 150 m2)
    out_b = np.zeros((1, 2))
    va_b = np.zeros(1)
    ci.accumulate(stack, 0, 0, out_b, va_b, bands=[1, 0])
    np.testing.assert_array_equal(out_b, [[3.0, 2.0]])
    assert va_b[0] == pytest.approx(150.0)
    out_1 = np.zeros((1, 1))
    ci.accumulate(stack, 0, 0, out_1, bands=[1])
    assert out_1[0, 0] == 3.0
    with pytest.raises(ValueError, match="out of range"):
        ci.accumulate(stack, 0, 0, np.zeros((1, 1)), bands=[2])
    with pytest.raises(ValueError, match=r"\(1, 2\)"):
        ci.accumulate(stack, 0, 0, np.zeros((1, 1)), bands=[0, 1])


# ---------------------------------------------------------------------------------------
# 6. geographic grid
# ---------------------------------------------------------------------------------------
def test_geographic_grid_uses_row_areas():
    g = RefGrid(CRS.from_epsg(4326), Affine(0.01, 0, 110.0, 0, -0.01, 30.0), 20, 50)
    full = shapely.box(*g.bounds)
    ci = CoverageIndex.build(gdf([full], crs="EPSG:4326"), g, layer_name="geo")
    expected = g.row_pixel_area_m2.sum() * g.width
    assert ci.covered_area_m2()[0] == pytest.approx(expected, rel=1e-12)
    # rows differ: the covered area is not n_pixels × the first row's area
    assert abs(ci.covered_area_m2()[0] - g.row_pixel_area_m2[0] * g.width * g.height) \
        > 1e-4 * expected
    # a half-row strip at the bottom: area = ½ × width × area of the last row
    strip = shapely.box(110.0, 29.5, 110.2, 29.505)
    ci2 = CoverageIndex.build(gdf([strip], crs="EPSG:4326"), g, layer_name="geo")
    assert ci2.covered_area_m2()[0] == pytest.approx(0.5 * g.width * g.row_pixel_area_m2[-1],
                                                     rel=1e-9)
    va = np.zeros(1)
    ci.accumulate(np.ones(g.shape), 0, 0, np.zeros(1), va)
    assert va[0] == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------------------------
# 7. errors
# ---------------------------------------------------------------------------------------
def test_crs_mismatch_names_layer():
    g = utm_grid(4, 4)
    layer = gdf([pixel_box(g, 0, 0)]).to_crs("EPSG:4326")
    with pytest.raises(CRSError, match="township"):
        CoverageIndex.build(layer, g, layer_name="township")
    no_crs = gpd.GeoDataFrame(geometry=[pixel_box(g, 0, 0)])
    with pytest.raises(CRSError, match="township"):
        CoverageIndex.build(no_crs, g, layer_name="township")
    with pytest.raises(CRSError, match="township"):
        CoverageIndex.build_union(layer, g, "township")


def test_crs_equality_is_semantic_not_textual():
    g = utm_grid(4, 4)
    layer = gpd.GeoDataFrame(geometry=[pixel_box(g, 0, 0)], crs=UTM50.to_wkt())
    ci = CoverageIndex.build(layer, g, layer_name="t")  # WKT vs EPSG code: same CRS
    assert ci.covered_area_m2()[0] == pytest.approx(100.0)


def test_empty_geometry_names_polygon_and_layer():
    g = utm_grid(4, 4)
    geoms = [pixel_box(g, 0, 0)] * 3 + [shapely.Polygon()]
    with pytest.raises(VectorError, match=r"polygon 3 of layer 'township' has an empty geometry"):
        CoverageIndex.build(gdf(geoms), g, layer_name="township")
    geoms = [pixel_box(g, 0, 0), None]
    with pytest.raises(VectorError, match=r"polygon 1 of layer 'township'"):
        CoverageIndex.build(gdf(geoms), g, layer_name="township")


def test_invalid_and_non_polygon_geometries_rejected():
    g = utm_grid(4, 4)
    left, bottom, right, top = g.bounds
    bowtie = shapely.Polygon([(left, bottom), (right, top), (right, bottom), (left, top)])
    with pytest.raises(VectorError, match=r"polygon 1 of layer 'county' has an invalid"):
        CoverageIndex.build(gdf([pixel_box(g, 0, 0), bowtie]), g, layer_name="county")
    with pytest.raises(VectorError, match=r"polygon 0 of layer 'county' is a Point"):
        CoverageIndex.build(gdf([shapely.Point(left, top)]), g, layer_name="county")


# ---------------------------------------------------------------------------------------
# 8. compact storage: cell-for-cell agreement with exactextract, memory, windows, cache
# ---------------------------------------------------------------------------------------
def exactextract_cells(geoms, grid):
    """{(polygon, row, col): fraction} from exactextract on the whole polygons."""
    from gep_raster.accounts.zonal.exactextract_engine import _exactextract_coverage

    res = _exactextract_coverage(list(shapely.to_wkb(np.asarray(geoms, dtype=object))), grid)
    out = {}
    for i, r in enumerate(res):
        if r is None or r[0] is None:
            continue
        for c, f in zip(np.asarray(r[0]).tolist(), np.asarray(r[1]).tolist()):
            if f > 0:
                out[(i, c // grid.width, c % grid.width)] = f
    return out


def assert_same_cells(ci, geoms, grid):
    ref = exactextract_cells(geoms, grid)
    poly, row, col, frac = ci.entries(0, grid.height, 0, grid.width)
    ours = dict(zip(zip(poly.tolist(), row.tolist(), col.tolist()), frac.tolist()))
    assert len(ours) == poly.size                                   # no duplicate cell
    assert (np.lexsort((poly, col, row)) == np.arange(poly.size)).all()  # sorted (row, col, poly)
    # same cells, except fractions below the float64 noise exactextract and we both carry
    assert {k for k, f in ref.items() if f > 1e-9} <= set(ours)
    assert {k for k, f in ours.items() if f > 1e-9} <= set(ref)
    common = set(ref) & set(ours)
    diff = np.array([abs(ours[k] - ref[k]) for k in common])
    # at most one float32 rounding of a ring's fraction apart (float32 spacing in [0.5, 1)),
    # and rarely
    assert (diff <= 2.0 ** -24).all()
    assert (diff > 0).sum() <= max(3, 1e-3 * len(common))
    return ref


def edge_case_polygons(g):
    left, bottom, right, top = g.bounds
    X = lambda c: left + g.res[0] * c    # noqa: E731
    Y = lambda r: top - g.res[1] * r     # noqa: E731
    frame = shapely.box(X(1.5), Y(25.5), X(25.5), Y(1.5)).difference(
        shapely.box(X(5.2), Y(20.7), X(20.3), Y(5.1)))
    island = shapely.box(X(8.5), Y(15.5), X(15.25), Y(8.75))
    return [
        shapely.Polygon([(X(2), Y(2)), (X(9), Y(2)), (X(9), Y(5)), (X(5), Y(5)),
                         (X(5), Y(12)), (X(2), Y(12))]),              # edges on pixel lines
        shapely.box(X(2.3), Y(7.4), X(20.6), Y(3.4)),                 # horizontal mid-cell edges
        shapely.MultiPolygon([frame, island]),                          # island in a hole
        shapely.MultiPolygon([island, frame]),                          # same, other part order
        shapely.box(left - 500, bottom - 500, right + 500, top + 500).difference(
            shapely.Point(X(20.3), Y(15.1)).buffer(8.4 * g.res[0], quad_segs=32)),  # beyond grid
        shapely.Point(X(14.1), Y(12.9)).buffer(9.7 * g.res[0], quad_segs=128),   # many vertices
        shapely.Polygon([(X(3), Y(3)), (X(3.001), Y(3)), (X(3), Y(3.001))]),     # tiny at a corner
    ]


@pytest.mark.parametrize("engine", ["native", "exactextract"])
@pytest.mark.parametrize("band,merge", [(None, None), (1, 0), (3, 100000)])
def test_cells_match_exactextract(engine, band, merge, monkeypatch):
    import gep_raster.accounts.zonal as zonal

    if band is not None:  # small / merged boxes: many box edges through the polygons
        monkeypatch.setitem(zonal.BAND_ROWS, engine, band)
        monkeypatch.setitem(zonal.MERGE_CELLS, engine, merge)
    rng = np.random.default_rng(11)
    g = utm_grid(40, 30, res=30.0)
    polys = random_polygons(g, 50, rng) + edge_case_polygons(g)
    ci = CoverageIndex.build(gdf(polys), g, layer_name="random", engine=engine)
    ref = assert_same_cells(ci, polys, g)
    assert ci.n_entries == len(ci.frac) == ci.entries(0, 30, 0, 40)[0].size
    assert abs(ci.n_entries - len(ref)) <= 3
    assert ci.n_partial > 0 and ci.n_runs > 0


def test_engines_agree_on_voronoi_and_geographic():
    g = utm_grid(300, 200, res=30.0)
    left, bottom, right, top = g.bounds
    rng = np.random.default_rng(5)
    pts = shapely.multipoints(np.c_[rng.uniform(left, right, 60), rng.uniform(bottom, top, 60)])
    cells = shapely.intersection(
        np.asarray(shapely.voronoi_polygons(pts, extend_to=shapely.box(*g.bounds)).geoms),
        shapely.box(*g.bounds))
    layer = gdf(cells)
    a = CoverageIndex.build(layer, g, layer_name="v", engine="native")
    b = CoverageIndex.build(layer, g, layer_name="v", engine="exactextract")
    values = rng.gamma(2.0, 5.0, size=g.shape)
    np.testing.assert_allclose(a.zonal_sum(values), b.zonal_sum(values), rtol=1e-12)
    assert_same_cells(a, cells, g)
    # a Voronoi partition of the grid: every cell's fractions add up to 1
    assert a.zonal_sum(values).sum() == pytest.approx(values.sum(), rel=1e-7)

    geo = RefGrid(CRS.from_epsg(4326), Affine(0.01, 0, 110.0, 0, -0.01, 30.0), 60, 50)
    polys = random_polygons(geo, 30, np.random.default_rng(9))
    ci = CoverageIndex.build(gdf(polys, crs="EPSG:4326"), geo, layer_name="geo")
    assert_same_cells(ci, polys, geo)


def test_storage_is_compact():
    # a disc of radius 700 px: ~1.5 M covered cells, stored as runs + a boundary ring
    g = utm_grid(1600, 1500, res=10.0)
    left, bottom, right, top = g.bounds
    disc = shapely.Point(left + 8000.3, top - 7500.7).buffer(7000.0, quad_segs=256)
    ci = CoverageIndex.build(gdf([disc]), g, layer_name="disc")
    assert ci.n_entries > 1_500_000
    assert ci.n_runs <= 3 * 1400 + 100          # ~one run per row plus box remnants
    assert ci.n_partial < 10_000                  # ~ perimeter (4,400 px) cells
    assert ci.nbytes == 16 * ci.n_runs + 12 * ci.n_partial + 16 * (g.height + 1)
    assert ci.part_frac.dtype == np.float32 and ci.run_c0.dtype == np.int32
    assert ci.nbytes < 0.01 * 20 * ci.n_entries  # vs 20 bytes per explicit entry
    assert ci.covered_area_m2()[0] == pytest.approx(disc.area, rel=1e-7)
    assert ci.covered_window() == (50, 1451, 100, 1501)  # rows 50.07..1450.07


def test_overlapping_polygons_and_windows():
    rng = np.random.default_rng(2)
    g = utm_grid(60, 50, res=10.0)
    left, bottom, right, top = g.bounds
    polys = [shapely.box(left + 33, bottom + 47, right - 51, top - 12),   # overlaps all others
             shapely.box(left, bottom, right, top),                      # whole grid
             shapely.Point(left + 300, top - 250).buffer(180.0),
             shapely.box(left + 100, bottom + 100, left + 400, bottom + 300)]
    ci = CoverageIndex.build(gdf(polys), g, layer_name="overlap")
    same_row = np.diff(np.repeat(np.arange(g.height), np.diff(ci.run_ptr))) == 0
    assert (same_row & (ci.run_c0[1:] < ci.run_reach[:-1])).any()   # runs do overlap
    assert_same_cells(ci, polys, g)
    P, R, C, F = ci.entries(0, g.height, 0, g.width)
    values = rng.random((2,) + g.shape)
    whole = ci.zonal_sum(values)
    assert whole[1, 0] == pytest.approx(values[0].sum(), rel=1e-12)
    for _ in range(30):
        r0, c0 = rng.integers(0, 50), rng.integers(0, 60)
        r1, c1 = rng.integers(r0, 51), rng.integers(c0, 61)
        p, r, c, f = ci.entries(r0, r1, c0, c1)
        m = (R >= r0) & (R < r1) & (C >= c0) & (C < c1)
        np.testing.assert_array_equal(p, P[m])
        np.testing.assert_array_equal(r, R[m] - r0)
        np.testing.assert_array_equal(c, C[m] - c0)
        np.testing.assert_array_equal(f, F[m])
    out = np.zeros((4, 2))
    va = np.zeros(4)
    for r0 in range(0, 50, 13):
        for c0 in range(0, 60, 17):
            blk = np.ascontiguousarray(values[:, r0:r0 + 13, c0:c0 + 17])
            ci.accumulate(blk, r0, c0, out, va)
    np.testing.assert_allclose(out, whole, rtol=1e-12)
    np.testing.assert_allclose(va, ci.covered_area_m2(), rtol=1e-12)
    np.testing.assert_allclose(ci.row_ptr, np.r_[0, np.cumsum(np.bincount(R, minlength=50))])


def test_inf_propagates_through_runs():
    g = utm_grid(8, 8)
    ci = CoverageIndex.build(gdf([shapely.box(*g.bounds)]), g, layer_name="t")
    values = np.ones(g.shape)
    values[3, 4] = np.inf
    assert ci.zonal_sum(values)[0] == np.inf
    values[3, 5] = -np.inf
    assert np.isnan(ci.zonal_sum(values)[0])


def test_save_load_and_cache(tmp_path):
    rng = np.random.default_rng(4)
    g = utm_grid(40, 30, res=30.0)
    layer = gdf(random_polygons(g, 20, rng))
    ci = CoverageIndex.build(layer, g, layer_name="random")
    key = CoverageIndex.cache_key(layer, g)
    assert ci.key == key and len(key) == 64
    assert CoverageIndex.cache_key(layer, g, union=True) != key
    path = ci.save(tmp_path / "cov.npz")
    back = CoverageIndex.load(path, key=key)
    assert back.grid == g and back.layer_name == "random" and back.n_polygons == 20
    for name in ("run_ptr", "run_c0", "run_c1", "run_poly", "run_reach", "part_ptr",
                 "part_col", "part_poly", "part_frac"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ci, name))
    values = rng.random(g.shape)
    np.testing.assert_array_equal(back.zonal_sum(values), ci.zonal_sum(values))
    with pytest.raises(ValueError, match="another layer/grid"):
        CoverageIndex.load(path, key="0" * 64)
    # a moved polygon or another grid changes the key
    moved = layer.copy()
    moved.geometry = moved.geometry.translate(1.0, 0.0)
    assert CoverageIndex.cache_key(moved, g) != key
    assert CoverageIndex.cache_key(layer, utm_grid(40, 31, res=30.0)) != key

    cache = tmp_path / "cache"
    first = CoverageIndex.build_cached(layer, g, cache, layer_name="random")
    files = list(cache.glob("*.npz"))
    assert [f.name for f in files] == [f"{key}.npz"]
    mtime = files[0].stat().st_mtime_ns
    again = CoverageIndex.build_cached(layer, g, cache, layer_name="random")
    assert files[0].stat().st_mtime_ns == mtime          # read, not rebuilt
    np.testing.assert_array_equal(again.zonal_sum(values), first.zonal_sum(values))
    u = CoverageIndex.build_cached(layer, g, cache, layer_name="random", union=True)
    assert u.n_polygons == 1 and u.layer_name == "random (union)"
    assert len(list(cache.glob("*.npz"))) == 2


def test_bad_engine_and_empty_layer():
    g = utm_grid(4, 4)
    with pytest.raises(ValueError, match="engine"):
        CoverageIndex.build(gdf([pixel_box(g, 0, 0)]), g, layer_name="t", engine="gdal")
    empty = CoverageIndex.build(gdf([]), g, layer_name="t")
    assert empty.n_polygons == 0 and empty.n_entries == 0 and empty.covered_window() is None
    assert empty.zonal_sum(np.ones(g.shape)).shape == (0,)
