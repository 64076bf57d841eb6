"""Air purification (空气净化), capacity method.

Q_j = q_ij · A (t/a per pixel) with per-class uptake q_ij of pollutant j (legend columns
``<pollutant>_kg_ha``, kg/ha/a); no emissions cap. Value = Σ_j Q_j × treatment cost_j
(prices ``air_purification.<pollutant>_price``, Garzê GEP 2010).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ..config_base import ServiceConfigBase
from .base import BuildContext, OutputSpec, ServiceBase

POLLUTANTS = ("so2", "nox", "dust")


class Config(ServiceConfigBase):
    """``services.air_purification``: ``pollutants`` (subset of so2, nox, dust)."""

    pollutants: list[Literal["so2", "nox", "dust"]] = Field(list(POLLUTANTS), description=(
        "Pollutants computed, each from the legend column <pollutant>_kg_ha (kg/ha/a)."))


class Service(ServiceBase):
    """Air purification per pixel: outputs ``air_purification_<pollutant>_t`` (t/a per pixel) and
    ``air_purification_yuan`` (yuan/a per pixel). Capacity method (module docstring)."""

    name = "air_purification"
    label = "Air purification"

    @staticmethod
    def legend_columns(cfg) -> dict[str, tuple]:
        limits = {"so2": 5000.0, "nox": 5000.0, "dust": 200000.0}
        return {f"{p}_kg_ha": (0.0, limits[p], "kg/ha/a", f"{p.upper()} uptake capacity")
                for p in cfg.services.air_purification.pollutants}

    def configure(self, ctx: BuildContext) -> None:
        pols = list(ctx.cfg.services.air_purification.pollutants)
        self.flags["pollutants"] = pols
        for pol in pols:
            self.luts[pol] = ctx.legend.lut(f"{pol}_kg_ha")
            self.scalars[pol] = self.value_term(f"air_purification_{pol}_t", {f"air_purification.{pol}_price": 1.0},
                                                 ctx.book)
            self.outputs.append(OutputSpec(f"air_purification_{pol}_t", self.name, "physical", "t/a per pixel",
                                           f"Air purification: {pol.upper()} uptake (capacity method), t per pixel per year"))
        self.outputs.append(OutputSpec("air_purification_yuan", self.name, "value", "yuan/a per pixel",
                                       "Value of air purification (treatment cost per pollutant), yuan per pixel per year"))
        self.note = ("Capacity method Q_j = q_ij * A_i (per-class uptake, legend columns <pollutant>_kg_ha), no "
                     "emissions cap; value = sum_j Q_j * treatment cost_j (Garze GEP prices)")

    def compute(self, blocks, row_area_m2, nodata, shared):
        from ..kernels.amount import rate_to_amount
        from ..kernels.lookup import apply_lut
        from ..kernels.valuation import linear_value

        out, qs, prices = {}, [], []
        for pol in self.flags["pollutants"]:
            q, _ = rate_to_amount(apply_lut(blocks["lc"], self.luts[pol]), 1e-3, row_area_m2)  # kg -> t
            out[f"air_purification_{pol}_t"] = q
            qs.append(q)
            prices.append(self.scalars[pol])
        out["air_purification_yuan"] = linear_value(np.stack(qs), prices)
        return out
