"""Flood regulation (洪水调蓄): lakes, reservoirs and marshes; vegetation storm retention only on request.

Default (Garzê GEP 2010, 白玛卓嘎 et al. 2017, 生态学报 37(19) §2.4.4 **[V]**, which counts "湖泊、水库和沼泽"
only): **water bodies** per polygon of ``water_bodies``: lakes C_l = a · A_km2^b · T (10⁴ m3/a; defaults
a = e^6.636, b = 0.678, T = 1: the Qinghai–Tibet plateau lake regression, valid for that region only),
reservoirs C_r = 0.35 · C_t (C_t = total storage), marshes C_m = 0.3 m · S (surface detention, m3).

Opt-in (``vegetation_storm: true``): **vegetation storm retention** per pixel of the classes whose
ecosystem is in ``vegetation_ecosystems``: C_v = (P_storm − R_storm) · A with R_storm = c_s · P_storm
(m3/a), c_s = legend column ``storm_runoff_coef``, P_storm = the storm rainfall depth, ``storm_precip_mm``
(constant) or ``storm_precip_raster`` (per pixel), in **mm per storm event or per storm season**: the rain
of the storms whose runoff the vegetation holds back (e.g. a design-storm depth, or the rain of the days
above a storm threshold summed over the season), NOT a monthly or annual rainfall total, most of which is
ordinary rain already in the annual water balance. The form is the one reported for the MEE 2020 guideline
and Zhejiang practice **[U]**: it is not in Garzê GEP 2010, and neither the formula nor a coefficient table
was read in a primary source. It is **bounded by the water balance** (engine rule, methods note §6.4):
C_v' = min(C_v, max((P − ET)·A·10⁻³ − Q_wc, 0)) with P, ET the annual precipitation and
evapotranspiration (core inputs ``precip``, ``et``; ET = the water-conservation ET when that service
runs) and Q_wc = ``water_conservation_m3`` of the same pixel (0 when water conservation is disabled), so
water conservation + flood regulation never exceed the available P − ET water
(:func:`gep_raster.kernels.flood.water_balance_bound`). The volume cut is the diagnostic output
``flood_regulation_capped_m3`` and the cut pixels ``flood_regulation_capped_px`` (manifest totals).

Spreading rule of the water bodies (methods note §5.3): a body's volume is spread to the pixels it
covers in proportion to the covered area, using exact coverage fractions
(:class:`gep_raster.zonal.CoverageIndex`), over the pixels with a valid land cover: pixel value =
Σ_bodies C_body · frac · pixel_area / valid_covered_area(body). The pixels of a body therefore add up to
C_body exactly; a body only partly inside the grid puts its whole volume on its part inside (listed in
the method note).

Because a service's ``compute`` does not know where its block lies on the grid, the spread volumes
are written once, in :meth:`Service.configure`, to a float32 GeoTIFF on the reference grid
(``<output.dir>/.gep_state/flood_regulation/water_bodies_m3.tif``) that the pipeline reads back
block by block as an own input (:class:`~gep_raster.services.base.InputRequest`). A per-body table
is written to ``<output.dir>/tables/flood_regulation_water_bodies.csv``.

Value = volume × reservoir construction cost (price ``flood_regulation.reservoir_cost``, 7.06 yuan/m3,
Garzê GEP 2010 **[V]**).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..config_base import ECOSYSTEMS, RasterInput, ServiceConfigBase, _Model
from ..errors import ConfigError, VectorError
from .base import BuildContext, InputRequest, OutputSpec, ServiceBase

WATER_TYPES = ("lake", "reservoir", "marsh")
#: own input keys (blocks) of this service
STORM_KEY = "flood_storm_precip"
WATER_KEY = "flood_water_bodies_m3"


class WaterBodiesConfig(_Model):
    """``services.flood_regulation.water_bodies``: lake / reservoir / marsh polygons.

    ``type_field`` holds ``lake``, ``reservoir`` or ``marsh`` (case-insensitive) or values mapped by
    ``type_map`` (e.g. ``{湖泊: lake, 水库: reservoir, 沼泽: marsh}``). ``capacity_field`` (total storage
    of reservoirs, in ``capacity_unit``) is needed when the layer holds reservoirs. ``lake_coef_a``,
    ``lake_exponent_b``, ``lake_renewals_T`` override the parameters ``flood_regulation.lake_coef_a``,
    ``lake_exponent_b``, ``lake_renewals`` (Qinghai–Tibet plateau regression)."""

    path: str
    layer: str | None = None
    id_field: str
    type_field: str
    type_map: dict[str, Literal["lake", "reservoir", "marsh"]] = {}
    capacity_field: str | None = None
    capacity_unit: Literal["m3", "1e4_m3"] = "m3"
    lake_coef_a: float | None = Field(None, gt=0)
    lake_exponent_b: float | None = Field(None, gt=0)
    lake_renewals_T: float | None = Field(None, gt=0)


class Config(ServiceConfigBase):
    """``services.flood_regulation`` (off by default: the registry lists it outside ``DEFAULT_ON``).

    ``water_bodies``: lakes, reservoirs, marshes (the default and Garzê GEP 2010 scope).
    ``vegetation_storm`` (default false): opt in to vegetation storm retention [U]; it then needs exactly one
    of ``storm_precip_mm`` (constant storm rainfall depth, mm per storm event or per storm season) or
    ``storm_precip_raster`` (the same quantity per pixel), and uses ``vegetation_ecosystems``.

    Raises (pydantic ValueError, reported by ``load_config`` as ConfigError naming
    ``services.flood_regulation.<key>``): a storm key given without ``vegetation_storm: true``; both or
    neither storm input with it; an empty ``vegetation_ecosystems``."""

    vegetation_storm: bool = False
    storm_precip_mm: float | None = Field(None, gt=0, le=10000)
    storm_precip_raster: RasterInput | None = None
    vegetation_ecosystems: list[Literal[ECOSYSTEMS]] = ["forest", "shrub", "grassland"]
    water_bodies: WaterBodiesConfig | None = None

    @model_validator(mode="after")
    def _vegetation_opt_in(self):
        if not self.enabled:
            return self
        k = "services.flood_regulation"
        storm = [f for f in ("storm_precip_mm", "storm_precip_raster") if getattr(self, f) is not None]
        if not self.vegetation_storm:
            given = storm + (["vegetation_ecosystems"] if "vegetation_ecosystems" in self.model_fields_set else [])
            if given:
                raise ValueError(
                    f"{', '.join(f'{k}.{g}' for g in given)} given but the vegetation storm-retention term is off: "
                    f"it is opt-in. Add '{k}.vegetation_storm: true' to count it (an unverified [U] formula, bounded "
                    "by the water balance P - ET - water conservation; the storm input is the storm rainfall depth in "
                    "mm per storm event or per storm season, not a monthly or annual total), or remove "
                    f"{', '.join(given)}: by default flood regulation counts the water bodies only ({k}.water_bodies: "
                    "lakes, reservoirs, marshes, as the Garze GEP 2010 account)")
            return self
        if len(storm) == 2:
            raise ValueError(f"{k}.storm_precip_mm and {k}.storm_precip_raster: give either the constant storm "
                             "rainfall depth or the raster, not both")
        if not storm:
            raise ValueError(f"{k}.vegetation_storm: true needs the storm rainfall depth: {k}.storm_precip_mm "
                             f"(constant, mm per storm event or per storm season) or {k}.storm_precip_raster (the same "
                             "quantity per pixel); a monthly or annual rainfall total is not a storm depth")
        if not self.vegetation_ecosystems:
            raise ValueError(f"{k}.vegetation_ecosystems is empty; list the vegetation ecosystems "
                             "(default [forest, shrub, grassland])")
        return self


def _vegetation_part(c: Config) -> bool:
    return bool(c.vegetation_storm)


class Service(ServiceBase):
    """Flood regulation: outputs ``flood_regulation_m3`` (m3/a per pixel) and ``flood_regulation_yuan``
    (yuan/a per pixel); diagnostics ``flood_regulation_vegetation_m3``, ``flood_regulation_water_bodies_m3``
    and, with ``vegetation_storm: true``, ``flood_regulation_capped_m3`` (m3/a cut by the water-balance
    bound) and ``flood_regulation_capped_px`` (1 where the bound cut, else 0).

    Configuration: :class:`Config`. Raises, from :meth:`check_config` (via ``load_config``): nothing to
    count (no water bodies, no vegetation term); the vegetation term without ``inputs.precipitation`` or
    ``inputs.et``/``inputs.et0`` (needed by the water-balance bound). From :meth:`configure`: ConfigError
    (missing ``capacity_field`` with reservoirs in the layer), VectorError (water-body file unreadable, a
    field missing, duplicate ids, an unknown type, a bad capacity, a non-polygon or empty geometry),
    CRSError (layer without CRS); every message names the config key ``services.flood_regulation.*``.
    From :meth:`compute`: ConfigError when water conservation is enabled but its outputs are missing from
    ``shared`` (it must run before flood regulation, registry order).
    """

    name = "flood_regulation"
    label = "Flood regulation"

    @staticmethod
    def check_config(cfg) -> list[str]:
        c = cfg.services.flood_regulation
        k = "services.flood_regulation"
        out = []
        if not _vegetation_part(c) and c.water_bodies is None:
            out.append(f"{k} is enabled but has nothing to count: give {k}.water_bodies (lakes, reservoirs, "
                       "marshes: the default scope, as the Garze GEP 2010 account) and/or opt in to vegetation storm "
                       f"retention with {k}.vegetation_storm: true and {k}.storm_precip_mm or {k}.storm_precip_raster "
                       "(storm rainfall depth, mm per storm event or per storm season); or disable the service")
        if _vegetation_part(c):
            if cfg.inputs.precipitation is None:
                out.append(f"{k}.vegetation_storm: true needs inputs.precipitation (annual P, mm/a): the vegetation "
                           "term is bounded by the water balance P - ET - water conservation")
            if cfg.inputs.et is None and cfg.inputs.et0 is None:
                out.append(f"{k}.vegetation_storm: true needs inputs.et (or inputs.et0 with legend kc): the vegetation "
                           "term is bounded by the water balance P - ET - water conservation")
        return out

    @staticmethod
    def legend_columns(cfg) -> dict[str, tuple]:
        if not _vegetation_part(cfg.services.flood_regulation):
            return {}
        cols = {"storm_runoff_coef": (0.0, 1.0, "fraction",
                                      "storm runoff coefficient of flood regulation (R_storm = c * P_storm)")}
        if cfg.inputs.et0 is not None and not cfg.services.water_conservation.enabled:
            cols["kc"] = (0.0, 2.0, "-", "crop coefficient: ET = Kc * ET0 (water-balance bound of flood regulation)")
        return cols

    # ------------------------------------------------------------------------------------
    def configure(self, ctx: BuildContext) -> None:
        c = ctx.cfg.services.flood_regulation
        self.flags["veg"] = _vegetation_part(c)
        self.flags["storm_raster"] = c.storm_precip_raster is not None
        self.flags["storm_spec"] = c.storm_precip_raster
        self.flags["water"] = c.water_bodies is not None
        self.flags["wc"] = bool(ctx.cfg.services.water_conservation.enabled)
        self.flags["et_is_et0"] = ctx.et_is_et0
        self.flags["assumptions"] = []
        parts = []
        if self.flags["veg"]:
            self.luts["storm_coef"] = ctx.legend.lut("storm_runoff_coef")
            self.luts["veg"] = ctx.legend.ecosystem_lut(list(c.vegetation_ecosystems)).astype(np.float32)
            if not self.flags["wc"] and ctx.et_is_et0:
                self.luts["kc"] = ctx.legend.lut("kc")
            if c.storm_precip_mm is not None:
                self.scalars["storm_p"] = float(c.storm_precip_mm)
                src = f"storm_precip_mm = {c.storm_precip_mm:g} mm per storm event / storm season (constant)"
            else:
                src = "storm_precip_raster (mm per storm event / storm season)"
            if self.flags["wc"]:
                room = ("max((P - ET) * A / 1000 - water_conservation_m3, 0) with P, ET and water conservation of "
                        "the same pixel (ET = the ET of the water-conservation balance)")
            else:
                room = ("max((P - ET) * A / 1000, 0) (water conservation is disabled: P - ET alone; ET = "
                        + ("Kc * ET0" if ctx.et_is_et0 else "actual ET") + ")")
            rule = (f"bounded by the water balance: C_v <= {room}, so water conservation + flood regulation never "
                    "exceed the available P - ET water (engine rule against double counting, methods note 6.4); "
                    "volume cut: diagnostic flood_regulation_capped_m3, pixels cut: flood_regulation_capped_px "
                    "(manifest totals)")
            parts.append(
                "vegetation storm retention C_v = (P_storm - c_s*P_storm) * A on ecosystems "
                f"{list(c.vegetation_ecosystems)} (c_s = legend storm_runoff_coef, {src}) [U: formula reported for "
                "the MEE 2020 guideline / Zhejiang practice, not read in a primary source; Garze 2010 does not count "
                f"vegetation], {rule}")
            self.flags["assumptions"].append(
                "flood regulation: vegetation storm retention C_v = (P_storm - R_storm) * A (opted in with "
                "services.flood_regulation.vegetation_storm) is an unverified [U] formula (methods note 2.8; not in "
                "Garze GEP 2010); P_storm must be a storm rainfall depth (mm per storm event / storm season), not a "
                f"monthly total; C_v is {rule}")
        if self.flags["water"]:
            parts.append(self._configure_water_bodies(ctx))
        self.scalars["price"] = ctx.book.price("flood_regulation.reservoir_cost")
        self.note = ("Flood regulation (m3/a) = " + " + ".join(parts)
                     + "; value = volume * reservoir construction cost (Garze GEP 2010)")
        self.outputs = [
            OutputSpec("flood_regulation_m3", self.name, "physical", "m3/a per pixel",
                       "Flood regulation: water-body flood storage"
                       + (" + vegetation storm retention (bounded by P - ET - water conservation)"
                          if self.flags["veg"] else "") + ", m3 per pixel per year"),
            OutputSpec("flood_regulation_yuan", self.name, "value", "yuan/a per pixel",
                       "Value of flood regulation (reservoir construction cost), yuan per pixel per year"),
            OutputSpec("flood_regulation_vegetation_m3", self.name, "diagnostic", "m3/a per pixel",
                       "Flood regulation, vegetation storm-retention part (after the water-balance bound)",
                       write=False),
            OutputSpec("flood_regulation_water_bodies_m3", self.name, "diagnostic", "m3/a per pixel",
                       "Flood regulation, lakes/reservoirs/marshes part (spread by covered area)", write=False),
        ]
        if self.flags["veg"]:
            self.outputs += [
                OutputSpec("flood_regulation_capped_m3", self.name, "diagnostic", "m3/a per pixel",
                           "Vegetation storm retention cut by the water-balance bound (C_v - C_v')", write=False),
                OutputSpec("flood_regulation_capped_px", self.name, "diagnostic", "pixels",
                           "1 where the water-balance bound cut the vegetation storm retention, else 0", write=False),
            ]

    def _configure_water_bodies(self, ctx: BuildContext) -> str:
        """Per-body volumes, spread to the grid and written as the cache raster; returns the note part."""
        import geopandas as gpd
        import pandas as pd
        import rasterio

        from ..accounts import polygon_area_km2
        from ..io_write import atomic_path, atomic_to_csv
        from ..run_inputs import raster_source, reference_grid
        from ..zonal import CoverageIndex

        cfg, book = ctx.cfg, ctx.book
        wb = cfg.services.flood_regulation.water_bodies
        key = "services.flood_regulation.water_bodies"
        path = cfg.resolve(wb.path)
        self.files.append(path)
        if not path.exists():
            raise VectorError(f"{key}.path: file not found: {path}")
        try:
            gdf = gpd.read_file(path, layer=wb.layer) if wb.layer else gpd.read_file(path)
        except Exception as exc:  # fiona/pyogrio raise many types
            raise VectorError(f"{key}: cannot read {path}: {exc}") from None
        fields = [c for c in gdf.columns if c != "geometry"]
        for k in ("id_field", "type_field", "capacity_field"):
            f = getattr(wb, k)
            if f is not None and f not in gdf.columns:
                raise VectorError(f"{key}.{k}: field '{f}' not found in {path} (fields: {fields})")
        if len(gdf) == 0:
            raise VectorError(f"{key}: {path} holds no features")
        if gdf.crs is None:
            raise VectorError(f"{key}: {path} has no CRS (.prj missing?); define it before running")
        ids = gdf[wb.id_field].astype(str).to_numpy()
        dup = pd.Series(ids).duplicated().to_numpy()
        if dup.any():
            raise VectorError(f"{key}.id_field: duplicate ids {ids[dup][:10].tolist()} in field '{wb.id_field}' "
                              f"of {path}")
        # -- types
        raw = gdf[wb.type_field].astype(str).str.strip()
        types = np.array([wb.type_map.get(v, v.lower()) for v in raw], dtype=object)
        bad = ~np.isin(types, WATER_TYPES)
        if bad.any():
            pairs = [f"{i}: {v!r}" for i, v in zip(ids[bad][:10], raw[bad][:10])]
            raise VectorError(f"{key}.type_field: field '{wb.type_field}' of {path} must hold lake, reservoir or "
                              f"marsh (or values mapped by {key}.type_map); bad: {pairs}")
        # -- geometries
        geom = gdf.geometry
        missing = geom.isna() | geom.is_empty
        if missing.any():
            raise VectorError(f"{key}: water bodies {ids[missing.to_numpy()][:10].tolist()} of {path} have an "
                              "empty geometry; drop or fix them")
        gtypes = set(geom.geom_type)
        if not gtypes <= {"Polygon", "MultiPolygon"}:
            raise VectorError(f"{key}: {path} holds {sorted(gtypes)} geometries; polygons are needed")
        invalid = ~geom.is_valid
        repaired = ids[invalid.to_numpy()].tolist()
        if invalid.any():
            import shapely

            fixed = []
            for g in geom[invalid]:
                g = shapely.make_valid(g)
                if g.geom_type == "GeometryCollection":
                    g = shapely.union_all([p for p in g.geoms if p.geom_type in ("Polygon", "MultiPolygon")])
                fixed.append(g)
            gdf = gdf.copy()
            gdf.loc[invalid, "geometry"] = fixed
        grid = reference_grid(cfg)
        from pyproj import CRS

        if CRS.from_user_input(gdf.crs) != CRS.from_user_input(grid.crs.to_wkt()):
            gdf = gdf.to_crs(grid.crs.to_wkt())
        # -- capacity
        is_res = types == "reservoir"
        capacity = np.full(len(gdf), np.nan)
        if is_res.any():
            if wb.capacity_field is None:
                raise ConfigError(f"{key}.capacity_field: {path} holds {int(is_res.sum())} reservoir(s) "
                                  f"({ids[is_res][:5].tolist()}); name the field with their total storage capacity")
            cap = pd.to_numeric(gdf[wb.capacity_field], errors="coerce").to_numpy(dtype=float)
            badcap = is_res & ~(np.isfinite(cap) & (cap >= 0))
            if badcap.any():
                raise VectorError(f"{key}.capacity_field: reservoir(s) {ids[badcap][:10].tolist()} of {path} have no "
                                  f"valid total storage in field '{wb.capacity_field}' (need a number >= 0, "
                                  f"{wb.capacity_unit})")
            capacity[is_res] = cap[is_res] * (1e4 if wb.capacity_unit == "1e4_m3" else 1.0)
        # -- per-body volumes (m3/a)
        area_km2 = polygon_area_km2(gdf, grid)
        volume = np.zeros(len(gdf))
        formula = np.empty(len(gdf), dtype=object)
        notes = []
        is_lake, is_marsh = types == "lake", types == "marsh"
        if is_lake.any():
            a, src_a = ((wb.lake_coef_a, "config") if wb.lake_coef_a is not None
                        else (book.param("flood_regulation.lake_coef_a"), "parameter"))
            b, src_b = ((wb.lake_exponent_b, "config") if wb.lake_exponent_b is not None
                        else (book.param("flood_regulation.lake_exponent_b"), "parameter"))
            t, src_t = ((wb.lake_renewals_T, "config") if wb.lake_renewals_T is not None
                        else (book.param("flood_regulation.lake_renewals"), "parameter"))
            volume[is_lake] = a * area_km2[is_lake] ** b * t * 1e4  # 10^4 m3/a -> m3/a
            formula[is_lake] = f"lake: {a:.6g} * A_km2^{b:g} * {t:g} * 1e4 m3"
            default = src_a == "parameter" and src_b == "parameter"
            notes.append(f"lakes C_l = a*A_km2^b*T*1e4 m3/a with a = {a:.6g} ({src_a}), b = {b:g} ({src_b}), "
                         f"T = {t:g} ({src_t})" + ("; WARNING: a, b are the Qinghai-Tibet plateau lake regression "
                                                   "(Garze GEP 2010 [V] for that region only); other regions need "
                                                   "their own coefficients (lake_coef_a, lake_exponent_b)"
                                                   if default else ""))
            if default:
                self.flags["assumptions"].append(
                    "flood regulation: lake volumes use the Qinghai-Tibet plateau regression C_l = e^6.636 A^0.678 T; "
                    "outside that region it is an assumption")
        if is_res.any():
            share = book.param("flood_regulation.reservoir_flood_share")
            volume[is_res] = share * capacity[is_res]
            formula[is_res] = f"reservoir: {share:g} * capacity_m3"
            notes.append(f"reservoirs C_r = {share:g} * total storage (Garze GEP 2010 [V])")
        if is_marsh.any():
            depth = book.param("flood_regulation.marsh_detention_depth")
            volume[is_marsh] = depth * area_km2[is_marsh] * 1e6
            formula[is_marsh] = f"marsh: {depth:g} m * A_m2"
            notes.append(f"marshes C_m = {depth:g} m * area (Garze GEP 2010 [V], unit read as m3)")
        # -- exact coverage, restricted to pixels with a valid land cover
        idx = CoverageIndex.build(gdf.geometry, grid, layer_name=key)
        lc_src = raster_source(cfg, "land_cover", cfg.inputs.land_cover, grid, "categorical")
        defined = np.zeros(65537, bool)
        defined[ctx.legend.codes] = True
        row_area = grid.row_pixel_area_m2
        n = len(gdf)
        valid_area = np.zeros(n)
        windows = []
        tile = 512
        for r0, r1, c0, c1 in grid.block_windows(tile):
            poly, row, col, frac = idx.entries(r0, r1, c0, c1)
            if poly.size == 0:
                continue
            lcv = lc_src.read(r0, r1, c0, c1)[row, col]
            valid = ((lcv >= 0) & defined[np.clip(lcv, 0, 65536)]).astype(np.uint8)
            valid_area += np.bincount(poly, weights=frac * row_area[r0 + row] * valid, minlength=n)
            windows.append((r0, r1, c0, c1, poly, row, col, frac, valid))
        covered = idx.covered_area_m2()
        share_m2 = np.where(valid_area > 0, volume / np.where(valid_area > 0, valid_area, 1.0), 0.0)
        placed = np.where(valid_area > 0, volume, 0.0)
        # -- cache raster on the reference grid
        from ..kernels.flood import spread_window

        state = cfg.output_dir / ".gep_state" / "flood_regulation"
        raster_path = state / "water_bodies_m3.tif"
        profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=1, dtype="float32",
                       crs=grid.crs, transform=grid.transform, tiled=True, blockxsize=tile, blockysize=tile,
                       compress="deflate", SPARSE_OK="TRUE")
        with atomic_path(raster_path, suffix=".tif", sidecars=(".aux.xml",)) as tmp:
            with rasterio.open(tmp, "w", **profile) as ds:
                for r0, r1, c0, c1, poly, row, col, frac, valid in windows:
                    arr = spread_window(poly, row, col, frac, valid, share_m2, row_area[r0:r1], (r1 - r0, c1 - c0))
                    ds.write(arr.astype(np.float32), 1, window=rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0))
        self.flags["water_raster"] = str(raster_path)
        # -- per-body table
        table = pd.DataFrame({
            wb.id_field: gdf[wb.id_field].to_numpy(), "type": types, "formula": formula,
            "area_km2": area_km2, "grid_area_km2": covered / 1e6, "valid_area_km2": valid_area / 1e6,
            "capacity_m3": capacity, "volume_m3": volume, "volume_in_run_m3": placed,
            "value_yuan": placed * book.prices["flood_regulation.reservoir_cost"].value})
        table_path = cfg.output_dir / "tables" / "flood_regulation_water_bodies.csv"
        atomic_to_csv(table, table_path)
        self.flags["water_table"] = str(table_path)
        # -- note
        summary = ", ".join(f"{int((types == t).sum())} {t}(s) {volume[types == t].sum():.6g} m3"
                            for t in WATER_TYPES if (types == t).any())
        part = (f"water bodies from {path} (sha256 {_sha(path)[:16]}): " + "; ".join(notes)
                + f"; {summary}; placed in this run {placed.sum():.6g} m3. Spreading rule (methods note 5.3): each "
                "body's volume goes to the pixels it covers in proportion to exact covered area over pixels with "
                "a valid land cover (pixel = C_body * frac * pixel_area / valid covered area), so a body's pixels "
                f"add up to C_body; per-body table {table_path}; spread volumes cached in {raster_path}")
        outside = np.flatnonzero(valid_area <= 0)
        if outside.size:
            part += (f"; NOT COUNTED (no valid land-cover pixel inside the grid): {ids[outside][:10].tolist()} "
                     f"({volume[outside].sum():.6g} m3)")
        partial = np.flatnonzero((valid_area > 0) & (valid_area < 0.999 * area_km2 * 1e6))
        if partial.size:
            part += ("; bodies only partly inside the grid / valid land cover, their whole volume placed on the "
                     "part inside: " + ", ".join(f"{ids[i]} ({100 * valid_area[i] / (area_km2[i] * 1e6):.1f}%)"
                                                for i in partial[:10]))
        if repaired:
            part += f"; invalid geometries repaired with make_valid: {repaired[:10]}"
        part += ("; NOTE: a pixel covered by a water body and by vegetation counts both parts (the water-balance "
                 "bound applies to the vegetation part only)") if self.flags["veg"] else ""
        self.flags["water_bodies_summary"] = {t: {"count": int((types == t).sum()),
                                                  "volume_m3": float(volume[types == t].sum())}
                                              for t in WATER_TYPES}
        return part

    # ------------------------------------------------------------------------------------
    def input_keys(self) -> list[str]:
        keys = ["lc"]
        if self.flags["veg"]:
            keys += ["precip", "et"]
        if self.flags["storm_raster"]:
            keys.append(STORM_KEY)
        if self.flags["water"]:
            keys.append(WATER_KEY)
        return keys

    def input_requests(self) -> dict[str, InputRequest]:
        req = {}
        if self.flags["storm_raster"]:
            req[STORM_KEY] = InputRequest("services.flood_regulation.storm_precip_raster", self.flags["storm_spec"])
        if self.flags["water"]:
            req[WATER_KEY] = InputRequest("services.flood_regulation.water_bodies",
                                          RasterInput(path=self.flags["water_raster"]))
        return req

    def compute(self, blocks, row_area_m2, nodata, shared):
        """Outputs of one block (pixel rules: :func:`gep_raster.kernels.flood.storm_retention`, then
        :func:`gep_raster.kernels.flood.water_balance_bound` on the vegetation part).

        ``blocks`` holds ``lc`` and, when configured, ``flood_storm_precip`` (storm rainfall depth, mm per
        event / storm season, float32), ``flood_water_bodies_m3`` (m3/a per pixel, float32) and, with the
        vegetation term, ``precip`` and ``et`` (mm/a, float32). ``shared`` must hold
        ``water_conservation_m3`` and ``et_mm`` when water conservation is enabled (ConfigError otherwise)."""
        from ..kernels.flood import storm_retention, water_balance_bound
        from ..kernels.lookup import apply_lut
        from ..kernels.valuation import linear_value

        lc = blocks["lc"]
        shape = lc.shape
        if self.flags["veg"]:
            coef = apply_lut(lc, self.luts["storm_coef"])
            veg = (apply_lut(lc, self.luts["veg"]) > 0.5).astype(np.uint8)
            p = (blocks[STORM_KEY] if self.flags["storm_raster"]
                 else np.full(shape, self.scalars["storm_p"], np.float32))
        else:
            coef = np.zeros(shape, np.float32)
            veg = np.zeros(shape, np.uint8)
            p = coef
        water = blocks[WATER_KEY] if self.flags["water"] else np.zeros(shape, np.float32)
        total, vpart, wpart = storm_retention(p, coef, veg, water, nodata, row_area_m2)
        out = {}
        if self.flags["veg"]:
            if self.flags["wc"]:
                missing = [k for k in ("water_conservation_m3", "et_mm") if k not in shared]
                if missing:
                    raise ConfigError("services.flood_regulation.vegetation_storm: the water-balance bound needs "
                                      f"{missing} of services.water_conservation computed before it in the same block")
                wc, et = shared["water_conservation_m3"], shared["et_mm"]
            else:
                wc = np.zeros(shape, np.float32)
                et = blocks["et"]
                if self.flags["et_is_et0"]:
                    et = (et * apply_lut(lc, self.luts["kc"])).astype(np.float32)
            total, vpart, cut = water_balance_bound(vpart, wpart, blocks["precip"], et, wc, row_area_m2)
            out["flood_regulation_capped_m3"] = cut
            px = (cut > 0).astype(np.float32)
            px[np.isnan(cut)] = np.nan
            out["flood_regulation_capped_px"] = px
        out.update({"flood_regulation_m3": total,
                    "flood_regulation_yuan": linear_value(total, [self.scalars["price"]]),
                    "flood_regulation_vegetation_m3": vpart,
                    "flood_regulation_water_bodies_m3": wpart})
        return out


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
