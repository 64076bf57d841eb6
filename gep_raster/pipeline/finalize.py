"""Stage ``finalize_rasters``: each written output published from its block tiles (a VRT mosaic for the ``tiles``
layout, one COG for ``cog``) with its provenance tags (run hash, config hash, method, prices used); the GEP-R
raster first, so its figures are drawn on a thread while the others are published; then the raster stage's
journal (:class:`~gep_raster.pipeline.state.Journal`) records the finished stage.
"""
from __future__ import annotations

import shutil

from .. import faults
from .._version import __version__
from .figures import start as start_figures
from .state import RunState


def _tags(st: RunState, o, common: dict) -> dict:
    """GeoTIFF metadata of output ``o``: run identity, service, kind, units, method and the prices it used."""
    book, econ = st.book, st.econ
    prices_used = {p["key"]: p["value"] for p in book.used_records()["prices"]
                   if o.kind in ("gep_r", "gep") or p["service"] == o.service}
    if econ is not None and o.key in econ.output_keys:
        method = econ.note if o.kind != "gep" else "GEP = EPV + GEP-R + ECV; " + econ.note
        extra = {"statistics_table": str(econ.table_path), "statistics_sha256": econ.table_sha256}
    else:
        method = st.model.notes.get(o.service, "GEP-R = sum of the regulating-service value rasters")
        extra = {}
    return {**common, "service": o.service, "kind": o.kind, "units": o.unit, "method": method, **extra,
            **({"prices": prices_used} if o.kind in ("value", "gep_r", "gep") else {})}


def finalize_rasters(st: RunState) -> None:
    """Stage ``finalize_rasters``: publish every written output; starts the figure thread after GEP-R; removes the
    other layout's file of an earlier run (it would be stale)."""
    from ..outputs.block_store import TILES_SUFFIX

    cfg = st.cfg
    common = {"gep_raster_version": __version__, "run_name": cfg.name, "run_hash": st.run_hash,
              "config_sha256": cfg.config_hash(), "accounting_year": cfg.accounting_year}
    # GEP-R first: its figures are drawn on a thread (matplotlib's object API, no pyplot) while the other outputs
    # are published (GDAL work that leaves a core mostly idle)
    for o in sorted(st.written, key=lambda o: o.key != "gep_r_yuan"):
        st.store.publish(o.key, tags=_tags(st, o, common), description=o.description, units=o.unit)
        faults.hit("raster")
        if o.key == "gep_r_yuan":
            start_figures(st)
        other = st.out_dir / (o.path[:-len(".tif")] + ".vrt" if st.layout == "cog" else o.path)
        if other.exists():
            other.unlink()
            if st.layout == "cog":
                shutil.rmtree(other.with_name(other.stem + TILES_SUFFIX), ignore_errors=True)


def record(st: RunState) -> None:
    """After ``finalize_rasters``: sums and valid areas on the state; the journal records the finished raster stage;
    the block store is closed."""
    sink = st.sink
    st.sums, st.valid_area = sink.sums, sink.valid_area
    st.valid_pixels = dict(zip(sink.okeys, sink.valid_pixels.tolist()))
    st.journal.save(sink, run_hash=st.run_hash, layout=st.layout, routing=st.routing_info, execution=st.execution,
                    paths=st.output_paths())
    st.store.close()


def reload(st: RunState) -> None:
    """A finished, identical run: sums, totals, routing and execution records read back from the journal."""
    rec = st.journal.load()
    st.sums, st.valid_area = rec["sums"], rec["valid_area"]
    st.totals, st.valid_pixels = rec["totals"], rec["valid_pixels"]
    st.routing_info, st.execution = rec["routing"], rec["execution"]
    st.resumed = True
