"""Account of one parcel on a finished run: area, every service's quantity and value, GEP-R and GEP.

:func:`parcel_account` is the pure function behind ``POST /api/parcel`` of ``gep serve``; it needs no server::

    from gep_raster.analysis.change import load_run
    from gep_raster.serve.parcel import parcel_account

    acc = parcel_account(load_run("out/sample"), {"type": "Polygon", "coordinates": [[...]]}, "EPSG:4326")
    acc["totals"]["gep_r_yuan"]            # yuan/a

Method (the numbers are those of the run's own zonal tables, ``tables/<layer>.csv``, for the same polygon as a
special unit, i.e. what ``gep vep`` reports):

* the parcel is brought to the run's grid CRS as a run layer is (:func:`gep_raster.accounts.layers.load_layer`:
  ``GeoDataFrame.to_crs(grid CRS)``); several features are dissolved into one parcel;
* only the **window** of the rasters that the parcel's bounding box covers (plus one pixel) is read; the exact
  coverage fractions are computed on that window, aligned to the run's pixel lattice: the polygon's vertices are
  taken to pixel coordinates of the whole grid, ``u = (x − c)/a``, ``v = (y − f)/e``, exactly as the coverage
  build does (:mod:`gep_raster.accounts.zonal.geometry`), then shifted by the window's integer offsets (an exact
  float subtraction), so the window's fractions are those of the whole grid (checked cell for cell in the tests);
* every quantity q = Σ f·x over the window's cells whose value is not NaN (f = exactextract's coverage fraction,
  Baston, exactextract, "background", https://isciences.github.io/exactextract/background.html; x = the
  raster's per-pixel amount, float32 as written by the run); ``valid_area_km2`` = Σ f·pixel area where GEP-R is
  valid, ``grid_area_km2`` = Σ f·pixel area, ``area_km2`` = the polygon's area in the grid CRS (geodesic on a
  geographic grid), as :func:`gep_raster.accounts.layers.build_table`;
* GEP-R = Σ f·GEP-R raster; where the run has the economic accounts (manifest outputs
  ``rasters/value/provisioning_yuan.tif`` and ``cultural_yuan.tif``), EPV and ECV are their coverage-weighted
  sums (the rule of :mod:`gep_raster.accounts.economic` for layers other than the allocation layer) and
  GEP = GEP-R + EPV + ECV (:func:`gep_raster.accounts.layers.add_gep_columns`); otherwise GEP is not given.

Refusals (:class:`ParcelError`, with a ``code`` and an HTTP status): not a polygon, no CRS and coordinates that
are not lon/lat, invalid geometry (self-intersection...; ``make_valid=True`` repairs it), outside the run's
extent, larger than ``max_area_share`` (default 10 %) of the run's area or with more than
:data:`MAX_VERTICES` vertices, an unreadable or unsupported file, an upload over :data:`MAX_UPLOAD_BYTES`.
"""
from __future__ import annotations

import io
import json
import math
import tempfile
import time
import warnings as warnings_mod
import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["ParcelError", "parcel_account", "parcel_geometries", "read_parcel_file", "account_csv",
           "account_geojson", "MAX_AREA_SHARE", "MAX_UPLOAD_BYTES", "MAX_VERTICES"]

#: largest parcel accepted, as a share of the run's grid area (a parcel is a query, not a county: larger areas
#: belong in a run layer, whose sums the run computes in one pass)
MAX_AREA_SHARE = 0.10
#: largest upload accepted, bytes (50 MB)
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
#: most vertices accepted in a parcel (all its features together)
MAX_VERTICES = 200_000
#: largest total uncompressed size of the shapefile members read from a zip, bytes (guards against zip bombs)
MAX_UNZIPPED_BYTES = 200 * 1024 * 1024
#: shapefile members read from a zipped shapefile
_SHP_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")


class ParcelError(InputError):
    """A parcel that cannot be accounted, with a machine-readable ``code`` and the HTTP status to answer.

    Parameters
    ----------
    message : str
        What is wrong and how to fix it.
    code : str
        One of ``not_polygon``, ``no_crs``, ``not_lonlat``, ``invalid_geometry``, ``outside_extent``,
        ``too_large``, ``too_complex``, ``unreadable``, ``empty``, ``bad_request``.
    status : int
        HTTP status (422 by default; 413 for an upload over the size limit).
    """

    def __init__(self, message: str, code: str, status: int = 422):
        super().__init__(message)
        self.code = code
        self.status = status


