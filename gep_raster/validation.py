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
    from .terrain.hydro_units import budget_problem, load_units, unit_windows

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

    The checks run in this order, each adding to one report: reference grid, every raster input (opens, CRS,
    band, nodata, overlap, plausible values), water balance of the sampled climate inputs, output folder,
    processing options, legend and prices, the service model on the land cover (legend covers every class,
    memory budget, plausibility of constants, assumptions), polygon layers and their nesting, land-cover
    scenario, statistics table of the economic accounts.

    Returns
    -------
    ValidationReport
        ``problems`` (the run would fail or give wrong numbers), ``warnings`` and ``info``.
        Never raises for a user mistake; every problem names the config key and the file.
    """
    from .services.registry import required_legend_columns
    from .tables import PriceBook, load_legend

    from .grid.remote import apply_gdal_options

    rep = ValidationReport()
    apply_gdal_options(cfg.processing.remote)
    grid = _check_grid(cfg, rep)
    raster_specs = _raster_specs(cfg.inputs)
    sampled = _Sampled()
    for key, spec, prange in raster_specs:
        _check_raster_input(cfg, key, spec, prange, grid, sampled, rep)
    inputs_ok = not rep.problems
    _check_water_balance(sampled.mean, rep)
    _check_output_dir(cfg, [f for _, spec, _ in raster_specs for f in _spec_files(cfg, spec)], rep)
    _check_processing(cfg, rep)
    legend = _attempt(rep, lambda: load_legend(cfg, required_legend_columns(cfg)))
    book = _attempt(rep, lambda: PriceBook.from_config(cfg))
    if grid is not None and legend is not None and book is not None and inputs_ok:
        _check_model(cfg, grid, legend, book, sampled.max, rep)
    elif not inputs_ok:
        rep.info.append("the checks of the service model on the inputs (legend coverage, memory, plausibility, "
                        "assumptions) were skipped: a raster input above cannot be used")
    if grid is not None:
        _check_layers(cfg, grid, rep)
        _check_nesting(cfg, grid, rep)
    if cfg.scenario is not None and grid is not None:
        _check_scenario(cfg, grid, rep)
    if cfg.economic_accounts is not None and grid is not None and legend is not None:
        _check_economic_table(cfg, grid, legend, rep)
    # each problem (and warning) reported once, in the order found
    rep.problems, rep.warnings = list(dict.fromkeys(rep.problems)), list(dict.fromkeys(rep.warnings))
    return rep


def _attempt(rep: ValidationReport, load):
    """``load()``, or None with its :class:`GepError` as a problem."""
    try:
        return load()
    except GepError as exc:
        rep.problems.append(str(exc))
        return None


@dataclass
class _Sampled:
    """Values sampled from the raster inputs, for the checks that compare inputs with each other or with constants."""

    #: largest sampled value per :data:`PLAUSIBLE` key (pre-run plausibility checks)
    max: dict[str, float] = field(default_factory=dict)
    #: mean of the sample of each file, per input key, as mm/a for climate inputs
    mean: dict[str, list] = field(default_factory=dict)


def _check_grid(cfg: RunConfig, rep: ValidationReport):
    """The reference grid (None if it cannot be made), and whether the enabled services can use it."""
    from .grid.run_inputs import reference_grid

    grid = _attempt(rep, lambda: reference_grid(cfg))
    if grid is None:
        return None
    rep.info.append(f"reference grid from inputs.{cfg.reference}: {grid.width} x {grid.height} px, "
                    f"pixel {grid.res[0]:g} x {grid.res[1]:g}, CRS {grid.crs.to_string()}")
    if grid.is_geographic:
        msg = ("reference grid is geographic (degrees): pixel areas are computed on the ellipsoid per row")
        if cfg.services.soil_retention.enabled:
            rep.problems.append(f"inputs.{cfg.reference}: {msg}, but soil retention needs a projected grid in "
                                "metres for slope and LS; reproject to a projected CRS or disable soil retention")
        else:
            rep.info.append(msg)
    return grid


def _raster_specs(i) -> list[tuple]:
    """(input key, its config, :data:`PLAUSIBLE` key or None) of every raster input of ``cfg.inputs``."""
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
    return raster_specs


def _check_raster_input(cfg: RunConfig, key: str, spec, prange, grid, sampled: _Sampled,
                        rep: ValidationReport) -> None:
    """One raster input: its files resolve (12 if monthly), tiles agree, and every file passes
    :func:`_check_raster_file`."""
    monthly = getattr(spec, "monthly", None)
    pattern = monthly if monthly is not None else spec.path
    sub = f"inputs.{key}.{'monthly' if monthly is not None else 'path'}"
    files = _attempt(rep, lambda: cfg.resolve_many(pattern, sub))
    if files is None:
        return
    if monthly is not None and len(files) != 12:
        rep.problems.append(f"{sub}: expected 12 monthly rasters, found {len(files)}")
    band = getattr(spec, "band", 1)
    if monthly is None and len(files) > 1:
        _check_tiles(sub, files, band, rep)
    for f in files:
        _check_raster_file(sub, f, key, spec, band, prange, grid, sampled, rep)


def _check_raster_file(sub: str, f: Path, key: str, spec, band: int, prange, grid, sampled: _Sampled,
                       rep: ValidationReport) -> None:
    """One file of an input: opens, has a CRS and the band, declares nodata, overlaps the grid, and its sampled
    values lie in the plausible range of ``prange`` (unit after ``scale``)."""
    monthly = getattr(spec, "monthly", None)
    try:
        with rasterio.open(f) as ds:
            if ds.crs is None:
                rep.problems.append(f"{sub}: {f} has no CRS; assign one (gdal_edit.py -a_srs EPSG:XXXX)")
                return
            if band > ds.count:
                rep.problems.append(f"{sub}: {f} has {ds.count} band(s), band {band} asked for")
                return
            nd = spec.nodata if getattr(spec, "nodata", None) is not None else ds.nodatavals[band - 1]
            if nd is None:
                rep.warnings.append(f"{sub}: {f} band {band} has no nodata value; every pixel is taken as "
                                    "valid (set 'nodata' in the config if some pixels are fill values)")
    except rasterio.errors.RasterioIOError as exc:
        from .grid.remote import RemotePath, explain_open_failure

        if isinstance(f, RemotePath):
            rep.problems.append(f"{sub}: cannot open remote raster {explain_open_failure(f, str(exc))}")
        else:
            rep.problems.append(f"{sub}: cannot open {f}: {exc}")
        return
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
        try:
            _check_value_range(sub, f, key, band, getattr(spec, "scale", 1.0), nd, rkey, monthly is not None,
                               sampled, rep)
        except Exception as exc:
            rep.problems.append(f"{sub}: cannot read values of {f}: {exc}")


def _check_value_range(sub: str, f: Path, key: str, band: int, scale: float, nd, rkey: str, monthly: bool,
                       sampled: _Sampled, rep: ValidationReport) -> None:
    """Sampled values of one file (nearest, at most 512 px a side) against ``PLAUSIBLE[rkey]``; records the
    sample's maximum and mean (x 12 for monthly files) in ``sampled``."""
    lo, hi, unit = PLAUSIBLE[rkey]
    a, _ = _sample(f, band)
    a = a.astype(np.float64) * scale if a.count() else a
    if nd is not None and a.count():
        a = np.ma.masked_equal(a, nd * scale)
    if not a.count():
        rep.problems.append(f"{sub}: {f} band {band} holds only nodata")
        return
    mn, mx = float(a.min()), float(a.max())
    sampled.max[rkey] = max(mx, sampled.max.get(rkey, mx))
    sampled.mean.setdefault(key, []).append(float(a.mean()) * (12 if monthly else 1))
    if mn < lo or mx > hi:
        rep.problems.append(
            f"{sub}: {f} band {band} has values {mn:g}..{mx:g}, outside the plausible range "
            f"{lo:g}..{hi:g} {unit} for this input (wrong unit, scale factor or nodata?)")


