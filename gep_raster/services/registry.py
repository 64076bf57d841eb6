"""The ordered list of regulating services (order = computation order within a block).

A service may read, from ``shared``, the outputs of services listed before it (oxygen release
uses the carbon flux of carbon sequestration)."""
from __future__ import annotations

from . import (air_purification, carbon_sequestration, climate_regulation, flood_regulation, oxygen_release,
               soil_retention, water_conservation, water_purification)

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
}

#: services enabled unless the config says ``enabled: false``; the others must be enabled explicitly
DEFAULT_ON = ("water_conservation", "soil_retention", "carbon_sequestration", "air_purification")
