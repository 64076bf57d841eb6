"""Tests of the map's scale bar, outline key and label languages (gep_raster.outputs.figures)."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from affine import Affine
from matplotlib.colors import to_rgba
from rasterio.crs import CRS

from gep_raster.grid import RefGrid
from gep_raster.outputs import figures as F
from gep_raster.outputs.figures import figure_labels, plot_gep_r_map, plot_value_by_service, scale_bar_length

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: a CRS whose linear unit is unknown (an engineering CRS of a local survey)
LOCAL_WKT = 'LOCAL_CS["local",LOCAL_DATUM["x",32767],UNIT["unknown",1],AXIS["X",EAST],AXIS["Y",NORTH]]'


def _projected(h=300, w=330, res=30.0):
    """330 x 30 m = 9 900 m wide, CGCS2000 / 3-degree Gauss-Kruger CM 120E (metres)."""
    return RefGrid(CRS.from_epsg(4549), Affine(res, 0, 500000.0, 0, -res, 3300000.0), w, h)


def _geographic():
    """80 x 0.01 deg from 119E, rows 28.5N .. 27.9N (centre 28.2N), CGCS2000."""
    return RefGrid(CRS.from_epsg(4490), Affine(0.01, 0, 119.0, 0, -0.01, 28.5), 80, 60)


def _layers(grid):
    import geopandas as gpd
    from shapely.geometry import box

    left, bottom, right, top = grid.bounds
    midx = (left + right) / 2
    towns = gpd.GeoDataFrame({"name": ["a", "b"]}, crs=grid.crs.to_wkt(),
                             geometry=[box(left, bottom, midx, top), box(midx, bottom, right, top)])
    county = towns.dissolve()
    empty = towns.iloc[:0]
    return county, towns, empty


def _is_png(p) -> bool:
    return p.stat().st_size > 0 and p.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture
def no_cjk(monkeypatch):
    """No CJK font (the CI machine): zh falls back to English; the warning flag is reset."""
    monkeypatch.setattr(F, "_has_cjk_font", lambda: False)
    monkeypatch.setattr(F, "_warned_no_cjk", False)


@pytest.fixture
def with_cjk(monkeypatch):
    """As if a CJK font were installed; text is kept as is (no glyph check)."""
    monkeypatch.setattr(F, "_has_cjk_font", lambda: True)
    monkeypatch.setattr(F, "_safe", lambda s: str(s))


# ---------------------------------------------------------------------------------------
# scale bar
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("span_m, length, label", [
    (9900.0, 2000.0, "2 km"),       # quarter 2 475 m -> 2 000 m
    (78543.7, 10000.0, "10 km"),    # quarter 19 636 m -> 10 000 m
    (4000.0, 1000.0, "1 km"),       # quarter exactly 1 000 m
    (3000.0, 500.0, "500 m"),       # quarter 750 m -> 500 m
    (700.0, 100.0, "100 m"),        # quarter 175 m -> 100 m
    (30.0, 5.0, "5 m"),             # quarter 7.5 m -> 5 m
    (1.0, 0.2, "0.2 m"),            # quarter 0.25 m -> 0.2 m
    (2.4e6, 500000.0, "500 km"),    # quarter 600 km -> 500 km
])
def test_scale_bar_length_is_the_longest_round_length_in_a_quarter(span_m, length, label):
    assert scale_bar_length(span_m) == (pytest.approx(length), label)


@pytest.mark.parametrize("bad", [0.0, -5.0, float("nan"), float("inf")])
def test_scale_bar_length_of_no_width(bad):
    assert scale_bar_length(bad) is None


def test_scale_bar_of_a_projected_grid():
    """Metres from the transform: 330 x 30 m = 9 900 m, bar 2 km = 2 000 map units."""
    grid = _projected()
    assert F._metres_per_x_unit(grid) == 1.0
    length, label = F._scale_bar_spec(grid)
    assert (length, label) == (pytest.approx(2000.0), "2 km")


def test_scale_bar_of_a_projected_grid_in_feet():
    """NAD83 / Massachusetts Mainland (ftUS): a map 10 000 ftUS wide is 3 048 m, bar 500 m = 1 640.4 ftUS."""
    grid = RefGrid(CRS.from_epsg(2249), Affine(10.0, 0, 700000.0, 0, -10.0, 2900000.0), 1000, 500)
    ft = 1200 / 3937
    assert F._metres_per_x_unit(grid) == pytest.approx(ft, rel=1e-12)
    length, label = F._scale_bar_spec(grid)
    assert label == "500 m" and length == pytest.approx(500.0 / ft)


def test_scale_bar_of_a_geographic_grid():
    """Metres per degree of longitude at 28.2N on the CGCS2000 ellipsoid, by hand:
    pi/180 * a cos(phi) / sqrt(1 - e2 sin^2 phi) = 98 179.66 m; 0.8 deg = 78 543.7 m; quarter 19 636 m
    -> 10 km = 0.101854 deg."""
    a, f = 6378137.0, 1 / 298.257222101
    e2 = f * (2 - f)
    phi = math.radians(28.2)
    m_per_deg = math.pi / 180 * a * math.cos(phi) / math.sqrt(1 - e2 * math.sin(phi) ** 2)
    assert m_per_deg == pytest.approx(98179.66, abs=0.01)
    grid = _geographic()
    assert F._metres_per_x_unit(grid) == pytest.approx(m_per_deg, rel=1e-12)
    length, label = F._scale_bar_spec(grid)
    assert label == "10 km"
    assert length == pytest.approx(10000.0 / m_per_deg, rel=1e-12)
    assert length == pytest.approx(0.101854, abs=1e-6)


def test_no_scale_bar_when_the_crs_units_are_unknown(tmp_path):
    grid = RefGrid(CRS.from_wkt(LOCAL_WKT), Affine(1.0, 0, 0.0, 0, -1.0, 100.0), 100, 100)
    assert F._metres_per_x_unit(grid) is None and F._scale_bar_spec(grid) is None
    with F._mpl_context():
        fig = F._map_figure(np.ones(grid.shape), grid, title="local", polygons=[], polygon_labels=None,
                            labels=figure_labels("en"))
    ax = fig.axes[0]
    assert not [a for a in ax.artists if a.get_gid() == "scale_bar"]
    note = next(t for t in ax.texts if t.get_gid() == "notes").get_text()
    assert "no scale bar: CRS units unknown" in note
    assert _is_png(plot_gep_r_map(np.ones(grid.shape), grid, tmp_path / "local.png", title="local",
                                  pixel_area_m2=1.0))


def test_scale_bar_is_drawn_with_its_label():
    grid = _projected()
    with F._mpl_context():
        fig = F._map_figure(np.ones(grid.shape), grid, title="t", polygons=[], polygon_labels=None,
                            labels=figure_labels("en"))
        bars = [a for a in fig.axes[0].artists if a.get_gid() == "scale_bar"]
        assert len(bars) == 1 and bars[0].txt_label.get_text() == "2 km"
        note = next(t for t in fig.axes[0].texts if t.get_gid() == "notes").get_text()
        assert "scale bar" not in note
        nobar = F._map_figure(np.ones(grid.shape), grid, title="t", polygons=[], polygon_labels=None,
                              labels=figure_labels("en"), scale_bar=False)
        assert not [a for a in nobar.axes[0].artists if a.get_gid() == "scale_bar"]


# ---------------------------------------------------------------------------------------
# outline key
# ---------------------------------------------------------------------------------------
def _legend(fig):
    leg = fig.axes[0].get_legend()
    return leg, [t.get_text() for t in leg.get_texts()], leg.legend_handles


def test_key_lists_the_layers_drawn_with_their_styles():
    grid = _projected()
    county, towns, empty = _layers(grid)
    polys = [county, empty, towns.to_crs("EPSG:4490"), None]
    with F._mpl_context():
        fig = F._map_figure(np.ones(grid.shape), grid, title="t", polygons=polys,
                            polygon_labels=["county", "nothing", "township", "none"], labels=figure_labels("en"))
    ax = fig.axes[0]
    drawn = [c for c in ax.collections if c.__class__.__name__ == "LineCollection"]
    leg, texts, handles = _legend(fig)
    assert texts == ["county", "township"]  # the empty layer and None are not drawn, so not in the key
    assert leg.get_title().get_text() == "Outlines"
    assert len(drawn) == len(handles) == 2
    for coll, h in zip(drawn, handles):  # each key entry has the style of its layer's outlines
        assert h.get_linewidth() == pytest.approx(coll.get_linewidth()[0])
        assert np.allclose(to_rgba(h.get_color()), coll.get_edgecolor()[0])
    assert [h.get_linestyle() for h in handles] == ["-", ":"]   # layers 0 and 2: styles "-" and ":"
    assert [h.get_color() for h in handles] == ["black", "royalblue"]


def test_key_default_labels():
    grid = _projected()
    county, towns, _ = _layers(grid)
    with F._mpl_context():
        fig = F._map_figure(np.ones(grid.shape), grid, title="t", polygons=[county, towns], polygon_labels=None,
                            labels=figure_labels("en"))
    assert _legend(fig)[1] == ["layer 1", "layer 2"]
    with F._mpl_context():
        bare = F._map_figure(np.ones(grid.shape), grid, title="t", polygons=[], polygon_labels=None,
                             labels=figure_labels("en"))
    assert bare.axes[0].get_legend() is None


# ---------------------------------------------------------------------------------------
# languages
# ---------------------------------------------------------------------------------------
def test_label_tables_have_the_same_keys_and_fields():
    import string

    en, zh = F._LABELS["en"], F._LABELS["zh"]
    assert en.keys() == zh.keys()
    for k in en:
        fields = {f for _, f, _, _ in string.Formatter().parse(en[k]) if f}
        assert fields == {f for _, f, _, _ in string.Formatter().parse(zh[k]) if f}, k
    assert all(ord(c) < 128 for v in en.values() for c in v)  # English labels need no CJK font


def test_english_labels(tmp_path):
    grid = _projected()
    county, towns, _ = _layers(grid)
    with F._mpl_context():
        fig = F._map_figure(np.ones(grid.shape), grid, title="t", polygons=[county, towns],
                            polygon_labels=["county", "township"], labels=figure_labels("en"))
    ax = fig.axes[0]
    assert fig.axes[1].get_ylabel() == "GEP-R density (yuan/ha/a)"
    assert ax.get_xlabel().startswith("Easting (m), ") and ax.get_ylabel().startswith("Northing (m), ")
    with F._mpl_context():
        fig = F._map_figure(np.ones(grid.shape), grid, title="t", polygons=[], polygon_labels=None,
                            labels=figure_labels("en"), show_units=False)
    assert fig.axes[1].get_ylabel() == "GEP-R density"


def test_chinese_labels_with_a_cjk_font(with_cjk):
    text = figure_labels("zh")
    assert text["lang"] == "zh" and text["title_map"].format(name="青田") == "GEP-R，青田"
    grid = _geographic()
    county, towns, _ = _layers(grid)
    with F._mpl_context():
        fig = F._map_figure(np.ones(grid.shape), grid, title="t", polygons=[county, towns, towns],
                            polygon_labels=["county", "Townships", "my_parks"], labels=text, step=3)
    ax = fig.axes[0]
    leg, texts, _ = _legend(fig)
    assert texts == ["县", "乡镇", "my_parks"]  # usual names translated, others as given
    assert leg.get_title().get_text() == "边界"
    assert fig.axes[1].get_ylabel() == "GEP-R 密度（元/公顷/年）"
    assert ax.get_xlabel().startswith("经度（度），") and ax.get_ylabel().startswith("纬度（度），")
    note = next(t for t in ax.texts if t.get_gid() == "notes").get_text()
    assert note == "色标拉伸：第 2–98 百分位；显示：每行每列每 3 个像元取 1 个"


def test_chinese_bar_chart_labels_with_a_cjk_font(with_cjk, tmp_path, monkeypatch):
    seen = {}
    real = F._save_png

    def spy(fig, path):
        ax = fig.axes[0]
        seen.update(xlabel=ax.get_xlabel(), title=ax.get_title())
        return real(fig, path)

    monkeypatch.setattr(F, "_save_png", spy)
    p = plot_value_by_service({"水源涵养": 3.0e8, "土壤保持": 1.0e8}, tmp_path / "zh.png", title="青田", lang="zh")
    assert _is_png(p)
    assert seen == {"xlabel": "价值（亿元/年）", "title": "青田\n合计: 4.00 亿元/年"}
    plot_value_by_service({"a": 3.0e8, "b": 1.0e8}, tmp_path / "en.png", title="t", lang="en")
    assert seen == {"xlabel": "Value (10^8 yuan/a)", "title": "t\nTotal: 4.00 10^8 yuan/a"}
    plot_value_by_service({"a": 3.0e8}, tmp_path / "nounit.png", title="t", show_units=False)
    assert seen == {"xlabel": "Value", "title": "t\nTotal: 3.00"}


def test_chinese_falls_back_to_english_without_a_cjk_font(no_cjk, caplog, tmp_path):
    with caplog.at_level(logging.WARNING, logger="gep_raster.outputs.figures"):
        text = figure_labels("zh")
        again = figure_labels("zh")
    assert text == again == {**F._LABELS["en"], "lang": "en"}
    warned = [r for r in caplog.records if "CJK font" in r.getMessage()]
    assert len(warned) == 1  # once per process
    grid = _projected()
    county, towns, _ = _layers(grid)
    with F._mpl_context():
        fig = F._map_figure(np.ones(grid.shape), grid, title="t", polygons=[county, towns],
                            polygon_labels=["county", "township"], labels=text)
    assert _legend(fig)[1] == ["county", "township"]
    assert fig.axes[1].get_ylabel() == "GEP-R density (yuan/ha/a)"
    assert _is_png(plot_gep_r_map(np.ones(grid.shape), grid, tmp_path / "zh.png", title="t", lang="zh",
                                  polygons=[county, towns], polygon_labels=["county", "township"]))


def test_cjk_font_detection_matches_the_glyph_coverage():
    """_has_cjk_font is True exactly when the fonts found cover every Chinese label character."""
    F._fonts.cache_clear()
    try:
        families, covered = F._fonts()
        expected = all(ord(c) in covered for v in F._LABELS["zh"].values() for c in v if ord(c) > 127)
        assert F._has_cjk_font() is expected
        assert expected is False or len(families) == 2
    finally:
        F._fonts.cache_clear()


@pytest.mark.parametrize("bad", ["fr", "EN", "", None, "zh-CN"])
def test_bad_lang_raises(bad, tmp_path):
    grid = _projected(30, 30)
    with pytest.raises(ValueError, match=r"lang must be one of 'en', 'zh'"):
        figure_labels(bad)
    with pytest.raises(ValueError, match=r"lang must be one of 'en', 'zh'"):
        plot_gep_r_map(np.ones(grid.shape), grid, tmp_path / "m.png", title="t", lang=bad)
    with pytest.raises(ValueError, match=r"lang must be one of 'en', 'zh'"):
        plot_value_by_service({"a": 1.0}, tmp_path / "b.png", title="t", lang=bad)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_plots_are_written_and_open_as_png(lang, tmp_path):
    from PIL import Image

    grid = _geographic()
    county, towns, _ = _layers(grid)
    rng = np.random.default_rng(0)
    arr = (rng.random(grid.shape) * 1e5).astype(np.float32)
    p = plot_gep_r_map(arr, grid, tmp_path / "map.png", title="GEP-R", polygons=[county, towns],
                       polygon_labels=["county", "township"], lang=lang)
    b = plot_value_by_service({"Water": 2e9, "Soil": 1e9}, tmp_path / "bars.png", title="t", lang=lang)
    for path in (p, b):
        assert _is_png(path)
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size[0] > 500 and im.size[1] > 300
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bars.png", "map.png"]
