"""The report's figures: GEP-R, GEP and per-service density maps (yuan/km²/a), the value-by-service chart and the
Δ GEP-R map of a change folder, drawn by :mod:`gep_raster.outputs.figures` and returned as data URIs (lossless
WebP of the PNG when Pillow has WebP, else the PNG).

Each map has a colour bar with its unit, a scale bar, a north arrow and the outlines of the run's polygon layers
(their GeoPackages in ``tables/``). Rasters are read averaged down to at most :data:`MAP_PX` pixels a side (an
overview when one fits, :func:`gep_raster.pipeline.figures.read_decimated`); a displayed pixel's density is the
mean of the run's pixels it covers divided by their area (true areas per row).
"""
from __future__ import annotations

import base64
import logging
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger("gep_raster")

__all__ = ["report_figures", "data_uri", "embed_png", "MAP_PX"]

#: longest side, in pixels, of the rasters drawn in the report's maps
MAP_PX = 1200


def data_uri(data: bytes, mime: str = "image/png") -> str:
    """``data:<mime>;base64,...`` of image bytes (an image embedded in the HTML: no file, no URL)."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def embed_png(png: bytes) -> tuple[str, int, str]:
    """A figure's PNG as a data URI, re-encoded as lossless WebP when Pillow can and that is smaller (about half
    the bytes of a map's PNG, every pixel unchanged; every current browser and Chromium's PDF print read it).

    Returns
    -------
    (str, int, str)
        The data URI, the image bytes, the MIME type (``image/webp`` or ``image/png``).
    """
    import io

    try:
        from PIL import Image, features

        if not features.check("webp"):
            raise ImportError("no WebP support in Pillow")
        with Image.open(io.BytesIO(png)) as im:
            buf = io.BytesIO()
            im.save(buf, format="WEBP", lossless=True, method=4)
        webp = buf.getvalue()
    except Exception:  # Pillow without WebP, or an unreadable image: keep the PNG
        webp = b""
    if webp and len(webp) < len(png):
        return data_uri(webp, "image/webp"), len(webp), "image/webp"
    return data_uri(png), len(png), "image/png"


def _layers(run, names=None):
    """(GeoDataFrames, names) of the run's layers with a GeoPackage (``names``: a subset, in run order)."""
    import geopandas as gpd

    gdfs, labels = [], []
    for name, info in run.layers.items():
        if info.get("gpkg") is None or (names is not None and name not in names):
            continue
        try:
            gdfs.append(gpd.read_file(info["gpkg"]))
            labels.append(name)
        except Exception as exc:  # a map without outlines is still a map
            log.warning("report: outlines of layer %s not drawn (%s)", name, exc)
    return gdfs, labels


def _read(path: Path, grid):
    """(amount per displayed pixel as if it were a full-resolution pixel scaled to the displayed one, its grid)."""
    from ..pipeline.figures import decimated_grid, read_decimated

    arr = np.asarray(read_decimated(path, MAP_PX), dtype=np.float64)
    g = decimated_grid(grid, arr.shape)
    # mean of the run's pixels x pixels per displayed pixel: the displayed grid's own row areas then give the density
    return arr * (grid.width / arr.shape[1]) * (grid.height / arr.shape[0]), g


def _map(spec: dict, grid, tmp: Path, fl: dict, layers) -> dict:
    from ..outputs.figures import plot_value_map

    arr, g = _read(spec["path"], grid)
    out = tmp / f"{spec['id']}.png"
    plot_value_map(arr, g, out, title=spec["fig_title"], quantity=spec["quantity"], polygons=layers[0],
                   polygon_labels=layers[1], lang=fl["lang"], cmap=spec.get("cmap", "viridis"),
                   diverging=spec.get("diverging", False), fig_width_in=spec.get("width_in", 7.5),
                   png_compress_level=1)
    src, n, mime = embed_png(out.read_bytes())
    return {"id": spec["id"], "title": spec["title"], "caption": spec["caption"], "src": src, "bytes": n,
            "mime": mime, "kind": spec.get("kind", "map")}


