"""Carbon sequestration (固碳): t CO2/a per pixel from one carbon flux, valued at a CO2 price.

Methods (``inputs.carbon.method``): ``nep`` (NEP × 44/12, net flux), ``npp`` (NPP × 1.63 t CO2/t
dry matter, LY/T photosynthesis stoichiometry; a gross flux, flagged), ``rates`` (legend column
``carbon_tco2_ha``), ``stock_change`` ((stock_alternate − stock_baseline)/years × 44/12 with the
InVEST Carbon pool table). Value = Q × CO2 price (``carbon_sequestration.co2_price``).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ..config_base import ServiceConfigBase
from ..errors import ConfigError, TableError
from .base import BuildContext, OutputSpec, ServiceBase


class Config(ServiceConfigBase):
    """``services.carbon_sequestration``: ``negative_values`` keep (net emission, default) or clip to 0."""

    negative_values: Literal["clip", "keep"] = Field("keep", description=(
        "keep: negative fluxes kept (net emission); clip: set to 0."))


class Service(ServiceBase):
    """Carbon sequestration per pixel: outputs ``carbon_sequestration_tco2`` (t CO2/a per pixel),
    ``carbon_sequestration_yuan`` and the diagnostic ``carbon_negative_tco2``. The method comes from
    ``inputs.carbon.method`` (module docstring). Raises ConfigError/TableError naming the key or file."""

    name = "carbon_sequestration"
    label = "Carbon sequestration"

    @staticmethod
    def legend_columns(cfg) -> dict[str, tuple]:
        if cfg.inputs.carbon.method == "rates":
            return {"carbon_tco2_ha": (-100.0, 100.0, "t CO2/ha/a", "net CO2 sequestration rate")}
        return {}

    def configure(self, ctx: BuildContext) -> None:
        c = ctx.cfg.inputs.carbon
        book = ctx.book
        self.flags["method"] = c.method
        self.flags["clip"] = ctx.cfg.services.carbon_sequestration.negative_values == "clip"
        if c.method == "rates":
            self.luts["rate"] = ctx.legend.lut("carbon_tco2_ha")
            self.scalars["factor"] = 1.0
            how = "per-class net sequestration rates (legend column carbon_tco2_ha, t CO2/ha/a)"
        elif c.method == "nep":
            f = {"t_c_per_ha": 1.0, "g_c_per_m2": 0.01}.get(c.unit)
            if f is None:
                raise ConfigError(f"inputs.carbon.unit: '{c.unit}' is not a carbon unit for NEP "
                                  "(use t_c_per_ha or g_c_per_m2)")
            self.scalars["factor"] = f * book.param("carbon_sequestration.co2_per_c")
            how = f"NEP raster ({c.unit}) x 44/12 (net flux)"
        elif c.method == "npp":
            cdm = book.param("carbon_sequestration.c_per_dry_matter")
            dm = {"t_dm_per_ha": 1.0, "t_c_per_ha": 1.0 / cdm, "g_c_per_m2": 0.01 / cdm}[c.unit]
            self.scalars["factor"] = dm * book.param("carbon_sequestration.co2_per_dry_matter")
            how = (f"NPP raster ({c.unit}) x 1.63 t CO2/t dry matter (LY/T stoichiometry); NOTE: NPP is a gross "
                   "plant flux, heterotrophic respiration is not subtracted")
        else:
            from ..tables import _read_csv

            path = ctx.cfg.resolve(c.pools_table)
            pools = _read_csv(path, "inputs.carbon.pools_table")
            missing = [k for k in [c.code_column, *c.pool_columns] if k not in pools.columns]
            if missing:
                raise TableError(f"inputs.carbon.pools_table {path}: column(s) {missing} missing "
                                 f"(columns: {list(pools.columns)})")
            codes = pools[c.code_column].astype(int).to_numpy()
            stock = pools[c.pool_columns].astype(float).sum(axis=1).to_numpy()
            lut = np.full(int(codes.max()) + 2, np.nan, np.float32)
            lut[codes] = stock
            self.luts["stock"] = lut
            self.scalars["factor"] = book.param("carbon_sequestration.co2_per_c") / c.years
            how = (f"carbon-stock change between land cover and inputs.carbon.alternate_land_cover (pools "
                   f"{c.pool_columns}, Mg C/ha) / {c.years} years x 44/12 (InVEST Carbon pools)")
        self.scalars["price"] = self.value_term("carbon_sequestration_tco2", {"carbon_sequestration.co2_price": 1.0}, book)
        self.note = (f"Carbon sequestration in t CO2/a from {how}; negative values "
                     + ("clipped to 0" if self.flags["clip"] else "kept (net emission)"))
        self.outputs = [
            OutputSpec("carbon_sequestration_tco2", self.name, "physical", "t CO2/a per pixel",
                       f"Carbon sequestration from {c.method}, t CO2 per pixel per year"),
            OutputSpec("carbon_sequestration_yuan", self.name, "value", "yuan/a per pixel",
                       "Value of carbon sequestration (CO2 price), yuan per pixel per year"),
            OutputSpec("carbon_negative_tco2", self.name, "diagnostic", "t CO2/a per pixel",
                       "Magnitude of negative carbon sequestration (net emission)", write=False),
        ]

    def input_keys(self) -> list[str]:
        m = self.flags["method"]
        return ["lc"] + (["carbon_flux"] if m in ("nep", "npp") else ["lc_alt"] if m == "stock_change" else [])

    def compute(self, blocks, row_area_m2, nodata, shared):
        from ..kernels.amount import rate_to_amount
        from ..kernels.lookup import apply_lut
        from ..kernels.valuation import linear_value

        lc = blocks["lc"]
        m = self.flags["method"]
        if m == "rates":
            flux = apply_lut(lc, self.luts["rate"])
        elif m in ("nep", "npp"):
            flux = np.where(nodata, np.nan, blocks["carbon_flux"]).astype(np.float32)
        else:
            flux = (apply_lut(blocks["lc_alt"], self.luts["stock"]) - apply_lut(lc, self.luts["stock"])).astype(np.float32)
        flux[nodata] = np.nan
        q, neg = rate_to_amount(flux, self.scalars["factor"], row_area_m2, clip=self.flags["clip"])
        return {"carbon_sequestration_tco2": q,
                "carbon_sequestration_yuan": linear_value(q, [self.scalars["price"]]),
                "carbon_negative_tco2": neg}