# --------------------------------------------------------------------------------------
# input: GeoJSON objects, shapely geometries, files
# --------------------------------------------------------------------------------------
def parcel_geometries(obj) -> tuple[list, object]:
    """The geometries of a parcel given as GeoJSON or as shapely/geopandas objects.

    Parameters
    ----------
    obj : dict, str, shapely geometry, geopandas.GeoSeries or GeoDataFrame
        A GeoJSON Geometry, Feature or FeatureCollection (a mapping or its JSON text), a shapely geometry, or a
        GeoSeries/GeoDataFrame (its CRS is returned).

    Returns
    -------
    geoms : list of shapely geometries
        One per feature (not yet checked to be polygons).
    crs : object or None
        The CRS carried by the object: a GeoSeries' CRS, or the legacy GeoJSON ``crs`` member
        (``{"type": "name", "properties": {"name": "EPSG:32650"}}``); None otherwise.

    Raises
    ------
    ParcelError
        ``bad_request``: not GeoJSON (no ``type``, unknown type, malformed coordinates); ``empty``: no feature.
    """
    import shapely
    import shapely.geometry

    if hasattr(obj, "geometry") and hasattr(obj, "crs"):  # GeoDataFrame / GeoSeries
        return list(getattr(obj, "geometry", obj)), obj.crs
    if isinstance(obj, shapely.Geometry):
        return [obj], None
    if isinstance(obj, (str, bytes)):
        try:
            obj = json.loads(obj)
        except ValueError as exc:
            raise ParcelError(f"the parcel is not valid JSON ({exc})", "bad_request") from None
    if not isinstance(obj, dict) or "type" not in obj:
        raise ParcelError("the parcel must be a GeoJSON Geometry, Feature or FeatureCollection (an object with a "
                          "'type')", "bad_request")
    crs = _legacy_crs(obj)
    kind = obj.get("type")
    if kind == "FeatureCollection":
        feats = obj.get("features")
        if not isinstance(feats, list):
            raise ParcelError("GeoJSON FeatureCollection without a 'features' list", "bad_request")
        geoms_json = [f.get("geometry") if isinstance(f, dict) else None for f in feats]
    elif kind == "Feature":
        geoms_json = [obj.get("geometry")]
    else:
        geoms_json = [obj]
    if not geoms_json:
        raise ParcelError("the parcel holds no feature", "empty")
    geoms = []
    for i, g in enumerate(geoms_json):
        if g is None:
            raise ParcelError(f"feature {i} of the parcel has no geometry (null)", "empty")
        try:
            geoms.append(shapely.geometry.shape(g))
        except Exception as exc:  # shapely raises several types on malformed GeoJSON
            raise ParcelError(f"feature {i} of the parcel is not a GeoJSON geometry ({type(exc).__name__}: {exc})",
                              "bad_request") from None
    return geoms, crs


def _legacy_crs(obj: dict):
    """The CRS named by a GeoJSON 2008 ``crs`` member (``{"type": "name", "properties": {"name": ...}}``)."""
    c = obj.get("crs")
    if isinstance(c, dict) and isinstance(c.get("properties"), dict) and c["properties"].get("name"):
        return c["properties"]["name"]
    return None


def read_parcel_file(data: bytes, filename: str | None = None) -> tuple[list, object, dict]:
    """The parcel polygons of an uploaded file: GeoJSON, GeoPackage or a zipped shapefile.

    The format is recognised from the content (zip and SQLite signatures, JSON text), the file name's suffix
    only breaking ties; the name is never used as a path: the bytes go to a private temporary folder under fixed
    names (a zip's shapefile members are written one by one under ``parcel.<ext>``), read with pyogrio and
    deleted.

    Parameters
    ----------
    data : bytes
        The file's content (at most :data:`MAX_UPLOAD_BYTES`).
    filename : str, optional
        The name the client gave (for messages and the suffix).

    Returns
    -------
    geoms : list of shapely geometries
        One per feature.
    crs : pyproj-compatible CRS or None
        The file's CRS (GeoJSON: its legacy ``crs`` member, else WGS84 by RFC 7946 §4); None when the file has
        none (a shapefile without ``.prj``, a GeoPackage layer without SRS).
    info : dict
        ``format`` (``geojson``, ``gpkg``, ``shapefile (zip)``), ``filename``, ``n_features``, ``warnings``.

    Raises
    ------
    ParcelError
        ``too_large`` (413): over :data:`MAX_UPLOAD_BYTES`, or a zip whose shapefile expands beyond
        :data:`MAX_UNZIPPED_BYTES`; ``unreadable``: empty, not one of the three formats, a zip without exactly one
        ``.shp`` (or without its ``.shx``/``.dbf``), a file GDAL cannot read; ``empty``: no feature.
    """
    name = str(filename or "upload")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ParcelError(f"{name}: {len(data) / 1e6:.1f} MB is over the upload limit of "
                          f"{MAX_UPLOAD_BYTES / 1e6:.0f} MB", "too_large", 413)
    if not data:
        raise ParcelError(f"{name}: the file is empty", "unreadable")
    suffix = Path(name).suffix.lower()
    warnings: list[str] = []
    if data[:4] == b"PK\x03\x04":
        fmt = "shapefile (zip)"
        geoms, crs = _read_zipped_shapefile(data, name, warnings)
    elif data[:16] == b"SQLite format 3\x00":
        fmt = "gpkg"
        geoms, crs = _read_ogr(data, ".gpkg", name, warnings)
    elif data.lstrip()[:1] in (b"{", b"["):
        fmt = "geojson"
        try:
            obj = json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ParcelError(f"{name}: not readable JSON ({exc})", "unreadable") from None
        geoms, crs = parcel_geometries(obj)
        if crs is None:
            crs = "EPSG:4326"  # RFC 7946 §4: GeoJSON coordinates are WGS84 lon/lat
    else:
        hint = f" (suffix {suffix})" if suffix else ""
        raise ParcelError(f"{name}: not a GeoJSON, GeoPackage or zipped shapefile{hint}; upload one of these",
                          "unreadable")
    if not geoms:
        raise ParcelError(f"{name}: the file holds no feature", "empty")
    return geoms, crs, {"format": fmt, "filename": name, "n_features": len(geoms), "warnings": warnings}


