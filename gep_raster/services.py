"""The four regulating services of GEP-R, per pixel: physical quantities and values.

:class:`ServiceModel` holds everything a block computation needs (legend look-up tables,
prices, parameters, method switches) and exposes one pure function,
:meth:`ServiceModel.compute_block`, that turns the input blocks of one chunk into every
output block of that chunk (all services in one pass). The same function runs on whole numpy
arrays (:meth:`ServiceModel.compute_numpy`) and on dask arrays
(:meth:`ServiceModel.compute_dask`, ``map_blocks`` plus ``map_overlap`` with depth 1 for the
3×3 terrain terms), so the numpy path and the dask path give identical results for any chunking.

Methods (defaults = the Chinese GEP method, see README "Methods"):

* water conservation: water balance Q = (P − α·P − ET)·A (m3/a), value Q × reservoir cost;
* soil retention: RUSLE R·K·LS·(1 − C·P) (t/a), LS by Desmet & Govers (1996) on D8 flow
  accumulation (as InVEST SDR), value = λ/ρ·dredging cost + N and P content × prices;
* carbon sequestration: t CO2/a from NEP (×44/12), NPP (LY/T stoichiometry, 1.63 t CO2/t dry
  matter), per-class rates, or carbon-stock change between two land-cover maps; value × CO2 price;
* air purification: capacity method, per-class uptake of SO2, NOx and dust (kg/ha/a) × area,
  value × treatment cost per pollutant.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import RunConfig
from .kernels.amount import rate_to_amount
from .kernels.lookup import apply_lut
from .kernels.valuation import linear_value
from .kernels.water import water_conservation
from .tables import Legend, PriceBook

CO2_PER_C = 44.0 / 12.0


@dataclass(frozen=True)
class OutputSpec:
    """One output raster of a run."""

    key: str
    service: str
    kind: str  # physical | value | gep_r | intermediate | diagnostic
    unit: str
    description: str
    write: bool = True

    @property
    def path(self) -> str:
        folder = {"physical": "physical", "value": "value", "gep_r": ".", "intermediate": "intermediate"}[self.kind]
        return f"rasters/{folder}/{self.key}.tif".replace("/./", "/")


SERVICE_LABELS = {
    "water_conservation": "Water conservation",
    "soil_retention": "Soil retention",
    "carbon_sequestration": "Carbon sequestration",
    "air_purification": "Air purification",
}


@dataclass
class ServiceModel:
    """Parameters and method choices of a run, ready for block computation.

    Build it with :meth:`from_config`. Attributes are plain numpy arrays and floats so the
    object pickles cheaply to dask workers.
    """

    services: list[str]
    outputs: list[OutputSpec]
    luts: dict[str, np.ndarray]
    scalars: dict[str, float]
    flags: dict[str, object]
    cell_size: float
    notes: dict[str, str] = field(default_factory=dict)

    # ---------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: RunConfig, legend: Legend, book: PriceBook, *, cell_size: float,
                    geographic: bool) -> "ServiceModel":
        s, i = cfg.services, cfg.inputs
        services = s.enabled()
        luts: dict[str, np.ndarray] = {}
        scalars: dict[str, float] = {}
        flags: dict[str, object] = {}
        notes: dict[str, str] = {}
        outs: list[OutputSpec] = []
        luts["defined"] = _defined_lut(legend)

        if "water_conservation" in services:
            luts["runoff_coef"] = legend.lut("runoff_coef")
            flags["et_is_et0"] = i.et0 is not None
            if i.et0 is not None:
                luts["kc"] = legend.lut("kc")
            flags["wc_clip"] = s.water_conservation.negative_values == "clip"
            scalars["wc_price"] = book.price("water_conservation.reservoir_cost")
            notes["water_conservation"] = (
                "Water balance Q = (P - alpha*P - ET) * A (Garze GEP eq. 3; HJ 1173-2021 A.1 family); "
                + ("ET = Kc * ET0 (Kc per class from the legend); " if i.et0 is not None else "ET = actual ET raster; ")
                + ("negative balances clipped to 0 (deficit reported in the manifest)"
                   if flags["wc_clip"] else "negative balances kept"))
            outs += [
                OutputSpec("water_conservation_m3", "water_conservation", "physical", "m3/a per pixel",
                           "Water conservation (water balance P - R - ET), m3 per pixel per year"),
                OutputSpec("water_conservation_yuan", "water_conservation", "value", "yuan/a per pixel",
                           "Value of water conservation (reservoir construction cost), yuan per pixel per year"),
                OutputSpec("water_deficit_m3", "water_conservation", "diagnostic", "m3/a per pixel",
                           "Volume of negative water balance (ET > P - R)", write=False),
                OutputSpec("precipitation_mm", "water_conservation", "intermediate", "mm/a",
                           "Annual precipitation P on the reference grid"),
                OutputSpec("et_mm", "water_conservation", "intermediate", "mm/a",
                           "Evapotranspiration ET used in the water balance (actual ET or Kc*ET0)"),
            ]
        if "soil_retention" in services:
            if geographic:
                from .errors import CRSError

                raise CRSError("soil retention needs a projected grid (metres) for the slope and LS factor; "
                               "the reference grid is geographic (degrees). Reproject the land cover and DEM to a "
                               "projected CRS (e.g. the local UTM zone) or disable services.soil_retention")
            if i.c_factor is None:
                luts["usle_c"] = legend.lut("usle_c")
            if i.p_factor is None:
                luts["usle_p"] = legend.lut("usle_p")
            luts["erodible"] = 1 - legend.ecosystem_lut(s.soil_retention.exclude_ecosystems)
            flags["r_from_precip"] = i.r_factor is None
            flags["k_constant"] = i.k_factor is None
            if i.k_factor is None:
                scalars["k_constant"] = book.param("soil_retention.k_constant")
            scalars["l_max"] = s.soil_retention.l_max
            if s.soil_retention.slope_length_cap:
                lam = s.soil_retention.max_slope_length_m or book.param("soil_retention.max_slope_length_m")
                # A_in = (cells - 1) * D^2 <= (lambda_max - D) * D  <=>  cells <= lambda_max / D
                scalars["max_upslope_cells"] = max(lam / cell_size, 1.0)
                scalars["max_slope_length_m"] = lam
            lam = book.param("soil_retention.sediment_deposition_ratio")
            rho = book.param("soil_retention.bulk_density")
            cn = book.param("soil_retention.soil_n_content")
            cp = book.param("soil_retention.soil_p_content")
            ps = book.price("soil_retention.dredging_cost")
            pn = book.price("soil_retention.nitrogen_price")
            pp = book.price("soil_retention.phosphorus_price")
            scalars["sr_unit_value"] = lam / rho * ps + cn * pn + cp * pp  # yuan per t of retained soil
            scalars["sr_unit_value_sediment"] = lam / rho * ps
            scalars["sr_unit_value_n"] = cn * pn
            scalars["sr_unit_value_p"] = cp * pp
            notes["soil_retention"] = (
                "RUSLE Q = R*K*LS*(1 - C*P) (Garze GEP 2.4.2; Renard et al. 1997); LS: Desmet & Govers (1996) "
                "with McCool (1987) S on pyflwdir D8 flow accumulation, as InVEST SDR; "
                + (f"contributing slope length capped at {scalars['max_slope_length_m']:g} m; "
                   if "max_slope_length_m" in scalars else "no slope-length cap; ")
                + ("R from annual precipitation (Renard & Freimund 1994); " if i.r_factor is None else "R raster; ")
                + (f"K = constant {scalars.get('k_constant')} (ASSUMPTION, no K raster); " if i.k_factor is None
                   else "K raster; ")
                + f"not computed for ecosystems {s.soil_retention.exclude_ecosystems}; value per t = "
                  f"lambda/rho*dredging + N*P_N + P*P_P = {scalars['sr_unit_value']:.4f} yuan/t")
            outs += [
                OutputSpec("soil_retention_t", "soil_retention", "physical", "t/a per pixel",
                           "Soil retention RKLS*(1-CP) (RUSLE potential minus actual erosion), t per pixel per year"),
                OutputSpec("soil_retention_yuan", "soil_retention", "value", "yuan/a per pixel",
                           "Value of soil retention (less sedimentation + N and P retained), yuan per pixel per year"),
                OutputSpec("ls_factor", "soil_retention", "intermediate", "-", "RUSLE LS factor (Desmet & Govers 1996)"),
                OutputSpec("r_factor", "soil_retention", "intermediate", "MJ*mm/(ha*h*a)", "RUSLE R factor"),
            ]
        if "carbon_sequestration" in services:
            c = i.carbon
            flags["carbon_method"] = c.method
            flags["carbon_clip"] = s.carbon_sequestration.negative_values == "clip"
            if c.method == "rates":
                luts["carbon_rate"] = legend.lut("carbon_tco2_ha")
                scalars["carbon_factor"] = 1.0
                how = "per-class net sequestration rates (legend column carbon_tco2_ha, t CO2/ha/a)"
            elif c.method == "nep":
                f = {"t_c_per_ha": 1.0, "g_c_per_m2": 0.01}.get(c.unit)
                if f is None:
                    from .errors import ConfigError

                    raise ConfigError(f"inputs.carbon.unit: '{c.unit}' is not a carbon unit for NEP "
                                      "(use t_c_per_ha or g_c_per_m2)")
                scalars["carbon_factor"] = f * book.param("carbon_sequestration.co2_per_c")
                how = f"NEP raster ({c.unit}) x 44/12 (net flux)"
            elif c.method == "npp":
                dm = {"t_dm_per_ha": 1.0,
                      "t_c_per_ha": 1.0 / book.param("carbon_sequestration.c_per_dry_matter"),
                      "g_c_per_m2": 0.01 / book.param("carbon_sequestration.c_per_dry_matter")}[c.unit]
                scalars["carbon_factor"] = dm * book.param("carbon_sequestration.co2_per_dry_matter")
                how = (f"NPP raster ({c.unit}) x 1.63 t CO2/t dry matter (LY/T stoichiometry); NOTE: NPP is a "
                       "gross plant flux, heterotrophic respiration is not subtracted")
            else:  # stock_change
                from .tables import _read_csv

                pools = _read_csv(cfg.resolve(c.pools_table), "inputs.carbon.pools_table")
                missing = [k for k in [c.code_column, *c.pool_columns] if k not in pools.columns]
                if missing:
                    from .errors import TableError

                    raise TableError(f"inputs.carbon.pools_table {cfg.resolve(c.pools_table)}: column(s) {missing} "
                                     f"missing (columns: {list(pools.columns)})")
                codes = pools[c.code_column].astype(int).to_numpy()
                stock = pools[c.pool_columns].astype(float).sum(axis=1).to_numpy()
                lut = np.full(int(codes.max()) + 2, np.nan, np.float32)
                lut[codes] = stock
                luts["carbon_stock"] = lut
                scalars["carbon_factor"] = book.param("carbon_sequestration.co2_per_c") / c.years
                how = (f"carbon-stock change between land cover and inputs.carbon.alternate_land_cover "
                       f"(pools {c.pool_columns}, Mg C/ha) / {c.years} years x 44/12 (InVEST Carbon pools)")
            scalars["co2_price"] = book.price("carbon_sequestration.co2_price")
            notes["carbon_sequestration"] = (
                f"Carbon sequestration in t CO2/a from {how}; negative values "
                + ("clipped to 0" if flags["carbon_clip"] else "kept (net emission)"))
            outs += [
                OutputSpec("carbon_sequestration_tco2", "carbon_sequestration", "physical", "t CO2/a per pixel",
                           f"Carbon sequestration from {c.method}, t CO2 per pixel per year"),
                OutputSpec("carbon_sequestration_yuan", "carbon_sequestration", "value", "yuan/a per pixel",
                           "Value of carbon sequestration (CO2 price), yuan per pixel per year"),
                OutputSpec("carbon_negative_tco2", "carbon_sequestration", "diagnostic", "t CO2/a per pixel",
                           "Magnitude of negative carbon sequestration (net emission)", write=False),
            ]
        if "air_purification" in services:
            pols = list(s.air_purification.pollutants)
            flags["pollutants"] = pols
            for pol in pols:
                luts[f"{pol}_rate"] = legend.lut(f"{pol}_kg_ha")
                scalars[f"{pol}_price"] = book.price(f"air_purification.{pol}_price")
                outs.append(OutputSpec(f"air_purification_{pol}_t", "air_purification", "physical", "t/a per pixel",
                                       f"Air purification: {pol.upper()} uptake (capacity method), t per pixel per year"))
            outs.append(OutputSpec("air_purification_yuan", "air_purification", "value", "yuan/a per pixel",
                                   "Value of air purification (treatment cost per pollutant), yuan per pixel per year"))
            notes["air_purification"] = (
                "Capacity method Q_j = q_ij * A_i (per-class uptake, legend columns <pollutant>_kg_ha), "
                "no emissions cap; value = sum_j Q_j * treatment cost_j (Garze GEP prices)")
        if not services:
            from .errors import ConfigError

            raise ConfigError("services: every service is disabled; enable at least one")
        outs.append(OutputSpec("gep_r_yuan", "gep_r", "gep_r", "yuan/a per pixel",
                               "GEP-R: sum of the regulating-service values, yuan per pixel per year"))
        return cls(services, outs, luts, scalars, flags, float(cell_size), notes)

    # ---------------------------------------------------------------------------------
    def input_keys(self) -> list[str]:
        """Names of the input blocks :meth:`compute_block` expects (besides terrain terms)."""
        keys = ["lc"]
        if "water_conservation" in self.services or ("soil_retention" in self.services and self.flags["r_from_precip"]):
            keys.append("precip")
        if "water_conservation" in self.services:
            keys.append("et")
        if "soil_retention" in self.services:
            keys += ["slope", "aspect_x", "upslope"]
            if not self.flags["r_from_precip"]:
                keys.append("r")
            if not self.flags["k_constant"]:
                keys.append("k")
            if "usle_c" not in self.luts:
                keys.append("c")
            if "usle_p" not in self.luts:
                keys.append("p")
        if "carbon_sequestration" in self.services:
            m = self.flags["carbon_method"]
            if m in ("nep", "npp"):
                keys.append("carbon_flux")
            elif m == "stock_change":
                keys.append("lc_alt")
        return keys

    @property
    def output_keys(self) -> list[str]:
        return [o.key for o in self.outputs]

    def compute_block(self, blocks: dict[str, np.ndarray], row_area_m2: np.ndarray) -> dict[str, np.ndarray]:
        """All outputs of one block.

        Parameters
        ----------
        blocks : dict of str -> ndarray (h, w)
            ``lc`` int32 (-1 nodata); continuous inputs float32 with NaN nodata: ``precip`` (mm/a),
            ``et`` (mm/a; ET0 when the run uses Kc), ``slope`` (tan), ``aspect_x`` (|sin|+|cos|),
            ``upslope`` (cells incl. itself), optional ``r``, ``k``, ``c``, ``p``, ``carbon_flux``, ``lc_alt``.
        row_area_m2 : float64 (h,)
            Pixel area per row of the block, m2.

        Returns
        -------
        dict of str -> float32 (h, w)
            One array per :attr:`output_keys` entry (units in :attr:`outputs`); NaN = nodata.
        """
        from .kernels import soil, terrain  # noqa: F401  (imported lazily: numba compile on first use)

        lc = blocks["lc"]
        out: dict[str, np.ndarray] = {}
        values: list[np.ndarray] = []
        nodata = (lc < 0) | ~np.isfinite(apply_lut(lc, self.luts["defined"]))
        if "water_conservation" in self.services:
            alpha = apply_lut(lc, self.luts["runoff_coef"])
            kc = apply_lut(lc, self.luts["kc"]) if self.flags["et_is_et0"] else np.ones(lc.shape, np.float32)
            q, deficit = water_conservation(blocks["precip"], blocks["et"], kc, alpha, row_area_m2,
                                            clip=self.flags["wc_clip"])
            out["water_conservation_m3"] = q
            out["water_deficit_m3"] = deficit
            out["precipitation_mm"] = np.where(nodata, np.nan, blocks["precip"]).astype(np.float32)
            out["et_mm"] = np.where(nodata, np.nan, blocks["et"] * kc).astype(np.float32)
            v = linear_value(q, [self.scalars["wc_price"]])
            out["water_conservation_yuan"] = v
            values.append(v)
        if "soil_retention" in self.services:
            from .kernels.soil import ls_factor_kernel, r_factor_from_annual_precip_kernel, rusle_kernel

            ups = blocks["upslope"]
            if "max_upslope_cells" in self.scalars:  # slope-length cap: hillslope length <= lambda_max
                ups = np.minimum(ups, np.float32(self.scalars["max_upslope_cells"]))
            ls = ls_factor_kernel(blocks["slope"], ups, blocks["aspect_x"], self.cell_size,
                                  l_max=self.scalars["l_max"])
            r = r_factor_from_annual_precip_kernel(blocks["precip"]) if self.flags["r_from_precip"] else blocks["r"]
            k = (np.full(lc.shape, self.scalars["k_constant"], np.float32) if self.flags["k_constant"]
                 else blocks["k"])
            c = apply_lut(lc, self.luts["usle_c"]) if "usle_c" in self.luts else blocks["c"]
            p = apply_lut(lc, self.luts["usle_p"]) if "usle_p" in self.luts else blocks["p"]
            potential, actual = rusle_kernel(r, k, ls, c, p)
            rate = (potential - actual).astype(np.float32)  # t/ha/a
            rate[nodata] = np.nan
            erodible = apply_lut(lc, self.luts["erodible"].astype(np.float32))
            mask = np.where(np.isfinite(erodible), erodible, 0).astype(np.uint8)
            q, _ = rate_to_amount(rate, 1.0, row_area_m2, mask=mask, clip=False)
            out["soil_retention_t"] = q
            out["ls_factor"] = np.where(nodata, np.nan, ls).astype(np.float32)
            out["r_factor"] = np.where(nodata, np.nan, r).astype(np.float32)
            v = linear_value(q, [self.scalars["sr_unit_value"]])
            out["soil_retention_yuan"] = v
            values.append(v)
        if "carbon_sequestration" in self.services:
            m = self.flags["carbon_method"]
            if m == "rates":
                flux = apply_lut(lc, self.luts["carbon_rate"])
            elif m in ("nep", "npp"):
                flux = np.where(nodata, np.nan, blocks["carbon_flux"]).astype(np.float32)
            else:
                base = apply_lut(lc, self.luts["carbon_stock"])
                alt = apply_lut(blocks["lc_alt"], self.luts["carbon_stock"])
                flux = (alt - base).astype(np.float32)
            flux[nodata] = np.nan
            q, neg = rate_to_amount(flux, self.scalars["carbon_factor"], row_area_m2, clip=self.flags["carbon_clip"])
            out["carbon_sequestration_tco2"] = q
            out["carbon_negative_tco2"] = neg
            v = linear_value(q, [self.scalars["co2_price"]])
            out["carbon_sequestration_yuan"] = v
            values.append(v)
        if "air_purification" in self.services:
            qs, prices = [], []
            for pol in self.flags["pollutants"]:
                rate = apply_lut(lc, self.luts[f"{pol}_rate"])
                q, _ = rate_to_amount(rate, 1e-3, row_area_m2)  # kg -> t
                out[f"air_purification_{pol}_t"] = q
                qs.append(q)
                prices.append(self.scalars[f"{pol}_price"])
            v = linear_value(np.stack(qs), prices)
            out["air_purification_yuan"] = v
            values.append(v)
        out["gep_r_yuan"] = linear_value(np.stack(values), [1.0] * len(values))
        return {k: out[k] for k in self.output_keys}

    # ---------------------------------------------------------------------------------
    def terrain_numpy(self, dem: np.ndarray, res: tuple[float, float]) -> dict[str, np.ndarray]:
        from .kernels.terrain import aspect_factor_kernel, slope_kernel

        return {"slope": slope_kernel(dem, res[0], res[1]), "aspect_x": aspect_factor_kernel(dem, res[0], res[1])}

    def terrain_dask(self, dem, res: tuple[float, float]) -> dict:
        """Slope and aspect term via ``map_overlap`` (depth 1 = the 3×3 Horn window)."""
        from .kernels.terrain import aspect_factor_kernel, slope_kernel

        kw = dict(depth=1, boundary=np.nan, dtype=np.float32, meta=np.empty((0, 0), np.float32))
        from functools import partial

        return {"slope": dem.map_overlap(partial(slope_kernel, cellsize_x=res[0], cellsize_y=res[1]), **kw),
                "aspect_x": dem.map_overlap(partial(aspect_factor_kernel, cellsize_x=res[0], cellsize_y=res[1]), **kw)}

    def compute_numpy(self, arrays: dict[str, np.ndarray], row_area_m2: np.ndarray) -> dict[str, np.ndarray]:
        """Whole-array path: ``arrays`` holds every key of :meth:`input_keys` as full numpy arrays."""
        return self.compute_block(arrays, row_area_m2)

    def compute_dask(self, arrays: dict, row_area_m2: np.ndarray):
        """Dask path: one ``map_blocks`` over all inputs (chunks must match) → stacked (n_outputs, h, w).

        Returns
        -------
        dask.array.Array float32 of shape (len(output_keys), h, w), chunked (n_outputs, *input chunks).
        """
        import dask.array as da

        keys = self.input_keys()
        arrs = [arrays[k] for k in keys]
        n = len(self.output_keys)
        okeys = self.output_keys

        def _fn(*blocks, block_info=None):
            (r0, r1), _ = block_info[0]["array-location"]
            res = self.compute_block(dict(zip(keys, blocks)), row_area_m2[r0:r1])
            return np.stack([res[k] for k in okeys])

        return da.map_blocks(_fn, *arrs, new_axis=0, chunks=((n,),) + arrs[0].chunks, dtype=np.float32,
                             meta=np.empty((0, 0, 0), np.float32))


def _defined_lut(legend: Legend) -> np.ndarray:
    """float32 LUT: 1 for codes in the legend, NaN otherwise."""
    n = int(legend.codes.max()) + 2
    out = np.full(n, np.nan, np.float32)
    out[legend.codes] = 1.0
    return out
