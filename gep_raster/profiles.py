"""Method profiles: one config key (``profile:``) that sets the services of a run and their methods.

A profile is a fragment of a run configuration (``services.<name>`` keys) merged *under* the run's own keys:
whatever the configuration says itself wins (:func:`apply_profile`). The profile, the settings it applied and
the ones the configuration overrode are written to the manifest (``profile``); the methods each service then
used are the manifest's ``methods``.

Profiles shipped (each names what it follows and how well that was checked, evidence marks as the methods note):

``garze_2017``
    The structure of the Garzê 2010 GEP account (白玛卓嘎, 肖燚, 欧阳志云, 王莉雁 2017, 生态学报 37(19):
    6302-6312, tables 2 and 3, read [V]): water conservation by water balance, soil retention (USLE, less
    sedimentation + N and P), flood regulation, air purification, water purification, carbon sequestration and
    oxygen release from NPP (``garze_npp``: 1.19 × NPP, the oxygen rule inferred from the account's O2:CO2 ratio
    [U]), climate regulation, windbreak and sand fixation (RWEQ, ``sand_fixation``: needs its inputs), pest
    control.
``cn_guideline_2020``
    The regulating services of the 2020 national terrestrial GEP guideline (陆地生态系统生产总值核算技术指南) as
    a ministry-style platform lists them (water conservation, soil retention, windbreak and sand fixation, flood
    regulation, air purification, water purification, carbon sequestration 碳固定, oxygen release 氧气提供,
    climate regulation; methods note §2.9 [V2]: the guideline's text was not read). Oxygen by ``co2_ratio``
    (one flux with carbon); windbreak and sand fixation by RWEQ (``sand_fixation``: needs its inputs). Noise
    reduction: ``not_available``.
``invest_3_20``
    The three services with InVEST 3.20 counterparts on InVEST's equations (docs/invest_methods.md; compared
    with InVEST 3.20.2 itself, ``make bench-invest`` and tests/test_invest_peer.py): water conservation by Annual
    Water Yield (``invest_awy``), soil retention with InVEST SDR 3.20's LS on D8 routing (``ls_method:
    invest_3_20``, ``routing: d8``, ``slope_length_cap: false``, ``l_max: 122``, ``exclude_ecosystems: []``),
    carbon; every other service off (InVEST has no model for them).

GB/T 46869-2025 has no profile: its text was not read, so no service list or method can be said to follow it.
"""
from __future__ import annotations

from copy import deepcopy

__all__ = ["PROFILES", "PROFILE_NAMES", "apply_profile", "describe_profile"]

_ALL_ON = ("water_conservation", "soil_retention", "carbon_sequestration", "oxygen_release", "air_purification",
           "water_purification", "climate_regulation", "flood_regulation")


def _on(names, **methods) -> dict:
    return {n: {"enabled": True, **methods.get(n, {})} for n in names}


#: profile name -> description, sources with evidence, the config fragment, services of the followed account
#: that the engine cannot compute yet
PROFILES: dict[str, dict] = {
    "garze_2017": {
        "description": "Structure of the Garze 2010 GEP account (regulating services and their methods)",
        "sources": ["Baima Zhuoga, Xiao Yi, Ouyang Zhiyun, Wang Liyan (2017) Acta Ecologica Sinica 37(19):6302-6312, "
                    "doi:10.5846/stxb201607011362, tables 2-3 [V]; oxygen as 1.19 x NPP inferred from its O2:CO2 "
                    "ratio [U]"],
        "config": {"services": {
            **_on(_ALL_ON + ("pest_control", "sand_fixation"), water_conservation={"method": "water_balance"},
                  oxygen_release={"method": "garze_npp"})}},
        "not_available": [],
    },
    "cn_guideline_2020": {
        "description": "Regulating services of the 2020 national terrestrial GEP guideline as listed by a "
                       "ministry-style platform (the guideline's text was not read)",
        "sources": ["methods note sec. 2.9: platform list 水源涵养, 土壤保持, 防风固沙, 洪水调蓄, 空气净化, 水质净化, "
                    "碳固定, 氧气提供, 气候调节, 噪声消减 [V2]"],
        "config": {"services": {
            **_on(_ALL_ON + ("sand_fixation",), water_conservation={"method": "water_balance"},
                  oxygen_release={"method": "co2_ratio"}),
            "pest_control": {"enabled": False}}},
        "not_available": ["noise reduction (噪声消减)"],
    },
    "invest_3_20": {
        "description": "InVEST 3.20 counterparts only: Annual Water Yield, SDR 3.20 LS on D8, Carbon",
        "sources": ["InVEST 3.20.2 user guide and source; the equation-by-equation comparison in "
                    "docs/invest_methods.md [V]"],
        "config": {"services": {
            **_on(("water_conservation", "soil_retention", "carbon_sequestration"),
                  water_conservation={"method": "invest_awy"},
                  soil_retention={"ls_method": "invest_3_20", "routing": "d8", "slope_length_cap": False,
                                  "l_max": 122, "exclude_ecosystems": []}),
            **{n: {"enabled": False} for n in _ALL_ON[3:] + ("pest_control", "sand_fixation")}}},
        "not_available": [],
    },
}

#: the names ``profile:`` accepts
PROFILE_NAMES = tuple(PROFILES)


def _leaves(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_leaves(v, key + "."))
        else:
            out[key] = v
    return out


def apply_profile(raw: dict) -> dict:
    """The raw configuration with its ``profile`` fragment merged under the run's own keys.

    Parameters
    ----------
    raw : dict
        A run configuration with the YAML's keys; ``raw["profile"]`` names a profile of :data:`PROFILES` or is
        absent / None.

    Returns
    -------
    dict
        A new mapping (``raw`` is not modified): the profile's settings, then the run's keys over them at every
        depth. An unknown profile name is returned unchanged (the config's validation reports it).
    """
    name = raw.get("profile")
    if not isinstance(name, str) or name not in PROFILES:
        return raw
    return _merge(deepcopy(PROFILES[name]["config"]), raw)


def _merge(base: dict, over: dict) -> dict:
    """``base`` with ``over`` merged in, mappings key by key at every depth (as config.merge_overrides; kept here
    so that this module does not import the config module, which imports it)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def describe_profile(name: str | None, raw_services: dict | None = None) -> dict | None:
    """The manifest's ``profile`` record: name, description, sources, the settings the profile gives (dotted
    keys), those the run's own configuration overrode, and the services it cannot compute.

    Parameters
    ----------
    name : str or None
        ``RunConfig.profile``.
    raw_services : dict, optional
        The run's own ``services`` section as written (before the profile was applied), to name the overrides.

    Returns
    -------
    dict or None
        None without a profile.
    """
    if name is None:
        return None
    p = PROFILES[name]
    settings = _leaves(p["config"])
    own = _leaves({"services": raw_services or {}})
    overridden = {k: {"profile": v, "run": own[k]} for k, v in settings.items() if k in own and own[k] != v}
    return {"name": name, "description": p["description"], "sources": list(p["sources"]), "settings": settings,
            "overridden_by_run": overridden, "not_available": list(p["not_available"])}
