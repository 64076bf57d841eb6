"""Stage ``figures``: the GEP-R map (from the written raster's overview, with the polygon layers) and the value per
service, drawn with matplotlib's object API (:mod:`gep_raster.outputs.figures`). :func:`start` draws them on a thread while
the other rasters are published; the stage waits for that thread.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..grid import RefGrid
from .state import RunState


def draw(st: RunState) -> list[dict]:
    """Write ``figures/gep_r_map.png`` and ``figures/value_by_service.png``; returns their manifest records.

    The map's key names each polygon layer of the run by its name in the configuration. Labels are in the
    language of ``cfg.output.lang`` (``"en"`` or ``"zh"``; ``"en"``
    otherwise); a bad value raises ValueError."""
    from ..outputs.figures import figure_labels, plot_gep_r_map, plot_value_by_service

    cfg, grid = st.cfg, st.grid
    lang = cfg.output.lang  # label language, "en" or "zh" (English without a CJK font)
    text = figure_labels(lang)
    fig_dir = st.out_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    gep = read_decimated(st.out_dir / st.rel_path["gep_r_yuan"], 2000)
    layers = list(st.layers.values())
    plot_gep_r_map(gep, decimated_grid(grid, gep.shape), fig_dir / "gep_r_map.png",
                   title=text["title_map"].format(name=cfg.name),
                   polygons=[layer.gdf for layer in layers], polygon_labels=[layer.name for layer in layers],
                   pixel_area_m2=float(np.mean(grid.row_pixel_area_m2)), lang=lang)
    vals = {s.label: st.totals[s.value_key] for s in st.model.services}
    title = text["title_services"].format(name=cfg.name)
    if st.econ is not None:  # EPV and ECV beside the regulating services
        vals.update(st.econ.plot_values())
        title = text["title_gep"].format(name=cfg.name)
    plot_value_by_service(vals, fig_dir / "value_by_service.png", title=title, lang=lang)
    return [{"path": "figures/gep_r_map.png", "service": "gep_r", "kind": "figure", "unit": "yuan/ha/a"},
            {"path": "figures/value_by_service.png", "service": "all", "kind": "figure", "unit": "yuan/a"}]


def start(st: RunState) -> None:
    """Draw the figures on a thread (GEP-R raster published, totals known); sets ``figure_job``."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="gep-figures")
    st.figure_job = pool.submit(draw, st)
    pool.shutdown(wait=False)


def figures(st: RunState) -> None:
    """Stage ``figures``: waits for the figure thread (or draws now, for a run whose rasters were up to date) and
    adds the figures to the manifest's outputs."""
    st.manifest_outputs.extend(st.figure_job.result() if st.figure_job is not None else draw(st))


def read_decimated(path: Path, max_side: int) -> np.ndarray:
    """Band 1 of ``path`` averaged down to at most ``max_side`` pixels a side (an overview when one fits)."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(path) as ds:
        f = max(1, int(np.ceil(max(ds.width, ds.height) / max_side)))
        # an overview coarser than max_side but at least half of it: read that (GDAL reads full resolution
        # for any size finer than the finest overview; 8 s instead of 0.1 s at 16384² for the map figure)
        ovs = [o for o in ds.overviews(1) if max_side // 2 <= max(ds.width, ds.height) / o <= max_side]
        if ovs and min(ovs) > f:
            f = min(ovs)
        shape = (int(np.ceil(ds.height / f)), int(np.ceil(ds.width / f)))
        if f == 1:
            return ds.read(1)
        return ds.read(1, out_shape=shape, resampling=Resampling.average)


def decimated_grid(grid: RefGrid, shape) -> RefGrid:
    """The grid of ``grid``'s extent with ``shape`` (rows, cols) pixels."""
    from affine import Affine

    h, w = shape
    sx = grid.width / w
    sy = grid.height / h
    t = grid.transform
    return RefGrid(grid.crs, Affine(t.a * sx, 0, t.c, 0, t.e * sy, t.f), w, h)
