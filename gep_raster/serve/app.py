"""The FastAPI application of ``gep serve`` (built by :func:`gep_raster.serve.create_app`).

Routes (OpenAPI at ``/openapi.json``, Swagger UI at ``/docs`` from the vendored swagger-ui-dist):

* ``GET /``: the map (``static/index.html``: Leaflet, vendored; plain JS, no build step);
* ``GET /api/runs``: the runs served (id, name, year, services, rasters, layers, extents, limits);
* ``GET /api/runs/{run_id}``: one run;
* ``GET /api/runs/{run_id}/layers/{layer}``: a polygon layer of the run with its account rows (GeoJSON, WGS84);
* ``GET /api/runs/{run_id}/rasters/{raster}/legend``: colour scale of a raster's tiles;
* ``POST /api/parcel``: the account of a parcel (JSON body with a GeoJSON geometry, or a multipart upload);
  ``?format=csv`` / ``?format=geojson`` for the downloads;
* ``GET /tiles/{run_id}/{raster}/{z}/{x}/{y}.png``: XYZ tiles.

Safety: the server reads only the run folders it was given. A run id is an index or an id derived from the run's
name at start-up, a raster a key of the run's manifest outputs, a layer a name of the run's tables: each is looked
up in a dictionary, and anything else (``../`` included) is a 404; no path of a request reaches the file system
(uploads are written under fixed names in a private temporary folder). Errors are JSON: 4xx with a message for
what the client can fix, and 500 ``internal error`` without traceback for anything else (logged with its
traceback on the server).
"""
from __future__ import annotations

import json
import logging
import math
import re
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Path as P, Query, Request
from pydantic import BaseModel, Field

from .._version import __version__
from ..errors import ConfigError, GepError, InputError
from .parcel import MAX_AREA_SHARE, MAX_UPLOAD_BYTES, ParcelError

log = logging.getLogger("gep_raster.serve")

STATIC = Path(__file__).resolve().parent / "static"
SWAGGER_JS = "/static/vendor/swagger-ui/swagger-ui-bundle.js"
SWAGGER_CSS = "/static/vendor/swagger-ui/swagger-ui.css"
FAVICON = "/static/favicon.png"


# --------------------------------------------------------------------------------------
# the runs served
# --------------------------------------------------------------------------------------
@dataclass
class ServedRun:
    """A run folder given on the command line: its position, id and :class:`RunInfo`."""

    index: int
    id: str
    info: object  # RunInfo
    _geojson: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """The run as listed by ``GET /api/runs`` (no file-system path)."""
        from rasterio.warp import transform_bounds

        r = self.info
        m = r.manifest
        g = r.grid
        rasters = [{"key": k, "kind": v["kind"], "service": v["service"], "unit": v["unit"],
                    "description": v["description"], "tiles": f"/tiles/{self.id}/{k}/{{z}}/{{x}}/{{y}}.png"}
                   for k, v in r.rasters.items()]
        layers = [{"name": n, "role": v["role"], "id_field": v["id_field"], "name_field": v["name_field"],
                   "geojson": f"/api/runs/{self.id}/layers/{n}"} for n, v in r.layers.items() if v.get("gpkg")]
        area_km2 = float(g.row_pixel_area_m2.sum() * g.width / 1e6)
        return {
            "id": self.id, "index": self.index, "name": m.get("run_name"), "description": m.get("description"),
            "accounting_year": m.get("accounting_year"), "run_hash": m.get("run_hash"),
            "gep_raster_version": m.get("gep_raster_version"),
            "services": r.services, "has_gep": bool({"provisioning", "cultural"} <= {v["service"]
                                                                                      for v in r.rasters.values()}),
            "rasters": rasters, "layers": layers,
            "grid": {"crs": m["grid"].get("crs"), "width": g.width, "height": g.height,
                     "res": list(g.res), "bounds": list(g.bounds), "area_km2": area_km2},
            "bounds_wgs84": [float(v) for v in transform_bounds(g.crs, "EPSG:4326", *g.bounds, densify_pts=21)],
        }


