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
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

from .config_base import ECOSYSTEMS, ClimateInput, RasterInput, _Model  # noqa: F401  (re-exported)


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

    method: Literal["nep", "npp", "rates", "stock_change"] = "rates"
    path: str | list[str] | None = None
    unit: Literal["t_c_per_ha", "g_c_per_m2", "t_dm_per_ha"] | None = None
    nodata: float | None = None
    # stock_change only
    pools_table: str | None = None
    code_column: str = "lucode"
    pool_columns: list[str] = ["C_above", "C_below", "C_soil", "C_dead"]
    alternate_land_cover: RasterInput | None = None
    years: float | None = Field(None, gt=0)

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

    path: str
    code_column: str = "lucode"
    columns: dict[str, str]  # legend column name -> column name in this table


class LegendConfig(_Model):
    """Land-cover legend: one row per class code with its ecosystem type and parameters."""

    path: str
    code_column: str = "code"
    columns: dict[str, str] = {}  # rename: legend column name -> column in the CSV
    join: list[TableJoin] = []


class PriceOverride(_Model):
    value: float
    unit: str
    price_year: int
    source: str
    evidence: str = "user"


class ParameterOverride(_Model):
    value: float
    source: str
    evidence: str = "user"


class PricesConfig(_Model):
    table: str | None = None  # CSV with columns key,service,value,unit,price_year,source,evidence
    overrides: dict[str, PriceOverride] = {}
    price_index: str | None = None  # CSV year,index (e.g. CPI): prices moved from price_year to accounting_year


class EconomicAccountsConfig(_Model):
    """Provisioning (EPV) and cultural (ECV) accounts from statistics tables, allocated to pixels.

    ``table``: CSV of statistics per unit (format in :mod:`gep_raster.accounts.economic`); ``layer``: the
    ``layers.<name>`` whose ``id_field`` the table's ``unit_id`` refers to; ``exclude_outside_region``:
    subtract ``value_yuan × outside_share`` (GB/T 46869-2025); ``weight_rasters``: rasters a row may
    name in its ``weight`` column (e.g. NPP to weight crop output).
    """

    table: str  # CSV of statistics per admin unit (see gep_raster/accounts/economic.py)
    layer: str  # name of the layers.<name> whose id_field the table's unit ids refer to
    exclude_outside_region: bool = False  # GB/T 46869-2025: subtract value originating outside the region
    weight_rasters: dict[str, RasterInput] = {}  # name -> raster, usable in the table's `weight` column

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

    path: str | None = None
    layer: str | None = None
    where: str | None = None
    wkt: str | None = None
    crs: str | None = None
    to_class: int = Field(ge=0, le=65535)
    from_classes: list[int] | None = None
    set_inputs: dict[str, float] = {}

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

    name: str
    description: str = ""
    edits: list[ScenarioEdit] = Field(min_length=1)


def _services_config_model():
    """``services`` section: one sub-model per registered service (its module's ``Config``)."""
    from pydantic import create_model

    from .services.registry import DEFAULT_ON, REGISTRY

    fields = {}
    for name, mod in REGISTRY.items():
        default = mod.Config() if name in DEFAULT_ON else mod.Config(enabled=False)
        fields[name] = (mod.Config, default)
    model = create_model("ServicesConfig", __base__=_Model, **fields)

    def enabled(self) -> list[str]:
        """Names of the enabled services, in registry (= computation) order."""
        return [n for n in REGISTRY if getattr(self, n).enabled]

    model.enabled = enabled
    return model


ServicesConfig = _services_config_model()


class LayerConfig(_Model):
    """A polygon layer to aggregate to (township, county, special units ...)."""

    path: str
    id_field: str
    name_field: str
    layer: str | None = None  # layer name inside a GeoPackage
    role: Literal["admin", "special_unit"] = "admin"
    nests_in: str | None = None  # name of the layer this one nests in (townships in a county)


class HydroUnitsInput(_Model):
    """Polygon layer of hydrological units (sub-watersheds): flow routing is done unit by unit."""

    path: str
    id_field: str | None = None


class InputsConfig(_Model):
    land_cover: RasterInput
    dem: RasterInput | None = None
    precipitation: ClimateInput | None = None
    et: ClimateInput | None = None
    et0: ClimateInput | None = None
    carbon: CarbonInput = CarbonInput()
    r_factor: RasterInput | None = None
    k_factor: RasterInput | None = None
    c_factor: RasterInput | None = None
    p_factor: RasterInput | None = None
    hydro_units: HydroUnitsInput | None = None  # route the LS factor per unit (large DEMs; gep_raster.terrain.hydro_units)

    @model_validator(mode="after")
    def _et(self):
        if self.et is not None and self.et0 is not None:
            raise ValueError("give either 'et' (actual ET) or 'et0' (reference ET, multiplied by legend Kc), not both")
        return self


