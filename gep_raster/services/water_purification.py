"""Water purification (水质净化): pollutant removal by capacity, optionally capped by emissions.

Capacity method: Q_j = q_ij · A (t/a per pixel) with per-class removal capacities q_ij of pollutant j
(legend columns ``cod_kg_ha``, ``nh3n_kg_ha``, ``tp_kg_ha``, kg/ha/a; the capacity form is **[U]** in
the methods note §2.6: the rates come from each run's legend, with their sources).

Emissions cap (``emissions_cap``: regional annual emissions in t/a): when the run area's total
capacity C_j = Σ_i q_ij · A_i exceeds the emissions E_j, every pixel is multiplied by s_j = E_j / C_j,
so the regional total is min(C_j, E_j) spread in proportion to capacity (methods note §5.3). Garzê GEP
2010 valued the emissions themselves (COD 5,424 t, NH3-N 625 t) **[V]**; the min rule is how the MEE
guideline is usually described **[U]**. C_j is known before any block is computed: the area of every
land-cover class over the grid (legend-check pass, :attr:`BuildContext.class_area_m2`) × the class rates.

Value = Σ_j Q_j × treatment cost_j (prices ``water_purification.cod_price`` 700 and ``nh3n_price``
875 yuan/t, Garzê GEP 2010 **[V]**; ``tp_price`` 2,800 yuan/t **[U]**).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ..config_base import ServiceConfigBase, _Model
from ..errors import ConfigError
from .base import BuildContext, OutputSpec, ServiceBase

POLLUTANTS = ("cod", "nh3n", "tp")
_LABEL = {"cod": "COD", "nh3n": "NH3-N", "tp": "TP"}
#: plausibility limits of the legend columns, kg/ha/a
_LIMITS = {"cod": 100000.0, "nh3n": 20000.0, "tp": 5000.0}


class EmissionsCap(_Model):
    """Regional annual emissions (t/a) of the run area, per pollutant; omitted pollutants are not capped."""

    cod_t: float | None = Field(None, ge=0, description="Regional COD emissions; null: COD not capped.",
                                json_schema_extra={"unit": "t/a"})
    nh3n_t: float | None = Field(None, ge=0, description="Regional NH3-N emissions; null: NH3-N not capped.",
                                 json_schema_extra={"unit": "t/a"})
    tp_t: float | None = Field(None, ge=0, description="Regional TP emissions; null: TP not capped.",
                               json_schema_extra={"unit": "t/a"})


class Config(ServiceConfigBase):
    """``services.water_purification`` (off by default).

    pollutants : subset of [cod, nh3n, tp]
        Pollutants computed (one physical raster each).
    emissions_cap : EmissionsCap, optional
        Regional emissions (t/a) over the run area (the reference grid's valid land cover).
    """

    pollutants: list[Literal["cod", "nh3n", "tp"]] = Field(list(POLLUTANTS), description=(
        "Pollutants computed, each from the legend column <pollutant>_kg_ha (kg/ha/a)."))
    emissions_cap: EmissionsCap | None = Field(None, description=(
        "Regional annual emissions of the run area: where the total removal capacity exceeds them, every pixel is "
        "scaled so the total equals the emissions; null: no cap."))


class Service(ServiceBase):
    """Water purification: ``water_purification_<pol>_t`` (t/a per pixel) and ``water_purification_yuan``.

    Raises
    ------
    ConfigError
        (from :meth:`check_config`) no pollutant, duplicates, or an emissions cap for a pollutant not in
        ``pollutants``; (from :meth:`compute`) an emissions cap without the class areas of the run
        (the model was built without ``class_area_m2``), so the cap cannot be applied.
    """

    name = "water_purification"
    label = "Water purification"

    @staticmethod
    def check_config(cfg) -> list[str]:
        c = cfg.services.water_purification
        out = []
        if not c.pollutants:
            out.append("services.water_purification.pollutants is empty; list some of [cod, nh3n, tp]")
        if len(set(c.pollutants)) != len(c.pollutants):
            out.append(f"services.water_purification.pollutants has duplicates: {c.pollutants}")
        if c.emissions_cap is not None:
            for pol in POLLUTANTS:
                if getattr(c.emissions_cap, f"{pol}_t") is not None and pol not in c.pollutants:
                    out.append(f"services.water_purification.emissions_cap.{pol}_t is given but '{pol}' is not in "
                               f"services.water_purification.pollutants {c.pollutants}")
        return out

    @staticmethod
    def legend_columns(cfg) -> dict[str, tuple]:
        return {f"{p}_kg_ha": (0.0, _LIMITS[p], "kg/ha/a", f"{_LABEL[p]} removal capacity (water purification)")
                for p in cfg.services.water_purification.pollutants}

    def configure(self, ctx: BuildContext) -> None:
        c = ctx.cfg.services.water_purification
        pols = list(c.pollutants)
        self.flags["pollutants"] = pols
        self.flags["regime"] = {}
        self.flags["cap_pending"] = []
        areas = {int(k): float(v) for k, v in (ctx.class_area_m2 or {}).items()}
        parts = []
        for pol in pols:
            lut = ctx.legend.lut(f"{pol}_kg_ha")
            self.luts[pol] = lut
            self.scalars[pol] = self.value_term(f"water_purification_{pol}_t", {f"water_purification.{pol}_price": 1.0},
                                                 ctx.book)
            cap = getattr(c.emissions_cap, f"{pol}_t") if c.emissions_cap is not None else None
            scale, regime = 1.0, "capacity (no emissions cap)"
            if cap is not None:
                if not areas:
                    self.flags["cap_pending"].append(pol)
                    regime = "cap configured but class areas unknown (model built without class_area_m2)"
                else:
                    capacity = regional_capacity_t(lut, areas)
                    self.scalars[f"{pol}_capacity_t"] = capacity
                    if capacity > cap:
                        scale = cap / capacity
                        regime = (f"capped: capacity {capacity:.6g} t/a > emissions {cap:.6g} t/a, every pixel "
                                  f"scaled by {scale:.6g}")
                    else:
                        regime = (f"capacity: capacity {capacity:.6g} t/a <= emissions {cap:.6g} t/a (scale 1)")
            self.scalars[f"{pol}_scale"] = scale
            self.flags["regime"][pol] = regime
            parts.append(f"{_LABEL[pol]}: {regime}")
            self.outputs.append(OutputSpec(f"water_purification_{pol}_t", self.name, "physical", "t/a per pixel",
                                           f"Water purification: {_LABEL[pol]} removed, t per pixel per year"))
        self.outputs.append(OutputSpec("water_purification_yuan", self.name, "value", "yuan/a per pixel",
                                       "Value of water purification (treatment cost per pollutant), yuan per pixel "
                                       "per year"))
        self.note = ("Water purification Q_j = s_j * q_ij * A_i (per-class removal capacity, legend columns "
                     "<pollutant>_kg_ha [U]); with emissions_cap the regional total is min(capacity, emissions), "
                     "spread in proportion to capacity (s_j = emissions/capacity when capacity > emissions; "
                     "Garze 2010 valued emissions [V], min rule [U]); regional capacity = sum over classes of the "
                     "class area on the reference grid x rate. Regimes: " + "; ".join(parts)
                     + "; value = sum_j Q_j * treatment cost_j (COD 700, NH3-N 875 yuan/t Garze [V]; TP [U])")
        self.flags["assumptions"] = ["water purification: per-class removal capacities (legend) are [U]"]
        if "tp" in pols:
            self.flags["assumptions"].append("water purification: TP price (2,800 yuan/t) is [U]")

    def compute(self, blocks, row_area_m2, nodata, shared):
        """Outputs of one block: Q_j = s_j · q_ij · A · 10⁻³ t (kg → t), value = Σ_j Q_j · price_j."""
        from ..kernels.amount import rate_to_amount
        from ..kernels.lookup import apply_lut
        from ..kernels.valuation import linear_value

        if self.flags["cap_pending"]:
            raise ConfigError(f"services.water_purification.emissions_cap: cannot apply the cap for "
                              f"{self.flags['cap_pending']}: the class areas of the run are unknown (build the "
                              "ServiceModel with class_area_m2, as gep_raster.pipeline.run does)")
        out, qs, prices = {}, [], []
        for pol in self.flags["pollutants"]:
            q, _ = rate_to_amount(apply_lut(blocks["lc"], self.luts[pol]), 1e-3 * self.scalars[f"{pol}_scale"],
                                  row_area_m2)
            out[f"water_purification_{pol}_t"] = q
            qs.append(q)
            prices.append(self.scalars[pol])
        out["water_purification_yuan"] = linear_value(np.stack(qs), prices)
        return out


def regional_capacity_t(lut: np.ndarray, class_area_m2: dict) -> float:
    """Total removal capacity of the run area, t/a: Σ_classes q_i (kg/ha/a) × area_i (ha) × 10⁻³.

    Parameters
    ----------
    lut : float32 (n,)
        Rate per class code, kg/ha/a (NaN for codes without a legend row).
    class_area_m2 : dict int -> float
        Area of each land-cover class over the reference grid, m2.

    Returns
    -------
    float
        Capacity in t/a (float64 accumulation). Classes without a rate (NaN or code outside the
        look-up table) contribute nothing.

    Raises
    ------
    ValueError
        A negative class area.
    """
    total = 0.0
    for code, area in class_area_m2.items():
        if area < 0:
            raise ValueError(f"regional_capacity_t: negative area {area} for class {code}")
        if 0 <= code < lut.shape[0]:
            r = float(lut[code])
            if np.isfinite(r):
                total += r * area * 1e-4 * 1e-3
    return total
