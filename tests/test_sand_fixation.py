"""Windbreak and sand fixation (防风固沙, service ``sand_fixation``): RWEQ potential minus actual wind erosion
(docs/rweq.md), valued as the Garze GEP 2010 account does: V = SR / (1.28 t/m3 x 0.1 m) x 3.75 yuan/m2
(Baima Zhuoga et al. 2017 sec. 2.4.3, 3.2.3 and table 3).

Expected numbers are worked here from the equations written out, not from the kernels under test."""
from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from conftest import write_raster
from gep_raster.config import load_config
from gep_raster.errors import ConfigError, RasterError
from gep_raster.services import ServiceModel
from gep_raster.services.registry import required_legend_columns
from gep_raster.services.sand_fixation import _wind_factor_reduce
from gep_raster.tables import PriceBook, load_legend

OFF = {"water_conservation": {"enabled": False}, "soil_retention": {"enabled": False},
       "carbon_sequestration": {"enabled": False}, "air_purification": {"enabled": False}}
#: the tiny run's legend plus a grassland class (code 5)
LEGEND = """code,name,ecosystem,runoff_coef,usle_c,usle_p,kc,carbon_tco2_ha,so2_kg_ha,nox_kg_ha,dust_kg_ha,notes
1,broadleaf forest,forest,0.0267,0.006,1,1.0,9.0,88.65,6.0,10110,test
2,paddy,cropland,0.10,0.15,0.15,1.1,1.0,45,3,1000,test
3,water,water,0.0,0.0,1,1.05,0,0,0,0,test
4,town,urban,0.60,0.0,1,0.2,0,0,0,0,test
5,meadow,grassland,0.05,0.02,1,0.9,1.0,10,1,500,test
"""
H, W = 40, 50


def _inputs(tiny, days=365, sand=60.0, silt=25.0, clay=15.0, fvc=None):
    """RWEQ rasters beside the tiny run: daily wind at 10 m (days bands), soil percent, FVC (fraction)."""
    import rasterio
    from affine import Affine

    folder = tiny.parent
    (folder / "legend.csv").write_text(LEGEND)
    rng = np.random.default_rng(7)
    u = (rng.weibull(2.0, (days, H, W)) * 6.0).astype(np.float32)
    with rasterio.open(folder / "wind.tif", "w", driver="GTiff", width=W, height=H, count=days, dtype="float32",
                       crs="EPSG:32650", transform=Affine(30, 0, 500000, 0, -30, 3000000), nodata=-9999.0) as ds:
        ds.write(u)
    for name, v in (("sand", sand), ("silt", silt), ("clay", clay), ("om", 2.0)):
        write_raster(folder / f"{name}.tif", np.full((H, W), v, np.float32), nodata=-9999.0)
    if fvc is None:
        yy, xx = np.mgrid[0:H, 0:W]
        fvc = (xx / (W - 1) * 0.8).astype(np.float32)
    write_raster(folder / "fvc.tif", np.asarray(fvc, np.float32), nodata=-9999.0)
    return {"enabled": True, "wind_speed": {"path": "wind.tif"}, "air_temperature_c": 15.0,
            "soil": {p: {"path": f"{n}.tif"} for p, n in (("sand", "sand"), ("silt", "silt"), ("clay", "clay"),
                                                          ("organic_matter", "om"))},
            "fvc": {"path": "fvc.tif"}}


def _model(tiny, sf, **over):
    cfg = load_config(tiny, overrides={"services": {**OFF, "sand_fixation": sf}, **over})
    legend = load_legend(cfg, required_legend_columns(cfg))
    return ServiceModel.from_config(cfg, legend, PriceBook.from_config(cfg), cell_size=30.0, geographic=False), cfg


def _sl(p, z=50.0):
    """RWEQ soil loss (kg/m2) at z from P, written out: Q_max = 109.8 P, s = 150.71 P^-0.3711."""
    if p == 0:
        return 0.0
    s = 150.71 * p ** -0.3711
    return 2 * z / s ** 2 * 109.8 * p * math.exp(-(z / s) ** 2)


