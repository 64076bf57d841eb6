"""Resumable per-block output store of a run: block tiles + a journal of per-block partial sums.

A run's output rasters are computed block by block (one block = one dask chunk of the reference grid).
:class:`BlockStore` keeps, for every finished block,

* one GeoTIFF tile per written output raster (:func:`gep_raster.outputs.io_write.write_tile`, atomic), and
* one journal entry ``journal/b<index>.npz`` (atomic, written after the block's tiles): the block's
  output totals, valid-pixel counts and per-polygon partial sums and valid areas, and the sizes of its
  tiles.

A journal entry is the commit mark of its block. A run killed at any point (even by SIGKILL, during
a tile write) and started again finds the entries of the blocks that were finished, checks that their
tiles are there with the recorded sizes, and computes only the other blocks; the per-polygon sums
are then added in block order from the entries, so the tables are bit-identical to an uninterrupted
run. Entries belong to one *run key* (the content hashes of config and inputs, see
``gep_raster.pipeline.prepare.run_hash``, plus the block grid and the layout): a store made for another key is
discarded, never reused. Timestamps are never used.

At the end, :meth:`BlockStore.publish` turns each output's tiles into its final file:

``layout="tiles"``
    the tiles stay (``rasters/<name>.tiles/r<row>_c<col>.tif``) and a VRT mosaic ``rasters/<name>.vrt``
    carries the metadata. Nothing is written twice. For display at small scales the VRT declares an
    overview, ``rasters/<name>.tiles/overview_x<F>.tif``: the mean of every F x F pixels (NaN ignored,
    as GDAL's AVERAGE; F = :func:`overview_factor`, 8 or more, so that the overview has at most 2048 px on
    its long side: the map figure reads it), computed from each block in memory when it is committed (kept
    in its journal entry) and written at the end with its own internal overviews. Building overviews inside
    every tile
    instead doubled the tile write time (1.65 s against 0.79 s for 15 outputs of a 1024² block).
``layout="cog"``
    one Cloud-Optimized GeoTIFF ``rasters/<name>.tif`` per output. When the blocks lie on the COG's 512 px tile
    lattice (every chunk side the engine chooses, or an ``output.chunk_size`` that is a multiple of 512), the
    block thread compresses the block's COG tiles (:mod:`gep_raster.outputs.cog_writer`: DEFLATE at
    ``deflate_level``, predictor 3) of the full resolution and of every overview level that lies whole inside the
    block (:attr:`BlockStore.direct_levels`), into one spool file per block and output (``r<row>_c<col>.cog``),
    followed by the block's raw float32 means of the next level where the pyramid goes on. At the end the COG is
    assembled: IFDs, the smaller overviews computed from those means, then the spooled tiles copied as they are
    (``os.copy_file_range``, in the kernel). No pixel is compressed twice; the file is byte-identical for every
    such block size. Blocks off the lattice (an odd ``output.chunk_size``): GeoTIFF tiles with ZSTD level 1
    (:data:`gep_raster.outputs.io_write.TEMP_TILE_CODEC`), then GDAL's COG driver over their VRT (one more read,
    compression and write of every output; the pixels are the same).
"""
from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import faults
from ..errors import GepError
from ..grid import RefGrid
from . import cog_writer
from .io_write import (_RASTER_SIDECARS, TEMP_TILE_CODEC, _check_metadata, _serialise_tags, atomic_path,
                       atomic_write_json, publish_cog, write_tile, write_vrt)
from ..kernels.reduce import block_mean

__all__ = ["BlockStore", "TILES_SUFFIX", "output_fingerprint", "overview_factor"]

#: Folder suffix of an output's tiles (next to its ``.vrt``).
TILES_SUFFIX = ".tiles"
#: Smallest reduction factor of the overview raster of the tiles layout, and the longest side it aims at.
MIN_OVERVIEW_FACTOR = 8
OVERVIEW_MAX_SIDE = 2048


def overview_factor(shape) -> int:
    """Reduction factor F of the tiles layout's overview raster for a grid of ``shape`` (rows, cols): the
    smallest power of two ≥ 8 that brings the long side to at most 2048 px (8192² → 8: 1024 px; 16384² → 8:
    2048 px; 32768² → 16). The map figure (about 2000 px) reads this overview instead of every pixel."""
    f = MIN_OVERVIEW_FACTOR
    while max(int(shape[0]), int(shape[1])) > OVERVIEW_MAX_SIDE * f:
        f *= 2
    return f


