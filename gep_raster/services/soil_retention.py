"""Soil retention (土壤保持) by RUSLE: potential minus actual erosion.

Q = R·K·LS·(1 − C·P) (t/ha/a) × pixel area (Garzê GEP §2.4.2; Renard et al. 1997). LS
(``services.soil_retention.ls_method``):

* ``desmet_govers_d8`` (default): Desmet & Govers (1996) L with McCool et al. (1987) S on D8 flow
  accumulation (pyflwdir), the InVEST SDR 3.9–3.13 equation, L capped at ``l_max``;
* ``desmet_govers_mfd``: the same L on multiple-flow-direction accumulation
  (:func:`gep_raster.routing.upslope_area_mfd`, pygeoprocessing-style MFD as InVEST SDR routes);
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

from ..config_base import ECOSYSTEMS, ServiceConfigBase
from ..errors import CRSError
from .base import BuildContext, OutputSpec, ServiceBase


#: ls_method -> (routing method of gep_raster.routing.upslope_cells, input key of the upslope cell counts)
ROUTING = {"desmet_govers_d8": ("d8", "upslope"), "desmet_govers_mfd": ("mfd", "upslope_mfd"),
           "slope_based": (None, None)}


class Config(ServiceConfigBase):
    ls_method: Literal["desmet_govers_d8", "desmet_govers_mfd", "slope_based"] = "desmet_govers_d8"
    slope_length_m: float | None = Field(None, gt=0)  # slope_based only; None: the cell size
    mfd_quantize: bool = True  # desmet_govers_mfd: 4-bit flow shares as pygeoprocessing/InVEST (False: exact)
    l_max: float = Field(122.0, gt=0)  # cap on the L factor (InVEST SDR semantics)
    max_slope_length_m: float | None = Field(None, gt=0)  # None: parameter soil_retention.max_slope_length_m
    slope_length_cap: bool = True  # False: no slope-length cap (InVEST-compatible LS)
    r_method: Literal["renard_freimund_1994"] = "renard_freimund_1994"
    exclude_ecosystems: list[str] = ["water", "urban"]

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
        return self


class Service(ServiceBase):
    """Soil retention per pixel: outputs ``soil_retention_t`` (t/a per pixel), ``soil_retention_yuan`` and the
    intermediates ``ls_factor`` (-) and ``r_factor`` (MJ·mm/(ha·h·a)).

    Methods and sources: module docstring. Raises CRSError for a geographic grid (slope needs metres)."""

    name = "soil_retention"
    label = "Soil retention"

    @staticmethod
    def check_config(cfg) -> list[str]:
        out = []
        if cfg.inputs.dem is None:
            out.append("services.soil_retention is enabled but inputs.dem is missing (needed for LS)")
        if cfg.inputs.r_factor is None and cfg.inputs.precipitation is None:
            out.append("services.soil_retention needs inputs.r_factor or inputs.precipitation (R from rainfall)")
        return out

    @staticmethod
    def legend_columns(cfg) -> dict[str, tuple]:
        cols = {}
        if cfg.inputs.c_factor is None:
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
        if i.c_factor is None:
            self.luts["usle_c"] = ctx.legend.lut("usle_c")
        if i.p_factor is None:
            self.luts["usle_p"] = ctx.legend.lut("usle_p")
        self.luts["erodible"] = (1 - ctx.legend.ecosystem_lut(s.exclude_ecosystems)).astype(np.float32)
        self.flags["r_from_precip"] = i.r_factor is None
        self.flags["k_constant"] = i.k_factor is None
        if i.k_factor is None:
            self.scalars["k_constant"] = book.param("soil_retention.k_constant")
        self.scalars["l_max"] = s.l_max
        self.flags["ls_method"] = s.ls_method
        self.assumptions: list[str] = []
        #: flow routing the LS factor needs: "d8", "mfd" or None; the pipeline computes the upslope cell counts
        #: of the whole DEM with gep_raster.routing.upslope_cells(dem, transform, method=self.routing,
        #: **self.routing_options) and passes them as the input block self.routing_key
        self.routing, self.routing_key = ROUTING[s.ls_method]
        self.routing_options: dict = {}
        if self.routing == "mfd":
            self.routing_options = {"exponent": book.param("soil_retention.mfd_exponent"),
                                    "quantize": bool(s.mfd_quantize)}
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
        lam_ = book.param("soil_retention.sediment_deposition_ratio")
        rho = book.param("soil_retention.bulk_density")
        cn = book.param("soil_retention.soil_n_content")
        cp = book.param("soil_retention.soil_p_content")
        ps = book.price("soil_retention.dredging_cost")
        pn = book.price("soil_retention.nitrogen_price")
        pp = book.price("soil_retention.phosphorus_price")
        self.scalars["unit_value"] = lam_ / rho * ps + cn * pn + cp * pp  # yuan per t of retained soil
        ls_how = {
            "desmet_govers_d8": "LS: Desmet & Govers (1996) with McCool (1987) S on pyflwdir D8 flow accumulation, "
                                "as InVEST SDR 3.9-3.13; ",
            "desmet_govers_mfd": "LS: Desmet & Govers (1996) with McCool (1987) S on multiple-flow-direction "
                                 "accumulation (shares (drop/distance)^p, p = "
                                 f"{self.routing_options.get('exponent', 0):g}"
                                 + (", 4-bit shares as pygeoprocessing" if s.mfd_quantize else ", exact shares")
                                 + "), as InVEST SDR 3.9-3.13 MFD; ",
            "slope_based": "LS: grid-based USLE L = (lambda/22.13)^m (Wischmeier & Smith 1978) with lambda = "
                           f"{self.scalars.get('slope_length_m', 0):g} m per cell"
                           + (" (slope_length_m capped at max_slope_length_m)"
                              if self.flags.get("slope_length_capped") else "")
                           + " (no routing), McCool (1987) S; ",
        }[s.ls_method]
        if self.routing is not None:
            cap = (f"contributing slope length capped at {self.scalars['max_slope_length_m']:g} m; "
                   if "max_slope_length_m" in self.scalars else "no slope-length cap; ")
        else:
            cap = ""
        self.note = (
            "RUSLE Q = R*K*LS*(1 - C*P) (Garze GEP 2.4.2; Renard et al. 1997); " + ls_how + f"L capped at "
            f"{self.scalars['l_max']:g}; " + cap
            + ("R from annual precipitation (Renard & Freimund 1994); " if i.r_factor is None else "R raster; ")
            + (f"K = constant {self.scalars.get('k_constant')} (ASSUMPTION, no K raster); " if i.k_factor is None
               else "K raster; ")
            + f"not computed for ecosystems {s.exclude_ecosystems}; value per t = "
              f"lambda/rho*dredging + N*P_N + P*P_P = {self.scalars['unit_value']:.4f} yuan/t")
        self.outputs = [
            OutputSpec("soil_retention_t", self.name, "physical", "t/a per pixel",
                       "Soil retention RKLS*(1-CP) (RUSLE potential minus actual erosion), t per pixel per year"),
            OutputSpec("soil_retention_yuan", self.name, "value", "yuan/a per pixel",
                       "Value of soil retention (less sedimentation + N and P retained), yuan per pixel per year"),
            OutputSpec("ls_factor", self.name, "intermediate", "-",
                       {"desmet_govers_d8": "RUSLE LS factor (Desmet & Govers 1996, D8 accumulation)",
                        "desmet_govers_mfd": "RUSLE LS factor (Desmet & Govers 1996, MFD accumulation)",
                        "slope_based": "RUSLE LS factor (L = (lambda/22.13)^m, fixed slope length)"}[s.ls_method]),
            OutputSpec("r_factor", self.name, "intermediate", "MJ*mm/(ha*h*a)", "RUSLE R factor"),
        ]

    def needs_routing(self) -> bool:
        """True when the LS factor needs flow accumulation (``self.routing`` "d8" or "mfd")."""
        return self.routing is not None

    def input_keys(self) -> list[str]:
        keys = ["lc", "slope"]
        if self.routing is not None:
            keys += ["aspect_x", self.routing_key]
        keys.append("precip" if self.flags["r_from_precip"] else "r")
        if not self.flags["k_constant"]:
            keys.append("k")
        if "usle_c" not in self.luts:
            keys.append("c")
        if "usle_p" not in self.luts:
            keys.append("p")
        return keys

    def compute(self, blocks, row_area_m2, nodata, shared):
        from ..kernels.amount import rate_to_amount
        from ..kernels.lookup import apply_lut
        from ..kernels.soil import (ls_factor_kernel, ls_factor_slope_length_kernel, r_factor_from_annual_precip_kernel,
                                    rusle_kernel)
        from ..kernels.valuation import linear_value

        lc = blocks["lc"]
        if self.routing is None:
            ls = ls_factor_slope_length_kernel(blocks["slope"], self.scalars["slope_length_m"],
                                               l_max=self.scalars["l_max"])
        else:
            ups = blocks[self.routing_key]
            if "max_upslope_cells" in self.scalars:  # slope-length cap: hillslope length <= lambda_max
                ups = np.minimum(ups, np.float32(self.scalars["max_upslope_cells"]))
            ls = ls_factor_kernel(blocks["slope"], ups, blocks["aspect_x"], self.cell_size,
                                  l_max=self.scalars["l_max"])
        r = r_factor_from_annual_precip_kernel(blocks["precip"]) if self.flags["r_from_precip"] else blocks["r"]
        k = np.full(lc.shape, self.scalars["k_constant"], np.float32) if self.flags["k_constant"] else blocks["k"]
        c = apply_lut(lc, self.luts["usle_c"]) if "usle_c" in self.luts else blocks["c"]
        p = apply_lut(lc, self.luts["usle_p"]) if "usle_p" in self.luts else blocks["p"]
        potential, actual = rusle_kernel(r, k, ls, c, p)
        rate = (potential - actual).astype(np.float32)  # t/ha/a
        rate[nodata] = np.nan
        erodible = apply_lut(lc, self.luts["erodible"])
        mask = np.where(np.isfinite(erodible), erodible, 0).astype(np.uint8)
        q, _ = rate_to_amount(rate, 1.0, row_area_m2, mask=mask, clip=False)
        return {
            "soil_retention_t": q,
            "soil_retention_yuan": linear_value(q, [self.scalars["unit_value"]]),
            "ls_factor": np.where(nodata, np.nan, ls).astype(np.float32),
            "r_factor": np.where(nodata, np.nan, r).astype(np.float32),
        }
