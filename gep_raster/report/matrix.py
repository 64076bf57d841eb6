"""Value per service and ecosystem type: the run's value rasters summed by the land-cover class of each pixel.

A finished run folder has no land-cover raster of its own, so the land cover is read again the way the run read
it: the configuration recorded in the manifest (``manifest["config"]``), its relative paths resolved from the
run's config folder (:func:`gep_raster.analysis.change.input_base_dir`), opened on the run's reference grid by
the engine's reader (:func:`gep_raster.grid.run_inputs.raster_source`, the same window reader as the run) with
the run's scenario edits applied (:class:`gep_raster.analysis.scenario.ScenarioSource`). Before reading, the
land-cover files' sha256 are compared with the manifest's ``input_checksums``: a file changed since the run
stops the matrix (the report says so) rather than giving another land cover's split.

Then, window by window (``chunk`` × ``chunk`` px, rasterio windows on the value rasters), every finite pixel of
every value raster is added to the ecosystem type of its class (legend ``ecosystem`` column of
``manifest["legend"]["table"]``), in float64. Exact: each row's total equals the sum of its raster, which the
manifest's ``totals`` also is (up to float summation order); pixels with a value but no land-cover class (none
in a normal run) are kept in a column of their own. Memory: (1 + number of rasters) windows at a time.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import GepError

log = logging.getLogger("gep_raster")

__all__ = ["ecosystem_matrix", "MatrixUnavailable"]

#: column of pixels that hold a value but no land-cover class of the legend
UNCLASSIFIED = "_unclassified"


class MatrixUnavailable(GepError):
    """The land cover of a run cannot be read as the run read it (files moved or changed, unreadable)."""


def _land_cover_source(run):
    """The run's land cover on its grid (scenario edits applied), as the run read it; the config object."""
    from ..analysis.change import input_base_dir
    from ..config import load_config_dict
    from ..grid.run_inputs import raster_source

    raw = dict(run.manifest.get("config") or {})
    if not raw:
        raise MatrixUnavailable(f"{run.path}/manifest.json has no 'config' entry")
    cfg = load_config_dict(raw, base_dir=input_base_dir(run), where=f"{run.path}/manifest.json config")
    src = raster_source(cfg, "land_cover", cfg.inputs.land_cover, run.grid, "categorical")
    if cfg.scenario is not None:
        from ..analysis.scenario import ScenarioSource

        src = ScenarioSource(src, cfg.scenario, run.grid, cfg)
    return src, cfg


def _check_checksums(run, files) -> list[str]:
    """Compare the land-cover files with the manifest's sha256; returns notes. Raises MatrixUnavailable when a file
    differs (local files only; remote files are not downloaded again)."""
    from ..outputs.io_write import sha256_file

    recorded = {}
    for key, rec in (run.manifest.get("input_checksums") or {}).items():
        if isinstance(rec, dict) and rec.get("sha256"):
            for k in (rec.get("abs_path"), key):
                if k:
                    recorded[str(Path(k).resolve()) if "://" not in str(k) else str(k)] = rec["sha256"]
    notes, checked = [], 0
    for f in files:
        fs = str(f)
        if "://" in fs or fs.startswith("/vsi"):
            notes.append(f"{fs}: remote, not checked")
            continue
        want = recorded.get(str(Path(fs).resolve()))
        if want is None:
            notes.append(f"{fs}: no sha256 in the manifest")
            continue
        if sha256_file(fs) != want:
            raise MatrixUnavailable(f"land-cover file {fs} differs from the run's (sha256 in the manifest's "
                                    "input_checksums); the split by ecosystem type would be another land cover's")
        checked += 1
    if checked:
        notes.insert(0, f"{checked} land-cover file(s): sha256 equal to the run's")
    return notes


def _lookup(legend_table: list[dict], order: list[str]) -> np.ndarray:
    """code -> column index (``order``: ecosystem types, then the unclassified column), for codes 0..65536; an index
    for codes -1 (no data) at the end of the array."""
    lut = np.full(65538, len(order) - 1, dtype=np.int32)
    for row in legend_table:
        try:
            code = int(row["code"])
        except (KeyError, TypeError, ValueError):
            continue
        eco = row.get("ecosystem")
        if 0 <= code <= 65536 and eco in order:
            lut[code] = order.index(eco)
    return lut


def _ecosystem_order(legend_table: list[dict]) -> list[str]:
    from .labels import ECOSYSTEM_NAMES

    present = {str(r.get("ecosystem")) for r in legend_table if r.get("ecosystem")}
    known = [e for e in ECOSYSTEM_NAMES if e in present]
    return known + sorted(present - set(known)) + [UNCLASSIFIED]