def _tile_name(r0: int, c0: int) -> str:
    return f"r{r0:07d}_c{c0:07d}.tif"


@dataclass
class _Entry:
    """One block's journal entry (its contribution to the sums)."""

    totals: np.ndarray
    valid: np.ndarray
    layers: dict


#: Serialises the one GDAL template write of a store's tile georeferencing (:meth:`BlockStore._write_final_tile`).
_TEMPLATE_LOCK = threading.Lock()

#: Overview rasters assembled in one pass over the journal entries (tiles layout; 16 MB per output at most:
#: 4 outputs per pass at 16384² and more, every output in one pass below).
OVERVIEW_GROUP_BYTES = 64 * 2**20


class BlockStore:
    """Block tiles and journal of one run (see the module docstring).

    Parameters
    ----------
    root : pathlib.Path
        State folder of the store (``<output>/.gep_state/blocks``).
    out_dir : pathlib.Path
        Output folder of the run.
    grid : RefGrid
        Reference grid.
    outputs : list of (key, rel_path)
        Written outputs: key and final path relative to ``out_dir`` (``.tif`` for the cog layout,
        ``.vrt`` for tiles).
    run_key : str
        Content hash of config and inputs; with the block grid and layout it identifies the store.
    chunks : (tuple of int, tuple of int)
        Row and column block sizes.
    layout : {"cog", "tiles"}
    overviews : bool
        Overview raster (x F, :func:`overview_factor`) per output (default: with the tiles layout).
    threads : int
        Threads that compress the overview tiles made at publish (the run's threads; the outputs do not depend
        on it).
    deflate_level : int
        DEFLATE level of the final files (``output.deflate_level``): the tiles of the tiles layout, the COGs;
        the cog layout's temporary GeoTIFF tiles (blocks off the tile lattice) use :data:`TEMP_TILE_CODEC`.

    Raises
    ------
    ValueError
        Unknown layout.
    """

    def __init__(self, root: Path, out_dir: Path, grid: RefGrid, outputs: list[tuple[str, str]], run_key: str,
                 chunks: tuple, layout: str, overviews: bool | None = None, deflate_level: int = 6,
                 threads: int = 1):
        if layout not in ("cog", "tiles"):
            raise ValueError(f"layout must be 'cog' or 'tiles', got {layout!r}")
        self.root = Path(root)
        self.out_dir = Path(out_dir)
        self.grid = grid
        self.outputs = list(outputs)
        self.layout = layout
        self.deflate_level = int(deflate_level)
        self.threads = max(1, int(threads))  # compression threads of the publish step (the run's threads)
        # the tiles of the tiles layout are the final files: DEFLATE, which every GIS reads; the cog layout's
        # are read once by the COG conversion: the faster codec
        self.tile_codec = ("DEFLATE", self.deflate_level) if layout == "tiles" else TEMP_TILE_CODEC
        self.overviews = (layout == "tiles") if overviews is None else bool(overviews)
        self.rows = np.concatenate([[0], np.cumsum(chunks[0])[:-1]]).astype(int).tolist()
        self.cols = np.concatenate([[0], np.cumsum(chunks[1])[:-1]]).astype(int).tolist()
        self.overview_factor = overview_factor(grid.shape)
        if self.overviews and any(v % self.overview_factor for v in self.rows + self.cols):
            self.overviews = False  # blocks not on the x F lattice (an odd output.chunk_size): no overview
        self.heights = [int(h) for h in chunks[0]]
        self.widths = [int(w) for w in chunks[1]]
        # cog layout: COG tiles compressed on the block threads when the blocks lie on the tile lattice
        self.cog_levels = cog_writer.CogLevels(grid.height, grid.width)
        self.direct_levels = self._in_block_levels() if layout == "cog" else 0
        self.direct = self.direct_levels > 0
        self.key = {"run_key": run_key, "layout": layout, "rows": self.heights, "cols": self.widths,
                    "outputs": [k for k, _ in self.outputs], "overviews": self.overviews,
                    "overview_factor": self.overview_factor, "journal_format": 3,
                    "cog_direct_levels": self.direct_levels,
                    "deflate_level": self.deflate_level, "tile_codec": list(self.tile_codec)}
        self.journal = self.root / "journal"
        self._ov_cache: dict[str, np.ndarray] = {}  # overviews assembled ahead of their publish (tiles layout)
        self._ov_done: set[str] = set()
        self._tile_dirs = {k: self._tile_dir(k, rel) for k, rel in self.outputs}
        self._open()

    # ------------------------------------------------------------------ layout
    def _in_block_levels(self) -> int:
        """COG levels whose tiles lie whole inside the blocks: level k needs every inner block edge on a
        multiple of 512 x 2^k px (all of them for one block). 0: the blocks are off the tile lattice (an
        ``output.chunk_size`` that is not a multiple of 512), and the COG is made by GDAL from block tiles."""
        n = len(self.cog_levels)
        inner = self.rows[1:] + self.cols[1:]
        k = 0
        while k < n and all(v % (cog_writer.TILE << k) == 0 for v in inner):
            k += 1
        if k < n and any(v % (1 << k) for v in inner):  # the 2^k means of the blocks would not tile the level
            return 0
        return k

    def _tile_dir(self, key: str, rel: str) -> Path:
        if self.layout == "tiles":
            p = self.out_dir / rel
            return p.with_name(p.stem + TILES_SUFFIX)
        return self.root / "tiles" / key

    def tile_path(self, key: str, r0: int, c0: int) -> Path:
        """Path of the tile of output ``key`` whose top-left pixel is (``r0``, ``c0``): a GeoTIFF, or with
        direct COG tiles (:attr:`direct`) the block's spool file of framed COG tiles."""
        name = _tile_name(r0, c0)
        return self._tile_dirs[key] / (name[:-4] + ".cog" if self.direct else name)

    def block_index(self, r0: int, c0: int) -> int:
        """Row-major index of the block at (``r0``, ``c0``)."""
        return self.rows.index(r0) * len(self.cols) + self.cols.index(c0)

    @property
    def n_blocks(self) -> int:
        return len(self.rows) * len(self.cols)

    def blocks(self):
        """(index, r0, c0, h, w) of every block, row-major."""
        i = 0
        for r0, h in zip(self.rows, self.heights):
            for c0, w in zip(self.cols, self.widths):
                yield i, r0, c0, h, w
                i += 1

    def _open(self) -> None:
        meta = self.root / "store.json"
        old = None
        if meta.exists():
            try:
                old = json.loads(meta.read_text())
            except (OSError, ValueError):
                old = None
        if old != self.key:  # another run (config, inputs, blocks or layout changed): start afresh
            self.discard()
        self.journal.mkdir(parents=True, exist_ok=True)
        for d in self._tile_dirs.values():
            d.mkdir(parents=True, exist_ok=True)
            for tmp in d.glob(".*.tmp-*"):  # a tile being written when the run was killed
                tmp.unlink(missing_ok=True)
        for tmp in self.journal.glob(".*.tmp-*"):
            tmp.unlink(missing_ok=True)
        if old != self.key:
            atomic_write_json(meta, self.key)

    def discard(self) -> None:
        """Remove the journal and every tile of the store."""
        if self.root.exists():
            shutil.rmtree(self.root)
        for d in self._tile_dirs.values():
            if d.exists():
                shutil.rmtree(d)

    # ------------------------------------------------------------------ writing
    def commit(self, r0: int, c0: int, value: np.ndarray, out_index: list[int], part: tuple) -> None:
        """Write the block's tiles, then its journal entry (the commit mark).

        Parameters
        ----------
        r0, c0 : int
            Top-left pixel of the block.
        value : numpy.ndarray, shape (n_outputs, h, w), float32
            All outputs of the block.
        out_index : list of int
            Index in ``value`` of each written output, in the order of ``outputs``.
        part : (totals, valid, layers)
            The block's contribution to the sums (``pipeline.BlockSink._contribution``).
        """
        sizes = []
        arrays = {}
        ovs = []
        cog_sizes = []
        for (key, _), i in zip(self.outputs, out_index):
            if self.direct:
                n, tile_sizes = self._write_spool(self.tile_path(key, r0, c0), value[i])
                sizes.append(n)
                cog_sizes.append(tile_sizes)
                continue
            if self.layout == "tiles":  # the final tiles: DEFLATE by libdeflate on this thread, no GDAL write
                sizes.append(self._write_final_tile(self.tile_path(key, r0, c0), value[i], r0, c0))
            else:
                # one compression thread: blocks are already written by as many threads as the run's workers
                # (GDAL's ALL_CPUS here gained nothing, 42 ms per 1024² tile either way, and made a 1-worker
                # run use every core)
                sizes.append(write_tile(self.tile_path(key, r0, c0), value[i], self.grid, r0, c0,
                                        codec=self.tile_codec[0], zlevel=self.tile_codec[1], num_threads=1))
            if self.overviews:
                ovs.append(block_mean(value[i], self.overview_factor))
        if cog_sizes:
            arrays["cog_sizes"] = np.asarray(cog_sizes, np.int64)
        if ovs:  # one member (n_outputs, h/F, w/F): an entry is read once for all outputs' overviews
            arrays["ov"] = np.stack(ovs)
        totals, valid, layers = part
        arrays.update({"totals": totals, "valid": valid, "tile_bytes": np.asarray(sizes, np.int64),
                       "origin": np.asarray([r0, c0], np.int64)})
        names = sorted(layers)
        for j, name in enumerate(names):
            rows, s, va = layers[name]
            arrays[f"rows{j}"], arrays[f"s{j}"], arrays[f"va{j}"] = rows, s, va
        arrays["layer_names"] = np.asarray(json.dumps(names))
        path = self.journal / f"b{self.block_index(r0, c0):07d}.npz"
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        faults.hit("block")

    def _write_final_tile(self, path: Path, a: np.ndarray, r0: int, c0: int) -> int:
        """A block tile of the tiles layout (:func:`gep_raster.outputs.cog_writer.write_geotiff`), atomically;
        its georeferencing is GDAL's for the grid (made once per store), moved to the block's corner."""
        geo = getattr(self, "_grid_geo", None)
        if geo is None:
            with _TEMPLATE_LOCK:  # the first blocks commit on several threads at once
                geo = getattr(self, "_grid_geo", None)
                if geo is None:
                    geo = self._grid_geo = cog_writer.geo_tags(
                        self.grid.crs, self.grid.transform, scratch=self.root / f".tile-template-{os.getpid()}.tif")
        with atomic_path(path, suffix=".tif") as tmp:
            return cog_writer.write_geotiff(tmp, np.asarray(a, np.float32),
                                            cog_writer.tile_geo_tags(geo, self.grid.transform, r0, c0),
                                            level=self.deflate_level)

    def _write_spool(self, path: Path, a: np.ndarray) -> tuple[int, list[int]]:
        """The block's COG tiles of levels 0 .. :attr:`direct_levels` - 1 (framed, level by level, row-major),
        then, where the pyramid goes on, the block's raw float32 means of the next level; atomically.
        Returns the file size and the data size of every tile."""
        parts, tile_sizes = [], []
        a = np.asarray(a, np.float32)
        for k in range(self.direct_levels):
            if k:
                a = block_mean(a, 2)
            for t in cog_writer.encode_tiles(a, level=self.deflate_level):
                parts.append(cog_writer.frame(t))
                tile_sizes.append(len(t))
        if self.direct_levels < len(self.cog_levels):
            parts.append(np.ascontiguousarray(block_mean(a, 2), "<f4").tobytes())
        with atomic_path(path, suffix=".cog") as tmp:
            with open(tmp, "wb") as fh:
                for p in parts:
                    fh.write(p)
        return sum(len(p) for p in parts), tile_sizes

    # ------------------------------------------------------------------ resuming
    def finished(self) -> dict[int, tuple]:
        """Journal entries of the finished blocks whose tiles are all present with their recorded sizes.

        Returns
        -------
        dict
            Block index -> (totals, valid, layers), the block's contribution to the sums. Blocks with a
            damaged entry or a missing tile are left out (they are computed again).
        """
        out = {}
        index = {i: (r0, c0) for i, r0, c0, _, _ in self.blocks()}
        for f in sorted(self.journal.glob("b*.npz")):
            try:
                bi = int(f.stem[1:])
                r0, c0 = index[bi]
                with np.load(f) as z:
                    if [int(z["origin"][0]), int(z["origin"][1])] != [r0, c0]:
                        continue
                    sizes = z["tile_bytes"].tolist()
                    if len(sizes) != len(self.outputs):
                        continue
                    ok = all(self.tile_path(k, r0, c0).is_file()
                             and self.tile_path(k, r0, c0).stat().st_size == n
                             for (k, _), n in zip(self.outputs, sizes))
                    if not ok:
                        continue
                    names = json.loads(str(z["layer_names"]))
                    layers = {name: (z[f"rows{j}"], z[f"s{j}"], z[f"va{j}"]) for j, name in enumerate(names)}
                    out[bi] = (z["totals"], z["valid"], layers)
            except (OSError, ValueError, KeyError, IndexError, EOFError):
                continue  # damaged or foreign entry: the block is computed again
        return out

    # ------------------------------------------------------------------ publishing
    def publish(self, key: str, *, tags: dict, description: str, units: str) -> Path:
        """Make output ``key``'s final file from its tiles (VRT mosaic, or COG for the cog layout).

        Raises
        ------
        GepError
            A tile of the output is missing (the run is incomplete).
        OutputError
            The VRT or COG cannot be written.
        """
        rel = dict(self.outputs)[key]
        final = self.out_dir / rel
        tiles = []
        for _, r0, c0, h, w in self.blocks():
            p = self.tile_path(key, r0, c0)
            if not p.is_file():
                raise GepError(f"internal: tile {p} of {rel} is missing; the run did not finish")
            tiles.append((r0, c0, h, w, p.relative_to(final.parent if self.layout == "tiles" else p.parent.parent)
                          .as_posix()))
        if self.direct:
            return self._publish_direct(key, final, tags=tags, description=description, units=units)
        if self.layout == "tiles":
            ov_rel = None
            if self.overviews:
                ov_path = self._tile_dirs[key] / f"overview_x{self.overview_factor}.tif"
                self._write_overview(key, ov_path)
                ov_rel = ov_path.relative_to(final.parent).as_posix()
            return write_vrt(final, self.grid, tiles, tags=tags, description=description, units=units,
                             overview=ov_rel)
        vrt = self.root / "tiles" / f"{key}.vrt"
        write_vrt(vrt, self.grid, tiles, tags=tags, description=description, units=units)
        return publish_cog(vrt, final, tags=tags, description=description, units=units, level=self.deflate_level)

    def _publish_direct(self, key: str, final: Path, *, tags: dict, description: str, units: str) -> Path:
        """One COG from the blocks' spool files (:mod:`gep_raster.outputs.cog_writer`): the tiles of the first
        :attr:`direct_levels` levels copied as they were compressed; the smaller overviews made here from the
        blocks' means. Raises GepError when a block's spool or journal entry is missing."""
        T = cog_writer.TILE
        K, lv = self.direct_levels, self.cog_levels
        j = [k for k, _ in self.outputs].index(key)
        blocks = list(self.blocks())
        if not hasattr(self, "_cog_index"):  # tile sizes of every block and output, from the journal
            self._cog_index = {}
            for bi, *_ in blocks:
                try:
                    with np.load(self.journal / f"b{bi:07d}.npz") as z:
                        self._cog_index[bi] = z["cog_sizes"]
                except (OSError, KeyError, ValueError) as exc:
                    raise GepError(f"internal: journal entry of block {bi} unreadable ({exc}); the run did not "
                                   f"finish") from None
        # per block: level shapes, tile grid and byte offset of every level's framed tiles in its spool
        info = {}
        for bi, r0, c0, h, w in blocks:
            sizes = self._cog_index[bi][j]
            shapes = cog_writer.halved_shapes(h, w, len(lv))
            pos, start, levels = 0, 0, []
            for k in range(K):
                ny, nx = -(-shapes[k][0] // T), -(-shapes[k][1] // T)
                framed = sizes[start:start + ny * nx].reshape(ny, nx) + 8
                levels.append((pos, framed))
                pos += int(framed.sum())
                start += ny * nx
            info[bi] = (levels, pos)  # framed tiles of each level: (offset, sizes + 8); offset of the raw means
        ncols = len(self.cols)

        def level_sizes(k):
            out = []
            for bi0 in range(0, len(blocks), ncols):
                ny = info[bi0][0][k][1].shape[0]
                for t in range(ny):
                    for bi in range(bi0, bi0 + ncols):
                        out.extend((info[bi][0][k][1][t] - 8).tolist())
            return out

        def level_pieces(k):
            def gen():
                for bi0 in range(0, len(blocks), ncols):
                    fds = [os.open(self.tile_path(key, blocks[bi][1], blocks[bi][2]), os.O_RDONLY)
                           for bi in range(bi0, bi0 + ncols)]
                    try:
                        ny = info[bi0][0][k][1].shape[0]
                        for t in range(ny):
                            for fd, bi in zip(fds, range(bi0, bi0 + ncols)):
                                pos, framed = info[bi][0][k]
                                yield fd, pos + int(framed[:t].sum()), int(framed[t].sum())
                    finally:
                        for fd in fds:
                            os.close(fd)
            return gen

        sizes = [level_sizes(k) for k in range(K)]
        pieces = [level_pieces(k) for k in range(K)]
        if K < len(lv):  # the smaller overviews from the blocks' means of level K
            mosaic = np.full(lv.shapes[K], np.nan, np.float32)
            for bi, r0, c0, h, w in blocks:
                shp = cog_writer.halved_shapes(h, w, K + 1)[K]
                raw = np.fromfile(self.tile_path(key, r0, c0), dtype="<f4", count=shp[0] * shp[1],
                                  offset=info[bi][1]).reshape(shp)
                mosaic[r0 >> K:(r0 >> K) + shp[0], c0 >> K:(c0 >> K) + shp[1]] = raw
            a = mosaic
            for k in range(K, len(lv)):
                if k > K:
                    a = block_mean(a, 2)
                tiles = cog_writer.encode_tiles(a, level=self.deflate_level, threads=self.threads)
                sizes.append([len(t) for t in tiles])
                pieces.append(lambda tiles=tiles: (cog_writer.frame(t) for t in tiles))
        str_tags = _serialise_tags(tags)
        extra = cog_writer.geo_tags(self.grid.crs, self.grid.transform, tags=str_tags, description=description,
                                    units=units, scratch=self.root / f".{key}.template.tif")
        with atomic_path(final, sidecars=_RASTER_SIDECARS) as tmp:
            cog_writer.assemble(tmp, self.grid.shape, pieces, [len(s) for s in sizes], sizes, extra)
            _check_metadata(tmp, final, str_tags, description, units)
            Path(str(final) + ".aux.xml").unlink(missing_ok=True)
        return final

    def _overview_array(self, key: str) -> np.ndarray:
        """The x F mean raster of output ``key``, assembled from the journal entries.

        One pass over the entries assembles it together with the overviews of the outputs that follow ``key``
        and are not published yet (up to :data:`OVERVIEW_GROUP_BYTES`); they are kept until published. Each
        entry holds every output's block overview as one array. Reading every entry once per output, one
        member per output, took 3.1 s for 15 outputs of a 8192² run (960 zip members read in Python)."""
        cache = self._ov_cache
        if key in cache:
            return cache.pop(key)
        f = self.overview_factor
        g = self.grid
        oh, ow = -(-g.height // f), -(-g.width // f)
        keys = [k for k, _ in self.outputs]
        published = self._ov_done
        group = [key] + [k for k in keys[keys.index(key) + 1:] if k not in published and k not in cache]
        group = group[:max(1, OVERVIEW_GROUP_BYTES // (oh * ow * 4))]
        arrays = {k: np.full((oh, ow), np.nan, np.float32) for k in group}
        cols = {k: keys.index(k) for k in group}
        for bi, r0, c0, _, _ in self.blocks():
            with np.load(self.journal / f"b{bi:07d}.npz") as z:
                stack = z["ov"]
            for k, ov in arrays.items():
                a = stack[cols[k]]
                ov[r0 // f:r0 // f + a.shape[0], c0 // f:c0 // f + a.shape[1]] = a
        out = arrays.pop(key)
        cache.update(arrays)
        return out

    def _write_overview(self, key: str, path: Path) -> None:
        """The x F mean raster of output ``key`` from the journal entries (with its own overviews)."""
        f = self.overview_factor
        g = self.grid
        ov = self._overview_array(key)
        self._ov_done.add(key)
        ogrid = RefGrid(g.crs, g.transform * g.transform.scale(f), ov.shape[1], ov.shape[0])
        write_tile(path, ov, ogrid, 0, 0, overviews=True)

    def close(self) -> None:
        """After a successful publish: drop the journal (and, for the cog layout, the tiles)."""
        if self.layout == "cog":
            self.discard()
        elif self.root.exists():
            shutil.rmtree(self.root)


def output_fingerprint(path: Path) -> str:
    """Content fingerprint of a final output: sha256 of a COG; for a VRT mosaic, sha256 of the VRT
    text and of the names and sizes of its tiles (tiles are written atomically, so a present tile of
    the recorded size is the complete tile).

    Returns
    -------
    str
        Hex digest. Raises OSError when a file is missing.
    """
    import hashlib

    from .io_write import sha256_file

    path = Path(path)
    if path.suffix.lower() != ".vrt":
        return sha256_file(path)
    h = hashlib.sha256(path.read_bytes())
    tdir = path.with_name(path.stem + TILES_SUFFIX)
    for t in sorted(tdir.glob("*.tif")):
        h.update(f"{t.name}:{t.stat().st_size}\n".encode())
    return h.hexdigest()
