"""Accounts: per-polygon tables of physical quantities, values, GEP-R (and GEP), and nesting checks.

Sums come from exact coverage fractions (:mod:`gep_raster.accounts.zonal`): a pixel cut by a polygon
edge counts by its covered fraction, a polygon smaller than a pixel still gets its share, and
overlapping layers (special units over townships) are each complete because every layer has
its own coverage index.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from ..errors import VectorError
from ..grid import RefGrid
from ..vector_io import read_vector

if TYPE_CHECKING:
    from ..config import LayerConfig, RunConfig

#: relative tolerance of the nesting identity (children sum = parent ∩ union(children))
NESTING_RTOL = 1e-6


@dataclass
class Layer:
    """A polygon layer of the run: its config, the GeoDataFrame in the grid CRS (original fields kept) and path."""

    name: str
    config: LayerConfig
    gdf: gpd.GeoDataFrame  # in the grid CRS, original columns kept
    path: str


def load_layer(cfg: RunConfig, name: str, grid: RefGrid) -> Layer:
    """Read a polygon layer and bring it to the grid CRS.

    Raises
    ------
    VectorError
        The file cannot be read, has no CRS, lacks the id or name field, has duplicate ids,
        or holds non-polygon geometries. The message names the file and the field.
    """
    lc: LayerConfig = cfg.layers[name]
    path = cfg.resolve(lc.path)
    gdf = read_vector(path, f"layers.{name}", layer=lc.layer)
    for key, field in (("id_field", lc.id_field), ("name_field", lc.name_field)):
        if field not in gdf.columns:
            raise VectorError(f"layers.{name}.{key}: field '{field}' not found in {path} "
                              f"(fields: {[c for c in gdf.columns if c != 'geometry']})")
    if gdf.crs is None:
        raise VectorError(f"layers.{name}: {path} has no CRS (.prj missing?); define it before running")
    if len(gdf) == 0:
        raise VectorError(f"layers.{name}: {path} holds no features")
    if gdf[lc.id_field].duplicated().any():
        dups = gdf.loc[gdf[lc.id_field].duplicated(), lc.id_field].tolist()
        raise VectorError(f"layers.{name}.id_field: duplicate ids {dups[:10]} in field '{lc.id_field}' of {path}")
    empty = gdf.geometry.isna() | gdf.geometry.is_empty
    if empty.any():
        raise VectorError(f"layers.{name}: feature(s) {gdf.loc[empty, lc.id_field].tolist()[:10]} of {path} have an "
                          "empty or null geometry; remove them or give them their polygon")
    types = set(gdf.geom_type.dropna())
    if not types <= {"Polygon", "MultiPolygon"}:
        raise VectorError(f"layers.{name}: {path} holds {sorted(types)} geometries; polygons are needed")
    bad = ~gdf.geometry.is_valid
    if bad.any():
        gdf = gdf.copy()
        gdf.loc[bad, "geometry"] = gdf.geometry[bad].make_valid()
        gdf.attrs["repaired_ids"] = gdf.loc[bad, lc.id_field].tolist()  # reported by gep validate
    from pyproj import CRS

    if CRS.from_user_input(gdf.crs) != CRS.from_user_input(grid.crs.to_wkt()):
        gdf = gdf.to_crs(grid.crs.to_wkt())
    return Layer(name, lc, gdf, str(path))


def polygon_area_km2(gdf: gpd.GeoDataFrame, grid: RefGrid) -> np.ndarray:
    """Geometric area of each polygon in km2 (geodesic on the ellipsoid for geographic CRSs)."""
    if grid.is_geographic:
        from pyproj import CRS, Geod

        ell = CRS.from_user_input(grid.crs.to_wkt()).ellipsoid
        geod = Geod(a=ell.semi_major_metre, b=ell.semi_minor_metre)
        return np.array([abs(geod.geometry_area_perimeter(g)[0]) / 1e6 for g in gdf.geometry])
    unit = grid.crs.linear_units_factor[1] if grid.crs.linear_units_factor else 1.0
    return gdf.geometry.area.to_numpy() * unit * unit / 1e6


def build_table(layer: Layer, grid: RefGrid, columns: list[str], sums: np.ndarray, valid_area_m2: np.ndarray,
                covered_area_m2: np.ndarray) -> gpd.GeoDataFrame:
    """Account table of one layer.

    Parameters
    ----------
    columns : list of str
        Output keys summed (e.g. ``water_conservation_m3``, ``..._yuan``, ``gep_r_yuan``).
    sums : float64 (n_polygons, len(columns))
        Coverage-weighted sums (physical units per year, or yuan per year).
    valid_area_m2, covered_area_m2 : float64 (n_polygons,)
        Area with valid GEP-R pixels, and area of polygon ∩ grid, m2.

    Returns
    -------
    GeoDataFrame with the id and name fields under their original names, then ``area_km2``
    (polygon area), ``grid_area_km2``, ``valid_area_km2``, one column per output key, and
    ``gep_r_yuan_per_km2`` = GEP-R / valid_area_km2.
    """
    lc = layer.config
    df = pd.DataFrame({lc.id_field: layer.gdf[lc.id_field].to_numpy(),
                       lc.name_field: layer.gdf[lc.name_field].to_numpy()})
    if lc.name_field == lc.id_field:
        df = df.iloc[:, :1]
    df["area_km2"] = polygon_area_km2(layer.gdf, grid)
    df["grid_area_km2"] = covered_area_m2 / 1e6
    df["valid_area_km2"] = valid_area_m2 / 1e6
    for j, col in enumerate(columns):
        df[col] = sums[:, j]
    with np.errstate(invalid="ignore", divide="ignore"):
        df["gep_r_yuan_per_km2"] = np.where(df["valid_area_km2"] > 0,
                                            df["gep_r_yuan"] / df["valid_area_km2"], np.nan)
    return gpd.GeoDataFrame(df, geometry=layer.gdf.geometry.to_numpy(), crs=layer.gdf.crs)


def assign_parents(child: Layer, parent: Layer) -> np.ndarray:
    """Index of the parent polygon that holds the largest part of each child (-1 if none)."""
    out = np.full(len(child.gdf), -1, dtype=np.int64)
    pg = parent.gdf.geometry.to_numpy()
    for i, g in enumerate(child.gdf.geometry.to_numpy()):
        inter = np.array([g.intersection(p).area for p in pg])
        if inter.size and inter.max() > 0:
            out[i] = int(inter.argmax())
    return out


def nesting_report(child: Layer, parent: Layer, columns: list[str], child_sums: np.ndarray,
                   parent_sums: np.ndarray, covered_sums: np.ndarray, parents_of_child: np.ndarray,
                   child_area_m2: np.ndarray, union_area_m2: np.ndarray) -> list[dict]:
    """Check that the children of each parent add up.

    ``covered_sums[p]`` is the sum over parent p ∩ union(children of p). For each parent and
    column the report gives the parent total, the children's sum, the covered-part total and
    the uncovered remainder; ``ok`` is True when children sum = covered-part total within
    :data:`NESTING_RTOL` (it fails when children overlap each other or spill over the parent).
    """
    rows = []
    pid, pname = parent.config.id_field, parent.config.name_field
    for p in range(len(parent.gdf)):
        kids = np.flatnonzero(parents_of_child == p)
        rec = {"parent_layer": parent.name, "child_layer": child.name,
               "parent_id": _py(parent.gdf[pid].iloc[p]), "parent_name": _py(parent.gdf[pname].iloc[p]),
               "n_children": int(kids.size), "columns": {}}
        worst = 0.0
        for j, col in enumerate(columns):
            csum = float(child_sums[kids, j].sum())
            cov = float(covered_sums[p, j])
            tot = float(parent_sums[p, j])
            denom = max(abs(cov), 1e-300)
            rel = abs(csum - cov) / denom if (csum != 0 or cov != 0) else 0.0
            worst = max(worst, rel)
            rec["columns"][col] = {"parent_total": tot, "children_sum": csum, "covered_part_total": cov,
                                   "uncovered_remainder": tot - cov, "rel_diff_children_vs_covered": rel}
        kids_area = float(child_area_m2[kids].sum())
        rec["children_area_km2"] = kids_area / 1e6
        rec["union_area_km2"] = float(union_area_m2[p]) / 1e6
        rec["overlap_or_spill_km2"] = (kids_area - float(union_area_m2[p])) / 1e6
        rec["max_rel_diff"] = worst
        rec["ok"] = bool(worst <= NESTING_RTOL)
        gep = rec["columns"].get("gep_r_yuan")
        if gep:
            rec["covered_share_of_parent"] = (gep["covered_part_total"] / gep["parent_total"]
                                              if gep["parent_total"] else None)
        rows.append(rec)
    return rows


def _py(v):
    return v.item() if hasattr(v, "item") else v


def roll_up(child_values: np.ndarray, parents_of_child: np.ndarray, n_parents: int) -> np.ndarray:
    """Sum child rows into their parents.

    Parameters
    ----------
    child_values : float64 (n_children, k)
        Values per child polygon (e.g. yuan/a).
    parents_of_child : int64 (n_children,)
        Parent position of each child (:func:`assign_parents`; -1 = no parent, not counted).
    n_parents : int

    Returns
    -------
    float64 (n_parents, k)
        ``out[p] = Σ child_values[c]`` over the children c with ``parents_of_child[c] == p``.
    """
    child_values = np.asarray(child_values, np.float64)
    out = np.zeros((n_parents, child_values.shape[1]), np.float64)
    ok = parents_of_child >= 0
    np.add.at(out, parents_of_child[ok], child_values[ok])
    return out


def add_gep_columns(tab: pd.DataFrame) -> pd.DataFrame:
    """Add ``gep_yuan`` = GEP-R + EPV + ECV and ``gep_yuan_per_km2`` (per valid km2) to an account table.

    Parameters
    ----------
    tab : DataFrame
        An account table (:func:`build_table`) holding ``gep_r_yuan``, ``provisioning_yuan`` and
        ``cultural_yuan`` (yuan/a).

    Returns
    -------
    DataFrame
        The table with the two columns added (also in ``tab``), columns ordered: id/name/areas, services, ``gep_r_yuan``,
        ``provisioning_yuan``, ``cultural_yuan``, ``gep_yuan``, item columns (``epv_*``, ``ecv_*``),
        ``gep_r_yuan_per_km2``, ``gep_yuan_per_km2``, geometry.
    """
    tab["gep_yuan"] = tab["gep_r_yuan"] + tab["provisioning_yuan"] + tab["cultural_yuan"]
    with np.errstate(invalid="ignore", divide="ignore"):
        tab["gep_yuan_per_km2"] = np.where(tab["valid_area_km2"] > 0, tab["gep_yuan"] / tab["valid_area_km2"], np.nan)
    cols = [c for c in tab.columns if c != "geometry"]
    head = ["gep_r_yuan", "provisioning_yuan", "cultural_yuan", "gep_yuan"]
    items = [c for c in cols if c.startswith(("epv_", "ecv_"))]
    tail = ["gep_r_yuan_per_km2", "gep_yuan_per_km2"]
    rest = [c for c in cols if c not in head + items + tail]
    order = rest + head + items + tail + (["geometry"] if "geometry" in tab.columns else [])
    return tab[order]
