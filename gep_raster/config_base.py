"""Base pydantic models shared by the run configuration and the per-service configurations."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ECOSYSTEMS = ("forest", "shrub", "grassland", "wetland", "cropland", "urban", "water", "bare")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RasterInput(_Model):
    """One raster input: a file, a folder of GeoTIFF tiles, a glob, or a list of files (mosaicked lazily)."""

    path: str | list[str]
    band: int = Field(1, ge=1)
    nodata: float | None = None  # overrides (or supplies) the file's nodata value
    scale: float = 1.0  # multiply values by this (e.g. 0.1 for scaled integer products)
    resampling: Literal["nearest", "bilinear", "cubic", "average", "mode"] | None = None


class ClimateInput(_Model):
    """Precipitation or ET0: an annual raster (``path``) or 12 monthly rasters (``monthly``)."""

    path: str | list[str] | None = None
    monthly: str | list[str] | None = None
    band: int = Field(1, ge=1)
    nodata: float | None = None
    scale: float = 1.0
    resampling: Literal["nearest", "bilinear", "cubic", "average", "mode"] | None = None

    @model_validator(mode="after")
    def _one_of(self):
        if (self.path is None) == (self.monthly is None):
            raise ValueError("give exactly one of 'path' (annual raster, mm/a) or 'monthly' (12 rasters, mm/month)")
        return self


class ServiceConfigBase(_Model):
    """Common switch of every service section ``services.<name>``."""

    enabled: bool = True