class OutputConfig(_Model):
    dir: str
    # block (dask chunk) side in pixels; None: chosen from processing.memory_budget_mb (gep_raster.budget)
    chunk_size: int | None = Field(None, ge=64, le=16384)
    # "cog": one Cloud-Optimized GeoTIFF per output; "tiles": a VRT mosaic of per-block GeoTIFF tiles
    # (no second write); "auto": cog up to AUTO_COG_MAX_PIXELS pixels, tiles above
    layout: Literal["auto", "cog", "tiles"] = "auto"
    # DEFLATE level of the block tiles of the tiles layout (GDAL's default 6; 1 halves the tile write time for ~7 % more
    # bytes); the cog layout's temporary tiles are ZSTD 1 (io_write.TEMP_TILE_CODEC)
    deflate_level: int = Field(6, ge=1, le=9)

    def resolved_layout(self, n_pixels: int) -> str:
        if self.layout != "auto":
            return self.layout
        return "cog" if n_pixels <= AUTO_COG_MAX_PIXELS else "tiles"


#: Largest grid (pixels) written as single COGs with ``output.layout: auto`` (50 Mpx, about 7000 x 7000).
AUTO_COG_MAX_PIXELS = 50_000_000


class ProcessingConfig(_Model):
    workers: int | None = Field(None, ge=1, le=1024)
    memory_budget_mb: int = Field(2048, ge=256)  # gep_raster.budget: chunk size and flow-routing limit
    # folder of cached exact-coverage indexes (reused across runs, years and scenarios on the same grid);
    # None: <output.dir>/.gep_state/coverage
    coverage_cache: str | None = None


class RunConfig(_Model):
    """The whole run configuration (see README, section "Configuration reference")."""

    name: str
    description: str = ""
    accounting_year: int | None = None
    reference: str = "land_cover"  # input key whose grid is the reference grid
    inputs: InputsConfig
    legend: LegendConfig
    prices: PricesConfig = PricesConfig()
    parameters: dict[str, ParameterOverride] = {}  # overrides of gep_raster/data/parameters.csv
    parameters_table: str | None = None  # regional parameter table (key,value,source[,evidence]) overriding defaults
    economic_accounts: EconomicAccountsConfig | None = None
    scenario: ScenarioConfig | None = None
    services: ServicesConfig = ServicesConfig()
    layers: dict[str, LayerConfig] = {}
    output: OutputConfig
    processing: ProcessingConfig = ProcessingConfig()

    # not part of the YAML: where the config came from
    source_path: Path | None = Field(None, exclude=True)

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
        return self.source_path.parent if self.source_path else Path.cwd()

    def resolve(self, p: str) -> Path:
        """Resolve a path from the config (relative to the config's folder)."""
        path = Path(expand_vars(p)).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)

    def resolve_many(self, p: str | list[str], key: str) -> list[Path]:
        """Resolve a file, folder (all *.tif/*.tiff inside), glob or list into a sorted list of files.

        Raises ConfigError naming ``key`` when nothing matches."""
        items = p if isinstance(p, list) else [p]
        out: list[Path] = []
        for item in items:
            path = self.resolve(item)
            s = str(path)
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

    @property
    def output_dir(self) -> Path:
        return self.resolve(self.output.dir).resolve()

    def to_json_dict(self) -> dict:
        return self.model_dump(mode="json", exclude={"source_path"})

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of the validated config."""
        return hashlib.sha256(json.dumps(self.to_json_dict(), sort_keys=True).encode()).hexdigest()


def _format_validation_error(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"] if not str(x).startswith("function-after")) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against the README's configuration reference)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{path}: {loc}: {msg}")
    return "\n".join(lines)


def _merge_overrides(raw: dict, overrides: dict) -> dict:
    """``raw`` with ``overrides`` merged in, mappings key by key at every depth (a value that is not a
    mapping replaces the one in ``raw``)."""
    out = dict(raw)
    for k, v in overrides.items():
        out[k] = _merge_overrides(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


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
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys (name, inputs, legend, ...)")
    if overrides:
        raw = _merge_overrides(raw, overrides)
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(path, exc)) from None
    cfg.source_path = path.resolve()
    return cfg
