"""Base pydantic models shared by the run configuration and the per-service configurations."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ECOSYSTEMS = ("forest", "shrub", "grassland", "wetland", "cropland", "urban", "water", "bare")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StacQuery(_Model):
    """``stac``: a STAC search whose items' assets are the raster files of an input (mosaicked like local tiles)."""

    catalog: str = Field(description=(
        "STAC API URL (searched with pystac-client) or static catalogue: a catalog.json / collection.json file "
        "(relative to the config file) or its URL."))
    collection: str | None = Field(None, description="Collection id the items must belong to; null: any.")
    asset: str = Field(description="Asset key of the raster in each item (e.g. data, B04, ndvi).")
    datetime: str | None = Field(None, description=(
        "Time filter in STAC syntax: an instant (2024-06-01T00:00:00Z) or an interval (2024-01-01/2024-12-31, "
        "open ends as ..); null: any time."))
    bbox: list[float] | None = Field(None, min_length=4, max_length=4, description=(
        "Search box [west, south, east, north] in degrees (WGS84); null: the reference grid's extent (for the "
        "reference input itself: no box)."))
    max_items: int = Field(1000, ge=1, le=100000, description=(
        "Most items accepted; a search matching more is an error (narrow it), never silently cut."))


class StacPath(_Model):
    """A raster input's ``path`` given as a STAC query: ``path: {stac: {catalog: ..., asset: ...}}``."""

    stac: StacQuery = Field(description="The STAC search (items ordered newest first: the newest valid pixel wins).")


class StackReadOptions(_Model):
    """Read options of a stack of daily rasters (every band of every file one day): nodata, scale, resampling."""

    nodata: float | None = Field(None, description=(
        "Nodata value of the files (overrides or supplies theirs); null: the files' own."))
    scale: float = Field(1.0, description="Factor the values are multiplied by after reading (e.g. 0.1).")
    resampling: Literal["nearest", "bilinear", "cubic", "average"] | None = Field(None, description=(
        "Resampling onto the reference grid; null: bilinear, average when the source is finer."))


class RasterInput(_Model):
    """One raster input: a file, a folder of GeoTIFF tiles, a glob, or a list of files (mosaicked lazily)."""

    path: str | list[str] | StacPath = Field(description=(
        "Raster file, folder (every .tif/.tiff/.vrt inside), glob pattern, URL (https://, s3://, gs://, or a GDAL "
        "path such as /vsicurl/https://..., /vsizip/...), a list of these, or a STAC query {stac: {...}}; several "
        "files are mosaicked lazily (first valid value wins in sorted path order; STAC items newest first). "
        "Relative paths are resolved from the config file's folder; ${VAR} is expanded from the environment."))
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

    path: str | list[str] | StacPath | None = Field(None, description=(
        "Annual raster (file, folder, glob, URL, list or STAC query, as for any raster input), in mm/a; exactly "
        "one of path and monthly is required."), json_schema_extra={"unit": "mm/a"})
    monthly: str | list[str] | StacPath | None = Field(None, description=(
        "12 monthly rasters (a folder, glob, list of exactly 12 files or URLs, or a STAC query matching 12 items, "
        "ordered by date), in mm/month; summed to the annual value (soil retention's r_method wischmeier_monthly "
        "also uses the months). Exactly one of path and monthly is required."),
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
