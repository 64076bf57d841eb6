"""Tuning constants of the coverage build (band height, box merging, exactextract batches, snapping)."""

#: Rows per band in which a polygon's boundary cells are grouped into boxes, per engine
#: (the native engine pays per box cell, exactextract ~30 µs per box piece).
BAND_ROWS = {"native": 4, "exactextract": 32}

#: Two boxes of a polygon in the same band are merged when the cells added by merging are at
#: most this many, per engine (an exactextract feature costs about as much as ~500 cells).
MERGE_CELLS = {"native": 16, "exactextract": 512}

#: Box cells handed to exactextract per batch (bounds the build's transient memory).
BATCH_CELLS = 4_000_000

#: Polygons with more vertices than this are cut recursively before clipping their boxes.
_CLIP_SPLIT_VERTICES = 512

#: Padding of the boundary marking, in pixels.
_EPS = 1e-7

#: Native engine: a ring's fraction of a cell below this is 0 (float64 noise of cells that
#: the ring only grazes; exactextract's own noise is of the same order).
_SNAP = 1e-10

#: Engines computing the fractions of the boundary cells (see CoverageIndex.build).
ENGINES = ("native", "exactextract")

#: Version of the save() format (part of the cache key).
_FORMAT_VERSION = 1
