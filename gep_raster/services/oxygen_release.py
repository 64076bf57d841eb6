"""Oxygen release (stub: being implemented)."""
from __future__ import annotations

from ..config_base import ServiceConfigBase
from .base import BuildContext, ServiceBase


class Config(ServiceConfigBase):
    pass


class Service(ServiceBase):
    name = "oxygen_release"
    label = "Oxygen release"

    def configure(self, ctx: BuildContext) -> None:
        raise NotImplementedError("services.oxygen_release is not implemented yet")