class Catalog:
    """The runs of a server, looked up by id or index (never by path).

    Parameters
    ----------
    run_dirs : sequence of path-like
        Finished run folders (``gep run`` outputs).

    Raises
    ------
    ConfigError
        No run folder given.
    InputError
        A folder is not a finished run (:func:`gep_raster.analysis.change.load_run`).
    """

    def __init__(self, run_dirs):
        from ..analysis.change import load_run

        run_dirs = list(run_dirs)
        if not run_dirs:
            raise ConfigError("gep serve: give at least one finished run folder")
        self.runs: list[ServedRun] = []
        used = set()
        for i, d in enumerate(run_dirs):
            info = load_run(d)
            base = _slug(str(info.manifest.get("run_name") or "run")) or "run"
            rid, n = base, 2
            while rid in used or rid.isdigit():
                rid, n = f"{base}-{n}", n + 1
            used.add(rid)
            self.runs.append(ServedRun(i, rid, info))
        self._by_key = {r.id: r for r in self.runs}
        self._by_key.update({str(r.index): r for r in self.runs})
        self._lock = threading.Lock()

    def get(self, key) -> ServedRun:
        """The run of an id or index; :class:`NotFound` otherwise."""
        r = self._by_key.get(str(key)) if key is not None else None
        if r is None:
            raise NotFound(f"unknown run '{_clip(key)}'; runs: {[x.id for x in self.runs]} (or their index "
                           f"0..{len(self.runs) - 1})")
        return r

    def raster(self, run: ServedRun, key: str) -> dict:
        """A raster of the run's manifest outputs (whitelist); :class:`NotFound` otherwise."""
        r = run.info.rasters.get(key)
        if r is None:
            raise NotFound(f"run '{run.id}' has no raster '{_clip(key)}' (rasters: {sorted(run.info.rasters)})")
        return r

    def layer_geojson(self, run: ServedRun, layer: str) -> bytes:
        """A layer's account table with its polygons, GeoJSON (WGS84) bytes, built once per layer.

        The FeatureCollection has every column of ``tables/<layer>.gpkg`` as properties (NaN as null) and the
        members ``layer``, ``id_field``, ``name_field``, ``role`` and ``units`` (column -> unit, from the run's
        manifest).
        """
        info = run.info.layers.get(layer)
        if info is None or not info.get("gpkg"):
            raise NotFound(f"run '{run.id}' has no layer '{_clip(layer)}' (layers: "
                           f"{sorted(k for k, v in run.info.layers.items() if v.get('gpkg'))})")
        with self._lock:
            if layer in run._geojson:
                return run._geojson[layer]
        import geopandas as gpd

        try:
            gdf = gpd.read_file(info["gpkg"])
        except Exception as exc:  # pyogrio/GDAL
            raise InputError(f"cannot read the table of layer '{layer}' of run '{run.id}' ({type(exc).__name__})") \
                from None
        if gdf.crs is not None:
            gdf = gdf.to_crs(4326)
        fc = json.loads(gdf.to_json(na="null", drop_id=True))
        units = {}
        for o in run.info.manifest.get("outputs", []):
            if o.get("kind") == "table" and o.get("layer") == layer and isinstance(o.get("columns"), dict):
                units = o["columns"]
                break
        fc.update({"layer": layer, "id_field": info["id_field"], "name_field": info["name_field"],
                   "role": info["role"], "units": units})
        data = json.dumps(fc, ensure_ascii=False, allow_nan=False).encode("utf-8")
        with self._lock:
            run._geojson[layer] = data
        return data


class NotFound(GepError):
    """An unknown run, raster or layer (HTTP 404)."""


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", s.lower()).strip("-")[:64]


def _clip(s, n: int = 80) -> str:
    s = str(s)
    return s if len(s) <= n else s[:n] + "..."


