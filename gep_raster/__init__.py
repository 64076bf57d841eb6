"""gep_raster: Gross Ecosystem Product (GEP) maps and accounts from land-cover and remote-sensing rasters.

The package computes per-pixel regulating services (GEP-R: water conservation, soil retention,
carbon sequestration, air purification), values them in yuan, and aggregates them to township,
county and special-unit (VEP) polygons. Nothing heavy is imported here (no numba compilation).
"""
__version__ = "0.1.0"
