"""Water conservation (水源涵养): water balance (default) or the InVEST Annual Water Yield model.

``services.water_conservation.method``:

``water_balance`` (default)
    Q = (P − α·P − ET)·A·10⁻³ (m3/a per pixel): Garzê GEP (白玛卓嘎 et al. 2017, 生态学报 37(19),
    eq. 3), HJ 1173-2021 A.1 family; R = α·P with ecosystem runoff coefficients α (legend column
    ``runoff_coef``).
``invest_awy``
    InVEST Annual Water Yield (user guide, "Annual Water Yield" → "Water Yield Model"): Budyko curve
    of Fu (1981) / Zhang et al. (2004), AET/P = 1 + PET/P − [1 + (PET/P)^ω]^(1/ω), PET = Kc·ET0,
    ω = Z·AWC/P + 1.25 capped at 5, AWC = min(root-restricting-layer depth, root depth)·PAWC;
    AET = min(Kc·ET0, P) on non-vegetated classes (legend ``lulc_veg`` = 0); Y = (1 − AET/P)·P, Q = Y·A·10⁻³.
    Needs ``inputs.et0``, legend columns ``kc``, ``root_depth`` (mm), ``lulc_veg``, the depth to the
    root-restricting layer (raster ``depth_to_root_restricting_layer`` or constant ``soil_depth_mm``),
    PAWC (raster ``pawc`` or constant ``pawc_fraction``) and ``seasonality_z`` (Z, required: no default).

Value = Q × reservoir construction cost (price ``water_conservation.reservoir_cost``), for both methods;
the output keys are the same, so the accounts do not change shape.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..config_base import RasterInput, ServiceConfigBase
from ..errors import TableError
from .base import BuildContext, InputRequest, OutputSpec, ServiceBase

_AWY_ONLY = ("seasonality_z", "depth_to_root_restricting_layer", "pawc", "soil_depth_mm", "pawc_fraction")


class Config(ServiceConfigBase):
    method: Literal["water_balance", "invest_awy"] = Field("water_balance", description=(
        "water_balance: Q = (P - alpha*P - ET) x A with legend runoff_coef alpha (Garze GEP); invest_awy: InVEST "
        "Annual Water Yield (Budyko curve; needs inputs.et0, seasonality_z, the soil depth, PAWC and legend kc, "
        "root_depth, lulc_veg)."))
    negative_values: Literal["clip", "keep"] = Field("clip", description=(
        "clip: negative balances (ET > P - R) set to 0, the deficit reported in the manifest; keep: kept."))
    # --- invest_awy only ---------------------------------------------------------------
    seasonality_z: float | None = Field(None, gt=0, description=(
        "invest_awy only (required there): Z of omega = Z x AWC/P + 1.25; no default, calibrate it or take it from a "
        "study of the region (InVEST: typically 1-30)."))  # Z of omega = Z*AWC/P + 1.25 (InVEST: typically 1-30)
    depth_to_root_restricting_layer: RasterInput | None = Field(None, description=(
        "invest_awy: raster of the depth to the root-restricting layer; exactly one of it and soil_depth_mm."),
        json_schema_extra={"unit": "mm"})  # mm
    pawc: RasterInput | None = Field(None, description=(
        "invest_awy: raster of the plant available water content (fraction 0-1); exactly one of it and "
        "pawc_fraction."))  # plant available water content, fraction 0-1
    soil_depth_mm: float | None = Field(None, ge=0, description=(
        "invest_awy: constant depth to the root-restricting layer instead of the raster (an assumption)."),
        json_schema_extra={"unit": "mm"})  # constant instead of the raster (an ASSUMPTION)
    pawc_fraction: float | None = Field(None, ge=0, le=1, description=(
        "invest_awy: constant plant available water content (fraction 0-1) instead of the raster (an assumption)."
        ))  # constant instead of the raster (an ASSUMPTION)

    @model_validator(mode="after")
    def _method_keys(self):
        if self.method == "water_balance":
            given = [k for k in _AWY_ONLY if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{', '.join(given)}: only used by method 'invest_awy' (method is 'water_balance')")
            return self
        problems = []
        if self.seasonality_z is None:
            problems.append("method 'invest_awy' needs seasonality_z (the Z of omega = Z*AWC/P + 1.25; no default: "
                            "calibrate it or take it from a study of the region, InVEST suggests 1-30)")
        for raster, const, what in (("depth_to_root_restricting_layer", "soil_depth_mm",
                                     "the depth to the root-restricting layer (mm)"),
                                    ("pawc", "pawc_fraction", "the plant available water content (fraction)")):
            n = (getattr(self, raster) is not None) + (getattr(self, const) is not None)
            if n != 1:
                problems.append(f"method 'invest_awy' needs exactly one of {raster} (raster) or {const} "
                                f"(constant) for {what}; {'both' if n == 2 else 'neither'} given")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Service(ServiceBase):
    """Water conservation per pixel: outputs ``water_conservation_m3`` (m3/a per pixel), ``water_conservation_yuan``
    (yuan/a per pixel), the diagnostic ``water_deficit_m3`` and the intermediates ``precipitation_mm``, ``et_mm``.

    Methods and sources: module docstring. Raises ConfigError/TableError from :meth:`configure` naming the key."""

    name = "water_conservation"
    label = "Water conservation"

    @staticmethod
    def check_config(cfg) -> list[str]:
        out = []
        c = cfg.services.water_conservation
        if cfg.inputs.precipitation is None:
            out.append("services.water_conservation is enabled but inputs.precipitation is missing")
        if c.method == "invest_awy":
            if cfg.inputs.et0 is None:
                out.append("services.water_conservation.method 'invest_awy' needs inputs.et0 (reference ET0, mm/a; "
                           "PET = Kc * ET0)" + ("; inputs.et (actual ET) is not used by this method"
                                                if cfg.inputs.et is not None else ""))
        elif cfg.inputs.et is None and cfg.inputs.et0 is None:
            out.append("services.water_conservation is enabled but neither inputs.et nor inputs.et0 is given")
        return out

    @staticmethod
    def legend_columns(cfg) -> dict[str, tuple]:
        if cfg.services.water_conservation.method == "invest_awy":
            return {
                "kc": (0.0, 2.0, "-", "crop coefficient: PET = Kc * ET0 (InVEST AWY biophysical table 'kc')"),
                "root_depth": (-np.inf, np.inf, "mm", "root depth (InVEST AWY 'root_depth'; must be >= 0 on classes "
                                                      "with lulc_veg = 1, not used on the others, e.g. -1)"),
                "lulc_veg": (0.0, 1.0, "0/1", "1 = vegetated class (Budyko AET), 0 = AET = min(Kc*ET0, P) "
                                              "(InVEST AWY 'LULC_veg')"),
            }
        cols = {"runoff_coef": (0.0, 1.0, "fraction", "mean surface-runoff coefficient alpha (R = alpha * P)")}
        if cfg.inputs.et0 is not None:
            cols["kc"] = (0.0, 2.0, "-", "crop coefficient: ET = Kc * ET0")
        return cols

    # ----------------------------------------------------------------------------------
    def configure(self, ctx: BuildContext) -> None:
        c = ctx.cfg.services.water_conservation
        self.flags["method"] = c.method
        self.flags["clip"] = c.negative_values == "clip"
        self.scalars["price"] = self.value_term("water_conservation_m3", {"water_conservation.reservoir_cost": 1.0},
                                                 ctx.book)
        self.assumptions: list[str] = []
        self.requests: dict[str, InputRequest] = {}
        if c.method == "invest_awy":
            self._configure_awy(ctx, c)
        else:
            self._configure_water_balance(ctx, c)
        self.outputs = [
            OutputSpec("water_conservation_m3", self.name, "physical", "m3/a per pixel",
                       ("Water conservation as InVEST annual water yield Y = (1 - AET/P) * P"
                        if c.method == "invest_awy" else "Water conservation (water balance P - R - ET)")
                       + ", m3 per pixel per year"),
            OutputSpec("water_conservation_yuan", self.name, "value", "yuan/a per pixel",
                       "Value of water conservation (reservoir construction cost), yuan per pixel per year"),
            OutputSpec("water_deficit_m3", self.name, "diagnostic", "m3/a per pixel",
                       "Volume of negative water yield (0 up to rounding: AET <= P)" if c.method == "invest_awy"
                       else "Volume of negative water balance (ET > P - R)", write=False),
            OutputSpec("precipitation_mm", self.name, "intermediate", "mm/a",
                       "Annual precipitation P on the reference grid"),
            OutputSpec("et_mm", self.name, "intermediate", "mm/a",
                       "Actual evapotranspiration AET of the InVEST Annual Water Yield model (Budyko/Fu-Zhang)"
                       if c.method == "invest_awy"
                       else "Evapotranspiration ET used in the water balance (actual ET or Kc*ET0)"),
        ]

    def _configure_water_balance(self, ctx: BuildContext, c: Config) -> None:
        self.luts["runoff_coef"] = ctx.legend.lut("runoff_coef")
        self.flags["et_is_et0"] = ctx.et_is_et0
        if ctx.et_is_et0:
            self.luts["kc"] = ctx.legend.lut("kc")
        self.note = ("Water balance Q = (P - alpha*P - ET) * A (Garze GEP eq. 3; HJ 1173-2021 A.1 family); "
                     + ("ET = Kc * ET0 (Kc per class from the legend); " if ctx.et_is_et0
                        else "ET = actual ET raster; ")
                     + ("negative balances clipped to 0 (deficit reported in the manifest)" if self.flags["clip"]
                        else "negative balances kept"))

    def _configure_awy(self, ctx: BuildContext, c: Config) -> None:
        table = ctx.legend.table
        veg = table["lulc_veg"].to_numpy(dtype=float)
        bad = table.index[(veg != 0.0) & (veg != 1.0)].tolist()
        if bad:
            raise TableError(f"legend {ctx.legend.label}: column 'lulc_veg' must be 0 or 1 (InVEST LULC_veg); class "
                             f"code(s) {bad} have {veg[(veg != 0.0) & (veg != 1.0)].tolist()}")
        root = table["root_depth"].to_numpy(dtype=float)
        bad = table.index[(veg == 1.0) & ~(np.isfinite(root) & (root >= 0.0))].tolist()
        if bad:
            raise TableError(f"legend {ctx.legend.label}: column 'root_depth' (mm) must be a number >= 0 on vegetated "
                             f"classes (lulc_veg = 1); class code(s) {bad} have "
                             f"{root[(veg == 1.0) & ~(np.isfinite(root) & (root >= 0.0))].tolist()}")
        self.luts["kc"] = ctx.legend.lut("kc")
        self.luts["lulc_veg"] = ctx.legend.lut("lulc_veg")
        # InVEST puts root depth 1 on non-vegetated classes ("this value will not end up being used")
        rd = ctx.legend.lut("root_depth")
        rd[ctx.legend.codes[veg == 0.0]] = 1.0
        self.luts["root_depth"] = rd
        self.scalars["z"] = float(c.seasonality_z)
        self.flags["soil_raster"] = c.depth_to_root_restricting_layer is not None
        self.flags["pawc_raster"] = c.pawc is not None
        key = "services.water_conservation"
        if self.flags["soil_raster"]:
            self.requests["wc_root_restricting_depth"] = InputRequest(f"{key}.depth_to_root_restricting_layer",
                                                                      c.depth_to_root_restricting_layer)
        if self.flags["pawc_raster"]:
            self.requests["wc_pawc"] = InputRequest(f"{key}.pawc", c.pawc)
        if not self.flags["soil_raster"]:
            self.scalars["soil_depth_mm"] = float(c.soil_depth_mm)
            self.assumptions.append(f"{key}.soil_depth_mm = {c.soil_depth_mm:g} mm: one depth to the root-restricting "
                                    "layer for the whole run instead of a soil-depth raster (ASSUMPTION)")
        if not self.flags["pawc_raster"]:
            self.scalars["pawc_fraction"] = float(c.pawc_fraction)
            self.assumptions.append(f"{key}.pawc_fraction = {c.pawc_fraction:g}: one plant available water content "
                                    "for the whole run instead of a PAWC raster (ASSUMPTION)")
        self.note = (
            "InVEST Annual Water Yield (user guide 'Annual Water Yield', Water Yield Model): Y = (1 - AET/P) * P, "
            "vegetated classes (lulc_veg = 1) AET/P = min(PET/P, 1 + PET/P - (1 + (PET/P)^w)^(1/w)) (Fu 1981; Zhang "
            "et al. 2004), PET = Kc * ET0, w = min(Z * AWC / P + 1.25, 5) (Donohue et al. 2012), AWC = min(depth to "
            "root-restricting layer, root depth) * PAWC; other classes AET = min(Kc * ET0, P); P = 0 is nodata as in "
            f"InVEST; Z = {c.seasonality_z:g} (services.water_conservation.seasonality_z, user-supplied); "
            + ("depth to root-restricting layer from raster; " if self.flags["soil_raster"] else
               f"depth to root-restricting layer = constant {c.soil_depth_mm:g} mm (ASSUMPTION); ")
            + ("PAWC from raster; " if self.flags["pawc_raster"] else
               f"PAWC = constant {c.pawc_fraction:g} (ASSUMPTION); ")
            + "Q = Y * A; value = Q * reservoir cost")

    # ----------------------------------------------------------------------------------
    def input_keys(self) -> list[str]:
        keys = ["lc", "precip", "et"]
        if self.flags["method"] == "invest_awy":
            keys += list(self.requests)
        return keys

    def input_requests(self) -> dict[str, InputRequest]:
        """invest_awy: the soil rasters ``wc_root_restricting_depth`` (mm) and ``wc_pawc`` (fraction), when given."""
        return dict(self.requests)

    # ----------------------------------------------------------------------------------
    def compute(self, blocks, row_area_m2, nodata, shared):
        from ..kernels.valuation import linear_value

        if self.flags["method"] == "invest_awy":
            q, deficit, et = self._compute_awy(blocks, row_area_m2)
        else:
            q, deficit, et = self._compute_water_balance(blocks, row_area_m2)
        return {
            "water_conservation_m3": q,
            "water_conservation_yuan": linear_value(q, [self.scalars["price"]]),
            "water_deficit_m3": deficit,
            "precipitation_mm": np.where(nodata, np.nan, blocks["precip"]).astype(np.float32),
            "et_mm": np.where(nodata, np.nan, et).astype(np.float32),
        }

    def _compute_water_balance(self, blocks, row_area_m2):
        from ..kernels.lookup import apply_lut
        from ..kernels.water import water_conservation

        lc = blocks["lc"]
        alpha = apply_lut(lc, self.luts["runoff_coef"])
        kc = apply_lut(lc, self.luts["kc"]) if self.flags["et_is_et0"] else np.ones(lc.shape, np.float32)
        q, deficit = water_conservation(blocks["precip"], blocks["et"], kc, alpha, row_area_m2,
                                        clip=self.flags["clip"])
        return q, deficit, (blocks["et"] * kc).astype(np.float32)

    def _compute_awy(self, blocks, row_area_m2):
        from ..kernels.lookup import apply_lut
        from ..kernels.water import invest_annual_water_yield

        lc = blocks["lc"]
        soil = (blocks["wc_root_restricting_depth"] if self.flags["soil_raster"]
                else np.full(lc.shape, self.scalars["soil_depth_mm"], np.float32))
        pawc = (blocks["wc_pawc"] if self.flags["pawc_raster"]
                else np.full(lc.shape, self.scalars["pawc_fraction"], np.float32))
        return invest_annual_water_yield(
            blocks["precip"], blocks["et"], apply_lut(lc, self.luts["kc"]), apply_lut(lc, self.luts["root_depth"]),
            soil, pawc, apply_lut(lc, self.luts["lulc_veg"]), self.scalars["z"], row_area_m2, clip=self.flags["clip"])