def _bars(ctx_services: list[dict], econ: list[tuple[str, float]], tmp: Path, fl: dict, title_html: str,
          run_name: str) -> dict:
    from ..outputs.figures import plot_value_by_service
    from .labels import service_name

    vals = {service_name(s["service"], fl["lang"]): s["value"] for s in ctx_services}
    vals.update({service_name(k, fl["lang"]): v for k, v in econ})
    title = (fl["title_gep"] if econ else fl["title_services"]).format(name=run_name)
    out = plot_value_by_service(vals, tmp / "bars.png", title=title, lang=fl["lang"])
    src, n, mime = embed_png(Path(out).read_bytes())
    return {"id": "chart-services", "title": title_html, "caption": "", "src": src, "bytes": n, "mime": mime,
            "kind": "chart"}


def report_figures(run, lang: str, services: list[dict], *, change=None) -> dict:
    """Every figure of the report, as data URIs.

    Parameters
    ----------
    run : gep_raster.analysis.change.RunInfo
        The run.
    lang : {"en", "zh"}
        Report language; the figure labels follow it when a CJK font is installed (else English, see
        :func:`gep_raster.outputs.figures.figure_labels`).
    services : list of dict
        The report's service rows (``service``, ``value`` in yuan/a), for the chart.
    change : dict, optional
        The report's change section (``path``: the change folder, ``run_a``/``run_b`` names) for the Δ GEP-R map.

    Returns
    -------
    dict
        ``maps`` (GEP-R, GEP, each service, EPV, ECV, Δ GEP-R), ``chart`` (value by service) and ``figure_lang``
        (the language the figure labels were drawn in); each figure: ``id``, ``title``, ``caption``, ``src``
        (PNG data URI), ``bytes``.

    Raises
    ------
    gep_raster.outputs.io_write.OutputError
        A PNG cannot be written to the temporary folder.
    """
    from ..outputs.figures import figure_labels, layer_label
    from .labels import labels, service_name

    t, fl = labels(lang), figure_labels(lang)
    flang = fl["lang"]
    all_layers = _layers(run)
    admin = _layers(run, [n for n, i in run.layers.items() if i.get("role", "admin") == "admin"])
    names = ", ".join(layer_label(n, lang) for n in all_layers[1]) or t["none"]
    caption = t["map_caption"].format(layers=names)
    name = run.manifest.get("run_name", "")
    specs = [_spec("gep_r", run.rasters["gep_r_yuan"]["path"], t["map_gep_r"], caption, flang, name, all_layers)]
    if "gep_yuan" in run.rasters:
        specs.append(_spec("gep", run.rasters["gep_yuan"]["path"], t["map_gep"], caption, flang, name, all_layers))
    for k in list(run.value_keys) + [k for k in ("provisioning_yuan", "cultural_yuan") if k in run.rasters]:
        s = run.rasters[k]["service"]
        specs.append(_spec(s, run.rasters[k]["path"], t["map_service"].format(name=service_name(s, lang)), caption,
                           flang, name, admin, width_in=5.0))
    if change is not None and change.get("delta_raster"):
        title = t["map_delta"].format(a=change["run_a"]["run_name"], b=change["run_b"]["run_name"])
        specs.append({**_spec("delta_gep_r", Path(change["delta_raster"]), title, caption, flang, name, all_layers),
                      "quantity": "ΔGEP-R" if flang == "en" else "GEP-R 变化", "cmap": "RdBu", "diverging": True,
                      "fig_title": f"ΔGEP-R, {change['run_a']['run_name']} → {change['run_b']['run_name']}"})
    econ = [(k[:-5], float((run.manifest.get("totals") or {}).get(k, {}).get("sum") or 0.0))
            for k in ("provisioning_yuan", "cultural_yuan") if k in run.rasters]
    with tempfile.TemporaryDirectory(prefix="gep-report-") as d:
        tmp = Path(d)
        maps = [_map(sp, run.grid, tmp, fl, sp["layers"]) for sp in specs]
        chart = _bars(services, econ, tmp, fl, t["map_bars"], name)
    return {"maps": maps, "chart": chart, "figure_lang": flang}


def _spec(service: str, path, title: str, caption: str, flang: str, run_name: str, layers, width_in: float = 7.5):
    from .labels import service_name

    qty = service_name(service, flang) if service not in ("gep_r", "gep") else service_name(service, "en")
    sep = "，" if flang == "zh" else ", "
    return {"id": f"map-{service}", "path": Path(path), "title": title, "caption": caption, "quantity": qty,
            "fig_title": f"{qty}{sep}{run_name}", "layers": layers, "width_in": width_in}