def _check_water_balance(sampled_mean: dict, rep: ValidationReport) -> None:
    """Mean sampled actual ET above mean sampled precipitation: a warning (swapped inputs, or ET0 given as ET)."""
    if "et" in sampled_mean and "precipitation" in sampled_mean:
        et_mean, p_mean = np.mean(sampled_mean["et"]), np.mean(sampled_mean["precipitation"])
        if et_mean > p_mean:
            rep.warnings.append(f"inputs.et: mean actual ET {et_mean:,.0f} mm/a exceeds inputs.precipitation mean "
                                f"{p_mean:,.0f} mm/a (sampled): the water balance leaves no water anywhere; are the "
                                "inputs swapped, or is ET0 given as actual ET (use inputs.et0)?")


def _check_model(cfg: RunConfig, grid, legend, book, sampled_max: dict, rep: ValidationReport) -> None:
    """The service model configured on the grid: every land-cover class has a legend row, the memory budget,
    the plausibility of configured constants, and the run's assumptions."""
    import tempfile

    from .assumptions import run_assumptions
    from .grid.run_inputs import SCAN_CHUNK, class_histogram, open_inputs
    from .services import ServiceModel

    # services that cache a derived raster while they configure (flood regulation's water bodies) write it
    # under a scratch output folder: validation leaves output.dir as it is
    scratch = tempfile.TemporaryDirectory(prefix="gep-validate-")
    try:
        mcfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"dir": scratch.name})})
        model = ServiceModel.from_config(mcfg, legend, book, cell_size=grid.res[0],
                                         geographic=grid.is_geographic)
        sources = open_inputs(mcfg, grid, model.input_keys(), model.input_requests())
        hist = class_histogram(sources["lc"], cfg.output.chunk_size or SCAN_CHUNK)
        missing = sorted(set(hist) - set(int(c) for c in legend.codes) - set(legend.nodata_codes))
        nodata_present = sorted(set(hist) & set(legend.nodata_codes))
        if nodata_present:
            rep.info.append(f"inputs.land_cover: code(s) {nodata_present} ("
                            f"{', '.join(f'{m}: {hist[m]} px' for m in nodata_present)}) are no data in the product "
                            f"legend '{legend.product}' and are read as no data")
        if missing:
            rep.problems.append(f"legend {legend.label}: class code(s) {missing} occur in inputs.land_cover "
                                f"({', '.join(f'{m}: {hist[m]} px' for m in missing[:10])}) but have no legend row")
        unused = sorted(set(int(c) for c in legend.codes) - set(hist))
        if unused:
            rep.info.append(f"legend classes not present in the land cover: {unused}")
        if not hist:
            rep.problems.append("inputs.land_cover: no valid pixel (all nodata)")
        _check_memory(cfg, grid, model, len(sources) + 1, rep)
        _check_plausibility(model, sampled_max, rep)
        # the manifest's assumptions of this run (marked rows, stand-ins, left-out services, price years,
        # regional transfers), each as a warning
        rep.assumptions.extend(run_assumptions(cfg, legend, model, book))
    except GepError as exc:
        rep.problems.append(str(exc))
    finally:
        scratch.cleanup()


