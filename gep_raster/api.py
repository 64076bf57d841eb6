"""The Python face of gep_raster: :func:`load_config`, :func:`validate`, :func:`run` and :func:`read_run`, also
importable from the package itself (``gep_raster.run(...)``).

Each accepts a configuration as a path to a YAML file, a ``dict`` with the same keys as the YAML (relative paths
resolved from ``base_dir``, default the current folder), or a :class:`~gep_raster.config.RunConfig`::

    import gep_raster
    res = gep_raster.run("pipelines/sample.yaml", output_dir="out/sample")
    res.totals.loc["gep_r_yuan", "sum"]        # GEP-R of the region, yuan/a
    res.tables["township"]                     # GeoDataFrame: one row per township, every service
    res.outputs["rasters/gep_r_yuan.tif"]      # absolute path of the GEP-R map (COG)

The command line (``gep run``, ``gep validate``) calls the same functions.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Union

from .errors import ConfigError

if TYPE_CHECKING:  # imported lazily at run time (the config module imports the service registry)
    from .config import RunConfig

ConfigLike = Union[str, os.PathLike, Mapping, "RunConfig"]

__all__ = ["load_config", "validate", "run", "read_run"]


def load_config(config: ConfigLike, overrides: Mapping | None = None, *, base_dir: str | os.PathLike | None = None):
    """A validated run configuration from a YAML path, a dict or a config object.

    Parameters
    ----------
    config : str, os.PathLike, Mapping or RunConfig
        A YAML file (relative paths inside resolved from its folder), a mapping with the YAML's keys (``name``,
        ``inputs``, ``legend``, ``output``...; relative paths resolved from ``base_dir``), or an already validated
        :class:`~gep_raster.config.RunConfig` (returned as is without ``overrides``).
    overrides : Mapping, optional
        Keys merged in after reading, mapping by mapping at every depth (e.g. ``{"output": {"dir": "/tmp/x"}}``).
    base_dir : str or os.PathLike, optional
        Folder that relative paths of a mapping are resolved from (default: the current folder). Not allowed with
        a YAML path (its own folder is used).

    Returns
    -------
    RunConfig

    Raises
    ------
    ConfigError
        The file is missing or not YAML, a key is unknown, missing or invalid (every offending key named), or
        ``config`` is of another type.
    """
    from . import config as config_module

    if isinstance(config, config_module.RunConfig):
        if not overrides:
            return config
        raw = config_module.merge_overrides(config.to_json_dict(), dict(overrides))
        return config_module.load_config_dict(raw, base_dir=config.base_dir, source_path=config.source_path)
    if isinstance(config, Mapping):
        raw = config_module.merge_overrides(dict(config), dict(overrides)) if overrides else dict(config)
        return config_module.load_config_dict(raw, base_dir=Path(base_dir) if base_dir is not None else None)
    if isinstance(config, (str, os.PathLike)):
        if base_dir is not None:
            raise ConfigError(f"{config}: base_dir is only for a config given as a dict; the paths of a YAML "
                              "file are resolved from its own folder")
        return config_module.load_config(config, overrides=dict(overrides) if overrides else None)
    raise ConfigError(f"config must be a path to a YAML file, a dict or a RunConfig, not {type(config).__name__}")


def validate(config: ConfigLike, *, base_dir: str | os.PathLike | None = None):
    """The checks of ``gep validate`` (inputs open, CRSs, overlap, legend coverage, polygons, value ranges).

    Parameters
    ----------
    config : str, os.PathLike, Mapping or RunConfig
        As in :func:`load_config`.
    base_dir : str or os.PathLike, optional
        As in :func:`load_config`.

    Returns
    -------
    gep_raster.validation.ValidationReport
        ``problems``, ``warnings``, ``info`` and ``assumptions`` (lists of str, each problem once); ``ok`` is True
        when there is no problem.

    Raises
    ------
    ConfigError
        The configuration itself is invalid (:func:`load_config`); input problems are reported, not raised.
    """
    from .validation import validate as run_validate

    return run_validate(load_config(config, base_dir=base_dir))


def run(config: ConfigLike, *, output_dir: str | os.PathLike | None = None, base_dir: str | os.PathLike | None = None,
        workers: int | None = None, progress: bool = False, force: bool = False, scheduler=None,
        accept_warnings: bool = False):
    """Run a GEP-R account end to end (what ``gep run`` does) and return its results.

    Parameters
    ----------
    config : str, os.PathLike, Mapping or RunConfig
        As in :func:`load_config`.
    output_dir : str or os.PathLike, optional
        Replaces ``output.dir`` of the config.
    base_dir : str or os.PathLike, optional
        As in :func:`load_config` (mapping configs only).
    workers, force, scheduler, accept_warnings
        As in :func:`gep_raster.pipeline.run`.
    progress : bool
        Show the block progress on stderr (default False from Python).

    Returns
    -------
    gep_raster.pipeline.RunResult
        ``output_dir``, ``manifest`` (dict), ``totals`` (pandas.DataFrame: ``sum``, ``unit``, ``valid_pixels`` per
        quantity), ``tables`` (layer name -> GeoDataFrame of the account table), ``outputs`` (relative path ->
        absolute Path of every raster, table and figure).

    Raises
    ------
    ConfigError
        Invalid configuration.
    ValidationFailed
        The checks of :func:`validate` found problems (or warnings, without ``accept_warnings``).
    InputError, OutputError, GepError
        As :func:`gep_raster.pipeline.run`; the message names the file and the field.
    """
    from .pipeline import run as run_pipeline

    overrides = {"output": {"dir": str(Path(output_dir).resolve())}} if output_dir is not None else None
    cfg = load_config(config, overrides, base_dir=base_dir)
    return run_pipeline(cfg, workers=workers, progress=progress, force=force, scheduler=scheduler,
                        accept_warnings=accept_warnings)


def read_run(run_dir: str | os.PathLike):
    """The results of a finished run, read back from its output folder (no computation).

    Parameters
    ----------
    run_dir : str or os.PathLike
        Output folder of ``gep run`` (holds ``manifest.json`` and ``tables/<layer>.gpkg``).

    Returns
    -------
    gep_raster.pipeline.RunResult
        As :func:`run` returns it; ``tables`` read from the GeoPackages the run wrote.

    Raises
    ------
    InputError
        No ``manifest.json`` in ``run_dir`` (not a finished run), or it is not readable JSON.
    """
    import geopandas as gpd

    from .analysis.change import read_manifest
    from .pipeline import RunResult

    out = Path(run_dir).resolve()
    mpath, manifest = read_manifest(out)
    tables = {}
    for layer in manifest.get("config", {}).get("layers", {}):
        gpkg = out / "tables" / f"{layer}.gpkg"
        if gpkg.is_file():
            tables[layer] = gpd.read_file(gpkg)
    return RunResult(output_dir=out, manifest_path=mpath, manifest=manifest, tables=tables)