def _read_ogr(data: bytes, suffix: str, name: str, warnings: list, extra: dict | None = None):
    """Write ``data`` (and ``extra``: suffix -> bytes) to ``parcel<suffix>`` in a temporary folder and read the
    first layer with pyogrio; returns (geometries, crs or None)."""
    import pyogrio

    with tempfile.TemporaryDirectory(prefix="gep_parcel_") as tmp:
        path = Path(tmp) / f"parcel{suffix}"
        path.write_bytes(data)
        for ext, blob in (extra or {}).items():
            (Path(tmp) / f"parcel{ext}").write_bytes(blob)
        try:
            with warnings_mod.catch_warnings():  # GDAL's warnings on a damaged file: the error below says it
                warnings_mod.simplefilter("ignore", RuntimeWarning)
                layers = pyogrio.list_layers(path)
            if len(layers) == 0:
                raise ParcelError(f"{name}: the file holds no layer", "empty")
            if len(layers) > 1:
                warnings.append(f"{name} holds {len(layers)} layers; the first, '{layers[0][0]}', was read")
            gdf = pyogrio.read_dataframe(path, layer=str(layers[0][0]))
        except ParcelError:
            raise
        except Exception as exc:  # pyogrio/GDAL raise many types
            raise ParcelError(f"{name}: cannot read the file ({_short(exc)})", "unreadable") from None
    return list(gdf.geometry), gdf.crs