def _check_layers(cfg: RunConfig, grid, rep: ValidationReport) -> None:
    """Every polygon layer opens, overlaps the rasters (polygons outside: a warning) and has valid geometry."""
    import shapely

    from .accounts.layers import load_layer

    box = shapely.box(*grid.bounds)
    for name in cfg.layers:
        layer = _attempt(rep, lambda: load_layer(cfg, name, grid))
        if layer is None:
            continue
        ids = layer.gdf[layer.config.id_field]
        outside = [ids.iloc[k] for k, g in enumerate(layer.gdf.geometry)
                   if g is None or g.is_empty or not g.intersects(box)]
        if len(outside) == len(layer.gdf):
            rep.problems.append(f"layers.{name}: no polygon of {layer.path} overlaps the rasters "
                                f"(grid bounds {tuple(round(b, 3) for b in grid.bounds)})")
        elif outside:
            rep.warnings.append(f"layers.{name}: polygon(s) {outside[:10]} of {layer.path} lie outside the rasters "
                                "and will get zero values")
        invalid = list(layer.gdf.attrs.get("repaired_ids", [])) + [
            ids.iloc[k] for k, g in enumerate(layer.gdf.geometry) if g is not None and not g.is_valid]
        if invalid:
            rep.warnings.append(f"layers.{name}: polygon(s) {invalid[:10]} have invalid geometry "
                                "(self-intersections); they are repaired with make_valid before coverage")


