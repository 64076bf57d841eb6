"""Flow routing on the reference grid (the terrain steps of soil retention; slope kernels are in
:mod:`gep_raster.kernels.terrain`).

* :mod:`.routing`: D8 and MFD flow accumulation on numpy arrays (pit filling: :mod:`gep_raster.kernels.priority_flood`;
  InVEST semantics: :mod:`gep_raster.kernels.invest_routing`);
* :mod:`.hydro_units`: routing within the memory budget, whole DEM or per hydrological unit, to a GeoTIFF.
"""