def test_wind_factor_reduce_by_hand():
    # three days at 2 m: 10, 5 and 8 m/s; U1 = 5: 10 x 5^2 + 0 (not above U1) + 8 x 3^2 = 322
    stack = np.array([10.0, 5.0, 8.0], np.float32).reshape(3, 1, 1)
    assert _wind_factor_reduce(stack, height_m=2.0, threshold=5.0, label="k")[0, 0] == pytest.approx(322.0)
    # at 10 m the speeds are scaled by (2/10)^(1/7) = 0.79460 first: 10 -> 7.9460, 8 -> 6.3568, 5 -> 3.973
    f = 0.2 ** (1 / 7)
    hand = 10 * f * (10 * f - 5) ** 2 + 8 * f * (8 * f - 5) ** 2
    assert _wind_factor_reduce(stack, height_m=10.0, threshold=5.0, label="k")[0, 0] == pytest.approx(hand, rel=1e-6)
    with pytest.raises(RasterError, match=r"services.sand_fixation.wind_speed: wind speeds -1..10 m/s lie outside"):
        _wind_factor_reduce(np.array([-1.0, 10.0], np.float32).reshape(2, 1, 1), height_m=2.0, threshold=5.0,
                            label="services.sand_fixation.wind_speed")


def test_pixels_by_hand(tiny):
    sf = {**_inputs(tiny), "roughness": "constant", "k_prime": 0.9}
    model, _ = _model(tiny, sf)
    lc = np.array([[5, 1, 4, 5, -1]], np.int32)
    one = np.ones((1, 5), np.float32)
    blocks = {"lc": lc, "dem": one * 1000.0, "wind_wf": one * 322.0,
              "wind_fvc": np.array([[0.4, 0.0, 0.4, 0.0, 0.4]], np.float32),
              "wind_sand": one * 60, "wind_silt": one * 25, "wind_clay": one * 15, "wind_om": one * 2}
    out = model.compute_block(blocks, np.array([900.0]))
    rho = 348.0 * (1.013 - 0.1183 * 1.0 + 0.0048 * 1.0) / (15.0 + 273.15)   # 1000 m, 15 degC
    wf = 322.0 * rho / 9.8                                                  # SW = SD = 1
    ef = (29.09 + 0.31 * 60 + 0.17 * 25 + 0.33 * 60 / 15 - 2.59 * 2) / 100  # CaCO3 = 0
    scf = 1 / (1 + 0.0066 * 15 ** 2 + 0.021 * 2 ** 2)
    p_s = wf * ef * scf * 0.9
    c = math.exp(-0.1151 * 40)                                              # grassland, FVC 40 %
    sr = _sl(p_s) - _sl(p_s * c)                                            # kg/m2
    t = sr * 900 / 1000
    q, v = out["sand_fixation_t"][0], out["sand_fixation_yuan"][0]
    assert 1.0 < p_s < 61.7  # the range where SR >= 0 holds (docs/rweq.md)
    assert q[0] == pytest.approx(t, rel=1e-5)
    assert v[0] == pytest.approx(t / (1.28 * 0.1) * 3.75, rel=1e-5)
    assert out["wind_erosion_potential_t_ha"][0, 0] == pytest.approx(_sl(p_s) * 10, rel=1e-5)
    assert out["wind_erosion_actual_t_ha"][0, 0] == pytest.approx(_sl(p_s * c) * 10, rel=1e-5)
    # forest with no cover: C = 1, SR = 0; urban (excluded): 0; FVC 0 grassland: 0; nodata: NaN
    assert list(q[1:4]) == [0.0, 0.0, 0.0] and np.isnan(q[4]) and np.isnan(v[4])
    assert out["wind_erosion_potential_t_ha"][0, 2] == 0.0  # urban: no wind erosion counted
    terms = model.valuation["sand_fixation"]
    assert terms[0]["price_coefficients"] == {"sand_fixation.control_cost": pytest.approx(1 / 0.128)}


