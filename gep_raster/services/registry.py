"""The ordered list of regulating services (order = computation order within a block).

A service may read, from ``shared``, the outputs of services listed before it (oxygen release
uses the carbon flux of carbon sequestration)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import (air_purification, carbon_sequestration, climate_regulation, flood_regulation, oxygen_release,
               pest_control, sand_fixation, soil_retention, water_conservation, water_purification)

if TYPE_CHECKING:
    from ..config import RunConfig

#: service name -> module (each with ``Config`` and ``Service``)
REGISTRY = {
    "water_conservation": water_conservation,
    "soil_retention": soil_retention,
    "carbon_sequestration": carbon_sequestration,
    "oxygen_release": oxygen_release,
    "air_purification": air_purification,
    "water_purification": water_purification,
    "climate_regulation": climate_regulation,
    "flood_regulation": flood_regulation,
    "pest_control": pest_control,
    "sand_fixation": sand_fixation,
}

#: services enabled unless the config says ``enabled: false``; the others must be enabled explicitly
DEFAULT_ON = ("water_conservation", "soil_retention", "carbon_sequestration", "air_purification")


def required_legend_columns(cfg: RunConfig) -> dict[str, tuple]:
    """Legend columns the enabled services need: column -> (valid min, valid max, unit, meaning).

    Each service declares its own columns (``Service.legend_columns(cfg)``)."""
    need: dict[str, tuple] = {}
    for name in cfg.services.enabled():
        need.update(REGISTRY[name].Service.legend_columns(cfg))
    return need
