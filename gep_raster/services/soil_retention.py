"""Soil retention (土壤保持) by RUSLE: potential minus actual erosion.

Q = R·K·LS·(1 − C·P) (t/ha/a) × pixel area (Garzê GEP §2.4.2; Renard et al. 1997). LS
(``services.soil_retention.ls_method``):

* ``desmet_govers_d8`` (default): Desmet & Govers (1996) L with McCool et al. (1987) S on D8 flow
  accumulation (pyflwdir), the InVEST SDR 3.9–3.13 equation, L capped at ``l_max``;
* ``desmet_govers_mfd``: the same L on multiple-flow-direction accumulation
  (:func:`gep_raster.terrain.routing.upslope_area_mfd`, pygeoprocessing-style MFD as InVEST SDR routes);
* ``slope_based``: no routing, L = (λ/22.13)^m with one slope length λ (``slope_length_m``, default the
  cell size; Wischmeier & Smith 1978), same m and S.

With routing, the contributing hillslope length is capped at ``max_slope_length_m`` (``slope_length_cap``).
R from annual precipitation (Renard & Freimund 1994) when no R raster is given; K constant
(parameter ``soil_retention.k_constant``, an assumption) when no K raster is given; C and P from
the legend unless rasters are given. Value per t = λ/ρ·dredging cost + C_N·P_N + C_P·P_P (Garzê).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..config_base import ECOSYSTEMS, RasterInput, ServiceConfigBase, StackReadOptions, _Model
from ..errors import ConfigError, CRSError, InputError
from .base import BuildContext, InputRequest, OutputSpec, ServiceBase


#: ls_method values of earlier versions and what replaces them
_RENAMED = {
    "desmet_govers_d8": "ls_method: invest_3_13 with routing: d8_flood (the same L formula and D8; the slope and the "
                        "aspect term now come from the pit-filled DEM as in InVEST)",
    "desmet_govers_mfd": "ls_method: invest_3_13 with routing: mfd (MFD is now pygeoprocessing's, as InVEST routes)",
}
#: LS methods that need flow routing
ROUTED = ("invest_3_13", "invest_3_20")


class SoilTextureConfig(_Model):
    """``services.soil_retention.soil_texture``: the rasters of the EPIC K factor (``k_method: epic``).

    Sand, silt and clay in ``texture_unit`` (``percent``, or ``g/kg`` as SoilGrids 2.0), organic carbon in
    ``oc_unit`` (``percent``, ``g/kg``, ``dg/kg`` as SoilGrids 2.0 ``soc``, ``fraction``); ``china_correction``
    the Zhang Keli et al. (2007) regression applied to K_EPIC in US units (``us_units``) or SI units
    (``si_units``), or none (plain EPIC, Williams 1995)."""

    sand: RasterInput = Field(description="Sand content raster, in texture_unit.")
    silt: RasterInput = Field(description="Silt content raster, in texture_unit.")
    clay: RasterInput = Field(description="Clay content raster, in texture_unit.")
    organic_carbon: RasterInput = Field(description="Soil organic carbon raster, in oc_unit.")
    texture_unit: Literal["percent", "g/kg"] = Field("percent", description=(
        "Unit of sand, silt and clay: percent, or g/kg (SoilGrids 2.0)."))
    oc_unit: Literal["percent", "g/kg", "dg/kg", "fraction"] = Field("percent", description=(
        "Unit of organic_carbon: percent, g/kg, dg/kg (SoilGrids 2.0 soc) or fraction."))
    china_correction: Literal["us_units", "si_units"] | None = Field(None, description=(
        "Zhang Keli et al. (2007) regression applied to K_EPIC in US units (us_units) or SI units (si_units); "
        "null: plain EPIC (Williams 1995)."))


class DailyPrecipitationConfig(StackReadOptions):
    """``services.soil_retention.daily_precipitation`` (``r_method: zhang_2002_daily``): one multi-band raster
    per calendar year, one band per day (365, or 366 in a leap year), daily rainfall in mm/d. ``years``: the
    calendar year of each file in the sorted file order; None reads a 4-digit year (1900-2099) from each name."""

    path: str | list[str] = Field(description=(
        "Daily rainfall rasters (file, folder, glob or list): one multi-band file per calendar year, one band per "
        "day (365 or 366), in mm/d."), json_schema_extra={"unit": "mm/d"})
    years: list[int] | None = Field(None, description=(
        "Calendar year of each file, in sorted file order; null: a 4-digit year (1900-2099) read from each name."))


class VegetationCoverConfig(_Model):
    """``services.soil_retention.vegetation_cover`` (``c_method: cai_2000``): an NDVI raster and the NDVI of bare
    soil and of full cover of the dimidiate pixel model (often the 5 % and 95 % NDVI of the study area)."""

    ndvi: RasterInput = Field(description="NDVI raster (-1..1).")
    ndvi_soil: float = Field(ge=-1, le=1, description=(
        "NDVI of bare soil (e.g. the 5 % NDVI of the study area); must be below ndvi_veg."))
    ndvi_veg: float = Field(ge=-1, le=1, description="NDVI of full vegetation cover (e.g. the 95 % NDVI).")

    @model_validator(mode="after")
    def _order(self):
        if self.ndvi_veg <= self.ndvi_soil:
            raise ValueError(f"ndvi_veg ({self.ndvi_veg}) must be greater than ndvi_soil ({self.ndvi_soil})")
        return self


#: R methods (used when no inputs.r_factor raster is given)
R_METHODS = ("wischmeier_monthly", "zhang_2002_daily", "renard_freimund_1994")


class Config(ServiceConfigBase):
    ls_method: Literal["invest_3_13", "invest_3_20", "slope_based"] = Field("invest_3_13", description=(
        "LS factor: invest_3_13 (InVEST SDR 3.9-3.13 L on routed flow accumulation), invest_3_20 (InVEST "
        "3.14-3.20 L), slope_based (no routing, one slope length slope_length_m)."))
    routing: Literal["d8", "mfd", "d8_flood"] = Field("d8", description=(
        "Flow routing of the routed LS methods: d8 (steepest descent, as pygeoprocessing), mfd (multiple flow "
        "direction, InVEST SDR's default), d8_flood (priority-flood D8)."))  # flow routing of the routed LS methods
    threshold_flow_accumulation: float | None = Field(None, gt=0, description=(
        "Routed LS methods: cells with a flow accumulation above this number of cells are streams and excluded "
        "(as InVEST SDR); null: no streams."), json_schema_extra={"unit": "cells"})
    slope_length_m: float | None = Field(None, gt=0, description=(
        "slope_based only: the slope length lambda; null: the cell size (an assumption)."),
        json_schema_extra={"unit": "m"})  # slope_based only; None: the cell size
    l_max: float = Field(122.0, gt=0, description=(
        "Cap on the L factor (InVEST SDR semantics)."))  # cap on the L factor (InVEST SDR semantics)
    max_slope_length_m: float | None = Field(None, gt=0, description=(
        "Cap on the contributing hillslope length when slope_length_cap is true; null: parameter "
        "soil_retention.max_slope_length_m."), json_schema_extra={"unit": "m"})
    slope_length_cap: bool = Field(True, description=(
        "Cap the hillslope length at max_slope_length_m; false: no cap (InVEST's LS)."))
    r_method: Literal["wischmeier_monthly", "zhang_2002_daily", "renard_freimund_1994"] = Field(
        "wischmeier_monthly", description=(
            "R factor when no inputs.r_factor is given: wischmeier_monthly (12 monthly precipitation rasters), "
            "zhang_2002_daily (daily rainfall, daily_precipitation), renard_freimund_1994 (US annual-precipitation "
            "regression, an assumption outside the US)."))
    daily_precipitation: DailyPrecipitationConfig | None = Field(None, description=(
        "Daily rainfall of r_method zhang_2002_daily (required there, not read otherwise)."))
    k_method: Literal["auto", "raster", "epic", "constant"] = Field("auto", description=(
        "K factor: raster (inputs.k_factor), epic (from soil_texture), constant (parameter "
        "soil_retention.k_constant, an assumption); auto: raster if inputs.k_factor, else epic if soil_texture, "
        "else constant."))
    soil_texture: SoilTextureConfig | None = Field(None, description=(
        "Soil texture rasters of k_method epic."))  # k_method epic
    c_method: Literal["auto", "legend", "raster", "cai_2000"] = Field("auto", description=(
        "C factor: legend (column usle_c), raster (inputs.c_factor), cai_2000 (from NDVI, vegetation_cover); "
        "auto: raster if inputs.c_factor, else cai_2000 if vegetation_cover, else legend."))
    vegetation_cover: VegetationCoverConfig | None = Field(None, description=(
        "NDVI raster and end members of c_method cai_2000."))  # c_method cai_2000
    exclude_ecosystems: list[str] = Field(["water", "urban"], description=(
        "Ecosystem types where soil retention is not computed (0); each one of forest, shrub, grassland, wetland, "
        "cropland, urban, water, bare."))

    @field_validator("ls_method", mode="before")
    @classmethod
    def _renamed(cls, v):
        if v in _RENAMED:
            raise ValueError(f"ls_method '{v}' was renamed: use {_RENAMED[v]}")
        return v

    @field_validator("exclude_ecosystems")
    @classmethod
    def _eco(cls, v):
        bad = [e for e in v if e not in ECOSYSTEMS]
        if bad:
            raise ValueError(f"unknown ecosystem type(s) {bad}; allowed: {list(ECOSYSTEMS)}")
        return v

    @model_validator(mode="after")
    def _method_keys(self):
        if self.slope_length_m is not None and self.ls_method != "slope_based":
            raise ValueError("slope_length_m is only used by ls_method 'slope_based' "
                             f"(ls_method is '{self.ls_method}')")
        for key, method_key, method in (("daily_precipitation", "r_method", "zhang_2002_daily"),
                                        ("soil_texture", "k_method", "epic"),
                                        ("vegetation_cover", "c_method", "cai_2000")):
            given, chosen = getattr(self, key) is not None, getattr(self, method_key) == method
            if chosen and not given:
                raise ValueError(f"{method_key} '{method}' needs services.soil_retention.{key}")
            if given and not chosen and not (method_key != "r_method" and getattr(self, method_key) == "auto"):
                raise ValueError(f"services.soil_retention.{key} is only read by {method_key} '{method}' "
                                 f"({method_key} is '{getattr(self, method_key)}')")
        if self.threshold_flow_accumulation is not None and self.ls_method not in ROUTED:
            raise ValueError("threshold_flow_accumulation needs a routed ls_method (invest_3_13 or invest_3_20), "
                             f"not '{self.ls_method}'")
        return self


def r_method_of(cfg) -> str:
    """The R method a run uses: ``raster`` (inputs.r_factor given) or ``services.soil_retention.r_method``."""
    return "raster" if cfg.inputs.r_factor is not None else cfg.services.soil_retention.r_method


def k_method_of(cfg) -> str:
    """The K method a run uses; ``auto``: ``raster`` with inputs.k_factor, ``epic`` with soil_texture, else
    ``constant`` (parameter soil_retention.k_constant, an ASSUMPTION)."""
    s = cfg.services.soil_retention
    if s.k_method != "auto":
        return s.k_method
    if cfg.inputs.k_factor is not None:
        return "raster"
    return "epic" if s.soil_texture is not None else "constant"


def c_method_of(cfg) -> str:
    """The C method a run uses; ``auto``: ``raster`` with inputs.c_factor, ``cai_2000`` with vegetation_cover,
    else ``legend`` (column usle_c)."""
    s = cfg.services.soil_retention
    if s.c_method != "auto":
        return s.c_method
    if cfg.inputs.c_factor is not None:
        return "raster"
    return "cai_2000" if s.vegetation_cover is not None else "legend"


R_LABEL = {
    "wischmeier_monthly": "R = 17.02 x sum_i 1.735*10^(1.5*lg(Pi^2/P) - 0.8188) from 12 monthly precipitation rasters "
                          "(Wischmeier & Smith 1978 monthly form as used in Chinese accounts; SI factor Foster et al. "
                          "1981)",
    "zhang_2002_daily": "R from daily rainfall >= 12 mm, half-month model of Zhang Wenbo, Xie Yun & Liu Baoyuan 2002",
    "renard_freimund_1994": "R from annual precipitation by the US regression of Renard & Freimund 1994",
    "raster": "R raster (inputs.r_factor)",
}
#: parameter rows read by each computed R, K and C method (key in gep_raster/data/parameters.csv)
METHOD_PARAMETERS = {
    "wischmeier_monthly": ("r_monthly_a", "r_monthly_b", "r_monthly_c", "r_us_to_si"),
    "zhang_2002_daily": ("r_zhang_threshold_mm", "r_zhang_beta0", "r_zhang_beta_pd", "r_zhang_beta_py",
                         "r_zhang_alpha_a", "r_zhang_alpha_b"),
    "epic": ("k_us_to_si", "k_zhang_intercept", "k_zhang_slope"),
    "cai_2000": ("c_cai_a", "c_cai_b", "c_cai_fvc_max"),
}
_YEAR_IN_NAME = r"(?<!\d)(19\d{2}|20\d{2})(?!\d)"
#: own input keys of the computed factors
SOIL_TEXTURE_KEYS = {"sand": "soil_sand", "silt": "soil_silt", "clay": "soil_clay", "organic_carbon": "soil_oc"}


LS_LABEL = {"invest_3_20": "InVEST SDR 3.14-3.20 form", "invest_3_13": "Desmet & Govers 1996, InVEST 3.9-3.13 form",
            "slope_based": "L = (lambda/22.13)^m, fixed slope length"}
ROUTING_LABEL = {"d8": "D8 steepest descent (pygeoprocessing flow_dir_d8, as InVEST SDR D8)",
                 "mfd": "MFD (pygeoprocessing flow_dir_mfd, InVEST SDR's default)",
                 "d8_flood": "D8 of the priority flood (pyflwdir; not steepest descent)"}


class Service(ServiceBase):
    """Soil retention per pixel: outputs ``soil_retention_t`` (t/a per pixel), ``soil_retention_yuan`` and the
    intermediates ``ls_factor`` (-) and ``r_factor`` (MJ·mm/(ha·h·a)).

    Methods and sources: module docstring. Raises CRSError for a geographic grid (slope needs metres)."""

    name = "soil_retention"
    label = "Soil retention"

    @staticmethod
    def check_config(cfg) -> list[str]:
        out = []
        s, i = cfg.services.soil_retention, cfg.inputs
        if i.dem is None:
            out.append("services.soil_retention is enabled but inputs.dem is missing (needed for LS)")
        r = r_method_of(cfg)
        if r in ("wischmeier_monthly", "renard_freimund_1994") and i.precipitation is None:
            out.append(f"services.soil_retention.r_method '{r}' needs inputs.precipitation; give it, an R raster "
                       "(inputs.r_factor) or daily rainfall (r_method: zhang_2002_daily)")
        elif r == "wischmeier_monthly" and i.precipitation.monthly is None:
            out.append("services.soil_retention.r_method 'wischmeier_monthly' (the default) needs 12 monthly "
                       "precipitation rasters (inputs.precipitation.monthly), but inputs.precipitation gives one "
                       "annual raster: give the monthly rasters, an R raster (inputs.r_factor), or set "
                       "r_method: renard_freimund_1994 (the US annual-precipitation regression, an ASSUMPTION "
                       "outside the US)")
        if s.k_method == "raster" and i.k_factor is None:
            out.append("services.soil_retention.k_method 'raster' needs inputs.k_factor")
        if s.k_method in ("epic", "constant") and i.k_factor is not None:
            out.append(f"services.soil_retention.k_method '{s.k_method}' but inputs.k_factor is given: remove one")
        if s.c_method == "raster" and i.c_factor is None:
            out.append("services.soil_retention.c_method 'raster' needs inputs.c_factor")
        if s.c_method in ("legend", "cai_2000") and i.c_factor is not None:
            out.append(f"services.soil_retention.c_method '{s.c_method}' but inputs.c_factor is given: remove one")
        if s.k_method == "auto" and i.k_factor is not None and s.soil_texture is not None:
            out.append("services.soil_retention: both inputs.k_factor and soil_texture are given; set k_method "
                       "(raster or epic)")
        if s.c_method == "auto" and i.c_factor is not None and s.vegetation_cover is not None:
            out.append("services.soil_retention: both inputs.c_factor and vegetation_cover are given; set c_method "
                       "(raster or cai_2000)")
        return out

    @staticmethod
    def legend_columns(cfg) -> dict[str, tuple]:
        cols = {}
        if c_method_of(cfg) == "legend":
            cols["usle_c"] = (0.0, 1.0, "-", "RUSLE cover-management factor C")
        if cfg.inputs.p_factor is None:
            cols["usle_p"] = (0.0, 1.0, "-", "RUSLE support-practice factor P")
        return cols

    def configure(self, ctx: BuildContext) -> None:
        s, i, book = ctx.cfg.services.soil_retention, ctx.cfg.inputs, ctx.book
        if ctx.geographic:
            raise CRSError("soil retention needs a projected grid (metres) for the slope and LS factor; the "
                           "reference grid is geographic (degrees). Reproject the land cover and DEM to a projected "
                           "CRS (e.g. the local UTM zone) or disable services.soil_retention")
        self.cell_size = float(ctx.cell_size)
        problems = self.check_config(ctx.cfg)
        if problems:
            raise ConfigError("; ".join(problems))
        self.flags["r_method"], self.flags["k_method"] = r_method_of(ctx.cfg), k_method_of(ctx.cfg)
        self.flags["c_method"] = c_method_of(ctx.cfg)
        if self.flags["c_method"] == "legend":
            self.luts["usle_c"] = ctx.legend.lut("usle_c")
        if i.p_factor is None:
            self.luts["usle_p"] = ctx.legend.lut("usle_p")
        self.luts["erodible"] = (1 - ctx.legend.ecosystem_lut(s.exclude_ecosystems)).astype(np.float32)
        self.assumptions: list[str] = []
        self._requests: dict[str, InputRequest] = {}
        for method in (self.flags["r_method"], self.flags["k_method"], self.flags["c_method"]):
            for key in METHOD_PARAMETERS.get(method, ()):
                self.scalars[key] = book.param(f"soil_retention.{key}")
        self._configure_r(ctx)
        self._configure_k_c(ctx)
        self._configure_ls(ctx)
        self._configure_value(book)
        self.note = self._method_note(s, i)
        self.outputs = self._output_specs(s)

    def _configure_k_c(self, ctx: BuildContext) -> None:
        """K: the constant (an assumption) or the EPIC soil-texture inputs; C: the NDVI input of Cai et al. 2000."""
        s, book = ctx.cfg.services.soil_retention, ctx.book
        if self.flags["k_method"] == "constant":
            self.scalars["k_constant"] = book.param("soil_retention.k_constant")
            self.assumptions.append(
                f"soil retention: K = {self.scalars['k_constant']:g} t*ha*h/(ha*MJ*mm) everywhere (parameter "
                "soil_retention.k_constant, an ASSUMPTION: no K raster and no soil texture rasters); soil retention "
                "is proportional to K")
        elif self.flags["k_method"] == "epic":
            t = s.soil_texture
            for part, key in SOIL_TEXTURE_KEYS.items():
                self._requests[key] = InputRequest(f"services.soil_retention.soil_texture.{part}", getattr(t, part))
        if self.flags["c_method"] == "cai_2000":
            self._requests["soil_ndvi"] = InputRequest("services.soil_retention.vegetation_cover.ndvi",
                                                       s.vegetation_cover.ndvi)
        self.flags["soil_texture"], self.flags["vegetation_cover"] = s.soil_texture, s.vegetation_cover

    def _configure_ls(self, ctx: BuildContext) -> None:
        """LS: method, flow routing and its options, the hillslope-length cap, the fixed slope length."""
        s, book = ctx.cfg.services.soil_retention, ctx.book
        self.scalars["l_max"] = s.l_max
        self.flags["ls_method"] = s.ls_method
        #: flow routing the LS factor needs ("d8", "mfd", "d8_flood" or None) and its options; the pipeline routes
        #: the DEM with gep_raster.terrain.routing.route(dem, transform, method=self.routing, **self.routing_options)
        #: and passes the products it names (upslope, filled_dem, flow_aspect, stream) as input blocks
        self.routing = s.routing if s.ls_method in ROUTED else None
        self.routing_options: dict = {}
        self.flags["streams"] = s.threshold_flow_accumulation is not None
        if self.flags["streams"]:
            self.routing_options["threshold_flow_accumulation"] = float(s.threshold_flow_accumulation)
        lam_cap = None
        if s.slope_length_cap:
            lam_cap = s.max_slope_length_m or book.param("soil_retention.max_slope_length_m")
            self.scalars["max_slope_length_m"] = lam_cap
            if self.routing is not None:
                # A_in = (cells - 1) * D^2 <= (lambda_max - D) * D  <=>  cells <= lambda_max / D
                self.scalars["max_upslope_cells"] = max(lam_cap / ctx.cell_size, 1.0)
        if s.ls_method == "slope_based":
            lam = s.slope_length_m if s.slope_length_m is not None else float(ctx.cell_size)
            if s.slope_length_m is None:
                self.assumptions.append(
                    f"services.soil_retention.ls_method 'slope_based': slope length = the cell size "
                    f"({lam:g} m), the grid convention of one slope per cell, not a measured field slope length "
                    "(ASSUMPTION; set services.soil_retention.slope_length_m)")
            self.flags["slope_length_capped"] = lam_cap is not None and lam > lam_cap
            if self.flags["slope_length_capped"]:
                lam = lam_cap  # the hillslope-length cap applies to the fixed length too
            self.scalars["slope_length_m"] = lam

    def _configure_value(self, book) -> None:
        """Unit value of retained soil, yuan/t: less sedimentation (SDR / bulk density x dredging cost) + N and P
        retained (content x fertiliser price)."""
        lam_ = book.param("soil_retention.sediment_deposition_ratio")
        rho = book.param("soil_retention.bulk_density")
        cn = book.param("soil_retention.soil_n_content")
        cp = book.param("soil_retention.soil_p_content")
        # yuan per t of retained soil = lambda/rho x dredging cost + N x P_N + P x P_P
        self.scalars["unit_value"] = self.value_term("soil_retention_t", {
            "soil_retention.dredging_cost": lam_ / rho, "soil_retention.nitrogen_price": cn,
            "soil_retention.phosphorus_price": cp}, book)

    def _output_specs(self, s) -> list[OutputSpec]:
        """Physical, value and intermediate outputs (K and C rasters when computed here)."""
        outputs = [
            OutputSpec("soil_retention_t", self.name, "physical", "t/a per pixel",
                       "Soil retention RKLS*(1-CP) (RUSLE potential minus actual erosion), t per pixel per year"),
            OutputSpec("soil_retention_yuan", self.name, "value", "yuan/a per pixel",
                       "Value of soil retention (less sedimentation + N and P retained), yuan per pixel per year"),
            OutputSpec("ls_factor", self.name, "intermediate", "-", f"RUSLE LS factor ({LS_LABEL[s.ls_method]})"),
            OutputSpec("r_factor", self.name, "intermediate", "MJ*mm/(ha*h*a)", "RUSLE R factor"),
            OutputSpec("potential_erosion", self.name, "intermediate", "t/(ha*a)",
                       "Potential soil loss RKLS (no cover, no practice), t/ha/a; nodata on stream cells"),
            OutputSpec("actual_erosion", self.name, "intermediate", "t/(ha*a)",
                       "Actual soil loss RKLS*C*P (USLE), t/ha/a; nodata on stream cells"),
        ]
        if self.flags["k_method"] == "epic":
            outputs.append(OutputSpec("k_factor", self.name, "intermediate", "t*ha*h/(ha*MJ*mm)",
                                      "RUSLE K factor by EPIC from the soil texture rasters"))
        if self.flags["c_method"] == "cai_2000":
            outputs.append(OutputSpec("c_factor", self.name, "intermediate", "-",
                                      "RUSLE C factor from vegetation cover (Cai et al. 2000)"))
        return outputs

    def _configure_r(self, ctx: BuildContext) -> None:
        """The R factor's input: a stack of 12 monthly or of daily rainfall rasters, annual precipitation or an R
        raster. Raises ConfigError naming the key (wrong number of monthly files, an unreadable daily file, a
        year without all its days, no year in a file name)."""
        from functools import partial

        from ..kernels import rusle_factors as rf

        cfg, s, sc = ctx.cfg, ctx.cfg.services.soil_retention, self.scalars
        method = self.flags["r_method"]
        if method == "wischmeier_monthly":
            spec = cfg.inputs.precipitation
            files = cfg.resolve_many(spec.monthly, "inputs.precipitation.monthly")
            if len(files) != 12:
                raise ConfigError(f"inputs.precipitation.monthly: r_method 'wischmeier_monthly' needs 12 monthly "
                                  f"rasters, found {len(files)}: {[f.name for f in files]}")
            fn = partial(rf.r_factor_monthly_wischmeier, a=sc["r_monthly_a"], b=sc["r_monthly_b"],
                         c=sc["r_monthly_c"], us_to_si=sc["r_us_to_si"])
            self._requests["soil_r"] = InputRequest("inputs.precipitation.monthly", spec,
                                                    stack=[(f, spec.band) for f in files], reduce=fn,
                                                    label="R by the monthly Wischmeier formula")
        elif method == "zhang_2002_daily":
            stack, years = self._daily_stack(cfg, s.daily_precipitation)
            fn = partial(rf.r_factor_daily_zhang2002, years=np.asarray(years, np.int64),
                         threshold_mm=sc["r_zhang_threshold_mm"], beta0=sc["r_zhang_beta0"],
                         beta_pd=sc["r_zhang_beta_pd"], beta_py=sc["r_zhang_beta_py"],
                         alpha_a=sc["r_zhang_alpha_a"], alpha_b=sc["r_zhang_alpha_b"])
            self._requests["soil_r"] = InputRequest("services.soil_retention.daily_precipitation",
                                                    s.daily_precipitation, stack=stack, reduce=fn,
                                                    label="R by the daily model of Zhang et al. 2002")
            self.flags["r_years"] = sorted(set(years))
        elif method == "renard_freimund_1994":
            self.assumptions.append(
                "soil retention: R from annual precipitation by the US regression of Renard & Freimund (1994), "
                "fitted on US stations (an ASSUMPTION outside the US; Chinese accounts use monthly or daily "
                "rainfall: r_method wischmeier_monthly or zhang_2002_daily)")

    @staticmethod
    def _daily_stack(cfg, d) -> tuple[list, list[int]]:
        import calendar
        import re

        from ..grid.io_read import band_count

        key = "services.soil_retention.daily_precipitation"
        files = cfg.resolve_many(d.path, f"{key}.path")
        if d.years is not None and len(d.years) != len(files):
            raise ConfigError(f"{key}.years lists {len(d.years)} years for {len(files)} files")
        stack, years = [], []
        for n, f in enumerate(files):
            if d.years is not None:
                year = int(d.years[n])
            else:
                hits = re.findall(_YEAR_IN_NAME, f.name)
                if len(set(hits)) != 1:
                    raise ConfigError(f"{key}: cannot read one calendar year from the file name {f.name}; give "
                                      f"{key}.years (one year per file, in sorted file order)")
                year = int(hits[0])
            count = band_count(f, key)
            want = 366 if calendar.isleap(year) else 365
            if count != want:
                raise ConfigError(f"{key}: {f.name} (year {year}) has {count} bands; expected one band per day "
                                  f"({want})")
            stack += [(f, b) for b in range(1, count + 1)]
            years += [year] * count
        if len(set(years)) != len(files):
            raise ConfigError(f"{key}: two files have the same year {sorted(years)}")
        return stack, years

    def input_requests(self) -> dict[str, InputRequest]:
        return dict(self._requests)

    def _method_note(self, s, i) -> str:
        ls_how = {
            "invest_3_20": "LS: InVEST SDR 3.14-3.20 (A = sqrt((FA-1)*D^2), x = |sin t|+|cos t|)",
            "invest_3_13": "LS: Desmet & Govers (1996) as InVEST SDR 3.9-3.13 (A = (FA-1)*D^2, x = flow-weighted "
                           "aspect term)",
            "slope_based": "LS: grid-based USLE L = (lambda/22.13)^m (Wischmeier & Smith 1978) with lambda = "
                           f"{self.scalars.get('slope_length_m', 0):g} m per cell"
                           + (" (slope_length_m capped at max_slope_length_m)"
                              if self.flags.get("slope_length_capped") else "")
                           + " (no routing), Horn slope of the DEM",
        }[s.ls_method]
        parts = ["RUSLE Q = R*K*LS*(1 - C*P) (Garze GEP 2.4.2; Renard et al. 1997)", ls_how]
        if self.routing is not None:
            parts.append(f"McCool (1987) S; slope (percent, pygeoprocessing rule) and routing on the pit-filled DEM; "
                         f"routing {ROUTING_LABEL[self.routing]}")
            parts.append(f"contributing slope length capped at {self.scalars['max_slope_length_m']:g} m"
                         if "max_slope_length_m" in self.scalars else "no slope-length cap")
            if self.flags["streams"]:
                parts.append(f"stream cells (flow accumulation > {s.threshold_flow_accumulation:g} cells) excluded "
                             "(RKLS nodata, retention 0), as InVEST SDR")
        parts.append(f"L capped at {self.scalars['l_max']:g}")
        parts.append(R_LABEL[self.flags["r_method"]]
                     + (f" (years {self.flags['r_years']})" if "r_years" in self.flags else ""))
        parts.append({"constant": f"K = constant {self.scalars.get('k_constant')} (ASSUMPTION, no K raster)",
                      "raster": "K raster (inputs.k_factor)",
                      "epic": "K by EPIC (Williams 1995) from sand, silt, clay and organic carbon rasters"
                              + (f", Zhang Keli et al. 2007 correction ({s.soil_texture.china_correction})"
                                 if s.soil_texture and s.soil_texture.china_correction else "")}[self.flags["k_method"]])
        parts.append({"legend": "C from the legend (usle_c)", "raster": "C raster (inputs.c_factor)",
                      "cai_2000": "C = 0.6508 - 0.3436 lg(FVC%) (Cai Chongfa et al. 2000), FVC from NDVI "
                                  "(dimidiate pixel model)"}[self.flags["c_method"]])
        parts.append(f"not computed for ecosystems {s.exclude_ecosystems}")
        parts.append(f"value per t = lambda/rho*dredging + N*P_N + P*P_P = {self.scalars['unit_value']:.4f} yuan/t")
        return "; ".join(parts)

    def needs_routing(self) -> bool:
        """True when the LS factor needs flow routing (``self.routing`` "d8", "mfd" or "d8_flood")."""
        return self.routing is not None

    def input_keys(self) -> list[str]:
        keys = ["lc"]
        if self.routing is None:
            keys.append("slope")
        else:
            keys += ["slope_pct_filled", "upslope"]
            if self.flags["ls_method"] == "invest_3_13":
                keys.append("flow_aspect")
            if self.flags["streams"]:
                keys.append("stream")
        keys.append({"renard_freimund_1994": "precip", "raster": "r"}.get(self.flags["r_method"], "soil_r"))
        if self.flags["k_method"] == "raster":
            keys.append("k")
        elif self.flags["k_method"] == "epic":
            keys += list(SOIL_TEXTURE_KEYS.values())
        if self.flags["c_method"] == "raster":
            keys.append("c")
        elif self.flags["c_method"] == "cai_2000":
            keys.append("soil_ndvi")
        if "usle_p" not in self.luts:
            keys.append("p")
        return keys

    def _ls(self, blocks):
        from ..kernels.soil import ls_factor_invest_3_20_kernel, ls_factor_kernel, ls_factor_slope_length_kernel

        if self.routing is None:
            return ls_factor_slope_length_kernel(blocks["slope"], self.scalars["slope_length_m"],
                                                 l_max=self.scalars["l_max"])
        ups = blocks["upslope"]
        if "max_upslope_cells" in self.scalars:  # slope-length cap: hillslope length <= lambda_max
            ups = np.minimum(ups, np.float32(self.scalars["max_upslope_cells"]))
        pct = blocks["slope_pct_filled"]
        if self.flags["ls_method"] == "invest_3_20":
            return ls_factor_invest_3_20_kernel(pct, ups, self.cell_size, l_max=self.scalars["l_max"])
        tan = (pct.astype(np.float64) / 100.0).astype(np.float32)
        return ls_factor_kernel(tan, ups, blocks["flow_aspect"], self.cell_size, l_max=self.scalars["l_max"])

    def compute(self, blocks, row_area_m2, nodata, shared):
        from ..kernels.amount import rate_to_amount
        from ..kernels.lookup import apply_lut
        from ..kernels.soil import r_factor_from_annual_precip_kernel, rusle_kernel
        from ..kernels.valuation import linear_value

        lc = blocks["lc"]
        ls = self._ls(blocks)
        r = {"renard_freimund_1994": lambda: r_factor_from_annual_precip_kernel(blocks["precip"]),
             "raster": lambda: blocks["r"]}.get(self.flags["r_method"], lambda: blocks["soil_r"])()
        k = self._k(blocks, lc.shape)
        c = self._c(blocks, lc)
        p = apply_lut(lc, self.luts["usle_p"]) if "usle_p" in self.luts else blocks["p"]
        potential, actual = rusle_kernel(r, k, ls, c, p)
        rate = (potential - actual).astype(np.float32)  # t/ha/a
        rate[nodata] = np.nan
        erodible = apply_lut(lc, self.luts["erodible"])
        mask = np.where(np.isfinite(erodible), erodible, 0).astype(np.uint8)
        if self.flags["streams"]:  # stream cells: no hillslope erosion (InVEST SDR: RKLS nodata there)
            on_stream = blocks["stream"] == 1
            mask[on_stream] = 0
            potential[on_stream] = np.nan
            actual[on_stream] = np.nan
        potential[nodata] = np.nan
        actual[nodata] = np.nan
        q, _ = rate_to_amount(rate, 1.0, row_area_m2, mask=mask, clip=False)
        out_k = {}
        if self.flags["k_method"] == "epic":
            out_k["k_factor"] = np.where(nodata, np.nan, k).astype(np.float32)
        if self.flags["c_method"] == "cai_2000":
            out_k["c_factor"] = np.where(nodata, np.nan, c).astype(np.float32)
        return {
            **out_k,
            "soil_retention_t": q,
            "soil_retention_yuan": linear_value(q, [self.scalars["unit_value"]]),
            "ls_factor": np.where(nodata, np.nan, ls).astype(np.float32),
            "r_factor": np.where(nodata, np.nan, r).astype(np.float32),
            "potential_erosion": potential,
            "actual_erosion": actual,
        }

    def _k(self, blocks, shape):
        from ..kernels.rusle_factors import k_factor_epic

        m, sc = self.flags["k_method"], self.scalars
        if m == "constant":
            return np.full(shape, sc["k_constant"], np.float32)
        if m == "raster":
            return blocks["k"]
        t = self.flags["soil_texture"]
        try:
            return k_factor_epic(*(blocks[k] for k in SOIL_TEXTURE_KEYS.values()), texture_unit=t.texture_unit,
                                 oc_unit=t.oc_unit, china_correction=t.china_correction, us_to_si=sc["k_us_to_si"],
                                 zhang_intercept=sc["k_zhang_intercept"], zhang_slope=sc["k_zhang_slope"])
        except ValueError as e:
            raise InputError(f"services.soil_retention.soil_texture (sand, silt, clay, organic_carbon): {e}") from None

    def _c(self, blocks, lc):
        from ..kernels.lookup import apply_lut
        from ..kernels.rusle_factors import c_factor_cai2000, fractional_vegetation_cover

        m, sc = self.flags["c_method"], self.scalars
        if m == "legend":
            return apply_lut(lc, self.luts["usle_c"])
        if m == "raster":
            return blocks["c"]
        v = self.flags["vegetation_cover"]
        try:
            fvc = fractional_vegetation_cover(blocks["soil_ndvi"], v.ndvi_soil, v.ndvi_veg)
            return c_factor_cai2000(fvc, a=sc["c_cai_a"], b=sc["c_cai_b"], fvc_max=sc["c_cai_fvc_max"])
        except ValueError as e:
            raise InputError(f"services.soil_retention.vegetation_cover.ndvi: {e}") from None
