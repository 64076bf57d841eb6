"""XYZ PNG tiles (Web Mercator, 256 px) of a run's rasters, read from its COGs with rio-tiler.

* a tile is ``rio_tiler.io.Reader(cog).tile(x, y, z)`` (WebMercatorQuad, the grid of Leaflet's default
  ``EPSG:3857`` map; rio-tiler reads the overview level that fits the zoom and warps to the tile);
* colours: the values are rescaled linearly from the raster's 2nd to its 98th percentile onto 0-255 (clipped),
  then mapped through rio-tiler's ``viridis`` colormap; NaN / nodata and pixels outside the raster are
  transparent. The percentiles are computed once per raster (on ``Reader.preview(max_size=1024)``: the COG's
  overview, never the whole full-resolution raster) and cached;
* a tile that does not touch the raster (``TileOutsideBounds``) is a fully transparent 256 × 256 PNG (HTTP 200),
  so a map shows nothing there and logs no error.

Source: rio-tiler (https://cogeotiff.github.io/rio-tiler/), the OGC Two Dimensional Tile Matrix Set
``WebMercatorQuad`` (morecantile); viridis colormap (van der Walt & Smith, matplotlib).
"""
from __future__ import annotations

import io
import threading
from functools import lru_cache

import numpy as np

__all__ = ["TileRenderer", "transparent_png", "TILE_SIZE", "COLORMAP", "PERCENTILES"]

TILE_SIZE = 256
#: colormap of every raster (rio-tiler's name)
COLORMAP = "viridis"
#: percentiles (of the valid pixels of the raster's overview) mapped to the ends of the colormap
PERCENTILES = (2.0, 98.0)
#: highest zoom served (Web Mercator ~0.04 m/px at the equator)
MAX_ZOOM = 22


@lru_cache(maxsize=1)
def transparent_png() -> bytes:
    """A fully transparent 256 × 256 RGBA PNG (the answer for a tile outside a raster)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGBA", (TILE_SIZE, TILE_SIZE), (0, 0, 0, 0)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


@lru_cache(maxsize=1)
def _lut() -> np.ndarray:
    """(256, 4) uint8 RGBA lookup table of :data:`COLORMAP`."""
    from rio_tiler.colormap import cmap

    cm = cmap.get(COLORMAP)
    lut = np.zeros((256, 4), np.uint8)
    for i in range(256):
        lut[i] = cm[i]
    lut[:, 3] = 255
    return lut


class TileRenderer:
    """Renders PNG tiles of single-band rasters with a colormap and a per-raster rescale (module docstring).

    Thread-safe: the statistics cache is guarded by a lock; each tile opens its own ``Reader`` (GDAL datasets are
    not shared between threads).
    """

    def __init__(self):
        self._stats: dict[str, dict] = {}
        self._lock = threading.Lock()

    def stats(self, path) -> dict:
        """Rescale range of a raster, computed once.

        Parameters
        ----------
        path : path-like
            A single-band COG (NaN or its nodata value = no data).

        Returns
        -------
        dict
            ``min``, ``max`` (the 2nd and 98th percentiles of the valid pixels of the overview read by
            ``Reader.preview(max_size=1024)``, in the raster's unit; ``max > min``), ``percentiles``
            ``[2, 98]``, ``valid_fraction`` (share of valid pixels in that preview), ``colormap``.
        """
        key = str(path)
        with self._lock:
            if key in self._stats:
                return self._stats[key]
        from rio_tiler.io import Reader

        with Reader(key) as src:
            img = src.preview(max_size=1024)
        a = np.ma.masked_invalid(img.array[0]).compressed().astype(np.float64)
        if a.size:
            lo, hi = (float(v) for v in np.percentile(a, PERCENTILES))
        else:
            lo, hi = 0.0, 1.0
        if not hi > lo:
            hi = lo + (abs(lo) * 1e-6 or 1.0)
        st = {"min": lo, "max": hi, "percentiles": list(PERCENTILES),
              "valid_fraction": float(a.size / max(img.array[0].size, 1)), "colormap": COLORMAP}
        with self._lock:
            self._stats[key] = st
        return st

    @staticmethod
    def colors(n: int = 11) -> list[str]:
        """``n`` colours evenly along the colormap, as CSS hex strings (for a legend's gradient)."""
        lut = _lut()
        return ["#%02x%02x%02x" % tuple(int(c) for c in lut[int(round(i * 255 / (n - 1))), :3]) for i in range(n)]

    def tile(self, path, z: int, x: int, y: int) -> bytes:
        """The PNG of tile (z, x, y) of a raster.

        Parameters
        ----------
        path : path-like
            A single-band COG of the run.
        z, x, y : int
            XYZ tile indices (WebMercatorQuad, y from the top), 0 <= x, y < 2**z.

        Returns
        -------
        bytes
            A 256 × 256 RGBA PNG; transparent where the raster has no data and for a tile outside the raster.
        """
        from PIL import Image
        from rio_tiler.errors import TileOutsideBounds
        from rio_tiler.io import Reader

        st = self.stats(path)
        try:
            with Reader(str(path)) as src:
                img = src.tile(x, y, z, tilesize=TILE_SIZE)
        except TileOutsideBounds:
            return transparent_png()
        arr = img.array[0]
        data = np.ma.getdata(arr).astype(np.float64)
        valid = ~np.ma.getmaskarray(arr) & np.isfinite(data)
        if not valid.any():
            return transparent_png()
        scaled = np.zeros(data.shape, np.float64)
        np.divide(data - st["min"], st["max"] - st["min"], out=scaled, where=valid)
        idx = np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)
        rgba = _lut()[idx]
        rgba[~valid, 3] = 0
        buf = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buf, format="PNG", compress_level=6)
        return buf.getvalue()
