"""Pre-flight validation: every problem of a run configuration, reported at once.

Checks (InVEST-style ``validate``): every input exists and opens, has a CRS and the band asked
for; every raster overlaps the reference grid; the reference grid is usable for the enabled
services; the legend loads, has the columns the services need and covers every class present
in the land cover; polygon layers open, carry their id and name fields and overlap the rasters;
prices and parameters load; values of continuous inputs lie in plausible ranges for their units;
configured constants (K, storm precipitation, hot-season ET) against the pre-run plausibility bounds, and
the list of plausibility checks that follow the run (:mod:`gep_raster.plausibility`).
"""
from __future__ import annotations

import os

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds

from .config import RunConfig
from .errors import GepError

#: (min, max, unit) plausible ranges for continuous inputs (after ``scale``)
PLAUSIBLE = {
    "dem": (-500.0, 9000.0, "m"),
    "precipitation": (0.0, 12000.0, "mm/a"),
    "precipitation.monthly": (0.0, 3000.0, "mm/month"),
    "et": (0.0, 3000.0, "mm/a"),
    "et.monthly": (0.0, 600.0, "mm/month"),
    "et0": (0.0, 3500.0, "mm/a"),
    "et0.monthly": (0.0, 600.0, "mm/month"),
    "r_factor": (0.0, 60000.0, "MJ*mm/(ha*h*a)"),
    "k_factor": (0.0, 0.2, "t*ha*h/(ha*MJ*mm)"),
    "c_factor": (0.0, 1.0, "-"),
    "p_factor": (0.0, 1.0, "-"),
    "carbon.t_c_per_ha": (-30.0, 60.0, "t C/ha/a"),
    "carbon.g_c_per_m2": (-3000.0, 6000.0, "g C/m2/a"),
    "carbon.t_dm_per_ha": (-10.0, 150.0, "t dry matter/ha/a"),
}


