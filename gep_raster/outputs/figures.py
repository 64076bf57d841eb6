"""Figures of a run: the GEP-R density map and the value-by-service bar chart.

Rendering uses matplotlib's Agg canvas directly (``matplotlib.figure.Figure`` +
``FigureCanvasAgg``): no pyplot, no global backend switch, no window, safe in worker threads.
PNG files are written atomically (temp file in the same folder, then ``os.replace``).

Text: labels made by this module are ASCII English. Caller text (titles, service names)
may contain Chinese; it is drawn with a CJK font when one is installed (Noto Sans CJK,
Source Han Sans, SimHei, Microsoft YaHei, WenQuanYi, ...), otherwise every character the
default font cannot draw is replaced by ``?`` (never an error, never a missing-glyph box).
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..grid import RefGrid
from .io_write import atomic_path

__all__ = ["plot_gep_r_map", "plot_value_by_service", "DPI", "MAX_DISPLAY_PX"]

#: Resolution of the PNG files.
DPI = 150
#: Longest side, in pixels, of the raster drawn in a map (larger rasters are strided).
MAX_DISPLAY_PX = 2000

_CJK_FONT_CANDIDATES = (
    "Noto Sans CJK SC", "Noto Sans SC", "Noto Sans CJK JP", "Source Han Sans SC",
    "Source Han Sans CN", "SimHei", "Microsoft YaHei", "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei", "PingFang SC", "Heiti SC", "STHeiti", "Arial Unicode MS",
    "Droid Sans Fallback", "AR PL UMing CN", "AR PL UKai CN", "SimSun",
)
_LINE_STYLES = ("-", "--", ":", "-.")
_LINE_COLOURS = ("black", "crimson", "royalblue", "darkorange", "purple", "dimgray")
_LINE_WIDTHS = (1.2, 0.9, 0.8, 0.7)


# ---------------------------------------------------------------------------------------
# fonts and text
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


def _safe(text: str) -> str:
    """``text`` with each character no available font can draw replaced by ``?``."""
    _, covered = _fonts()
    return "".join(c if (c in "\n\t" or ord(c) in covered) else "?" for c in str(text))


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


def _save_png(fig, path: str | os.PathLike) -> Path:
    final = Path(path)
    with atomic_path(final, suffix=".png") as tmp:
        # zlib level 1: the 8192² bench map encodes in 0.09 s instead of 0.25 s (level 6), 2 % more bytes
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", pil_kwargs={"compress_level": 1})
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


def _crs_label(grid: RefGrid) -> tuple[str, str, str]:
    """(crs name, x-axis label, y-axis label)."""
    name = grid.crs.to_string()
    unit = "m"
    with contextlib.suppress(Exception):
        from pyproj import CRS as PCRS

        pcrs = PCRS.from_user_input(grid.crs.to_wkt())
        name = pcrs.name
        if not grid.is_geographic and pcrs.axis_info:
            unit = pcrs.axis_info[0].unit_name or unit
            unit = {"metre": "m", "meter": "m"}.get(unit, unit)
    if grid.is_geographic:
        return name, f"Longitude (deg), {name}", f"Latitude (deg), {name}"
    return name, f"Easting ({unit}), {name}", f"Northing ({unit}), {name}"


# ---------------------------------------------------------------------------------------
# map
# ---------------------------------------------------------------------------------------
def plot_gep_r_map(array, grid: RefGrid, path: str | os.PathLike, *, title: str,
                   polygons: Sequence | None = None, pixel_area_m2: float | None = None,
                   polygon_labels: Sequence[str] | None = None, north_arrow: bool = True,
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
        Grid of ``array``; gives the map extent and, by default, the pixel areas.
    path : path-like
        Output PNG path (150 dpi).
    title : str
        Figure title (ASCII recommended; see module notes on CJK text).
    polygons : list of geopandas.GeoDataFrame, optional
        Layers whose outlines are drawn over the raster (layer *i* gets line style
        ``-``, ``--``, ``:``, ``-.`` in turn). Reprojected to ``grid.crs`` if their CRS differs.
    pixel_area_m2 : float, optional
        Area of one pixel in m². Default: ``grid.row_pixel_area_m2`` (per row; true
        ellipsoidal areas for geographic grids).
    polygon_labels : list of str, optional
        Legend label of each polygon layer (no legend if omitted).
    north_arrow : bool, default True
        Draw a north arrow (grids are north-up).
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
        or the lengths of ``polygons`` and ``polygon_labels`` differ.
    gep_raster.outputs.io_write.OutputError
        If the PNG cannot be written.

    Notes
    -----
    Density = value / (pixel area / 10 000 m²). The colour stretch spans the 2nd–98th
    percentiles of the displayed finite values (colour bar arrows mark values beyond).
    An all-NaN raster gives a map with the note "no data".
    """
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
    finite = density[np.isfinite(density)]
    vmin, vmax, extend = _colour_stretch(finite)
    left, bottom, right, top = grid.bounds
    crs_name, xlabel, ylabel = _crs_label(grid)

    import matplotlib

    with _mpl_context():
        ratio = (top - bottom) / (right - left)
        if grid.is_geographic:
            ratio /= max(0.05, math.cos(math.radians((top + bottom) / 2)))
        fig_w = 9.0
        fig = _new_figure((fig_w, min(14.0, max(4.0, fig_w * 0.85 * ratio + 1.2))))
        ax = fig.add_subplot(1, 1, 1)
        colours = matplotlib.colormaps[cmap].with_extremes(bad=(0, 0, 0, 0))
        im = ax.imshow(np.ma.masked_invalid(density), extent=(left, right, bottom, top),
                       origin="upper", cmap=colours, vmin=vmin, vmax=vmax,
                       interpolation="nearest")
        if grid.is_geographic:
            ax.set_aspect(1.0 / max(0.05, math.cos(math.radians((top + bottom) / 2))))
        else:
            ax.set_aspect("equal")
        cbar = fig.colorbar(im, ax=ax, extend=extend, shrink=0.85, pad=0.03)
        cbar.set_label("GEP-R density (yuan/ha/a)")
        handles = _draw_outlines(ax, polygons, polygon_labels, grid)
        ax.set_xlim(left, right)
        ax.set_ylim(bottom, top)
        if handles:
            ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.8)
        ax.set_title(_safe(title))
        ax.set_xlabel(_safe(xlabel), fontsize=8)
        ax.set_ylabel(_safe(ylabel), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(useOffset=False, style="plain")
        if north_arrow:
            ax.annotate("N", xy=(0.06, 0.95), xytext=(0.06, 0.83), xycoords="axes fraction",
                        textcoords="axes fraction", ha="center", va="center", fontsize=11,
                        fontweight="bold",
                        arrowprops=dict(facecolor="black", edgecolor="black", width=3, headwidth=9))
        notes = ["colour stretch: 2-98th percentile"]
        if step > 1:
            notes.append(f"display: 1 pixel in {step} per row and column")
        if not finite.size:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center",
                    fontsize=14, color="gray")
        ax.annotate("; ".join(notes), xy=(0, 0), xycoords="axes fraction", xytext=(0, -34),
                    textcoords="offset points", fontsize=6, color="gray", ha="left", va="top")
        return _save_png(fig, path)


