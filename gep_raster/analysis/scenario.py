"""Land-cover scenarios: the land cover (and optionally other inputs) edited inside polygons.

A scenario (``scenario:`` section of a run configuration, :class:`gep_raster.config.ScenarioConfig`)
is a list of edits. Each edit names polygons (a polygon file ``path``, optionally filtered by
``where: "field == value"``, or an inline ``wkt``) and a class code ``to_class``. Reading the land
cover through :class:`ScenarioSource` gives the scenario map: a development parcel becomes built-up,
candidate parcels become forest, a current map becomes a planned one. Every service of the run is then
computed on that map, so two runs (baseline and scenario) can be compared pixel by pixel
(:mod:`gep_raster.analysis.change`, :mod:`gep_raster.analysis.offset`).

Pixel rule
----------
A pixel of the reference grid takes ``to_class`` when its **centre** lies inside a polygon of the
edit (GDAL's default rasterisation rule, ``all_touched=False``: ``rasterio.features.rasterize``)
and, when the edit lists ``from_classes``, its class (at that point of the sequence of edits) is one
of them. A centre exactly on a polygon edge is decided by GDAL's scan-line convention (half-open
intervals; with GDAL 3.10 a centre on the west or south edge of an axis-parallel rectangle is out,
on its east or north edge in), identically in every window. Consequences, stated so that they can be
checked:

* a polygon edge that cuts a pixel does not split it: the pixel is either wholly edited or not
  (the land cover is categorical); the edited area is therefore the number of edited pixels times
  the pixel area, which differs from the polygon area by up to about half a pixel along the edges
  (reported as ``edited_area_m2`` next to ``polygon_area_m2`` in :meth:`ScenarioSource.describe`);
* a polygon smaller than a pixel that contains no pixel centre edits nothing;
* land-cover nodata pixels stay nodata (a scenario changes the map, it does not extend it);
* edits are applied in order: a later edit wins where edits overlap.

Chunk independence
------------------
Each window is rasterised on its own (lazy, window by window, like every input). The polygons are
converted once to *global pixel coordinates* of the reference grid (column = (x − x0)/Δx,
row = (y0 − y)/Δy, plus a constant 2^20 so that no window transform is the identity); a window is
rasterised with a unit-scale transform translated by its integer offset, so GDAL's pixel coordinates
are the stored ones minus an integer, an exact floating-point operation. The same pixel therefore
sees the same geometry in every window, and the result does not depend on the chunking (tested with
odd chunkings and with polygon edges passing exactly through pixel centres).

Other inputs
------------
An edit may also set continuous inputs on the pixels it assigns (``set_inputs: {carbon: 0.0}``): an
observed NEP raster, for example, does not follow a land-cover edit by itself, so a development
scenario on an NEP run would otherwise keep the forest's carbon flux on the new built-up pixels.
:func:`wrap_inputs` wraps those sources with :class:`InputOverrideSource`. The values are user
assumptions, to be documented in the configuration next to the edit.

Pipeline hooks (in :func:`gep_raster.pipeline.run`): the land-cover source is wrapped right after it
is built (``lc_source = ScenarioSource(lc_source, cfg.scenario, grid, cfg)``), so the legend check
sees the scenario classes; after ``open_inputs``, ``sources = wrap_inputs(sources, cfg.scenario, grid,
cfg)`` applies ``set_inputs`` with the same edits. ``describe()`` of both wrappers adds a ``scenario``
entry to the manifest's ``inputs``; :mod:`gep_raster.analysis.change` warns when a run's config has a scenario
that its manifest shows was not applied.

Sources: rasterisation by GDAL (``GDALRasterizeGeometries``, pixel-centre rule unless ALL_TOUCHED),
through ``rasterio.features.rasterize``; the use of with/without-project land-cover maps for VEP
change follows the methods note §4 (Huzhou DB3305/T 271-2023 §7, "evaluation of change", [V] contents
only).
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..errors import ConfigError, VectorError
from ..grid import RefGrid

#: constant added to the global pixel coordinates of the edit polygons (2^20 px): the rasterisation
#: transform of a window is then a pure integer translation and never the identity (which rasterio
#: warns about); coordinates are rounded once, globally, to 2^-32 px
_PX_OFFSET = float(2 ** 20)

_RASTERIZE_LOCK = threading.Lock()

__all__ = ["ScenarioSource", "InputOverrideSource", "ScenarioMasks", "wrap_inputs", "scenario_polygons",
           "parse_where"]


# --------------------------------------------------------------------------------------
# polygons of the edits
# --------------------------------------------------------------------------------------
_WHERE = re.compile(r"^\s*(?P<field>[^\s=!]+)\s*(?P<op>==|!=)\s*(?P<value>\S.*?)\s*$")


def parse_where(text: str) -> tuple[str, str, str, bool]:
    """Parse an attribute filter ``"field == value"`` (or ``!=``).

    Parameters
    ----------
    text : str
        The filter, e.g. ``town_code == '331122103'`` or ``class == 3``.

    Returns
    -------
    field, op, value, quoted : str, str, str, bool
        ``quoted`` is True when the value was written in single or double quotes (then compared as
        text only).

    Raises
    ------
    ConfigError
        The text is not of that form.
    """
    m = _WHERE.match(text or "")
    if not m:
        raise ConfigError(f"where: '{text}' is not of the form \"field == value\" (or \"field != value\")")
    value = m.group("value")
    quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
    if quoted:
        value = value[1:-1]
    return m.group("field"), m.group("op"), value, quoted


def _where_mask(gdf, text: str, label: str, path: Path) -> np.ndarray:
    import pandas as pd

    fld, op, value, quoted = parse_where(text)
    if fld not in gdf.columns:
        raise ConfigError(f"{label}.where: field '{fld}' not found in {path} "
                          f"(fields: {[c for c in gdf.columns if c != 'geometry']})")
    col = gdf[fld]
    eq = np.array(col.astype(str) == value, dtype=bool)
    if not quoted:
        try:
            num = float(value)
        except ValueError:
            num = None
        if num is not None:
            eq |= (pd.to_numeric(col, errors="coerce") == num).to_numpy()
    return eq if op == "==" else ~eq


def _polygonal(geoms, label: str):
    """Valid polygonal geometries (make_valid where needed); VectorError on anything else."""
    import shapely

    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) and (shapely.is_missing(geoms).any() or shapely.is_empty(geoms).any()):
        raise VectorError(f"{label}: empty or null geometry; drop or fix it")
    out = []
    for g in geoms:
        if not g.is_valid:
            g = shapely.make_valid(g)
            if g.geom_type == "GeometryCollection":
                g = shapely.union_all([p for p in g.geoms if p.geom_type in ("Polygon", "MultiPolygon")])
        if g.geom_type not in ("Polygon", "MultiPolygon"):
            raise VectorError(f"{label}: a {g.geom_type} geometry; polygons are needed")
        out.append(g)
    return out


def scenario_polygons(edit, index: int, grid: RefGrid, cfg=None):
    """Polygons of one scenario edit, in the grid's CRS.

    Parameters
    ----------
    edit : gep_raster.config.ScenarioEdit
        The edit (``path`` [+ ``layer``, ``where``] or ``wkt`` [+ ``crs``]).
    index : int
        Position of the edit in ``scenario.edits`` (for messages).
    grid : RefGrid
        Reference grid (its CRS is the target CRS and the default CRS of ``wkt``).
    cfg : RunConfig, optional
        Resolves a relative ``path`` (relative to the config file); without it, relative to the
        working folder.

    Returns
    -------
    geoms : list of shapely Polygon/MultiPolygon
        In ``grid.crs``.
    path : pathlib.Path or None
        The polygon file (None for ``wkt``).

    Raises
    ------
    ConfigError
        File not found, unreadable WKT, unknown CRS, ``where`` field missing or matching no feature.
    VectorError
        The file cannot be read, has no CRS, holds non-polygon geometries.
    """
    import geopandas as gpd
    import shapely
    from pyproj import CRS

    label = f"scenario.edits[{index}]"
    if edit.wkt is not None:
        try:
            g = shapely.from_wkt(edit.wkt)
        except Exception as exc:  # shapely.errors.GEOSException
            raise ConfigError(f"{label}.wkt: not valid WKT ({exc})") from None
        try:
            crs = CRS.from_user_input(edit.crs) if edit.crs else CRS.from_user_input(grid.crs.to_wkt())
        except Exception as exc:
            raise ConfigError(f"{label}.crs: unknown CRS '{edit.crs}' ({exc})") from None
        gs = gpd.GeoSeries([g], crs=crs)
        if not crs.equals(CRS.from_user_input(grid.crs.to_wkt()), ignore_axis_order=True):
            gs = gs.to_crs(grid.crs.to_wkt())
        return _polygonal(gs.to_numpy(), f"{label}.wkt"), None
    path = cfg.resolve(edit.path) if cfg is not None else Path(edit.path)
    if not path.exists():
        raise ConfigError(f"{label}.path: file not found: {path}")
    from ..vector_io import read_vector

    gdf = read_vector(path, label, layer=edit.layer)
    if gdf.crs is None:
        raise VectorError(f"{label}: {path} has no CRS (.prj missing?); define it first")
    if edit.where:
        keep = _where_mask(gdf, edit.where, label, path)
        gdf = gdf[keep]
        if len(gdf) == 0:
            raise ConfigError(f"{label}.where: '{edit.where}' selects no feature of {path}")
    if len(gdf) == 0:
        raise VectorError(f"{label}: {path} holds no features")
    if not CRS.from_user_input(gdf.crs).equals(CRS.from_user_input(grid.crs.to_wkt()), ignore_axis_order=True):
        gdf = gdf.to_crs(grid.crs.to_wkt())
    return _polygonal(gdf.geometry.to_numpy(), f"{label} ({path})"), path


# --------------------------------------------------------------------------------------
# masks, window by window
# --------------------------------------------------------------------------------------
@dataclass
class _Edit:
    index: int
    to_class: int
    label: str
    geoms_px: list  # shapely geometries in global pixel coordinates (x = column, y = row)
    bounds_px: np.ndarray  # (n, 4) minx, miny, maxx, maxy in pixel coordinates
    path: Path | None
    polygon_area_m2: float
    set_inputs: dict = field(default_factory=dict)
    where: str | None = None
    from_classes: tuple | None = None


class ScenarioMasks:
    """The polygons of a scenario's edits and their pixel masks on a grid (centre-in-polygon rule).

    Parameters
    ----------
    scenario_cfg : gep_raster.config.ScenarioConfig
        The scenario.
    grid : RefGrid
        Reference grid.
    cfg : RunConfig, optional
        Resolves relative polygon paths.
    lc_base : GridSource, optional
        The land cover before the edits (needed by :meth:`apply` without an ``lc`` window).

    Raises
    ------
    ConfigError, VectorError
        See :func:`scenario_polygons`.
    """

    def __init__(self, scenario_cfg, grid: RefGrid, cfg=None, lc_base=None):
        import shapely

        self.scenario = scenario_cfg
        self.grid = grid
        self.lc_base = lc_base  # the land cover before the edits (for from_classes and apply)
        t = grid.transform
        self.edits: list[_Edit] = []
        for i, e in enumerate(scenario_cfg.edits):
            geoms, path = scenario_polygons(e, i, grid, cfg)

            def to_px(xy, t=t):
                out = np.empty_like(xy)
                out[:, 0] = (xy[:, 0] - t.c) / t.a + _PX_OFFSET
                out[:, 1] = (xy[:, 1] - t.f) / t.e + _PX_OFFSET
                return out

            gpx = [shapely.transform(g, to_px) for g in geoms]
            bounds = np.array([g.bounds for g in gpx], dtype=np.float64).reshape(-1, 4) - _PX_OFFSET
            area = float(sum(g.area for g in geoms)) * _unit2(grid)
            src = f"path {path}" + (f" where {e.where}" if e.where else "") if path else "inline wkt"
            self.edits.append(_Edit(i, int(e.to_class), f"scenario.edits[{i}] ({src})", gpx, bounds, path, area,
                                    dict(e.set_inputs), e.where,
                                    tuple(int(c) for c in e.from_classes) if e.from_classes else None))

    def files(self) -> list[Path]:
        """Polygon files read by the edits (for input checksums)."""
        return [e.path for e in self.edits if e.path is not None]

    def bbox_px(self) -> tuple[int, int, int, int] | None:
        """Window ``(r0, r1, c0, c1)`` of the grid holding every edited pixel (None if no edit touches the grid)."""
        if not self.edits:
            return None
        b = np.vstack([e.bounds_px for e in self.edits])
        c0 = max(0, int(np.floor(b[:, 0].min())))
        c1 = min(self.grid.width, int(np.ceil(b[:, 2].max())))
        r0 = max(0, int(np.floor(b[:, 1].min())))
        r1 = min(self.grid.height, int(np.ceil(b[:, 3].max())))
        if r1 <= r0 or c1 <= c0:
            return None
        return r0, r1, c0, c1

    def mask(self, edit: _Edit, r0: int, r1: int, c0: int, c1: int) -> np.ndarray | None:
        """Boolean mask (h, w) of the window's pixels whose centre lies inside the edit's polygons.

        Returns None when no polygon's bounding box meets the window (nothing to edit)."""
        from affine import Affine
        from rasterio.features import rasterize

        b = edit.bounds_px
        hit = (b[:, 0] < c1) & (b[:, 2] > c0) & (b[:, 1] < r1) & (b[:, 3] > r0)
        if not hit.any():
            return None
        shapes = [(edit.geoms_px[k], 1) for k in np.flatnonzero(hit)]
        # window pixel = stored coordinate - (offset + c0): an exact subtraction of integers (see module doc)
        tr = Affine(1.0, 0.0, _PX_OFFSET + c0, 0.0, 1.0, _PX_OFFSET + r0)
        with _RASTERIZE_LOCK:  # concurrent rasterize calls make rasterio emit spurious NotGeoreferencedWarnings
            m = rasterize(shapes, out_shape=(r1 - r0, c1 - c0), transform=tr, fill=0, all_touched=False,
                          dtype="uint8")
        return m.astype(bool)

    def apply(self, r0: int, r1: int, c0: int, c1: int, lc: np.ndarray | None = None):
        """Apply the edits, in order, to a land-cover window.

        Parameters
        ----------
        r0, r1, c0, c1 : int
            Window of the grid.
        lc : numpy.ndarray (int32, −1 = nodata), optional
            The land cover before the edits; read from ``lc_base`` when not given.

        Returns
        -------
        out : numpy.ndarray
            The scenario land cover of the window.
        assigned : list of (numpy.ndarray of bool or None)
            Per edit, the pixels it assigned (centre inside, land cover valid and, with
            ``from_classes``, of one of those classes at that point of the sequence); None when the
            edit does not touch the window. A later edit may reassign a pixel.
        """
        out = self.lc_base.read(r0, r1, c0, c1) if lc is None else lc
        out = np.array(out, dtype=np.int32, copy=True)
        assigned = []
        for e in self.edits:
            m = self.mask(e, r0, r1, c0, c1)
            if m is not None:
                m &= out >= 0
                if e.from_classes is not None:
                    m &= np.isin(out, e.from_classes)
                out[m] = e.to_class
            assigned.append(m)
        return out, assigned

    def describe(self) -> dict:
        return {"name": self.scenario.name, "description": self.scenario.description,
                "pixel_rule": "a pixel takes to_class when its centre lies inside a polygon (GDAL rasterize, "
                              "all_touched=False) and, with from_classes, its class is one of them; nodata stays "
                              "nodata; later edits win",
                "edits": [{"edit": e.label, "to_class": e.to_class,
                           **({"from_classes": list(e.from_classes)} if e.from_classes else {}),
                           "n_polygons": len(e.geoms_px),
                           "polygon_area_m2": e.polygon_area_m2,
                           **({"set_inputs": e.set_inputs} if e.set_inputs else {})} for e in self.edits]}


