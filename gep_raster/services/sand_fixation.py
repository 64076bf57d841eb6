"""Windbreak and sand fixation (防风固沙): RWEQ potential minus actual wind erosion, valued by sand-control cost.

Physical amount per pixel (kernels in :mod:`gep_raster.kernels.wind`, equations and evidence in docs/rweq.md)::

    U2   = U_h (2 / h)^(1/7)                       daily mean wind speed at 2 m from the anemometer height h
    Wf   = Σ_days U2 (U2 − U1)²   over U2 > U1     U1 = threshold_wind_speed_ms (5 m/s)
    ρ    = 348 (1.013 − 0.1183 EL + 0.0048 EL²) / T     air density, EL (km) from the DEM, T (K)
    WF   = Wf ρ / g · SW · SD                       kg/m; SD = 1 − snow-cover days / days of the wind stack
    EF   = (29.09 + 0.31 Sa + 0.17 Si + 0.33 Sa/Cl − 2.59 OM − 0.95 CaCO3) / 100
    SCF  = 1 / (1 + 0.0066 Cl² + 0.021 OM²)
    K'   = exp(1.86 Kr − 2.41 Kr^0.934),  Kr = 0.2 ΔH² / L   ΔH: 3×3 DEM relief (m), L = 2 cell sizes (m)
    C    = exp(a · FVC%)                             a per ecosystem type (legend column or defaults)
    SL   = (2 z / s²) Q_max exp(−(z/s)²),  Q_max = 109.8 P,  s = 150.71 P^−0.3711,  P = WF·EF·SCF·K'·C
    SR   = SL(C = 1) − SL(C)                         kg/m², negatives set to 0; × pixel area → t per pixel

(Fryrear et al. 1998 RWEQ Technical Bulletin; Fryrear et al. 2000; the Chinese GEP adaptation, e.g. 巩国丽 et
al. 2014: all [U] for the primary texts, [V2] public RWEQ code, see docs/rweq.md.) The wind stack is the
accounting period (one band per day of the year), so SR is t per pixel per year.

Value (Garzê GEP 2010, 白玛卓嘎, 肖燚, 欧阳志云, 王莉雁 2017, 生态学报 37(19): 6302-6312, §2.4.3 and table 3 [V])::

    V = SR / (ρ_s · h) × P_f     ρ_s = sand_fixation.bulk_density (1.28 t/m3), h = sand_fixation.cover_depth
                                 (0.1 m), P_f = sand_fixation.control_cost (3.75 yuan/m2)
"""
from __future__ import annotations

import calendar
from functools import partial
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from ..config_base import ECOSYSTEMS, RasterInput, ServiceConfigBase, StackReadOptions, _Model
from ..errors import ConfigError, RasterError, TableError
from .base import BuildContext, InputRequest, OutputSpec, ServiceBase

#: one of the ecosystem types of the legend (gep_raster.config_base.ECOSYSTEMS)
Ecosystem = Literal[ECOSYSTEMS]  # type: ignore[valid-type]

#: legend column of the vegetation coefficient a of C = exp(a FVC%) (optional; else by ecosystem type)
VEG_COEF_COLUMN = "rweq_veg_coef"
#: keys of the service's own input blocks
WF_KEY, TEMP_KEY, SW_KEY, SNOW_KEY, FVC_KEY = "wind_wf", "wind_temp", "wind_sw", "wind_snow_days", "wind_fvc"
SOIL_KEYS = {"sand": "wind_sand", "silt": "wind_silt", "clay": "wind_clay", "organic_matter": "wind_om",
             "organic_carbon": "wind_oc", "caco3": "wind_caco3"}
#: the public RWEQ codes floor clay at 0.1 % (Sa/Cl is undefined at 0)           [V2: docs/rweq.md]
CLAY_FLOOR_PCT = 0.1
#: organic matter = 1.724 × organic carbon (the van Bemmelen factor)          [U: conventional, not read]
OM_PER_OC = 1.724
#: the most days a snow-cover or wind stack may hold in one year
DAYS_MAX = 366