# --------------------------------------------------------------------------------------
# middleware: upload size limit, catch-all
# --------------------------------------------------------------------------------------
class _Guard:
    """ASGI middleware: refuses request bodies over ``max_bytes`` (HTTP 413, from the Content-Length header or
    while the body streams in) and turns any exception that reaches it into a JSON 500 without traceback (the
    traceback is logged)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_wrapper(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        headers = dict(scope.get("headers") or [])
        cl = headers.get(b"content-length")
        if cl is not None and cl.isdigit() and int(cl) > self.max_bytes:
            return await _send_json(send, 413, _too_large(int(cl), self.max_bytes))
        received = 0

        async def limited_receive():
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.max_bytes:
                    raise ParcelError(_too_large(received, self.max_bytes)["detail"], "too_large", 413)
            return msg

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except ParcelError as exc:  # raised by limited_receive outside a route
            if not started:
                await _send_json(send, exc.status, {"detail": str(exc), "code": exc.code})
        except Exception:
            ref = uuid.uuid4().hex[:12]
            log.exception("internal error %s on %s %s", ref, scope.get("method"), scope.get("path"))
            if not started:
                await _send_json(send, 500, _internal(ref))


def _too_large(n: int, limit: int) -> dict:
    return {"detail": f"upload too large: {n / 1e6:.1f} MB over the limit of {limit / 1e6:.1f} MB", "code": "too_large"}


def _internal(ref: str) -> dict:
    return {"detail": f"internal error (reference {ref}); the server log has the details", "code": "internal"}


async def _send_json(send, status: int, body: dict):
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


# --------------------------------------------------------------------------------------
# the app
# --------------------------------------------------------------------------------------
def build_app(run_dirs, *, max_area_share: float = MAX_AREA_SHARE, max_upload_bytes: int = MAX_UPLOAD_BYTES):
    """The FastAPI app serving ``run_dirs`` (see :func:`gep_raster.serve.create_app`).

    Raises
    ------
    ConfigError, InputError
        As :class:`Catalog`.
    """
    from .tiles import TileRenderer

    catalog = Catalog(run_dirs)
    app = FastAPI(title="gep_raster serve", version=__version__, docs_url=None, redoc_url=None,
                  description="GEP-R / GEP maps, polygon accounts and parcel queries of finished `gep run` "
                              "folders. Units: physical quantities per year (m3/a, t/a, kWh/a...), values in "
                              "yuan/a, areas in km2.")
    app.state.catalog = catalog
    app.state.limits = {"max_area_share": float(max_area_share), "max_upload_bytes": int(max_upload_bytes)}
    _install_error_handlers(app)
    app.add_middleware(_Guard, max_bytes=int(max_upload_bytes))
    _add_pages(app)
    _add_run_routes(app, catalog)
    _add_tile_routes(app, catalog, TileRenderer())
    _add_parcel_route(app, catalog, float(max_area_share))
    return app


def _install_error_handlers(app) -> None:
    """JSON errors: 4xx with the message for what the client can fix, 404 for unknown names, 500 without
    traceback (logged) for anything else."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(ParcelError)
    async def _parcel_error(request, exc: ParcelError):
        return JSONResponse({"detail": str(exc), "code": exc.code}, status_code=exc.status)

    @app.exception_handler(NotFound)
    async def _not_found(request, exc: NotFound):
        return JSONResponse({"detail": str(exc), "code": "not_found"}, status_code=404)

    @app.exception_handler(GepError)
    async def _gep_error(request, exc: GepError):
        status = 400 if isinstance(exc, ConfigError) else 422
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": str(exc), "code": type(exc).__name__}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        return JSONResponse({"detail": exc.detail if exc.status_code != 404 or exc.detail != "Not Found"
                             else f"not found: {_clip(request.url.path)}", "code": "http_error"},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        if request.url.path.startswith("/tiles/"):  # a tile path with a non-integer z/x/y: no such tile
            return JSONResponse({"detail": f"not found: {_clip(request.url.path)}", "code": "not_found"}, 404)
        errs = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errs),
                             "errors": errs, "code": "bad_request"}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal_error(request, exc: Exception):  # fallback; _Guard answers first
        ref = uuid.uuid4().hex[:12]
        log.error("internal error %s on %s %s", ref, request.method, request.url.path, exc_info=exc)
        return JSONResponse(_internal(ref), status_code=500)