def _unit2(grid: RefGrid) -> float:
    if grid.is_geographic:
        return float("nan")  # planar area in degrees is meaningless; edited_area_m2 is the measure then
    unit = grid.crs.linear_units_factor[1] if grid.crs.linear_units_factor else 1.0
    return unit * unit


# --------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------
class _WrappedSource:
    """Common plumbing: delegate to the base source, keep the GridSource interface."""

    def __init__(self, base, masks: ScenarioMasks):
        self._base = base
        self.masks = masks
        self.grid = base.grid
        self.name = base.name
        self.kind = base.kind
        self.dtype = np.dtype(base.dtype)

    @property
    def fill(self):
        return getattr(self._base, "fill", -1 if self.kind == "categorical" else np.nan)

    @property
    def files(self) -> list:
        """Files read (base source's raster files, then the scenario's polygon files): objects with ``.path``."""
        return _source_files(self._base) + [SimpleNamespace(path=p) for p in self.masks.files()]

    def to_dask(self, chunks):
        """A dask array (height, width) that reads each chunk with :meth:`read`."""
        from ..grid.io_read import windowed_to_dask

        return windowed_to_dask(self, chunks, prefix="scenario")

    def read_all(self) -> np.ndarray:
        return self.read(0, self.grid.height, 0, self.grid.width)

    def __getattr__(self, item):  # anything else of the base source (paths, band, scale ...)
        if item.startswith("_"):
            raise AttributeError(item)
        return getattr(self._base, item)


