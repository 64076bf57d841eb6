"""Numba kernels: pure functions on numpy arrays (no IO, no CRS, no dask)."""
