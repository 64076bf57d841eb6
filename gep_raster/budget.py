"""Memory budget of a run: chunk size of the block computation and the bytes-per-pixel of flow routing.

One number, ``processing.memory_budget_mb`` (default :data:`DEFAULT_BUDGET_MB`), bounds the memory of a
run. The stages that scale with the raster use it as follows.

* **Block computation** (``compute_write``): about ``threads + 2`` blocks are in memory at once (one per
  worker thread, plus one being written and one whose inputs are being read). A block of ``n`` pixels
  holds its inputs, the services' intermediates and the stacked outputs; :func:`block_bytes_per_pixel`
  estimates this as ``4 B x (2 x inputs + 3 x outputs) + 64 B`` (float32 storage; the factor 3 covers
  the stack of outputs, its per-block float64 sums and the tile being compressed; the 64 B the
  terrain halo and numba temporaries). :func:`choose_chunk` takes the largest square chunk, a
  multiple of the file block size (512 px), whose blocks fit in the budget left after the fixed
  overhead (:data:`FIXED_OVERHEAD_MB`: interpreter, libraries, GDAL block cache).
* **Flow routing** (LS factor): a routed area of ``n`` pixels needs about ``ROUTING_BYTES_PER_PIXEL[method]
  x n`` bytes (DEM window, pit filling, flow directions, accumulation and the four products of
  :func:`gep_raster.terrain.routing.route`: filled DEM, upslope cells, aspect term, stream mask). Measured with
  ``ru_maxrss`` on 3000 x 3000 DEMs (9 Mpx, ``route(..., threshold_flow_accumulation=100)``, a smooth
  terrain and white noise, numba compiled beforehand) above the DEM's own 4 B: ``d8`` 17.6 and 31.0 B/px,
  ``mfd`` 25.8 and 39.1 B/px, ``d8_flood`` 16.7 and 29.1 B/px; the constants are the white-noise figure plus
  the DEM window and a margin. A DEM (or one hydrological unit of it) that does not fit is refused with a
  message naming the budget (:mod:`gep_raster.terrain.hydro_units`).
"""
from __future__ import annotations

import math

__all__ = ["DEFAULT_BUDGET_MB", "FIXED_OVERHEAD_MB", "ROUTING_BYTES_PER_PIXEL", "FILE_BLOCK",
           "block_bytes_per_pixel", "choose_chunk", "gdal_cache_bytes"]

#: Default ``processing.memory_budget_mb``.
DEFAULT_BUDGET_MB = 2048
#: Memory a run needs whatever the raster size: Python, numpy/numba/GDAL/dask code, caches (MB).
FIXED_OVERHEAD_MB = 512
#: Bytes per routed pixel, by routing method (see the module docstring for the measurement).
ROUTING_BYTES_PER_PIXEL = {"d8": 40, "mfd": 48, "d8_flood": 36}
#: Internal block size of the written tiles (and of most input GeoTIFFs); chunks are multiples of it.
FILE_BLOCK = 512
#: Largest chunk side chosen automatically (bigger blocks only delay the first written tile).
MAX_AUTO_CHUNK = 4096


def block_bytes_per_pixel(n_inputs: int, n_outputs: int) -> int:
    """Estimated bytes of memory per pixel of one block in flight.

    Parameters
    ----------
    n_inputs : int
        Rasters read per block (land cover, DEM, climate, ...).
    n_outputs : int
        Rasters computed per block (written or only summed).

    Returns
    -------
    int
        ``4 * (2 * n_inputs + 3 * n_outputs) + 64`` bytes (see the module docstring).
    """
    return 4 * (2 * int(n_inputs) + 3 * int(n_outputs)) + 64


def gdal_cache_bytes(budget_mb: float) -> int:
    """GDAL block cache (``GDAL_CACHEMAX``, in bytes as rasterio's ``Env`` takes it) for a run with
    ``budget_mb``: 1/16 of the budget, between 64 and 512 MB, counted in the fixed overhead.

    Without it GDAL caches up to 5 % of the machine's RAM of decoded and dirty blocks (1.2 GB on a 24 GB
    machine), which showed up as peak memory growing with the raster size (land-cover scan, routed raster)."""
    return int(min(512, max(64, budget_mb // 16))) * 2**20


def choose_chunk(budget_mb: int, shape: tuple[int, int], n_inputs: int, n_outputs: int, threads: int, *,
                 align: int = FILE_BLOCK, fixed_mb: int = FIXED_OVERHEAD_MB) -> tuple[int, dict]:
    """Chunk side (pixels) for the block computation under a memory budget.

    Parameters
    ----------
    budget_mb : int
        Memory budget of the run in MB (MiB).
    shape : (int, int)
        Reference grid (height, width).
    n_inputs, n_outputs : int
        See :func:`block_bytes_per_pixel`.
    threads : int
        Worker threads computing blocks at once.
    align : int
        Chunk sides are multiples of this (file block size; 512 px).
    fixed_mb : int
        Overhead not proportional to the block size.

    Returns
    -------
    (int, dict)
        The chunk side and a record for the manifest and console (budget, bytes per pixel, blocks in
        flight, estimated peak of the block stage).

    Raises
    ------
    ValueError
        The budget cannot hold even blocks of ``align`` pixels (the message names the budget and the
        smallest budget that would do).
    """
    bpp = block_bytes_per_pixel(n_inputs, n_outputs)
    in_flight = int(threads) + 2
    avail = (budget_mb - fixed_mb) * 2**20
    side = math.isqrt(max(avail, 0) // (bpp * in_flight)) if avail > 0 else 0
    side = min(side, MAX_AUTO_CHUNK)
    side = (side // align) * align
    if side < align:
        need = fixed_mb + math.ceil(bpp * in_flight * align * align / 2**20)
        raise ValueError(f"processing.memory_budget_mb = {budget_mb} MB cannot hold {in_flight} blocks of "
                         f"{align} x {align} px at {bpp} B/px ({n_inputs} inputs, {n_outputs} outputs) plus "
                         f"{fixed_mb} MB overhead; give at least {need} MB, or fewer workers")
    # no bigger than the grid needs (rounded up to the alignment)
    longest = max(int(shape[0]), int(shape[1]))
    side = min(side, max(align, math.ceil(longest / align) * align))
    info = {"memory_budget_mb": int(budget_mb), "chunk_size": side, "chosen": "memory budget",
            "block_bytes_per_pixel": bpp, "blocks_in_flight": in_flight,
            "estimated_block_stage_mb": round(fixed_mb + bpp * in_flight * side * side / 2**20)}
    return side, info
