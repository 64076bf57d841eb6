"""Method profiles (``profile:``, gep_raster/profiles.py): the services and methods each one sets, the run's own
keys winning over them, the manifest record, and a run of each profile on the sample."""
from __future__ import annotations

import pytest
import yaml

import gep_raster
from conftest import sample_config
from gep_raster.config import load_config
from gep_raster.errors import ConfigError
from gep_raster.profiles import PROFILES


def _sample(tmp_path, name, **edits):
    """The sample config (absolute paths, report off) with top-level ``edits`` merged in."""
    from gep_raster.config import merge_overrides

    cfg = sample_config(tmp_path, name)
    raw = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    raw["output"]["report"] = "off"
    cfg.write_text(yaml.safe_dump(merge_overrides(raw, edits), allow_unicode=True), encoding="utf-8")
    return cfg


def _bare(tmp_path, profile, services=None):
    """A config whose services section is only the profile's (plus ``services``), keeping the sample's sand-fixation
    inputs (the service is off unless a profile or ``services`` switches it on)."""
    cfg = _sample(tmp_path, f"bare_{profile}", profile=profile)
    raw = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    sand = {k: v for k, v in raw["services"]["sand_fixation"].items() if k != "enabled"}  # the profile decides
    raw["services"] = {"sand_fixation": sand, **(services or {})}
    cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return cfg


def test_profiles_set_services_and_methods_and_own_keys_win(tmp_path):
    g = load_config(_bare(tmp_path, "garze_2017", {"climate_regulation": {"hot_days": 75},
                                                    "flood_regulation": {"vegetation_storm": True,
                                                                         "storm_precip_mm": 400}}),
                    overrides={"inputs": {"carbon": {"method": "npp"}}})
    assert g.services.enabled() == ["water_conservation", "soil_retention", "carbon_sequestration", "oxygen_release",
                                    "air_purification", "water_purification", "climate_regulation",
                                    "flood_regulation", "pest_control", "sand_fixation"]
    assert g.services.oxygen_release.method == "garze_npp" and g.services.water_conservation.method == "water_balance"
    # the run's own keys override the profile's: pest control off, oxygen by the CO2 ratio
    own = load_config(_bare(tmp_path, "cn_guideline_2020", {"air_purification": {"enabled": False},
                                                             "climate_regulation": {"hot_days": 75},
                                                             "flood_regulation": {"enabled": False}}))
    assert own.services.enabled() == ["water_conservation", "soil_retention", "carbon_sequestration",
                                      "oxygen_release", "water_purification", "climate_regulation", "sand_fixation"]
    assert own.services.oxygen_release.method == "co2_ratio"
    inv = load_config(_bare(tmp_path, "invest_3_20", {"water_conservation": {"method": "water_balance"}}))
    sr = inv.services.soil_retention
    assert inv.services.enabled() == ["water_conservation", "soil_retention", "carbon_sequestration"]
    assert (sr.ls_method, sr.routing, sr.slope_length_cap, sr.l_max, sr.exclude_ecosystems) == \
        ("invest_3_20", "d8", False, 122, [])


def test_unknown_profile_and_missing_inputs_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"profile: Input should be 'garze_2017', 'cn_guideline_2020' or "
                                          r"'invest_3_20'"):
        load_config(_sample(tmp_path, "x", profile="gbt_46869"))
    # InVEST AWY needs Z, soil depth and PAWC the sample does not have: the message says the profile set it
    with pytest.raises(ConfigError, match=r"(?s)invest_awy.*needs seasonality_z.*set by profile 'invest_3_20'"):
        load_config(_sample(tmp_path, "y", profile="invest_3_20"))


def test_garze_2017_on_the_sample(tmp_path):
    """Garze's oxygen rule: O2 = 1.19 x NPP (dry matter) while carbon is 1.63 x NPP, so O2 / CO2 = 1.19 / 1.63
    pixel by pixel; the sample's NEP raster stands in for NPP here (a test input, not a claim about NPP)."""
    cfg = _sample(tmp_path, "garze", profile="garze_2017",
                  inputs={"carbon": {"method": "npp"}},
                  services={"pest_control": {}, "sand_fixation": {"enabled": True}})
    res = gep_raster.run(cfg)
    m = res.manifest
    assert m["profile"]["name"] == "garze_2017" and m["profile"]["settings"]["services.oxygen_release.method"] == \
        "garze_npp"
    assert m["profile"]["not_available"] == []
    t = m["totals"]
    assert t["oxygen_release_t"]["sum"] / t["carbon_sequestration_tco2"]["sum"] == pytest.approx(1.19 / 1.63,
                                                                                                  rel=1e-5)
    assert t["pest_control_yuan"]["sum"] > 0 and t["sand_fixation_yuan"]["sum"] > 0
    assert set(m["methods"]) == set(PROFILES["garze_2017"]["config"]["services"])
    svc = [k for k in m["config"]["services"] if m["config"]["services"][k]["enabled"]]
    assert t["gep_r_yuan"]["sum"] == pytest.approx(sum(t[f"{k}_yuan"]["sum"] for k in svc), rel=1e-6)


def test_cn_guideline_2020_and_invest_3_20_on_the_sample(tmp_path):
    # (the sample's own enabled: false would win over the profile's choice of sand fixation)
    cn = gep_raster.run(_sample(tmp_path, "cn", profile="cn_guideline_2020",
                                services={"sand_fixation": {"enabled": True}})).manifest
    assert cn["profile"]["name"] == "cn_guideline_2020"
    assert sorted(cn["methods"]) == sorted(n for n, v in PROFILES["cn_guideline_2020"]["config"]["services"].items()
                                           if v["enabled"])
    assert "pest_control_yuan" not in cn["totals"] and cn["totals"]["sand_fixation_t"]["sum"] > 0
    assert cn["profile"]["not_available"] == ["noise reduction (噪声消减)"]
    # invest_3_20 with the water balance kept by the run's own key (the sample has no AWY inputs)
    # (a bare services section: the sample's own keys would switch its other services back on)
    inv = gep_raster.run(_bare(tmp_path, "invest_3_20", {"water_conservation": {"method": "water_balance"}})).manifest
    p = inv["profile"]
    assert p["overridden_by_run"]["services.water_conservation.method"] == {"profile": "invest_awy",
                                                                           "run": "water_balance"}
    assert sorted(inv["methods"]) == ["carbon_sequestration", "soil_retention", "water_conservation"]
    assert inv["config"]["services"]["soil_retention"]["ls_method"] == "invest_3_20"
    assert "air_purification_yuan" not in inv["totals"]


def test_report_names_the_profile(tmp_path):
    from gep_raster.report import write_report

    res = gep_raster.run(_bare(tmp_path, "invest_3_20", {"water_conservation": {"method": "water_balance"}}))
    write_report(res.output_dir, pdf=False)
    html = (res.output_dir / "report" / "report_en.html").read_text(encoding="utf-8")
    assert 'id="profile"' in html and "<strong>invest_3_20</strong>" in html
    assert "services.water_conservation.method</code> invest_awy → water_balance" in html
