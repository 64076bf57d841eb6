"""gep_raster.xarray_services: the regulating services on xarray DataArrays, the pipeline's kernels.

* on the pipeline's sample, every service (and GEP-R) equals, bit for bit, the raster ``gep_raster.run`` writes;
* numpy-backed and dask-backed inputs (several chunkings) give bit-identical outputs;
* by-hand pixels (water balance, air purification, a geographic grid's pixel areas);
* outputs carry units, long names, CRS and transform; mismatched grids, wrong units and missing inputs are errors
  that name the argument.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine

import gep_raster
import gep_raster.xarray_services as xs
from gep_raster.errors import CRSError, InputError, TableError

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "pipelines" / "sample.yaml"

#: service -> (function, input names in positional order)
SERVICES = {
    "water_conservation": (xs.water_conservation, ("land_cover", "precipitation", "et")),
    "soil_retention": (xs.soil_retention, ("land_cover", "dem", "precipitation_monthly")),
    "carbon_sequestration": (xs.carbon_sequestration, ("land_cover", "carbon_flux")),
    "oxygen_release": (xs.oxygen_release, ("land_cover", "carbon_flux")),
    "air_purification": (xs.air_purification, ("land_cover",)),
    "water_purification": (xs.water_purification, ("land_cover",)),
    "climate_regulation": (xs.climate_regulation, ("land_cover", "et")),
    "flood_regulation": (xs.flood_regulation, ("land_cover", "precipitation", "et")),
}


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """The pipeline's run of the sample (rasters to compare with) and the sample's inputs as lazy DataArrays."""
    out = tmp_path_factory.mktemp("xs_sample")
    res = gep_raster.run(SAMPLE, output_dir=out)
    return res, xs.open_run_inputs(SAMPLE, chunks=256)


def _written(res, key: str):
    hits = [p for rel, p in res.outputs.items() if rel.startswith("rasters/") and Path(rel).stem == key]
    if not hits:
        return None
    with rasterio.open(hits[0]) as ds:
        return ds.read(1)


# ------------------------------------------------------------------------------------------------------------------
# (1) the pipeline's sample
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("service", list(SERVICES))
def test_service_equals_the_pipeline_raster(sample_run, service):
    res, inp = sample_run
    fn, names = SERVICES[service]
    ds = fn(*(inp[n] for n in names), config=SAMPLE).compute()
    assert {k for k in ds.data_vars if ds[k].attrs["service"] == service} == set(ds.data_vars)
    compared = 0
    for key in ds.data_vars:
        ref = _written(res, key)
        if ref is None:  # a diagnostic the pipeline does not write (write=False)
            continue
        np.testing.assert_array_equal(ds[key].values, ref, err_msg=f"{service}: {key}")
        compared += 1
    assert compared >= 2
    assert float(np.nansum(ds[f"{service}_yuan"].values, dtype=np.float64)) > 0


def test_gep_r_equals_the_pipeline(sample_run):
    res, inp = sample_run
    ds = xs.gep_r(inp["land_cover"], config=SAMPLE, **{k: v for k, v in inp.items() if k != "land_cover"}).compute()
    assert ds.attrs["services"].split(", ") == list(SERVICES)  # every service of the sample, in registry order
    for key in ds.data_vars:
        ref = _written(res, key)
        if ref is not None:
            np.testing.assert_array_equal(ds[key].values, ref, err_msg=key)
    np.testing.assert_array_equal(ds["gep_r_yuan"].values, _written(res, "gep_r_yuan"))
    total = float(np.nansum(ds["gep_r_yuan"].values, dtype=np.float64))
    assert total == pytest.approx(res.totals.loc["gep_r_yuan", "sum"], rel=1e-9)


# ------------------------------------------------------------------------------------------------------------------
# (2) numpy = dask, any chunking
# ------------------------------------------------------------------------------------------------------------------
def test_numpy_and_dask_backends_are_bit_identical(sample_run):
    _, lazy = sample_run
    eager = {k: v.compute() for k, v in lazy.items()}
    assert not hasattr(eager["land_cover"].data, "dask")

    def run(inp):
        return xs.gep_r(inp["land_cover"], config=SAMPLE, **{k: v for k, v in inp.items() if k != "land_cover"})

    ref = run(eager)
    assert not hasattr(ref["gep_r_yuan"].data, "dask")  # numpy in, numpy out
    for chunks in (97, (128, 300)):
        inp = xs.open_run_inputs(SAMPLE, chunks=chunks)
        ds = run(inp)
        assert ds["gep_r_yuan"].data.chunks[0][0] == (chunks if isinstance(chunks, int) else chunks[0])
        ds = ds.compute()
        for key in ref.data_vars:
            np.testing.assert_array_equal(ds[key].values, ref[key].values, err_msg=f"{key} chunks {chunks}")


def test_mixed_numpy_and_dask_inputs(sample_run):
    _, inp = sample_run
    a = xs.water_conservation(inp["land_cover"].compute(), inp["precipitation"], inp["et"].compute(), config=SAMPLE)
    assert hasattr(a["water_conservation_m3"].data, "dask")  # chunks of the dask input
    b = xs.water_conservation(inp["land_cover"], inp["precipitation"], inp["et"], config=SAMPLE)
    np.testing.assert_array_equal(a["water_conservation_m3"].values, b["water_conservation_m3"].values)


def test_annual_precipitation_from_the_months(sample_run):
    _, inp = sample_run
    a = xs.water_conservation(inp["land_cover"], None, inp["et"], precipitation_monthly=inp["precipitation_monthly"],
                              config=SAMPLE)
    b = xs.water_conservation(inp["land_cover"], inp["precipitation"], inp["et"], config=SAMPLE)
    np.testing.assert_array_equal(a["water_conservation_m3"].values, b["water_conservation_m3"].values)


# ------------------------------------------------------------------------------------------------------------------
# (3) by-hand pixels
# ------------------------------------------------------------------------------------------------------------------
LEGEND = """code,name,ecosystem,runoff_coef,so2_kg_ha,nox_kg_ha,dust_kg_ha
1,forest,forest,0.05,88.65,6.0,10110
2,paddy,cropland,0.10,45,3,1000
3,town,urban,0.60,0,0,0
"""
UTM = Affine(30, 0, 600000, 0, -30, 3130000)


def _da(values, *, crs="EPSG:32650", transform=UTM, units=None, nodata=None):
    values = np.asarray(values)
    h, w = values.shape[-2:]
    x = transform.c + (np.arange(w) + 0.5) * transform.a
    y = transform.f + (np.arange(h) + 0.5) * transform.e
    dims = ("y", "x") if values.ndim == 2 else ("month", "y", "x")
    arr = xr.DataArray(values, dims=dims, coords={"y": y, "x": x}, attrs={"units": units} if units else {})
    if crs is not None:
        arr = arr.rio.write_crs(crs).rio.write_transform(transform)
    if nodata is not None:
        arr = arr.rio.write_nodata(nodata)
    return arr


@pytest.fixture
def legend_csv(tmp_path):
    p = tmp_path / "legend.csv"
    p.write_text(LEGEND, encoding="utf-8")
    return p


def test_water_conservation_by_hand(legend_csv):
    lc = _da(np.array([[1, 2, 3], [1, 0, 2]], np.int32), nodata=0)
    p = _da(np.full((2, 3), 1500.0, np.float32), units="mm/a")
    et = _da(np.array([[800, 700, 900], [1600, 800, 800]], np.float32), units="mm/a")
    ds = xs.water_conservation(lc, p, et, legend=legend_csv, prices={"water_conservation.reservoir_cost": 8.0})
    alpha = {1: 0.05, 2: 0.10, 3: 0.60}
    q = ds["water_conservation_m3"].values
    # Q = (P - alpha*P - ET) x A x 1e-3 (m3), A = 30 m x 30 m; clipped at 0 (negative_values: clip, the default)
    for (r, c), code in {(0, 0): 1, (0, 1): 2, (0, 2): 3, (1, 2): 2}.items():
        want = max((1500.0 - alpha[code] * 1500.0 - float(et.values[r, c])) * 900.0 * 1e-3, 0.0)
        assert q[r, c] == pytest.approx(want, rel=1e-6), (r, c)
    assert q[0, 2] == 0.0  # 1500 - 900 - 900 < 0: clipped
    assert ds["water_deficit_m3"].values[0, 2] == pytest.approx(300 * 0.9, rel=1e-6)
    assert q[1, 0] == 0.0 and ds["water_deficit_m3"].values[1, 0] == pytest.approx(175 * 0.9, rel=1e-6)
    assert np.isnan(q[1, 1])  # land-cover nodata (rio.nodata = 0)
    np.testing.assert_allclose(ds["water_conservation_yuan"].values, q * 8.0, rtol=1e-6)
    keep = xs.water_conservation(lc, p, et, legend=legend_csv, negative_values="keep")
    assert keep["water_conservation_m3"].values[0, 2] == pytest.approx(-270.0, rel=1e-6)


def test_air_purification_by_hand(legend_csv):
    lc = _da(np.array([[1, 2], [3, 1]], np.int32))
    prices = {"air_purification.so2_price": 1200.0, "air_purification.nox_price": 600.0,
              "air_purification.dust_price": 150.0}
    ds = xs.air_purification(lc, legend=legend_csv, prices=prices)
    ha = 900.0 / 1e4
    # Q_j = q_j (kg/ha/a) x A (ha) x 1e-3 (t/kg)
    assert ds["air_purification_so2_t"].values[0, 0] == pytest.approx(88.65 * ha * 1e-3, rel=1e-6)
    assert ds["air_purification_dust_t"].values[0, 1] == pytest.approx(1000 * ha * 1e-3, rel=1e-6)
    assert ds["air_purification_so2_t"].values[1, 0] == 0.0
    want = (88.65 * 1200 + 6.0 * 600 + 10110 * 150) * ha * 1e-3
    assert ds["air_purification_yuan"].values[1, 1] == pytest.approx(want, rel=1e-6)
    so2 = xs.air_purification(lc, legend=legend_csv, pollutants=["so2"])
    assert set(so2.data_vars) == {"air_purification_so2_t", "air_purification_yuan"}


def test_pest_control_by_hand(legend_csv):
    lc = _da(np.array([[1, 2], [3, 1]], np.int32))
    ds = xs.pest_control(lc, legend=legend_csv, prices={"pest_control.forest_price": 400.0})
    # forest (no natural_share column: share 1): 0.09 ha x 400 yuan/ha = 36 yuan/a; paddy and town: 0
    assert ds["pest_control_forest_ha"].values == pytest.approx(np.array([[0.09, 0.0], [0.0, 0.09]]), rel=1e-6)
    assert ds["pest_control_yuan"].values == pytest.approx(np.array([[36.0, 0.0], [0.0, 36.0]]), rel=1e-6)
    # cropland counted as grassland: 0.09 x 112.5 (default price) = 10.125
    crop = xs.pest_control(lc, legend=legend_csv, grassland_ecosystems=["cropland"])
    assert crop["pest_control_yuan"].values[0, 1] == pytest.approx(10.125, rel=1e-6)


def test_geographic_grid_uses_true_pixel_areas(legend_csv):
    from pyproj import Geod

    t = Affine(0.01, 0, 119.0, 0, -0.01, 30.0)
    lc = _da(np.ones((3, 2), np.int32), crs="EPSG:4326", transform=t)
    ds = xs.air_purification(lc, legend=legend_csv, pollutants=["so2"])
    geod = Geod(ellps="WGS84")
    for r in range(3):
        top, bot = 30.0 - 0.01 * r, 30.0 - 0.01 * (r + 1)
        area, _ = geod.polygon_area_perimeter([119.0, 119.01, 119.01, 119.0], [bot, bot, top, top])
        want = 88.65 * abs(area) / 1e4 * 1e-3
        assert ds["air_purification_so2_t"].values[r, 0] == pytest.approx(want, rel=1e-6)
    assert ds["air_purification_so2_t"].values[0, 0] < ds["air_purification_so2_t"].values[2, 0]  # nearer the equator


def test_legend_object_and_mapping_config(legend_csv):
    from gep_raster.tables import Legend

    lc = _da(np.array([[1, 2]], np.int32))
    a = xs.air_purification(lc, legend=legend_csv)
    b = xs.air_purification(lc, config={"legend": {"path": str(legend_csv)}})
    leg = Legend(__import__("pandas").read_csv(legend_csv).set_index("code"), legend_csv, [str(legend_csv)])
    c = xs.air_purification(lc, legend=leg)
    for other in (b, c):
        np.testing.assert_array_equal(a["air_purification_yuan"].values, other["air_purification_yuan"].values)


# ------------------------------------------------------------------------------------------------------------------
# (4) attrs, CRS, transform
# ------------------------------------------------------------------------------------------------------------------
def test_outputs_carry_units_crs_and_transform(sample_run):
    _, inp = sample_run
    ds = xs.water_conservation(inp["land_cover"], inp["precipitation"], inp["et"], config=SAMPLE)
    assert ds["water_conservation_m3"].attrs["units"] == "m3/a per pixel"
    assert ds["water_conservation_yuan"].attrs["units"] == "yuan/a per pixel"
    assert ds["precipitation_mm"].attrs["units"] == "mm/a"
    for k in ds.data_vars:
        assert ds[k].attrs["long_name"] and ds[k].attrs["kind"] in ("physical", "value", "intermediate", "diagnostic")
        assert ds[k].dtype == np.float32 and ds[k].dims == ("y", "x")
        assert ds[k].rio.crs == inp["land_cover"].rio.crs
    assert ds.rio.crs.to_epsg() == 32650
    assert ds.rio.transform() == inp["land_cover"].rio.transform()
    np.testing.assert_array_equal(ds["x"].values, inp["land_cover"]["x"].values)
    assert "Garze GEP eq. 3" in ds.attrs["source"]
    assert "water_conservation.reservoir_cost" in ds.attrs["prices"]
    soil = xs.soil_retention(inp["land_cover"], inp["dem"], inp["precipitation_monthly"], config=SAMPLE)
    assert soil["soil_retention_t"].attrs["units"] == "t/a per pixel"
    assert "Wischmeier" in soil["r_factor"].attrs["method"]


# ------------------------------------------------------------------------------------------------------------------
# (5) errors
# ------------------------------------------------------------------------------------------------------------------
def _wc_inputs():
    lc = _da(np.array([[1, 2, 3], [1, 2, 3]], np.int32))
    p = _da(np.full((2, 3), 1500.0, np.float32), units="mm/a")
    et = _da(np.full((2, 3), 800.0, np.float32), units="mm/a")
    return lc, p, et


def test_mismatched_grids_name_the_argument(legend_csv):
    lc, p, et = _wc_inputs()
    shifted = _da(p.values, transform=Affine(30, 0, 600030, 0, -30, 3130000), units="mm/a")
    with pytest.raises(xs.InputMismatchError, match=r"^precipitation: not on the land cover's grid"):
        xs.water_conservation(lc, shifted, et, legend=legend_csv)
    with pytest.raises(ValueError, match=r"^et: shape \(3, 3\) differs"):
        xs.water_conservation(lc, p, _da(np.full((3, 3), 800.0, np.float32)), legend=legend_csv)
    other_crs = _da(p.values, crs="EPSG:32651", units="mm/a")
    with pytest.raises(InputError, match=r"precipitation: .*EPSG:32651"):
        xs.water_conservation(lc, other_crs, et, legend=legend_csv)
    with pytest.raises(CRSError, match=r"^et: the DataArray has no CRS"):
        xs.water_conservation(lc, p, _da(et.values, crs=None), legend=legend_csv)


def test_wrong_units_name_the_argument_and_the_unit(legend_csv):
    lc, p, et = _wc_inputs()
    with pytest.raises(xs.UnitsError, match=r"^precipitation: attrs\['units'\] is 'm', .* must be in mm/a"):
        xs.water_conservation(lc, _da(p.values / 1000, units="m"), et, legend=legend_csv)
    with pytest.raises(ValueError, match=r"^et: attrs\['units'\] is 'mm/month'"):
        xs.water_conservation(lc, p, _da(et.values, units="mm/month"), legend=legend_csv)
    for ok in ("mm", "mm/yr", "mm a-1", "MM/A"):
        xs.water_conservation(lc, _da(p.values, units=ok), et, legend=legend_csv)
    with pytest.raises(xs.UnitsError, match=r"^dem: attrs\['units'\] is 'ft'"):
        xs.soil_retention(lc, _da(np.ones((2, 3), np.float32), units="ft"), legend=legend_csv)
    with pytest.raises(xs.UnitsError, match="carbon_flux"):
        xs.carbon_sequestration(lc, _da(np.ones((2, 3), np.float32), units="kg/m2"), legend=legend_csv)


def test_missing_inputs_and_unknown_classes(legend_csv):
    lc, p, et = _wc_inputs()
    with pytest.raises(Exception, match=r"argument precipitation"):
        xs.water_conservation(lc, None, et, legend=legend_csv)
    with pytest.raises(xs.MissingInputError, match="precipitation_monthly"):
        xs.soil_retention(lc, _da(np.ones((2, 3), np.float32), units="m"), legend=legend_csv)
    with pytest.raises(xs.MissingInputError, match="carbon_flux"):
        xs.carbon_sequestration(lc, legend=legend_csv, carbon={"method": "nep", "unit": "t_c_per_ha"})
    with pytest.raises(TypeError, match="unknown input"):
        xs.gep_r(lc, legend=legend_csv, precip=p)
    bad = _da(np.array([[1, 7, 3], [1, 2, 3]], np.int32))
    with pytest.raises(TableError, match=r"class code\(s\) \[7\] have no legend row"):
        xs.water_conservation(bad, p, et, legend=legend_csv)
    with pytest.raises(TableError, match="column"):
        xs.water_purification(lc, legend=legend_csv)


def test_raster_options_equal_their_constants_and_water_bodies(sample_run):
    _, inp = sample_run
    lc, p, et = inp["land_cover"], inp["precipitation"], inp["et"]
    hot = xr.full_like(et, 75.0).assign_attrs(units="days/a")
    a = xs.climate_regulation(lc, et, hot_days=hot, config=SAMPLE)
    b = xs.climate_regulation(lc, et, hot_days=75, config=SAMPLE)
    np.testing.assert_array_equal(a["climate_regulation_kwh"].values, b["climate_regulation_kwh"].values)
    storm = xr.full_like(et, 400.0).assign_attrs(units="mm")
    c = xs.flood_regulation(lc, p, et, storm_precip=storm, config=SAMPLE)
    d = xs.flood_regulation(lc, p, et, storm_precip=400, config=SAMPLE)
    np.testing.assert_array_equal(c["flood_regulation_m3"].values, d["flood_regulation_m3"].values)
    wb = xr.zeros_like(et).compute().assign_attrs(units="m3/a")
    wb.values[10:20, 10:20] = 5.0
    legend = {"path": str(REPO / "sample_tiles/legend.csv")}
    only = xs.flood_regulation(lc, water_bodies_m3=wb, config={"legend": legend})
    assert float(only["flood_regulation_m3"].sum()) == pytest.approx(500.0)
    assert "water_bodies_m3" in only.attrs["source"]
    both = xs.flood_regulation(lc, p, et, water_bodies_m3=wb, config=SAMPLE)
    diff = both["flood_regulation_m3"].values - d["flood_regulation_m3"].values
    valid = np.isfinite(d["flood_regulation_m3"].values)
    np.testing.assert_allclose(diff[valid], wb.values[valid], atol=1e-3)
