"""Water bodies of flood regulation: the polygon layer read and checked, per-body volumes, spread to the grid.

Formulas (Garzê GEP 2010, 白玛卓嘎 et al. 2017, 生态学报 37(19) §2.4.4 **[V]**): lakes C_l = a · A_km2^b · T · 10⁴
(m3/a), reservoirs C_r = share · C_t (C_t = total storage, m3), marshes C_m = depth · A (m3). Spreading rule
(methods note §5.3): pixel value = Σ_bodies C_body · frac · pixel_area / valid_covered_area(body), with exact
coverage fractions (:class:`gep_raster.accounts.zonal.CoverageIndex`) over the pixels with a valid land cover. Used by
:meth:`gep_raster.services.flood_regulation.Service.configure`; see that module for the service itself.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, VectorError

WATER_TYPES = ("lake", "reservoir", "marsh")
#: side of the windows in which the bodies are spread and the cache raster is written (px)
SPREAD_TILE = 512


def read_water_bodies(wb, key: str, path, grid):
    """The water-body layer, checked, repaired and in the grid's CRS.

    Parameters
    ----------
    wb : WaterBodiesConfig
        ``services.flood_regulation.water_bodies``.
    key : str
        Config key named in the errors.
    path : pathlib.Path
        Resolved ``wb.path``.
    grid : RefGrid

    Returns
    -------
    (gdf, ids, types, repaired)
        The GeoDataFrame (n rows), ids (object (n,), str), types (object (n,), one of :data:`WATER_TYPES`) and the
        ids of the geometries repaired with ``make_valid``.

    Raises
    ------
    VectorError
        File missing or unreadable, field missing, no feature, no CRS, duplicate ids, unknown type, empty or
        non-polygon geometry.
    """
    import pandas as pd

    from ..vector_io import read_vector

    gdf = read_vector(path, key, layer=wb.layer)
    fields = [c for c in gdf.columns if c != "geometry"]
    for k in ("id_field", "type_field", "capacity_field"):
        f = getattr(wb, k)
        if f is not None and f not in gdf.columns:
            raise VectorError(f"{key}.{k}: field '{f}' not found in {path} (fields: {fields})")
    if len(gdf) == 0:
        raise VectorError(f"{key}: {path} holds no features")
    if gdf.crs is None:
        raise VectorError(f"{key}: {path} has no CRS (.prj missing?); define it before running")
    ids = gdf[wb.id_field].astype(str).to_numpy()
    dup = pd.Series(ids).duplicated().to_numpy()
    if dup.any():
        raise VectorError(f"{key}.id_field: duplicate ids {ids[dup][:10].tolist()} in field '{wb.id_field}' "
                          f"of {path}")
    types = _body_types(gdf, wb, key, path, ids)
    gdf, repaired = _polygons(gdf, key, path, ids)
    from pyproj import CRS

    if CRS.from_user_input(gdf.crs) != CRS.from_user_input(grid.crs.to_wkt()):
        gdf = gdf.to_crs(grid.crs.to_wkt())
    return gdf, ids, types, repaired


def _body_types(gdf, wb, key: str, path, ids: np.ndarray) -> np.ndarray:
    """Type of every body (``wb.type_map`` applied, else lower case), checked against :data:`WATER_TYPES`."""
    raw = gdf[wb.type_field].astype(str).str.strip()
    types = np.array([wb.type_map.get(v, v.lower()) for v in raw], dtype=object)
    bad = ~np.isin(types, WATER_TYPES)
    if bad.any():
        pairs = [f"{i}: {v!r}" for i, v in zip(ids[bad][:10], raw[bad][:10])]
        raise VectorError(f"{key}.type_field: field '{wb.type_field}' of {path} must hold lake, reservoir or "
                          f"marsh (or values mapped by {key}.type_map); bad: {pairs}")
    return types


def _polygons(gdf, key: str, path, ids: np.ndarray):
    """Every geometry present and polygonal; invalid ones repaired with ``make_valid`` (their ids returned)."""
    geom = gdf.geometry
    missing = geom.isna() | geom.is_empty
    if missing.any():
        raise VectorError(f"{key}: water bodies {ids[missing.to_numpy()][:10].tolist()} of {path} have an "
                          "empty geometry; drop or fix them")
    gtypes = set(geom.geom_type)
    if not gtypes <= {"Polygon", "MultiPolygon"}:
        raise VectorError(f"{key}: {path} holds {sorted(gtypes)} geometries; polygons are needed")
    invalid = ~geom.is_valid
    repaired = ids[invalid.to_numpy()].tolist()
    if invalid.any():
        import shapely

        fixed = []
        for g in geom[invalid]:
            g = shapely.make_valid(g)
            if g.geom_type == "GeometryCollection":
                g = shapely.union_all([p for p in g.geoms if p.geom_type in ("Polygon", "MultiPolygon")])
            fixed.append(g)
        gdf = gdf.copy()
        gdf.loc[invalid, "geometry"] = fixed
    return gdf, repaired


def reservoir_capacity(gdf, wb, key: str, path, ids: np.ndarray, types: np.ndarray) -> np.ndarray:
    """Total storage capacity of every reservoir, m3 (float64 (n,); NaN for lakes and marshes).

    Raises
    ------
    ConfigError
        Reservoirs present but no ``capacity_field`` named.
    VectorError
        A reservoir without a finite capacity >= 0.
    """
    import pandas as pd

    is_res = types == "reservoir"
    capacity = np.full(len(gdf), np.nan)
    if is_res.any():
        if wb.capacity_field is None:
            raise ConfigError(f"{key}.capacity_field: {path} holds {int(is_res.sum())} reservoir(s) "
                              f"({ids[is_res][:5].tolist()}); name the field with their total storage capacity")
        cap = pd.to_numeric(gdf[wb.capacity_field], errors="coerce").to_numpy(dtype=float)
        badcap = is_res & ~(np.isfinite(cap) & (cap >= 0))
        if badcap.any():
            raise VectorError(f"{key}.capacity_field: reservoir(s) {ids[badcap][:10].tolist()} of {path} have no "
                              f"valid total storage in field '{wb.capacity_field}' (need a number >= 0, "
                              f"{wb.capacity_unit})")
        capacity[is_res] = cap[is_res] * (1e4 if wb.capacity_unit == "1e4_m3" else 1.0)
    return capacity


def body_volumes(wb, book, types: np.ndarray, capacity: np.ndarray, area_km2: np.ndarray):
    """Flood storage of every body, m3/a (Garzê GEP 2010 §2.4.4 [V]).

    Returns
    -------
    (volume, formula, notes, plateau_default)
        ``volume`` float64 (n,) m3/a; ``formula`` object (n,) the formula of each body with its numbers;
        ``notes`` the method-note parts; ``plateau_default`` True when lakes use the default (Qinghai-Tibet
        plateau) coefficients a and b.
    """
    volume = np.zeros(len(types))
    formula = np.empty(len(types), dtype=object)
    notes = []
    plateau_default = False
    is_lake, is_res, is_marsh = types == "lake", types == "reservoir", types == "marsh"
    if is_lake.any():
        a, src_a = ((wb.lake_coef_a, "config") if wb.lake_coef_a is not None
                    else (book.param("flood_regulation.lake_coef_a"), "parameter"))
        b, src_b = ((wb.lake_exponent_b, "config") if wb.lake_exponent_b is not None
                    else (book.param("flood_regulation.lake_exponent_b"), "parameter"))
        t, src_t = ((wb.lake_renewals_T, "config") if wb.lake_renewals_T is not None
                    else (book.param("flood_regulation.lake_renewals"), "parameter"))
        volume[is_lake] = a * area_km2[is_lake] ** b * t * 1e4  # 10^4 m3/a -> m3/a
        formula[is_lake] = f"lake: {a:.6g} * A_km2^{b:g} * {t:g} * 1e4 m3"
        plateau_default = src_a == "parameter" and src_b == "parameter"
        notes.append(f"lakes C_l = a*A_km2^b*T*1e4 m3/a with a = {a:.6g} ({src_a}), b = {b:g} ({src_b}), "
                     f"T = {t:g} ({src_t})" + ("; WARNING: a, b are the Qinghai-Tibet plateau lake regression "
                                               "(Garze GEP 2010 [V] for that region only); other regions need "
                                               "their own coefficients (lake_coef_a, lake_exponent_b)"
                                               if plateau_default else ""))
    if is_res.any():
        share = book.param("flood_regulation.reservoir_flood_share")
        volume[is_res] = share * capacity[is_res]
        formula[is_res] = f"reservoir: {share:g} * capacity_m3"
        notes.append(f"reservoirs C_r = {share:g} * total storage (Garze GEP 2010 [V])")
    if is_marsh.any():
        depth = book.param("flood_regulation.marsh_detention_depth")
        volume[is_marsh] = depth * area_km2[is_marsh] * 1e6
        formula[is_marsh] = f"marsh: {depth:g} m * A_m2"
        notes.append(f"marshes C_m = {depth:g} m * area (Garze GEP 2010 [V], unit read as m3)")
    return volume, formula, notes, plateau_default


def spread_to_grid(cfg, legend, gdf, grid, key: str, volume: np.ndarray, raster_path):
    """Spread the bodies' volumes to the pixels with a valid land cover and write them as a float32 GeoTIFF.

    Pixel value (m3/a) = Σ_bodies C_body · frac · pixel_area / valid_covered_area(body) (methods note §5.3), so
    the pixels of a body add up to C_body; a body with no valid pixel places nothing.

    Returns
    -------
    (valid_area, covered, placed)
        float64 (n,) each: valid covered area (m2), covered area on the grid (m2), volume placed (m3/a).
    """
    import rasterio

    from ..outputs.io_write import atomic_path
    from ..kernels.flood import spread_window
    from ..grid.run_inputs import raster_source
    from ..accounts.zonal import CoverageIndex

    idx = CoverageIndex.build(gdf.geometry, grid, layer_name=key)
    lc_src = raster_source(cfg, "land_cover", cfg.inputs.land_cover, grid, "categorical")
    defined = np.zeros(65537, bool)
    defined[legend.codes] = True
    row_area = grid.row_pixel_area_m2
    n = len(gdf)
    valid_area = np.zeros(n)
    windows = []
    for r0, r1, c0, c1 in grid.block_windows(SPREAD_TILE):
        poly, row, col, frac = idx.entries(r0, r1, c0, c1)
        if poly.size == 0:
            continue
        lcv = lc_src.read(r0, r1, c0, c1)[row, col]
        valid = ((lcv >= 0) & defined[np.clip(lcv, 0, 65536)]).astype(np.uint8)
        valid_area += np.bincount(poly, weights=frac * row_area[r0 + row] * valid, minlength=n)
        windows.append((r0, r1, c0, c1, poly, row, col, frac, valid))
    share_m2 = np.where(valid_area > 0, volume / np.where(valid_area > 0, valid_area, 1.0), 0.0)
    profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=1, dtype="float32",
                   crs=grid.crs, transform=grid.transform, tiled=True, blockxsize=SPREAD_TILE,
                   blockysize=SPREAD_TILE, compress="deflate", SPARSE_OK="TRUE")
    with atomic_path(raster_path, suffix=".tif", sidecars=(".aux.xml",)) as tmp:
        with rasterio.open(tmp, "w", **profile) as ds:
            for r0, r1, c0, c1, poly, row, col, frac, valid in windows:
                arr = spread_window(poly, row, col, frac, valid, share_m2, row_area[r0:r1], (r1 - r0, c1 - c0))
                ds.write(arr.astype(np.float32), 1, window=rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0))
    return valid_area, idx.covered_area_m2(), np.where(valid_area > 0, volume, 0.0)


def placement_note(ids: np.ndarray, volume: np.ndarray, valid_area: np.ndarray, area_km2: np.ndarray,
                   repaired: list) -> str:
    """The method-note part on bodies not counted, bodies partly inside, and repaired geometries."""
    part = ""
    outside = np.flatnonzero(valid_area <= 0)
    if outside.size:
        part += (f"; NOT COUNTED (no valid land-cover pixel inside the grid): {ids[outside][:10].tolist()} "
                 f"({volume[outside].sum():.6g} m3)")
    partial = np.flatnonzero((valid_area > 0) & (valid_area < 0.999 * area_km2 * 1e6))
    if partial.size:
        part += ("; bodies only partly inside the grid / valid land cover, their whole volume placed on the "
                 "part inside: " + ", ".join(f"{ids[i]} ({100 * valid_area[i] / (area_km2[i] * 1e6):.1f}%)"
                                            for i in partial[:10]))
    if repaired:
        part += f"; invalid geometries repaired with make_valid: {repaired[:10]}"
    return part
