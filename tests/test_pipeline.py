"""End-to-end runs on a tiny synthetic dataset: outputs, identities, chunk independence, resume."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import rasterio

from gep_raster.config import load_config
from gep_raster.pipeline import run
from gep_raster.grid.run_inputs import open_inputs, reference_grid
from gep_raster.services import ServiceModel
from gep_raster.tables import PriceBook, load_legend
from gep_raster.services.registry import required_legend_columns


def _model_inputs(cfg):
    legend = load_legend(cfg, required_legend_columns(cfg))
    book = PriceBook.from_config(cfg)
    grid = reference_grid(cfg)
    model = ServiceModel.from_config(cfg, legend, book, cell_size=grid.res[0], geographic=False)
    return grid, model, open_inputs(cfg, grid, model.input_keys(), model.input_requests())


def numpy_vs_dask(cfg, chunkings):
    """numpy path and dask path (several chunkings) of the same run; returns max abs diff per chunking."""
    import dask
    import dask.array as da

    from gep_raster.terrain.routing import route
    from gep_raster.services.base import ROUTING_PRODUCTS, TERRAIN_KEYS

    grid, model, src = _model_inputs(cfg)
    dem = src["dem"].read_all()
    method, opts = model.routing_request()
    routed = route(dem, grid.transform, method=method, **opts)
    derived = set(TERRAIN_KEYS) | set(ROUTING_PRODUCTS)
    arrays = {k: src[k].read_all() for k in model.input_keys() if k not in derived}
    arrays.update(model.terrain_numpy(dem, grid.res, filled_dem=routed["filled_dem"]))
    arrays.update({k: v for k, v in routed.items() if k in model.input_keys()})
    ref = model.compute_numpy(arrays, grid.row_pixel_area_m2)
    results = {}
    for ch in chunkings:
        chunks = da.core.normalize_chunks(ch, shape=grid.shape)
        darr = {k: src[k].to_dask(chunks) for k in model.input_keys() if k not in derived}
        darr.update(model.terrain_dask(src["dem"].to_dask(chunks), grid.res,
                                       filled_dem=da.from_array(routed["filled_dem"], chunks=chunks)))
        darr.update({k: da.from_array(v, chunks=chunks) for k, v in routed.items() if k in model.input_keys()})
        with dask.config.set(scheduler="threads"):
            stacked = model.compute_dask(darr, grid.row_pixel_area_m2).compute()
        for i, k in enumerate(model.output_keys):
            a, b = ref[k], stacked[i]
            assert np.array_equal(np.isnan(a), np.isnan(b)), (ch, k)
            assert np.array_equal(a[~np.isnan(a)], b[~np.isnan(b)]), (ch, k, np.nanmax(np.abs(a - b)))
        results[ch] = True
    return results


def test_numpy_equals_dask_for_odd_chunkings(tiny):
    cfg = load_config(tiny)
    numpy_vs_dask(cfg, [(7, 5), (16, 16), (13, 50), (40, 50), (3, 11)])


@pytest.fixture
def tiny_run(tiny):
    cfg = load_config(tiny)
    return run(cfg, progress=False), cfg


def test_outputs_listed_in_manifest_exist_and_are_cogs(tiny_run):
    res, cfg = tiny_run
    m = json.loads(res.manifest_path.read_text())
    kinds = {o["kind"] for o in m["outputs"]}
    assert {"physical", "value", "gep_r", "table", "figure"} <= kinds
    for o in m["outputs"]:
        p = res.output_dir / o["path"]
        assert p.exists(), o["path"]
        assert {"path", "service", "kind", "unit"} <= set(o)
        if o["kind"] == "table":
            assert o["layer"] in ("county", "township", "special_units")
        if p.suffix == ".tif":
            with rasterio.open(p) as ds:
                assert ds.profile["tiled"] and ds.compression.name.lower() == "deflate"
                assert np.isnan(ds.nodata)
                assert ds.tags(1)["units"] == o["unit"]
                assert ds.descriptions[0]
                assert ds.tags()["run_hash"] == m["run_hash"]
                assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    # provenance
    assert m["config"]["name"] == "tiny"
    assert {p["key"] for p in m["prices"]} >= {"water_conservation.reservoir_cost", "carbon_sequestration.co2_price"}
    assert all(p["source"] and p["price_year"] for p in m["prices"])
    assert m["package_versions"]["numpy"]
    assert any(k.endswith("lc.tif") for k in m["input_checksums"])
    assert {"prepare", "compute_write", "tables"} <= set(m["timings_s"])
    # no temp files left behind
    leftovers = [p for p in res.output_dir.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_table_totals_equal_raster_sums_and_townships_equal_county(tiny_run):
    res, cfg = tiny_run
    county = pd.read_csv(res.output_dir / "tables/county.csv", dtype={"county_code": str})
    towns = pd.read_csv(res.output_dir / "tables/township.csv", dtype={"town_code": str})
    assert list(towns["town_code"]) == ["330000001", "330000002"]  # ids keep their original name and type
    assert "town_name" in towns and "county_name" in county
    for col in ("water_conservation_m3", "soil_retention_yuan", "carbon_sequestration_tco2", "gep_r_yuan"):
        assert towns[col].sum() == pytest.approx(county[col].iloc[0], rel=1e-6)
    chk = res.manifest["hierarchy_checks"][0]
    assert chk["ok"] and chk["n_children"] == 2
    # the county covers the grid minus a 15 m (half-pixel) margin: its total equals the raster sum over the
    # grid minus half of every edge pixel (quarter for corners), computed here from the GeoTIFF itself
    with rasterio.open(res.output_dir / "rasters/gep_r_yuan.tif") as ds:
        g = ds.read(1).astype(np.float64)
    wgt = np.ones_like(g)
    wgt[0, :] *= 0.5
    wgt[-1, :] *= 0.5
    wgt[:, 0] *= 0.5
    wgt[:, -1] *= 0.5
    expected = np.nansum(g * wgt)
    assert county["gep_r_yuan"].iloc[0] == pytest.approx(expected, rel=1e-6)
    # GEP-R column = sum of the service value columns
    vals = [c for c in county.columns if c.endswith("_yuan") and c != "gep_r_yuan"]
    # (per-pixel GEP-R is stored in float32: the identity holds to float32 rounding)
    assert county[vals].sum(axis=1).iloc[0] == pytest.approx(county["gep_r_yuan"].iloc[0], rel=1e-7)


def test_sub_pixel_special_unit_gets_its_share(tiny_run):
    res, cfg = tiny_run
    units = pd.read_csv(res.output_dir / "tables/special_units.csv")
    # the unit is a 10 m x 10 m square inside pixel (row 9, col 10): 1/9 of that pixel
    with rasterio.open(res.output_dir / "rasters/gep_r_yuan.tif") as ds:
        px = ds.read(1)[9, 10]
    assert units["gep_r_yuan"].iloc[0] == pytest.approx(px / 9.0, rel=1e-5)
    assert units["area_km2"].iloc[0] == pytest.approx(1e-4)


def test_rerun_resumes_and_gives_identical_outputs(tiny_run):
    res, cfg = tiny_run
    before = {p.name: p.read_bytes() for p in (res.output_dir / "rasters").rglob("*.tif")}
    res2 = run(cfg, progress=False)
    assert res2.manifest["resumed_rasters"] is True
    after = {p.name: p.read_bytes() for p in (res.output_dir / "rasters").rglob("*.tif")}
    assert before == after
    t1 = pd.read_csv(res.output_dir / "tables/county.csv")
    assert t1["gep_r_yuan"].iloc[0] == pytest.approx(res.tables["county"]["gep_r_yuan"].iloc[0], rel=1e-12)


def test_chunk_size_does_not_change_results(tiny):
    outs = []
    for chunk, name in ((64, "a"), (1024, "b")):
        cfg = load_config(tiny, overrides={"output": {"dir": f"out_{name}", "chunk_size": chunk}})
        outs.append(run(cfg, progress=False))
    for p in (outs[0].output_dir / "rasters").rglob("*.tif"):
        q = outs[1].output_dir / p.relative_to(outs[0].output_dir)
        a, b = rasterio.open(p).read(1), rasterio.open(q).read(1)
        np.testing.assert_array_equal(a, b)


def test_mfd_ls_method_runs_end_to_end(tiny):
    """services.soil_retention.routing = mfd: the pipeline routes with InVEST's MFD and records it."""
    from gep_raster.terrain.routing import upslope_cells

    cfg = load_config(tiny, overrides={"services": {"soil_retention": {"routing": "mfd"}},
                                       "output": {"dir": "out_mfd"}})
    res = run(cfg, progress=False)
    (info,) = res.manifest["routing"]
    assert info["method"] == "mfd" and info["bands"][:3] == ["upslope", "filled_dem", "flow_aspect"]
    d8 = run(load_config(tiny, overrides={"output": {"dir": "out_d8"}}), progress=False)
    a = rasterio.open(res.output_dir / "rasters/intermediate/ls_factor.tif").read(1)
    b = rasterio.open(d8.output_dir / "rasters/intermediate/ls_factor.tif").read(1)
    assert np.isfinite(a).sum() == np.isfinite(b).sum()
    assert not np.array_equal(a[np.isfinite(a)], b[np.isfinite(b)])  # MFD spreads flow: other LS somewhere
    dem = rasterio.open(tiny.parent / "dem.tif").read(1)
    cells = upslope_cells(dem, rasterio.open(tiny.parent / "dem.tif").transform, method="mfd")
    assert info["max_upslope_cells"] == pytest.approx(float(np.nanmax(cells)))
