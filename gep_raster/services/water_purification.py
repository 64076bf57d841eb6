"""Water purification (stub: being implemented)."""
from __future__ import annotations

from ..config_base import ServiceConfigBase
from .base import BuildContext, ServiceBase


class Config(ServiceConfigBase):
    pass


class Service(ServiceBase):
    name = "water_purification"
    label = "Water purification"

    def configure(self, ctx: BuildContext) -> None:
        raise NotImplementedError("services.water_purification is not implemented yet")