def _check_scenario(cfg: RunConfig, grid, rep: ValidationReport) -> None:
    """The land-cover scenario's edit polygons open and cover at least one pixel centre of the grid."""
    from .grid.run_inputs import SCAN_CHUNK, raster_source
    from .analysis.scenario import ScenarioSource

    try:
        sc = ScenarioSource(raster_source(cfg, "land_cover", cfg.inputs.land_cover, grid, "categorical"),
                            cfg.scenario, grid, cfg)
        summary = sc.transitions(cfg.output.chunk_size or SCAN_CHUNK)
    except GepError as exc:
        rep.problems.append(str(exc))
        return
    if summary["edited_pixels"] == 0:
        rep.problems.append(f"scenario '{cfg.scenario.name}': no pixel centre of the reference grid lies in "
                            "the edit polygons (wrong CRS, extent or from_classes?)")
    else:
        rep.info.append(f"scenario '{cfg.scenario.name}': {summary['edited_pixels']} pixels edited, "
                        f"transitions {summary['transitions']}")


def _check_economic_table(cfg: RunConfig, grid, legend, rep: ValidationReport) -> None:
    """The statistics table of the economic accounts (EPV, ECV) loads against its layer's unit ids."""
    from .accounts.layers import load_layer
    from .accounts.economic import load_statistics

    ea = cfg.economic_accounts
    if ea.layer not in cfg.layers:
        rep.problems.append(f"economic_accounts.layer: no layer named '{ea.layer}' (layers: {list(cfg.layers)})")
        return
    try:
        layer = load_layer(cfg, ea.layer, grid)
        load_statistics(cfg.resolve(ea.table), unit_ids=list(layer.gdf[layer.config.id_field]),
                        layer_name=ea.layer, id_field=layer.config.id_field, legend=legend,
                        weight_names=list((ea.weight_rasters or {}).keys()),
                        accounting_year=cfg.accounting_year)
    except GepError as exc:
        rep.problems.append(str(exc))


def _spec_files(cfg, spec) -> list[Path]:
    try:
        pattern = getattr(spec, "monthly", None) or spec.path
        return cfg.resolve_many(pattern, "inputs")
    except GepError:
        return []


def _check_tiles(sub: str, files: list[Path], band: int, rep: ValidationReport) -> None:
    """Tiles of one input that overlap and hold different values there: a warning (the mosaic takes one of them).

    Tiles in other CRSs or resolutions are fine (each is warped onto the reference grid); only pairs in the same
    CRS and resolution are compared, on their common window."""
    from rasterio.windows import from_bounds

    infos = []
    for f in files:
        try:
            with rasterio.open(f) as ds:
                infos.append((f, ds.crs, ds.res, ds.bounds))
        except rasterio.errors.RasterioIOError:
            continue  # reported by the per-file check
    for k, (fa, ca, r, a) in enumerate(infos):
        for fb, cb, rb, b in infos[k + 1:]:
            if ca != cb or r != rb:
                continue
            w = min(a.right, b.right) - max(a.left, b.left)
            h = min(a.top, b.top) - max(a.bottom, b.bottom)
            if w < r[0] / 2 or h < r[1] / 2:
                continue
            box = (max(a.left, b.left), max(a.bottom, b.bottom), min(a.right, b.right), min(a.top, b.top))
            try:
                with rasterio.open(fa) as da, rasterio.open(fb) as db:
                    va = da.read(band, window=from_bounds(*box, transform=da.transform), masked=True,
                                 boundless=True).astype(np.float64)
                    vb = db.read(band, window=from_bounds(*box, transform=db.transform), masked=True,
                                 boundless=True).astype(np.float64)
            except Exception:
                continue
            if va.shape != vb.shape:
                continue
            both = ~np.ma.getmaskarray(va) & ~np.ma.getmaskarray(vb)
            diff = both & ~np.isclose(va.filled(0), vb.filled(0), rtol=1e-6, atol=1e-9)
            if both.any() and diff.sum() > 0.01 * both.sum():
                rep.warnings.append(f"{sub}: tiles {fa.name} and {fb.name} overlap by about {w / r[0]:.0f} x "
                                    f"{h / r[1]:.0f} px and hold different values on {diff.sum() / both.sum():.0%} "
                                    "of it; only one of them gives the values there (clip the tiles or fix the "
                                    "one that is wrong)")


