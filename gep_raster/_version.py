"""The version of gep_raster (one place: the package, the manifests and the build read it from here)."""
__version__ = "0.1.0"
