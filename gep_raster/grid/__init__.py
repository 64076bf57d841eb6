"""The reference grid and the inputs read onto it.

* :mod:`.reference`: :class:`RefGrid` (CRS, transform, shape, pixel areas: projected and ellipsoidal), the tolerance
  of grid comparisons; re-exported here (``from gep_raster.grid import RefGrid``);
* :mod:`.io_read`: lazy reading, mosaicking and warping of input rasters onto the grid, window by window;
* :mod:`.run_inputs`: the run's inputs opened as lazy sources on the reference grid, the land-cover histogram.
"""
from .reference import GRID_TOLERANCE, RefGrid

__all__ = ["GRID_TOLERANCE", "RefGrid"]
