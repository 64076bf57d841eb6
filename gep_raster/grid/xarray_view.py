"""The run's inputs as lazy ``xarray.DataArray``s on the reference grid (dask-backed, rioxarray CRS and transform).

The same reader as the pipeline (:class:`gep_raster.grid.io_read.GridSource`: local tiles, remote files, STAC
items, reprojection per destination pixel centre), seen as xarray for notebooks and other tools::

    import gep_raster.grid.xarray_view as xv
    et = xv.open_input("pipelines/sample_stac.yaml", "et")      # lazy, (y, x) float32, mm/a
    et.mean().compute()
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["source_to_xarray", "open_input", "INPUT_UNITS"]

#: units of the core inputs as the engine reads them (after ``scale``)
INPUT_UNITS = {"land_cover": "class code", "dem": "m", "precipitation": "mm/a", "et": "mm/a", "et0": "mm/a",
               "r_factor": "MJ mm/(ha h a)", "k_factor": "t ha h/(ha MJ mm)", "c_factor": "1", "p_factor": "1"}


def source_to_xarray(source, chunks: int | tuple[int, int] = 1024, *, units: str | None = None):
    """A lazy ``xarray.DataArray`` of a source on its reference grid.

    Parameters
    ----------
    source : GridSource, SumSource or StackSource
        An input opened on a :class:`~gep_raster.grid.RefGrid` (:func:`gep_raster.grid.run_inputs.open_inputs`).
    chunks : int or (int, int)
        Dask chunk side(s) in pixels; the values do not depend on it.
    units : str, optional
        Written to ``attrs["units"]``.

    Returns
    -------
    xarray.DataArray
        Shape (height, width), dims ``("y", "x")``, coordinates of the pixel centres in the grid CRS; int32 with -1
        for no data (classes) or float32 with NaN (continuous); CRS and transform set with rioxarray
        (``da.rio.crs``, ``da.rio.transform()``), ``attrs``: ``name`` (config key), ``units``.
    """
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr

    from .io_read import windowed_to_dask

    grid = _grid_of(source)
    t = grid.transform
    x = t.c + (np.arange(grid.width) + 0.5) * t.a
    y = t.f + (np.arange(grid.height) + 0.5) * t.e
    data = windowed_to_dask(source, chunks)
    da = xr.DataArray(data, dims=("y", "x"), coords={"y": y, "x": x}, name=source.name.rsplit(".", 1)[-1],
                      attrs={"name": source.name, **({"units": units} if units else {})})
    da = da.rio.write_crs(grid.crs).rio.write_transform(t)
    return da.rio.write_nodata(getattr(source, "fill", np.nan), encoded=False)


def _grid_of(source):
    while not hasattr(source, "grid"):
        source = source.sources[0]
    return source.grid


def open_input(config, key: str, chunks: int | tuple[int, int] = 1024, *, base_dir: str | Path | None = None):
    """``inputs.<key>`` of a run configuration as a lazy DataArray on the run's reference grid.

    Parameters
    ----------
    config : str, Path, dict or RunConfig
        The run configuration (as for :func:`gep_raster.load_config`).
    key : str
        ``land_cover``, ``dem``, ``precipitation``, ``et``, ``et0``, ``r_factor``, ``k_factor``, ``c_factor`` or
        ``p_factor``.
    chunks : int or (int, int)
        Dask chunk side(s) in pixels.
    base_dir : str or Path, optional
        Folder relative paths of a dict config are resolved from.

    Returns
    -------
    xarray.DataArray
        See :func:`source_to_xarray`; ``attrs["units"]`` from :data:`INPUT_UNITS`.

    Raises
    ------
    ConfigError
        ``key`` is not an input of the configuration.
    InputError
        A file (or URL, or STAC item) cannot be opened; the message names it.
    """
    from ..api import load_config
    from ..errors import ConfigError
    from .run_inputs import climate_source, raster_source, reference_grid

    cfg = load_config(config, base_dir=base_dir) if not hasattr(config, "inputs") else config
    if key not in INPUT_UNITS:
        raise ConfigError(f"open_input: unknown input '{key}'; one of {sorted(INPUT_UNITS)}")
    spec = getattr(cfg.inputs, key, None)
    if spec is None:
        raise ConfigError(f"open_input: inputs.{key} is not set in the configuration")
    grid = reference_grid(cfg)
    if key in ("precipitation", "et", "et0"):
        src = climate_source(cfg, key, spec, grid)
    else:
        src = raster_source(cfg, key, spec, grid, "categorical" if key == "land_cover" else "continuous")
    return source_to_xarray(src, chunks, units=INPUT_UNITS[key])
