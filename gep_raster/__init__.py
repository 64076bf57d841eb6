"""gep_raster: Gross Ecosystem Product (GEP) maps and accounts from land-cover and remote-sensing rasters.

The package computes per-pixel regulating services (GEP-R: water conservation, soil retention,
carbon sequestration, air purification...), values them in yuan, and aggregates them to township,
county and special-unit (VEP) polygons.

From Python::

    import gep_raster
    cfg = gep_raster.load_config("pipelines/sample.yaml")     # or a dict with the YAML's keys
    report = gep_raster.validate(cfg)                          # report.problems, report.warnings
    res = gep_raster.run(cfg, output_dir="out/sample")         # res.totals, res.tables, res.outputs
    res = gep_raster.read_run("out/sample")                    # a finished run, read back

Nothing heavy is imported here (no numba compilation): the functions above are loaded on first use
(:mod:`gep_raster.api`).
"""
from . import numba_cache as _numba_cache  # noqa: F401  (first: sets NUMBA_CACHE_DIR before numba loads)
from ._version import __version__

__all__ = ["__version__", "load_config", "validate", "run", "read_run"]

_API = frozenset({"load_config", "validate", "run", "read_run"})


def __getattr__(name):  # PEP 562: the API of gep_raster.api, imported on first use
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'gep_raster' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _API)