def test_relief_roughness_and_optional_factors_by_hand(tiny):
    """K' from the 3x3 relief: dH = 6 m over L = 60 m -> Kr = 0.2 x 36 / 60 = 0.12, K' = exp(1.86 Kr - 2.41
    Kr^0.934); SW from a raster; SD = 1 - snow days / 365; organic carbon x 1.724 as organic matter."""
    folder = tiny.parent
    sf = _inputs(tiny)
    write_raster(folder / "sw.tif", np.full((H, W), 0.5, np.float32), nodata=-9999.0)
    write_raster(folder / "snow.tif", np.full((H, W), 73.0, np.float32), nodata=-9999.0)
    sf = {**sf, "soil_wetness": {"path": "sw.tif"}, "snow_cover_days": {"path": "snow.tif"},
          "soil": {**sf["soil"], "organic_matter": None, "organic_carbon": {"path": "om.tif"}}}
    model, _ = _model(tiny, sf)
    assert "relief" in model.input_keys()
    one = np.ones((1, 1), np.float32)
    blocks = {"lc": np.array([[5]], np.int32), "dem": one * 0.0, "relief": one * 6.0, "wind_wf": one * 322.0,
              "wind_fvc": one * 0.4, "wind_sand": one * 60, "wind_silt": one * 25, "wind_clay": one * 15,
              "wind_oc": one * 2, "wind_sw": one * 0.5, "wind_snow_days": one * 73.0}
    q = model.compute_block(blocks, np.array([900.0]))["sand_fixation_t"][0, 0]
    kr = 0.2 * 36 / 60
    kp = math.exp(1.86 * kr - 2.41 * kr ** 0.934)
    om = 1.724 * 2
    rho = 348.0 * 1.013 / 288.15
    wf = 322.0 * rho / 9.8 * 0.5 * (1 - 73 / 365)
    ef = (29.09 + 0.31 * 60 + 0.17 * 25 + 0.33 * 4 - 2.59 * om) / 100
    scf = 1 / (1 + 0.0066 * 225 + 0.021 * om ** 2)
    p_s = wf * ef * scf * kp
    c = math.exp(-0.1151 * 40)
    assert q == pytest.approx((_sl(p_s) - _sl(p_s * c)) * 0.9, rel=1e-5)
    assert any("organic matter = 1.724 x organic carbon" in a for a in model.assumptions)


def test_relief_kernel_by_hand_and_by_chunks():
    import dask.array as da

    from gep_raster.kernels.terrain import relief_kernel

    dem = np.array([[1, 2, 3], [4, 5, 6], [7, 8, np.nan]], np.float32)
    r = relief_kernel(dem)
    # centre: max 8 - min 1 = 7; corner (0,0): window {1,2,4,5} -> 4; the NaN cell stays NaN, its
    # neighbours leave it out: (1,2) window {2,3,5,6,8} -> 6
    assert r[1, 1] == 7 and r[0, 0] == 4 and r[1, 2] == 6 and np.isnan(r[2, 2])
    big = np.random.default_rng(3).normal(100, 10, (37, 41)).astype(np.float32)
    big[5, 7] = np.nan
    from functools import partial
    for ch in ((7, 5), (37, 41), (10, 13)):
        lazy = da.from_array(big, chunks=ch).map_overlap(partial(relief_kernel, trim=1), depth=1,
                                                         boundary=np.nan, trim=False, dtype=np.float32)
        np.testing.assert_array_equal(lazy.compute(), relief_kernel(big))


def test_numpy_equals_dask(tiny):
    import dask
    import dask.array as da

    from gep_raster.grid.run_inputs import open_inputs, reference_grid

    model, cfg = _model(tiny, _inputs(tiny))
    grid = reference_grid(cfg)
    src = open_inputs(cfg, grid, [k for k in model.input_keys() if k != "relief"], model.input_requests())
    own = [k for k in model.input_keys() if k != "relief"]
    dem = src["dem"].read_all()
    arrays = {k: src[k].read_all() for k in own}
    arrays.update(model.terrain_numpy(dem, grid.res))
    ref = model.compute_numpy(arrays, grid.row_pixel_area_m2)
    q = ref["sand_fixation_t"]
    assert np.nanmax(q) > 0 and np.isnan(q[0, 0])  # the tiny run's nodata pixel
    for ch in ((7, 5), (40, 50), (16, 23)):
        chunks = da.core.normalize_chunks(ch, shape=grid.shape)
        lazy = {k: src[k].to_dask(chunks) for k in own}
        lazy.update(model.terrain_dask(src["dem"].to_dask(chunks), grid.res))
        with dask.config.set(scheduler="threads"):
            st = model.compute_dask(lazy, grid.row_pixel_area_m2).compute()
        for i, k in enumerate(model.output_keys):
            np.testing.assert_array_equal(st[i], ref[k], err_msg=f"{k} chunks {ch}")


