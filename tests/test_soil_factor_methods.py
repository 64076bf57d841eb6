"""R, K and C methods of the soil-retention service, wired through the config and the pipeline.

The kernels themselves are checked formula by formula in tests/test_rusle_factors.py; here every number
is recomputed by hand (math module, float64) from the equations of docs/rusle_factors.md and compared
with what the service (compute_block) and a full run (the r_factor / k_factor / c_factor rasters) give.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio

from gep_raster.config import load_config
from gep_raster.errors import ConfigError, InputError, ValidationFailed
from gep_raster.pipeline import run
from gep_raster.services import ServiceModel
from gep_raster.tables import PriceBook, load_legend
from gep_raster.services.registry import required_legend_columns

from conftest import write_raster

H, W = 40, 50
AREA = np.array([900.0])


def model_for(cfg_path, **over):
    cfg = load_config(cfg_path, overrides=over or None)
    legend = load_legend(cfg, required_legend_columns(cfg))
    return ServiceModel.from_config(cfg, legend, PriceBook.from_config(cfg), cell_size=30.0, geographic=False), cfg


def r_wischmeier_by_hand(months):
    p = sum(months)
    return 17.02 * sum(1.735 * 10 ** (1.5 * math.log10(m * m / p) - 0.8188) for m in months if m > 0)


def monthly_config(tiny, **soil):
    """The tiny run with 12 monthly precipitation rasters instead of the annual one (month m: a west-east
    gradient times a seasonal shape peaking in July)."""
    shape = [0.2, 0.3, 0.6, 1.0, 1.6, 2.2, 2.6, 2.4, 1.4, 0.8, 0.5, 0.4]
    xx = np.mgrid[0:H, 0:W][1]
    for m, f in enumerate(shape, start=1):
        write_raster(tiny.parent / f"pm_{m:02d}.tif", (f * (90 + xx)).astype(np.float32), nodata=-9999.0)
    text = tiny.read_text().replace("precipitation: {path: p.tif}", "precipitation: {monthly: pm_*.tif}")
    text = text.replace("soil_retention: {r_method: renard_freimund_1994}",
                        "soil_retention: {" + ", ".join(f"{k}: {v}" for k, v in soil.items()) + "}")
    p = tiny.parent / "monthly.yaml"
    p.write_text(text)
    return p, shape


def test_default_r_is_the_monthly_formula_end_to_end(tiny):
    cfg_path, shape = monthly_config(tiny)
    cfg = load_config(cfg_path, overrides={"output": {"dir": "out_m"}})
    assert cfg.services.soil_retention.r_method == "wischmeier_monthly"
    res = run(cfg, progress=False)
    with rasterio.open(res.output_dir / "rasters/intermediate/r_factor.tif") as ds:
        r = ds.read(1)
    for row, col in ((5, 3), (20, 25), (39, 49)):
        months = [f * (90 + col) for f in shape]
        assert r[row, col] == pytest.approx(r_wischmeier_by_hand(months), rel=1e-5)
    # column 0: P = 13.4 * 90 = 1206 mm/a; by hand 17.02 * 10^-0.8188 * 1.735 * sum (Pi^2/P)^1.5
    months = [f * 90 for f in shape]
    assert r[5, 0] == pytest.approx(r_wischmeier_by_hand(months), rel=1e-5)
    note = res.manifest["services"]["soil_retention"]["note"] if isinstance(res.manifest.get("services"), dict) \
        else str(res.manifest)
    assert "monthly precipitation" in note
    # the annual precipitation of the run is still the sum of the months (water conservation)
    with rasterio.open(res.output_dir / "rasters/intermediate/precipitation_mm.tif") as ds:
        assert ds.read(1)[5, 0] == pytest.approx(sum(months), rel=1e-5)


def test_default_r_refuses_annual_precipitation_with_the_fix(tiny):
    text = tiny.read_text().replace("soil_retention: {r_method: renard_freimund_1994}", "soil_retention: {}")
    p = tiny.parent / "annual.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=r"r_method 'wischmeier_monthly' \(the default\) needs 12 monthly "
                                          r"precipitation rasters.*r_method: renard_freimund_1994"):
        load_config(p)


def test_renard_is_a_named_option_and_an_assumption(tiny):
    model, _ = model_for(tiny)
    soil = model.service("soil_retention")
    assert soil.flags["r_method"] == "renard_freimund_1994"
    assert any("Renard & Freimund (1994)" in a and "ASSUMPTION" in a for a in model.assumptions)
    assert any("K = 0.03" in a for a in model.assumptions)  # the constant K, parameter soil_retention.k_constant


def _texture(tiny, sand, silt, clay, oc):
    for name, v in (("sand", sand), ("silt", silt), ("clay", clay), ("oc", oc)):
        write_raster(tiny.parent / f"{name}.tif", np.full((H, W), v, np.float32), nodata=-9999.0)
    return {"sand": {"path": "sand.tif"}, "silt": {"path": "silt.tif"}, "clay": {"path": "clay.tif"},
            "organic_carbon": {"path": "oc.tif"}}


def k_epic_by_hand(san, sil, cla, c):
    sn1 = 1 - san / 100
    k = ((0.2 + 0.3 * math.exp(-0.0256 * san * (1 - sil / 100))) * (sil / (cla + sil)) ** 0.3
         * (1 - 0.25 * c / (c + math.exp(3.72 - 2.95 * c))) * (1 - 0.7 * sn1 / (sn1 + math.exp(-5.51 + 22.9 * sn1))))
    return 0.1317 * k


def test_k_epic_from_soil_texture_rasters(tiny):
    # a loam: sand 40 %, silt 40 %, clay 20 %, organic carbon 1.2 %
    tex = _texture(tiny, 40.0, 40.0, 20.0, 1.2)
    model, _ = model_for(tiny, services={"soil_retention": {"soil_texture": tex}})
    soil = model.service("soil_retention")
    assert soil.flags["k_method"] == "epic"  # auto: soil texture given
    keys = soil.input_keys()
    assert {"soil_sand", "soil_silt", "soil_clay", "soil_oc"} <= set(keys)
    b = {"lc": np.array([[1]], np.int32), "precip": np.array([[1600.0]], np.float32),
         "slope_pct_filled": np.array([[5.0]], np.float32), "upslope": np.array([[1.0]], np.float32),
         "flow_aspect": np.array([[1.0]], np.float32), "et": np.array([[800.0]], np.float32),
         "soil_sand": np.array([[40.0]], np.float32), "soil_silt": np.array([[40.0]], np.float32),
         "soil_clay": np.array([[20.0]], np.float32), "soil_oc": np.array([[1.2]], np.float32)}
    out = model.compute_block(b, AREA)
    k = k_epic_by_hand(40, 40, 20, 1.2)
    assert 0.02 < k < 0.05  # a loam's K in SI units (t*ha*h/(ha*MJ*mm))
    assert out["k_factor"][0, 0] == pytest.approx(k, rel=1e-5)
    # retention is linear in K: Q = R K LS (1 - C P) A / 1e4
    q = out["r_factor"][0, 0] * k * out["ls_factor"][0, 0] * (1 - 0.006) * 900 / 1e4
    assert out["soil_retention_t"][0, 0] == pytest.approx(q, rel=1e-5)
    assert not any("K = 0.03" in a for a in model.assumptions)


def test_k_epic_end_to_end_and_bad_texture_named(tiny):
    tex = _texture(tiny, 40.0, 40.0, 20.0, 1.2)
    res = run(load_config(tiny, overrides={"services": {"soil_retention": {"soil_texture": tex}},
                                           "output": {"dir": "out_k"}}), progress=False)
    with rasterio.open(res.output_dir / "rasters/intermediate/k_factor.tif") as ds:
        k = ds.read(1)
    assert k[10, 10] == pytest.approx(k_epic_by_hand(40, 40, 20, 1.2), rel=1e-5)
    assert np.isnan(k[0, 0])  # the nodata land-cover pixel
    # sand + silt + clay = 150 %: the run stops with a message naming the config key, not a numba traceback
    tex = _texture(tiny, 90.0, 40.0, 20.0, 1.2)
    with pytest.raises(InputError, match=r"services.soil_retention.soil_texture.*"):
        run(load_config(tiny, overrides={"services": {"soil_retention": {"soil_texture": tex}},
                                         "output": {"dir": "out_kbad"}}), progress=False)


def c_cai_by_hand(fvc):
    pct = 100 * fvc
    if pct == 0:
        return 1.0
    if pct > 78.3:
        return 0.0
    return min(0.6508 - 0.3436 * math.log10(pct), 1.0)


def test_c_cai_2000_from_ndvi(tiny):
    ndvi = np.full((H, W), 0.45, np.float32)
    ndvi[:, 25:] = 0.85
    write_raster(tiny.parent / "ndvi.tif", ndvi, nodata=-9999.0)
    over = {"services": {"soil_retention": {"vegetation_cover": {"ndvi": {"path": "ndvi.tif"}, "ndvi_soil": 0.05,
                                                                  "ndvi_veg": 0.90}}},
            "output": {"dir": "out_c"}}
    cfg = load_config(tiny, overrides=over)
    model, _ = model_for(tiny, **{k: v for k, v in over.items() if k != "output"})
    assert model.service("soil_retention").flags["c_method"] == "cai_2000"
    assert "usle_c" not in required_legend_columns(cfg)  # C no longer read from the legend
    res = run(cfg, progress=False)
    with rasterio.open(res.output_dir / "rasters/intermediate/c_factor.tif") as ds:
        c = ds.read(1)
    fvc_lo, fvc_hi = (0.45 - 0.05) / 0.85, (0.85 - 0.05) / 0.85  # 47.06 % and 94.1 % cover
    assert c[10, 10] == pytest.approx(c_cai_by_hand(fvc_lo), rel=1e-5)
    assert c[10, 10] == pytest.approx(0.6508 - 0.3436 * math.log10(47.0588235), rel=1e-5)  # 0.0758
    assert c[10, 30] == 0.0  # cover above 78.3 %: C = 0
    with pytest.raises(ConfigError, match="ndvi_veg .* must be greater than ndvi_soil"):
        load_config(tiny, overrides={"services": {"soil_retention": {
            "vegetation_cover": {"ndvi": {"path": "ndvi.tif"}, "ndvi_soil": 0.5, "ndvi_veg": 0.4}}}})


def _daily(tiny, year, days, value_of_day):
    path = tiny.parent / f"rain_{year}.tif"
    with rasterio.open(tiny.parent / "lc.tif") as ref:
        prof = dict(driver="GTiff", width=W, height=H, count=days, dtype="float32", crs=ref.crs,
                    transform=ref.transform, nodata=-9999.0)
    with rasterio.open(path, "w", **prof) as ds:
        for d in range(days):
            ds.write(np.full((H, W), value_of_day(d), np.float32), d + 1)
    return path


def test_r_zhang_2002_from_daily_rainfall(tiny):
    # 2019 (365 d) and 2020 (366 d): a 30 mm day every 20th day and 5 mm otherwise (below the 12 mm threshold)
    _daily(tiny, 2019, 365, lambda d: 30.0 if d % 20 == 0 else 5.0)
    _daily(tiny, 2020, 366, lambda d: 30.0 if d % 20 == 0 else 5.0)
    over = {"services": {"soil_retention": {"r_method": "zhang_2002_daily",
                                            "daily_precipitation": {"path": "rain_*.tif"}}},
            "output": {"dir": "out_z"}}
    res = run(load_config(tiny, overrides=over), progress=False)
    with rasterio.open(res.output_dir / "rasters/intermediate/r_factor.tif") as ds:
        r = ds.read(1)
    # erosive days: 19 per year (days 0, 20, ..., 360) in both years -> Pd12 = 30 mm, Py12 = 19*30 = 570 mm
    beta = 0.8363 + 18.144 / 30 + 24.455 / 570
    alpha = 21.586 * beta ** -7.1891
    r_year = alpha * 19 * 30 ** beta
    assert r[10, 10] == pytest.approx(r_year, rel=1e-5)
    # a file whose band count is not the days of its year is refused with its name
    _daily(tiny, 2020, 365, lambda d: 1.0)
    with pytest.raises(ValidationFailed, match=r"daily_precipitation: rain_2020.tif \(year 2020\) has 365 bands"):
        run(load_config(tiny, overrides={**over, "output": {"dir": "out_z2"}}), progress=False)


def test_method_blocks_are_only_read_by_their_method(tiny):
    with pytest.raises(ConfigError, match=r"soil_retention.daily_precipitation is only read by r_method "
                                          r"'zhang_2002_daily'"):
        load_config(tiny, overrides={"services": {"soil_retention": {"daily_precipitation": {"path": "x.tif"}}}})
    with pytest.raises(ConfigError, match=r"k_method 'epic' needs services.soil_retention.soil_texture"):
        load_config(tiny, overrides={"services": {"soil_retention": {"k_method": "epic"}}})
    with pytest.raises(ConfigError, match=r"k_method 'raster' needs inputs.k_factor"):
        load_config(tiny, overrides={"services": {"soil_retention": {"k_method": "raster"}}})