def _check_output_dir(cfg, input_files: list[Path], rep: ValidationReport) -> None:
    """output.dir: a folder (or creatable), writable, and neither equal to nor containing an input file."""
    import os

    from .grid.remote import is_remote_path

    out = cfg.output_dir.resolve()
    for anc in [out, *out.parents]:
        if anc.exists():
            if not anc.is_dir():
                rep.problems.append(f"output.dir: {out} is not a folder ({anc} is a file); choose a folder path")
                return
            if not os.access(anc, os.W_OK | os.X_OK):
                rep.problems.append(f"output.dir: {anc} is not writable; choose a folder you can write to")
                return
            break
    files = list(input_files)
    files += ([cfg.resolve(cfg.legend.path)] if cfg.legend.path else []) + [cfg.resolve(layer.path)
                                                                            for layer in cfg.layers.values()]
    if cfg.source_path is not None:
        files.append(cfg.source_path)
    files = [f for f in files if not is_remote_path(f)]
    inside = sorted({str(f) for f in files if out == Path(f).resolve().parent or out in Path(f).resolve().parents})
    if inside:
        rep.problems.append(f"output.dir: {out} contains input file(s) {inside[:3]}"
                            + (f" and {len(inside) - 3} more" if len(inside) > 3 else "")
                            + ": outputs would be written among the inputs; choose an empty folder of its own "
                              "(e.g. output.dir: out)")


def _check_processing(cfg, rep: ValidationReport) -> None:
    import os

    try:
        ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):
        return
    if cfg.processing.memory_budget_mb > ram_mb:
        rep.warnings.append(f"processing.memory_budget_mb = {cfg.processing.memory_budget_mb:,} MB is more than the "
                            f"memory of this machine ({ram_mb:,.0f} MB RAM): blocks sized for it would swap or be "
                            "killed; give at most the RAM you can spare")


def _check_nesting(cfg, grid, rep: ValidationReport) -> None:
    """Children (``nests_in``) lying partly outside their parent layer: a warning naming them and the share."""
    from .accounts.layers import load_layer

    for name, lc in cfg.layers.items():
        parent = getattr(lc, "nests_in", None)
        if not parent or parent not in cfg.layers:
            continue
        try:
            child, par = load_layer(cfg, name, grid), load_layer(cfg, parent, grid)
        except GepError:
            continue  # reported above
        union = par.gdf.geometry.union_all() if hasattr(par.gdf.geometry, "union_all") else par.gdf.unary_union
        bad = []
        for k, g in enumerate(child.gdf.geometry):
            if g is None or g.is_empty or g.area <= 0:
                continue
            share = g.difference(union).area / g.area
            if share > 0.01:
                bad.append(f"{child.gdf[lc.id_field].iloc[k]} ({share:.0%})")
        if bad:
            rep.warnings.append(f"layers.{name}: polygon(s) {bad[:10]} lie partly outside layers.{parent} (share of "
                                f"their area outside): the children do not nest in their parent "
                                f"(nests_in: {parent}); fix the boundaries or remove nests_in")
