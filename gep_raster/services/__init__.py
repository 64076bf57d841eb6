"""Regulating services of GEP-R: one module per service (``Config`` + ``Service``), composed by
:class:`~gep_raster.services.model.ServiceModel`. See :mod:`gep_raster.services.base` for the interface."""
from .base import CORE_INPUTS, BuildContext, InputRequest, OutputSpec, ServiceBase
from .model import ServiceModel
from .registry import REGISTRY

SERVICE_LABELS = {name: mod.Service.label for name, mod in REGISTRY.items()}

__all__ = ["CORE_INPUTS", "BuildContext", "InputRequest", "OutputSpec", "ServiceBase", "ServiceModel", "REGISTRY",
           "SERVICE_LABELS"]
