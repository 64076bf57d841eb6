"""Water conservation (水源涵养) kernels: the water-balance method and the InVEST Annual Water Yield model."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _wc(p, et, kc, alpha, row_area, clip, q, deficit):
    h, w = p.shape
    for i in range(h):
        a = row_area[i] * 1e-3  # mm over m2 -> m3
        for j in range(w):
            pp = p[i, j]
            e = et[i, j] * kc[i, j]
            al = alpha[i, j]
            if np.isnan(pp) or np.isnan(e) or np.isnan(al):
                q[i, j] = np.nan
                deficit[i, j] = np.nan
                continue
            depth = np.float64(pp) - np.float64(al) * pp - e  # mm/a
            v = depth * a
            if v < 0.0:
                deficit[i, j] = -v
                q[i, j] = 0.0 if clip else v
            else:
                deficit[i, j] = 0.0
                q[i, j] = v
    return q, deficit


def water_conservation(p, et, kc, alpha, row_area_m2, clip=True):
    """Water conservation volume per pixel by the water balance Q = (P − R − ET)·A, R = α·P.

    Parameters
    ----------
    p : float32 (h, w)
        Annual precipitation P, mm/a. NaN = nodata.
    et : float32 (h, w)
        Actual evapotranspiration ET, mm/a; or reference ET0 when ``kc`` holds crop coefficients.
    kc : float32 (h, w)
        Multiplier of ``et`` (Kc per class for ET = Kc·ET0; all ones when ``et`` is actual ET).
    alpha : float32 (h, w)
        Surface-runoff coefficient α of the pixel's ecosystem type (fraction, 0–1).
    row_area_m2 : float64 (h,)
        Pixel area A per row, m2.
    clip : bool
        Rule for negative balances (ET > P − R): True sets Q = 0 (the pixel stores no water;
        the missing volume is reported in ``deficit``), False keeps the negative volume.

    Returns
    -------
    q : float32 (h, w)
        Water conservation, m3/a per pixel.
    deficit : float32 (h, w)
        max(0, −(P − R − ET))·A, m3/a per pixel: the volume removed by clipping (or kept
        negative); reported in the run manifest.

    Raises
    ------
    ValueError
        Arrays differ in shape or are not 2-D.

    Notes
    -----
    Q_wr = Σ (P_i − R_i − ET_i) × A_i × 10⁻³ (m3/a): water-balance method of the Chinese GEP
    guideline family, Garzê GEP (Baima Zhuoga et al. 2017, Acta Ecologica Sinica 37(19), eq. 3);
    R_i = P_i × α_i with ecosystem runoff coefficients (national water-conservation
    assessment, HJ 1173-2021 A.1 lineage).
    """
    shapes = {a.shape for a in (p, et, kc, alpha)}
    if len(shapes) != 1 or p.ndim != 2:
        raise ValueError(f"water_conservation: inputs must be 2-D arrays of one shape, got {sorted(shapes)}")
    if row_area_m2.shape != (p.shape[0],):
        raise ValueError("water_conservation: row_area_m2 must have one value per row")
    f = np.float32
    return _wc(p.astype(f, copy=False), et.astype(f, copy=False), kc.astype(f, copy=False),
               alpha.astype(f, copy=False), row_area_m2.astype(np.float64, copy=False), bool(clip),
               np.empty(p.shape, f), np.empty(p.shape, f))


# --------------------------------------------------------------------------------------
# InVEST Annual Water Yield (Budyko curve, Fu 1981 / Zhang et al. 2004)
# --------------------------------------------------------------------------------------
@njit(nogil=True, cache=True)
def _awy(p, et0, kc, root, soil, pawc, veg, z, row_area, clip, q, deficit, aet_out):
    h, w = p.shape
    for i in range(h):
        a = row_area[i] * 1e-3  # mm over m2 -> m3
        for j in range(w):
            pp = np.float64(p[i, j])
            e0 = np.float64(et0[i, j])
            k = np.float64(kc[i, j])
            v = np.float64(veg[i, j])
            rd = np.float64(root[i, j])
            sd = np.float64(soil[i, j])
            pw = np.float64(pawc[i, j])
            # InVEST fractp_op: a pixel is valid only where Kc, root depth, veg, ET0, P, the depth to the
            # root-restricting layer and PAWC all have data, and P != 0 (P = 0 -> nodata). P < 0 -> nodata here.
            if (np.isnan(pp) or np.isnan(e0) or np.isnan(k) or np.isnan(v) or np.isnan(rd) or np.isnan(sd)
                    or np.isnan(pw) or pp <= 0.0):
                q[i, j] = np.nan
                deficit[i, j] = np.nan
                aet_out[i, j] = np.nan
                continue
            pet = k * e0  # PET = Kc * ET0 (mm)
            phi = pet / pp  # aridity index PET/P
            if v == 1.0:
                # AWC = min(root restricting layer depth, root depth) * PAWC (mm)
                awc = (rd if rd < sd else sd) * pw
                omega = awc / pp * z + 1.25  # Donohue et al. (2012)
                if omega > 5.0:  # InVEST caps omega at 5 (Yang et al. 2008; Donohue et al. 2012)
                    omega = 5.0
                # Fu (1981) / Zhang et al. (2004): AET/P = 1 + PET/P - (1 + (PET/P)^w)^(1/w)
                frac = 1.0 + phi - (1.0 + phi ** omega) ** (1.0 / omega)
                if phi < frac:  # AET <= PET (InVEST takes min(PET/P, AET/P))
                    frac = phi
            else:
                # non-vegetated: AET = min(Kc * ET0, P)
                frac = (pet if pet < pp else pp) / pp
            aet_out[i, j] = frac * pp
            y = (1.0 - frac) * pp  # water yield, mm
            vol = y * a
            if vol < 0.0:  # only from rounding (AET/P <= 1 by construction)
                deficit[i, j] = -vol
                q[i, j] = 0.0 if clip else vol
            else:
                deficit[i, j] = 0.0
                q[i, j] = vol
    return q, deficit, aet_out


def invest_annual_water_yield(p, et0, kc, root_depth, soil_depth, pawc, lulc_veg, seasonality_z, row_area_m2,
                              clip=True):
    """Annual water yield per pixel by the InVEST Annual Water Yield model (Budyko / Fu–Zhang).

    Per pixel, with PET = Kc·ET0::

        vegetated (lulc_veg = 1):
            AWC   = min(soil_depth, root_depth) · PAWC                      (mm)
            ω     = min(Z · AWC / P + 1.25, 5)
            AET/P = min(PET/P, 1 + PET/P − [1 + (PET/P)^ω]^(1/ω))
        other classes (lulc_veg = 0):
            AET/P = min(Kc·ET0, P) / P
        Y = (1 − AET/P) · P                                                 (mm/a)
        Q = Y · A · 10⁻³                                                    (m3/a per pixel)

    Parameters
    ----------
    p : float32 (h, w)
        Annual precipitation P, mm/a. NaN = nodata.
    et0 : float32 (h, w)
        Annual reference evapotranspiration ET0, mm/a.
    kc : float32 (h, w)
        Crop/evaporation coefficient Kc of the pixel's class (dimensionless).
    root_depth : float32 (h, w)
        Root depth of the pixel's class, mm (InVEST ``root_depth``; any finite value on non-vegetated
        classes, where it is not used).
    soil_depth : float32 (h, w)
        Depth to the root-restricting layer, mm (InVEST ``depth_to_root_rest_layer``).
    pawc : float32 (h, w)
        Plant available water content, fraction (0–1).
    lulc_veg : float32 (h, w)
        1 for vegetated classes (Budyko curve), 0 for the others (AET = min(Kc·ET0, P)).
    seasonality_z : float
        Seasonality constant Z (> 0, dimensionless; typically 1–30).
    row_area_m2 : float64 (h,)
        Pixel area A per row, m2.
    clip : bool
        Rule for a negative volume (only possible from rounding, since AET ≤ P): True sets it to 0.

    Returns
    -------
    q : float32 (h, w)
        Water yield volume, m3/a per pixel.
    deficit : float32 (h, w)
        max(0, −Y)·A, m3/a per pixel (0 except for rounding; kept for the manifest diagnostics).
    aet : float32 (h, w)
        Actual evapotranspiration AET, mm/a.
        All three are NaN where any input is NaN and where P ≤ 0 (InVEST writes nodata where
        P = 0; a negative P is treated as nodata here). The arithmetic is done in float64.

    Raises
    ------
    ValueError
        Arrays are not 2-D or differ in shape, ``row_area_m2`` does not have one value per row, or
        ``seasonality_z`` is not a finite positive number.

    Notes
    -----
    InVEST user guide, *Annual Water Yield*, section "Water Yield Model": Y(x) = (1 − AET(x)/P(x))·P(x);
    eq. ``aet_vegetated`` (Fu 1981; Zhang et al. 2004); PET = Kc·ET0; eq. ``omega``
    ω = Z·AWC/P + 1.25 (Donohue et al. 2012), capped at 5; AWC = Min(Rest.layer.depth, root.depth)·PAWC;
    eq. ``aet_non_vegetated`` AET = Min(Kc·ET0, P). The source (natcap/invest
    ``annual_water_yield.fractp_op``) also takes min(PET/P, AET/P) on vegetated pixels and treats
    P = 0 as nodata; both are reproduced. InVEST stores AET/P as float32 before Y = (1 − AET/P)·P;
    here everything is float64 until the final rounding (relative differences ≲ 1e-6).

    References
    ----------
    Fu, B.P. (1981). On the calculation of the evaporation from land surface. *Sci. Atmos. Sin.* 5:23–31.
    Zhang, L. et al. (2004). A rational function approach for estimating mean annual evapotranspiration.
    *Water Resour. Res.* 40(2).
    Donohue, R.J., Roderick, M.L. & McVicar, T.R. (2012). *J. Hydrol.* 436–437:35–50.
    """
    arrs = {"p": p, "et0": et0, "kc": kc, "root_depth": root_depth, "soil_depth": soil_depth, "pawc": pawc,
            "lulc_veg": lulc_veg}
    arrs = {k: np.asarray(v) for k, v in arrs.items()}
    shapes = {v.shape for v in arrs.values()}
    if len(shapes) != 1 or arrs["p"].ndim != 2:
        raise ValueError("invest_annual_water_yield: inputs must be 2-D arrays of one shape, got "
                         f"{ {k: v.shape for k, v in arrs.items()} }")
    row_area_m2 = np.asarray(row_area_m2, dtype=np.float64)
    if row_area_m2.shape != (arrs["p"].shape[0],):
        raise ValueError("invest_annual_water_yield: row_area_m2 must have one value per row")
    try:
        z = float(seasonality_z)
    except (TypeError, ValueError):
        raise ValueError(f"invest_annual_water_yield: seasonality_z must be a number, got {seasonality_z!r}") from None
    if not np.isfinite(z) or z <= 0.0:
        raise ValueError(f"invest_annual_water_yield: seasonality_z must be a finite positive number, got {z}")
    f = np.float32
    a = {k: v.astype(f, copy=False) for k, v in arrs.items()}
    shape = a["p"].shape
    return _awy(a["p"], a["et0"], a["kc"], a["root_depth"], a["soil_depth"], a["pawc"], a["lulc_veg"], z,
                row_area_m2, bool(clip), np.empty(shape, f), np.empty(shape, f), np.empty(shape, f))