def _source_files(src) -> list:
    if hasattr(src, "sources"):  # SumSource
        out = []
        for s in src.sources:
            out.extend(_source_files(s))
        return out
    return list(getattr(src, "files", []))


class ScenarioSource(_WrappedSource):
    """A categorical land-cover source with a scenario's edits applied (same interface as GridSource).

    Parameters
    ----------
    base_source : GridSource
        The land cover on the reference grid (kind ``categorical``).
    scenario_cfg : gep_raster.config.ScenarioConfig
        The scenario (``cfg.scenario``).
    grid : RefGrid
        Reference grid (must be the base source's grid).
    cfg : RunConfig, optional
        Resolves relative polygon paths (relative to the config file).

    Notes
    -----
    ``read(r0, r1, c0, c1)`` returns the base window (int32, −1 = nodata) with, edit after edit,
    ``to_class`` on the valid pixels whose centre lies inside the edit's polygons (see the module
    docstring for the rule and its chunk independence). :meth:`describe` adds a ``scenario`` entry:
    the edits, and the class transitions they cause (pixels and m² per ``from -> to``).

    Raises
    ------
    ConfigError
        The base source is not categorical, or its grid is not ``grid``; problems of the edits
        (see :func:`scenario_polygons`).
    """

    def __init__(self, base_source, scenario_cfg, grid: RefGrid, cfg=None):
        if getattr(base_source, "kind", None) != "categorical":
            raise ConfigError(f"scenario '{scenario_cfg.name}': the land-cover source "
                              f"{getattr(base_source, 'name', base_source)!r} is not categorical")
        if not base_source.grid.almost_equals(grid):
            raise ConfigError(f"scenario '{scenario_cfg.name}': the land-cover source is on another grid")
        super().__init__(base_source, ScenarioMasks(scenario_cfg, grid, cfg, lc_base=base_source))
        self._summary = None

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Window [r0:r1, c0:c1] of the scenario land cover (int32, −1 = nodata)."""
        return self.masks.apply(r0, r1, c0, c1)[0]

    def transitions(self, chunk: int = 1024) -> dict:
        """Class transitions caused by the scenario, read over the edits' bounding box.

        Returns
        -------
        dict
            ``{"from -> to": {"pixels": n, "area_m2": a}}`` for every changed pixel (true pixel
            areas per row), plus ``"edited_pixels"``/``"edited_area_m2"`` (pixels assigned by an
            edit: centre inside, valid, of ``from_classes`` if given; whether or not their class
            changed) and ``"edited_nodata_pixels"`` (centre inside, but land-cover nodata: left nodata).
        """
        if self._summary is not None:
            return self._summary
        trans: dict[tuple[int, int], list] = {}
        n_in = 0
        a_in = 0.0
        n_nd = 0
        bb = self.masks.bbox_px()
        if bb is not None:
            R0, R1, C0, C1 = bb
            for r0 in range(R0, R1, chunk):
                r1 = min(R1, r0 + chunk)
                for c0 in range(C0, C1, chunk):
                    c1 = min(C1, c0 + chunk)
                    base = self._base.read(r0, r1, c0, c1)
                    scen, assigned = self.masks.apply(r0, r1, c0, c1, lc=base)
                    inside = np.zeros(base.shape, bool)
                    touched = np.zeros(base.shape, bool)
                    for e, a in zip(self.masks.edits, assigned):
                        if a is not None:
                            inside |= a
                            touched |= self.masks.mask(e, r0, r1, c0, c1)
                    area = np.broadcast_to(self.grid.pixel_area_m2(r0, r1), base.shape)
                    n_in += int(inside.sum())
                    a_in += float(area[inside].sum())
                    n_nd += int((touched & (base < 0)).sum())
                    ch = base != scen
                    for f, t in set(zip(base[ch].tolist(), scen[ch].tolist())):
                        sel = ch & (base == f) & (scen == t)
                        acc = trans.setdefault((f, t), [0, 0.0])
                        acc[0] += int(sel.sum())
                        acc[1] += float(area[sel].sum())
        self._summary = {
            "edited_pixels": n_in, "edited_area_m2": a_in, "edited_nodata_pixels": n_nd,
            "transitions": {f"{f} -> {t}": {"pixels": v[0], "area_m2": v[1]} for (f, t), v in sorted(trans.items())},
        }
        return self._summary

    def describe(self) -> dict:
        """The base source's description plus ``scenario``: edits and class transitions."""
        d = dict(self._base.describe())
        d["scenario"] = {**self.masks.describe(), **self.transitions()}
        return d


