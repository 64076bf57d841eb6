"""Stages ``prepare`` and ``legend_check``: config, legend and prices, the reference grid, inputs opened lazily on
it, the service model, polygon layers, input checksums and run hash, block (chunk) size and output layout; every
land-cover class present must have a legend row (and, with an alternate land cover, a carbon-pool row).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from .._version import __version__
from ..accounts.layers import load_layer
from ..accounts.economic import EconomicAccounts
from ..errors import ConfigError, GridMismatchError, TableError
from ..grid.io_read import StackSource, SumSource
from ..grid.run_inputs import SCAN_CHUNK, class_histogram, open_inputs, raster_source, reference_grid
from ..services import ServiceModel
from ..tables import PriceBook, load_legend
from ..services.registry import required_legend_columns
from .state import RunState

log = logging.getLogger("gep_raster")


def _cpu_count() -> int:
    from dask.system import CPU_COUNT

    return int(CPU_COUNT)


def open_land_cover(st: RunState) -> None:
    """Stage ``prepare`` (first part): legend, prices, reference grid, the land-cover source (scenario edits
    applied) and the thread count. Sets ``legend, book, grid, scan, nthreads, lc_source``."""
    cfg = st.cfg
    st.legend = load_legend(cfg, required_legend_columns(cfg))
    st.book = PriceBook.from_config(cfg)
    st.grid = reference_grid(cfg)
    st.scan = cfg.output.chunk_size or SCAN_CHUNK  # window of the histogram scans (results do not depend on it)
    st.nthreads = st.workers or cfg.processing.workers or _cpu_count()
    st.lc_source = raster_source(cfg, "land_cover", cfg.inputs.land_cover, st.grid, "categorical")
    if cfg.scenario is not None:  # land-cover scenario (e.g. a development parcel becomes built-up)
        from ..analysis.scenario import ScenarioSource

        st.lc_source = ScenarioSource(st.lc_source, cfg.scenario, st.grid, cfg)


def check_legend(st: RunState) -> None:
    """Stage ``legend_check``: class histogram and class areas of the land cover; every class present needs a legend
    row. Sets ``hist, class_area``. Raises TableError naming the legend file and the missing codes."""
    st.hist, st.class_area = class_histogram(st.lc_source, st.scan, with_area=True, threads=st.nthreads)
    # codes a product legend defines as no data (e.g. CLCD 0) have no row and read as no data
    missing = sorted(set(st.hist) - set(int(c) for c in st.legend.codes) - set(st.legend.nodata_codes))
    if missing:
        raise TableError(
            f"legend {st.legend.label}: land-cover class code(s) {missing} occur in inputs.land_cover "
            f"({', '.join(f'{m}: {st.hist[m]} px' for m in missing[:10])}) but have no legend row; add them")


def open_model(st: RunState) -> None:
    """Stage ``prepare`` (second part): service model, inputs, polygon layers, economic accounts, checksums, run
    hash, block size and layout. Raises GridMismatchError (terrain on non-square pixels), ConfigError (memory
    budget too small for one block)."""
    cfg, grid = st.cfg, st.grid
    st.model = model = ServiceModel.from_config(cfg, st.legend, st.book, cell_size=grid.res[0],
                                                geographic=grid.is_geographic, class_area_m2=st.class_area)
    if model.needs_terrain() and abs(grid.res[0] - grid.res[1]) > 1e-6 * grid.res[0]:
        raise GridMismatchError(f"terrain terms (slope, LS) need square pixels; the reference grid has {grid.res}")
    st.keys = model.input_keys()
    sources = open_inputs(cfg, grid, st.keys, model.input_requests())
    sources["lc"] = st.lc_source
    if cfg.scenario is not None:  # continuous inputs set on the changed pixels (scenario set_inputs)
        from ..analysis.scenario import wrap_inputs

        sources = wrap_inputs(sources, cfg.scenario, grid, cfg)
    st.layers = {name: load_layer(cfg, name, grid) for name in cfg.layers}
    st.econ = EconomicAccounts.from_config(cfg, st.legend, st.layers) if cfg.economic_accounts is not None else None
    if st.econ is not None:
        sources.update(st.econ.open_weight_sources(cfg, grid))
    st.sources = sources
    st.units_path = (cfg.resolve(cfg.inputs.hydro_units.path)
                     if cfg.inputs.hydro_units is not None and model.needs_routing() else None)
    from ..outputs.provenance import input_checksums

    remote = cfg.processing.remote
    st.checksums = input_checksums(input_files(st) + ([st.units_path] if st.units_path else []),
                                   remote_checksum=remote.checksum == "content", timeout=remote.timeout_s)
    st.run_hash = run_hash(cfg, st.checksums, st.book)
    _choose_blocks(st)


def _choose_blocks(st: RunState) -> None:
    """Block side (``output.chunk_size`` or from the memory budget, :mod:`gep_raster.budget`) and layout."""
    from ..budget import block_bytes_per_pixel, choose_chunk

    cfg, grid = st.cfg, st.grid
    budget_mb = cfg.processing.memory_budget_mb
    n_outputs = len(st.model.outputs) + (len(st.econ.outputs) if st.econ is not None else 0)
    if cfg.output.chunk_size:
        chunk = cfg.output.chunk_size
        info = {"memory_budget_mb": budget_mb, "chunk_size": chunk, "chosen": "output.chunk_size",
                "block_bytes_per_pixel": block_bytes_per_pixel(len(st.sources), n_outputs),
                "blocks_in_flight": st.nthreads + 2}
    else:
        try:
            chunk, info = choose_chunk(budget_mb, grid.shape, len(st.sources), n_outputs, st.nthreads)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    st.layout = info["layout"] = cfg.output.resolved_layout(grid.height * grid.width)
    st.chunk, st.chunk_info = chunk, info
    log.info("blocks of %d x %d px (%s; memory budget %d MB, ~%d B/px per block, %d blocks in flight); "
             "outputs as %s", chunk, chunk, info["chosen"], budget_mb, info["block_bytes_per_pixel"],
             info["blocks_in_flight"], "single COGs" if st.layout == "cog" else "VRT mosaics of block tiles")


def check_alternate_legend(st: RunState) -> None:
    """Stage ``legend_check`` (alternate land cover of carbon stock change): every class needs a carbon-pool row."""
    if "lc_alt" not in st.sources:
        return
    hist_alt = class_histogram(st.sources["lc_alt"], st.scan, threads=st.nthreads)
    stock = st.model.service("carbon_sequestration").luts["stock"]
    miss_alt = sorted(set(hist_alt) - set(int(c) for c in np.flatnonzero(np.isfinite(stock))))
    if miss_alt:
        raise TableError(f"inputs.carbon.pools_table: class code(s) {miss_alt} of the alternate land cover "
                         "have no carbon-pool row")


def plan_outputs(st: RunState) -> None:
    """Outputs in stack order (services, then with economic accounts EPV, ECV, GEP and the per-item values), those
    written, the keys summed per polygon and each written output's path in the layout."""
    model, econ = st.model, st.econ
    st.outputs = model.outputs + (econ.outputs if econ is not None else [])
    st.written = [o for o in st.outputs if o.write]
    st.service_keys = [o.key for o in model.outputs if o.kind in ("physical", "value", "gep_r", "diagnostic")]
    st.zonal_keys = st.service_keys + (econ.zonal_keys if econ is not None else [])
    st.rel_path = {o.key: (o.path if st.layout == "cog" else o.path[:-len(".tif")] + ".vrt") for o in st.written}


