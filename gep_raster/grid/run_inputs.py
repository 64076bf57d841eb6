"""The run's inputs as lazy sources on the reference grid: the grid, one source per input, the land-cover histogram.

Used by the pipeline, by ``gep validate`` and by services that read an input of their own before the blocks
(flood regulation's water bodies). Reading and resampling are :class:`gep_raster.grid.io_read.GridSource`'s.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import ConfigError, InputError
from .reference import RefGrid
from .io_read import GridSource, StackSource, SumSource, grid_from_files
from ..services.base import ROUTING_PRODUCTS, TERRAIN_KEYS

if TYPE_CHECKING:
    from ..config import RunConfig

#: Window (pixels) of the land-cover histogram scans when output.chunk_size is not set.
SCAN_CHUNK = 1024


def reference_grid(cfg: RunConfig) -> RefGrid:
    """The reference grid of the run: that of ``inputs.<reference>`` (``cfg.reference``, the land cover by default).

    Raises
    ------
    ConfigError, RasterError
        The files are missing, unreadable or do not mosaic (message names the config key and file).
    """
    key = cfg.reference
    spec = getattr(cfg.inputs, key)
    return grid_from_files(cfg.resolve_many(spec.path, f"inputs.{key}.path"), f"inputs.{key}")


def raster_source(cfg, key, spec, grid, kind):
    """``inputs.<key>`` (a RasterInput ``spec``) as a lazy :class:`GridSource` on ``grid``; ``kind``
    ``"categorical"`` (nearest, int32 codes, -1 nodata) or ``"continuous"`` (float32, NaN nodata)."""
    return GridSource(f"inputs.{key}", cfg.resolve_many(spec.path, f"inputs.{key}.path"), grid, kind,
                      band=spec.band, nodata=spec.nodata, scale=spec.scale, resampling=spec.resampling)


def climate_source(cfg, key, spec, grid, name: str | None = None):
    """Annual raster, or the sum of 12 monthly rasters; ``name`` is the config key for messages."""
    name = name or f"inputs.{key}"
    if spec.path is not None:
        return GridSource(name, cfg.resolve_many(spec.path, f"{name}.path"), grid, "continuous", band=spec.band,
                          nodata=spec.nodata, scale=spec.scale, resampling=spec.resampling)
    files = cfg.resolve_many(spec.monthly, f"{name}.monthly")
    if len(files) != 12:
        raise ConfigError(f"{name}.monthly: expected 12 monthly rasters, found {len(files)}: "
                          f"{[f.name for f in files]}")
    subs = [GridSource(f"{name}.monthly[{m + 1}]", [f], grid, "continuous", band=spec.band,
                       nodata=spec.nodata, scale=spec.scale, resampling=spec.resampling)
            for m, f in enumerate(files)]
    return SumSource(name, subs)


def model_needs_dem(model_keys) -> bool:
    """True when an input key of the services is computed from the DEM (terrain terms or flow routing)."""
    return bool((set(TERRAIN_KEYS) | set(ROUTING_PRODUCTS)) & set(model_keys))


def open_inputs(cfg: RunConfig, grid: RefGrid, model_keys: list[str], requests: dict | None = None) -> dict:
    """Open every input the run needs as a lazy source on ``grid``.

    ``model_keys`` are the keys of :meth:`ServiceModel.input_keys` (core keys, see
    :data:`gep_raster.services.base.CORE_INPUTS`); ``requests`` maps a service's own input keys to
    :class:`~gep_raster.services.base.InputRequest`. The DEM is opened as ``dem`` when any terrain term is needed."""
    i = cfg.inputs
    src: dict = {"lc": raster_source(cfg, "land_cover", i.land_cover, grid, "categorical")}
    if "precip" in model_keys:
        src["precip"] = climate_source(cfg, "precipitation", i.precipitation, grid)
    if "et" in model_keys:
        src["et"] = climate_source(cfg, "et" if i.et is not None else "et0", i.et or i.et0, grid)
    if model_needs_dem(model_keys):
        src["dem"] = raster_source(cfg, "dem", i.dem, grid, "continuous")
    for key, name in (("r", "r_factor"), ("k", "k_factor"), ("c", "c_factor"), ("p", "p_factor")):
        if key in model_keys:
            src[key] = raster_source(cfg, name, getattr(i, name), grid, "continuous")
    if "carbon_flux" in model_keys:
        c = i.carbon
        src["carbon_flux"] = GridSource("inputs.carbon", cfg.resolve_many(c.path, "inputs.carbon.path"), grid,
                                        "continuous", nodata=c.nodata)
    if "lc_alt" in model_keys:
        a = i.carbon.alternate_land_cover
        src["lc_alt"] = raster_source(cfg, "carbon.alternate_land_cover", a, grid, "categorical")
    for key, req in (requests or {}).items():
        if key in src:
            continue
        if req.stack is not None:  # a layer computed from a stack of rasters (e.g. R from monthly rainfall)
            sp = req.spec
            subs = [GridSource(f"{req.config_key}[{n}]", [f], grid, "continuous", band=b, nodata=sp.nodata,
                               scale=sp.scale, resampling=sp.resampling)
                    for n, (f, b) in enumerate(req.stack, start=1)]
            src[key] = StackSource(req.config_key, subs, req.reduce, req.label)
        elif hasattr(req.spec, "monthly"):  # ClimateInput: annual or 12 monthly rasters
            src[key] = climate_source(cfg, key, req.spec, grid, name=req.config_key)
        else:
            src[key] = GridSource(req.config_key, cfg.resolve_many(req.spec.path, f"{req.config_key}.path"), grid,
                                  req.kind, band=req.spec.band, nodata=req.spec.nodata, scale=req.spec.scale,
                                  resampling=req.spec.resampling)
    return src


def class_histogram(source: GridSource, chunk: int, *, with_area: bool = False, threads: int = 1):
    """Pixel count per class code of a categorical source (read block by block, ``threads`` blocks at once).

    With ``with_area`` also returns the area of each class in m2 (true pixel areas per row). Blocks are added
    in row-major order whatever ``threads`` is, so the areas (float sums) do not depend on it.

    Raises
    ------
    InputError
        A class code above 65536 (codes are 0..65536; negative = nodata).
    """
    from ..kernels.reduce import class_counts

    g = source.grid

    def one(win):
        r0, r1, c0, c1 = win
        return class_counts(source.read(r0, r1, c0, c1), g.row_pixel_area_m2[r0:r1] if with_area else None)

    counts = np.zeros(65537, dtype=np.int64)
    areas = np.zeros(65537, dtype=np.float64)
    over = 0
    windows = list(g.block_windows(chunk))
    with ThreadPoolExecutor(max(1, min(int(threads), len(windows)))) as pool:
        for c, a, n_over in pool.map(one, windows):  # in window order
            counts += c
            areas += a
            over += n_over
    if over:
        raise InputError(f"{source.name}: {over} pixels hold a class code above 65536; land-cover codes must be "
                         "0..65536 (negative values or the file's nodata mark no data)")
    hist = {int(k): int(counts[k]) for k in np.flatnonzero(counts)}
    if with_area:
        return hist, {int(k): float(areas[k]) for k in np.flatnonzero(counts)}
    return hist
