"""Run configuration: a YAML file validated by pydantic models.

Every error names the config key and the problem, e.g.
``pipelines/gura.yaml: inputs.dem.path: file not found: /data/dem.tif``.

Paths are resolved relative to the folder of the config file. ``${GEP_SHARED_DATA}`` (and any
other ``${VAR}``) is expanded from the environment; ``GEP_SHARED_DATA`` defaults to the
``shared/data`` folder beside the checkout (``../shared/data`` seen from the repository root).
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import urllib.parse
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .errors import ConfigError

from .config_base import ECOSYSTEMS, ClimateInput, RasterInput, StacPath, StacQuery, _Model  # noqa: F401  (re-exported)
from .profiles import PROFILE_NAMES, apply_profile


def default_shared_data() -> Path:
    """Location of the shared real datasets: env ``GEP_SHARED_DATA`` or ``<checkout>/../shared/data``."""
    env = os.environ.get("GEP_SHARED_DATA")
    if env:
        return Path(env)
    candidates = [Path.cwd() / ".." / "shared" / "data", Path(__file__).resolve().parents[2] / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return candidates[0]


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_vars(text: str) -> str:
    """Expand ``${VAR}`` from the environment; ``${GEP_SHARED_DATA}`` has a default."""

    def repl(m):
        name = m.group(1)
        if name == "GEP_SHARED_DATA":
            return str(default_shared_data())
        if name not in os.environ:
            raise ConfigError(f"environment variable ${{{name}}} used in the config is not set")
        return os.environ[name]

    return _VAR.sub(repl, text)


class CarbonInput(_Model):
    """Carbon-flux input for carbon sequestration.

    method: ``nep`` (NEP raster), ``npp`` (NPP raster), ``rates`` (legend column ``carbon_tco2_ha``),
    ``stock_change`` (carbon-pool table and an alternate land-cover map, InVEST Carbon style).
    """

    method: Literal["nep", "npp", "rates", "stock_change"] = Field("rates", description=(
        "Carbon flux of carbon sequestration: rates (legend column carbon_tco2_ha, t CO2/ha/a), nep (NEP raster "
        "x 44/12, a net flux), npp (NPP raster x 1.63 t CO2/t dry matter, a gross flux, flagged), stock_change "
        "((stock of alternate_land_cover - stock of inputs.land_cover) / years x 44/12, InVEST Carbon pools)."))
    path: str | list[str] | StacPath | None = Field(None, description=(
        "NEP or NPP raster (file, folder, glob, URL, list or STAC query); required by methods nep and npp, in the "
        "unit given by unit."))
    unit: Literal["t_c_per_ha", "g_c_per_m2", "t_dm_per_ha"] | None = Field(None, description=(
        "Unit of the NEP/NPP raster: t_c_per_ha (t C/ha/a), g_c_per_m2 (g C/m2/a), t_dm_per_ha (t dry "
        "matter/ha/a); required by methods nep and npp."))
    nodata: float | None = Field(None, description=(
        "Nodata value of the NEP/NPP raster (overrides or supplies the file's); null: the file's own."))
    # stock_change only
    pools_table: str | None = Field(None, description=(
        "stock_change only (required there): CSV of carbon pools per land-cover class, InVEST Carbon style, "
        "in Mg C/ha per pool column."))
    code_column: str = Field("lucode", description="stock_change: column of pools_table holding the class codes.")
    pool_columns: list[str] = Field(["C_above", "C_below", "C_soil", "C_dead"], description=(
        "stock_change: columns of pools_table summed into the carbon stock of a class."),
        json_schema_extra={"unit": "Mg C/ha"})
    alternate_land_cover: RasterInput | None = Field(None, description=(
        "stock_change only (required there): the other land-cover map (same class codes as the legend and "
        "pools_table), compared with inputs.land_cover."))
    years: float | None = Field(None, gt=0, description=(
        "stock_change only (required there): years between inputs.land_cover and alternate_land_cover; the "
        "stock change is divided by it."), json_schema_extra={"unit": "a"})

    @model_validator(mode="after")
    def _needs(self):
        if self.method in ("nep", "npp"):
            if self.path is None:
                raise ValueError(f"method '{self.method}' needs 'path' (a {self.method.upper()} raster)")
            if self.unit is None:
                raise ValueError(f"method '{self.method}' needs 'unit' (t_c_per_ha, g_c_per_m2 or t_dm_per_ha)")
        if self.method == "stock_change":
            missing = [k for k in ("pools_table", "alternate_land_cover", "years") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"method 'stock_change' needs {', '.join(missing)}")
        return self


class TableJoin(_Model):
    """Extra parameter columns joined into the legend from another CSV (e.g. an InVEST biophysical table)."""

    path: str = Field(description="CSV joined into the legend by class code (relative to the config file).")
    code_column: str = Field("lucode", description="Column of this CSV holding the land-cover class codes.")
    columns: dict[str, str] = Field(description=(
        "Columns joined: legend column name -> column name in this CSV (a legend column that already exists is an "
        "error)."))  # legend column name -> column name in this table


class LegendConfig(_Model):
    """Land-cover legend: one row per class code with its ecosystem type and parameters.

    Either a shipped legend of a standard land-cover product (``product``), a legend CSV (``path``), or both: then
    the CSV extends the product's table (its rows override the product's cells they fill, and add classes)."""

    product: str | None = Field(None, description=(
        "Shipped legend of a standard land-cover product: clcd (China Land Cover Dataset, 30 m), globeland30 "
        "(GlobeLand30, 30 m), esa_worldcover (ESA WorldCover 10 m v100/v200), modis_igbp (MODIS MCD12Q1 "
        "LC_Type1, IGBP classes) or dynamic_world (Dynamic World band label). Its classes carry an ecosystem type "
        "and the parameter values the methods note gives for that type, with evidence marks; cells it leaves empty "
        "must be filled by a user table (path) for the services that need them. See docs/legends.md. null: no "
        "product, path is required."))
    path: str | None = Field(None, description=(
        "Legend CSV: one row per land-cover class code, with the column ecosystem (forest, shrub, grassland, "
        "wetland, cropland, urban, water, bare) and the parameter columns the enabled services need. With product: "
        "a user table extending the product's legend (rows of a product class override the cells they fill, "
        "other rows add classes and need an ecosystem). Required when product is not given."))
    code_column: str = Field("code", description=(
        "Column of the legend CSV (path) holding the class codes (non-negative integers, at most 65535, unique)."))
    columns: dict[str, str] = Field({}, description=(
        "Rename map: legend column name -> column name in the CSV (path)."))  # rename: legend column -> CSV column
    join: list[TableJoin] = Field([], description=(
        "Tables whose parameter columns are joined into the legend by class code (e.g. an InVEST biophysical "
        "table)."))

    @field_validator("product")
    @classmethod
    def _known_product(cls, v):
        if v is None:
            return v
        from .legends import canonical_product  # lazy: keeps ``import gep_raster.config`` light

        try:
            return canonical_product(v)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("legend.product: ")) from None

    @model_validator(mode="after")
    def _path_or_product(self):
        if self.path is None and self.product is None:
            raise ValueError("give 'product' (a shipped legend: clcd, globeland30, esa_worldcover, modis_igbp, "
                             "dynamic_world), 'path' (a legend CSV), or both (the CSV then extends the product's "
                             "legend)")
        return self


_EVIDENCE = ("Evidence mark recorded with the value: V, V-calc, V2, U or EX (see the methods note), or user "
             "(given by the user without a mark).")


class PriceOverride(_Model):
    """``prices.overrides.<key>``: one unit price replacing the default of ``gep_raster/data/prices.csv``."""

    value: float = Field(description="The unit price, in yuan per unit (in price_year yuan).")
    unit: str = Field(description=(
        "Unit of the price; must equal the default price's unit (e.g. yuan/t, yuan/m3, yuan/kWh)."))
    price_year: int = Field(description=(
        "Year whose yuan the value is in; with prices.price_index the value is moved to accounting_year."))
    source: str = Field(description="Where the value comes from (recorded in the manifest).")
    evidence: str = Field("user", description=_EVIDENCE)


class ParameterOverride(_Model):
    """``parameters.<key>``: one method parameter replacing the default of ``gep_raster/data/parameters.csv``."""

    value: float = Field(description=(
        "Value of the parameter, in the unit that gep_raster/data/parameters.csv gives for the key."))
    source: str = Field(description="Where the value comes from (recorded in the manifest).")
    evidence: str = Field("user", description=_EVIDENCE)


class PricesConfig(_Model):
    """``prices``: unit prices of the services (defaults ``gep_raster/data/prices.csv``), their overrides and an index."""

    table: str | None = Field(None, description=(
        "CSV key,value,unit,price_year,source[,evidence][,service] overriding default prices by key; each unit "
        "must equal the default's."))  # CSV with columns key,service,value,unit,price_year,source,evidence
    overrides: dict[str, PriceOverride] = Field({}, description=(
        "Price key -> replacement price, applied after prices.table."))
    price_index: str | None = Field(None, description=(
        "CSV year,index[,source] (e.g. a CPI): every price is moved from its price_year to accounting_year by the "
        "index ratio; needs accounting_year."))  # CSV year,index (e.g. CPI): prices moved from price_year to accounting_year


class EconomicAccountsConfig(_Model):
    """Provisioning (EPV) and cultural (ECV) accounts from statistics tables, allocated to pixels.

    ``table``: CSV of statistics per unit (format in :mod:`gep_raster.accounts.economic`); ``layer``: the
    ``layers.<name>`` whose ``id_field`` the table's ``unit_id`` refers to; ``exclude_outside_region``:
    subtract ``value_yuan × outside_share`` (GB/T 46869-2025); ``weight_rasters``: rasters a row may
    name in its ``weight`` column (e.g. NPP to weight crop output).
    """

    table: str = Field(description=(
        "CSV of statistics, one row per (unit, item): unit_id, account (provisioning | cultural), item, value_yuan "
        "(yuan/a), year, source, allocate_to, weight, outside_share (format in gep_raster.accounts.economic)."
        ))  # CSV of statistics per admin unit (see gep_raster/accounts/economic.py)
    layer: str = Field(description=(
        "Name of the layers.<name> whose id_field values the table's unit_id refers to (the allocation layer)."
        ))  # name of the layers.<name> whose id_field the table's unit ids refer to
    exclude_outside_region: bool = Field(False, description=(
        "Subtract value_yuan x outside_share (the value originating outside the region, GB/T 46869-2025) before "
        "allocating."))  # GB/T 46869-2025: subtract value originating outside the region
    weight_rasters: dict[str, RasterInput] = Field({}, description=(
        "Name -> raster that a row may name in its weight column (e.g. NPP to weight crop output); names are "
        "identifiers other than area."))  # name -> raster, usable in the table's `weight` column

    @field_validator("weight_rasters")
    @classmethod
    def _weight_names(cls, v):
        for name in v:
            if name == "area" or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"weight raster name '{name}' must be an identifier other than 'area'")
        return v


class ScenarioEdit(_Model):
    """One land-cover edit of a scenario: inside the polygon(s), pixels take ``to_class``.

    Exactly one of ``path`` (a polygon file, relative to the config) or ``wkt`` (an inline WKT
    Polygon/MultiPolygon) is required. Rule (see :mod:`gep_raster.analysis.scenario`): a pixel of the
    reference grid takes ``to_class`` when its **centre** lies inside a polygon; land-cover
    nodata pixels stay nodata; later edits win where edits overlap.

    Fields
    ------
    path : polygon file (GeoPackage, shapefile ...), any CRS (reprojected to the grid).
    layer : layer name inside ``path`` (GeoPackage with several layers).
    where : attribute filter ``"field == value"`` or ``"field != value"`` on the features of
        ``path`` (value quoted -> compared as text; unquoted -> as a number when it is one).
    wkt : inline polygon geometry (WKT).
    crs : CRS of ``wkt`` (e.g. ``EPSG:32650``); default: the reference grid's CRS.
    to_class : land-cover class code (0..65535) given to the pixels; it must have a legend row.
    from_classes : optional list of class codes: only pixels of these classes are edited (e.g. the
        cropland and shrub of a parcel become forest, its existing forest is left as it is).
    set_inputs : optional ``{input name: value}``: inside the same polygons, the continuous
        input ``inputs.<name>`` (e.g. ``carbon`` for an NEP/NPP raster, in that input's unit)
        takes ``value`` on the pixels this edit changes, so that inputs that do not follow the
        land cover (an observed NEP raster) change with it. The value is a user assumption: say
        where it comes from.
    """

    path: str | None = Field(None, description=(
        "Polygon file (GeoPackage, shapefile ...), any CRS (reprojected to the grid); exactly one of path and wkt."))
    layer: str | None = Field(None, description="Layer name inside path (a GeoPackage with several layers).")
    where: str | None = Field(None, description=(
        'Attribute filter "field == value" or "field != value" on the features of path (a quoted value is compared '
        "as text, an unquoted one as a number when it is one)."))
    wkt: str | None = Field(None, description=(
        "Inline Polygon/MultiPolygon geometry (WKT); exactly one of path and wkt."))
    crs: str | None = Field(None, description="CRS of wkt (e.g. EPSG:32650); null: the reference grid's CRS.")
    to_class: int = Field(ge=0, le=65535, description=(
        "Land-cover class code given to the pixels whose centre lies inside the polygon(s); it must have a legend "
        "row."))
    from_classes: list[int] | None = Field(None, description=(
        "Only pixels of these class codes are edited; null: every class (nodata pixels stay nodata)."))
    set_inputs: dict[str, float] = Field({}, description=(
        "Input name -> value: on the pixels this edit changes, the continuous input inputs.<name> (e.g. carbon) "
        "takes the value, in that input's unit (a user assumption: say where it comes from)."))

    @model_validator(mode="after")
    def _one_geometry(self):
        if (self.path is None) == (self.wkt is None):
            raise ValueError("give exactly one of 'path' (polygon file) or 'wkt' (inline polygon)")
        if self.wkt is not None and (self.where is not None or self.layer is not None):
            raise ValueError("'where' and 'layer' apply to 'path' only (an inline 'wkt' has no attributes)")
        if self.path is not None and self.crs is not None:
            raise ValueError("'crs' applies to 'wkt' only (a polygon file carries its own CRS)")
        if self.where is not None and not re.match(r"^\s*[^\s=!]+\s*(==|!=)\s*\S.*$", self.where):
            raise ValueError(f"where: '{self.where}' is not of the form \"field == value\" (or !=)")
        if self.from_classes is not None and not self.from_classes:
            raise ValueError("from_classes: give at least one class code, or leave the key out (all classes)")
        return self


class ScenarioConfig(_Model):
    """A land-cover scenario applied when reading ``inputs.land_cover`` (see :mod:`gep_raster.analysis.scenario`).

    ``edits`` are applied in order (a later edit wins where edits overlap)."""

    name: str = Field(description="Scenario name (in messages and the manifest).")
    description: str = Field("", description="Free text describing the scenario (recorded in the manifest).")
    edits: list[ScenarioEdit] = Field(min_length=1, description=(
        "Land-cover edits, applied in order (a later edit wins where edits overlap); at least one."))


def _services_config_model():
    """``services`` section: one sub-model per registered service (its module's ``Config``)."""
    from pydantic import create_model

    from .services.registry import DEFAULT_ON, REGISTRY

    fields = {}
    for name, mod in REGISTRY.items():
        default = mod.Config() if name in DEFAULT_ON else mod.Config(enabled=False)
        title = (mod.__doc__ or name).strip().splitlines()[0].rstrip(".")
        on = "on by default" if name in DEFAULT_ON else "off by default"
        fields[name] = (mod.Config, Field(default, description=f"{title} ({on})."))
    model = create_model("ServicesConfig", __base__=_Model, **fields)

    def enabled(self) -> list[str]:
        """Names of the enabled services, in registry (= computation) order."""
        return [n for n in REGISTRY if getattr(self, n).enabled]

    model.enabled = enabled
    return model


ServicesConfig = _services_config_model()


class LayerConfig(_Model):
    """A polygon layer to aggregate to (township, county, special units ...)."""

    path: str = Field(description="Polygon file (GeoPackage, shapefile ...), any CRS (reprojected to the grid).")
    id_field: str = Field(description="Attribute holding the unique id of each polygon.")
    name_field: str = Field(description="Attribute holding the name of each polygon (may equal id_field).")
    layer: str | None = Field(None, description=(
        "Layer name inside path (a GeoPackage with several layers)."))  # layer name inside a GeoPackage
    role: Literal["admin", "special_unit"] = Field("admin", description=(
        "admin: administrative units; special_unit: units that may overlap or be smaller than a pixel (protected "
        "areas, parcels), the units of the VEP account (gep vep)."))
    nests_in: str | None = Field(None, description=(
        "Name of the layer this one nests in (townships in a county): the children must add up to their parent."
        ))  # name of the layer this one nests in (townships in a county)


class HydroUnitsInput(_Model):
    """Polygon layer of hydrological units (sub-watersheds): flow routing is done unit by unit."""

    path: str = Field(description="Polygon file of the hydrological units (sub-watersheds).")
    id_field: str | None = Field(None, description="Attribute holding the unit id; null: 1-based row numbers.")


class InputsConfig(_Model):
    """``inputs``: the rasters (and polygons) of the run, each read onto the reference grid."""

    land_cover: RasterInput = Field(description=(
        "Land-cover class raster (integer class codes with a legend row each); its grid is the reference grid "
        "unless reference says dem."))
    dem: RasterInput | None = Field(None, description=(
        "Elevation raster (soil retention: slope, LS factor and flow routing)."), json_schema_extra={"unit": "m"})
    precipitation: ClimateInput | None = Field(None, description=(
        "Precipitation: annual raster (path, mm/a) or 12 monthly rasters (monthly, mm/month); needed by water "
        "conservation and soil retention."))
    et: ClimateInput | None = Field(None, description=(
        "Actual evapotranspiration: annual (path, mm/a) or 12 monthly rasters (monthly, mm/month); give et or et0, "
        "not both."))
    et0: ClimateInput | None = Field(None, description=(
        "Reference evapotranspiration ET0: annual (path, mm/a) or monthly (mm/month); ET = legend kc x ET0. "
        "Required by water_conservation method invest_awy."))
    carbon: CarbonInput = Field(CarbonInput(), description="Carbon flux of carbon sequestration (and oxygen release).")
    r_factor: RasterInput | None = Field(None, description=(
        "RUSLE rainfall erosivity R raster; when given it replaces services.soil_retention.r_method."),
        json_schema_extra={"unit": "MJ*mm/(ha*h*a)"})
    k_factor: RasterInput | None = Field(None, description=(
        "RUSLE soil erodibility K raster; null: services.soil_retention.k_method decides (EPIC from soil texture, "
        "or the constant parameter soil_retention.k_constant, an assumption)."),
        json_schema_extra={"unit": "t*ha*h/(ha*MJ*mm)"})
    c_factor: RasterInput | None = Field(None, description=(
        "RUSLE cover-management C raster (0..1); null: services.soil_retention.c_method decides (legend usle_c or "
        "NDVI, cai_2000)."))
    p_factor: RasterInput | None = Field(None, description=(
        "RUSLE support-practice P raster (0..1); null: legend column usle_p."))
    hydro_units: HydroUnitsInput | None = Field(None, description=(
        "Polygon layer of hydrological units (sub-watersheds): the LS flow routing is done unit by unit (for DEMs "
        "that do not fit in the memory budget)."
        ))  # route the LS factor per unit (large DEMs; gep_raster.terrain.hydro_units)

    @model_validator(mode="after")
    def _et(self):
        if self.et is not None and self.et0 is not None:
            raise ValueError("give either 'et' (actual ET) or 'et0' (reference ET, multiplied by legend Kc), not both")
        return self


class OutputConfig(_Model):
    """``output``: where and how the maps and tables are written."""

    dir: str = Field(description="Output folder (relative to the config file's folder).")
    lang: Literal["en", "zh"] = Field("en", description=(
        "Language of the figures' labels (titles, axes, colour bar, key, scale bar): en or zh. zh needs a CJK font "
        "(e.g. Debian fonts-wqy-microhei or fonts-noto-cjk); without one the English labels are drawn and a warning "
        "is logged."))
    report: Literal["html+pdf", "html", "off"] = Field("html+pdf", description=(
        "Accounting report written at the end of the run in report/ (gep report RUN_DIR, in output.lang): html+pdf "
        "(the PDF needs Chromium; without it only the HTML, with a warning), html, or off."))
    # block (dask chunk) side in pixels; None: chosen from processing.memory_budget_mb (gep_raster.budget)
    chunk_size: int | None = Field(None, ge=64, le=16384, description=(
        "Block (dask chunk) side; null: chosen from processing.memory_budget_mb."), json_schema_extra={"unit": "px"})
    # "cog": one Cloud-Optimized GeoTIFF per output (tiles compressed once, on the block threads, when the blocks
    # lie on the 512 px tile lattice; else GDAL's COG driver over temporary block tiles); "tiles": a VRT mosaic of
    # per-block GeoTIFF tiles; "auto": cog up to AUTO_COG_MAX_PIXELS pixels, tiles above
    layout: Literal["auto", "cog", "tiles"] = Field("auto", description=(
        "cog: one Cloud-Optimized GeoTIFF per output (compressed once when output.chunk_size is a multiple of "
        "512 or the engine chooses it; otherwise made by GDAL from temporary block tiles); tiles: a VRT mosaic per "
        "output over one GeoTIFF tile per block; auto: cog up to 50 Mpx (AUTO_COG_MAX_PIXELS), tiles above."))
    # DEFLATE level of the output rasters (GDAL's default 6; 1 about halves the compression time for ~7 % more
    # bytes); the cog layout's temporary tiles (blocks off the tile lattice) are ZSTD 1 (io_write.TEMP_TILE_CODEC)
    deflate_level: int = Field(6, ge=1, le=9, description=(
        "DEFLATE level of the output rasters, COGs and tiles (6 is GDAL's default; 1 about halves the "
        "compression time for about 7 % more bytes)."))

    def resolved_layout(self, n_pixels: int) -> str:
        if self.layout != "auto":
            return self.layout
        return "cog" if n_pixels <= AUTO_COG_MAX_PIXELS else "tiles"


#: Largest grid (pixels) written as single COGs with ``output.layout: auto`` (50 Mpx, about 7000 x 7000).
AUTO_COG_MAX_PIXELS = 50_000_000


class RemoteOptions(_Model):
    """``processing.remote``: how remote inputs (URLs, ``/vsicurl/``, ``s3://`` ...) are read (GDAL HTTP options).

    Credentials are never given here: GDAL takes them from the environment (``AWS_ACCESS_KEY_ID``,
    ``GDAL_HTTP_USERPWD``, ``GDAL_HTTP_HEADERS``...), and they are never written to the manifest."""

    max_retry: int = Field(3, ge=0, le=20, description=(
        "Retries of a failed HTTP request (GDAL_HTTP_MAX_RETRY; 429, 502, 503, 504 and time-outs)."))
    retry_delay_s: float = Field(1.0, ge=0, le=120, description=(
        "Seconds before the first retry, doubled at each further one (GDAL_HTTP_RETRY_DELAY)."),
        json_schema_extra={"unit": "s"})
    timeout_s: float = Field(60, gt=0, le=3600, description="Seconds an HTTP request may take (GDAL_HTTP_TIMEOUT).",
                             json_schema_extra={"unit": "s"})
    connect_timeout_s: float = Field(15, gt=0, le=600, description=(
        "Seconds to establish an HTTP connection (GDAL_HTTP_CONNECTTIMEOUT)."), json_schema_extra={"unit": "s"})
    cache_mb: int = Field(64, ge=0, le=65536, description=(
        "Size of GDAL's /vsicurl/ block cache (CPL_VSIL_CURL_CACHE_SIZE), shared by the remote files of a "
        "process; 0 also switches off VSI_CACHE."), json_schema_extra={"unit": "MB"})
    checksum: Literal["content", "headers"] = Field("content", description=(
        "Manifest record of an http(s) input: content = size, ETag, Last-Modified and the sha256 of the bytes "
        "(the file is streamed once more, besides the windows the run reads); headers = size, ETag and "
        "Last-Modified only (no extra download)."))
    gdal_options: dict[str, str] = Field({}, description=(
        "Further GDAL configuration options (e.g. AWS_REGION, AWS_NO_SIGN_REQUEST, GDAL_HTTP_VERSION); options "
        "holding secrets are refused: set them in the environment."))

    @field_validator("gdal_options")
    @classmethod
    def _no_secrets(cls, v):
        from .grid.remote import CREDENTIAL_OPTIONS

        bad = sorted(k for k in v if CREDENTIAL_OPTIONS.search(k))
        if bad:
            raise ValueError(f"{bad}: credentials are not accepted in the config (they would be written to the "
                             "manifest); set them as environment variables, GDAL reads them from there")
        return v


class ProcessingConfig(_Model):
    """``processing``: threads, memory budget and caches (do not change the results)."""

    workers: int | None = Field(None, ge=1, le=1024, description=(
        "Threads of the local dask scheduler; null: all cores (CLI --workers overrides)."))
    memory_budget_mb: int = Field(2048, ge=256, description=(
        "Memory budget of the run: sets the block size and limits flow routing (CLI --memory-budget overrides)."),
        json_schema_extra={"unit": "MB"})  # gep_raster.budget: chunk size and flow-routing limit
    # folder of cached exact-coverage indexes (reused across runs, years and scenarios on the same grid);
    # None: <output.dir>/.gep_state/coverage
    coverage_cache: str | None = Field(None, description=(
        "Folder of cached exact-coverage indexes, reused across runs, years and scenarios on the same grid and "
        "polygons; null: <output.dir>/.gep_state/coverage."))
    remote: RemoteOptions = Field(RemoteOptions(), description=(
        "HTTP options of remote inputs (retries, time-outs, cache, checksum); no effect on the results."))


class RunConfig(_Model):
    """The whole run configuration (every key: docs/configuration.md, generated by gep_raster.config_reference)."""

    name: str = Field(description="Run label, written into every output and the manifest.")
    description: str = Field("", description="Free text describing the run (recorded in the manifest).")
    profile: Literal[PROFILE_NAMES] | None = Field(None, description=(  # type: ignore[valid-type]
        "Method profile (gep_raster/profiles.py): sets which services run and their methods; the run's own "
        "services.* keys override it. garze_2017: the Garze 2010 account's services (oxygen from NPP); "
        "cn_guideline_2020: the 2020 national guideline's list [V2]; invest_3_20: InVEST AWY, SDR 3.20 LS on D8, "
        "Carbon, nothing else. Recorded in the manifest (profile)."))
    accounting_year: int | None = Field(None, description=(
        "Year of the accounts (recorded in the outputs); prices are moved to it by prices.price_index, which "
        "needs it."))
    reference: str = Field("land_cover", description=(
        "Input whose grid is the reference grid every input is read onto: land_cover or dem."),
        json_schema_extra={"enum": ["land_cover", "dem"]})  # input key whose grid is the reference grid
    inputs: InputsConfig = Field(description="The input rasters and polygons.")
    legend: LegendConfig = Field(description="The land-cover legend (one row per class code).")
    prices: PricesConfig = Field(PricesConfig(), description=(
        "Unit prices (defaults: gep_raster/data/prices.csv), their overrides and a price index."))
    parameters: dict[str, ParameterOverride] = Field({}, description=(
        "Method parameters replaced: key of gep_raster/data/parameters.csv -> value and source; applied after "
        "parameters_table."))  # overrides of gep_raster/data/parameters.csv
    parameters_table: str | None = Field(None, description=(
        "CSV key,value,source[,evidence][,unit] of regional parameters overriding gep_raster/data/parameters.csv "
        "(a unit given must equal the default's)."
        ))  # regional parameter table (key,value,source[,evidence]) overriding defaults
    economic_accounts: EconomicAccountsConfig | None = Field(None, description=(
        "Provisioning (EPV) and cultural (ECV) accounts from statistics tables, allocated to pixels; null: none."))
    scenario: ScenarioConfig | None = Field(None, description=(
        "Land-cover scenario applied when reading inputs.land_cover; null: the land cover as it is."))
    services: ServicesConfig = Field(ServicesConfig(), description="The regulating services and their options.")
    layers: dict[str, LayerConfig] = Field({}, description=(
        "Polygon layers the maps are aggregated to: layer name -> layer (table <output.dir>/tables/<name>.csv)."))
    output: OutputConfig = Field(description="Output folder and layout.")
    processing: ProcessingConfig = Field(ProcessingConfig(), description="Threads, memory budget and caches.")

    # not part of the YAML: where the config came from, and the folder its relative paths are resolved from
    # (the YAML's folder; for a config given as a dict, the caller's base_dir or the current folder)
    source_path: Path | None = Field(None, exclude=True)
    #: the run's own services section as written, before its profile was applied (manifest profile.overridden_by_run)
    own_services: dict | None = Field(None, exclude=True)
    config_dir: Path | None = Field(None, exclude=True)
    _stac: dict = PrivateAttr(default_factory=dict)  # config key -> StacResolution (searched once per run)
    _ref_bbox: tuple | None = PrivateAttr(None)  # reference grid extent in WGS84 (STAC search box)

    @model_validator(mode="after")
    def _cross(self):
        from .services.registry import REGISTRY

        for name in self.services.enabled():
            problems = REGISTRY[name].Service.check_config(self)
            if problems:
                raise ValueError("; ".join(problems))
        for name, layer in self.layers.items():
            if layer.nests_in is not None and layer.nests_in not in self.layers:
                raise ValueError(f"layers.{name}.nests_in: no layer named '{layer.nests_in}'")
        valid_refs = {"land_cover", "dem"}
        if self.reference not in valid_refs:
            raise ValueError(f"reference must be one of {sorted(valid_refs)}")
        return self

    # -- helpers ---------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        """Folder that relative paths are resolved from: ``config_dir``, else the YAML's folder, else the current
        folder."""
        if self.config_dir is not None:
            return self.config_dir
        return self.source_path.parent if self.source_path else Path.cwd()

    def resolve(self, p: str) -> Path:
        """Resolve a path from the config (relative to the config's folder); a URL or GDAL virtual path
        (``https://``, ``s3://``, ``/vsicurl/`` ...) comes back verbatim as a
        :class:`~gep_raster.grid.remote.RemotePath`.

        Raises ConfigError for a URL scheme GDAL cannot read."""
        from .grid.remote import RemotePath, is_remote_path

        s = expand_vars(p)
        if s.lower().startswith("file://"):
            s = urllib.parse.unquote(urllib.parse.urlparse(s).path)
        if is_remote_path(s):
            try:
                return RemotePath(s)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        path = Path(s).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)

    def resolve_many(self, p: str | list[str], key: str) -> list[Path]:
        """Resolve a file, folder (all *.tif/*.tiff inside), glob or list into a sorted list of files; a URL or GDAL
        virtual path is kept as a :class:`~gep_raster.grid.remote.RemotePath` (no glob, no folder listing: opening
        it checks it).

        Raises ConfigError naming ``key`` when nothing matches."""
        from .grid.remote import RemotePath

        if isinstance(p, StacPath):
            return self._stac_files(p.stac, key)
        items = p if isinstance(p, list) else [p]
        out: list[Path] = []
        for item in items:
            path = self.resolve(item)
            s = str(path)
            if isinstance(path, RemotePath):  # remote: opened (and checked) as it is
                out.append(path)
                continue
            if any(ch in s for ch in "*?["):
                hits = sorted(Path(h) for h in glob.glob(s))
                if not hits:
                    raise ConfigError(f"{key}: the pattern {s} matches no file")
                out.extend(hits)
            elif path.is_dir():
                hits = sorted(q for q in path.iterdir() if q.suffix.lower() in (".tif", ".tiff", ".vrt"))
                if not hits:
                    raise ConfigError(f"{key}: the folder {path} holds no .tif/.tiff/.vrt file")
                out.extend(hits)
            elif path.exists():
                out.append(path)
            else:
                raise ConfigError(f"{key}: file not found: {path}")
        return out

    def _stac_files(self, q: StacQuery, key: str) -> list:
        """The asset files of a STAC query (searched once per config key and cached; see
        :func:`gep_raster.grid.stac.search_stac`): newest item first (the mosaic's first-valid-wins order), or by
        date, oldest first, for the 12 files of ``monthly``. The bbox defaults to the reference grid's extent in
        WGS84 (none for the reference input itself)."""
        from .grid.remote import RemotePath, is_remote_path
        from .grid.stac import search_stac

        cached = self._stac.get(key)
        if cached is None:
            bbox = tuple(q.bbox) if q.bbox is not None else None
            if bbox is None and not key.startswith(f"inputs.{self.reference}."):
                bbox = self._reference_bbox_wgs84()
            catalog = expand_vars(q.catalog)
            cached = self._stac[key] = search_stac(
                key + ".stac", catalog, asset=q.asset, collection=q.collection, datetime=q.datetime, bbox=bbox,
                max_items=q.max_items, base_dir=self.base_dir, timeout_s=self.processing.remote.timeout_s)
        assets = list(cached.assets)
        if key.endswith(".monthly"):
            assets.sort(key=lambda a: (a.datetime or "", a.item_id))
        return [RemotePath(a.href) if is_remote_path(a.href) else Path(a.href) for a in assets]

    def _reference_bbox_wgs84(self) -> tuple[float, float, float, float]:
        """Extent of the reference grid in WGS84 degrees (west, south, east, north), for STAC searches."""
        from rasterio.warp import transform_bounds

        from .grid.run_inputs import reference_grid

        if self._ref_bbox is None:  # opened once per config, whatever the number of STAC inputs
            g = reference_grid(self)
            self._ref_bbox = tuple(float(x) for x in transform_bounds(g.crs, "EPSG:4326", *g.bounds,
                                                                      densify_pts=21))
        return self._ref_bbox

    @property
    def stac_resolutions(self) -> dict:
        """Config key -> :class:`gep_raster.grid.stac.StacResolution` of the STAC queries resolved so far (for the
        manifest)."""
        return dict(self._stac)

    @property
    def output_dir(self) -> Path:
        return self.resolve(self.output.dir).resolve()

    def to_json_dict(self) -> dict:
        return self.model_dump(mode="json", exclude={"source_path"})

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of the validated config."""
        return hashlib.sha256(json.dumps(self.to_json_dict(), sort_keys=True).encode()).hexdigest()


def _format_validation_error(path, exc: ValidationError, docs: str = "docs/configuration.md") -> str:
    """One line per pydantic error: ``<path>: <dotted key>: <message>``; unknown keys point to ``docs``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"] if not str(x).startswith("function-after")) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key (check the spelling against {docs})"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{path}: {loc}: {msg}")
    return "\n".join(lines)


def merge_overrides(raw: dict, overrides: dict) -> dict:
    """``raw`` with ``overrides`` merged in, mappings key by key at every depth (a value that is not a
    mapping replaces the one in ``raw``); neither argument is modified."""
    out = dict(raw)
    for k, v in overrides.items():
        out[k] = merge_overrides(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config_dict(raw: dict, *, base_dir: Path | None = None, source_path: Path | None = None,
                     where: str = "config") -> RunConfig:
    """Validate a run configuration given as a mapping with the YAML's keys.

    Parameters
    ----------
    raw : dict
        The configuration (``name``, ``inputs``, ``legend``, ``output``...).
    base_dir : Path, optional
        Folder that relative paths are resolved from (default: the current folder at the time of the call).
    source_path : Path, optional
        The YAML the mapping came from, if any (recorded in the manifest).
    where : str
        What error messages name as the source (the YAML's path, or "config").

    Raises
    ------
    ConfigError
        ``raw`` is not a mapping, or a key is missing/unknown/invalid; the message names every offending key.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of keys (name, inputs, legend, ...)")
    own = raw.get("services")
    merged = apply_profile(raw)  # raw itself when it names no (known) profile
    try:
        cfg = RunConfig.model_validate(merged)
    except ValidationError as exc:
        msg = _format_validation_error(where, exc)
        if merged is not raw:
            msg += (f" (services set by profile '{raw['profile']}', gep_raster/profiles.py: give the missing keys, "
                    "or override the profile's choice under services.*)")
        raise ConfigError(msg) from None
    cfg.source_path = source_path
    cfg.own_services = own if isinstance(own, dict) else None
    cfg.config_dir = Path(base_dir).resolve() if base_dir is not None else (
        None if source_path is not None else Path.cwd().resolve())
    return cfg


def read_yaml_file(path, what: str):
    """The content of a YAML file (configs, allocation rules, targets): mapping, list, scalar or None.

    Parameters
    ----------
    path : path-like
    what : str
        What the file is, for the messages (``config``, ``rule``, ``targets``).

    Raises
    ------
    ConfigError
        ``<what> file not found: PATH``; ``PATH: not valid YAML: ...`` (syntax error, a Python tag) or
        ``PATH: cannot read: ...`` (permissions, not UTF-8).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None


def load_config(path: str | Path, overrides: dict | None = None) -> RunConfig:
    """Read and validate a run configuration YAML.

    Parameters
    ----------
    path : str or Path
        The YAML file.
    overrides : dict, optional
        Top-level keys replaced after reading (e.g. ``{"output": {"dir": "/tmp/x"}}``).

    Raises
    ------
    ConfigError
        The file is missing, is not YAML, or a key is missing/invalid; the message names
        every offending key.
    """
    path = Path(path)
    raw = read_yaml_file(path, "config")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys (name, inputs, legend, ...)")
    if overrides:
        raw = merge_overrides(raw, overrides)
    return load_config_dict(raw, source_path=path.resolve(), where=str(path))
