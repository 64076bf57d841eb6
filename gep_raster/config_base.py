"""Base pydantic models shared by the run configuration and the per-service configurations."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ECOSYSTEMS = ("forest", "shrub", "grassland", "wetland", "cropland", "urban", "water", "bare")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RasterInput(_Model):
    """One raster input: a file, a folder of GeoTIFF tiles, a glob, or a list of files (mosaicked lazily)."""

    path: str | list[str] = Field(description=(
        "Raster file, folder (every .tif/.tiff/.vrt inside), glob pattern, or a list of these; several files are "
        "mosaicked lazily (first valid value wins in sorted path order). Relative paths are resolved from the "
        "config file's folder; ${VAR} is expanded from the environment."))
    band: int = Field(1, ge=1, description="Band of the file(s) to read (1 = first band).")
    nodata: float | None = Field(None, description=(
        "Nodata value of the file(s): overrides the value the files declare, or supplies one when they declare "
        "none; null: the files' own nodata."))
    scale: float = Field(1.0, description=(
        "Factor the values are multiplied by after reading (e.g. 0.1 for a product stored as scaled integers)."))
    resampling: Literal["nearest", "bilinear", "cubic", "average", "mode"] | None = Field(None, description=(
        "Resampling onto the reference grid when the raster is not on its lattice; null: by the kind of variable "
        "(classes: nearest, mode when the source is finer; continuous fields: bilinear, average when finer)."))


class ClimateInput(_Model):
    """Precipitation or ET0: an annual raster (``path``) or 12 monthly rasters (``monthly``)."""

    path: str | list[str] | None = Field(None, description=(
        "Annual raster (file, folder, glob or list, as for any raster input), in mm/a; exactly one of path and "
        "monthly is required."), json_schema_extra={"unit": "mm/a"})
    monthly: str | list[str] | None = Field(None, description=(
        "12 monthly rasters (a folder, glob or list of exactly 12 files), in mm/month; summed to the annual value "
        "(soil retention's r_method wischmeier_monthly also uses the months). Exactly one of path and monthly is "
        "required."),
        json_schema_extra={"unit": "mm/month"})
    band: int = Field(1, ge=1, description="Band of the file(s) to read (1 = first band).")
    nodata: float | None = Field(None, description=(
        "Nodata value of the file(s): overrides the value the files declare, or supplies one when they declare "
        "none; null: the files' own nodata."))
    scale: float = Field(1.0, description=(
        "Factor the values are multiplied by after reading (e.g. 0.1 for a product stored as scaled integers)."))
    resampling: Literal["nearest", "bilinear", "cubic", "average", "mode"] | None = Field(None, description=(
        "Resampling onto the reference grid when the raster is not on its lattice; null: bilinear, average when "
        "the source is finer than the grid."))

    @model_validator(mode="after")
    def _one_of(self):
        if (self.path is None) == (self.monthly is None):
            raise ValueError("give exactly one of 'path' (annual raster, mm/a) or 'monthly' (12 rasters, mm/month)")
        return self


class ServiceConfigBase(_Model):
    """Common switch of every service section ``services.<name>``."""

    enabled: bool = Field(True, description=(
        "Compute this service. Default: on for water_conservation, soil_retention, carbon_sequestration and "
        "air_purification; off for the others."))