def run_hash(cfg, checksums: dict, book: PriceBook) -> str:
    """sha256 of the config, the input checksums, the prices and parameters used and the package version: the
    identity of a run's numbers (resume and the rasters' ``run_hash`` tag)."""
    h = hashlib.sha256()
    h.update(json.dumps(cfg.to_json_dict(), sort_keys=True).encode())
    h.update(json.dumps(checksums, sort_keys=True).encode())
    h.update(json.dumps({k: vars(v) for k, v in book.prices.items()}, sort_keys=True, default=str).encode())
    h.update(json.dumps({k: vars(v) for k, v in book.params.items()}, sort_keys=True, default=str).encode())
    h.update(__version__.encode())
    return h.hexdigest()


def _as_path(p):
    """A local path as :class:`Path`; a remote one as :class:`~gep_raster.grid.remote.RemotePath` (``Path`` would
    collapse the ``//`` of its URL)."""
    from ..grid.remote import RemotePath, is_remote_path

    if isinstance(p, RemotePath):
        return p
    return RemotePath(str(p)) if is_remote_path(p) else Path(p)


def input_files(st: RunState) -> list[Path]:
    """Every file a run reads (rasters, tiles, tables, layers), once each, in a fixed order."""
    cfg = st.cfg
    files: list[Path] = [_as_path(f) for s in st.model.services for f in s.files]

    def add(s):
        if isinstance(s, (SumSource, StackSource)):
            for sub in s.sources:
                add(sub)
        else:
            files.extend(f.path for f in s.files)

    for s in st.sources.values():
        add(s)
    files += [_as_path(x) for x in st.legend.sources]
    files += [_as_path(layer.path) for layer in st.layers.values()]
    files += list(st.book.files)  # prices.table, parameters_table, prices.price_index
    if cfg.inputs.carbon.pools_table and cfg.inputs.carbon.method == "stock_change":
        files.append(cfg.resolve(cfg.inputs.carbon.pools_table))
    if cfg.economic_accounts is not None:
        files.append(cfg.resolve(cfg.economic_accounts.table))
    return list(dict.fromkeys(files))
