"""The committed sample is exactly what sample_tiles/make_sample.py generates (deterministic)."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.mark.slow
def test_generator_reproduces_committed_sample(tmp_path):
    out = tmp_path / "data"
    subprocess.run([sys.executable, str(REPO / "sample_tiles/make_sample.py"), "--out", str(out),
                    "--legend", str(tmp_path / "legend.csv")], check=True, cwd=REPO, capture_output=True)
    committed = sorted(p.relative_to(REPO / "sample_tiles/data") for p in (REPO / "sample_tiles/data").rglob("*")
                       if p.is_file())
    regenerated = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert committed == regenerated
    rasters = [p for p in committed if p.suffix == ".tif"]
    assert len(rasters) >= 20
    for rel in rasters:
        assert _sha(out / rel) == _sha(REPO / "sample_tiles/data" / rel), rel
    assert (tmp_path / "legend.csv").read_text(encoding="utf-8") == \
        (REPO / "sample_tiles/legend.csv").read_text(encoding="utf-8")


@pytest.mark.slow
def test_sample_pipeline_accounts(tmp_path):
    import pandas as pd

    from gep_raster.config import load_config
    from gep_raster.pipeline import run

    cfg = load_config(REPO / "pipelines/sample.yaml", overrides={"output": {"dir": str(tmp_path / "out")}})
    res = run(cfg, progress=False)
    m = res.manifest
    # tiles were mosaicked: 4 land-cover and 4 DEM tiles; NEP was warped from EPSG:4326
    assert len(m["inputs"]["lc"]["files"]) == 4 and len(m["inputs"]["dem"]["files"]) == 4
    assert m["inputs"]["carbon_flux"]["resampling"] == ["bilinear"]
    # every valid land pixel got NEP after warping except a thin edge strip
    tot = m["totals"]
    assert tot["carbon_sequestration_tco2"]["valid_pixels"] >= 0.999 * tot["water_conservation_m3"]["valid_pixels"]
    towns = pd.read_csv(res.output_dir / "tables/township.csv", dtype={"town_code": str})
    county = pd.read_csv(res.output_dir / "tables/county.csv", dtype={"county_code": str})
    assert len(towns) == 6 and towns["town_code"].str.startswith("331122").all()
    for col in ("water_conservation_m3", "soil_retention_t", "carbon_sequestration_tco2", "gep_r_yuan"):
        assert towns[col].sum() == pytest.approx(county[col].iloc[0], rel=1e-6)
    assert m["hierarchy_checks"][0]["ok"]
    assert m["hierarchy_checks"][0]["covered_share_of_parent"] == pytest.approx(1.0, abs=1e-6)
    units = pd.read_csv(res.output_dir / "tables/special_units.csv").set_index("unit_id")
    # the 20 m x 20 m micro parcel (smaller than a 30 m pixel) still gets its share
    assert units.loc["VEP-003", "area_km2"] == pytest.approx(0.0004, rel=1e-6)
    assert units.loc["VEP-003", "gep_r_yuan"] > 0
    assert units.loc["VEP-001", "area_km2"] == pytest.approx(4.0, rel=1e-3)
