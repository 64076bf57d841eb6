"""What the stages of one run share: :class:`RunState` (filled stage by stage) and :class:`Journal` (the resume
record of the raster stage in ``<output>/.gep_state``).

The block journal itself (which blocks are written, their contributions to the sums) is kept by
:class:`gep_raster.outputs.block_store.BlockStore`; :class:`Journal` records a *finished* raster stage: its run hash,
layout, the fingerprints of the published rasters and the sums, so that a rerun of an identical run skips the
computation and rebuilds tables, figures and manifest from it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Journal:
    """The resume record of a run's raster stage.

    Parameters
    ----------
    state_dir : Path
        ``<output>/.gep_state``.
    """

    state_dir: Path

    @property
    def state_file(self) -> Path:
        return self.state_dir / "rasters.json"

    @property
    def sums_file(self) -> Path:
        return self.state_dir / "sums.npz"

    def finished(self, run_hash: str, layout: str, paths: dict[str, Path]) -> bool:
        """True if the rasters of this run hash and layout are complete and unchanged (``paths``: output key ->
        published file, every one present with the fingerprint recorded when it was written)."""
        from ..outputs.block_store import output_fingerprint

        if not (self.state_file.exists() and self.sums_file.exists()):
            return False
        try:
            st = json.loads(self.state_file.read_text())
            return (st.get("run_hash") == run_hash and st.get("layout") == layout
                    and all(p.exists() and output_fingerprint(p) == st["fingerprint"].get(k) for k, p in paths.items()))
        except (OSError, ValueError, KeyError):
            return False

    def load(self) -> dict[str, Any]:
        """The record of a finished raster stage: ``sums`` and ``valid_area`` (layer -> array), ``totals`` and
        ``valid_pixels`` (output key -> number), ``routing`` and ``execution`` (manifest records)."""
        st = json.loads(self.state_file.read_text())
        z = np.load(self.sums_file)
        return {"sums": {k[len("sums__"):]: z[k] for k in z.files if k.startswith("sums__")},
                "valid_area": {k[len("valid__"):]: z[k] for k in z.files if k.startswith("valid__")},
                "totals": dict(zip(st["output_keys"], z["totals"])),
                "valid_pixels": dict(zip(st["output_keys"], z["valid_pixels"].tolist())),
                "routing": st.get("routing"), "execution": st.get("execution")}

    def save(self, sink, *, run_hash: str, layout: str, routing, execution: dict, paths: dict[str, Path]) -> None:
        """Record a finished raster stage (atomically: sums first, then the state file that points at them)."""
        from ..outputs.block_store import output_fingerprint
        from ..outputs.io_write import atomic_path, atomic_write_json

        with atomic_path(self.sums_file, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, totals=sink.totals, valid_pixels=sink.valid_pixels,
                         **{f"sums__{k}": v for k, v in sink.sums.items()},
                         **{f"valid__{k}": v for k, v in sink.valid_area.items()})
        atomic_write_json(self.state_file, {"run_hash": run_hash, "layout": layout, "output_keys": sink.okeys,
                                            "routing": routing, "execution": execution,
                                            "fingerprint": {k: output_fingerprint(p) for k, p in paths.items()}})


@dataclass
class RunState:
    """Everything one run's stages hand on to the next; each stage reads what earlier ones set and sets its own
    fields (named after the stage that sets them below).

    The arrays held here are small (per-polygon sums, histograms); rasters stay on disk or in dask graphs.
    """

    cfg: Any  # RunConfig
    timer: Any  # provenance.StageTimer
    workers: int | None = None
    progress: bool = True
    force: bool = False
    client: Any = None
    preflight: dict | None = None
    out_dir: Path = None
    state_dir: Path = None
    journal: Journal = None
    # prepare
    legend: Any = None
    book: Any = None
    grid: Any = None
    scan: int = 0
    nthreads: int = 1
    lc_source: Any = None
    model: Any = None
    keys: list = field(default_factory=list)
    sources: dict = field(default_factory=dict)
    layers: dict = field(default_factory=dict)
    econ: Any = None
    units_path: Path | None = None
    checksums: dict = field(default_factory=dict)
    gdal_options: dict = field(default_factory=dict)  # GDAL HTTP options in force (processing.remote)
    run_hash: str = ""
    chunk: int = 0
    chunk_info: dict = field(default_factory=dict)
    layout: str = ""
    outputs: list = field(default_factory=list)
    written: list = field(default_factory=list)
    service_keys: list = field(default_factory=list)
    zonal_keys: list = field(default_factory=list)
    rel_path: dict = field(default_factory=dict)
    # legend_check
    hist: dict = field(default_factory=dict)
    class_area: dict = field(default_factory=dict)
    # coverage
    indices: dict = field(default_factory=dict)
    nest_idx: dict = field(default_factory=dict)
    parents_of: dict = field(default_factory=dict)
    # routing, compute_write, finalize_rasters (or the journal of a finished run)
    resumed: bool = False
    routed: dict = field(default_factory=dict)
    routing_info: list | None = None
    store: Any = None  # block_store.BlockStore of the written outputs
    sink: Any = None  # block_sink.BlockSink that summed the blocks
    execution: dict | None = None
    totals: dict = field(default_factory=dict)
    valid_pixels: dict = field(default_factory=dict)
    sums: dict = field(default_factory=dict)
    valid_area: dict = field(default_factory=dict)
    figure_job: Any = None
    # tables
    tables: dict = field(default_factory=dict)
    hierarchy: list = field(default_factory=list)
    manifest_outputs: list = field(default_factory=list)
    economic_rules: dict = field(default_factory=dict)

    def output_paths(self) -> dict[str, Path]:
        """Output key -> published file of every written output."""
        return {o.key: self.out_dir / self.rel_path[o.key] for o in self.written}
