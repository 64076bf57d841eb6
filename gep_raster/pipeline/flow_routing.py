"""Stage ``routing``: flow accumulation (and the filled DEM) for the LS factor and the routed services, whole DEM
or per hydrological unit within the memory budget, to a GeoTIFF in ``.gep_state/routing`` that the blocks read
(:mod:`gep_raster.terrain.hydro_units`, :mod:`gep_raster.terrain.routing`). Cached by content hash of DEM, units, method and grid.
"""
from __future__ import annotations

import json
import shutil

from .state import RunState

#: manifest description of each routing method (gep_raster.terrain.routing.route)
ROUTING_DESCRIPTION = {
    "d8": "pit filling + D8 steepest descent with pygeoprocessing's plateau rules (InVEST SDR 3.20 D8), cell counts",
    "mfd": "pit filling + pygeoprocessing MFD (4-bit proportional weights; InVEST SDR 3.20 default), cell counts",
    "d8_flood": "priority-flood fill (Wang & Liu 2006; pyflwdir's algorithm, identical D8) + the flood's D8 "
                "(each cell to the cell that flooded it; not steepest descent), cell counts",
}


def routing(st: RunState) -> None:
    """Stage ``routing`` (only when the model needs it). Sets ``routed`` (product key -> (GeoTIFF, band)) and
    ``routing_info`` (manifest record; ``reused`` when read from the cache)."""
    from ..terrain.hydro_units import load_units, route_to_raster, routing_key
    from ..outputs.io_write import atomic_write_json

    cfg, grid, checksums = st.cfg, st.grid, st.checksums
    units = units_sha = None
    if st.units_path is not None:
        units = load_units(st.units_path, grid, cfg.inputs.hydro_units.id_field)
        units_sha = checksums.get(str(st.units_path), {}).get("sha256")
    dem_sums = {k: v for k, v in checksums.items() if k in {str(f) for f in st.sources["dem"].paths}}
    method, opts = st.model.routing_request()
    rkey = routing_key(dem_sums, method, opts, units_sha, grid)
    rpath = st.state_dir / "routing" / f"routing-{rkey}.tif"
    info_path = rpath.with_suffix(".json")
    if not st.force and rpath.exists() and info_path.exists():  # cached by content hash (resumed run)
        info = json.loads(info_path.read_text())
        info["reused"] = True
    else:
        _remove_other_routings(rpath, rkey, st.force)
        info = route_to_raster(st.sources["dem"], grid, method, opts, rpath,
                               budget_mb=cfg.processing.memory_budget_mb, units=units, workers=st.nthreads)
        info.update(options=opts, description=ROUTING_DESCRIPTION[method])
        atomic_write_json(info_path, info)
    st.routed = {name: (rpath, b) for b, name in enumerate(info["bands"], start=1)}
    st.routing_info = [info]


def _remove_other_routings(rpath, rkey: str, force: bool) -> None:
    """Delete the routing of another DEM, units or method; this routing's own units folder is kept (resumed by
    route_to_raster) unless ``force``."""
    for old in rpath.parent.glob("routing-*"):
        if old.name.startswith(f"routing-{rkey}."):
            continue
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    if force:  # recompute: no unit of an interrupted routing is reused either
        shutil.rmtree(rpath.with_suffix(".units"), ignore_errors=True)