@dataclass
class ValidationReport:
    """Result of :func:`validate`: ``problems`` (the run would fail or be wrong), ``warnings``, ``info``."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)
    #: the run's assumptions (:func:`gep_raster.assumptions.run_assumptions`): shown as warnings by ``gep validate``
    #: and written to the manifest; they describe the configured methods and do not stop ``gep run``
    assumptions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _sample(path: Path, band: int, max_side: int = 512) -> tuple[np.ndarray, object]:
    with rasterio.open(path) as ds:
        f = max(1, int(np.ceil(max(ds.width, ds.height) / max_side)))
        shape = (max(1, ds.height // f), max(1, ds.width // f))
        a = ds.read(band, out_shape=shape, resampling=Resampling.nearest, masked=True)
        return a, ds.nodatavals[band - 1]


def _bounds_on(path: Path, crs) -> tuple:
    with rasterio.open(path) as ds:
        if ds.crs is None:
            raise GepError(f"{path}: raster has no CRS")
        return transform_bounds(ds.crs, crs, *ds.bounds, densify_pts=21) if ds.crs != crs else tuple(ds.bounds)


def _overlap(a, b) -> bool:
    return not (a[0] >= b[2] or a[2] <= b[0] or a[1] >= b[3] or a[3] <= b[1])


def _check_memory(cfg: RunConfig, grid, model, n_inputs: int, rep: ValidationReport) -> None:
    """Block size from the memory budget, and whether flow routing fits it (whole DEM or per unit)."""
    from .budget import choose_chunk

    budget = cfg.processing.memory_budget_mb
    threads = cfg.processing.workers or (os.cpu_count() or 1)
    if cfg.output.chunk_size is None:
        try:
            chunk, info = choose_chunk(budget, grid.shape, n_inputs, len(model.outputs), threads)
            rep.info.append(f"memory budget {budget} MB: blocks of {chunk} x {chunk} px "
                            f"(~{info['block_bytes_per_pixel']} B/px, {info['blocks_in_flight']} blocks in flight)")
        except ValueError as exc:
            rep.problems.append(str(exc))
    if not model.needs_routing():
        return
    from .hydro_units import budget_problem, load_units, unit_windows

    plans = None
    if cfg.inputs.hydro_units is not None:
        try:
            plans = unit_windows(load_units(cfg.resolve(cfg.inputs.hydro_units.path), grid,
                                            cfg.inputs.hydro_units.id_field), grid)
        except GepError as exc:
            rep.problems.append(str(exc))
            return
    method, _ = model.routing_request()
    problem = budget_problem(method, budget, grid, plans)
    if problem:
        rep.problems.append(problem)
    elif plans is not None:
        _, uid, _, r0, r1, c0, c1 = max(plans, key=lambda p: (p[4] - p[3]) * (p[6] - p[5]))
        rep.info.append(f"flow routing per hydrological unit: {len(plans)} units, largest '{uid}' "
                        f"{r1 - r0} x {c1 - c0} px")


def _check_plausibility(model, sampled_max: dict, rep: ValidationReport) -> None:
    """Configured constants against the pre-run bounds (:func:`gep_raster.plausibility.pre_run_checks`: warnings on
    mass-balance or definitional bounds, info on [U] flags), and the run checks that will follow the computation."""
    from .plausibility import pre_run_checks, run_checks_for

    def scalar(service, key, flag=None):
        if service not in model.names:
            return None
        s = model.service(service)
        return None if flag and s.flags.get(flag[0]) != flag[1] else s.scalars.get(key)

    for d in pre_run_checks(k_constant=scalar("soil_retention", "k_constant", ("k_method", "constant")),
                            storm_precip_mm=scalar("flood_regulation", "storm_p"),
                            annual_precip_max_mm=sampled_max.get("precipitation"),
                            hot_days=scalar("climate_regulation", "hot_days"),
                            hot_season_et_factor=scalar("climate_regulation", "et_factor")):
        (rep.warnings if d.level == "warning" else rep.info).append(f"plausibility: {d.message}")
    rows = run_checks_for(model.names)
    rep.info.append(f"plausibility: after the run, {len(rows)} checks compare the results with documented bounds "
                    f"({', '.join(b.key for b in rows)}); results outside go to the log and "
                    "manifest.diagnostics.plausibility (bounds and sources: docs/plausibility.md)")


def validate(cfg: RunConfig) -> ValidationReport:
    """Check a configuration without computing anything heavy.

    Returns
    -------
    ValidationReport
        ``problems`` (the run would fail or give wrong numbers), ``warnings`` and ``info``.
        Never raises for a user mistake; every problem names the config key and the file.
    """
    from .pipeline import SCAN_CHUNK, class_histogram, open_inputs, reference_grid
    from .services import ServiceModel
    from .tables import PriceBook, load_legend, required_legend_columns

    rep = ValidationReport()
    grid = None
    try:
        grid = reference_grid(cfg)
        rep.info.append(f"reference grid from inputs.{cfg.reference}: {grid.width} x {grid.height} px, "
                        f"pixel {grid.res[0]:g} x {grid.res[1]:g}, CRS {grid.crs.to_string()}")
        if grid.is_geographic:
            msg = ("reference grid is geographic (degrees): pixel areas are computed on the ellipsoid per row")
            if cfg.services.soil_retention.enabled:
                rep.problems.append(f"inputs.{cfg.reference}: {msg}, but soil retention needs a projected grid in "
                                    "metres for slope and LS; reproject to a projected CRS or disable soil retention")
            else:
                rep.info.append(msg)
    except GepError as exc:
        rep.problems.append(str(exc))

    # every raster input opens, has a CRS and overlaps the grid
    i = cfg.inputs
    raster_specs = [("land_cover", i.land_cover, None)]
    for key in ("dem", "r_factor", "k_factor", "c_factor", "p_factor"):
        spec = getattr(i, key)
        if spec is not None:
            raster_specs.append((key, spec, key))
    for key in ("precipitation", "et", "et0"):
        spec = getattr(i, key)
        if spec is not None:
            raster_specs.append((key, spec, key))
    if i.carbon.method in ("nep", "npp") and i.carbon.path:
        raster_specs.append(("carbon", i.carbon, f"carbon.{i.carbon.unit}"))
    if i.carbon.method == "stock_change" and i.carbon.alternate_land_cover:
        raster_specs.append(("carbon.alternate_land_cover", i.carbon.alternate_land_cover, None))
    sampled_max: dict[str, float] = {}  # largest sampled value per PLAUSIBLE key (pre-run plausibility checks)
    for key, spec, prange in raster_specs:
        monthly = getattr(spec, "monthly", None)
        pattern = monthly if monthly is not None else spec.path
        sub = f"inputs.{key}.{'monthly' if monthly is not None else 'path'}"
        try:
            files = cfg.resolve_many(pattern, sub)
        except GepError as exc:
            rep.problems.append(str(exc))
            continue
        if monthly is not None and len(files) != 12:
            rep.problems.append(f"{sub}: expected 12 monthly rasters, found {len(files)}")
        band = getattr(spec, "band", 1)
        scale = getattr(spec, "scale", 1.0)
        for f in files:
            try:
                with rasterio.open(f) as ds:
                    if ds.crs is None:
                        rep.problems.append(f"{sub}: {f} has no CRS; assign one (gdal_edit.py -a_srs EPSG:XXXX)")
                        continue
                    if band > ds.count:
                        rep.problems.append(f"{sub}: {f} has {ds.count} band(s), band {band} asked for")
                        continue
                    nd = spec.nodata if getattr(spec, "nodata", None) is not None else ds.nodatavals[band - 1]
                    if nd is None:
                        rep.warnings.append(f"{sub}: {f} band {band} has no nodata value; every pixel is taken as "
                                            "valid (set 'nodata' in the config if some pixels are fill values)")
            except rasterio.errors.RasterioIOError as exc:
                rep.problems.append(f"{sub}: cannot open {f}: {exc}")
                continue
            if grid is not None:
                try:
                    if not _overlap(_bounds_on(f, grid.crs), grid.bounds):
                        rep.problems.append(f"{sub}: {f} does not overlap the reference grid "
                                            f"(grid bounds {tuple(round(b, 3) for b in grid.bounds)} in "
                                            f"{grid.crs.to_string()})")
                except Exception as exc:
                    rep.problems.append(f"{sub}: {f}: cannot compare its extent with the grid ({exc})")
            if prange is not None:
                rkey = f"{prange}.monthly" if monthly is not None else prange
                lo, hi, unit = PLAUSIBLE[rkey]
                try:
                    a, _ = _sample(f, band)
                    a = a.astype(np.float64) * scale if a.count() else a
                    if nd is not None and a.count():
                        a = np.ma.masked_equal(a, nd * scale)
                    if a.count():
                        mn, mx = float(a.min()), float(a.max())
                        sampled_max[rkey] = max(mx, sampled_max.get(rkey, mx))
                        if mn < lo or mx > hi:
                            rep.problems.append(
                                f"{sub}: {f} band {band} has values {mn:g}..{mx:g}, outside the plausible range "
                                f"{lo:g}..{hi:g} {unit} for this input (wrong unit, scale factor or nodata?)")
                    else:
                        rep.problems.append(f"{sub}: {f} band {band} holds only nodata")
                except Exception as exc:
                    rep.problems.append(f"{sub}: cannot read values of {f}: {exc}")

    # legend, prices, parameters
    legend = None
    try:
        legend = load_legend(cfg, required_legend_columns(cfg))
    except GepError as exc:
        rep.problems.append(str(exc))
    book = None
    try:
        book = PriceBook.from_config(cfg)
    except GepError as exc:
        rep.problems.append(str(exc))
    if grid is not None and legend is not None and book is not None:
        import tempfile

        # services that cache a derived raster while they configure (flood regulation's water bodies) write it
        # under a scratch output folder: validation leaves output.dir as it is
        scratch = tempfile.TemporaryDirectory(prefix="gep-validate-")
        try:
            mcfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"dir": scratch.name})})
            model = ServiceModel.from_config(mcfg, legend, book, cell_size=grid.res[0],
                                             geographic=grid.is_geographic)
            sources = open_inputs(mcfg, grid, model.input_keys(), model.input_requests())
            hist = class_histogram(sources["lc"], cfg.output.chunk_size or SCAN_CHUNK)
            missing = sorted(set(hist) - set(int(c) for c in legend.codes))
            if missing:
                rep.problems.append(f"legend {legend.path}: class code(s) {missing} occur in inputs.land_cover "
                                    f"({', '.join(f'{m}: {hist[m]} px' for m in missing[:10])}) but have no legend row")
            unused = sorted(set(int(c) for c in legend.codes) - set(hist))
            if unused:
                rep.info.append(f"legend classes not present in the land cover: {unused}")
            if not hist:
                rep.problems.append("inputs.land_cover: no valid pixel (all nodata)")
            _check_memory(cfg, grid, model, len(sources) + 1, rep)
            _check_plausibility(model, sampled_max, rep)
            from .assumptions import run_assumptions

            # the manifest's assumptions of this run (marked rows, stand-ins, left-out services, price years,
            # regional transfers), each as a warning
            rep.assumptions.extend(run_assumptions(cfg, legend, model, book))
        except GepError as exc:
            rep.problems.append(str(exc))
        finally:
            scratch.cleanup()

    # polygon layers
    if grid is not None:
        from .accounts import load_layer

        for name in cfg.layers:
            try:
                layer = load_layer(cfg, name, grid)
            except GepError as exc:
                rep.problems.append(str(exc))
                continue
            gb = grid.bounds
            import shapely

            box = shapely.box(*gb)
            outside = [layer.gdf[layer.config.id_field].iloc[k] for k, g in enumerate(layer.gdf.geometry)
                       if g is None or g.is_empty or not g.intersects(box)]
            if len(outside) == len(layer.gdf):
                rep.problems.append(f"layers.{name}: no polygon of {layer.path} overlaps the rasters "
                                    f"(grid bounds {tuple(round(b, 3) for b in gb)})")
            elif outside:
                rep.warnings.append(f"layers.{name}: polygon(s) {outside[:10]} of {layer.path} lie outside the rasters "
                                    "and will get zero values")
            invalid = [layer.gdf[layer.config.id_field].iloc[k] for k, g in enumerate(layer.gdf.geometry)
                       if g is not None and not g.is_valid]
            if invalid:
                rep.warnings.append(f"layers.{name}: polygon(s) {invalid[:10]} have invalid geometry "
                                    "(self-intersections); they are repaired with make_valid before coverage")
    # land-cover scenario: the edit polygons open and overlap the grid
    if cfg.scenario is not None and grid is not None:
        try:
            from .pipeline import _raster_source
            from .scenario import ScenarioSource

            sc = ScenarioSource(_raster_source(cfg, "land_cover", cfg.inputs.land_cover, grid, "categorical"),
                                cfg.scenario, grid, cfg)
            summary = sc.transitions(cfg.output.chunk_size or SCAN_CHUNK)
            if summary["edited_pixels"] == 0:
                rep.problems.append(f"scenario '{cfg.scenario.name}': no pixel centre of the reference grid lies in "
                                    "the edit polygons (wrong CRS, extent or from_classes?)")
            else:
                rep.info.append(f"scenario '{cfg.scenario.name}': {summary['edited_pixels']} pixels edited, "
                                f"transitions {summary['transitions']}")
        except GepError as exc:
            rep.problems.append(str(exc))

    # statistics table of the economic accounts (EPV, ECV)
    ea = cfg.economic_accounts
    if ea is not None and grid is not None and legend is not None:
        from .accounts import load_layer
        from .economic import load_statistics

        if ea.layer not in cfg.layers:
            rep.problems.append(f"economic_accounts.layer: no layer named '{ea.layer}' (layers: {list(cfg.layers)})")
        else:
            try:
                layer = load_layer(cfg, ea.layer, grid)
                load_statistics(cfg.resolve(ea.table), unit_ids=list(layer.gdf[layer.config.id_field]),
                                layer_name=ea.layer, id_field=layer.config.id_field, legend=legend,
                                weight_names=list((ea.weight_rasters or {}).keys()),
                                accounting_year=cfg.accounting_year)
            except GepError as exc:
                rep.problems.append(str(exc))
    return rep
