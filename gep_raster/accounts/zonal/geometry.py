"""Polygon input of the coverage build: CRS check, geometry validation, rings on the grid."""
from __future__ import annotations

import numpy as np

from ...errors import CRSError, VectorError
from ...grid import RefGrid


def _grid_rings(geoms, grid: RefGrid):
    """Rings of polygons, in exactextract's order (per part: shell, then holes).

    Returns
    -------
    u, v : float64 (n_vertices,)
        Column and row coordinates of the vertices (grid units, v downwards).
    ring_ptr : int64 (n_rings + 1,)
    poly_ring_ptr : int64 (n_polygons + 1,)
    ring_polys : object array (n_rings,)
        Each ring as a hole-free Polygon (for clipping).
    ring_sign : float32 (n_rings,)
        +1 for shells, -1 for holes.
    """
    import shapely

    n = len(geoms)
    parts, part_poly = shapely.get_parts(geoms, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
    nr = len(rings)
    ring_ptr = np.zeros(nr + 1, np.int64)
    ring_ptr[1:] = np.cumsum(np.bincount(coord_ring, minlength=nr))
    ring_poly = part_poly[ring_part] if nr else np.zeros(0, np.int64)
    poly_ring_ptr = np.zeros(n + 1, np.int64)
    poly_ring_ptr[1:] = np.cumsum(np.bincount(ring_poly, minlength=n))
    shell = np.ones(nr, bool)
    if nr:
        shell[1:] = ring_part[1:] != ring_part[:-1]
    ring_sign = np.where(shell, 1.0, -1.0).astype(np.float32)
    t = grid.transform
    u = (coords[:, 0] - t.c) / t.a
    v = (coords[:, 1] - t.f) / t.e
    ring_polys = shapely.polygons(rings) if nr else np.empty(0, dtype=object)
    return (np.ascontiguousarray(u, np.float64), np.ascontiguousarray(v, np.float64),
            ring_ptr, poly_ring_ptr, ring_polys, ring_sign)


def _polygonal(g):
    """Polygonal part of a clipped piece (clip_by_rect may return collections), or None."""
    import shapely

    if g is None or g.is_empty:
        return None
    tid = shapely.get_type_id(g)
    if tid in (3, 6):
        return g
    polys = [q for q in shapely.get_parts(g) if shapely.get_type_id(q) in (3, 6)
             and not q.is_empty]
    if not polys:
        return None
    return shapely.union_all(polys) if len(polys) > 1 else polys[0]


def _check_crs(polygons, grid: RefGrid, layer_name: str) -> None:
    from pyproj import CRS as PCRS

    crs = getattr(polygons, "crs", None)
    if crs is None:
        raise CRSError(
            f"layer '{layer_name}' has no CRS; set it (GeoDataFrame.set_crs) and reproject "
            f"it to the grid CRS ({grid.crs.to_string()}) before building its coverage")
    pa = PCRS.from_user_input(crs)
    pb = PCRS.from_user_input(grid.crs.to_wkt())
    if not pa.equals(pb, ignore_axis_order=True):
        raise CRSError(
            f"layer '{layer_name}' is in {pa.to_string()} but the grid is in "
            f"{grid.crs.to_string()}; reproject the layer (GeoDataFrame.to_crs) first")


def _checked_geometries(polygons, layer_name: str) -> np.ndarray:
    """Geometry array of the layer; VectorError on null, empty, non-polygonal or invalid."""
    import shapely

    geoms = np.asarray(getattr(polygons, "geometry", polygons).values, dtype=object)
    index = getattr(polygons, "index", None)

    def where(i):
        label = ""
        if index is not None and index[i] != i:
            label = f" (index label {index[i]!r})"
        return f"polygon {i}{label} of layer '{layer_name}'"

    missing = shapely.is_missing(geoms)
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise VectorError(f"{where(i)} has an empty geometry (null); drop or fix it")
    empty = shapely.is_empty(geoms)
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise VectorError(f"{where(i)} has an empty geometry; drop or fix it")
    types = shapely.get_type_id(geoms)
    bad = ~np.isin(types, (3, 6))  # Polygon, MultiPolygon
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise VectorError(
            f"{where(i)} is a {geoms[i].geom_type}, not a Polygon or MultiPolygon")
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        i = int(np.flatnonzero(invalid)[0])
        raise VectorError(
            f"{where(i)} has an invalid geometry ({shapely.is_valid_reason(geoms[i])}); "
            f"repair it (shapely.make_valid, QGIS 'Fix geometries') "
            f"[{int(invalid.sum())} invalid polygon(s) in the layer]")
    return geoms
