"""Water conservation (水源涵养) by the water-balance method.

Q = (P − α·P − ET)·A·10⁻³ (m3/a per pixel): Garzê GEP (白玛卓嘎 et al. 2017, 生态学报 37(19),
eq. 3), HJ 1173-2021 A.1 family; R = α·P with ecosystem runoff coefficients α (legend column
``runoff_coef``). Value = Q × reservoir construction cost (price ``water_conservation.reservoir_cost``).
"""
from __future__ import annotations

from typing import Literal

import numpy as np

from ..config_base import ServiceConfigBase
from .base import BuildContext, OutputSpec, ServiceBase


class Config(ServiceConfigBase):
    negative_values: Literal["clip", "keep"] = "clip"


class Service(ServiceBase):
    name = "water_conservation"
    label = "Water conservation"

    @staticmethod
    def check_config(cfg) -> list[str]:
        out = []
        if cfg.inputs.precipitation is None:
            out.append("services.water_conservation is enabled but inputs.precipitation is missing")
        if cfg.inputs.et is None and cfg.inputs.et0 is None:
            out.append("services.water_conservation is enabled but neither inputs.et nor inputs.et0 is given")
        return out

    @staticmethod
    def legend_columns(cfg) -> dict[str, tuple]:
        cols = {"runoff_coef": (0.0, 1.0, "fraction", "mean surface-runoff coefficient alpha (R = alpha * P)")}
        if cfg.inputs.et0 is not None:
            cols["kc"] = (0.0, 2.0, "-", "crop coefficient: ET = Kc * ET0")
        return cols

    def configure(self, ctx: BuildContext) -> None:
        c = ctx.cfg.services.water_conservation
        self.luts["runoff_coef"] = ctx.legend.lut("runoff_coef")
        self.flags["et_is_et0"] = ctx.et_is_et0
        if ctx.et_is_et0:
            self.luts["kc"] = ctx.legend.lut("kc")
        self.flags["clip"] = c.negative_values == "clip"
        self.scalars["price"] = ctx.book.price("water_conservation.reservoir_cost")
        self.note = ("Water balance Q = (P - alpha*P - ET) * A (Garze GEP eq. 3; HJ 1173-2021 A.1 family); "
                     + ("ET = Kc * ET0 (Kc per class from the legend); " if ctx.et_is_et0 else "ET = actual ET raster; ")
                     + ("negative balances clipped to 0 (deficit reported in the manifest)" if self.flags["clip"]
                        else "negative balances kept"))
        self.outputs = [
            OutputSpec("water_conservation_m3", self.name, "physical", "m3/a per pixel",
                       "Water conservation (water balance P - R - ET), m3 per pixel per year"),
            OutputSpec("water_conservation_yuan", self.name, "value", "yuan/a per pixel",
                       "Value of water conservation (reservoir construction cost), yuan per pixel per year"),
            OutputSpec("water_deficit_m3", self.name, "diagnostic", "m3/a per pixel",
                       "Volume of negative water balance (ET > P - R)", write=False),
            OutputSpec("precipitation_mm", self.name, "intermediate", "mm/a",
                       "Annual precipitation P on the reference grid"),
            OutputSpec("et_mm", self.name, "intermediate", "mm/a",
                       "Evapotranspiration ET used in the water balance (actual ET or Kc*ET0)"),
        ]

    def input_keys(self) -> list[str]:
        return ["lc", "precip", "et"]

    def compute(self, blocks, row_area_m2, nodata, shared):
        from ..kernels.lookup import apply_lut
        from ..kernels.valuation import linear_value
        from ..kernels.water import water_conservation

        lc = blocks["lc"]
        alpha = apply_lut(lc, self.luts["runoff_coef"])
        kc = apply_lut(lc, self.luts["kc"]) if self.flags["et_is_et0"] else np.ones(lc.shape, np.float32)
        q, deficit = water_conservation(blocks["precip"], blocks["et"], kc, alpha, row_area_m2,
                                        clip=self.flags["clip"])
        et = (blocks["et"] * kc).astype(np.float32)
        return {
            "water_conservation_m3": q,
            "water_conservation_yuan": linear_value(q, [self.scalars["price"]]),
            "water_deficit_m3": deficit,
            "precipitation_mm": np.where(nodata, np.nan, blocks["precip"]).astype(np.float32),
            "et_mm": np.where(nodata, np.nan, et).astype(np.float32),
        }
