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
(:class:`gep_raster.accounts.zonal.CoverageIndex`), over the pixels with a valid land cover: pixel value =
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
from ..errors import ConfigError
from .base import BuildContext, InputRequest, OutputSpec, ServiceBase
from .water_bodies import WATER_TYPES

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

    path: str = Field(description="Polygon file of the lakes, reservoirs and marshes (any CRS).")
    layer: str | None = Field(None, description="Layer name inside path (a GeoPackage with several layers).")
    id_field: str = Field(description="Attribute holding the unique id of each water body.")
    type_field: str = Field(description=(
        "Attribute holding the type: lake, reservoir or marsh (case-insensitive), or values mapped by type_map."))
    type_map: dict[str, Literal["lake", "reservoir", "marsh"]] = Field({}, description=(
        "Value of type_field -> lake, reservoir or marsh (e.g. {湖泊: lake, 水库: reservoir, 沼泽: marsh})."))
    capacity_field: str | None = Field(None, description=(
        "Attribute holding the total storage of reservoirs, in capacity_unit; required when the layer holds "
        "reservoirs."))
    capacity_unit: Literal["m3", "1e4_m3"] = Field("m3", description=(
        "Unit of capacity_field: m3 or 1e4_m3 (10^4 m3)."))
    lake_coef_a: float | None = Field(None, gt=0, description=(
        "a of the lake regression C_l = a x A_km2^b x T (10^4 m3/a); null: parameter flood_regulation.lake_coef_a."))
    lake_exponent_b: float | None = Field(None, gt=0, description=(
        "b of the lake regression; null: parameter flood_regulation.lake_exponent_b."))
    lake_renewals_T: float | None = Field(None, gt=0, description=(
        "T of the lake regression (renewals per year); null: parameter flood_regulation.lake_renewals."))


class Config(ServiceConfigBase):
    """``services.flood_regulation`` (off by default: the registry lists it outside ``DEFAULT_ON``).

    ``water_bodies``: lakes, reservoirs, marshes (the default and Garzê GEP 2010 scope).
    ``vegetation_storm`` (default false): opt in to vegetation storm retention [U]; it then needs exactly one
    of ``storm_precip_mm`` (constant storm rainfall depth, mm per storm event or per storm season) or
    ``storm_precip_raster`` (the same quantity per pixel), and uses ``vegetation_ecosystems``.

    Raises (pydantic ValueError, reported by ``load_config`` as ConfigError naming
    ``services.flood_regulation.<key>``): a storm key given without ``vegetation_storm: true``; both or
    neither storm input with it; an empty ``vegetation_ecosystems``."""

    vegetation_storm: bool = Field(False, description=(
        "Opt in to vegetation storm retention (formula [U]), bounded per pixel by the water balance P - ET - "
        "water conservation; needs exactly one of storm_precip_mm and storm_precip_raster."))
    storm_precip_mm: float | None = Field(None, gt=0, le=10000, description=(
        "Constant storm rainfall depth, per storm event or per storm season (not a monthly or annual total); "
        "only with vegetation_storm: true."), json_schema_extra={"unit": "mm"})
    storm_precip_raster: RasterInput | None = Field(None, description=(
        "Storm rainfall depth per pixel (as storm_precip_mm); only with vegetation_storm: true."),
        json_schema_extra={"unit": "mm"})
    vegetation_ecosystems: list[Literal[ECOSYSTEMS]] = Field(["forest", "shrub", "grassland"], description=(
        "Ecosystem types of vegetation storm retention (not empty); only with vegetation_storm: true."))
    water_bodies: WaterBodiesConfig | None = Field(None, description=(
        "Lake, reservoir and marsh polygons (the default term); null: no water-body term."))

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
        self.scalars["price"] = self.value_term("flood_regulation_m3", {"flood_regulation.reservoir_cost": 1.0}, ctx.book)
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
        """Per-body volumes (:mod:`.water_bodies`), spread to the grid and written as the cache raster, the
        per-body table; returns the note part."""
        import pandas as pd

        from ..accounts.layers import polygon_area_km2
        from ..outputs.io_write import atomic_to_csv
        from ..grid.run_inputs import reference_grid
        from .water_bodies import body_volumes, placement_note, read_water_bodies, reservoir_capacity, spread_to_grid

        cfg, book = ctx.cfg, ctx.book
        wb = cfg.services.flood_regulation.water_bodies
        key = "services.flood_regulation.water_bodies"
        path = cfg.resolve(wb.path)
        self.files.append(path)
        grid = reference_grid(cfg)
        gdf, ids, types, repaired = read_water_bodies(wb, key, path, grid)
        capacity = reservoir_capacity(gdf, wb, key, path, ids, types)
        area_km2 = polygon_area_km2(gdf, grid)
        volume, formula, notes, plateau_default = body_volumes(wb, book, types, capacity, area_km2)
        if plateau_default:
            self.flags["assumptions"].append(
                "flood regulation: lake volumes use the Qinghai-Tibet plateau regression C_l = e^6.636 A^0.678 T; "
                "outside that region it is an assumption")
        raster_path = cfg.output_dir / ".gep_state" / "flood_regulation" / "water_bodies_m3.tif"
        valid_area, covered, placed = spread_to_grid(cfg, ctx.legend, gdf, grid, key, volume, raster_path)
        self.flags["water_raster"] = str(raster_path)
        table = pd.DataFrame({
            wb.id_field: gdf[wb.id_field].to_numpy(), "type": types, "formula": formula,
            "area_km2": area_km2, "grid_area_km2": covered / 1e6, "valid_area_km2": valid_area / 1e6,
            "capacity_m3": capacity, "volume_m3": volume, "volume_in_run_m3": placed,
            "value_yuan": placed * book.prices["flood_regulation.reservoir_cost"].value})
        table_path = cfg.output_dir / "tables" / "flood_regulation_water_bodies.csv"
        atomic_to_csv(table, table_path)
        self.flags["water_table"] = str(table_path)
        summary = ", ".join(f"{int((types == t).sum())} {t}(s) {volume[types == t].sum():.6g} m3"
                            for t in WATER_TYPES if (types == t).any())
        part = (f"water bodies from {path} (sha256 {_sha(path)[:16]}): " + "; ".join(notes)
                + f"; {summary}; placed in this run {placed.sum():.6g} m3. Spreading rule (methods note 5.3): each "
                "body's volume goes to the pixels it covers in proportion to exact covered area over pixels with "
                "a valid land cover (pixel = C_body * frac * pixel_area / valid covered area), so a body's pixels "
                f"add up to C_body; per-body table {table_path}; spread volumes cached in {raster_path}")
        part += placement_note(ids, volume, valid_area, area_km2, repaired)
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
    from ..grid.remote import RemotePath, remote_record

    if isinstance(path, RemotePath):  # the bytes as the server sends them (the manifest records the same)
        return remote_record(path)["sha256"] or "not taken (remote)"
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
