"""Oxygen release (释氧 / 氧气提供): from the carbon flux of carbon sequestration (default) or from NPP.

``services.oxygen_release.method``:

``co2_ratio`` (default)
    Q_O2 = (32/44) × Q_CO2 (t O2/a per pixel), where Q_CO2 is the output ``carbon_sequestration_tco2`` of
    carbon sequestration in the same block (registry order: carbon runs first). Both services therefore
    come from **one** flux (methods note §2.4 and §6.1). With ``inputs.carbon.method: npp`` the flux is the
    gross NPP flux (32/44 × 1.63 = 1.185 t O2/t dry matter ≈ the LY/T 1.19 [V-calc]). A net emission
    (negative Q_CO2, kept when ``services.carbon_sequestration.negative_values: keep``) gives a negative
    Q_O2 (net O2 consumption); when carbon clips negatives to 0, oxygen is 0 there too. Stoichiometry:
    parameter ``oxygen_release.o2_per_co2`` = 32/44 [V-calc].
``garze_npp``
    The rule of the Garzê GEP 2010 account: oxygen from vegetation NPP, whatever flux carbon uses.
    Q_O2 = k_O2 × NPP_dm × A (t O2/a per pixel), NPP_dm = NPP in t dry matter/ha/a read from
    ``inputs.carbon`` (``method: npp``, ``path``, ``unit``: the same input and unit conversion as carbon
    sequestration's ``npp`` method: t C → t dry matter by ``carbon_sequestration.c_per_dry_matter`` =
    72/162), A in ha, k_O2 = parameter ``oxygen_release.o2_per_dry_matter`` = 1.19 t O2/t dry matter
    (photosynthesis, LY/T 1721-2008 style: V_O = Σ NPP_i × 1.19 × P_O in 缪建群 et al. 2017, 生态学报 37(19),
    高天岩 Table 1 eq. 4, and its Table 2: 1.19 × 58,012.70 t NPP = 69,035.12 t O2 **[V]**; 192/162 = 1.185
    rounded [V-calc]). Garzê GEP 2010 (白玛卓嘎 et al. 2017 §2.4.7) states only that carbon and oxygen "can
    be accounted via the sequestration rate and NPP" **[V]**; it prints no oxygen formula, so that it used
    exactly 1.19 × NPP is an inference from its O2:CO2 ratio of 8.1 (methods note §2.4) **[U]**. NPP is a
    gross plant flux: oxygen consumed by heterotrophic respiration is not subtracted, so with a net carbon
    flux (``nep``, ``rates``) oxygen is far above 32/44 of carbon (Garzê: O2 value 15.5 × the carbon value).
    Negative NPP is kept as is (it is not a physical NPP; the input check reports it).

Value = Q_O2 × industrial oxygen price (``oxygen_release.o2_price``, 727 yuan/t, Garzê GEP 2010 [V]).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ..config_base import ServiceConfigBase
from ..errors import ConfigError
from .base import BuildContext, OutputSpec, ServiceBase

CARBON_KEY = "carbon_sequestration_tco2"
NPP_UNITS = ("t_dm_per_ha", "t_c_per_ha", "g_c_per_m2")


class Config(ServiceConfigBase):
    """``services.oxygen_release``: ``method`` ``co2_ratio`` (default; needs ``services.carbon_sequestration``
    enabled) or ``garze_npp`` (needs ``inputs.carbon.method: npp``)."""

    method: Literal["co2_ratio", "garze_npp"] = Field("co2_ratio", description=(
        "co2_ratio: 32/44 x the CO2 flux of carbon sequestration (needs it enabled); garze_npp: 1.19 t O2 per t NPP "
        "dry matter, the Garze GEP 2010 rule (needs inputs.carbon.method npp)."))


def npp_to_dry_matter_factor(unit: str, c_per_dry_matter: float) -> float:
    """Factor turning an NPP raster value in ``unit`` into t dry matter/ha/a.

    Parameters
    ----------
    unit : str
        ``inputs.carbon.unit``: ``t_dm_per_ha`` (t dry matter/ha/a), ``t_c_per_ha`` (t C/ha/a) or
        ``g_c_per_m2`` (g C/m2/a = 0.01 t C/ha/a).
    c_per_dry_matter : float
        Carbon share of dry matter (parameter ``carbon_sequestration.c_per_dry_matter`` = 72/162 [V-calc]).

    Returns
    -------
    float
        t dry matter/ha/a per raster unit (the conversion carbon sequestration's ``npp`` method uses).

    Raises
    ------
    ConfigError
        Unknown unit, or ``c_per_dry_matter`` not > 0 (message names ``inputs.carbon.unit``).
    """
    if unit not in NPP_UNITS:
        raise ConfigError(f"inputs.carbon.unit: '{unit}' is not an NPP unit (use {', '.join(NPP_UNITS)})")
    if not c_per_dry_matter > 0:
        raise ConfigError("carbon_sequestration.c_per_dry_matter must be > 0")
    return {"t_dm_per_ha": 1.0, "t_c_per_ha": 1.0 / c_per_dry_matter, "g_c_per_m2": 0.01 / c_per_dry_matter}[unit]


class Service(ServiceBase):
    """Oxygen release: outputs ``oxygen_release_t`` (t O2/a per pixel) and ``oxygen_release_yuan``
    (yuan/a per pixel). Methods and sources: module docstring.

    Raises
    ------
    ConfigError
        (from :meth:`check_config` via ``load_config``, or :meth:`configure`) ``co2_ratio`` with carbon
        sequestration disabled; ``garze_npp`` without ``inputs.carbon.method: npp``; (from :meth:`compute`)
        ``co2_ratio``: the carbon flux of the block is missing from ``shared``.
    """

    name = "oxygen_release"
    label = "Oxygen release"

    @staticmethod
    def check_config(cfg) -> list[str]:
        c = cfg.services.oxygen_release
        if c.method == "garze_npp":
            if cfg.inputs.carbon.method != "npp":
                return ["services.oxygen_release.method 'garze_npp' computes oxygen from NPP read from inputs.carbon: "
                        "set inputs.carbon.method: npp with path (the NPP raster) and unit (t_dm_per_ha, t_c_per_ha or "
                        f"g_c_per_m2); inputs.carbon.method is '{cfg.inputs.carbon.method}'. Or use "
                        "services.oxygen_release.method: co2_ratio (32/44 x the carbon-sequestration CO2 flux)"]
            return []
        if not cfg.services.carbon_sequestration.enabled:
            return ["services.oxygen_release is enabled but services.carbon_sequestration is disabled: oxygen "
                    "release (method co2_ratio) is computed as 32/44 x the CO2 flux of carbon sequestration (one flux "
                    "for both); enable services.carbon_sequestration or disable services.oxygen_release"]
        return []

    def configure(self, ctx: BuildContext) -> None:
        problems = self.check_config(ctx.cfg)
        if problems:
            raise ConfigError("; ".join(problems))
        self.flags["method"] = ctx.cfg.services.oxygen_release.method
        self.scalars["price"] = self.value_term("oxygen_release_t", {"oxygen_release.o2_price": 1.0}, ctx.book)
        carbon = ctx.cfg.services.carbon_sequestration
        cin = ctx.cfg.inputs.carbon
        self.flags["assumptions"] = []
        if self.flags["method"] == "garze_npp":
            k = ctx.book.param("oxygen_release.o2_per_dry_matter")
            dm = npp_to_dry_matter_factor(cin.unit, ctx.book.param("carbon_sequestration.c_per_dry_matter"))
            self.scalars["factor"] = k * dm
            self.note = (
                f"Oxygen release Q_O2 = {k:g} t O2/t dry matter x NPP (inputs.carbon, {cin.unit}"
                + (f", x {dm:.6g} t dry matter per unit" if dm != 1.0 else "")
                + ") x pixel area in ha (method garze_npp: the Garze GEP 2010 rule, oxygen from NPP [V, Garze 2.4.7 "
                "'via NPP']; coefficient 1.19 = LY/T 1721-2008 photosynthesis as used by Gaotianyan 2017 [V]; Garze "
                "prints no coefficient [U]). NOTE: NPP is a gross flux, so oxygen is not 32/44 of a net carbon flux"
                + (f" (carbon sequestration uses '{cin.method}')" if carbon.enabled else "")
                + f"; value = Q_O2 x {self.scalars['price']:g} yuan/t (industrial oxygen, Garze GEP 2010 [V])")
            self.flags["assumptions"].append(
                "oxygen release (method garze_npp): Q_O2 = 1.19 t O2 per t NPP dry matter (LY/T 1721-2008 style "
                "[V in Gaotianyan 2017]) is attributed to Garze GEP 2010 by inference only (Garze states oxygen is "
                "accounted 'via NPP' but prints no formula) [U]; oxygen from gross NPP is not on the same flux as a "
                "net carbon sequestration (methods note 6.1)")
            desc = "Oxygen release, 1.19 t O2 per t NPP dry matter (Garze GEP 2010 rule), t O2 per pixel per year"
        else:
            self.scalars["o2_per_co2"] = ctx.book.param("oxygen_release.o2_per_co2")
            self.note = (
                f"Oxygen release Q_O2 = {self.scalars['o2_per_co2']:.6g} (32/44, V-calc) x Q_CO2 of carbon "
                f"sequestration in the same pixel (carbon method '{cin.method}'): oxygen and carbon come from ONE "
                "flux (unlike Garze GEP 2010, whose oxygen came from gross NPP, an O2:CO2 ratio of 8.1); "
                + ("net emissions give negative O2 (consumption), as carbon keeps negatives"
                   if carbon.negative_values == "keep" else "negative fluxes are 0, as carbon clips them")
                + (" NOTE: NPP is a gross flux (32/44 x 1.63 = 1.185 t O2/t dry matter, LY/T style)"
                   if cin.method == "npp" else "")
                + f"; value = Q_O2 x {self.scalars['price']:g} yuan/t (industrial oxygen, Garze GEP 2010 [V])")
            desc = "Oxygen release, 32/44 x the carbon-sequestration CO2 flux, t O2 per pixel per year"
        self.outputs = [
            OutputSpec("oxygen_release_t", self.name, "physical", "t O2/a per pixel", desc),
            OutputSpec("oxygen_release_yuan", self.name, "value", "yuan/a per pixel",
                       "Value of oxygen release (industrial oxygen price), yuan per pixel per year"),
        ]

    def input_keys(self) -> list[str]:
        return ["lc", "carbon_flux"] if self.flags["method"] == "garze_npp" else ["lc"]

    def compute(self, blocks, row_area_m2, nodata, shared):
        """Outputs of one block: ``co2_ratio`` reads ``shared['carbon_sequestration_tco2']`` (t CO2/a per pixel);
        ``garze_npp`` reads ``blocks['carbon_flux']`` (NPP in ``inputs.carbon.unit``, float32, NaN = nodata)."""
        from ..kernels.amount import rate_to_amount
        from ..kernels.valuation import linear_value

        if self.flags["method"] == "garze_npp":
            npp = np.where(nodata, np.nan, blocks["carbon_flux"]).astype(np.float32)
            q, _ = rate_to_amount(npp, self.scalars["factor"], row_area_m2, clip=False)
        else:
            if CARBON_KEY not in shared:
                raise ConfigError("services.oxygen_release needs the carbon flux of services.carbon_sequestration "
                                  f"('{CARBON_KEY}') computed before it in the same block")
            q = linear_value(shared[CARBON_KEY], [self.scalars["o2_per_co2"]])
        return {"oxygen_release_t": q, "oxygen_release_yuan": linear_value(q, [self.scalars["price"]])}
