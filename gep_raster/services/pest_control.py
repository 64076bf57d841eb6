"""Pest control (病虫害控制), control-cost method on the area of natural forest and grassland.

Garzê GEP 2010 (白玛卓嘎, 肖燚, 欧阳志云, 王莉雁 2017, 生态学报 37(19): 6302-6312, doi:10.5846/stxb201607011362)
§2.4.9 and table 3 [V]: the value of the natural control of pests and diseases is the area of natural forest and
natural grassland times the cost of controlling pests by hand (防治费用法): 158万 hm² of natural forest × 375 元/hm²
= 5.93亿 元, 711.13万 hm² of natural grassland × 112.5 元/hm² = 8.00亿 元 (13.93亿 元 in all, 2010 prices).

Per pixel: ``A_forest = s_f(class) × A_pixel`` and ``A_grassland = s_g(class) × A_pixel`` (ha), where
``s(class)`` is the share of the class's area that is natural forest / natural grassland: the legend column
``natural_share`` (0..1) when the legend has it, else 1 for every class of ``forest_ecosystems`` /
``grassland_ecosystems`` (recorded as an assumption: plantations are then counted as natural). Value =
``A_forest × pest_control.forest_price + A_grassland × pest_control.grassland_price`` (yuan/a).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..config_base import ECOSYSTEMS, ServiceConfigBase
from ..errors import TableError
from .base import BuildContext, OutputSpec, ServiceBase

#: one of the ecosystem types of the legend (gep_raster.config_base.ECOSYSTEMS)
Ecosystem = Literal[ECOSYSTEMS]  # type: ignore[valid-type]

#: default legend column of the natural share of a class (0..1)
NATURAL_SHARE_COLUMN = "natural_share"


class Config(ServiceConfigBase):
    """``services.pest_control``: which ecosystem types count as forest and as grassland, and the legend column
    of the natural share of each class."""

    forest_ecosystems: list[Ecosystem] = Field(["forest"], description=(
        "Ecosystem types whose natural area is valued at pest_control.forest_price (Garze: natural forest)."))
    grassland_ecosystems: list[Ecosystem] = Field(["grassland"], description=(
        "Ecosystem types whose natural area is valued at pest_control.grassland_price (Garze: natural "
        "grassland); disjoint from forest_ecosystems."))
    natural_share_column: str = Field(NATURAL_SHARE_COLUMN, description=(
        "Legend column with the share (0..1) of each class's area that is natural (not planted); when the legend "
        "has no such column every class of the ecosystem types above counts as natural (an assumption recorded "
        "in the manifest)."))

    @model_validator(mode="after")
    def _disjoint(self):
        both = sorted(set(self.forest_ecosystems) & set(self.grassland_ecosystems))
        if both:
            raise ValueError(f"forest_ecosystems and grassland_ecosystems overlap: {both}")
        return self


class Service(ServiceBase):
    """Pest control per pixel: ``pest_control_forest_ha`` and ``pest_control_grassland_ha`` (ha of natural forest
    / grassland per pixel) and ``pest_control_yuan`` (yuan/a per pixel). Control-cost method (module docstring)."""

    name = "pest_control"
    label = "Pest control"

    def configure(self, ctx: BuildContext) -> None:
        c = ctx.cfg.services.pest_control
        legend = ctx.legend
        col = c.natural_share_column
        if col in legend.table.columns:
            share = np.asarray(legend.table[col], dtype=np.float64)
            bad = legend.table.index[~np.isfinite(share) | (share < 0) | (share > 1)].tolist()
            if bad:
                raise TableError(f"legend {legend.label}: column '{col}' (natural share of the class, "
                                 f"services.pest_control.natural_share_column) must be a number in [0, 1]; bad "
                                 f"for class code(s) {bad}")
            share_rows = share.astype(np.float32)
            self.flags["natural_share"] = col
        else:
            share_rows = np.ones(len(legend.codes), np.float32)
            self.flags["natural_share"] = None
            self.assumptions.append(
                f"pest control: the legend has no column '{col}' (natural share of each class): every class of "
                f"ecosystem types {list(c.forest_ecosystems)} / {list(c.grassland_ecosystems)} counts as natural "
                "forest / grassland, so plantations and sown pasture are valued too (Garze counts natural forest "
                "and natural grassland only); add the column to count natural areas alone")
        n = int(legend.codes.max()) + 2
        for kind, ecos in (("forest", c.forest_ecosystems), ("grassland", c.grassland_ecosystems)):
            # share of natural <kind> per class code; NaN for codes without a legend row (nodata, as Legend.lut)
            lut = np.full(n, np.nan, np.float32)
            lut[legend.codes] = legend.ecosystem_lut(list(ecos))[legend.codes].astype(np.float32) * share_rows
            self.luts[kind] = lut
            self.scalars[kind] = self.value_term(f"pest_control_{kind}_ha", {f"pest_control.{kind}_price": 1.0},
                                                 ctx.book)
            self.outputs.append(OutputSpec(
                f"pest_control_{kind}_ha", self.name, "physical", "ha per pixel",
                f"Pest control: area of natural {kind} ({', '.join(ecos)}) x natural share, ha per pixel"))
        self.outputs.append(OutputSpec("pest_control_yuan", self.name, "value", "yuan/a per pixel",
                                       "Value of pest control (natural forest and grassland area x control cost), "
                                       "yuan per pixel per year"))
        self.note = ("Control-cost method (Garze GEP 2010, Baima Zhuoga et al. 2017 sec. 2.4.9 and table 3): area of "
                     "natural forest x pest_control.forest_price + area of natural grassland x "
                     "pest_control.grassland_price; natural share per class from the legend column "
                     f"'{col}'" + ("" if self.flags["natural_share"] else " (absent: 1 for every class of those types)"))

    def compute(self, blocks, row_area_m2, nodata, shared):
        from ..kernels.amount import rate_to_amount
        from ..kernels.lookup import apply_lut
        from ..kernels.valuation import linear_value

        out, qs, prices = {}, [], []
        for kind in ("forest", "grassland"):
            share = apply_lut(blocks["lc"], self.luts[kind])
            q, _ = rate_to_amount(share, 1.0, row_area_m2)  # share x pixel area in ha
            out[f"pest_control_{kind}_ha"] = q
            qs.append(q)
            prices.append(self.scalars[kind])
        out["pest_control_yuan"] = linear_value(np.stack(qs), prices)
        return out