def _read_zipped_shapefile(data: bytes, name: str, warnings: list):
    """The one shapefile of a zip archive: its members read into memory (sizes checked), then :func:`_read_ogr`."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ParcelError(f"{name}: not a readable zip archive ({exc})", "unreadable") from None
    with zf:
        members = [i for i in zf.infolist() if not i.is_dir() and "__MACOSX" not in i.filename
                   and not Path(i.filename).name.startswith(".")]
        shps = [i for i in members if i.filename.lower().endswith(".shp")]
        if len(shps) != 1:
            raise ParcelError(f"{name}: a zipped shapefile must hold exactly one .shp, found {len(shps)} "
                              f"({[i.filename for i in shps][:5]})", "unreadable")
        stem = shps[0].filename[:-4]
        parts = {}
        for i in members:
            ext = i.filename[len(stem):].lower() if i.filename[:len(stem)] == stem else ""
            if ext in _SHP_PARTS:
                parts[ext] = i
        for need in (".shx", ".dbf"):
            if need not in parts:
                raise ParcelError(f"{name}: the zip has {Path(stem).name}.shp but no {Path(stem).name}{need}; zip "
                                  "every file of the shapefile (.shp, .shx, .dbf, .prj)", "unreadable")
        total = sum(i.file_size for i in parts.values())
        if total > MAX_UNZIPPED_BYTES:
            raise ParcelError(f"{name}: the shapefile expands to {total / 1e6:.0f} MB, over the limit of "
                              f"{MAX_UNZIPPED_BYTES / 1e6:.0f} MB", "too_large", 413)
        try:
            blobs = {ext: zf.read(i) for ext, i in parts.items()}
        except Exception as exc:  # corrupt member, unsupported compression
            raise ParcelError(f"{name}: cannot unpack the zip ({_short(exc)})", "unreadable") from None
    if ".prj" not in blobs:
        warnings.append(f"{name}: no .prj in the zip: the shapefile has no CRS")
    shp = blobs.pop(".shp")
    return _read_ogr(shp, ".shp", name, warnings, extra=blobs)


def _short(exc: BaseException, n: int = 300) -> str:
    s = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return s[:n]


# --------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------
def _polygonal(geoms: list) -> list:
    """Each geometry as a Polygon/MultiPolygon (a GeometryCollection of polygons is accepted); ParcelError
    ``not_polygon`` / ``empty`` otherwise."""
    import shapely

    out = []
    for i, g in enumerate(geoms):
        if g is None or g.is_empty:
            raise ParcelError(f"feature {i} of the parcel has an empty geometry", "empty")
        if g.geom_type == "GeometryCollection":
            parts = list(shapely.get_parts(g))
            if parts and all(p.geom_type in ("Polygon", "MultiPolygon") for p in parts):
                g = shapely.union_all(parts) if len(parts) > 1 else parts[0]
        if g.geom_type not in ("Polygon", "MultiPolygon"):
            raise ParcelError(f"not a polygon: feature {i} of the parcel is a {g.geom_type}; a parcel is a Polygon "
                              "or MultiPolygon (draw an area, or upload a polygon layer)", "not_polygon")
        out.append(g)
    return out


def _resolve_crs(crs, geoms: list, warnings: list):
    """The parcel's CRS as a pyproj CRS: the given one, or WGS84 when none is given and every coordinate is
    lon/lat; ParcelError ``no_crs`` / ``not_lonlat`` / ``bad_request``."""
    import shapely
    from pyproj import CRS

    b = shapely.total_bounds(np.asarray(geoms, dtype=object))
    lonlat = bool(np.all(np.isfinite(b))) and -180 <= b[0] <= b[2] <= 180 and -90 <= b[1] <= b[3] <= 90
    if crs is None:
        if not lonlat:
            raise ParcelError("the parcel has no CRS (for a zipped shapefile: the .prj is missing) and its "
                              f"coordinates (bounds {_fmt_bounds(b)}) are not lon/lat; add the .prj or give the "
                              "CRS", "no_crs")
        warnings.append("the parcel has no CRS; its coordinates are lon/lat and were taken as WGS84 (EPSG:4326)")
        return CRS.from_epsg(4326)
    try:
        pc = CRS.from_user_input(crs)
    except Exception as exc:
        raise ParcelError(f"unknown CRS '{crs}' ({_short(exc)})", "bad_request") from None
    if pc.is_geographic and not lonlat:
        raise ParcelError(f"the parcel's CRS {pc.to_string()} is geographic but its coordinates (bounds "
                          f"{_fmt_bounds(b)}) are not lon/lat (GeoJSON without a 'crs' member is WGS84 by "
                          "RFC 7946); give the right CRS", "not_lonlat")
    return pc


def _fmt_bounds(b) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in b) + "]"


def _check_valid(geoms: list, make_valid: bool, warnings: list) -> list:
    """Invalid polygons (self-intersection, ...): ParcelError ``invalid_geometry`` naming the reason, or repaired
    with ``shapely.make_valid`` (polygonal part kept) when ``make_valid``."""
    import shapely

    out = []
    for i, g in enumerate(geoms):
        if g.is_valid:
            out.append(g)
            continue
        reason = shapely.is_valid_reason(g)
        if not make_valid:
            raise ParcelError(f"invalid geometry: feature {i} of the parcel is not a valid polygon ({reason}; e.g. "
                              "a self-intersecting outline); fix it, or resend with make_valid=true to repair it "
                              "with shapely.make_valid", "invalid_geometry")
        r = _polygonal_part(shapely.make_valid(g))
        if r is None or r.is_empty:
            raise ParcelError(f"invalid geometry: feature {i} ({reason}) has no area once repaired",
                              "invalid_geometry")
        warnings.append(f"feature {i} was invalid ({reason}) and was repaired with shapely.make_valid: area "
                        f"{g.area:.6g} -> {r.area:.6g} (input CRS units)")
        out.append(r)
    return out


def _polygonal_part(g):
    import shapely

    if g.geom_type in ("Polygon", "MultiPolygon"):
        return g
    polys = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon") and not p.is_empty]
    return shapely.union_all(polys) if polys else None


# --------------------------------------------------------------------------------------
# the account
# --------------------------------------------------------------------------------------
def parcel_account(run, geometry, crs="EPSG:4326", *, make_valid: bool = False,
                   max_area_share: float = MAX_AREA_SHARE, run_id: str | None = None) -> dict:
    """Area, every service's physical quantity and value, GEP-R, EPV, ECV and GEP of one parcel of a run.

    The same numbers as the run's zonal table row of that polygon (``tables/<layer>.csv``; ``gep vep`` for a
    special unit), from the window of the rasters that the parcel's bounding box covers (module docstring).

    Parameters
    ----------
    run : RunInfo
        A finished run (:func:`gep_raster.analysis.change.load_run`).
    geometry : dict, str, shapely geometry, geopandas.GeoSeries or GeoDataFrame
        The parcel: a GeoJSON Geometry, Feature or FeatureCollection (several features are dissolved into one
        parcel), a shapely Polygon/MultiPolygon, or a GeoSeries/GeoDataFrame.
    crs : str, pyproj.CRS or None
        CRS of the coordinates (default WGS84 lon/lat, as GeoJSON). A CRS carried by ``geometry`` (GeoSeries, the
        legacy GeoJSON ``crs`` member) takes precedence. None: unknown, accepted only for lon/lat coordinates
        (then taken as WGS84, with a warning).
    make_valid : bool
        Repair invalid polygons (``shapely.make_valid``, polygonal part) instead of refusing them.
    max_area_share : float
        Largest parcel area accepted, as a share of the run's grid area (0.10 = 10 %).
    run_id : str, optional
        The run's id in the answer (``gep serve``'s id; default the manifest's run name).

    Returns
    -------
    dict
        * ``run``: ``id``, ``name``, ``accounting_year``, ``run_hash``, ``grid_crs``;
        * ``parcel``: ``area_km2`` (polygon area, km²), ``grid_area_km2`` (area on the grid), ``valid_area_km2``
          (area with a GEP-R value), ``n_features``, ``bounds_wgs84`` [W, S, E, N] (degrees), ``window``
          (``row_off``, ``col_off``, ``height``, ``width``, pixels of the run grid read);
        * ``quantities``: one record per summed raster (manifest order: physical quantities, service values,
          GEP-R, EPV/ECV): ``key`` (raster/table column name), ``service``, ``kind`` (``physical``, ``value``,
          ``gep_r``), ``value``, ``unit`` (e.g. ``m3/a``, ``yuan/a``), ``description``;
        * ``services``: per regulating service: ``service``, ``value_yuan`` (yuan/a), ``physical`` (key -> value)
          and ``units``;
        * ``totals``: ``gep_r_yuan``, ``epv_yuan``, ``ecv_yuan``, ``gep_yuan`` (yuan/a; EPV/ECV/GEP None without
          the economic accounts), ``gep_r_yuan_per_km2``, ``gep_yuan_per_km2`` (yuan/km²/a, per valid km²);
        * ``row``: the same numbers under the column names of the run's tables (``area_km2``,
          ``valid_area_km2``, ``water_conservation_m3``, ..., ``gep_r_yuan``, ``provisioning_yuan``,
          ``cultural_yuan``, ``gep_yuan``);
        * ``units``: column -> unit of ``row``; ``gep_basis``; ``method``; ``warnings``; ``elapsed_s``;
        * ``geometry``: the parcel as used (dissolved, repaired), GeoJSON in WGS84 lon/lat.

    Raises
    ------
    ParcelError
        ``bad_request``, ``empty``, ``not_polygon``, ``no_crs``, ``not_lonlat``, ``invalid_geometry``,
        ``outside_extent``, ``too_large`` (area over ``max_area_share`` of the run), ``too_complex`` (over
        :data:`MAX_VERTICES` vertices); the message says what is wrong and how to fix it.
    InputError
        A raster of the run cannot be read (names the file).
    """
    import geopandas as gpd
    import shapely
    from pyproj import CRS

    t0 = time.perf_counter()
    warnings: list[str] = []
    geoms, own_crs = parcel_geometries(geometry)
    if not geoms:
        raise ParcelError("the parcel holds no feature", "empty")
    geoms = _polygonal(geoms)
    nverts = int(sum(shapely.get_num_coordinates(g) for g in geoms))
    if nverts > MAX_VERTICES:
        raise ParcelError(f"too complex: the parcel has {nverts:,} vertices (limit {MAX_VERTICES:,}); simplify it",
                          "too_complex")
    pcrs = _resolve_crs(own_crs if own_crs is not None else crs, geoms, warnings)
    geoms = _check_valid(geoms, make_valid, warnings)
    grid = run.grid
    gwkt = grid.crs.to_wkt()
    gs = gpd.GeoSeries(geoms, crs=pcrs)
    if CRS.from_user_input(gs.crs) != CRS.from_user_input(gwkt):  # as load_layer brings a layer to the grid
        gs = gs.to_crs(gwkt)
    else:
        gs = gs.set_crs(gwkt, allow_override=True)
    parts = [g if g.is_valid else _polygonal_part(shapely.make_valid(g)) for g in gs]
    if any(not a.is_valid for a in gs):
        warnings.append("the parcel became invalid when reprojected to the grid CRS and was repaired (make_valid)")
    if any(p is None or p.is_empty for p in parts):
        raise ParcelError("the parcel has no area in the run's CRS", "empty")
    parcel = parts[0] if len(parts) == 1 else shapely.union_all(parts)
    if len(parts) > 1:
        warnings.append(f"{len(parts)} features were dissolved into one parcel (overlaps counted once)")
    if not parcel.is_valid:
        parcel = _polygonal_part(shapely.make_valid(parcel))
    pgdf = gpd.GeoDataFrame({"parcel": [0]}, geometry=[parcel], crs=gwkt)

    from ..accounts.layers import polygon_area_km2

    area_km2 = float(polygon_area_km2(pgdf, grid)[0])
    grid_km2_total = float(grid.row_pixel_area_m2.sum() * grid.width / 1e6)
    L, B, R, T = grid.bounds
    extent = shapely.box(L, B, R, T)
    if not parcel.intersects(extent) or parcel.intersection(extent).area <= 0:
        raise ParcelError(f"outside the run's extent: the parcel (bounds {_wgs84_bounds(parcel, gwkt)} lon/lat) does "
                          f"not overlap run '{run.manifest.get('run_name')}' (extent {_wgs84_bounds(extent, gwkt)} "
                          "lon/lat)", "outside_extent")
    if area_km2 > max_area_share * grid_km2_total:
        raise ParcelError(f"too large: the parcel's {area_km2:,.3f} km2 is more than {100 * max_area_share:g} % of "
                          f"the run's area ({grid_km2_total:,.3f} km2); query a smaller parcel, or add the polygon "
                          "to the run as a layer (layers.<name>, role: special_unit) to have its account in "
                          "tables/", "too_large")

    r0, r1, c0, c1 = _window(parcel, grid)
    index = window_coverage(parcel, grid, r0, r1, c0, c1)
    keys = _summed_keys(run)
    sums, valid_m2 = _window_sums(run, keys, index, r0, r1, c0, c1)
    grid_km2 = float(index.covered_area_m2()[0] / 1e6)
    if grid_km2 < area_km2 * (1 - 1e-6):
        warnings.append(f"the parcel lies partly outside the run's grid: {grid_km2:.6f} of {area_km2:.6f} km2 "
                        "are counted")
    valid_km2 = valid_m2 / 1e6
    if grid_km2 > 0 and valid_km2 < grid_km2 * (1 - 1e-6):
        warnings.append(f"{grid_km2 - valid_km2:.6f} km2 of the parcel have no GEP-R value (nodata pixels: outside "
                        "the land-cover data or masked)")
    res = _assemble(run, keys, sums, area_km2, grid_km2, valid_km2, run_id, warnings)
    res["parcel"].update({"n_features": len(geoms), "input_crs": pcrs.to_string(),
                          "bounds_wgs84": _wgs84_bounds(parcel, gwkt, as_list=True),
                          "window": {"row_off": r0, "col_off": c0, "height": r1 - r0, "width": c1 - c0}})
    res["geometry"] = json.loads(gpd.GeoSeries([parcel], crs=gwkt).to_crs(4326).to_json(drop_id=True)
                                 )["features"][0]["geometry"]
    res["elapsed_s"] = time.perf_counter() - t0
    return res


def _wgs84_bounds(geom, wkt: str, as_list: bool = False):
    from rasterio.warp import transform_bounds

    b = transform_bounds(wkt, "EPSG:4326", *geom.bounds, densify_pts=21)
    return [float(v) for v in b] if as_list else _fmt_bounds(b)


def _window(parcel, grid) -> tuple[int, int, int, int]:
    """Rows r0:r1, columns c0:c1 of the grid holding the parcel's bounding box, one pixel added on each side,
    clipped to the grid."""
    t = grid.transform
    minx, miny, maxx, maxy = parcel.bounds
    c0 = max(int(math.floor((minx - t.c) / t.a)) - 1, 0)
    c1 = min(int(math.ceil((maxx - t.c) / t.a)) + 1, grid.width)
    r0 = max(int(math.floor((maxy - t.f) / t.e)) - 1, 0)
    r1 = min(int(math.ceil((miny - t.f) / t.e)) + 1, grid.height)
    return r0, max(r1, r0), c0, max(c1, c0)


def window_coverage(geom, grid, r0: int, r1: int, c0: int, c1: int):
    """Exact coverage of one polygon on a window of a grid, equal to its coverage on the whole grid.

    Parameters
    ----------
    geom : shapely Polygon or MultiPolygon
        Valid polygon in ``grid.crs``.
    grid : RefGrid
        The run's grid.
    r0, r1, c0, c1 : int
        Window rows and columns (ends exclusive) holding every vertex of ``geom`` that lies on the grid.

    Returns
    -------
    gep_raster.accounts.zonal.CoverageIndex
        A 1-polygon index on the window's grid (transform shifted by ``(c0, r0)`` pixels, the whole grid's pixel
        areas of rows ``r0:r1``); rows and columns relative to the window.

    Notes
    -----
    The coverage build takes vertices to pixel coordinates, ``u = (x − c)/a``, ``v = (y − f)/e``. Here they are
    computed the same way with the whole grid's transform, then shifted by the integer offsets, ``u − c0``,
    ``v − r0`` (exact in float64 for the window's vertices), and the index is built on a unit grid in those
    coordinates (``u' = (x' − 0)/1``: exact again), so the fractions are computed from the same numbers up to
    the shift. Measured on 200 random polygons of the sample grid (436,199 cells): every fraction equal to the
    whole grid's, bit for bit. Should the shifted polygon be invalid (float noise), the index is built on the
    window grid directly (fractions then within a float32 ulp). Source of the fractions: exactextract (Baston,
    "background", https://isciences.github.io/exactextract/background.html).
    """
    import geopandas as gpd
    import shapely
    from affine import Affine

    from ..accounts.zonal import CoverageIndex
    from ..grid import RefGrid

    t = grid.transform
    h, w = r1 - r0, c1 - c0
    sub = RefGrid(grid.crs, t * Affine.translation(c0, r0), w, h)
    sub.__dict__["row_pixel_area_m2"] = np.ascontiguousarray(grid.row_pixel_area_m2[r0:r1])  # the grid's own areas

    def to_pixels(xy):
        u = (xy[:, 0] - t.c) / t.a - c0
        v = (xy[:, 1] - t.f) / t.e - r0
        return np.column_stack([u, -v])

    pg = shapely.transform(geom, to_pixels)
    wkt = grid.crs.to_wkt()
    if pg.is_valid:
        unit = RefGrid(grid.crs, Affine(1.0, 0.0, 0.0, 0.0, -1.0, 0.0), w, h)
        idx = CoverageIndex.build(gpd.GeoSeries([pg], crs=wkt), unit, layer_name="parcel")
    else:  # pragma: no cover - float noise of the shift
        idx = CoverageIndex.build(gpd.GeoSeries([geom], crs=wkt), sub, layer_name="parcel")
    return CoverageIndex(sub, "parcel", idx.n_polygons, run_ptr=idx.run_ptr, run_c0=idx.run_c0, run_c1=idx.run_c1,
                         run_poly=idx.run_poly, run_reach=idx.run_reach, part_ptr=idx.part_ptr,
                         part_col=idx.part_col, part_poly=idx.part_poly, part_frac=idx.part_frac)


def _summed_keys(run) -> list[str]:
    """Rasters summed over a parcel, manifest order: physical quantities, service values, GEP-R, EPV and ECV (the
    GEP raster is not summed: GEP = GEP-R + EPV + ECV, as the tables)."""
    return [k for k, r in run.rasters.items() if r["kind"] in ("physical", "value", "gep_r")]


def _window_sums(run, keys: list[str], index, r0: int, r1: int, c0: int, c1: int):
    """Σ f·x of every raster over the window (float64 (k,)) and Σ f·pixel area where GEP-R is valid (m²)."""
    import rasterio
    from rasterio.windows import Window

    h, w = r1 - r0, c1 - c0
    stack = np.empty((len(keys), h, w), np.float32)
    win = Window(c0, r0, w, h)
    for j, k in enumerate(keys):
        path = run.rasters[k]["path"]
        try:
            with rasterio.open(path) as ds:
                if (ds.height, ds.width) != run.grid.shape:
                    raise InputError(f"{path}: shape {(ds.height, ds.width)} is not the run grid's {run.grid.shape}")
                v = ds.read(1, window=win, out_dtype=np.float32)
                if ds.nodata is not None and np.isfinite(ds.nodata):
                    v[v == np.float32(ds.nodata)] = np.nan
        except rasterio.errors.RasterioIOError as exc:
            raise InputError(f"{path}: cannot read raster {k} of run {run.path} ({exc})") from None
        stack[j] = v
    out = np.zeros((1, len(keys)), np.float64)
    if h and w:
        index.accumulate(stack, 0, 0, out)
    va = np.zeros(1, np.float64)
    if h and w:
        index.accumulate(stack[keys.index("gep_r_yuan")], 0, 0, np.zeros(1), valid_area_out=va)
    return out[0], float(va[0])


def _assemble(run, keys, sums, area_km2, grid_km2, valid_km2, run_id, warnings) -> dict:
    from ..analysis.change import ECONOMIC_SERVICES

    vals = {k: float(s) for k, s in zip(keys, sums)}
    unit = {k: run.rasters[k]["unit"].replace(" per pixel", "") for k in keys}
    quantities = [{"key": k, "service": run.rasters[k]["service"], "kind": run.rasters[k]["kind"], "value": vals[k],
                   "unit": unit[k], "description": run.rasters[k]["description"]} for k in keys]
    services = []
    for s in run.services:
        vk = [k for k in run.value_keys if run.rasters[k]["service"] == s]
        pk = [k for k in run.physical_keys if run.rasters[k]["service"] == s]
        services.append({"service": s, "value_key": vk[0] if vk else None,
                         "value_yuan": float(sum(vals[k] for k in vk)),
                         "physical": {k: vals[k] for k in pk}, "units": {k: unit[k] for k in pk + vk}})
    econ = {run.rasters[k]["service"]: k for k in keys if run.rasters[k]["service"] in ECONOMIC_SERVICES}
    gep_r = vals["gep_r_yuan"]
    epv = vals.get(econ.get("provisioning", ""))
    ecv = vals.get(econ.get("cultural", ""))
    has_econ = epv is not None and ecv is not None
    gep = gep_r + epv + ecv if has_econ else None
    basis = ("GEP = GEP-R + EPV (provisioning_yuan) + ECV (cultural_yuan): coverage-weighted sums of the run's "
             "rasters" if has_econ else
             "the run has no economic accounts (no provisioning/cultural rasters in its manifest): GEP-R only, "
             "GEP not given")
    per = (lambda v: (v / valid_km2 if (v is not None and valid_km2 > 0) else None))
    row = {"area_km2": area_km2, "grid_area_km2": grid_km2, "valid_area_km2": valid_km2}
    row.update({k: vals[k] for k in keys})
    if has_econ:
        row["gep_yuan"] = gep
    row["gep_r_yuan_per_km2"] = per(gep_r)
    if has_econ:
        row["gep_yuan_per_km2"] = per(gep)
    units = {"area_km2": "km2", "grid_area_km2": "km2", "valid_area_km2": "km2", **unit,
             "gep_yuan": "yuan/a", "gep_r_yuan_per_km2": "yuan/km2/a", "gep_yuan_per_km2": "yuan/km2/a"}
    units = {k: units[k] for k in row}
    m = run.manifest
    return {
        "run": {"id": run_id or m.get("run_name"), "name": m.get("run_name"),
                "accounting_year": m.get("accounting_year"), "run_hash": m.get("run_hash"),
                "grid_crs": m.get("grid", {}).get("crs")},
        "parcel": {"area_km2": area_km2, "grid_area_km2": grid_km2, "valid_area_km2": valid_km2},
        "quantities": quantities,
        "services": services,
        "totals": {"gep_r_yuan": gep_r, "epv_yuan": epv, "ecv_yuan": ecv, "gep_yuan": gep,
                   "gep_r_yuan_per_km2": per(gep_r), "gep_yuan_per_km2": per(gep), "unit": "yuan/a"},
        "row": row,
        "units": units,
        "gep_basis": basis,
        "method": "exact coverage fractions (exactextract's definition, gep_raster.accounts.zonal) on the window of "
                  "the run's pixel lattice that the parcel's bounding box covers; sum of f x value over pixels "
                  "with a value; the same numbers as the run's zonal tables for this polygon",
        "warnings": warnings,
    }


# --------------------------------------------------------------------------------------
# downloads
# --------------------------------------------------------------------------------------
def account_csv(acc: dict) -> str:
    """The parcel account as CSV text: one line per quantity (``quantity,service,kind,value,unit,description``):
    the areas, every raster sum, EPV, ECV, GEP and the per-km² values (numbers written with 17 significant
    digits, so they read back exactly)."""
    import csv

    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["quantity", "service", "kind", "value", "unit", "description"])
    q = {r["key"]: r for r in acc["quantities"]}
    for k, v in acc["row"].items():
        r = q.get(k, {})
        kind = r.get("kind") or ("area" if k.endswith("area_km2") else "total")
        wr.writerow([k, r.get("service") or "", kind, "" if v is None else repr(float(v)), acc["units"].get(k, ""),
                     r.get("description") or ""])
    return buf.getvalue()


def account_geojson(acc: dict) -> dict:
    """The parcel account as a GeoJSON FeatureCollection (WGS84): one Feature, the parcel, whose properties are the
    run (``run_id``, ``run_name``, ``accounting_year``) and the numbers of ``acc["row"]``; the units are in the
    collection's ``units`` member and the warnings in ``warnings``."""
    props = {"run_id": acc["run"]["id"], "run_name": acc["run"]["name"],
             "accounting_year": acc["run"]["accounting_year"], **acc["row"]}
    return {"type": "FeatureCollection", "units": acc["units"], "gep_basis": acc["gep_basis"],
            "warnings": acc["warnings"],
            "features": [{"type": "Feature", "properties": props, "geometry": acc["geometry"]}]}
