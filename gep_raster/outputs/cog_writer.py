"""Cloud-Optimized GeoTIFF written once, from tiles compressed where they are computed.

GDAL's COG driver copies a finished raster (it cannot take blocks as they come), so a run used to write every
output twice: block tiles first, then the COG made from their mosaic. This module writes the COG's container
itself, in GDAL's COG layout (``LAYOUT=COG`` as GDAL reports it, and valid for rio-cogeo's and GDAL's
validators):

* header, GDAL's structural-metadata "ghost" area (``LAYOUT=IFDS_BEFORE_DATA``, ``BLOCK_ORDER=ROW_MAJOR``,
  ``BLOCK_LEADER=SIZE_AS_UINT4``, ``BLOCK_TRAILER=LAST_4_BYTES_REPEATED``), then the IFDs of the full-resolution
  image and of every overview, then the tile data from the smallest overview to the full resolution, tiles in
  row-major order, each with its 4-byte size before it and its last 4 bytes repeated after it;
* tiles of :data:`TILE` px, DEFLATE (zlib stream, libdeflate through the ``deflate`` package) with the
  floating-point predictor (TIFF predictor 3: bytes of a row split into planes, most significant first, then
  differenced), float32, NaN nodata;
* overviews by 2 until the long side is at most one tile (GDAL's ``OVERVIEWS=AUTO``), each the mean of the
  non-NaN pixels of every 2 x 2 cell of the level above (:func:`gep_raster.kernels.reduce.block_mean`);
* the georeferencing and metadata tags (GeoKeys, pixel scale, tie point or transformation, ``GDAL_METADATA``
  with the dataset tags, band description and ``units``, ``GDAL_NODATA``) taken verbatim from a 1 x 1 GeoTIFF
  that GDAL writes with the same CRS, transform and metadata (:func:`geo_tags`), so the CRS is encoded by
  GDAL's own rules.

The tiles are encoded by :func:`encode_tile` (a pure function of the pixels) wherever the caller computes them
(:class:`gep_raster.outputs.block_store.BlockStore` does it on the block threads), and :func:`assemble` lays
them out. Specification: TIFF 6.0 (sections 2, 14 "Differencing predictor", 15 "Tiled images"), Adobe
Photoshop TIFF technical note 3 (predictor 3), GeoTIFF 1.1 (OGC 19-008r4), GDAL's COG driver documentation
("File format details").
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..errors import GepError

__all__ = ["TILE", "CogLevels", "encode_tile", "encode_tiles", "frame", "geo_tags", "tile_geo_tags", "write_geotiff",
           "assemble", "read_ifd", "GHOST"]

#: Tile size of the COG (px), as GDAL's COG driver default (``BLOCKSIZE=512``).
TILE = 512

#: GDAL's structural metadata (the COG driver writes exactly these lines; GDAL reads them back as
#: ``IMAGE_STRUCTURE`` ``LAYOUT=COG``).
_GHOST_BODY = ("LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\n"
               "BLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n ")
GHOST = (f"GDAL_STRUCTURAL_METADATA_SIZE={len(_GHOST_BODY):06d} bytes\n" + _GHOST_BODY).encode("ascii")

#: Tags copied from GDAL's template GeoTIFF: ModelPixelScale, ModelTiepoint, ModelTransformation,
#: GeoKeyDirectory, GeoDoubleParams, GeoAsciiParams, GDAL_METADATA, GDAL_NODATA.
GEO_TAGS = (33550, 33922, 34264, 34735, 34736, 34737, 42112, 42113)

#: Files whose tile data (with leaders and trailers) exceed this size are written as BigTIFF (GDAL's
#: ``BIGTIFF=IF_NEEDED`` decides by the uncompressed size; here the real size is known before writing).
BIGTIFF_ABOVE = 2**32 - 2**26

_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}


class CogError(GepError):
    """A COG cannot be assembled (missing tile, wrong tile count)."""


# ---------------------------------------------------------------------------------------------------- levels
def halved_shapes(height: int, width: int, n: int) -> list[tuple[int, int]]:
    """(rows, cols) of a raster and of its n - 1 halvings (each side halved, rounded up): the shapes of the
    levels of a pyramid, and of a block's part of each level when the block starts on a multiple of 2^(n-1)."""
    h, w = int(height), int(width)
    out = [(h, w)]
    for _ in range(1, n):
        h, w = -(-h // 2), -(-w // 2)
        out.append((h, w))
    return out


@dataclass(frozen=True)
class CogLevels:
    """Pyramid of a ``height`` x ``width`` raster: level 0 the full resolution, level k the 2^k overview.

    ``shapes[k]`` is (rows, cols) of level k (ceil of the half of level k - 1), ``tiles[k]`` its number of tile
    rows and columns; levels are added while the long side of the last one exceeds :data:`TILE` (GDAL's
    ``OVERVIEWS=AUTO``)."""

    height: int
    width: int
    tile: int = TILE

    @property
    def shapes(self) -> list[tuple[int, int]]:
        h, w = int(self.height), int(self.width)
        n = 1
        while max(h, w) > self.tile:
            h, w = -(-h // 2), -(-w // 2)
            n += 1
        return halved_shapes(self.height, self.width, n)

    @property
    def tiles(self) -> list[tuple[int, int]]:
        t = self.tile
        return [(-(-h // t), -(-w // t)) for h, w in self.shapes]

    def __len__(self) -> int:
        return len(self.shapes)


# ---------------------------------------------------------------------------------------------------- tiles
def _predict_float(t: np.ndarray) -> np.ndarray:
    """TIFF predictor 3 of a float32 tile: per row, bytes in planes (most significant first), differenced."""
    h, w = t.shape
    planes = np.ascontiguousarray(t, dtype="<f4").view(np.uint8).reshape(h, w, 4)[:, :, ::-1]
    b = np.ascontiguousarray(planes.transpose(0, 2, 1)).reshape(h, 4 * w)
    out = np.empty_like(b)
    out[:, 0] = b[:, 0]
    np.subtract(b[:, 1:], b[:, :-1], out=out[:, 1:])
    return out


def encode_tile(tile: np.ndarray, level: int = 6, size: int = TILE) -> bytes:
    """One COG tile: float32 pixels, padded to ``size`` x ``size`` with zeros, predictor 3, DEFLATE.

    Parameters
    ----------
    tile : numpy.ndarray, shape (h, w) with h, w <= size, float32 (NaN = nodata)
        Pixels of the tile (partial at the right and bottom edges of the raster).
    level : int
        DEFLATE level 1-12 (libdeflate; 6 is GDAL's default).
    size : int
        Tile size of the COG.

    Returns
    -------
    bytes
        The zlib stream TIFF compression 8 stores.

    Raises
    ------
    ValueError
        The tile is not 2-D or larger than ``size``.
    """
    import deflate

    t = np.asarray(tile, dtype=np.float32)
    if t.ndim != 2 or t.shape[0] > size or t.shape[1] > size:
        raise ValueError(f"COG tile must be 2-D and at most {size} x {size} px, got shape {t.shape}")
    if t.shape != (size, size):
        full = np.zeros((size, size), np.float32)
        full[:t.shape[0], :t.shape[1]] = t
        t = full
    return deflate.zlib_compress(_predict_float(t).tobytes(), int(level))


def encode_tiles(block: np.ndarray, level: int = 6, size: int = TILE, threads: int = 1) -> list[bytes]:
    """Every tile of a block whose origin lies on the tile lattice, row-major (edge tiles partial).

    Parameters
    ----------
    block : numpy.ndarray, shape (h, w), float32
    level, size
        See :func:`encode_tile`.
    threads : int
        Tiles compressed at once (libdeflate releases the GIL); the bytes do not depend on it.

    Returns
    -------
    list of bytes, ceil(h / size) * ceil(w / size) tiles
    """
    h, w = block.shape
    windows = [(i, j) for i in range(0, h, size) for j in range(0, w, size)]

    def one(ij):
        return encode_tile(block[ij[0]:ij[0] + size, ij[1]:ij[1] + size], level, size)

    if threads <= 1 or len(windows) < 2:
        return [one(ij) for ij in windows]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(int(threads), len(windows))) as pool:
        return list(pool.map(one, windows))


# ---------------------------------------------------------------------------------------------------- tags
def read_ifd(path: str | os.PathLike, index: int = 0) -> dict[int, tuple[int, int, bytes]]:
    """Tags of IFD ``index`` of a little-endian TIFF or BigTIFF: tag -> (type, count, value bytes).

    Raises
    ------
    CogError
        Not a little-endian (Big)TIFF, or fewer IFDs than ``index`` + 1.
    """
    with open(path, "rb") as fh:
        head = fh.read(16)
        if head[:2] != b"II":
            raise CogError(f"{path}: not a little-endian TIFF")
        big = struct.unpack_from("<H", head, 2)[0] == 43
        off = struct.unpack_from("<Q", head, 8)[0] if big else struct.unpack_from("<I", head, 4)[0]
        for _ in range(index):
            fh.seek(off)
            n = struct.unpack("<Q" if big else "<H", fh.read(8 if big else 2))[0]
            fh.seek(off + (8 if big else 2) + n * (20 if big else 12))
            off = struct.unpack("<Q" if big else "<I", fh.read(8 if big else 4))[0]
            if off == 0:
                raise CogError(f"{path}: no IFD {index}")
        fh.seek(off)
        n = struct.unpack("<Q" if big else "<H", fh.read(8 if big else 2))[0]
        raw = fh.read(n * (20 if big else 12))
        tags = {}
        for k in range(n):
            if big:
                tag, typ, count = struct.unpack_from("<HHQ", raw, k * 20)
                inline, width = raw[k * 20 + 12:k * 20 + 20], 8
            else:
                tag, typ, count = struct.unpack_from("<HHI", raw, k * 12)
                inline, width = raw[k * 12 + 8:k * 12 + 12], 4
            nbytes = _TYPE_SIZE.get(typ, 1) * count
            if nbytes <= width:
                value = inline[:nbytes]
            else:
                here = fh.tell()
                fh.seek(struct.unpack("<Q" if big else "<I", inline)[0])
                value = fh.read(nbytes)
                fh.seek(here)
            tags[tag] = (typ, count, value)
    return tags


def geo_tags(crs, transform, *, tags: dict[str, str] | None = None, description: str = "", units: str = "",
             scratch: str | os.PathLike) -> dict[int, tuple[int, int, bytes]]:
    """Georeferencing and metadata tags of a float32 NaN-nodata raster, as GDAL writes them.

    GDAL writes a 1 x 1 GeoTIFF with ``crs``, ``transform``, the dataset ``tags``, the band ``description`` and
    band tag ``units`` at ``scratch`` (removed afterwards); its tags of :data:`GEO_TAGS` are returned.

    Returns
    -------
    dict
        tag -> (TIFF type, count, value bytes).

    Raises
    ------
    CogError
        GDAL cannot write the template (a CRS or transform it cannot encode in GeoTIFF).
    """
    scratch = Path(scratch)
    try:
        found = _template_tags(scratch, crs, transform, tags, description, units)
    except CogError:
        raise
    except Exception as exc:
        raise CogError(f"{scratch}: GDAL could not write the georeferencing template ({exc})") from None
    finally:
        scratch.unlink(missing_ok=True)
    return {t: v for t, v in found.items() if t in GEO_TAGS}


def _template_tags(scratch: Path, crs, transform, tags, description, units) -> dict:
    """The tags of the 1 x 1 GeoTIFF GDAL writes at ``scratch`` (:func:`geo_tags`)."""
    import rasterio

    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(
            scratch, "w", driver="GTiff", width=1, height=1, count=1, dtype="float32", crs=crs,
            transform=transform, nodata=float("nan")) as ds:
        if tags:
            ds.update_tags(**tags)
        if description:
            ds.set_band_description(1, description)
        if units:
            ds.update_tags(1, units=units)
    return read_ifd(scratch)


def tile_geo_tags(geo: dict[int, tuple[int, int, bytes]], transform, r0: int, c0: int
                  ) -> dict[int, tuple[int, int, bytes]]:
    """:func:`geo_tags` of a grid moved to the grid's pixel (``r0``, ``c0``): the tie point (or the
    transformation's translation) of the block's top-left corner; the other tags unchanged."""
    x, y = transform * (c0, r0)
    out = dict(geo)
    if 33922 in out:
        typ, count, value = out[33922]
        v = list(struct.unpack(f"<{count}d", value))
        v[3], v[4] = x, y
        out[33922] = (typ, count, struct.pack(f"<{count}d", *v))
    elif 34264 in out:
        typ, count, value = out[34264]
        v = list(struct.unpack(f"<{count}d", value))
        v[3], v[7] = x, y
        out[34264] = (typ, count, struct.pack(f"<{count}d", *v))
    return out


def write_geotiff(path: str | os.PathLike, block: np.ndarray, extra: dict[int, tuple[int, int, bytes]], *,
                  level: int = 6) -> int:
    """One block as a tiled GeoTIFF without overviews (tiles of at most :data:`TILE` px, a multiple of 16;
    predictor 3, DEFLATE), not atomically (the caller writes a temporary path).

    Parameters
    ----------
    path : path-like
    block : numpy.ndarray, shape (h, w), float32 (NaN = nodata)
    extra : dict
        Georeferencing of the block (:func:`tile_geo_tags`).
    level : int
        DEFLATE level.

    Returns
    -------
    int
        Size of the file in bytes.
    """
    h, w = block.shape
    size = min(TILE, 16 * (-(-max(h, w) // 16)))
    tiles = encode_tiles(block, level=level, size=size)
    assemble(path, (h, w), [lambda: (frame(t) for t in tiles)], [len(tiles)], [[len(t) for t in tiles]], extra,
             tile=size, overviews=False)
    return os.path.getsize(path)


# ---------------------------------------------------------------------------------------------------- file
def frame(data: bytes) -> bytes:
    """A tile as it lies in the COG: its size (uint32), the data, its last 4 bytes again (GDAL's block leader
    and trailer, by which a reader can tell that the file was not edited after it was written)."""
    return struct.pack("<I", len(data)) + data + data[-4:]


def _copy_range(fd: int, offset: int, n: int, fh) -> int:
    """Copy ``n`` bytes at ``offset`` of file ``fd`` to the end of ``fh`` (in the kernel where it can)."""
    fh.flush()
    out = fh.fileno()
    done = 0
    try:
        while done < n:
            k = os.copy_file_range(fd, out, n - done, offset + done)
            if k <= 0:
                break
            done += k
    except OSError:
        pass
    if done < n:  # no copy_file_range (another file system, another OS): through Python
        fh.seek(0, os.SEEK_END)
        while done < n:
            buf = os.pread(fd, min(n - done, 2**24), offset + done)
            if not buf:
                raise CogError(f"spool file ended {n - done} bytes early")
            fh.write(buf)
            done += len(buf)
        fh.flush()
    fh.seek(0, os.SEEK_END)
    return done


def _entries(width: int, height: int, n_tiles: int, overview: bool, big: bool,
             extra: dict[int, tuple[int, int, bytes]], tile: int = TILE) -> list[tuple[int, int, int, bytes | None]]:
    """(tag, type, count, value) of one IFD; value None for the tile offsets/byte counts (filled later)."""
    off_t = 16 if big else 4

    def short(v):
        return struct.pack("<H", v)

    def long(v):
        return struct.pack("<I", v)

    e = [(254, 4, 1, long(1))] if overview else []  # NewSubfileType: reduced image (GDAL omits it on level 0)
    e += [(256, 4, 1, long(width)), (257, 4, 1, long(height)),
         (258, 3, 1, short(32)), (259, 3, 1, short(8)), (262, 3, 1, short(1)), (277, 3, 1, short(1)),
         (284, 3, 1, short(1)), (317, 3, 1, short(3)), (322, 3, 1, short(tile)), (323, 3, 1, short(tile)),
         (324, off_t, n_tiles, None), (325, off_t, n_tiles, None), (339, 3, 1, short(3))]
    for tag, (typ, count, value) in extra.items():
        if overview and tag != 42113:  # overviews carry only the nodata tag, as GDAL's
            continue
        e.append((tag, typ, count, value))
    return sorted(e, key=lambda x: x[0])


def assemble(final: str | os.PathLike, shape: tuple[int, int], levels: Sequence[Callable[[], Iterable[bytes]]],
             counts: Sequence[int], sizes: Sequence[Sequence[int]], extra: dict[int, tuple[int, int, bytes]],
             *, tile: int = TILE, overviews: bool = True) -> None:
    """Write the COG file ``final`` (not atomically: the caller writes to a temporary path and renames).

    Parameters
    ----------
    final : path-like
        Path written.
    shape : (rows, cols)
        Full-resolution size.
    levels : sequence of callables
        ``levels[k]()`` yields the framed tiles of level k (:func:`frame` of :func:`encode_tile`), row-major,
        level 0 first: as bytes, or as (file descriptor, offset, length) ranges of framed tiles in a spool file.
    counts : sequence of int
        Number of tiles of each level (:class:`CogLevels`).
    sizes : sequence of sequences of int
        Byte size of every tile of every level, in the order ``levels`` yields them (the IFDs are written first).
    extra : dict
        Georeferencing and metadata tags (:func:`geo_tags`).
    tile : int
        Tile size (a multiple of 16).
    overviews : bool
        False: the full resolution only (``levels``, ``counts`` and ``sizes`` of level 0).

    Raises
    ------
    CogError
        A level yields another number of bytes than its declared tiles take.
    """
    pyramid = CogLevels(*shape, tile=tile)
    shapes = pyramid.shapes if overviews else pyramid.shapes[:1]
    grid_tiles = pyramid.tiles[:len(shapes)]
    if len(levels) != len(shapes) or [len(s) for s in sizes] != list(counts) or list(counts) != [
            a * b for a, b in grid_tiles]:
        raise CogError(f"{final}: tile counts {list(counts)} do not match the pyramid {grid_tiles} of {shape}")
    n_levels = len(shapes)
    data_bytes = sum(sum(s) + 8 * len(s) for s in sizes)
    big = data_bytes > BIGTIFF_ABOVE
    ifd_head, ifd_entry, ifd_next = (8, 20, 8) if big else (2, 12, 4)
    inline = 8 if big else 4
    header = 16 if big else 8

    # the IFDs with their out-of-line values, one after the other after header and ghost area
    ifds = []
    for k, ((h, w), n) in enumerate(zip(shapes, counts)):
        ifds.append(_entries(w, h, n, k > 0, big, extra, tile))
    pos = header + len(GHOST)
    starts = []
    for ents in ifds:
        starts.append(pos)
        pos += ifd_head + ifd_entry * len(ents) + ifd_next
        for tag, typ, count, value in ents:
            nbytes = _TYPE_SIZE[typ] * count
            if nbytes > inline:
                pos += nbytes + (nbytes & 1)
    data_start = pos
    # tile data: smallest overview first; each tile = 4-byte leader, data, 4-byte trailer
    offsets: list[list[int]] = [[] for _ in shapes]
    for k in reversed(range(n_levels)):
        for s in sizes[k]:
            offsets[k].append(pos + 4)
            pos += s + 8
    fmt = "<Q" if big else "<I"
    with open(final, "wb") as fh:
        fh.write(b"II" + (struct.pack("<HHHQ", 43, 8, 0, starts[0]) if big else struct.pack("<HI", 42, starts[0])))
        fh.write(GHOST)
        for k, ents in enumerate(ifds):
            assert fh.tell() == starts[k]
            body = bytearray()
            out_of_line = bytearray()
            tail = starts[k] + ifd_head + ifd_entry * len(ents) + ifd_next
            body += struct.pack("<Q" if big else "<H", len(ents))
            for tag, typ, count, value in ents:
                if tag in (324, 325):  # TileOffsets, TileByteCounts
                    value = np.asarray(offsets[k] if tag == 324 else sizes[k], "<u8" if big else "<u4").tobytes()
                body += struct.pack("<HHQ" if big else "<HHI", tag, typ, count)
                if len(value) <= inline:
                    body += value + b"\0" * (inline - len(value))
                else:
                    body += struct.pack(fmt, tail + len(out_of_line))
                    out_of_line += value + (b"\0" if len(value) & 1 else b"")
            body += struct.pack(fmt, starts[k + 1] if k + 1 < len(ifds) else 0)
            fh.write(bytes(body) + bytes(out_of_line))
        assert fh.tell() == data_start
        for k in reversed(range(n_levels)):
            want = sum(sizes[k]) + 8 * len(sizes[k])
            got = 0
            for piece in levels[k]():
                if isinstance(piece, (bytes, bytearray, memoryview)):
                    fh.write(piece)
                    got += len(piece)
                else:  # (file descriptor, offset, length) of framed tiles in a spool file
                    fd, off, n = piece
                    got += _copy_range(fd, off, n, fh)
            if got != want:
                raise CogError(f"{final}: level {k} gave {got} bytes of framed tiles, {want} were declared")
