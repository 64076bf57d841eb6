"""Climate regulation (气候调节): cooling and humidifying by evapotranspiration, as electricity.

Garzê GEP 2010 (白玛卓嘎, 肖燚, 欧阳志云, 王莉雁 2017, 生态学报 37(19): 6302-6312,
doi:10.5846/stxb201607011362) equations [V]; methods note §2.7:

* vegetation transpiration (``vegetation_ecosystems``, default forest, shrub, grassland as Garzê [V]):
  ``E_pt = EPP × S × D / (3600 × r)`` kWh;
* water-surface evaporation (``water_ecosystems``, default water, wetland):
  ``E_we = E_w × ρ × q / 3600 + E_w × γ`` kWh (no EER division, as in Garzê [V]; the humidifier
  term ``E_w × γ`` is switched by ``humidifier``).

EPP (kJ m⁻² d⁻¹) is derived from the annual ET of the core input ``et`` (actual ET, or Kc × ET0):
``EPP = ET/365 × hot_season_et_factor × q`` with 1 mm over 1 m² = 1 kg; ``E_w = ET/365 ×
hot_season_et_factor × D × S / 1000`` m³. This derivation is an engineering choice ([EX] in the
methods note; the factor 1.0 = no seasonal adjustment is [U]). D = air-conditioning days (Garzê:
空调开放天数 [V]), counted as days with daily mean temperature > 26 °C (the guidelines' definition,
[U]: text not read) (config ``hot_days`` or raster ``hot_days_raster``).
Value = (E_pt + E_we) × electricity price (``climate_regulation.electricity_price``, 0.53 yuan/kWh, Garzê [V]).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ..config_base import ECOSYSTEMS, RasterInput, ServiceConfigBase
from ..errors import ConfigError, RasterError
from .base import BuildContext, InputRequest, OutputSpec, ServiceBase

#: one of the ecosystem types of the legend (gep_raster.config_base.ECOSYSTEMS)
Ecosystem = Literal[ECOSYSTEMS]  # type: ignore[valid-type]

#: key of the hot-days raster among the input blocks
HOT_DAYS_KEY = "climate_hot_days"
HOT_DAYS_MAX = 366.0


class Config(ServiceConfigBase):
    """``services.climate_regulation``.

    hot_days : float, optional
        D, days per year with daily mean temperature > 26 °C (one value for the whole run), in [0, 366].
    hot_days_raster : RasterInput, optional
        D per pixel (days/a). Exactly one of ``hot_days`` and ``hot_days_raster`` is required when enabled.
    hot_season_et_factor : float, optional
        Daily ET during the hot days / (annual ET / 365). When not given, the parameter
        ``climate_regulation.hot_season_et_factor`` (1.0 = no seasonal adjustment, [U]) is used and
        recorded in the manifest.
    vegetation_ecosystems, water_ecosystems : list of ecosystem types
        Where the transpiration and the water-surface terms apply (disjoint).
    humidifier : bool
        Count the humidifier term E_w × γ of the water-surface equation (Garzê: yes).
    """

    hot_days: float | None = Field(None, ge=0, le=HOT_DAYS_MAX, description=(
        "D, days per year with daily mean temperature > 26 C, one value for the whole run; exactly one of hot_days "
        "and hot_days_raster when enabled."), json_schema_extra={"unit": "days/a"})
    hot_days_raster: RasterInput | None = Field(None, description=(
        "D per pixel; exactly one of hot_days and hot_days_raster when enabled."),
        json_schema_extra={"unit": "days/a"})
    hot_season_et_factor: float | None = Field(None, gt=0, le=10, description=(
        "Daily ET during the hot days / (annual ET / 365); null: parameter climate_regulation.hot_season_et_factor "
        "(1.0 = no seasonal adjustment, [U])."))
    vegetation_ecosystems: list[Ecosystem] = Field(["forest", "shrub", "grassland"], description=(
        "Ecosystem types counted by the transpiration term (disjoint from water_ecosystems)."))
    water_ecosystems: list[Ecosystem] = Field(["water", "wetland"], description=(
        "Ecosystem types counted by the water-surface evaporation term (disjoint from vegetation_ecosystems)."))
    humidifier: bool = Field(True, description=(
        "Count the humidifier term E_w x gamma of the water-surface equation (Garze: yes)."))


class Service(ServiceBase):
    """Climate regulation service: outputs ``climate_regulation_kwh`` (kWh/a per pixel) and
    ``climate_regulation_yuan`` (yuan/a per pixel). See the module docstring for the equations.

    Raises
    ------
    ConfigError
        (from :meth:`check_config`, reported by ``load_config``) neither or both of ``hot_days`` and
        ``hot_days_raster``; no ``inputs.et``/``inputs.et0``; an ecosystem type in both lists.
    RasterError
        (in :meth:`compute`) the hot-days raster holds values outside [0, 366] days/a.
    """

    name = "climate_regulation"
    label = "Climate regulation"

    @staticmethod
    def check_config(cfg) -> list[str]:
        c = cfg.services.climate_regulation
        out = []
        if c.hot_days is None and c.hot_days_raster is None:
            out.append("services.climate_regulation is enabled but neither services.climate_regulation.hot_days "
                       "(days/a with daily mean > 26 C) nor services.climate_regulation.hot_days_raster is given")
        if c.hot_days is not None and c.hot_days_raster is not None:
            out.append("services.climate_regulation: give either hot_days (a constant) or hot_days_raster, not both")
        if cfg.inputs.et is None and cfg.inputs.et0 is None:
            out.append("services.climate_regulation is enabled but neither inputs.et nor inputs.et0 is given "
                       "(the transpiration heat EPP is derived from ET)")
        both = sorted(set(c.vegetation_ecosystems) & set(c.water_ecosystems))
        if both:
            out.append(f"services.climate_regulation: ecosystem type(s) {both} are in both vegetation_ecosystems "
                       "and water_ecosystems (they would be counted twice)")
        return out

    @staticmethod
    def legend_columns(cfg) -> dict[str, tuple]:
        if cfg.inputs.et0 is not None:
            return {"kc": (0.0, 2.0, "-", "crop coefficient: ET = Kc * ET0")}
        return {}

    def configure(self, ctx: BuildContext) -> None:
        c = ctx.cfg.services.climate_regulation
        problems = self.check_config(ctx.cfg)
        if problems:
            raise ConfigError("; ".join(problems))
        book = ctx.book
        veg = ctx.legend.ecosystem_lut(list(c.vegetation_ecosystems)).astype(np.float32)
        wat = ctx.legend.ecosystem_lut(list(c.water_ecosystems)).astype(np.float32)
        self.luts["kind"] = veg * 1.0 + wat * 2.0  # 0 none, 1 vegetation, 2 water
        self.flags["et_is_et0"] = ctx.et_is_et0
        if ctx.et_is_et0:
            self.luts["kc"] = ctx.legend.lut("kc")
        self.flags["hot_days_raster"] = c.hot_days_raster is not None
        self.flags["hot_days_spec"] = c.hot_days_raster
        self.scalars["hot_days"] = float(c.hot_days) if c.hot_days is not None else float("nan")
        self.scalars["et_factor"] = (float(c.hot_season_et_factor) if c.hot_season_et_factor is not None
                                     else book.param("climate_regulation.hot_season_et_factor"))
        self.scalars["latent_heat"] = book.param("climate_regulation.latent_heat")
        self.scalars["eer"] = book.param("climate_regulation.eer")
        self.scalars["gamma"] = book.param("climate_regulation.humidifier_kwh_per_m3") if c.humidifier else 0.0
        self.scalars["price"] = self.value_term("climate_regulation_kwh", {"climate_regulation.electricity_price": 1.0}, book)
        for key in ("latent_heat", "eer", "et_factor"):
            if not self.scalars[key] > 0:
                pkey = "hot_season_et_factor" if key == "et_factor" else key
                raise ConfigError(f"parameters.climate_regulation.{pkey}: must be > 0, got {self.scalars[key]}")
        if not self.scalars["gamma"] >= 0:
            raise ConfigError("parameters.climate_regulation.humidifier_kwh_per_m3: must be >= 0, "
                              f"got {self.scalars['gamma']}")
        d_txt = ("D per pixel from services.climate_regulation.hot_days_raster" if self.flags["hot_days_raster"]
                 else f"D = {c.hot_days:g} days/a (services.climate_regulation.hot_days)")
        self.note = (
            "Climate regulation (Garze GEP 2010 eqs. [V]): vegetation transpiration E_pt = EPP*S*D/(3600*r) on "
            f"{list(c.vegetation_ecosystems)}; water-surface evaporation E_we = E_w*rho*q/3600"
            + (" + E_w*gamma" if c.humidifier else " (humidifier term off)")
            + f" on {list(c.water_ecosystems)} (no EER division, as Garze); "
            + "EPP = ET/365 * f * q kJ/m2/d and E_w = ET/365 * f * D * S / 1000 m3 (1 mm over 1 m2 = 1 kg; "
            f"derivation from ET is an engineering choice [EX]/[U], f = hot_season_et_factor = {self.scalars['et_factor']:g}"
            + (" from services.climate_regulation.hot_season_et_factor); " if c.hot_season_et_factor is not None
               else " from parameter climate_regulation.hot_season_et_factor [U]); ")
            + ("ET = Kc * ET0 (legend kc); " if ctx.et_is_et0 else "ET = actual ET raster; ")
            + f"{d_txt} (air-conditioning days, Garze [V]; counted as days with daily mean > 26 C [U]); q = {self.scalars['latent_heat']:g} kJ/kg [V2], "
            f"r = EER {self.scalars['eer']:g} [U]"
            + (f", gamma = {self.scalars['gamma']:g} kWh/m3 [V2]" if c.humidifier else "")
            + f"; value = kWh * electricity price {self.scalars['price']:g} yuan/kWh (Garze [V])")
        self.outputs = [
            OutputSpec("climate_regulation_kwh", self.name, "physical", "kWh/a per pixel",
                       "Climate regulation: air-conditioner and humidifier electricity replaced by evapotranspiration "
                       "during the hot days, kWh per pixel per year"),
            OutputSpec("climate_regulation_yuan", self.name, "value", "yuan/a per pixel",
                       "Value of climate regulation (electricity price), yuan per pixel per year"),
        ]

    def input_keys(self) -> list[str]:
        return ["lc", "et"] + ([HOT_DAYS_KEY] if self.flags["hot_days_raster"] else [])

    def input_requests(self) -> dict[str, InputRequest]:
        if not self.flags["hot_days_raster"]:
            return {}
        return {HOT_DAYS_KEY: InputRequest("services.climate_regulation.hot_days_raster",
                                           self.flags["hot_days_spec"], "continuous")}

    def compute(self, blocks, row_area_m2, nodata, shared):
        from ..kernels.climate import climate_regulation_kwh
        from ..kernels.lookup import apply_lut
        from ..kernels.valuation import linear_value

        lc = blocks["lc"]
        kind = apply_lut(lc, self.luts["kind"])
        kind[nodata] = np.nan
        kc = apply_lut(lc, self.luts["kc"]) if self.flags["et_is_et0"] else np.ones(lc.shape, np.float32)
        if self.flags["hot_days_raster"]:
            days = np.asarray(blocks[HOT_DAYS_KEY], dtype=np.float32)
            fin = days[np.isfinite(days)]
            if fin.size and (fin.min() < 0 or fin.max() > HOT_DAYS_MAX):
                raise RasterError(f"services.climate_regulation.hot_days_raster: values {fin.min():g}..{fin.max():g} "
                                  f"lie outside 0..{HOT_DAYS_MAX:g} days/a (wrong unit, scale or nodata?)")
        else:
            days = np.full(lc.shape, self.scalars["hot_days"], np.float32)
        kwh = climate_regulation_kwh(kind, np.asarray(blocks["et"], np.float32), kc, days, row_area_m2,
                                     et_factor=self.scalars["et_factor"], latent_heat=self.scalars["latent_heat"],
                                     eer=self.scalars["eer"], humidifier_kwh_per_m3=self.scalars["gamma"])
        return {"climate_regulation_kwh": kwh,
                "climate_regulation_yuan": linear_value(kwh, [self.scalars["price"]])}