def _add_pages(app) -> None:
    """``/`` (the map), ``/static`` (its files and the vendored packages), ``/docs`` (Swagger UI, local files)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return FileResponse(STATIC / "favicon.png", media_type="image/png")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} - API",
                                   swagger_js_url=SWAGGER_JS, swagger_css_url=SWAGGER_CSS,
                                   swagger_favicon_url=FAVICON, swagger_ui_parameters={"validatorUrl": None})


def _add_run_routes(app, catalog: Catalog) -> None:
    """``/api/runs``, ``/api/runs/{run_id}``, ``/api/runs/{run_id}/layers/{layer}``."""
    from fastapi.responses import Response

    @app.get("/api/runs", summary="Runs served", tags=["runs"])
    def list_runs():
        """The runs served: id (use it, or the index, in the other routes), name, accounting year, services,
        rasters (with their tile URL template), layers, grid and extent (``bounds_wgs84``: W, S, E, N in
        degrees), and the parcel limits of this server."""
        return {"runs": [r.summary() for r in catalog.runs], "limits": app.state.limits,
                "gep_raster_version": __version__}

    @app.get("/api/runs/{run_id}", summary="One run", tags=["runs"])
    def get_run(run_id: str):
        """One run (as in ``/api/runs``); 404 for an unknown id."""
        return catalog.get(run_id).summary()

    @app.get("/api/runs/{run_id}/layers/{layer}", summary="A polygon layer with its accounts (GeoJSON)",
             tags=["runs"], response_class=Response,
             responses={200: {"content": {"application/geo+json": {}}}})
    def get_layer(run_id: str, layer: str):
        """The polygons of ``tables/<layer>.gpkg`` of the run in WGS84, every account column as properties
        (areas in km2, physical quantities per year, values in yuan/a); the collection's ``units`` member maps
        each column to its unit."""
        run = catalog.get(run_id)
        return Response(catalog.layer_geojson(run, layer), media_type="application/geo+json")


def _add_tile_routes(app, catalog: Catalog, tiles) -> None:
    """``/tiles/{run_id}/{raster}/{z}/{x}/{y}.png`` and ``/api/runs/{run_id}/rasters/{raster}/legend``."""
    from fastapi.responses import Response

    from .tiles import MAX_ZOOM, TileRenderer

    @app.get("/api/runs/{run_id}/rasters/{raster}/legend", summary="Colour scale of a raster's tiles",
             tags=["tiles"])
    def legend(run_id: str, raster: str):
        """``min``/``max`` (2nd and 98th percentiles, the raster's unit per pixel), colormap and its colours."""
        run = catalog.get(run_id)
        r = catalog.raster(run, raster)
        st = tiles.stats(r["path"])
        return {"raster": raster, "unit": r["unit"], "description": r["description"], **st,
                "colors": TileRenderer.colors()}

    @app.get("/tiles/{run_id}/{raster}/{z}/{x}/{y}.png", summary="XYZ tile (Web Mercator, 256 px PNG)",
             tags=["tiles"], response_class=Response, responses={200: {"content": {"image/png": {}}}})
    def tile(run_id: str, raster: str, z: int = P(..., ge=0, le=MAX_ZOOM), x: int = P(..., ge=0),
             y: int = P(..., ge=0)):
        """A tile of a raster; transparent where the raster has no data or outside it. 404: unknown run or
        raster, or x/y outside 0..2^z-1."""
        run = catalog.get(run_id)
        r = catalog.raster(run, raster)
        if x >= 2 ** z or y >= 2 ** z:
            raise NotFound(f"tile {z}/{x}/{y} does not exist (x and y are 0..{2 ** z - 1} at zoom {z})")
        png = tiles.tile(r["path"], z, x, y)
        return Response(png, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"})


class ParcelRequest(BaseModel):
    """JSON body of ``POST /api/parcel``."""

    run: str | int = Field(..., description="Run id or index (GET /api/runs).")
    geometry: dict = Field(..., description="GeoJSON Polygon/MultiPolygon geometry, Feature or FeatureCollection "
                                             "(features dissolved into one parcel).")
    crs: str | None = Field(None, description="CRS of the coordinates (default EPSG:4326 lon/lat, as GeoJSON).")
    make_valid: bool = Field(False, description="Repair an invalid (e.g. self-intersecting) polygon with "
                                                "shapely.make_valid instead of refusing it.")


#: multipart body of ``POST /api/parcel`` (OpenAPI schema)
UPLOAD_SCHEMA = {"type": "object", "required": ["run", "file"], "properties": {
    "run": {"type": "string", "description": "Run id or index."},
    "file": {"type": "string", "format": "binary",
             "description": "GeoJSON, GeoPackage or zipped shapefile (.shp, .shx, .dbf, .prj) of the parcel."},
    "make_valid": {"type": "boolean", "default": False}}}


def _add_parcel_route(app, catalog: Catalog, max_area_share: float) -> None:
    """``POST /api/parcel`` (JSON or multipart; ``?format=csv|geojson`` for the downloads)."""
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    from . import parcel as parcel_mod

    @app.post("/api/parcel", summary="Account of a parcel", tags=["parcel"],
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": ParcelRequest.model_json_schema()},
                  "multipart/form-data": {"schema": UPLOAD_SCHEMA}}}},
              responses={200: {"content": {"application/json": {}, "text/csv": {}, "application/geo+json": {}}},
                         404: {"description": "unknown run"}, 413: {"description": "upload over the size limit"},
                         415: {"description": "neither JSON nor multipart"},
                         422: {"description": "not a polygon, no CRS, invalid geometry, outside the run, too "
                                              "large, unreadable file (``code`` says which)"}})
    async def parcel(request: Request,
                     format: str = Query("json", pattern="^(json|csv|geojson)$",
                                         description="json (default), csv or geojson (downloads)")):
        """Area (km2), every service's physical quantity and value (yuan/a), GEP-R, EPV, ECV and GEP of a
        parcel, with exact coverage fractions: the numbers the run's tables (``gep vep``) give for the same
        polygon. Body: JSON ``{"run", "geometry", "crs", "make_valid"}`` or a multipart upload (``run``,
        ``file``, ``make_valid``). Parcels over the server's ``max_area_share`` of the run's area are refused."""
        run, geometry, crs, make_valid, source, pre = await _parcel_input(request, catalog)
        acc = await run_in_threadpool(_account, parcel_mod.parcel_account, run, geometry, crs, make_valid,
                                      max_area_share)
        acc["warnings"] = pre + acc["warnings"]
        acc["source"] = source
        if format == "csv":
            return Response(parcel_mod.account_csv(acc), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="parcel_{run.id}.csv"'})
        if format == "geojson":
            return Response(json.dumps(parcel_mod.account_geojson(acc), ensure_ascii=False),
                            media_type="application/geo+json",
                            headers={"Content-Disposition": f'attachment; filename="parcel_{run.id}.geojson"'})
        return JSONResponse(_finite(acc))


async def _parcel_input(request, catalog: Catalog):
    """The run and parcel of a ``POST /api/parcel`` request: (run, geometry, crs, make_valid, source,
    warnings); ``geometry`` is a GeoJSON mapping (JSON body) or the list of an uploaded file's geometries.

    Raises
    ------
    NotFound
        Unknown run.
    ParcelError
        Not JSON, not a form with a file, unreadable file (:func:`~gep_raster.serve.parcel.read_parcel_file`),
        unsupported content type (415).
    """
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile

    from .parcel import read_parcel_file

    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=20)
        except ParcelError:
            raise
        except Exception as exc:
            raise ParcelError(f"cannot read the multipart form ({type(exc).__name__}: {_clip(exc, 200)})",
                              "bad_request") from None
        run = catalog.get(form.get("run"))
        up = form.get("file")
        if not isinstance(up, UploadFile):
            raise ParcelError("the form has no 'file' (GeoJSON, GeoPackage or zipped shapefile)", "bad_request")
        data = await up.read()
        make_valid = str(form.get("make_valid", "")).lower() in ("1", "true", "on", "yes")
        geoms, crs, info = await run_in_threadpool(read_parcel_file, data, up.filename)
        return run, geoms, crs, make_valid, {"upload": info["filename"], "format": info["format"]}, info["warnings"]
    if ctype not in ("application/json", "application/geo+json", ""):
        raise ParcelError(f"unsupported content type '{_clip(ctype)}': send application/json or "
                          "multipart/form-data", "bad_request", 415)
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError as exc:
        raise ParcelError(f"the body is not JSON ({exc})", "bad_request") from None
    if not isinstance(body, dict):
        raise ParcelError("the body must be a JSON object {\"run\", \"geometry\", \"crs\", \"make_valid\"}",
                          "bad_request")
    run = catalog.get(body.get("run"))
    try:
        req = ParcelRequest.model_validate(body)
    except Exception as exc:
        raise ParcelError(f"bad request: {_clip(exc, 300)}", "bad_request") from None
    return run, req.geometry, req.crs or "EPSG:4326", req.make_valid, {"geojson": True}, []


def _account(fn, run: ServedRun, geometry, crs, make_valid: bool, max_area_share: float) -> dict:
    """``fn`` (:func:`~gep_raster.serve.parcel.parcel_account`) on the run; an uploaded file's geometries become a
    GeoSeries with the file's CRS."""
    if isinstance(geometry, list):
        import geopandas as gpd

        geometry = gpd.GeoSeries(geometry, crs=crs)
        crs = geometry.crs
    return fn(run.info, geometry, crs, make_valid=make_valid, max_area_share=max_area_share, run_id=run.id)


def _finite(obj):
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
