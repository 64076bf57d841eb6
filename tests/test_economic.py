"""Provisioning (EPV) and cultural (ECV) accounts: allocation by hand, identities, exclusion, validation.

Geometry of the ``tiny`` fixture (conftest): 40 x 50 pixels of 30 m (900 m2), x0 = 500000, y1 = 3000000.
Township 330000001 = x0+15 .. x0+700.5, township 330000002 = x0+700.5 .. x0+1485, both y1-1185 .. y1-15.
Coverage fractions therefore are: row fraction 0.5 in rows 0 and 39, 1 elsewhere; township 1 column
fraction 0.5 in column 0, 1 in columns 1..22, 0.35 in column 23 (690..700.5 m = 10.5/30); township 2
0.65 in column 23, 1 in 24..48, 0.5 in column 49. Land cover: class 2 (paddy, cropland) in columns
0..11, class 1 (forest) elsewhere, class 3 (water) in rows 18..21 (all columns), class 4 (town) in rows
0..5 x columns 40..49, pixel (0, 0) nodata. So township 2 has no cropland.
Every statistic here is invented for the test ([EX]).
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import rasterio

from gep_raster.accounts.layers import load_layer
from gep_raster.config import load_config
from gep_raster.accounts.economic import EconomicAccounts, load_statistics
from gep_raster.errors import ConfigError, TableError
from gep_raster.pipeline import run
from gep_raster.grid.run_inputs import raster_source, reference_grid
from gep_raster.tables import load_legend
from gep_raster.accounts.zonal import CoverageIndex

from conftest import REPO, write_raster

HEADER = "unit_id,account,item,value_yuan,year,source,allocate_to,weight,outside_share\n"
STATS = HEADER + """\
330000001,provisioning,agriculture,1200000,2024,test [EX],cropland,area,0.25
330000002,provisioning,agriculture,500000,2024,test [EX],cropland,area,0
330000001,provisioning,forestry,300000,2024,test [EX],forest,area,0
330000002,provisioning,forestry,600000,2024,test [EX],1,area,0
330000002,cultural,tourism,400000,2024,test [EX],forest;water,area,0.5
"""


def _with_econ(cfg_path, stats=STATS, *, exclude=True, extra="", out="out"):
    """Write the statistics next to the tiny config and add an economic_accounts section."""
    folder = cfg_path.parent
    (folder / "stats.csv").write_text(stats, encoding="utf-8")
    text = cfg_path.read_text()
    text = text.replace("output:", f"economic_accounts: {{table: stats.csv, layer: township, "
                                   f"exclude_outside_region: {str(exclude).lower()}{extra}}}\noutput:")
    text = text.replace("output: {dir: out,", f"output: {{dir: {out},")
    p = folder / f"run_{out}.yaml"
    p.write_text(text)
    return load_config(p)


def _read(res, rel):
    with rasterio.open(res.output_dir / rel) as ds:
        return ds.read(1).astype(np.float64)


def _econ(cfg):
    """EconomicAccounts of a config, with its pre-pass done; also the grid, land cover source and index."""
    legend = load_legend(cfg)
    grid = reference_grid(cfg)
    layers = {n: load_layer(cfg, n, grid) for n in cfg.layers}
    econ = EconomicAccounts.from_config(cfg, legend, layers)
    lc = raster_source(cfg, "land_cover", cfg.inputs.land_cover, grid, "categorical")
    idx = CoverageIndex.build(layers[econ.layer_name].gdf, grid, layer_name=econ.layer_name)
    sources = econ.open_weight_sources(cfg, grid)
    econ.compute_denominators(lc, sources, idx)
    return econ, grid, lc, sources, idx


# ------------------------------------------------------------------------------------------------
# end to end on the tiny fixture
# ------------------------------------------------------------------------------------------------
def test_allocation_by_hand_and_account_identities(tiny):
    cfg = _with_econ(tiny)
    res = run(cfg, progress=False)
    epv = _read(res, "rasters/value/provisioning_yuan.tif")
    ecv = _read(res, "rasters/value/cultural_yuan.tif")
    gep = _read(res, "rasters/gep_yuan.tif")
    gep_r = _read(res, "rasters/gep_r_yuan.tif")

    # --- agriculture of township 1: V = 1 200 000 x (1 - 0.25) = 900 000 yuan on its cropland.
    # Sum of f over cropland of township 1: rows (36 valid rows, row fractions 0.5+34+0.5 = 35) x columns
    # (0.5 + 11 = 11.5) = 402.5, minus the nodata pixel (0, 0) (0.5 x 0.5 = 0.25) = 402.25; D = 402.25 x 900 m2.
    # pixel (5, 5), f = 1: 900 000 x 900 / (402.25 x 900) = 2237.4145...
    assert epv[5, 5] == pytest.approx(900_000 / 402.25, rel=1e-6)
    assert epv[5, 0] == pytest.approx(0.5 * 900_000 / 402.25, rel=1e-6)  # f = 0.5 (column 0)
    assert epv[39, 0] == pytest.approx(0.25 * 900_000 / 402.25, rel=1e-6)  # f = 0.5 x 0.5 (corner)
    assert np.isnan(epv[0, 0]) and np.isnan(gep[0, 0])  # land-cover nodata
    # --- forestry on a pixel shared by the two townships, (10, 23): township 1 covers 0.35, township 2 0.65.
    # Forest weighted area, township 1: 35 (rows) x (11 + 0.35) (columns 12..23) = 397.25 pixels;
    # township 2: 35 x (0.65 + 25 + 0.5) = 915.25 minus the town block rows 0..5 x columns 40..49
    # ((0.5 + 5) x (9 + 0.5) = 52.25) = 863 pixels. Value = 300 000 x 0.35 / 397.25 + 600 000 x 0.65 / 863
    # = 264.3172 + 451.9119 = 716.2291 yuan.
    assert epv[10, 23] == pytest.approx(300_000 * 0.35 / 397.25 + 600_000 * 0.65 / 863, rel=1e-6)
    # --- tourism (cultural) of township 2 on forest + water: V = 400 000 x 0.5 = 200 000;
    # water of township 2: rows 18..21 x (0.65 + 25 + 0.5) = 104.6, plus 863 forest = 967.6 pixels.
    assert ecv[20, 30] == pytest.approx(200_000 / 967.6, rel=1e-6)
    assert ecv[5, 5] == 0.0  # township 1 has no cultural statistics
    # --- GEP pixel = GEP-R + EPV + ECV
    ok = np.isfinite(gep_r)
    np.testing.assert_allclose(gep[ok], (gep_r + epv + ecv)[ok], rtol=1e-6)

    towns = pd.read_csv(res.output_dir / "tables/township.csv", dtype={"town_code": str}).set_index("town_code")
    county = pd.read_csv(res.output_dir / "tables/county.csv").iloc[0]
    # township 1 lies inside the grid: its row is its statistics total exactly (900 000 + 300 000)
    assert towns.loc["330000001", "provisioning_yuan"] == pytest.approx(1_200_000, rel=1e-12)
    assert towns.loc["330000001", "epv_agriculture_yuan"] == pytest.approx(900_000, rel=1e-12)
    # township 2: agriculture (500 000) has no cropland to go to -> unallocated, but counted in its row
    assert towns.loc["330000002", "provisioning_yuan"] == pytest.approx(500_000 + 600_000, rel=1e-12)
    assert towns.loc["330000002", "cultural_yuan"] == pytest.approx(200_000, rel=1e-12)
    # sum over the allocation layer = table total minus outside shares: 3 000 000 - 300 000 - 200 000
    assert towns["provisioning_yuan"].sum() + towns["cultural_yuan"].sum() == pytest.approx(2_500_000, rel=1e-12)
    # the county (townships nest in it) = sum of its townships, column by column
    for col in ("provisioning_yuan", "cultural_yuan", "epv_agriculture_yuan", "epv_forestry_yuan", "ecv_tourism_yuan"):
        assert county[col] == pytest.approx(towns[col].sum(), rel=1e-12)
    # GEP = GEP-R + EPV + ECV in every row
    for t in (towns, county.to_frame().T):
        np.testing.assert_allclose(t["gep_yuan"].astype(float),
                                   (t["gep_r_yuan"] + t["provisioning_yuan"] + t["cultural_yuan"]).astype(float),
                                   rtol=1e-12)
    # the raster holds what could be located: 2 300 000 - 500 000 (unallocated) = 1 800 000 yuan of EPV
    assert np.nansum(epv) == pytest.approx(1_800_000, rel=1e-6)
    assert np.nansum(ecv) == pytest.approx(200_000, rel=1e-6)
    # the special unit (10 m x 10 m inside pixel (9, 10), cropland of township 1) gets 1/9 of that pixel
    units = pd.read_csv(res.output_dir / "tables/special_units.csv").iloc[0]
    assert units["provisioning_yuan"] == pytest.approx(900_000 / 402.25 / 9, rel=1e-5)

    m = res.manifest
    e = m["economic_accounts"]
    assert e["table"]["sha256"] == hashlib.sha256((tiny.parent / "stats.csv").read_bytes()).hexdigest()
    assert e["table"]["rows"] == 5 and e["table"]["illustrative"] is True
    assert e["exclude_outside_region"] is True
    assert e["totals"]["outside_share_yuan"] == pytest.approx(300_000 + 200_000)
    assert [(u["unit_id"], u["item"], u["counted_yuan"]) for u in e["unallocated"]] == \
        [("330000002", "agriculture", 500_000.0)]
    rule = next(r for r in e["rules"] if r["unit_id"] == "330000001" and r["item"] == "agriculture")
    assert rule["classes"] == [2] and rule["weight"] == "area"
    assert rule["denominator"] == pytest.approx(402.25 * 900, rel=1e-9)
    assert e["layer_rules"]["county"].startswith("sum of its township")
    assert e["conservation_check"]["provisioning_yuan"]["rel_diff"] < 1e-6
    assert any("ILLUSTRATIVE [EX]" in a for a in m["assumptions"])
    kinds = {o["path"]: o["kind"] for o in m["outputs"]}
    assert kinds["rasters/gep_yuan.tif"] == "gep" and kinds["rasters/value/provisioning_yuan.tif"] == "value"
    with rasterio.open(res.output_dir / "rasters/gep_yuan.tif") as ds:
        assert ds.tags()["statistics_sha256"] == e["table"]["sha256"] and ds.tags(1)["units"] == "yuan/a per pixel"
    cols = json.loads(json.dumps(next(o for o in m["outputs"] if o.get("layer") == "township")["columns"]))
    assert cols["gep_yuan"] == "yuan/a" and cols["epv_forestry_yuan"] == "yuan/a"
    # a rerun reuses the rasters and rebuilds the same tables
    res2 = run(cfg, progress=False)
    assert res2.manifest["resumed_rasters"] is True
    assert res2.tables["township"]["gep_yuan"].tolist() == res.tables["township"]["gep_yuan"].tolist()


def test_exclude_outside_region_subtracts_exactly_the_outside_share(tiny):
    cfg_in = _with_econ(tiny, exclude=True, out="out_in")
    cfg_all = _with_econ(tiny, exclude=False, out="out_all")
    a, grid, lc, _, idx = _econ(cfg_in)
    b = _econ(cfg_all)[0]
    # township rows (statistics): township 1 agriculture 1 200 000 x 0.25 = 300 000 less;
    # township 2 tourism 400 000 x 0.5 = 200 000 less; nothing else has an outside share
    diff = b.unit_values() - a.unit_values()
    np.testing.assert_allclose(diff[:, :2], [[300_000, 0], [0, 200_000]], rtol=0, atol=1e-9)
    # pixels: same denominators, so agriculture of township 1 scales by exactly 0.75 and tourism by 0.5
    args = (lc.read_all(), {}, grid.row_pixel_area_m2, idx.entries(0, grid.height, 0, grid.width),
            np.zeros(grid.shape, np.float32))
    pa, pb = a.compute_block(*args), b.compute_block(*args)
    assert pb["epv_agriculture_yuan"][5, 5] == pytest.approx(1_200_000 / 402.25, rel=1e-6)
    assert pa["epv_agriculture_yuan"][5, 5] == pytest.approx(0.75 * pb["epv_agriculture_yuan"][5, 5], rel=1e-6)
    assert pa["cultural_yuan"][20, 30] == pytest.approx(0.5 * pb["cultural_yuan"][20, 30], rel=1e-6)
    assert pa["epv_forestry_yuan"][10, 23] == pb["epv_forestry_yuan"][10, 23]  # no outside share


def test_weight_raster_allocation_by_hand(tiny):
    # weight raster = column index + 1, with nodata (-9999) at pixel (5, 6)
    h, w = 40, 50
    npp = np.tile(np.arange(1, w + 1, dtype=np.float32), (h, 1))
    npp[5, 6] = -9999.0
    write_raster(tiny.parent / "npp.tif", npp, nodata=-9999.0)
    stats = HEADER + "330000001,provisioning,agriculture,1000000,2024,test [EX],cropland,npp,0\n"
    cfg = _with_econ(tiny, stats, extra=", weight_rasters: {npp: {path: npp.tif}}")
    econ, grid, lc, sources, idx = _econ(cfg)
    # D / 900 = sum over cropland of township 1 of f x (c + 1): rows 35 x (0.5 x 1 + (2 + ... + 12) = 77.5)
    # = 2712.5, minus pixel (0, 0) (nodata land cover: 0.25 x 1) and pixel (5, 6) (nodata weight: 1 x 7)
    # = 2705.25
    assert econ.denominators[0, 0] == pytest.approx(2705.25 * 900, rel=1e-12)
    out = econ.compute_block(lc.read_all(), {"npp": sources["econ_weight.npp"].read_all()}, grid.row_pixel_area_m2,
                             idx.entries(0, h, 0, w), np.zeros((h, w), np.float32))
    epv = out["provisioning_yuan"]
    assert epv[5, 5] == pytest.approx(1_000_000 * 6 / 2705.25, rel=1e-6)  # weight 6
    assert epv[5, 6] == 0.0  # no weight there
    assert epv[10, 0] == pytest.approx(1_000_000 * 0.5 * 1 / 2705.25, rel=1e-6)  # f 0.5, weight 1
    assert np.nansum(epv.astype(np.float64)) == pytest.approx(1_000_000, rel=1e-6)


def test_numpy_block_equals_dask_for_odd_chunkings(tiny):
    import dask
    import dask.array as da

    npp = np.tile(np.linspace(0.5, 3.0, 50, dtype=np.float32), (40, 1))
    write_raster(tiny.parent / "npp.tif", npp, nodata=-9999.0)
    stats = STATS.replace("cropland,area,0.25", "cropland,npp,0.25")
    cfg = _with_econ(tiny, stats, extra=", weight_rasters: {npp: {path: npp.tif}}")
    econ, grid, lc, sources, idx = _econ(cfg)
    H, W = grid.shape
    rng = np.random.default_rng(1)
    gep_r = rng.uniform(0, 100, (H, W)).astype(np.float32)
    gep_r[3, 4] = np.nan
    ref = econ.compute_block(lc.read_all(), {"npp": sources["econ_weight.npp"].read_all()}, grid.row_pixel_area_m2,
                             idx.entries(0, H, 0, W), gep_r)
    # denominators do not depend on the pre-pass windows beyond float rounding
    D = econ.denominators.copy()
    econ.compute_denominators(lc, sources, idx, tile=7)
    np.testing.assert_allclose(econ.denominators, D, rtol=1e-12)
    econ.denominators = D
    for ch in [(7, 5), (13, 50), (3, 11), (40, 50)]:
        chunks = da.core.normalize_chunks(ch, shape=(H, W))
        stacked = da.from_array(gep_r[None], chunks=((1,),) + chunks)
        lcd, wd = econ.dask_inputs(lc, sources, chunks)
        with dask.config.set(scheduler="threads"):
            got = econ.compute_dask(stacked, 0, lcd, wd, idx, grid.row_pixel_area_m2).compute()
        for i, k in enumerate(econ.output_keys, start=1):
            assert np.array_equal(got[i], ref[k], equal_nan=True), (ch, k)
    # GEP-R NaN (3, 4) is counted as 0 where the pixel carries EPV (forest of township 1 has forestry)
    assert ref["gep_yuan"][3, 4] == pytest.approx(ref["provisioning_yuan"][3, 4], rel=1e-7)


def test_sub_pixel_unit_puts_its_whole_value_on_its_pixel(tiny):
    # allocation layer = the 10 m x 10 m special unit inside pixel (9, 10) (cropland): f A / sum(f A) = 1
    stats = HEADER + "VEP-1,provisioning,agriculture,9000,2024,test [EX],cropland,area,0\n"
    cfg = _with_econ(tiny, stats)
    cfg.economic_accounts.layer = "special_units"
    econ, grid, lc, sources, idx = _econ(cfg)
    out = econ.compute_block(lc.read_all(), {}, grid.row_pixel_area_m2, idx.entries(0, 40, 0, 50),
                             np.zeros((40, 50), np.float32))
    assert out["provisioning_yuan"][9, 10] == pytest.approx(9000, rel=1e-6)
    assert np.nansum(out["provisioning_yuan"]) == pytest.approx(9000, rel=1e-6)


# ------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------
GOOD = "330000001,provisioning,agriculture,100,2024,src,cropland,area,0"


@pytest.mark.parametrize("row, column, fragment", [
    ("330000009,provisioning,agriculture,100,2024,src,cropland,area,0", "unit_id", "'330000009' is not an id"),
    ("330000001,provisoning,agriculture,100,2024,src,cropland,area,0", "account", "not one of"),
    ("330000001,provisioning,Agri culture,100,2024,src,cropland,area,0", "item", "lower-case name"),
    ("330000001,provisioning,agriculture,abc,2024,src,cropland,area,0", "value_yuan", "not a number"),
    ("330000001,provisioning,agriculture,-5,2024,src,cropland,area,0", "value_yuan", ">= 0"),
    ("330000001,provisioning,agriculture,100,20x4,src,cropland,area,0", "year", "not an integer"),
    ("330000001,provisioning,agriculture,100,2024,,cropland,area,0", "source", "empty"),
    ("330000001,provisioning,agriculture,100,2024,src, ; ,area,0", "allocate_to", "empty allocation"),
    ("330000001,provisioning,agriculture,100,2024,src,shrub,area,0", "allocate_to", "matches no class"),
    ("330000001,provisioning,agriculture,100,2024,src,99,area,0", "allocate_to", "class code 99 is not"),
    ("330000001,provisioning,agriculture,100,2024,src,farmland,area,0", "allocate_to", "neither an ecosystem"),
    ("330000001,provisioning,agriculture,100,2024,src,cropland,npp,0", "weight", "'npp' is neither"),
    ("330000001,provisioning,agriculture,100,2024,src,cropland,area,1.5", "outside_share", "outside 0..1"),
    ("330000001,provisioning,agriculture,100,2024,src,cropland,area,", "outside_share", "not a number"),
    (GOOD, "item", "duplicate of row 1"),
])
def test_statistics_validation_names_file_row_and_column(tiny, row, column, fragment):
    cfg = load_config(tiny)
    legend = load_legend(cfg)
    p = tiny.parent / "bad_stats.csv"
    p.write_text(HEADER + GOOD + "\n" + row + "\n", encoding="utf-8")
    with pytest.raises(TableError) as ei:
        load_statistics(p, unit_ids=["330000001", "330000002"], layer_name="township", id_field="town_code",
                        legend=legend, weight_names=[])
    msg = str(ei.value)
    assert "bad_stats.csv row 2 (line 3)" in msg and f"column '{column}'" in msg and fragment in msg, msg


def test_statistics_table_level_errors(tiny):
    cfg = load_config(tiny)
    legend = load_legend(cfg)
    kw = dict(unit_ids=["330000001"], layer_name="township", id_field="town_code", legend=legend, weight_names=[])
    with pytest.raises(TableError, match="file not found"):
        load_statistics(tiny.parent / "nope.csv", **kw)
    p = tiny.parent / "s.csv"
    p.write_text("unit_id,account,item,value_yuan\n1,provisioning,a,1\n")
    with pytest.raises(TableError, match=r"s.csv: column\(s\) \['year', 'source'"):
        load_statistics(p, **kw)
    p.write_text(HEADER)
    with pytest.raises(TableError, match="holds no rows"):
        load_statistics(p, **kw)
    # several problems are reported together, one line each
    p.write_text(HEADER + "x,bad,agriculture,1,2024,s,cropland,area,0\n330000001,cultural,t,1,2024,s,,area,2\n")
    with pytest.raises(TableError) as ei:
        load_statistics(p, **kw)
    assert "4 problems" in str(ei.value) and str(ei.value).count("\n  - ") == 4
    # integer ids of a layer match their text in the table (Gura: ws_id 1)
    p.write_text(HEADER + "1,provisioning,tea,5,2024,s,2,area,0\n")
    rows = load_statistics(p, **{**kw, "unit_ids": [np.int32(7), np.int32(1)]})
    assert rows["unit"].tolist() == [1]


def test_config_errors(tiny):
    cfg = _with_econ(tiny)
    cfg.economic_accounts.layer = "villages"
    with pytest.raises(ConfigError, match="economic_accounts.layer: no layer named 'villages'"):
        _econ(cfg)
    bad = tiny.read_text().replace("output:", "economic_accounts: {table: s.csv, layer: township, "
                                              "weight_rasters: {area: {path: lc.tif}}}\noutput:")
    (tiny.parent / "bad.yaml").write_text(bad)
    with pytest.raises(ConfigError, match="economic_accounts.weight_rasters: weight raster name 'area'"):
        load_config(tiny.parent / "bad.yaml")


# ------------------------------------------------------------------------------------------------
# the shipped pipelines' illustrative tables
# ------------------------------------------------------------------------------------------------
def _check_pipeline_table(name):
    cfg = load_config(REPO / f"pipelines/{name}.yaml")
    legend = load_legend(cfg)
    ec = cfg.economic_accounts
    layer = load_layer(cfg, ec.layer, reference_grid(cfg))
    rows = load_statistics(cfg.resolve(ec.table), unit_ids=layer.gdf[layer.config.id_field].tolist(),
                           layer_name=ec.layer, id_field=layer.config.id_field, legend=legend,
                           weight_names=list(ec.weight_rasters))
    assert (rows["source"] == "ILLUSTRATIVE [EX], not real statistics").all()
    return rows


def test_sample_statistics_table_is_valid_and_illustrative():
    rows = _check_pipeline_table("sample")
    assert sorted(rows["unit_id"].unique()) == [str(331122100 + i) for i in range(6)]
    per_town = rows.groupby("unit_id")["value_yuan"].sum()
    assert (per_town > 1e7).all()  # tens of millions of yuan per township


def test_real_pipeline_statistics_tables_are_valid(shared):
    assert _check_pipeline_table("gura")["unit_id"].unique().tolist() == ["1"]
    assert _check_pipeline_table("willamette")["unit_id"].unique().tolist() == ["0"]


@pytest.mark.slow
def test_sample_pipeline_economic_accounts(tmp_path):
    cfg = load_config(REPO / "pipelines/sample.yaml", overrides={"output": {"dir": str(tmp_path / "out")}})
    res = run(cfg, progress=False)
    st = pd.read_csv(REPO / "pipelines/tables/sample_statistics.csv", dtype={"unit_id": str})
    st["counted"] = st["value_yuan"] * (1 - st["outside_share"])  # exclude_outside_region: true
    towns = pd.read_csv(res.output_dir / "tables/township.csv", dtype={"town_code": str}).set_index("town_code")
    county = pd.read_csv(res.output_dir / "tables/county.csv").iloc[0]
    for acc, col in (("provisioning", "provisioning_yuan"), ("cultural", "cultural_yuan")):
        want = st[st["account"] == acc].groupby("unit_id")["counted"].sum()
        np.testing.assert_allclose(towns.loc[want.index, col], want, rtol=1e-12)
        assert county[col] == pytest.approx(want.sum(), rel=1e-12)
    e = res.manifest["economic_accounts"]
    assert e["unallocated"] == [] and e["table"]["illustrative"]
    # every township lies inside the grid and nothing is unallocated: the rasters hold the whole value
    assert res.manifest["totals"]["provisioning_yuan"]["sum"] == pytest.approx(e["totals"]["provisioning_yuan"],
                                                                               rel=1e-6)
    assert res.manifest["hierarchy_checks"][0]["ok"]