class WindSpeedConfig(StackReadOptions):
    """``services.sand_fixation.wind_speed``: daily mean wind speed of the accounting year, m/s at ``height_m``:
    multi-band rasters, every band of every file (files in sorted order) one day."""

    path: str | list[str] = Field(description=(
        "Daily mean wind-speed rasters (file, folder, glob or list): every band of every file, files in sorted "
        "order, is one day of the accounting year (365 or 366 bands in all: the days of accounting_year when it is "
        "given), in m/s."),
        json_schema_extra={"unit": "m/s"})
    height_m: float = Field(10.0, gt=0, le=200, description=(
        "Height of the wind speeds above ground (10 m: the meteorological standard); converted to 2 m by the 1/7 "
        "power law."), json_schema_extra={"unit": "m"})


class WindSoilConfig(_Model):
    """``services.sand_fixation.soil``: topsoil texture, organic matter (or carbon) and CaCO3 rasters."""

    sand: RasterInput = Field(description="Sand content raster, in unit.")
    silt: RasterInput = Field(description="Silt content raster, in unit.")
    clay: RasterInput = Field(description="Clay content raster, in unit.")
    organic_matter: RasterInput | None = Field(None, description=(
        "Soil organic matter raster, in unit; give this or organic_carbon."))
    organic_carbon: RasterInput | None = Field(None, description=(
        "Soil organic carbon raster, in unit, read as organic matter = 1.724 x organic carbon (an assumption "
        "recorded in the manifest); give this or organic_matter."))
    caco3: RasterInput | None = Field(None, description=(
        "Calcium carbonate raster, in unit; null: 0 (as the public Chinese RWEQ scripts; an assumption recorded)."))
    unit: Literal["percent", "g/kg"] = Field("percent", description=(
        "Unit of every soil raster: percent, or g/kg (SoilGrids 2.0 sand/silt/clay)."))

    @model_validator(mode="after")
    def _one_organic(self):
        if (self.organic_matter is None) == (self.organic_carbon is None):
            raise ValueError("give exactly one of organic_matter and organic_carbon")
        return self


class Config(ServiceConfigBase):
    """``services.sand_fixation``: the RWEQ inputs and options (off by default)."""

    wind_speed: WindSpeedConfig | None = Field(None, description=(
        "Daily mean wind speed of the accounting year (required when enabled)."))
    air_temperature: RasterInput | None = Field(None, description=(
        "Mean air temperature of the year (degC), for the air density; or give air_temperature_c."),
        json_schema_extra={"unit": "degC"})
    air_temperature_c: float | None = Field(None, ge=-60, le=50, description=(
        "Mean air temperature (degC) used everywhere when no air_temperature raster is given."),
        json_schema_extra={"unit": "degC"})
    soil_wetness: RasterInput | None = Field(None, description=(
        "Soil wetness factor SW (0..1) of RWEQ; null: 1 (no moisture reduction, an assumption recorded)."))
    snow_cover_days: RasterInput | None = Field(None, description=(
        "Days of the year with snow deeper than 25.4 mm; null: 0 (SD = 1, an assumption recorded)."),
        json_schema_extra={"unit": "d/a"})
    soil: WindSoilConfig | None = Field(None, description="Topsoil rasters (required when enabled).")
    fvc: RasterInput | None = Field(None, description=(
        "Fractional vegetation cover raster, in fvc_unit (required when enabled)."))
    fvc_unit: Literal["fraction", "percent"] = Field("fraction", description=(
        "Unit of the fvc raster: fraction (0..1) or percent (0..100); C = exp(a x FVC in percent)."))
    vegetation_coefficient_column: str = Field(VEG_COEF_COLUMN, description=(
        "Legend column with the coefficient a (<= 0) of C = exp(a FVC%) per class; absent: a by ecosystem type "
        "(forest -0.1535, grassland -0.1151, shrub -0.0921, bare -0.0768, cropland -0.0438; wetland as grassland) "
        "[V2 public code, docs/rweq.md]."))
    roughness: Literal["dem_relief", "constant"] = Field("dem_relief", description=(
        "Surface roughness K': dem_relief (Smith-Carson, Kr = 0.2 dH^2 / L from the 3x3 DEM relief dH in m over "
        "L = 2 cell sizes; needs a projected grid) or constant (k_prime)."))
    k_prime: float = Field(1.0, ge=0, le=1, description="K' of roughness: constant (1 = no roughness reduction).")
    downwind_distance_m: float = Field(50.0, gt=0, le=10000, description=(
        "Downwind distance z of the soil loss SL (m); the Chinese raster accounts use 50."),
        json_schema_extra={"unit": "m"})
    threshold_wind_speed_ms: float = Field(5.0, ge=0, le=30, description=(
        "Threshold wind speed U1 at 2 m (m/s) of the wind factor."), json_schema_extra={"unit": "m/s"})
    exclude_ecosystems: list[Ecosystem] = Field(["water", "urban", "wetland"], description=(
        "Ecosystem types without wind erosion (sand fixation 0)."))

    @model_validator(mode="after")
    def _inputs_when_enabled(self):
        if not self.enabled:
            return self
        missing = [k for k in ("wind_speed", "soil", "fvc") if getattr(self, k) is None]
        if missing:
            raise ValueError(f"enabled needs {', '.join(missing)} (RWEQ inputs: daily wind speed, topsoil rasters, "
                             "fractional vegetation cover; see docs/rweq.md)")
        if self.air_temperature is None and self.air_temperature_c is None:
            raise ValueError("enabled needs air_temperature (raster, degC) or air_temperature_c (one value, degC) "
                             "for the air density of the weather factor")
        return self


