"""``gep serve``: a local web application over finished runs: map, polygon accounts, parcel queries, JSON API.

``gep serve RUN_DIR [RUN_DIR ...] [--host 127.0.0.1] [--port 8000]`` serves, on the local machine by default:

* a slippy map (Leaflet, vendored: works offline) of the GEP-R raster and every service raster of each run, as
  XYZ PNG tiles read from the run's COGs with rio-tiler (:mod:`gep_raster.serve.tiles`), with a legend; the
  polygon layers of the run (``tables/<layer>.gpkg``) with their account rows on click;
* a parcel query: draw a polygon on the map or upload a GeoJSON, GeoPackage or zipped shapefile, and get its area,
  every service's physical quantity and value, GEP-R and GEP, with exact coverage fractions
  (:func:`gep_raster.serve.parcel.parcel_account`: the numbers of the run's zonal tables, i.e. of ``gep vep``, for
  the same polygon), downloadable as CSV and GeoJSON;
* a JSON API (:mod:`gep_raster.serve.app`; OpenAPI docs at ``/docs``): ``GET /api/runs``,
  ``GET /api/runs/{run_id}/layers/{layer}``, ``POST /api/parcel``, ``GET /tiles/{run_id}/{raster}/{z}/{x}/{y}.png``.

Limits (documented in the API): uploads up to 50 MB (:data:`~gep_raster.serve.parcel.MAX_UPLOAD_BYTES`; HTTP 413
above), parcels up to 10 % of the run's area (:data:`~gep_raster.serve.parcel.MAX_AREA_SHARE`; HTTP 422 above:
larger areas belong in a run layer). The server reads only the run folders it was given (ids and raster names are
looked up, never used as paths).

Deployment behind another ASGI server: ``GEP_SERVE_RUNS=out/a:out/b uvicorn --factory
gep_raster.serve:app_from_env`` (``os.pathsep``-separated folders).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

__all__ = ["create_app", "app_from_env", "register", "ENV_RUNS"]

#: environment variable read by :func:`app_from_env`: run folders separated by ``os.pathsep``
ENV_RUNS = "GEP_SERVE_RUNS"


def create_app(run_dirs, *, max_area_share: float | None = None, max_upload_bytes: int | None = None):
    """The FastAPI application serving finished run folders.

    Parameters
    ----------
    run_dirs : sequence of path-like
        Output folders of ``gep run``; run ids are their index (``0``, ``1``...) and an id made from the run's name
        (``sample``; ``sample-2`` for a second run of the same name).
    max_area_share : float, optional
        Largest parcel accepted, as a share of the run's grid area (default 0.10).
    max_upload_bytes : int, optional
        Largest request body accepted, bytes (default 50 MB).

    Returns
    -------
    fastapi.FastAPI

    Raises
    ------
    ConfigError
        No run folder.
    InputError
        A folder is not a finished run (no or unreadable ``manifest.json``, a listed raster missing).
    """
    from .app import build_app
    from .parcel import MAX_AREA_SHARE, MAX_UPLOAD_BYTES

    return build_app(run_dirs, max_area_share=MAX_AREA_SHARE if max_area_share is None else float(max_area_share),
                     max_upload_bytes=MAX_UPLOAD_BYTES if max_upload_bytes is None else int(max_upload_bytes))


def app_from_env():
    """:func:`create_app` of the folders in ``$GEP_SERVE_RUNS`` (``os.pathsep``-separated), for
    ``uvicorn --factory gep_raster.serve:app_from_env``; ``GEP_SERVE_MAX_AREA_SHARE`` and
    ``GEP_SERVE_MAX_UPLOAD_BYTES`` override the limits.

    Raises
    ------
    ConfigError
        ``$GEP_SERVE_RUNS`` unset or empty.
    """
    from ..errors import ConfigError

    dirs = [d for d in os.environ.get(ENV_RUNS, "").split(os.pathsep) if d]
    if not dirs:
        raise ConfigError(f"set {ENV_RUNS} to the run folders to serve ({os.pathsep!r}-separated)")
    share = os.environ.get("GEP_SERVE_MAX_AREA_SHARE")
    upload = os.environ.get("GEP_SERVE_MAX_UPLOAD_BYTES")
    return create_app(dirs, max_area_share=float(share) if share else None,
                      max_upload_bytes=int(upload) if upload else None)


def register(app) -> None:
    """Add ``gep serve RUN_DIR [RUN_DIR ...] [--host 127.0.0.1] [--port 8000]`` to the typer ``app``."""
    import typer

    from ..cli_common import (command, debug_option, log_file_option, log_json_option, log_level_option,
                              quiet_option, verbose_option)

    @app.command("serve")
    def serve(run_dirs: list[Path] = typer.Argument(..., help="Output folders of finished runs."),
              host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (default: this machine "
                                                                   "only; 0.0.0.0 exposes it to the network)."),
              port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
              max_area_share: float = typer.Option(0.10, "--max-area-share", min=0.0,
                                                   help="Largest parcel, as a share of the run's area."),
              max_upload_mb: float = typer.Option(50.0, "--max-upload-mb", min=0.0, help="Largest upload, MB."),
              quiet: bool = quiet_option(), verbose: int = verbose_option(),
              log_level: Optional[str] = log_level_option(), log_file: Optional[Path] = log_file_option(),
              log_json: bool = log_json_option(), debug: bool = debug_option()):
        """Serve RUN_DIR(s) as a local web map with parcel queries and a JSON API (docs at /docs)."""
        with command(quiet, verbose, log_level, log_file, log_json, debug) as out:
            import uvicorn

            web = create_app(run_dirs, max_area_share=max_area_share,
                             max_upload_bytes=int(max_upload_mb * 1024 * 1024))
            runs = web.state.catalog.runs
            out.result(f"serving {len(runs)} run(s) on http://{host}:{port}/ (API docs: /docs); Ctrl-C stops")
            for r in runs:
                out.detail(f"  {r.index}: {r.id} ({r.info.manifest.get('run_name')}, "
                           f"{r.info.manifest.get('accounting_year')}) <- {r.info.path}")
            uvicorn.run(web, host=host, port=port, log_config=None,
                        log_level="info" if verbose else "warning", access_log=verbose >= 1)
