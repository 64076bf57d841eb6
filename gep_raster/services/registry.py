"""The ordered list of regulating services (order = computation order within a block)."""
from __future__ import annotations

from . import air_purification, carbon_sequestration, soil_retention, water_conservation

#: service name -> module (each with ``Config`` and ``Service``)
REGISTRY = {
    "water_conservation": water_conservation,
    "soil_retention": soil_retention,
    "carbon_sequestration": carbon_sequestration,
    "air_purification": air_purification,
}

#: services enabled unless the config says ``enabled: false``
DEFAULT_ON = ("water_conservation", "soil_retention", "carbon_sequestration", "air_purification")
