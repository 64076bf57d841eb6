"""Reading a polygon file (GeoPackage, shapefile, GeoJSON ...; local, URL or GDAL virtual path) with an error that
names the config key, the file and what went wrong (for a remote file: the URL and the HTTP status)."""
from __future__ import annotations

from pathlib import Path

from .errors import VectorError

__all__ = ["read_vector"]


def read_vector(path, what: str, *, layer: str | None = None):
    """The features of a polygon file as a GeoDataFrame (pyogrio through geopandas).

    Parameters
    ----------
    path : Path or RemotePath
        A local file (``cfg.resolve``) or a remote one (:class:`gep_raster.grid.remote.RemotePath`).
    what : str
        Config key for messages, e.g. ``layers.township``.
    layer : str, optional
        Layer of a multi-layer file (GeoPackage).

    Returns
    -------
    geopandas.GeoDataFrame
        The features with their CRS as stored (no reprojection).

    Raises
    ------
    VectorError
        ``<what>.path: file not found: <path>`` (local), ``<what>: cannot read <path>: <GDAL message>``, or for a
        remote file ``<what>: cannot read remote layer <url>: HTTP 404 Not Found`` (or ``connection refused``...).
    """
    import geopandas as gpd

    from .grid.remote import RemotePath, explain_open_failure

    remote = isinstance(path, RemotePath)
    if not remote and not Path(path).exists():
        raise VectorError(f"{what}.path: file not found: {path}")
    try:
        return gpd.read_file(path, layer=layer) if layer else gpd.read_file(path)
    except Exception as exc:  # pyogrio/GDAL raise many types
        if remote:
            raise VectorError(f"{what}: cannot read remote layer {explain_open_failure(path, str(exc))}") from None
        raise VectorError(f"{what}: cannot read {path}: {exc}") from None
