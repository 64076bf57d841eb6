"""Climate regulation (stub: being implemented)."""
from __future__ import annotations

from ..config_base import ServiceConfigBase
from .base import BuildContext, ServiceBase


class Config(ServiceConfigBase):
    pass


class Service(ServiceBase):
    name = "climate_regulation"
    label = "Climate regulation"

    def configure(self, ctx: BuildContext) -> None:
        raise NotImplementedError("services.climate_regulation is not implemented yet")