def _accumulate(run, src, keys: list[str], lut: np.ndarray, n: int, chunk: int):
    """Per-key sums (float64 (n,)), class-area sums (m², (n,)) and the valid area of GEP-R (m²), window by window."""
    import rasterio
    from rasterio.windows import Window

    sums = {k: np.zeros(n) for k in keys}
    area = np.zeros(n)
    row_area = np.asarray(run.grid.row_pixel_area_m2, dtype=np.float64)
    dss = {k: rasterio.open(run.rasters[k]["path"]) for k in keys}
    try:
        for r0, r1, c0, c1 in run.grid.block_windows(chunk):
            codes = np.asarray(src.read(r0, r1, c0, c1), dtype=np.int64)
            idx = lut[np.where(codes < 0, 65537, np.minimum(codes, 65536))]
            a = np.broadcast_to(row_area[r0:r1, None], idx.shape)
            has_class = codes >= 0
            area += np.bincount(idx[has_class], weights=a[has_class], minlength=n)
            for k, ds in dss.items():
                v = ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0)).astype(np.float64)
                ok = np.isfinite(v)
                sums[k] += np.bincount(idx[ok], weights=v[ok], minlength=n)
    finally:
        for ds in dss.values():
            ds.close()
    return sums, area


def ecosystem_matrix(run, keys: list[str] | None = None, *, chunk: int = 1024) -> dict:
    """Value per ecosystem type of every value raster of a finished run (exact pixel sums by land-cover class).

    Parameters
    ----------
    run : gep_raster.analysis.change.RunInfo
        The run (:func:`gep_raster.analysis.change.load_run`).
    keys : list of str, optional
        Raster keys to split (default: GEP-R, every regulating-service value raster, then EPV, ECV and GEP when
        the run has them), each in yuan/a per pixel.
    chunk : int, default 1024
        Window side in pixels (memory about (1 + len(keys)) × chunk² × 8 bytes); the sums do not depend on it
        beyond float summation order.

    Returns
    -------
    dict
        ``ecosystems``: column keys (ecosystem types of the legend present in it, in the order forest, shrub,
        grassland, wetland, cropland, urban, water, bare, others, then ``"_unclassified"``); ``rows``: key ->
        ``{"values": [yuan/a per column], "total": yuan/a, "manifest_total": yuan/a or None, "rel_diff": float}``;
        ``area_km2``: land-cover area per column (km², true pixel areas); ``max_rel_diff``: the largest
        ``rel_diff``; ``method``: a sentence for the report; ``notes``: checksum notes.

    Raises
    ------
    MatrixUnavailable
        The configuration cannot be rebuilt, the land cover cannot be opened or read, or a land-cover file
        differs from the run's (sha256). Other errors of the reader are turned into this one with their message.

    Notes
    -----
    Source of the class → ecosystem mapping: ``manifest["legend"]["table"]`` (the legend the run used).
    """
    legend = list((run.manifest.get("legend") or {}).get("table") or [])
    if not legend:
        raise MatrixUnavailable(f"{run.path}/manifest.json: the legend table is missing")
    keys = list(keys) if keys is not None else default_keys(run)
    try:
        src, _ = _land_cover_source(run)
        notes = _check_checksums(run, list(src.paths))
        order = _ecosystem_order(legend)
        sums, area = _accumulate(run, src, keys, _lookup(legend, order), len(order), chunk)
    except MatrixUnavailable:
        raise
    except (GepError, OSError, ValueError) as exc:
        raise MatrixUnavailable(f"the run's land cover cannot be read again ({exc})") from None
    totals = run.manifest.get("totals") or {}
    rows = {}
    for k in keys:
        tot = float(sums[k].sum())
        mt = (totals.get(k) or {}).get("sum")
        rel = abs(tot - mt) / abs(mt) if mt not in (None, 0) else (0.0 if mt == 0 and tot == 0 else None)
        rows[k] = {"values": [float(x) for x in sums[k]], "total": tot, "manifest_total": mt, "rel_diff": rel}
    diffs = [r["rel_diff"] for r in rows.values() if r["rel_diff"] is not None]
    return {"ecosystems": order, "rows": rows, "area_km2": [float(x) / 1e6 for x in area],
            "max_rel_diff": max(diffs) if diffs else None, "notes": notes, "chunk": int(chunk),
            "method": "pixel sums of the value rasters by land-cover class (the run's land cover re-read with its "
                      "config and scenario edits, sha256 checked), classes mapped to ecosystem types by the run's "
                      "legend"}


def default_keys(run) -> list[str]:
    """GEP-R, the regulating-service value rasters, then EPV, ECV and GEP (those the run has)."""
    econ = [k for k in ("provisioning_yuan", "cultural_yuan", "gep_yuan") if k in run.rasters]
    return ["gep_r_yuan"] + list(run.value_keys) + econ
