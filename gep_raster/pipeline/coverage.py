"""Stages ``coverage`` and ``economic_prepass``: the exact polygon coverage of every layer on the reference grid
(:class:`gep_raster.accounts.zonal.CoverageIndex`, cached by content hash in ``processing.coverage_cache``), the coverage of
each parent ∩ union(its children) for the nesting identity, and the allocation denominators of the economic
accounts (:mod:`gep_raster.accounts.economic`).
"""
from __future__ import annotations

import logging

from ..accounts.layers import assign_parents
from .state import RunState

log = logging.getLogger("gep_raster")


def _index(st: RunState, gdf, label: str):
    """Exact coverage index of a layer, reused from the cache when the polygons and grid are the same (content
    hash: CoverageIndex.cache_key); a damaged cache file is rebuilt."""
    from ..accounts.zonal import CoverageIndex

    cfg = st.cfg
    cache = cfg.resolve(cfg.processing.coverage_cache) if cfg.processing.coverage_cache else st.state_dir / "coverage"
    try:
        return CoverageIndex.build_cached(gdf, st.grid, cache, layer_name=label)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("coverage cache %s unusable (%s); rebuilding", cache, exc)
        return CoverageIndex.build(gdf, st.grid, layer_name=label)


def coverage(st: RunState) -> None:
    """Stage ``coverage``. Sets ``indices`` (layer name -> index; ``__nest__<child>`` -> index of the parents'
    parts covered by that child layer), ``parents_of`` (child layer -> parent row per child polygon) and
    ``nest_idx`` (child layer -> (index or None, parent rows it covers))."""
    for name, layer in st.layers.items():
        st.indices[name] = _index(st, layer.gdf, name)
    for name, layer in st.layers.items():
        parent_name = layer.config.nests_in
        if parent_name is None:
            continue
        parent = st.layers[parent_name]
        st.parents_of[name] = assign_parents(layer, parent)
        cov = _nested_parts(layer, parent, st.parents_of[name])
        idx = _index(st, cov, f"{parent_name}∩{name}") if len(cov) else None
        st.nest_idx[name] = (idx, cov.index.to_numpy())
        if idx is not None:
            st.indices[f"__nest__{name}"] = idx


def _nested_parts(layer, parent, parents):
    """GeoDataFrame of parent ∩ union(children assigned to it), one row per parent (index: parent row), empty
    intersections dropped."""
    import geopandas as gpd
    import shapely

    geoms = []
    kids_all = layer.gdf.geometry.to_numpy()
    for p, pgeom in enumerate(parent.gdf.geometry.to_numpy()):
        kids = kids_all[parents == p]
        u = shapely.union_all(kids) if len(kids) else shapely.Polygon()
        geoms.append(shapely.intersection(pgeom, u))
    cov = gpd.GeoDataFrame({"i": range(len(geoms))}, geometry=geoms, crs=parent.gdf.crs)
    return cov[~cov.geometry.is_empty]


def economic_prepass(st: RunState) -> None:
    """Stage ``economic_prepass``: land cover (and weight rasters) read once more to sum the allocation
    denominators per unit; warns of value left unallocated."""
    st.econ.compute_denominators(st.sources["lc"], st.sources, st.indices[st.econ.layer_name])
    st.econ.warn_unallocated()
