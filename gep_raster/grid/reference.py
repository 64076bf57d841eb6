"""The reference grid: one CRS, one affine transform, one shape for every raster of a run.

A :class:`RefGrid` is immutable and hashable (like odc-geo's ``GeoBox``). Every input is
brought onto it (see :mod:`gep_raster.grid.io_read`); every output is written on it. Grid
equality uses a tolerance relative to the pixel size, because real data carry float noise
(the InVEST Gura land cover stores its pixel size as 15.000000000000014 against the DEM's 15.0).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from ..errors import CRSError, GridMismatchError, RasterError

#: Default relative tolerance for grid equality (fraction of a pixel).
GRID_TOLERANCE = 1e-6


@dataclass(frozen=True)
class RefGrid:
    """A north-up raster grid.

    Attributes
    ----------
    crs : rasterio.crs.CRS
        Coordinate reference system. Projected CRSs must be in metres; geographic CRSs are
        handled with true (ellipsoidal) pixel areas per row.
    transform : affine.Affine
        Pixel-corner affine transform (no rotation).
    width, height : int
        Number of columns and rows.
    """

    crs: CRS
    transform: Affine
    width: int
    height: int

    def __post_init__(self):
        t = self.transform
        if t.b != 0 or t.d != 0:
            raise GridMismatchError(f"rotated grids are not supported (transform {tuple(t)[:6]})")
        if t.a <= 0 or t.e >= 0:
            raise GridMismatchError(
                f"grid must be north-up with positive pixel width (transform {tuple(t)[:6]})")
        if self.crs is None:
            raise CRSError("the reference grid has no CRS; set one on the reference raster")

    # -- construction ---------------------------------------------------------------
    @classmethod
    def from_raster(cls, path) -> "RefGrid":
        """Grid of a raster file. Raises :class:`RasterError` if it cannot be opened,
        :class:`CRSError` if it has no CRS."""
        try:
            with rasterio.open(path) as ds:
                if ds.crs is None:
                    raise CRSError(f"{path}: raster has no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:XXXX)")
                return cls(ds.crs, ds.transform, ds.width, ds.height)
        except rasterio.errors.RasterioIOError as exc:
            raise RasterError(f"{path}: cannot open raster ({exc})") from None

    # -- properties -----------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def res(self) -> tuple[float, float]:
        """(x, y) pixel size, both positive, in CRS units."""
        return (self.transform.a, -self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        left, top = self.transform.c, self.transform.f
        return (left, top + self.transform.e * self.height, left + self.transform.a * self.width, top)

    @property
    def is_geographic(self) -> bool:
        return bool(self.crs.is_geographic)

    @cached_property
    def row_pixel_area_m2(self) -> np.ndarray:
        """True area of one pixel for each row, float64 array of shape (height,), in m2.

        Projected CRS: |a·e| × (linear unit in metres)²; constant over rows.
        Geographic CRS: the area of the geodesic cell on the CRS's ellipsoid
        (pyproj ``Geod.polygon_area_perimeter``), which varies with latitude.
        """
        if not self.is_geographic:
            unit = self.crs.linear_units_factor[1] if self.crs.linear_units_factor else 1.0
            return np.full(self.height, abs(self.transform.a * self.transform.e) * unit * unit)
        from pyproj import CRS as PCRS, Geod

        ell = PCRS.from_user_input(self.crs.to_wkt()).ellipsoid
        geod = Geod(a=ell.semi_major_metre, b=ell.semi_minor_metre)
        left = self.transform.c
        right = left + self.transform.a
        out = np.empty(self.height)
        for r in range(self.height):
            top = self.transform.f + self.transform.e * r
            bot = top + self.transform.e
            area, _ = geod.polygon_area_perimeter([left, right, right, left], [bot, bot, top, top])
            out[r] = abs(area)
        return out

    def pixel_area_m2(self, row0: int = 0, row1: int | None = None) -> np.ndarray:
        """Pixel area (m2) as a float64 column of shape (row1-row0, 1), broadcastable over a block."""
        row1 = self.height if row1 is None else row1
        return self.row_pixel_area_m2[row0:row1, None]

    # -- comparisons ----------------------------------------------------------------
    def almost_equals(self, other: "RefGrid", tol: float = GRID_TOLERANCE) -> bool:
        """True when CRS, shape and transform agree within ``tol`` × pixel size."""
        if self.shape != other.shape or self.crs != other.crs:
            return False
        px = min(self.res)
        return all(abs(a - b) <= tol * px for a, b in zip(tuple(self.transform)[:6], tuple(other.transform)[:6]))

    def window_transform(self, window: Window) -> Affine:
        return rasterio.windows.transform(window, self.transform)

    def block_windows(self, chunk: int):
        """Yield (row0, row1, col0, col1) for square chunks of ``chunk`` pixels, row-major."""
        for r0 in range(0, self.height, chunk):
            for c0 in range(0, self.width, chunk):
                yield r0, min(r0 + chunk, self.height), c0, min(c0 + chunk, self.width)

    def describe(self) -> dict:
        """JSON-friendly description for manifests."""
        return {
            "crs": self.crs.to_string(),
            "transform": list(tuple(self.transform)[:6]),
            "width": self.width,
            "height": self.height,
            "res": list(self.res),
            "geographic": self.is_geographic,
        }