class InputOverrideSource(_WrappedSource):
    """A continuous source whose valid pixels inside scenario edits take fixed values (``set_inputs``).

    Parameters
    ----------
    base_source : GridSource or SumSource
        A continuous input on the reference grid.
    masks : ScenarioMasks
        The scenario's edits.
    key : str
        The input name used in ``set_inputs`` (``carbon`` for ``inputs.carbon``).

    Notes
    -----
    Edit after edit, the pixels an edit with ``set_inputs[key]`` assigns (see
    :meth:`ScenarioMasks.apply`: centre inside, land cover valid and of ``from_classes`` if given)
    take that value (float32, in the input's own unit after its ``scale``); NaN pixels stay NaN.
    """

    def __init__(self, base_source, masks: ScenarioMasks, key: str):
        if getattr(base_source, "kind", None) != "continuous":
            raise ConfigError(f"scenario.set_inputs.{key}: inputs.{key} is not a continuous raster")
        super().__init__(base_source, masks)
        self.key = key

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Window of the input with the edits' values on the pixels they assign (float32, NaN = nodata)."""
        out = np.array(self._base.read(r0, r1, c0, c1), dtype=np.float32, copy=True)
        if not any(self.key in e.set_inputs for e in self.masks.edits):
            return out
        _, assigned = self.masks.apply(r0, r1, c0, c1)
        for e, m in zip(self.masks.edits, assigned):
            if self.key not in e.set_inputs or m is None:
                continue
            m = m & np.isfinite(out)
            out[m] = np.float32(e.set_inputs[self.key])
        return out

    def describe(self) -> dict:
        d = dict(self._base.describe())
        d["scenario"] = {"name": self.masks.scenario.name,
                         "set_inputs": [{"edit": e.label, "value": e.set_inputs[self.key]}
                                        for e in self.masks.edits if self.key in e.set_inputs],
                         "pixel_rule": "the pixels the edit assigns in the land cover; NaN stays NaN"}
        return d


