"""Figures of a run: the GEP-R density map, maps of any value raster (:func:`plot_value_map`, per km² by default:
services, GEP, Δ rasters; used by the report) and the value-by-service bar chart.

Rendering uses matplotlib's Agg canvas directly (``matplotlib.figure.Figure`` +
``FigureCanvasAgg``): no pyplot, no global backend switch, no window, safe in worker threads.
PNG files are written atomically (temp file in the same folder, then ``os.replace``).

The map carries a colour bar (with its unit), a north arrow, a scale bar (a round length in m
or km, from the grid's CRS) and a key naming the outline style of each polygon layer drawn.

Language: the labels made by this module (axis labels, colour-bar label, notes, legend
title, bar-chart unit and total, and the run titles of :func:`figure_labels`) are English
(``lang="en"``) or Chinese (``lang="zh"``). Chinese labels need a CJK font; when none is
installed (Noto Sans CJK, Source Han Sans, SimHei, Microsoft YaHei, WenQuanYi, ...), ``"zh"``
falls back to the English labels and logs one warning per process (never boxes for missing
glyphs). Caller text (titles, service and layer names) may contain Chinese; it is drawn with
the CJK font when one is installed, otherwise every character the default font cannot draw
is replaced by ``?`` (never an error, never a missing-glyph box).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..grid import RefGrid
from .io_write import atomic_path

__all__ = ["plot_gep_r_map", "plot_value_map", "plot_value_by_service", "figure_labels", "layer_label",
           "scale_bar_length", "draw_scale_bar", "draw_north_arrow", "LANGS", "DPI", "MAX_DISPLAY_PX"]

log = logging.getLogger(__name__)

#: Resolution of the PNG files.
DPI = 150
#: Longest side, in pixels, of the raster drawn in a map (larger rasters are strided).
MAX_DISPLAY_PX = 2000
#: Label languages of the figures.
LANGS = ("en", "zh")

_CJK_FONT_CANDIDATES = (
    "Noto Sans CJK SC", "Noto Sans SC", "Noto Sans CJK JP", "Source Han Sans SC",
    "Source Han Sans CN", "SimHei", "Microsoft YaHei", "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei", "PingFang SC", "Heiti SC", "STHeiti", "Arial Unicode MS",
    "Droid Sans Fallback", "AR PL UMing CN", "AR PL UKai CN", "SimSun",
)
_LINE_STYLES = ("-", "--", ":", "-.")
_LINE_COLOURS = ("black", "crimson", "royalblue", "darkorange", "purple", "dimgray")
_LINE_WIDTHS = (1.2, 0.9, 0.8, 0.7)
#: Fraction of the map width that a scale bar may take at most.
_SCALE_BAR_FRACTION = 0.25

#: Label strings of the figures, per language (``{...}`` fields are filled in by the plotting code).
_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "density": "GEP-R density", "unit_density": "yuan/ha/a", "with_unit": "{name} ({unit})",
        "easting": "Easting", "northing": "Northing", "longitude": "Longitude", "latitude": "Latitude",
        "deg": "deg", "axis": "{axis} ({unit}), {crs}", "north": "N",
        "note_stretch": "colour stretch: 2-98th percentile", "note_sep": "; ",
        "note_display": "display: 1 pixel in {step} per row and column", "no_data": "no data",
        "note_no_scale": "no scale bar: CRS units unknown", "legend_title": "Outlines", "layer": "layer {n}",
        "value": "Value", "total": "Total", "yuan": "yuan", "yuan_1e4": "10^4 yuan", "yuan_1e8": "10^8 yuan",
        "per_year": "/a",
        "title_map": "GEP-R, {name}", "title_services": "Value per service, whole run area, {name}",
        "title_gep": "GEP by service (EPV, GEP-R services, ECV), whole run area, {name}",
        "unit_density_km2": "yuan/km2/a", "value_density": "{name} density",
        "note_diverging": "colour scale symmetric about 0",
    },
    "zh": {
        "density": "GEP-R 密度", "unit_density": "元/公顷/年", "with_unit": "{name}（{unit}）",
        "easting": "东坐标", "northing": "北坐标", "longitude": "经度", "latitude": "纬度",
        "deg": "度", "axis": "{axis}（{unit}），{crs}", "north": "北",
        "note_stretch": "色标拉伸：第 2–98 百分位", "note_sep": "；",
        "note_display": "显示：每行每列每 {step} 个像元取 1 个", "no_data": "无数据",
        "note_no_scale": "无比例尺：坐标系单位未知", "legend_title": "边界", "layer": "图层 {n}",
        "value": "价值", "total": "合计", "yuan": "元", "yuan_1e4": "万元", "yuan_1e8": "亿元",
        "per_year": "/年",
        "title_map": "GEP-R，{name}", "title_services": "各服务价值，全区，{name}",
        "title_gep": "各服务 GEP（EPV、GEP-R 服务、ECV），全区，{name}",
        "unit_density_km2": "元/平方公里/年", "value_density": "{name}密度",
        "note_diverging": "色标以 0 为中心对称",
    },
}
#: Chinese names of the usual layer names (matched case-insensitively, ``_``/``-`` read as spaces).
_LAYER_NAMES_ZH = {
    "county": "县", "counties": "县", "district": "区", "city": "市", "province": "省", "township": "乡镇",
    "townships": "乡镇", "town": "乡镇", "towns": "乡镇", "village": "村", "villages": "村",
    "special unit": "特殊单元", "special units": "特殊单元", "protected area": "保护地",
    "protected areas": "保护地", "nature reserve": "自然保护区", "nature reserves": "自然保护区",
    "parcel": "地块", "parcels": "地块",
}
_warned_no_cjk = False


# ---------------------------------------------------------------------------------------
# fonts, text and languages
# ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _fonts() -> tuple[list[str], frozenset[int]]:
    """Font family list (default font + a CJK font if installed) and the code points they cover."""
    from matplotlib import font_manager as fm
    from matplotlib.ft2font import FT2Font

    families = ["DejaVu Sans"]
    installed = {f.name: f.fname for f in fm.fontManager.ttflist}
    cjk = next((name for name in _CJK_FONT_CANDIDATES if name in installed), None)
    covered: set[int] = set()
    paths = [fm.findfont("DejaVu Sans", fallback_to_default=True)]
    if cjk:
        families.append(cjk)
        paths.append(installed[cjk])
    for p in paths:
        with contextlib.suppress(Exception):
            covered.update(FT2Font(p).get_charmap().keys())
    if not covered:
        covered.update(range(32, 127))
    return families, frozenset(covered)


def _has_cjk_font() -> bool:
    """True when a CJK font that draws every character of the Chinese label table is installed."""
    _, covered = _fonts()
    return all(ord(c) in covered for text in _LABELS["zh"].values() for c in text if ord(c) > 127)


def _safe(text: str) -> str:
    """``text`` with each character no available font can draw replaced by ``?``."""
    _, covered = _fonts()
    return "".join(c if (c in "\n\t" or ord(c) in covered) else "?" for c in str(text))


def _check_lang(lang) -> str:
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {', '.join(repr(x) for x in LANGS)}; got {lang!r}")
    return lang


def figure_labels(lang: str = "en") -> dict[str, str]:
    """The label strings the figures use in ``lang`` (a copy; ``{...}`` fields are format fields).

    Parameters
    ----------
    lang : {"en", "zh"}, default "en"
        Label language. ``"zh"`` gives the Chinese labels when a CJK font is installed, and
        otherwise the English ones, with a logged warning (once per process).

    Returns
    -------
    dict of str to str
        Keys include ``title_map``, ``title_services``, ``title_gep`` (``{name}``: run name),
        ``density``, ``unit_density``, ``value``, ``total``, ``legend_title``, ``note_no_scale``;
        the key ``lang`` holds the language actually used (``"en"`` after a fallback).

    Raises
    ------
    ValueError
        If ``lang`` is not ``"en"`` or ``"zh"``.
    """
    global _warned_no_cjk
    used = _check_lang(lang)
    if used == "zh" and not _has_cjk_font():
        if not _warned_no_cjk:
            log.warning("figures: lang='zh' but no CJK font is installed (e.g. Debian's fonts-noto-cjk or "
                        "fonts-wqy-microhei); the figure labels are in English")
            _warned_no_cjk = True
        used = "en"
    return {**_LABELS[used], "lang": used}


def layer_label(name: str, lang: str = "en") -> str:
    """The name of a polygon layer as the map keys show it: in Chinese for the usual names with ``lang="zh"``.

    Parameters
    ----------
    name : str
        Layer name of the configuration (``county``, ``township``, ``special_units`` ...).
    lang : {"en", "zh"}, default "en"
        Language; ``"zh"`` translates the usual names (县, 乡镇, 特殊单元 ...; matched case-insensitively, ``_`` and
        ``-`` read as spaces) and keeps other names as given. No font check (text, not a figure).

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If ``lang`` is not ``"en"`` or ``"zh"``.
    """
    return _layer_label(name, {"lang": _check_lang(lang)})


def _layer_label(name: str, labels: Mapping[str, str]) -> str:
    """``name`` of a polygon layer, in Chinese for the usual names when the labels are Chinese."""
    if labels["lang"] != "zh":
        return str(name)
    key = " ".join(str(name).replace("_", " ").replace("-", " ").lower().split())
    return _LAYER_NAMES_ZH.get(key, str(name))


@contextlib.contextmanager
def _mpl_context():
    """rc settings for our figures: font fallback list, no missing-glyph warnings."""
    import matplotlib

    families, _ = _fonts()
    with matplotlib.rc_context({"font.family": families, "axes.unicode_minus": False}), \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*[Gg]lyph .* missing.*")
        yield


def _new_figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig, path: str | os.PathLike, compress_level: int = 1) -> Path:
    final = Path(path)
    with atomic_path(final, suffix=".png") as tmp:
        # zlib level 1: the 8192² bench map encodes in 0.09 s instead of 0.25 s (level 6), 2 % more bytes
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", pil_kwargs={"compress_level": compress_level})
    return final


def _outline_collection(geoms, **style):
    """A matplotlib LineCollection of the rings of (multi)polygons ``geoms`` (shapely array, in the map's CRS).

    Drawn directly rather than with ``GeoSeries.boundary.plot``: geopandas ends each plot with
    ``canvas.draw_idle()``, which on our Agg canvas renders the whole figure again (raster included), and
    imports pyplot (process-global state) on the figure thread. The 8192² bench map (1 county, 200
    townships) took 0.80 s with it and 0.48 s with this and PNG level 1 (a process's first map, under
    cProfile: 2.3 and 1.7 s)."""
    import shapely
    from matplotlib.collections import LineCollection

    g = np.asarray(geoms, dtype=object)
    g = g[~(shapely.is_missing(g) | shapely.is_empty(g))]
    lines = shapely.get_parts(shapely.boundary(g)) if g.size else np.empty(0, dtype=object)
    coords, idx = shapely.get_coordinates(lines, return_index=True)
    cuts = np.flatnonzero(np.diff(idx)) + 1
    return LineCollection(np.split(coords, cuts) if coords.size else [], **style)


def _pyproj_crs(grid: RefGrid):
    with contextlib.suppress(Exception):
        from pyproj import CRS as PCRS

        return PCRS.from_user_input(grid.crs.to_wkt())
    return None


def _crs_label(grid: RefGrid, labels: Mapping[str, str] = _LABELS["en"]) -> tuple[str, str, str]:
    """(crs name, x-axis label, y-axis label)."""
    name = grid.crs.to_string()
    unit = "m"
    pcrs = _pyproj_crs(grid)
    if pcrs is not None:
        name = pcrs.name
        if not grid.is_geographic and pcrs.axis_info:
            unit = pcrs.axis_info[0].unit_name or unit
            unit = {"metre": "m", "meter": "m"}.get(unit, unit)
    if grid.is_geographic:
        axes, unit = ("longitude", "latitude"), labels["deg"]
    else:
        axes = ("easting", "northing")
    x, y = (labels["axis"].format(axis=labels[a], unit=unit, crs=name) for a in axes)
    return name, x, y


# ---------------------------------------------------------------------------------------
# scale bar
# ---------------------------------------------------------------------------------------
def scale_bar_length(span_m: float, fraction: float = _SCALE_BAR_FRACTION) -> tuple[float, str] | None:
    """The round length of a scale bar for a map ``span_m`` metres wide, and its label.

    Parameters
    ----------
    span_m : float
        Width of the map, in metres (at the map's centre latitude for a geographic grid).
    fraction : float, default 0.25
        The bar is the longest of 1, 2 or 5 × 10^k metres that is at most ``fraction × span_m``.

    Returns
    -------
    (float, str) or None
        Length in metres and its label (``"500 m"``, ``"2 km"``, ``"0.5 m"``: metres below
        1 km, km from 1 km); ``None`` when ``span_m`` or ``fraction`` is not a positive number.

    Examples
    --------
    A map 9 900 m wide: at most 2 475 m, so 2 000 m, ``"2 km"``.
    """
    target = float(span_m) * float(fraction)
    if not (math.isfinite(target) and target > 0):
        return None
    exp = math.floor(math.log10(target))
    length = next(m * 10.0 ** exp for m in (5, 2, 1) if m * 10.0 ** exp <= target * (1 + 1e-12))
    length = float(f"{length:.12g}")
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    return length, label


def _metres_per_x_unit(grid: RefGrid) -> float | None:
    """Metres per unit of the map's x axis: the linear unit of a projected CRS, the length of one degree of
    longitude at the map's centre latitude (on the CRS's ellipsoid) for a geographic one; ``None`` if unknown."""
    pcrs = _pyproj_crs(grid)
    if pcrs is None or not pcrs.axis_info:
        return None
    if grid.is_geographic:
        ell = pcrs.ellipsoid
        a = ell.semi_major_metre if ell is not None else 6378137.0
        inv_f = ell.inverse_flattening if ell is not None else 298.257223563
        e2 = (2 - 1 / inv_f) / inv_f if inv_f else 0.0
        _, bottom, _, top = grid.bounds
        phi = math.radians((top + bottom) / 2)
        return math.pi / 180 * a * math.cos(phi) / math.sqrt(1 - e2 * math.sin(phi) ** 2)
    axis = pcrs.axis_info[0]
    factor = axis.unit_conversion_factor
    if (axis.unit_name or "unknown").lower() in ("unknown", "") or not (factor and math.isfinite(factor)
                                                                        and factor > 0):
        return None
    return float(factor)


def _scale_bar_spec(grid: RefGrid) -> tuple[float, str] | None:
    """(bar length in x-axis units, label) of the map of ``grid``; ``None`` when the CRS units are unknown."""
    per_unit = _metres_per_x_unit(grid)
    if per_unit is None or not per_unit > 0:
        return None
    left, _, right, _ = grid.bounds
    spec = scale_bar_length((right - left) * per_unit)
    return None if spec is None else (spec[0] / per_unit, spec[1])


def draw_scale_bar(ax, grid: RefGrid) -> bool:
    """Draw a scale bar in the lower left corner of a map's axes.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes of a map in ``grid``'s CRS coordinates (data units = CRS units).
    grid : RefGrid
        The map's grid: its CRS gives metres per x unit (projected: the linear unit; geographic: metres per degree
        of longitude at the centre latitude) and its width the bar length (:func:`scale_bar_length`).

    Returns
    -------
    bool
        True when drawn (artist gid ``scale_bar``); False, nothing drawn, when the CRS units are unknown.
    """
    return _draw_scale_bar(ax, grid)


def draw_north_arrow(ax, lang: str | Mapping[str, str] = "en", *, xy: tuple[float, float] = (0.06, 0.95)) -> None:
    """Draw a north arrow (an arrow pointing up with the letter N, or 北) in axes coordinates.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes of a north-up map (every grid of the engine is north-up: no rotation terms).
    lang : {"en", "zh"} or mapping, default "en"
        Label language (as :func:`figure_labels`, English without a CJK font), or a label table of
        :func:`figure_labels`.
    xy : (float, float), default (0.06, 0.95)
        Arrow head, in axes fractions; the tail is 0.12 below.

    Raises
    ------
    ValueError
        If ``lang`` is a string other than ``"en"`` or ``"zh"``.
    """
    labels = figure_labels(lang) if isinstance(lang, str) else lang
    ax.annotate(_safe(labels["north"]), xy=xy, xytext=(xy[0], xy[1] - 0.12), xycoords="axes fraction",
                textcoords="axes fraction", ha="center", va="center", fontsize=11, fontweight="bold",
                arrowprops=dict(facecolor="black", edgecolor="black", width=3, headwidth=9), gid="north_arrow")


def _draw_scale_bar(ax, grid: RefGrid) -> bool:
    """A scale bar in the lower left corner of ``ax``; False (nothing drawn) when the CRS units are unknown."""
    from matplotlib.font_manager import FontProperties
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    spec = _scale_bar_spec(grid)
    if spec is None:
        return False
    _, bottom, _, top = grid.bounds
    bar = AnchoredSizeBar(ax.transData, spec[0], spec[1], "lower left", pad=0.35, borderpad=0.6, sep=3,
                          frameon=True, size_vertical=(top - bottom) * 0.006, color="black",
                          fontproperties=FontProperties(size=7))
    bar.patch.set(alpha=0.8, edgecolor="none")
    bar.set_gid("scale_bar")
    ax.add_artist(bar)
    return True


# ---------------------------------------------------------------------------------------
# map
# ---------------------------------------------------------------------------------------
def plot_gep_r_map(array, grid: RefGrid, path: str | os.PathLike, *, title: str,
                   polygons: Sequence | None = None, pixel_area_m2: float | None = None,
                   polygon_labels: Sequence[str] | None = None, north_arrow: bool = True,
                   scale_bar: bool = True, show_units: bool = True, lang: str = "en",
                   cmap: str = "viridis", max_display_px: int = MAX_DISPLAY_PX) -> Path:
    """Map of GEP-R density (yuan per hectare per year) as a PNG, written atomically.

    Parameters
    ----------
    array : array-like, shape (grid.height, grid.width)
        GEP-R value per pixel in yuan/a, float (float32 usual), NaN = nodata. Any object
        supporting 2-D strided slicing works (numpy array, memmap, h5/zarr/dask array):
        only every ``step``-th row and column is read, where
        ``step = ceil(max(height, width) / max_display_px)``.
    grid : RefGrid
        Grid of ``array``; gives the map extent, the scale bar and, by default, the pixel areas.
    path : path-like
        Output PNG path (150 dpi).
    title : str
        Figure title, drawn as given (see module notes on CJK text; :func:`figure_labels`
        has run titles in both languages).
    polygons : list of geopandas.GeoDataFrame, optional
        Layers whose outlines are drawn over the raster (layer *i* gets line style
        ``-``, ``--``, ``:``, ``-.`` in turn). Reprojected to ``grid.crs`` if their CRS differs.
        ``None`` or empty layers are skipped (and get no key entry).
    pixel_area_m2 : float, optional
        Area of one pixel in m². Default: ``grid.row_pixel_area_m2`` (per row; true
        ellipsoidal areas for geographic grids).
    polygon_labels : list of str, optional
        Name of each polygon layer in the key (usual names such as ``county``, ``township``,
        ``special_units`` are translated for ``lang="zh"``). Default: ``layer 1``, ``layer 2`` ...
        The key lists each layer drawn with its line style, in the order of ``polygons``.
    north_arrow : bool, default True
        Draw a north arrow (grids are north-up).
    scale_bar : bool, default True
        Draw a scale bar: a round length (1, 2 or 5 × 10^k m, at most a quarter of the map
        width) from the CRS's linear unit (projected) or the metres per degree of longitude at
        the map's centre latitude (geographic). If the CRS units are unknown no bar is drawn
        and a note on the figure says so.
    show_units : bool, default True
        Put the unit (``yuan/ha/a``) in the colour-bar label.
    lang : {"en", "zh"}, default "en"
        Language of the labels made here (see :func:`figure_labels` for the fallback to
        English without a CJK font).
    cmap : str, default ``"viridis"``
        Matplotlib colour map; nodata is transparent.
    max_display_px : int, default 2000
        Longest displayed side, in pixels.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If ``array`` is not 2-D with ``grid.shape``, ``pixel_area_m2`` is not positive,
        the lengths of ``polygons`` and ``polygon_labels`` differ, or ``lang`` is not
        ``"en"`` or ``"zh"``.
    gep_raster.outputs.io_write.OutputError
        If the PNG cannot be written.

    Notes
    -----
    Density = value / (pixel area / 10 000 m²). The colour stretch spans the 2nd–98th
    percentiles of the displayed finite values (colour bar arrows mark values beyond).
    An all-NaN raster gives a map with the note "no data".
    """
    _check_lang(lang)
    shape = tuple(getattr(array, "shape", ()))
    if shape != grid.shape:
        raise ValueError(f"{path}: array shape {shape} differs from grid shape {grid.shape}")
    if pixel_area_m2 is not None and not (np.isfinite(pixel_area_m2) and pixel_area_m2 > 0):
        raise ValueError(f"{path}: pixel_area_m2 must be a positive number, got {pixel_area_m2!r}")
    polygons = list(polygons or [])
    if polygon_labels is not None and len(polygon_labels) != len(polygons):
        raise ValueError(f"{path}: {len(polygon_labels)} polygon labels for {len(polygons)} layers")

    step = max(1, math.ceil(max(grid.shape) / max(1, int(max_display_px))))
    density = _display_density(array, grid, step, pixel_area_m2)
    with _mpl_context():
        fig = _map_figure(density, grid, title=title, polygons=polygons, polygon_labels=polygon_labels,
                          labels=figure_labels(lang), step=step, north_arrow=north_arrow, scale_bar=scale_bar,
                          show_units=show_units, cmap=cmap)
        return _save_png(fig, path)


def plot_value_map(array, grid: RefGrid, path: str | os.PathLike, *, title: str, quantity: str | None = None,
                   polygons: Sequence | None = None, polygon_labels: Sequence[str] | None = None,
                   pixel_area_m2: float | None = None, per_m2: float = 1e6, unit: str | None = None,
                   lang: str = "en", cmap: str = "viridis", diverging: bool = False, fig_width_in: float = 9.0,
                   north_arrow: bool = True, scale_bar: bool = True, max_display_px: int = MAX_DISPLAY_PX,
                   png_compress_level: int = 1) -> Path:
    """Map of any per-pixel value raster as a density (default yuan per km² per year), as a PNG written atomically.

    The same map as :func:`plot_gep_r_map` (colour bar with its unit, scale bar, north arrow, outlines and their
    key, notes) for any quantity and area unit: a service's value, GEP, EPV, ECV, or a change (Δ) raster.

    Parameters
    ----------
    array : array-like, shape (grid.height, grid.width)
        Amount per pixel (e.g. yuan/a per pixel), NaN = nodata; read with a stride as in :func:`plot_gep_r_map`.
    grid : RefGrid
        Grid of ``array``.
    path : path-like
        Output PNG path (150 dpi).
    title : str
        Figure title, drawn as given.
    quantity : str, optional
        Name of the mapped quantity in the colour-bar label (e.g. ``"Water conservation"``); drawn as
        ``"<quantity> density (<unit>)"``. Default: ``"GEP-R"``.
    polygons, polygon_labels
        Outline layers and their key names, as in :func:`plot_gep_r_map`.
    pixel_area_m2 : float, optional
        Area of one pixel in m²; default ``grid.row_pixel_area_m2`` (per row).
    per_m2 : float, default 1e6
        Area unit of the density, in m²: 1e6 gives per km² (yuan/km²/a), 1e4 per ha.
    unit : str, optional
        Unit shown in the colour-bar label; default ``yuan/km2/a`` (元/平方公里/年 in Chinese). Give it whenever
        ``per_m2`` is not 1e6 or the raster is not in yuan/a per pixel.
    lang : {"en", "zh"}, default "en"
        Label language (English without a CJK font, see :func:`figure_labels`).
    cmap : str, default "viridis"
        Matplotlib colour map (``"RdBu"`` suits ``diverging``).
    diverging : bool, default False
        Colour limits symmetric about 0 (±the larger absolute 2nd/98th percentile): for Δ rasters.
    fig_width_in : float, default 9.0
        Figure width in inches (height from the map's aspect ratio).
    north_arrow, scale_bar : bool, default True
        As in :func:`plot_gep_r_map`.
    max_display_px : int, default 2000
        Longest displayed side, in pixels.
    png_compress_level : int, default 1
        zlib level of the PNG (1 fastest; 9 smallest, for files embedded in a report).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If ``array`` is not 2-D with ``grid.shape``, ``pixel_area_m2`` or ``per_m2`` is not positive, the lengths
        of ``polygons`` and ``polygon_labels`` differ, or ``lang`` is not ``"en"`` or ``"zh"``.
    gep_raster.outputs.io_write.OutputError
        If the PNG cannot be written.

    Notes
    -----
    Density = amount / (pixel area / ``per_m2``).
    """
    _check_lang(lang)
    shape = tuple(getattr(array, "shape", ()))
    if shape != grid.shape:
        raise ValueError(f"{path}: array shape {shape} differs from grid shape {grid.shape}")
    for name, v in (("pixel_area_m2", pixel_area_m2), ("per_m2", per_m2)):
        if v is not None and not (np.isfinite(v) and v > 0):
            raise ValueError(f"{path}: {name} must be a positive number, got {v!r}")
    polygons = list(polygons or [])
    if polygon_labels is not None and len(polygon_labels) != len(polygons):
        raise ValueError(f"{path}: {len(polygon_labels)} polygon labels for {len(polygons)} layers")
    step = max(1, math.ceil(max(grid.shape) / max(1, int(max_display_px))))
    density = _display_density(array, grid, step, pixel_area_m2, per_m2)
    labels = figure_labels(lang)
    name = labels["value_density"].format(name=quantity if quantity is not None else "GEP-R")
    label = labels["with_unit"].format(name=name, unit=unit if unit is not None else labels["unit_density_km2"])
    with _mpl_context():
        fig = _map_figure(density, grid, title=title, polygons=polygons, polygon_labels=polygon_labels,
                          labels=labels, step=step, north_arrow=north_arrow, scale_bar=scale_bar, cmap=cmap,
                          colourbar_label=label, diverging=diverging, fig_w=float(fig_width_in))
        return _save_png(fig, path, compress_level=png_compress_level)


def _map_figure(density: np.ndarray, grid: RefGrid, *, title: str, polygons: list, polygon_labels,
                labels: Mapping[str, str], step: int = 1, north_arrow: bool = True, scale_bar: bool = True,
                show_units: bool = True, cmap: str = "viridis", colourbar_label: str | None = None,
                diverging: bool = False, fig_w: float = 9.0):
    """The map's Figure (call inside :func:`_mpl_context`): ``density`` (yuan/ha/a unless ``colourbar_label`` says
    otherwise; the displayed pixels) over ``grid``'s extent, outlines and their key, colour bar, north arrow, scale
    bar and notes. ``diverging``: colour limits symmetric about 0."""
    import matplotlib

    finite = density[np.isfinite(density)]
    vmin, vmax, extend = _colour_stretch(finite)
    if diverging:
        vmin, vmax, extend = _symmetric_stretch(finite, vmin, vmax)
    left, bottom, right, top = grid.bounds
    _, xlabel, ylabel = _crs_label(grid, labels)
    ratio = (top - bottom) / (right - left)
    if grid.is_geographic:
        ratio /= max(0.05, math.cos(math.radians((top + bottom) / 2)))
    fig = _new_figure((fig_w, min(14.0, max(4.0, fig_w * 0.85 * ratio + 1.2))))
    ax = fig.add_subplot(1, 1, 1)
    colours = matplotlib.colormaps[cmap].with_extremes(bad=(0, 0, 0, 0))
    im = ax.imshow(np.ma.masked_invalid(density), extent=(left, right, bottom, top),
                   origin="upper", cmap=colours, vmin=vmin, vmax=vmax, interpolation="nearest")
    if grid.is_geographic:
        ax.set_aspect(1.0 / max(0.05, math.cos(math.radians((top + bottom) / 2))))
    else:
        ax.set_aspect("equal")
    cbar = fig.colorbar(im, ax=ax, extend=extend, shrink=0.85, pad=0.03)
    if colourbar_label is None:
        colourbar_label = (labels["with_unit"].format(name=labels["density"], unit=labels["unit_density"])
                           if show_units else labels["density"])
    cbar.set_label(_safe(colourbar_label))
    handles = _draw_outlines(ax, polygons, polygon_labels, grid, labels)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.8,
                  title=_safe(labels["legend_title"]), title_fontsize=8)
    ax.set_title(_safe(title))
    ax.set_xlabel(_safe(xlabel), fontsize=8)
    ax.set_ylabel(_safe(ylabel), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.ticklabel_format(useOffset=False, style="plain")
    if north_arrow:
        draw_north_arrow(ax, labels)
    notes = [labels["note_stretch"] if not diverging else labels["note_diverging"]]
    if step > 1:
        notes.append(labels["note_display"].format(step=step))
    if scale_bar and not _draw_scale_bar(ax, grid):
        notes.append(labels["note_no_scale"])
    if not finite.size:
        ax.text(0.5, 0.5, _safe(labels["no_data"]), transform=ax.transAxes, ha="center", va="center",
                fontsize=14, color="gray")
    ax.annotate(_safe(labels["note_sep"].join(notes)), xy=(0, 0), xycoords="axes fraction", xytext=(0, -34),
                textcoords="offset points", fontsize=6, color="gray", ha="left", va="top", gid="notes")
    return fig


def _display_density(array, grid: RefGrid, step: int, pixel_area_m2: float | None,
                     per_m2: float = 1e4) -> np.ndarray:
    """Every ``step``-th row and column of ``array`` (yuan/a per pixel) as density per ``per_m2`` m² (default
    10 000 m² = 1 ha: yuan/ha/a), float64."""
    sub = np.asarray(array[::step, ::step], dtype=np.float64)
    if pixel_area_m2 is not None:
        area = float(pixel_area_m2)
    else:
        area = np.asarray(grid.row_pixel_area_m2[::step], dtype=np.float64)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return sub / (area / per_m2)


def _colour_stretch(finite: np.ndarray) -> tuple[float, float, str]:
    """(vmin, vmax, colour-bar extend) from the 2nd-98th percentiles of the finite values (the full range when they
    coincide, padded by 5 % when all values are equal; 0..1 without values)."""
    if not finite.size:
        return 0.0, 1.0, "neither"
    vmin, vmax = (float(v) for v in np.percentile(finite, [2, 98]))
    if not vmax > vmin:
        vmin, vmax = float(finite.min()), float(finite.max())
    if not vmax > vmin:
        pad = abs(vmin) * 0.05 or 0.5
        vmin, vmax = vmin - pad, vmax + pad
    extend_lo = bool(finite.min() < vmin)
    extend_hi = bool(finite.max() > vmax)
    return vmin, vmax, {(False, False): "neither", (True, False): "min", (False, True): "max",
                        (True, True): "both"}[(extend_lo, extend_hi)]


def _symmetric_stretch(finite: np.ndarray, vmin: float, vmax: float) -> tuple[float, float, str]:
    """Colour limits ±max(|vmin|, |vmax|) (a diverging scale centred on 0) and the colour-bar extend."""
    lim = max(abs(vmin), abs(vmax)) or 1.0
    lo = bool(finite.size and finite.min() < -lim)
    hi = bool(finite.size and finite.max() > lim)
    return -lim, lim, {(False, False): "neither", (True, False): "min", (False, True): "max",
                       (True, True): "both"}[(lo, hi)]


def _draw_outlines(ax, polygons: list, polygon_labels, grid: RefGrid,
                   labels: Mapping[str, str] | None = None) -> list:
    """Outlines of every non-empty polygon layer (in the grid's CRS; layer i gets the i-th line style); returns the
    key's handles, one per layer drawn, labelled ``polygon_labels[i]`` (default ``layer i+1``)."""
    from matplotlib.lines import Line2D

    labels = labels if labels is not None else figure_labels("en")
    handles = []
    for i, gdf in enumerate(polygons):
        if gdf is None or len(gdf) == 0:
            continue
        layer = gdf
        if layer.crs is not None and grid.crs is not None:
            try:
                same = layer.crs.equals(grid.crs.to_wkt())
            except Exception:
                same = False
            if not same:
                layer = layer.to_crs(grid.crs.to_wkt())
        style = dict(linestyle=_LINE_STYLES[i % len(_LINE_STYLES)],
                     color=_LINE_COLOURS[i % len(_LINE_COLOURS)],
                     linewidth=_LINE_WIDTHS[min(i, len(_LINE_WIDTHS) - 1)])
        ax.add_collection(_outline_collection(layer.geometry.values, **style))
        name = (_layer_label(polygon_labels[i], labels) if polygon_labels is not None
                else labels["layer"].format(n=i + 1))
        handles.append(Line2D([], [], label=_safe(name), **style))
    return handles


# ---------------------------------------------------------------------------------------
# bar chart
# ---------------------------------------------------------------------------------------
def _scale(max_abs: float, labels: Mapping[str, str] = _LABELS["en"]) -> tuple[float, str]:
    if max_abs >= 1e8:
        return 1e8, labels["yuan_1e8"]
    if max_abs >= 1e4:
        return 1e4, labels["yuan_1e4"]
    return 1.0, labels["yuan"]


def plot_value_by_service(values: Mapping[str, float], path: str | os.PathLike, *, title: str,
                          show_units: bool = True, lang: str = "en") -> Path:
    """Horizontal bar chart of value per ecosystem service, as a PNG written atomically.

    Parameters
    ----------
    values : mapping of str to float
        Service label → value in yuan/a. Bars are sorted largest first (top).
    path : path-like
        Output PNG path (150 dpi).
    title : str
        Figure title; the total value is added as a second line.
    show_units : bool, default True
        Put the unit in the axis label and after the total.
    lang : {"en", "zh"}, default "en"
        Language of the axis label, the total and the units (see :func:`figure_labels` for
        the fallback to English without a CJK font). Service labels are drawn as given.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If ``values`` is empty or holds a non-finite value, or ``lang`` is not ``"en"`` or ``"zh"``.
    gep_raster.outputs.io_write.OutputError
        If the PNG cannot be written.

    Notes
    -----
    The axis unit follows the largest absolute value: ``yuan``, ``10^4 yuan`` (万元) from
    1e4, ``10^8 yuan`` (亿元) from 1e8 — English labels are ASCII so no CJK font is needed.
    Each bar is annotated with its value in that unit and its share of the total (sum of the
    values; no share shown when the total is 0).
    """
    _check_lang(lang)
    if not values:
        raise ValueError(f"{path}: no service values to plot")
    items = []
    for k, v in values.items():
        fv = float(v)
        if not math.isfinite(fv):
            raise ValueError(f"{path}: value of service {k!r} is not finite ({v!r})")
        items.append((str(k), fv))
    items.sort(key=lambda kv: kv[1], reverse=True)
    labels = [_safe(k) for k, _ in items]
    raw = np.array([v for _, v in items], dtype=np.float64)
    total = float(raw.sum())
    text = figure_labels(lang)
    div, unit = _scale(float(np.abs(raw).max()), text)
    unit_a = f"{unit}{text['per_year']}"
    scaled = raw / div

    with _mpl_context():
        n = len(items)
        fig = _new_figure((8.0, max(3.0, 0.45 * n + 1.6)))
        ax = fig.add_subplot(1, 1, 1)
        y = np.arange(n)
        ax.barh(y, scaled, color="seagreen", edgecolor="darkgreen", height=0.65)
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        span = float(max(scaled.max(), 0.0) - min(scaled.min(), 0.0)) or 1.0
        for yi, (v, r) in enumerate(zip(scaled, raw)):
            share = f" ({100.0 * r / total:.1f}%)" if total != 0 else ""
            txt = f"{v:,.2f}{share}"
            off = 0.01 * span
            ax.text(v + off if v >= 0 else v - off, yi, txt, va="center",
                    ha="left" if v >= 0 else "right", fontsize=8)
        lo = min(scaled.min(), 0.0)
        hi = max(scaled.max(), 0.0)
        ax.set_xlim(lo - (0.35 * span if lo < 0 else 0.0), hi + (0.35 * span if hi > 0 else 0.02 * span))
        ax.axvline(0, color="black", linewidth=0.6)
        ax.set_xlabel(_safe(text["with_unit"].format(name=text["value"], unit=unit_a) if show_units
                            else text["value"]))
        total_txt = f"{text['total']}: {total / div:,.2f}" + (f" {unit_a}" if show_units else "")
        ax.set_title(_safe(title) + "\n" + _safe(total_txt), fontsize=10)
        ax.grid(axis="x", linestyle=":", linewidth=0.5, alpha=0.7)
        ax.set_axisbelow(True)
        return _save_png(fig, path)
