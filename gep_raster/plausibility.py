"""Plausibility of a run's magnitudes: per service, results compared with documented bounds.

One table, :data:`BOUNDS`, holds every bound with its number, unit, basis, source and evidence mark. The marks
are those of the methods note (``/work/shared/docs/gep-methods.md``): **V** verified in the cited primary
source, **V-calc** arithmetic on [V] numbers (the arithmetic is in the row), **V2** verified only in a secondary
source (news, code), **U** unverified (background knowledge or an argument; no source read). A [U] bound is an
engineering flag, never a verified limit, and its messages say so.

Two phases:

* ``run`` rows: :func:`check_run` compares a finished run's magnitudes (:class:`RunStats`, built from the
  manifest totals by :func:`stats_from_totals`) with the bounds. The pipeline logs each result with
  ``logging.warning`` and writes :func:`manifest_record` to ``manifest.diagnostics.plausibility``.
* ``pre-run`` rows: :func:`pre_run_checks` checks configured constants (K, storm precipitation, the hot-season
  ET factor) before anything is computed; ``gep validate`` reports them (level ``warning`` for a mass-balance or
  definitional bound, ``info`` for an unsourced [U] flag, so that no [U] number stops ``gep run``).

A result outside a bound is a warning, not an error: it asks for a look at units, scale factors and parameters,
or it says that the area differs from every published account the bound was taken from.

This module is pure: no pipeline, raster or config imports; numbers in, dataclasses out.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping

__all__ = ["Bound", "BOUNDS", "Diagnostic", "RunStats", "bounds_table_markdown", "check_run", "manifest_record",
           "pre_run_checks", "run_checks_for", "stats_from_totals"]

# --------------------------------------------------------------------------------------
# published figures the bounds are computed from (gep-methods.md §7 headline figures)
# --------------------------------------------------------------------------------------
#: Garzê prefecture 2010 account: area (km2), soil retention (t/a), water conservation (m3/a), carbon (t CO2/a),
#: regulating services (yuan/a) and its water-conservation value (yuan/a) [V]
GARZE_AREA_KM2 = 149_687.7
GARZE_SOIL_T = 38.86e8
GARZE_WATER_M3 = 321.49e8
GARZE_CARBON_TCO2 = 0.31e8
GARZE_REGULATING_YUAN = 6_842.28e8
GARZE_WATER_YUAN = 2_269.71e8
#: Shenzhen 2020 account (news reports, [V2]): GEP per km2, GEP, regulating services, climate regulation (yuan)
SHENZHEN_GEP_PER_KM2 = 0.65e8
SHENZHEN_GEP_YUAN = 1_303.82e8
SHENZHEN_REGULATING_YUAN = 699.52e8
SHENZHEN_CLIMATE_YUAN = 488.24e8
#: molar mass ratio CO2 / C (gep-methods §2.3, [V-calc])
CO2_PER_C = 44.0 / 12.0

_GARZE_HA = GARZE_AREA_KM2 * 100.0
GARZE_SOIL_T_HA = GARZE_SOIL_T / _GARZE_HA                       # 259.6 t/ha/a
GARZE_WATER_MM = GARZE_WATER_M3 / (GARZE_AREA_KM2 * 1e6) * 1e3   # 214.8 mm/a
GARZE_CARBON_T_HA = GARZE_CARBON_TCO2 / _GARZE_HA                # 2.07 t CO2/ha/a
GARZE_GEP_R_PER_KM2 = GARZE_REGULATING_YUAN / GARZE_AREA_KM2     # 4.571e6 yuan/km2/a
SHENZHEN_GEP_R_PER_KM2 = SHENZHEN_GEP_PER_KM2 * SHENZHEN_REGULATING_YUAN / SHENZHEN_GEP_YUAN  # 3.487e7
SHENZHEN_CLIMATE_SHARE = SHENZHEN_CLIMATE_YUAN / SHENZHEN_REGULATING_YUAN                    # 0.698
GARZE_WATER_SHARE = GARZE_WATER_YUAN / GARZE_REGULATING_YUAN                                 # 0.332

#: citations, as the methods note gives them (§1 "Main sources actually read", §7, §8)
GARZE = ("Garzê 2010 GEP paper: 白玛卓嘎, 肖燚, 欧阳志云, 王莉雁. 甘孜藏族自治州生态系统生产总值核算研究. "
         "生态学报 2017, 37(19): 6302–6312, DOI 10.5846/stxb201607011362 (gep-methods.md §7)")
SHENZHEN = ("Shenzhen 2020 GEP results, news reprint apple-exterminating.com/jjrd/1633769.html [V2, news] "
            "(gep-methods.md §7)")
INVEST_AWY = "InVEST user guide, natcap/invest.users-guide source/en/annual_water_yield.rst (gep-methods.md §2.1)"
RANGES_CSV = "gep_raster/data/ranges.csv row soil_retention.k_constant (ILLUSTRATION ONLY)"

#: relative tolerance of bounds taken from the run itself (mean P, mean P - ET): pixel means and float32 sums
RUN_BOUND_RTOL = 1e-3
#: a single service's share of GEP-R is checked only when at least this many services carry value
MIN_SERVICES_FOR_SHARE = 3
#: most days of a year (leap year) for the hot-season ET check
DAYS_MAX = 366.0


@dataclass(frozen=True)
class Bound:
    """One row of the bounds table.

    Attributes
    ----------
    key : str
        Identifier of the check (``<service>.<what>``), also the ``key`` of its :class:`Diagnostic`.
    service : str
        Service the quantity belongs to (``gep_r`` for the whole regulating account).
    quantity : str
        What is compared, and over which pixels.
    unit : str
        Unit of the quantity and of ``low`` / ``high``.
    low, high : float or None
        Fixed bounds (None: no bound on that side).
    high_from : str or None
        The upper bound is a quantity of the run itself (e.g. ``"mean P"``); ``high`` is then None.
    basis : str
        ``mass balance`` (follows from the formula), ``definition``, ``published accounts`` (the span of
        published figures; outside it is unusual, not wrong), ``argument`` (reasoned, no source) or
        ``engineering flag`` (an unsourced threshold).
    evidence : str
        Mark of the weakest number or argument of the row: ``V``, ``V-calc``, ``V2`` or ``U``.
    source : str
        Citation (as the methods note gives it) and the arithmetic.
    note : str
        One sentence explaining the bound (docs/plausibility.md).
    phase : str
        ``run`` (after a run, :func:`check_run`) or ``pre-run`` (``gep validate``, :func:`pre_run_checks`).
    """

    key: str
    service: str
    quantity: str
    unit: str
    low: float | None
    high: float | None
    basis: str
    evidence: str
    source: str
    note: str
    phase: str = "run"
    high_from: str | None = None


BOUNDS: tuple[Bound, ...] = (
    Bound("soil_retention.potential_erosion_mean", "soil_retention",
          "mean potential erosion RKLS (raster potential_erosion) over its valid pixels: every land-cover class, "
          "stream cells excluded; unweighted pixel mean", "t/ha/a", None, 1000.0, "engineering flag", "U",
          "No bound in gep-methods.md [U]: 1,000 t/ha/a is an unsourced flag. Reference point: Garzê 2010 "
          f"retained {GARZE_SOIL_T / 1e8:g}亿 t on {GARZE_AREA_KM2:,} km2 = {GARZE_SOIL_T_HA:.1f} t/ha/a "
          f"[V-calc], a lower limit of its mean RKLS since Q = RKLS·(1 − C·P) <= RKLS; " + GARZE,
          "Potential (bare-soil) erosion has no documented regional ceiling in the methods note; a mean above "
          "1,000 t/ha/a, about four times the soil Garzê retained per hectare, often points to an R, K or LS unit "
          "or scale error (e.g. K or R in US customary units, a DEM in feet)."),
    Bound("soil_retention.retained_per_ha", "soil_retention",
          "soil retained (total soil_retention_t) per ha of valid land (pixels with a GEP-R value)", "t/ha/a",
          None, round(GARZE_SOIL_T_HA, 1), "published accounts", "V-calc",
          f"Garzê 2010: soil retention {GARZE_SOIL_T / 1e8:g}亿 t [V] on {GARZE_AREA_KM2:,} km2 [V] → "
          f"{GARZE_SOIL_T:.4g} t / {_GARZE_HA:.6g} ha = {GARZE_SOIL_T_HA:.1f} t/ha/a [V-calc]; " + GARZE,
          "The Garzê prefecture mean (a plateau prefecture, USLE on a 90 m DEM [V]) is the only regional per-area "
          "soil-retention figure the note allows computing; a run above it retains more soil per hectare than that "
          "prefecture, which is possible on steeper or wetter land or finer DEMs but asks for a check of "
          "R, K and LS."),
    Bound("water_conservation.depth_vs_precip", "water_conservation",
          "water conservation depth: total water_conservation_m3 / area of its valid pixels", "mm/a",
          None, None, "mass balance", "V-calc",
          "Q = (P − R − ET)·A with R, ET >= 0 gives Q <= P·A (Garzê eq. 3 [V], gep-methods.md §2.1); InVEST "
          "Y = (1 − AET/P)·P <= P [V] (" + INVEST_AWY + "). Reference point: Garzê 2010 "
          f"{GARZE_WATER_M3 / 1e8:g}亿 m3 on {GARZE_AREA_KM2:,} km2 = {GARZE_WATER_MM:.1f} mm/a [V-calc] with "
          "330–900 mm rainfall [V, §2.1]; " + GARZE,
          "No water balance can store more water than falls: a depth above the mean annual precipitation of the "
          "same pixels is a unit error (P in 0.1 mm, ET in the wrong unit, pixel area) rather than a result.",
          high_from="mean P of the run"),
    Bound("water_conservation.balance_plus_flood_vs_surplus", "water_conservation",
          "net water balance (water_conservation_m3 minus the clipped deficit water_deficit_m3 under "
          "negative_values: clip) + flood_regulation_m3, per area of the water-conservation pixels", "mm/a",
          None, None, "argument", "U",
          "Argument, not a sourced bound [U]: both services value water of the same year (gep-methods.md §6 "
          "item 4, double counting among water services); the annual surplus P − ET of the area (Garzê eq. 3 "
          "without R [V]) bounds the water it yields",
          "Water conservation plus flood regulation above the area's annual surplus P − ET means part of the "
          "same water is valued twice, or that lakes and reservoirs store water from outside the area (which is "
          "legitimate); without flood regulation the row checks the water balance alone.",
          high_from="mean P − mean ET of the run"),
    Bound("carbon_sequestration.per_ha", "carbon_sequestration",
          "carbon sequestration (total carbon_sequestration_tco2) per ha of valid land", "t CO2/ha/a",
          0.0, round(10.0 * CO2_PER_C, 2), "engineering flag", "U",
          "No bound in gep-methods.md [U]: high = 10 t C/ha/a (a high net ecosystem production of productive "
          "forest, background knowledge, unsourced) × 44/12 [V-calc, §2.3]; low 0: a negative regional mean is a "
          "net CO2 source (NEP = NPP − R_h can be negative, §2.3), argued. Reference points: Garzê 2010 "
          f"0.31亿 t CO2 on {GARZE_AREA_KM2:,} km2 = {GARZE_CARBON_T_HA:.2f} t CO2/ha/a [V-calc]; worked "
          "example NEP 4 t C/ha = 14.67 t CO2/ha [EX, not a default]; " + GARZE,
          "A regional mean above 36.7 t CO2/ha/a exceeds the net uptake of productive forest and often means a "
          "unit mix-up (g C/m2 read as t C/ha is ×100, t C read as t CO2 is ×3.667); a negative mean makes carbon "
          "a negative item of GEP-R."),
    Bound("gep_r.per_km2", "gep_r", "GEP-R (total gep_r_yuan) per km2 of valid land", "yuan/km2/a",
          round(GARZE_GEP_R_PER_KM2, -3), round(SHENZHEN_GEP_R_PER_KM2, -4), "published accounts", "V2",
          f"Low: Garzê 2010 regulating ¥{GARZE_REGULATING_YUAN / 1e8:,.2f}亿 [V] / {GARZE_AREA_KM2:,} km2 = "
          f"{GARZE_GEP_R_PER_KM2:.4g} yuan/km2/a [V-calc] ({GARZE}); high: Shenzhen 2020 GEP 0.65亿/km2 × "
          f"regulating {SHENZHEN_REGULATING_YUAN / 1e8:g} / GEP {SHENZHEN_GEP_YUAN / 1e8:,.2f}亿 = "
          f"{SHENZHEN_GEP_R_PER_KM2:.4g} yuan/km2/a [V-calc from V2] ({SHENZHEN}); 2010 and 2020 prices, not "
          "deflated; row mark = weakest end (V2)",
          "The two §7 accounts whose per-area GEP-R follows from the note span a remote plateau prefecture and a "
          "city; an area outside that span is not wrong (other region, other services or prices) but differs "
          "from both published accounts, so the leading services and prices deserve a look. China 2015, Ninghai, "
          "Eshan and Lishui give no per-area GEP-R in the note (area missing, or [U])."),
    Bound("gep_r.max_service_share", "gep_r",
          f"largest single-service share of GEP-R (service value / gep_r_yuan); checked when at least "
          f"{MIN_SERVICES_FOR_SHARE} services carry value", "fraction", None, round(SHENZHEN_CLIMATE_SHARE, 3),
          "published accounts", "V2",
          f"Highest single-service share of GEP-R among the §7 accounts: Shenzhen 2020 climate regulation "
          f"{SHENZHEN_CLIMATE_YUAN / 1e8:g}亿 / regulating {SHENZHEN_REGULATING_YUAN / 1e8:g}亿 = "
          f"{SHENZHEN_CLIMATE_SHARE:.3f} [V-calc from V2] ({SHENZHEN}); Garzê 2010 water conservation "
          f"{GARZE_WATER_YUAN / 1e8:,.2f} / {GARZE_REGULATING_YUAN / 1e8:,.2f}亿 = {GARZE_WATER_SHARE:.3f} "
          f"[V-calc] ({GARZE})",
          "No published account in the note has one service above 69.8 % of GEP-R (Shenzhen's climate regulation, "
          "in a city account); a larger share usually comes from one service's unit or price, or from the "
          "other services being left out."),
    # ---------------------------------------------------------------- pre-run (gep validate)
    Bound("soil_retention.k_constant", "soil_retention",
          "constant soil erodibility K (parameter soil_retention.k_constant, used when no K raster is given)",
          "t*ha*h/(ha*MJ*mm)", 0.018, 0.041, "engineering flag", "U",
          "No standard or cited source gives a K range for the constant [U]: 0.018..0.041 is the min and max of "
          "the InVEST Willamette (Oregon, USA) SDR sample erodibility raster erodibility_SI_clip.tif, read from "
          "the shared data (" + RANGES_CSV + ")",
          "The range only shows how far K varies between real soils (SI units); a constant outside it is "
          "reported as information, not as a warning, because the range is not a documented bound for any "
          "Chinese region.", phase="pre-run"),
    Bound("flood_regulation.storm_vs_annual_precip", "flood_regulation",
          "constant storm precipitation storm_precip_mm versus the largest sampled annual precipitation "
          "(inputs.precipitation)", "mm", None, None, "definition", "U",
          "Argued from the definition, no source [U]: P_storm is the rain of the storm season (mm per storm "
          "season, services.flood_regulation.storm_precip_mm), part of the year's rain; the vegetation storm "
          "formula itself is [U] (gep-methods.md §2.8)",
          "The rain of the storm season cannot exceed the rain of the whole year; a larger constant is a unit "
          "error or a design storm of another return period than the annual precipitation raster.",
          phase="pre-run", high_from="largest sampled annual P of inputs.precipitation"),
    Bound("climate_regulation.hot_season_et", "climate_regulation",
          "ET of the hot days as days of mean ET: hot_season_et_factor × hot_days (constant)", "days",
          None, DAYS_MAX, "mass balance", "U",
          "The engine's derivation E_w = ET/365 × f × D × S (gep-methods.md §2.7, an engineering choice [EX]/[U]) "
          "counts f·D/365 of the annual ET in the hot days; it cannot exceed 1 (366 allows a leap year)",
          "The hot days cannot evaporate more water than the whole year: hot_season_et_factor × hot_days above "
          "366 makes climate regulation count more than the annual ET.", phase="pre-run"),
)

_BY_KEY = {b.key: b for b in BOUNDS}
#: services a run row needs (the row is skipped when one is not in the run)
_NEEDS = {"soil_retention.potential_erosion_mean": ("soil_retention",),
          "soil_retention.retained_per_ha": ("soil_retention",),
          "water_conservation.depth_vs_precip": ("water_conservation",),
          "water_conservation.balance_plus_flood_vs_surplus": ("water_conservation",),
          "carbon_sequestration.per_ha": ("carbon_sequestration",),
          "gep_r.per_km2": (),
          "gep_r.max_service_share": ()}


@dataclass(frozen=True)
class Diagnostic:
    """One finding of a plausibility check.

    Attributes
    ----------
    key, service : str
        Row of :data:`BOUNDS` and its service.
    level : str
        ``warning`` (every run-time finding; pre-run findings on a mass-balance or definitional bound) or
        ``info`` (pre-run findings on an unsourced [U] flag: reported by ``gep validate``, never stop a run).
    message : str
        Names the quantity, its value, the bound, the unit, the basis, the evidence mark and the source.
    value : float
        The quantity, in ``unit``.
    low, high : float or None
        The bound applied (``high`` holds the run's own value for rows with ``high_from``).
    unit, evidence, source : str
        As in the row.
    """

    key: str
    service: str
    level: str
    message: str
    value: float
    low: float | None
    high: float | None
    unit: str
    evidence: str
    source: str

    def to_dict(self) -> dict:
        """JSON-ready dict (``manifest.diagnostics.plausibility.warnings`` entries)."""
        return asdict(self)


@dataclass(frozen=True)
class RunStats:
    """Whole-run magnitudes the checks need; None = not in the run (the rows that need it are skipped).

    Attributes
    ----------
    area_ha : float
        Valid land: area of the pixels with a GEP-R value, ha.
    water_area_ha : float or None
        Area of the pixels with a water-conservation value, ha (None: ``area_ha``).
    gep_r_yuan : float or None
        GEP-R, yuan/a.
    service_values_yuan : mapping of str -> float
        Value per regulating service, yuan/a.
    soil_retention_t : float or None
        Soil retained, t/a.
    potential_erosion_mean : float or None
        Mean potential erosion RKLS over the valid pixels of the ``potential_erosion`` raster, t/ha/a.
    water_conservation_m3, water_deficit_m3 : float or None
        Water conservation (as reported) and the volume of negative balances, m3/a.
    water_negative_rule : str or None
        ``clip`` (negatives set to 0: the deficit was removed from the balance) or ``keep``.
    flood_regulation_m3 : float or None
        Flood regulation, m3/a.
    precip_mean_mm, et_mean_mm : float or None
        Mean annual precipitation P and evapotranspiration ET of the water-conservation pixels, mm/a.
    carbon_sequestration_tco2 : float or None
        Carbon sequestration, t CO2/a.
    scope : str
        Which area the numbers describe (written to the manifest).
    """

    area_ha: float
    water_area_ha: float | None = None
    gep_r_yuan: float | None = None
    service_values_yuan: Mapping[str, float] = field(default_factory=dict)
    soil_retention_t: float | None = None
    potential_erosion_mean: float | None = None
    water_conservation_m3: float | None = None
    water_deficit_m3: float | None = None
    water_negative_rule: str | None = None
    flood_regulation_m3: float | None = None
    precip_mean_mm: float | None = None
    et_mean_mm: float | None = None
    carbon_sequestration_tco2: float | None = None
    scope: str = "whole run"


def _finite(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def stats_from_totals(totals: Mapping[str, float], valid_pixels: Mapping[str, int], pixel_area_m2: float,
                      service_value_keys: Mapping[str, str], *, water_negative_rule: str | None = None,
                      scope: str | None = None) -> RunStats:
    """:class:`RunStats` of a run from its per-output totals (``manifest.totals``) and valid-pixel counts.

    Parameters
    ----------
    totals : mapping of output key -> float
        Sum over the grid of each output raster (m3/a, t/a, yuan/a per pixel summed; for the intermediate
        rasters ``potential_erosion`` (t/ha/a), ``precipitation_mm`` and ``et_mm`` (mm/a) the sum of the
        per-pixel rates, divided here by the valid pixels to a pixel mean).
    valid_pixels : mapping of output key -> int
        Pixels with a finite value of each output.
    pixel_area_m2 : float
        Mean pixel area, m2 (exact on a projected grid; on a geographic grid the mean over the rows, so the areas
        are approximate).
    service_value_keys : mapping of service name -> value output key
        The regulating services of the run and their ``*_yuan`` outputs.
    water_negative_rule : str, optional
        ``services.water_conservation.negative_values`` (``clip`` or ``keep``).
    scope : str, optional
        Description of the area (default: the whole run grid).

    Returns
    -------
    RunStats

    Raises
    ------
    ValueError
        ``gep_r_yuan`` has no valid-pixel count, or ``pixel_area_m2`` is not > 0.
    """
    if not pixel_area_m2 > 0:
        raise ValueError(f"pixel_area_m2 must be > 0, got {pixel_area_m2}")
    if "gep_r_yuan" not in valid_pixels:
        raise ValueError("valid_pixels has no entry 'gep_r_yuan'")

    def tot(k):
        return _finite(totals.get(k)) if k in totals else None

    def mean(k):
        n = valid_pixels.get(k, 0)
        return _finite(totals[k] / n) if k in totals and n else None

    def area(k):
        return valid_pixels[k] * pixel_area_m2 / 1e4 if k in valid_pixels else None

    return RunStats(
        area_ha=area("gep_r_yuan"), water_area_ha=area("water_conservation_m3"), gep_r_yuan=tot("gep_r_yuan"),
        service_values_yuan={s: float(totals[k]) for s, k in service_value_keys.items() if k in totals},
        soil_retention_t=tot("soil_retention_t"), potential_erosion_mean=mean("potential_erosion"),
        water_conservation_m3=tot("water_conservation_m3"), water_deficit_m3=tot("water_deficit_m3"),
        water_negative_rule=water_negative_rule, flood_regulation_m3=tot("flood_regulation_m3"),
        precip_mean_mm=mean("precipitation_mm"), et_mean_mm=mean("et_mm"),
        carbon_sequestration_tco2=tot("carbon_sequestration_tco2"),
        scope=scope or (f"whole run grid: {valid_pixels['gep_r_yuan']} px with a GEP-R value x {pixel_area_m2:g} m2 "
                        "(pixel means of the intermediate rasters)"))


# --------------------------------------------------------------------------------------
# run-time checks
# --------------------------------------------------------------------------------------
def _values(s: RunStats) -> dict[str, tuple[float, float | None, str] | None]:
    """Row key -> (value, run-derived upper bound or None, extra text) or None when the row does not apply."""
    out: dict[str, tuple[float, float | None, str] | None] = {k: None for k in _NEEDS}
    ha = s.area_ha if s.area_ha and s.area_ha > 0 else None
    if s.potential_erosion_mean is not None:
        out["soil_retention.potential_erosion_mean"] = (s.potential_erosion_mean, None, "")
    if s.soil_retention_t is not None and ha:
        out["soil_retention.retained_per_ha"] = (s.soil_retention_t / ha, None, "")
    wha = s.water_area_ha if s.water_area_ha and s.water_area_ha > 0 else ha
    if s.water_conservation_m3 is not None and wha and s.precip_mean_mm is not None:
        tol = RUN_BOUND_RTOL * abs(s.precip_mean_mm)
        depth = s.water_conservation_m3 / (wha * 10.0)  # m3/ha -> mm: 1 mm over 1 ha = 10 m3
        out["water_conservation.depth_vs_precip"] = (depth, s.precip_mean_mm, f" (mean P {s.precip_mean_mm:.4g} mm/a;"
                                                     f" tolerance {tol:.3g} mm)")
        if s.et_mean_mm is not None:
            deficit = s.water_deficit_m3 or 0.0
            net = s.water_conservation_m3 - (deficit if s.water_negative_rule == "clip" else 0.0)
            flood = s.flood_regulation_m3 or 0.0
            surplus = s.precip_mean_mm - s.et_mean_mm
            extra = (f" (mean P {s.precip_mean_mm:.4g} − mean ET {s.et_mean_mm:.4g} mm/a; water balance "
                     f"{net / (wha * 10.0):.4g} mm/a + flood regulation {flood / (wha * 10.0):.4g} mm/a"
                     + (f"; clipping negative balances adds {deficit / (wha * 10.0):.4g} mm/a to the reported water "
                        "conservation" if s.water_negative_rule == "clip" and deficit > 0 else "")
                     + f"; tolerance {tol:.3g} mm)")
            out["water_conservation.balance_plus_flood_vs_surplus"] = ((net + flood) / (wha * 10.0), surplus, extra)
    if s.carbon_sequestration_tco2 is not None and ha:
        out["carbon_sequestration.per_ha"] = (s.carbon_sequestration_tco2 / ha, None, "")
    if s.gep_r_yuan is not None and ha:
        out["gep_r.per_km2"] = (s.gep_r_yuan / (ha / 100.0), None, "")
    carrying = {k: v for k, v in s.service_values_yuan.items() if v and math.isfinite(v)}
    if s.gep_r_yuan and s.gep_r_yuan > 0 and len(carrying) >= MIN_SERVICES_FOR_SHARE:
        top = max(carrying, key=lambda k: carrying[k])
        out["gep_r.max_service_share"] = (carrying[top] / s.gep_r_yuan, None,
                                          f" (service {top}: {carrying[top]:.4g} of {s.gep_r_yuan:.4g} yuan/a)")
    return out


def _judge(b: Bound, value: float, run_high: float | None, extra: str, level: str = "warning",
           tol: float = 0.0) -> Diagnostic | None:
    high = run_high if b.high_from else b.high
    below = b.low is not None and value < b.low
    above = high is not None and value > high + tol
    if not (below or above):
        return None
    side = (f"below the lower bound {b.low:.4g} {b.unit}" if below else
            f"above the upper bound {high:.4g} {b.unit}" + (f" ({b.high_from})" if b.high_from else ""))
    flag = " — an unverified [U] bound, an engineering flag, not a verified limit" if b.evidence == "U" else ""
    msg = (f"{b.key}: {b.quantity} = {value:.4g} {b.unit} is {side}{extra}; basis: {b.basis}, "
           f"evidence [{b.evidence}]{flag}; source: {b.source}")
    return Diagnostic(b.key, b.service, level, msg, float(value), b.low, None if high is None else float(high),
                      b.unit, b.evidence, b.source)


def _evaluate(stats: RunStats) -> list[tuple[Bound, tuple | None, Diagnostic | None]]:
    vals = _values(stats)
    out = []
    for key in _NEEDS:
        b, v = _BY_KEY[key], vals[key]
        d = None
        if v is not None:
            tol = RUN_BOUND_RTOL * abs(stats.precip_mean_mm or 0.0) if b.high_from else 0.0
            d = _judge(b, v[0], v[1], v[2], tol=tol)
        out.append((b, v, d))
    return out


def check_run(stats: RunStats) -> list[Diagnostic]:
    """Compare a finished run's magnitudes with the run rows of :data:`BOUNDS`.

    Parameters
    ----------
    stats : RunStats
        Whole-run totals and means (:func:`stats_from_totals`); rows whose quantities are None are skipped.

    Returns
    -------
    list of Diagnostic
        One ``warning`` per row outside its bound, in table order (empty: every applicable row is inside).
        Bounds from the run itself (mean P, mean P − ET) allow :data:`RUN_BOUND_RTOL` × mean P.

    Raises
    ------
    Nothing for missing quantities (the row is skipped); TypeError for a non-numeric field.

    Source: the ``source`` of each row of :data:`BOUNDS` (gep-methods.md §2, §6, §7).
    """
    return [d for _, _, d in _evaluate(stats) if d is not None]


def manifest_record(stats: RunStats, diagnostics: Iterable[Diagnostic] | None = None) -> dict:
    """``manifest.diagnostics.plausibility``: the stats, every run row with its value and status, the warnings.

    Parameters
    ----------
    stats : RunStats
    diagnostics : iterable of Diagnostic, optional
        The result of :func:`check_run` (computed here when None).

    Returns
    -------
    dict
        ``scope`` (str), ``stats`` (dict of the :class:`RunStats` fields), ``checks`` (list of dicts: ``key``,
        ``service``, ``quantity``, ``unit``, ``value`` (float or None), ``low``, ``high`` (the applied bound),
        ``basis``, ``evidence``, ``status`` (``ok``, ``warning`` or ``skipped``: a quantity is not in the run)),
        ``warnings`` (list of :meth:`Diagnostic.to_dict`), ``table`` (``docs/plausibility.md``).

    Raises
    ------
    Nothing beyond :func:`check_run`'s.
    """
    diags = list(check_run(stats) if diagnostics is None else diagnostics)
    flagged = {d.key for d in diags}
    checks = []
    for b, v, _ in _evaluate(stats):
        high = (v[1] if v is not None else None) if b.high_from else b.high
        checks.append({"key": b.key, "service": b.service, "quantity": b.quantity, "unit": b.unit,
                       "value": None if v is None else float(v[0]), "low": b.low,
                       "high": None if high is None else float(high), "basis": b.basis, "evidence": b.evidence,
                       "status": "skipped" if v is None else ("warning" if b.key in flagged else "ok")})
    st = asdict(stats)
    st["service_values_yuan"] = dict(stats.service_values_yuan)
    return {"scope": stats.scope, "stats": st, "checks": checks, "warnings": [d.to_dict() for d in diags],
            "table": "docs/plausibility.md (gep_raster.plausibility.BOUNDS)"}


def run_checks_for(services: Iterable[str]) -> list[Bound]:
    """The run rows of :data:`BOUNDS` that apply to a run with these regulating services.

    Parameters
    ----------
    services : iterable of str
        Enabled service names (e.g. ``ServiceModel.names``).

    Returns
    -------
    list of Bound
        Rows whose services are all in the run (the GEP-R rows always; the single-service share needs at least
        :data:`MIN_SERVICES_FOR_SHARE` services, and is listed only then).

    Raises
    ------
    Nothing.
    """
    have = set(services)
    rows = [_BY_KEY[k] for k, need in _NEEDS.items() if set(need) <= have]
    return [b for b in rows if b.key != "gep_r.max_service_share" or len(have) >= MIN_SERVICES_FOR_SHARE]


# --------------------------------------------------------------------------------------
# pre-run checks (gep validate)
# --------------------------------------------------------------------------------------
def pre_run_checks(*, k_constant: float | None = None, storm_precip_mm: float | None = None,
                   annual_precip_max_mm: float | None = None, hot_days: float | None = None,
                   hot_season_et_factor: float | None = None) -> list[Diagnostic]:
    """Check configured constants against the pre-run rows of :data:`BOUNDS`, before anything is computed.

    Parameters
    ----------
    k_constant : float, optional
        Constant K, t·ha·h/(ha·MJ·mm) (only when the run uses it: ``k_method: constant``).
    storm_precip_mm : float, optional
        Constant storm precipitation of flood regulation, mm per storm season.
    annual_precip_max_mm : float, optional
        Largest sampled value of the annual precipitation raster, mm/a.
    hot_days : float, optional
        Constant hot days D of climate regulation, days/a.
    hot_season_et_factor : float, optional
        Hot-season ET factor f of climate regulation (-).

    Returns
    -------
    list of Diagnostic
        Level ``warning`` for bounds with basis ``mass balance`` or ``definition``, ``info`` for the [U]
        engineering flag (K), so that an unsourced range never stops ``gep run``.

    Raises
    ------
    Nothing; a check whose inputs are None is skipped.

    Source: the ``source`` of each pre-run row of :data:`BOUNDS`.
    """
    out = []

    def level(b):
        return "warning" if b.basis in ("mass balance", "definition") else "info"

    k = _finite(k_constant)
    if k is not None:
        b = _BY_KEY["soil_retention.k_constant"]
        d = _judge(b, k, None, "", level(b))
        if d:
            out.append(d)
    s, pmax = _finite(storm_precip_mm), _finite(annual_precip_max_mm)
    if s is not None and pmax is not None:
        b = _BY_KEY["flood_regulation.storm_vs_annual_precip"]
        d = _judge(b, s, pmax, "", level(b))
        if d:
            out.append(d)
    dd, f = _finite(hot_days), _finite(hot_season_et_factor)
    if dd is not None and f is not None:
        b = _BY_KEY["climate_regulation.hot_season_et"]
        d = _judge(b, f * dd, None, f" (hot_season_et_factor {f:g} × hot_days {dd:g})", level(b))
        if d:
            out.append(d)
    return out


# --------------------------------------------------------------------------------------
def bounds_table_markdown() -> str:
    """The bounds table as GitHub markdown (the table of docs/plausibility.md).

    Returns
    -------
    str
        Header, separator and one line per row of :data:`BOUNDS` (key, phase, service, quantity, unit, low,
        high, basis, evidence, source); ``|`` in texts escaped; ends with a newline.

    Raises
    ------
    Nothing.
    """
    def cell(x) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    def num(x) -> str:
        return "—" if x is None else f"{x:.4g}"

    head = ["key", "phase", "service", "quantity", "unit", "low", "high", "basis", "evidence", "source"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for b in BOUNDS:
        high = b.high_from if b.high_from else num(b.high)
        lines.append("| " + " | ".join(cell(c) for c in (f"`{b.key}`", b.phase, b.service, b.quantity, b.unit,
                                                          num(b.low), high, b.basis, f"[{b.evidence}]", b.source))
                     + " |")
    return "\n".join(lines) + "\n"