def test_config_errors_name_the_keys(tiny):
    with pytest.raises(ConfigError, match=r"sand_fixation.*enabled needs wind_speed, soil, fvc"):
        load_config(tiny, overrides={"services": {"sand_fixation": {"enabled": True}}})
    sf = _inputs(tiny, days=300)
    with pytest.raises(ConfigError, match=r"services.sand_fixation.wind_speed.path: 300 bands in 1 file"):
        _model(tiny, sf)
    sf = _inputs(tiny, days=366)  # a leap-year stack for a run of 2023 (365 days)
    with pytest.raises(ConfigError, match=r"wind_speed.path: 366 bands .*day of the accounting year is needed \(365\)"):
        _model(tiny, sf, accounting_year=2023)
    assert _model(tiny, sf, accounting_year=2024)[0].service("sand_fixation").scalars["n_days"] == 366
    sf = _inputs(tiny)
    with pytest.raises(ConfigError, match=r"air_temperature"):
        load_config(tiny, overrides={"services": {"sand_fixation": {**sf, "air_temperature_c": None}}})
    soil = {**sf["soil"], "organic_carbon": {"path": "om.tif"}}
    with pytest.raises(ConfigError, match=r"exactly one of organic_matter and organic_carbon"):
        load_config(tiny, overrides={"services": {"sand_fixation": {**sf, "soil": soil}}})
    cfg = load_config(tiny, overrides={"services": {**OFF, "sand_fixation": sf}})
    legend = load_legend(cfg, required_legend_columns(cfg))
    with pytest.raises(ConfigError, match=r"roughness: dem_relief needs a projected reference grid"):
        ServiceModel.from_config(cfg, legend, PriceBook.from_config(cfg), cell_size=0.001, geographic=True)


def _run(tiny, sf):
    import gep_raster

    raw = yaml.safe_load(tiny.read_text(encoding="utf-8"))
    raw["services"] = {**OFF, "sand_fixation": sf}
    raw["output"]["report"] = "off"
    tiny.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return gep_raster.run(tiny)


def test_bad_rasters_are_named(tiny):
    from gep_raster.errors import GepError

    with pytest.raises(GepError, match=r"services.sand_fixation.soil: sand \+ silt \+ clay reaches 110 %"):
        _run(tiny, _inputs(tiny, sand=70.0))
    with pytest.raises(GepError, match=r"services.sand_fixation.fvc \(fvc.tif\): values 80..80 lie "
                                       r"outside 0..1 \(fraction; set fvc_unit: percent"):
        _run(tiny, _inputs(tiny, fvc=np.full((H, W), 80.0)))


def test_sample_run_with_sand_fixation(tmp_path):
    """The sample with sand fixation on: value = t x 3.75 / (1.28 x 0.1) exactly, townships add up to the county,
    GEP-R includes it, SR = max(potential - actual, 0) pixel by pixel, and the magnitude of a humid county
    (well below Garze's 779.42万 t on 149,687.7 km2 = 0.52 t/ha/a)."""
    import gep_raster
    import rasterio
    from conftest import sample_config

    cfg = sample_config(tmp_path, "sand")
    raw = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    raw["services"]["sand_fixation"]["enabled"] = True
    raw["output"]["report"] = "off"
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    res = gep_raster.run(cfg)
    t = res.manifest["totals"]
    q = t["sand_fixation_t"]["sum"]
    assert t["sand_fixation_yuan"]["sum"] == pytest.approx(q * 3.75 / 0.128, rel=1e-6)
    ha = t["sand_fixation_t"]["valid_pixels"] * 0.09
    assert 0 < q / ha < 0.52
    town, county = res.tables["township"], res.tables["county"]
    assert town["sand_fixation_yuan"].sum() == pytest.approx(county["sand_fixation_yuan"].sum(), rel=1e-9)
    svc = [k for k, v in res.manifest["config"]["services"].items() if v["enabled"]]
    assert "sand_fixation" in svc
    assert t["gep_r_yuan"]["sum"] == pytest.approx(sum(t[f"{k}_yuan"]["sum"] for k in svc), rel=1e-6)
    r = res.output_dir / "rasters"
    with rasterio.open(r / "physical/sand_fixation_t.tif") as a, \
            rasterio.open(r / "intermediate/wind_erosion_potential_t_ha.tif") as b, \
            rasterio.open(r / "intermediate/wind_erosion_actual_t_ha.tif") as c:
        sr, pot, act = (x.read(1, masked=True).filled(np.nan).astype(np.float64) for x in (a, b, c))
    ok = np.isfinite(sr)
    np.testing.assert_allclose(sr[ok], np.maximum(pot[ok] - act[ok], 0) * 0.09, rtol=1e-4, atol=1e-9)
    assert np.all(pot[ok] >= act[ok] - 1e-6)
    assert "sand_fixation" in res.manifest["methods"]
