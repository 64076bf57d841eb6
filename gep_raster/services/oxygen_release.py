"""Oxygen release (释氧 / 氧气提供) from the same net carbon flux as carbon sequestration.

Q_O2 = (32/44) × Q_CO2 (t O2/a per pixel), where Q_CO2 is the output ``carbon_sequestration_tco2``
of carbon sequestration in the same block (registry order: carbon runs first). Both services
therefore come from **one** flux (methods note §2.4 and §6.1): Garzê GEP 2010 took oxygen from gross
NPP and carbon from net sequestration, an O2:CO2 ratio of 8.1 instead of 32/44 = 0.727 [V-calc].
With ``inputs.carbon.method: npp`` the flux is the gross NPP flux (32/44 × 1.63 = 1.185 t O2/t dry
matter ≈ the LY/T 1.19, 高天岩 [V]). A net emission (negative Q_CO2, kept when
``services.carbon_sequestration.negative_values: keep``) gives a negative Q_O2 (net O2 consumption);
when carbon clips negatives to 0, oxygen is 0 there too.

Value = Q_O2 × industrial oxygen price (``oxygen_release.o2_price``, 727 yuan/t, Garzê GEP 2010 [V]).
Stoichiometry: parameter ``oxygen_release.o2_per_co2`` = 32/44 [V-calc].
"""
from __future__ import annotations

from ..config_base import ServiceConfigBase
from ..errors import ConfigError
from .base import BuildContext, OutputSpec, ServiceBase

CARBON_KEY = "carbon_sequestration_tco2"


class Config(ServiceConfigBase):
    """``services.oxygen_release``: only ``enabled``; needs ``services.carbon_sequestration`` enabled."""


class Service(ServiceBase):
    """Oxygen release: outputs ``oxygen_release_t`` (t O2/a per pixel) and ``oxygen_release_yuan``
    (yuan/a per pixel).

    Raises
    ------
    ConfigError
        (from :meth:`check_config` via ``load_config``, or :meth:`configure`) carbon sequestration is
        not enabled; (from :meth:`compute`) the carbon flux of the block is missing from ``shared``.
    """

    name = "oxygen_release"
    label = "Oxygen release"

    @staticmethod
    def check_config(cfg) -> list[str]:
        if not cfg.services.carbon_sequestration.enabled:
            return ["services.oxygen_release is enabled but services.carbon_sequestration is disabled: oxygen "
                    "release is computed as 32/44 x the CO2 flux of carbon sequestration (one flux for both); "
                    "enable services.carbon_sequestration or disable services.oxygen_release"]
        return []

    def configure(self, ctx: BuildContext) -> None:
        problems = self.check_config(ctx.cfg)
        if problems:
            raise ConfigError("; ".join(problems))
        self.scalars["o2_per_co2"] = ctx.book.param("oxygen_release.o2_per_co2")
        self.scalars["price"] = ctx.book.price("oxygen_release.o2_price")
        carbon = ctx.cfg.services.carbon_sequestration
        method = ctx.cfg.inputs.carbon.method
        self.note = (
            f"Oxygen release Q_O2 = {self.scalars['o2_per_co2']:.6g} (32/44, V-calc) x Q_CO2 of carbon sequestration "
            f"in the same pixel (carbon method '{method}'): oxygen and carbon come from ONE flux (unlike Garze GEP "
            "2010, whose oxygen came from gross NPP, an O2:CO2 ratio of 8.1); "
            + ("net emissions give negative O2 (consumption), as carbon keeps negatives"
               if carbon.negative_values == "keep" else "negative fluxes are 0, as carbon clips them")
            + (" NOTE: NPP is a gross flux (32/44 x 1.63 = 1.185 t O2/t dry matter, LY/T style)"
               if method == "npp" else "")
            + f"; value = Q_O2 x {self.scalars['price']:g} yuan/t (industrial oxygen, Garze GEP 2010 [V])")
        self.outputs = [
            OutputSpec("oxygen_release_t", self.name, "physical", "t O2/a per pixel",
                       "Oxygen release, 32/44 x the carbon-sequestration CO2 flux, t O2 per pixel per year"),
            OutputSpec("oxygen_release_yuan", self.name, "value", "yuan/a per pixel",
                       "Value of oxygen release (industrial oxygen price), yuan per pixel per year"),
        ]

    def input_keys(self) -> list[str]:
        return ["lc"]

    def compute(self, blocks, row_area_m2, nodata, shared):
        from ..kernels.valuation import linear_value

        if CARBON_KEY not in shared:
            raise ConfigError("services.oxygen_release needs the carbon flux of services.carbon_sequestration "
                              f"('{CARBON_KEY}') computed before it in the same block")
        q = linear_value(shared[CARBON_KEY], [self.scalars["o2_per_co2"]])
        return {"oxygen_release_t": q, "oxygen_release_yuan": linear_value(q, [self.scalars["price"]])}