def _display_density(array, grid: RefGrid, step: int, pixel_area_m2: float | None) -> np.ndarray:
    """Every ``step``-th row and column of ``array`` (yuan/a per pixel) as density, yuan/ha/a (float64)."""
    sub = np.asarray(array[::step, ::step], dtype=np.float64)
    if pixel_area_m2 is not None:
        area = float(pixel_area_m2)
    else:
        area = np.asarray(grid.row_pixel_area_m2[::step], dtype=np.float64)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return sub / (area / 1e4)


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


def _draw_outlines(ax, polygons: list, polygon_labels, grid: RefGrid) -> list:
    """Outlines of every polygon layer (in the grid's CRS; layer i gets the i-th line style); returns the legend
    handles (empty without labels)."""
    from matplotlib.lines import Line2D

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
        if polygon_labels is not None:
            handles.append(Line2D([], [], label=_safe(polygon_labels[i]), **style))
    return handles


# ---------------------------------------------------------------------------------------
# bar chart
# ---------------------------------------------------------------------------------------
def _scale(max_abs: float) -> tuple[float, str]:
    if max_abs >= 1e8:
        return 1e8, "10^8 yuan"
    if max_abs >= 1e4:
        return 1e4, "10^4 yuan"
    return 1.0, "yuan"


def plot_value_by_service(values: Mapping[str, float], path: str | os.PathLike, *, title: str) -> Path:
    """Horizontal bar chart of value per ecosystem service, as a PNG written atomically.

    Parameters
    ----------
    values : mapping of str to float
        Service label → value in yuan/a. Bars are sorted largest first (top).
    path : path-like
        Output PNG path (150 dpi).
    title : str
        Figure title; the total value is added as a second line.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If ``values`` is empty or holds a non-finite value.
    gep_raster.outputs.io_write.OutputError
        If the PNG cannot be written.

    Notes
    -----
    The axis unit follows the largest absolute value: ``yuan``, ``10^4 yuan`` (万元) from
    1e4, ``10^8 yuan`` (亿元) from 1e8 — labels are ASCII so no CJK font is needed. Each bar
    is annotated with its value in that unit and its share of the total (sum of the
    values; no share shown when the total is 0).
    """
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
    div, unit = _scale(float(np.abs(raw).max()))
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
        ax.set_xlabel(f"Value ({unit}/a)")
        ax.set_title(_safe(title) + f"\nTotal: {total / div:,.2f} {unit}/a", fontsize=10)
        ax.grid(axis="x", linestyle=":", linewidth=0.5, alpha=0.7)
        ax.set_axisbelow(True)
        return _save_png(fig, path)
