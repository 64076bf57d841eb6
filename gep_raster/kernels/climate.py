"""Climate regulation (气候调节) kernel: evapotranspiration energy -> air-conditioner / humidifier kWh.

Garzê GEP 2010 (白玛卓嘎, 肖燚, 欧阳志云, 王莉雁 2017, 生态学报 37(19): 6302-6312) [V]:

* vegetation transpiration  ``E_pt = EPP × S × D / (3600 × r)``            (kWh)
* water-surface evaporation ``E_we = E_w × ρ × q / 3600 + E_w × γ``        (kWh, no EER division)

with EPP derived per pixel from the annual ET (engineering choice, methods note §2.7 [EX]/[U]):
``EPP = ET/365 × f × q`` (kJ m⁻² d⁻¹; 1 mm of water over 1 m² = 1 kg) and, for water surfaces,
``E_w = ET/365 × f × D × S / 1000`` (m³ evaporated during the D hot days).
"""
from __future__ import annotations

import numpy as np
from numba import njit

#: density of water, kg/m3 (ρ in Garzê's water-surface equation)
WATER_DENSITY = 1000.0
#: kJ per kWh
KJ_PER_KWH = 3600.0

#: pixel kinds of the ``kind`` raster
KIND_NONE, KIND_VEGETATION, KIND_WATER = 0, 1, 2


@njit(nogil=True, cache=True)
def _climate(kind, et, kc, days, row_area, day_frac, latent, eer, gamma, out):
    h, w = kind.shape
    for i in range(h):
        area = row_area[i]
        for j in range(w):
            k = kind[i, j]
            if np.isnan(k):
                out[i, j] = np.nan
                continue
            if k == 0.0:
                out[i, j] = 0.0
                continue
            e = np.float64(et[i, j]) * np.float64(kc[i, j])
            d = np.float64(days[i, j])
            if np.isnan(e) or np.isnan(d):
                out[i, j] = np.nan
                continue
            if e < 0.0:  # no cooling from a negative ET (condensation / product noise)
                e = 0.0
            daily = e * day_frac  # mm/d = kg m-2 d-1
            if k == 1.0:
                epp = daily * latent  # kJ m-2 d-1
                out[i, j] = epp * area * d / (KJ_PER_KWH * eer)
            else:
                ew = daily * 1e-3 * d * area  # m3 evaporated during the hot days
                out[i, j] = ew * WATER_DENSITY * latent / KJ_PER_KWH + ew * gamma
    return out


def climate_regulation_kwh(kind, et, kc, hot_days, row_area_m2, *, et_factor=1.0, latent_heat=2450.0,
                           eer=3.0, humidifier_kwh_per_m3=120.0):
    """Electricity (kWh/a per pixel) that air conditioners and humidifiers would need to do the cooling
    and humidifying work of evapotranspiration during the hot days.

    Parameters
    ----------
    kind : float32 (h, w)
        0 = ecosystem not counted (result 0), 1 = vegetation transpiration term, 2 = water-surface
        evaporation term, NaN = nodata (result NaN).
    et : float32 (h, w)
        Annual ET (mm/a): actual ET, or ET0 multiplied by ``kc``. NaN = nodata. Negative values are
        treated as 0 (no cooling).
    kc : float32 (h, w)
        Crop coefficient per pixel (ones when ``et`` is actual ET).
    hot_days : float32 (h, w)
        D, number of days per year with daily mean temperature > 26 °C (days/a), in [0, 366]; NaN = nodata.
    row_area_m2 : float64 (h,)
        Pixel area per row S, m2.
    et_factor : float
        f, ratio of the daily ET during the hot days to the annual mean daily ET (ET/365); 1.0 = no
        seasonal adjustment. Must be > 0.
    latent_heat : float
        q, latent heat of vaporisation, kJ/kg (= J/g). Must be > 0.
    eer : float
        r, air-conditioner energy-efficiency ratio (-). Must be > 0. Not applied to the water term (Garzê).
    humidifier_kwh_per_m3 : float
        γ, humidifier electricity per m3 of water evaporated (kWh/m3); 0 switches the humidifier term off.

    Returns
    -------
    float32 (h, w)
        kWh/a per pixel; 0 where ``kind`` is 0; NaN where ``kind`` is NaN, or, on counted pixels,
        where ET, Kc or D is NaN.

    Raises
    ------
    ValueError
        Arrays are not 2-D of one shape, ``row_area_m2`` has not one value per row, or a scalar is
        out of range (``et_factor``, ``latent_heat``, ``eer`` <= 0, ``humidifier_kwh_per_m3`` < 0).

    Notes
    -----
    Vegetation: ``EPP = ET/365 × f × q`` (kJ m⁻² d⁻¹), ``E_pt = EPP × S × D / (3600 × r)``.
    Water: ``E_w = ET/365 × f × 10⁻³ × D × S`` (m³), ``E_we = E_w × 1000 × q / 3600 + E_w × γ``.
    Garzê GEP 2010 equations [V]; the EPP derivation from ET is an engineering choice (methods note §2.7).
    """
    shape = kind.shape
    arrays = {"kind": kind, "et": et, "kc": kc, "hot_days": hot_days}
    for name, a in arrays.items():
        if a.ndim != 2 or a.shape != shape:
            raise ValueError(f"climate_regulation_kwh: '{name}' must be 2-D with shape {shape}, got {a.shape}")
    if row_area_m2.shape != (shape[0],):
        raise ValueError("climate_regulation_kwh: row_area_m2 must hold one area per row")
    for name, v in (("et_factor", et_factor), ("latent_heat", latent_heat), ("eer", eer)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"climate_regulation_kwh: {name} must be a finite number > 0, got {v}")
    if not (np.isfinite(humidifier_kwh_per_m3) and humidifier_kwh_per_m3 >= 0):
        raise ValueError(f"climate_regulation_kwh: humidifier_kwh_per_m3 must be >= 0, got {humidifier_kwh_per_m3}")
    f = np.float32
    return _climate(kind.astype(f, copy=False), et.astype(f, copy=False), kc.astype(f, copy=False),
                    hot_days.astype(f, copy=False), row_area_m2.astype(np.float64, copy=False),
                    float(et_factor) / 365.0, float(latent_heat), float(eer), float(humidifier_kwh_per_m3),
                    np.empty(shape, f))
