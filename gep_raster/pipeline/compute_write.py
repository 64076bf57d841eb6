"""Stage ``compute_write``: one dask graph computes every output block in one pass over the inputs (services, then
EPV/ECV allocation and GEP); each block is written as one tile per output raster and added to every layer's sums
(:class:`~gep_raster.pipeline.block_sink.BlockSink`, :class:`gep_raster.outputs.block_store.BlockStore`). Blocks in the
journal of an interrupted run of the same job are not computed again.
"""
from __future__ import annotations

import logging

from ..grid.io_read import GridSource
from ..progress import BlockProgress
from ..services.base import TERRAIN_KEYS
from .block_sink import BlockSink, store_local
from .distributed import store_distributed
from .state import RunState

log = logging.getLogger("gep_raster")


def output_stack(st: RunState):
    """The lazy (n_outputs, H, W) float dask array of the run's outputs in ``st.outputs`` order, chunked
    ``(n_outputs, chunk, chunk)``: inputs read per block, terrain terms from the DEM, routing products from the
    routing GeoTIFF."""
    import dask.array as da

    grid, model, econ = st.grid, st.model, st.econ
    chunks = da.core.normalize_chunks((st.chunk, st.chunk), shape=grid.shape)
    arrays = {k: st.sources[k].to_dask(chunks) for k in st.keys if k not in TERRAIN_KEYS and k not in st.routed}
    routed = {key: GridSource(f"routing.{key}", [rpath], grid, "continuous", band=b).to_dask(chunks)
              for key, (rpath, b) in st.routed.items()}  # routing products: read per block
    if model.needs_terrain():
        dem = st.sources["dem"].to_dask(chunks)
        arrays.update(model.terrain_dask(dem, grid.res, filled_dem=routed.get("filled_dem")))
        if "dem" in st.keys:
            arrays["dem"] = dem
    arrays.update({k: v for k, v in routed.items() if k in st.keys})
    stacked = model.compute_dask(arrays, grid.row_pixel_area_m2)
    if econ is not None:  # EPV, ECV, GEP appended to the stack (reads as in the pre-pass)
        econ_lc, econ_w = econ.dask_inputs(st.sources["lc"], st.sources, chunks)
        stacked = econ.compute_dask(stacked, model.output_keys.index("gep_r_yuan"), econ_lc, econ_w,
                                    st.indices[econ.layer_name], grid.row_pixel_area_m2)
    return stacked


def _block_store(st: RunState, block_chunks):
    """The run's BlockStore (keyed by run hash and block side); with ``force`` its journal is discarded first."""
    from ..outputs.block_store import BlockStore

    def make():
        return BlockStore(st.state_dir / "blocks", st.out_dir, st.grid,
                          [(o.key, st.rel_path[o.key]) for o in st.written], f"{st.run_hash}:{st.chunk}",
                          block_chunks, st.layout, deflate_level=st.cfg.output.deflate_level,
                          threads=st.nthreads or 1)

    store = make()
    if st.force:  # recompute every block
        store.discard()
        store = make()
    return store


def compute_write(st: RunState) -> None:
    """Stage ``compute_write``. Sets ``store``, ``sink`` (with the totals and per-polygon sums), ``execution``
    (manifest record: scheduler, threads or workers, blocks, blocks resumed, seconds, memory plan)."""
    stacked = output_stack(st)
    st.store = store = _block_store(st, stacked.chunks[1:])
    finished = store.finished()
    n_blocks = store.n_blocks
    skip = [(r0, c0) for bi, r0, c0, _, _ in store.blocks() if bi in finished]
    done_px = sum(h * w for bi, _, _, h, w in store.blocks() if bi in finished)
    if finished:
        log.info("resuming: %d of %d blocks were finished by an earlier run of this job (run hash %s); "
                 "computing the other %d", len(finished), n_blocks, st.run_hash[:12], n_blocks - len(finished))
    with BlockProgress(n_blocks - len(finished), st.grid.height * st.grid.width - done_px, enabled=st.progress,
                       label="compute_write") as prog:
        st.sink = sink = BlockSink(st.outputs, store, st.indices, st.zonal_keys, chunks=stacked.chunks[1:],
                                   progress=prog)
        sink.preload(finished)
        if st.client is None:
            execution = store_local(stacked, sink, st.nthreads, skip=skip)
        else:
            if st.workers:
                log.info("--workers %d is ignored: the blocks are computed by the Dask cluster's workers", st.workers)
            execution = store_distributed(stacked, sink, st.client, skip=skip)
        sink.check_complete()
    execution.update(blocks=n_blocks, blocks_resumed=len(finished), seconds=round(prog.elapsed(), 3), **st.chunk_info)
    if st.layout == "cog":  # how the COGs are made (outputs.block_store)
        execution["cog_writer"] = (f"tiles compressed on the block threads ({store.direct_levels} of "
                                   f"{len(store.cog_levels)} pyramid levels), assembled once" if store.direct else
                                   "GDAL COG driver over temporary block tiles (blocks off the 512 px tile lattice)")
    st.execution = execution
    st.totals = dict(zip(sink.okeys, sink.totals.tolist()))