def wrap_inputs(sources: dict, scenario_cfg, grid: RefGrid, cfg=None) -> dict:
    """Apply a scenario to the run's sources: the land cover (``lc``) and the ``set_inputs`` inputs.

    Parameters
    ----------
    sources : dict
        The run's sources (:func:`gep_raster.grid.run_inputs.open_inputs`), keyed by model input key (``lc``
        = the land cover); each has a ``name`` such as ``inputs.carbon``.
    scenario_cfg : gep_raster.config.ScenarioConfig or None
        The scenario (None: ``sources`` returned unchanged).
    grid : RefGrid
        Reference grid.
    cfg : RunConfig, optional
        Resolves relative polygon paths.

    Returns
    -------
    dict
        A new dict: ``lc`` is a :class:`ScenarioSource` (kept if it already is one); the sources named
        ``inputs.<key>`` for a ``set_inputs`` key are wrapped in :class:`InputOverrideSource`, which
        uses the same edits and land cover; the others are unchanged.

    Raises
    ------
    ConfigError
        No ``lc`` source; a ``set_inputs`` key names no continuous input of the run (the message lists
        those present).
    """
    if scenario_cfg is None:
        return sources
    if "lc" not in sources:
        raise ConfigError(f"scenario '{scenario_cfg.name}': the run has no land-cover source to edit")
    out = dict(sources)
    lc = out["lc"]
    if not isinstance(lc, ScenarioSource):
        lc = out["lc"] = ScenarioSource(lc, scenario_cfg, grid, cfg)
    keys = sorted({k for e in scenario_cfg.edits for k in e.set_inputs})
    by_name = {getattr(s, "name", None): k for k, s in sources.items()}
    for key in keys:
        skey = by_name.get(f"inputs.{key}")
        if skey is None or getattr(sources[skey], "kind", "") != "continuous":
            present = sorted(n.removeprefix("inputs.") for n, k in by_name.items()
                             if n and getattr(sources[k], "kind", "") == "continuous")
            raise ConfigError(f"scenario '{scenario_cfg.name}': set_inputs.{key}: the run reads no continuous input "
                              f"inputs.{key} (continuous inputs of this run: {present})")
        out[skey] = InputOverrideSource(sources[skey], lc.masks, key)
    return out