def _wind_factor_reduce(stack: np.ndarray, *, height_m: float, threshold: float, label: str) -> np.ndarray:
    """(n_days, h, w) float32 daily wind speeds at ``height_m`` -> (h, w) float32 Wf (m3/s3 summed over days).
    Raises RasterError naming the input for negative or implausibly high speeds."""
    from ..kernels.wind import wind_factor, wind_speed_to_2m

    fin = stack[np.isfinite(stack)]
    if fin.size and (fin.min() < 0 or fin.max() > 75):
        raise RasterError(f"{label}: wind speeds {fin.min():g}..{fin.max():g} m/s lie outside 0..75 m/s (wrong "
                          "unit, scale or nodata?)")
    return wind_factor(wind_speed_to_2m(stack, height_m), threshold=threshold).astype(np.float32)


def _check_range(name: str, a: np.ndarray, lo: float, hi: float, unit: str) -> None:
    fin = a[np.isfinite(a)]
    if fin.size and (fin.min() < lo or fin.max() > hi):
        raise RasterError(f"{name}: values {fin.min():g}..{fin.max():g} lie outside {lo:g}..{hi:g} {unit} (wrong "
                          "unit, scale or nodata?)")


class Service(ServiceBase):
    """Windbreak and sand fixation per pixel: ``sand_fixation_t`` (t/a per pixel), the potential and actual wind
    erosion ``wind_erosion_potential_t_ha`` / ``wind_erosion_actual_t_ha`` (t/ha/a) and ``sand_fixation_yuan``
    (yuan/a per pixel). RWEQ (module docstring)."""

    name = "sand_fixation"
    label = "Windbreak and sand fixation"

    def configure(self, ctx: BuildContext) -> None:
        from ..grid.io_read import band_count

        cfg, c, legend, book = ctx.cfg, ctx.cfg.services.sand_fixation, ctx.legend, ctx.book
        key = "services.sand_fixation"
        self._requests: dict[str, InputRequest] = {}
        # wind: every band of every file one day
        files = cfg.resolve_many(c.wind_speed.path, f"{key}.wind_speed.path")
        stack = []
        for f in files:
            stack += [(f, b) for b in range(1, band_count(f, f"{key}.wind_speed.path") + 1)]
        want = (366 if calendar.isleap(cfg.accounting_year) else 365) if cfg.accounting_year else None
        if len(stack) != want if want else not 365 <= len(stack) <= DAYS_MAX:
            raise ConfigError(f"{key}.wind_speed.path: {len(stack)} bands in {len(files)} file(s) "
                              f"({[f.name for f in files]}); one band per day of the accounting year is needed "
                              f"({want or '365 or 366'})")
        self.scalars["n_days"] = float(len(stack))
        self._requests[WF_KEY] = InputRequest(
            f"{key}.wind_speed", c.wind_speed, stack=stack,
            reduce=partial(_wind_factor_reduce, height_m=c.wind_speed.height_m,
                           threshold=c.threshold_wind_speed_ms,
                           label=f"{key}.wind_speed ({_paths(c.wind_speed.path)})"),
            label="RWEQ wind factor Wf from daily wind speed")
        self.flags["temperature_raster"] = c.air_temperature is not None
        if c.air_temperature is not None:
            self._requests[TEMP_KEY] = InputRequest(f"{key}.air_temperature", c.air_temperature)
        else:
            self.scalars["temperature_c"] = float(c.air_temperature_c)
        for opt, k, what in (("soil_wetness", SW_KEY, "SW = 1 everywhere (no soil-moisture reduction of the weather "
                                                       "factor: wind erosion and sand fixation are upper values)"),
                             ("snow_cover_days", SNOW_KEY, "no snow cover (SD = 1)")):
            spec = getattr(c, opt)
            self.flags[opt] = spec is not None
            if spec is not None:
                self._requests[k] = InputRequest(f"{key}.{opt}", spec)
            else:
                self.assumptions.append(f"sand fixation: {key}.{opt} not given: {what}")
        self._configure_soil(c)
        self._requests[FVC_KEY] = InputRequest(f"{key}.fvc", c.fvc)
        self.flags["fvc_unit"] = c.fvc_unit
        #: input key -> its name in value errors: the config key and the file(s)
        self.flags["labels"] = {k: f"{r.config_key} ({_paths(r.spec.path)})" for k, r in self._requests.items()}
        self._configure_roughness(ctx, c)
        self._configure_vegetation(legend, c)
        self.luts["erodible"] = (1 - legend.ecosystem_lut(list(c.exclude_ecosystems))).astype(np.float32)
        self.scalars["z"] = float(c.downwind_distance_m)
        rho = book.param("sand_fixation.bulk_density")
        depth = book.param("sand_fixation.cover_depth")
        self.scalars["unit_value"] = self.value_term("sand_fixation_t",
                                                     {"sand_fixation.control_cost": 1.0 / (rho * depth)}, book)
        self.outputs = [
            OutputSpec("sand_fixation_t", self.name, "physical", "t/a per pixel",
                       "Windbreak and sand fixation: RWEQ potential minus actual wind erosion, t per pixel per year"),
            OutputSpec("wind_erosion_potential_t_ha", self.name, "intermediate", "t/ha/a",
                       "RWEQ potential wind erosion (bare soil, C = 1) at the downwind distance, t/ha/a"),
            OutputSpec("wind_erosion_actual_t_ha", self.name, "intermediate", "t/ha/a",
                       "RWEQ actual wind erosion (with vegetation cover) at the downwind distance, t/ha/a"),
            OutputSpec("sand_fixation_yuan", self.name, "value", "yuan/a per pixel",
                       "Value of windbreak and sand fixation (sand-control cost of the area the sand would cover), "
                       "yuan per pixel per year"),
        ]
        self.note = (
            "RWEQ (Fryrear et al. 1998/2000 [U]; Chinese GEP adaptation [U]; equations from public RWEQ code [V2], "
            "docs/rweq.md): SR = SL(C=1) - SL(C) at z = "
            f"{c.downwind_distance_m:g} m, Wf from {len(stack)} daily wind speeds at {c.wind_speed.height_m:g} m "
            f"(1/7 power law to 2 m, U1 = {c.threshold_wind_speed_ms:g} m/s), C = exp(a FVC%) with a "
            f"{self.flags['coefficients']}, K' {c.roughness}; value = SR / ({rho:g} t/m3 x {depth:g} m) x "
            "sand_fixation.control_cost (Garze GEP 2010 sec. 2.4.3 [V])")

    def _configure_soil(self, c) -> None:
        """Soil rasters (texture, organic matter or carbon, CaCO3) as own inputs, with their assumptions."""
        key = "services.sand_fixation"
        soil = c.soil
        for part in ("sand", "silt", "clay", "organic_matter", "organic_carbon", "caco3"):
            spec = getattr(soil, part)
            if spec is not None:
                self._requests[SOIL_KEYS[part]] = InputRequest(f"{key}.soil.{part}", spec)
        self.flags["soil_unit"] = soil.unit
        self.flags["organic"] = "organic_matter" if soil.organic_matter is not None else "organic_carbon"
        self.flags["caco3"] = soil.caco3 is not None
        if soil.organic_matter is None:
            self.assumptions.append(f"sand fixation: organic matter = {OM_PER_OC} x organic carbon "
                                    f"({key}.soil.organic_carbon; the van Bemmelen factor, an assumption)")
        if soil.caco3 is None:
            self.assumptions.append(f"sand fixation: {key}.soil.caco3 not given: CaCO3 = 0 in the erodible fraction "
                                    "(as the public Chinese RWEQ scripts; calcareous soils get a higher EF)")

    def _configure_roughness(self, ctx: BuildContext, c) -> None:
        """K': from the 3x3 DEM relief (ConfigError on a geographic grid) or one constant."""
        key = "services.sand_fixation"
        self.flags["roughness"] = c.roughness
        if c.roughness == "dem_relief":
            if ctx.geographic:
                raise ConfigError(f"{key}.roughness: dem_relief needs a projected reference grid (the relief length "
                                  "L is 2 cell sizes in metres); reproject, or set roughness: constant with k_prime")
            self.scalars["relief_length_m"] = 2.0 * ctx.cell_size
            self.assumptions.append(
                f"sand fixation: K' from the 3x3 DEM relief dH (m) over L = {2 * ctx.cell_size:g} m, Kr = 0.2 dH^2/L "
                "in metres (the unit RWEQ's Smith-Carson form expects was not read in its source [U]; in cm K' "
                "would be much lower, docs/rweq.md)")
        else:
            self.scalars["k_prime"] = float(c.k_prime)
            self.assumptions.append(f"sand fixation: K' = {c.k_prime:g} everywhere ({key}.k_prime)")

    def _configure_vegetation(self, legend, c) -> None:
        """Coefficient a of C = exp(a FVC%) per class: the legend column (TableError when bad) or by ecosystem type."""
        from ..kernels.wind import VEGETATION_COEFFICIENTS

        key = "services.sand_fixation"
        col = c.vegetation_coefficient_column
        n = int(legend.codes.max()) + 2
        coef = np.full(n, np.nan, np.float32)
        if col in legend.table.columns:
            a = np.asarray(legend.table[col], dtype=np.float64)
            bad = legend.table.index[~np.isfinite(a) | (a > 0) | (a < -1)].tolist()
            if bad:
                raise TableError(f"legend {legend.label}: column '{col}' ({key}.vegetation_coefficient_column, a of "
                                 f"C = exp(a FVC%)) must be a number in [-1, 0]; bad for class code(s) {bad}")
            coef[legend.codes] = a.astype(np.float32)
            self.flags["coefficients"] = f"legend column '{col}'"
        else:
            defaults = {**VEGETATION_COEFFICIENTS, "wetland": VEGETATION_COEFFICIENTS["grassland"],
                        "urban": VEGETATION_COEFFICIENTS["bare"], "water": 0.0}
            for eco in ECOSYSTEMS:
                coef[legend.codes] = np.where(legend.ecosystem_lut([eco])[legend.codes] > 0, defaults[eco],
                                              coef[legend.codes])
            self.flags["coefficients"] = "by ecosystem type (kernels.wind.VEGETATION_COEFFICIENTS)"
            self.assumptions.append(
                "sand fixation: vegetation coefficient a of C = exp(a FVC%) by ecosystem type (forest -0.1535, "
                "grassland and wetland -0.1151, shrub -0.0921, bare and urban -0.0768, cropland -0.0438; public code "
                f"[V2], the Chinese papers not read [U]); add legend column '{col}' for own values")
        self.luts["veg_coef"] = coef

    @staticmethod
    def legend_columns(cfg) -> dict[str, tuple]:
        return {}

    def input_keys(self) -> list[str]:
        keys = ["lc", "dem", WF_KEY, FVC_KEY] + [k for k in self._requests if k.startswith("wind_")
                                                  and k not in (WF_KEY, FVC_KEY)]
        if self.flags["roughness"] == "dem_relief":
            keys.append("relief")
        return list(dict.fromkeys(keys))

    def input_requests(self) -> dict[str, InputRequest]:
        return dict(self._requests)

    def compute(self, blocks, row_area_m2, nodata, shared):
        from ..kernels import wind
        from ..kernels.lookup import apply_lut
        from ..kernels.valuation import linear_value

        key = "services.sand_fixation"
        lc = blocks["lc"]
        f64 = partial(np.asarray, dtype=np.float64)
        dem = f64(blocks["dem"])
        _check_range("inputs.dem (RWEQ air density)", dem, -500, 9000, "m")
        temp = f64(blocks[TEMP_KEY]) if self.flags["temperature_raster"] else self.scalars["temperature_c"]
        if self.flags["temperature_raster"]:
            _check_range(self.flags["labels"][TEMP_KEY], temp, -60, 50, "degC")
        rho = wind.air_density_rweq(dem, temp)
        sw = 1.0
        if self.flags["soil_wetness"]:
            sw = f64(blocks[SW_KEY])
            _check_range(self.flags["labels"][SW_KEY], sw, 0, 1, "(SW)")
        sd = 1.0
        if self.flags["snow_cover_days"]:
            days = f64(blocks[SNOW_KEY])
            _check_range(self.flags["labels"][SNOW_KEY], days, 0, self.scalars["n_days"], "d/a")
            sd = 1.0 - days / self.scalars["n_days"]
        wf = wind.weather_factor(f64(blocks[WF_KEY]), rho, sw, sd)
        # soil: percent
        scale = 0.1 if self.flags["soil_unit"] == "g/kg" else 1.0
        unit = "g/kg" if scale != 1.0 else "%"
        soil = {}
        for part in ("sand", "silt", "clay", self.flags["organic"]) + (("caco3",) if self.flags["caco3"] else ()):
            a = f64(blocks[SOIL_KEYS[part]])
            _check_range(self.flags["labels"][SOIL_KEYS[part]], a, 0, 100 / scale, unit)
            soil[part] = a * scale
        om = soil["organic_matter"] if "organic_matter" in soil else OM_PER_OC * soil["organic_carbon"]
        om = np.minimum(om, 100.0)
        caco3 = soil.get("caco3", 0.0)
        tot = soil["sand"] + soil["silt"] + soil["clay"]
        with np.errstate(invalid="ignore"):
            over = tot > 101.0
        if np.any(over):
            raise RasterError(f"{key}.soil: sand + silt + clay reaches {float(tot[over].max()):g} % (> 100 %: wrong "
                              "unit, or the layers are not of one soil map?)")
        clay = np.maximum(soil["clay"], CLAY_FLOOR_PCT)
        ef = wind.erodible_fraction(soil["sand"], soil["silt"], clay, om, caco3)
        scf = wind.soil_crust_factor(soil["clay"], om)
        if self.flags["roughness"] == "dem_relief":
            kr = wind.terrain_roughness_kr(f64(blocks["relief"]), self.scalars["relief_length_m"])
            kp = wind.roughness_factor_smith_carson(kr)
        else:
            kp = self.scalars["k_prime"]
        fvc = f64(blocks[FVC_KEY])
        if self.flags["fvc_unit"] == "fraction":
            _check_range(self.flags["labels"][FVC_KEY], fvc, 0, 1, "(fraction; set fvc_unit: percent for 0..100)")
            fvc = fvc * 100.0
        else:
            _check_range(self.flags["labels"][FVC_KEY], fvc, 0, 100, "%")
        a = apply_lut(lc, self.luts["veg_coef"]).astype(np.float64)
        cveg = wind.vegetation_factor_fvc(fvc, np.where(np.isnan(a), 0.0, a))
        sr, sl_s, sl = wind.sand_fixation(wf, ef, scf, kp, cveg, z=self.scalars["z"], clip_negative=True)
        erodible = apply_lut(lc, self.luts["erodible"])  # 0 on excluded types, NaN on nodata classes
        area = np.asarray(row_area_m2, np.float64).reshape(-1, 1)
        q = (wind.kg_m2_to_t_per_pixel(sr, area) * erodible).astype(np.float32)
        pot = (wind.kg_m2_to_t_ha(sl_s) * erodible).astype(np.float32)
        act = (wind.kg_m2_to_t_ha(sl) * erodible).astype(np.float32)
        for arr in (q, pot, act):
            arr[nodata] = np.nan
        return {"sand_fixation_t": q, "wind_erosion_potential_t_ha": pot, "wind_erosion_actual_t_ha": act,
                "sand_fixation_yuan": linear_value(q, [self.scalars["unit_value"]])}


def _paths(p) -> str:
    """A config path value (string or list) as text for messages."""
    return ", ".join(map(str, p)) if isinstance(p, list) else str(p)
