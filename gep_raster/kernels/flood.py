"""Flood-regulation kernels: vegetation storm retention per pixel, its water-balance bound, and water-body
volumes spread to pixels."""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _storm(p, coef, veg, water, nodata, row_area, total, veg_out, water_out):
    h, w = coef.shape
    for i in range(h):
        a = row_area[i]
        for j in range(w):
            if nodata[i, j] != 0:
                total[i, j] = np.nan
                veg_out[i, j] = np.nan
                water_out[i, j] = np.nan
                continue
            wv = np.float64(water[i, j])
            if not (wv == wv) or wv < 0.0:  # NaN (no data in the cache raster) counts as no water body
                wv = 0.0
            if veg[i, j] != 0:
                pp = np.float64(p[i, j])
                cc = np.float64(coef[i, j])
                if pp == pp and cc == cc:
                    v = (pp - cc * pp) * a * 1e-3  # mm * m2 / 1000 = m3
                else:
                    v = np.nan
            else:
                v = 0.0
            veg_out[i, j] = v
            water_out[i, j] = wv
            if v == v:
                total[i, j] = v + wv
            elif wv > 0.0:
                total[i, j] = wv
            else:
                total[i, j] = np.nan
    return total, veg_out, water_out


def storm_retention(p, coef, veg, water, nodata, row_area_m2):
    """Flood-regulation volume per pixel: vegetation storm retention + water-body share.

    C_v = (P_storm − R_storm) · A · 10⁻³ with R_storm = c_s · P_storm (m3 per pixel), computed where
    ``veg`` is 1; 0 elsewhere. The water-body share (already in m3 per pixel) is added.

    Parameters
    ----------
    p : float32 (h, w)
        Storm rainfall depth P_storm, mm per storm event or per storm season (the rain of storms, not a
        monthly or annual total; NaN = nodata).
    coef : float32 (h, w)
        Storm runoff coefficient c_s of the pixel's class (fraction, 0..1; NaN = no legend row).
    veg : uint8 (h, w)
        1 where the class's ecosystem is one of the vegetation ecosystems, else 0.
    water : float32 (h, w)
        Water-body flood volume spread to the pixel, m3/a (0 where no water body; NaN read as 0).
    nodata : bool or uint8 (h, w)
        True where the land cover is nodata or has no legend row: every output is NaN there.
    row_area_m2 : float64 (h,)
        Pixel area per row, m2.

    Returns
    -------
    total, vegetation, water_bodies : float32 (h, w)
        m3/a per pixel. ``vegetation`` is NaN where a vegetation pixel has no storm precipitation
        (or no coefficient); ``total`` is then the water-body share alone if positive, else NaN.

    Raises
    ------
    ValueError
        Arrays are not 2-D of one shape, or ``row_area_m2`` does not have one value per row.

    Notes
    -----
    Vegetation storm retention (P_storm − R_storm)·A is the MEE-guideline / Zhejiang form as reported in
    the project's methods note §2.8 **[U]** (not in Garzê GEP 2010, which counts only water bodies).
    The result is not yet bounded by the water balance: the service applies :func:`water_balance_bound`.
    Accumulation is float64, outputs float32.
    """
    shape = coef.shape
    if coef.ndim != 2 or any(np.shape(x) != shape for x in (p, veg, water, nodata)):
        raise ValueError(f"storm_retention: p, coef, veg, water and nodata must be 2-D arrays of one shape; got "
                         f"{[np.shape(x) for x in (p, coef, veg, water, nodata)]}")
    if np.shape(row_area_m2) != (shape[0],):
        raise ValueError("storm_retention: row_area_m2 needs one pixel area per row")
    f = np.float32
    return _storm(np.asarray(p, f), np.asarray(coef, f), np.asarray(veg, np.uint8), np.asarray(water, f),
                  np.asarray(nodata, np.uint8), np.asarray(row_area_m2, np.float64),
                  np.empty(shape, f), np.empty(shape, f), np.empty(shape, f))


@njit(nogil=True, cache=True)
def _bound(veg, water, precip, et, wc, row_area, total, veg_out, cut):
    h, w = veg.shape
    for i in range(h):
        a = row_area[i]
        for j in range(w):
            v = np.float64(veg[i, j])
            wv = np.float64(water[i, j])
            if v == v and v > 0.0:
                p = np.float64(precip[i, j])
                e = np.float64(et[i, j])
                q = np.float64(wc[i, j])
                if p == p and e == e and q == q:
                    avail = (p - e) * a * 1e-3 - q  # mm * m2 / 1000 = m3
                    if avail < 0.0:
                        avail = 0.0
                    if v > avail:
                        c = v - avail
                        v = avail
                    else:
                        c = 0.0
                else:  # the bound cannot be evaluated: the vegetation part is unknown
                    v = np.nan
                    c = np.nan
            elif v == v:
                c = 0.0  # no vegetation term on the pixel: nothing to bound
            else:
                c = np.nan
            veg_out[i, j] = v
            cut[i, j] = c
            if v == v:
                total[i, j] = v + (wv if wv == wv else 0.0)
            elif wv > 0.0:
                total[i, j] = wv
            else:
                total[i, j] = np.nan
    return total, veg_out, cut


def water_balance_bound(vegetation_m3, water_bodies_m3, precip_mm, et_mm, water_conservation_m3, row_area_m2):
    """Bound the vegetation storm-retention volume by the water left after water conservation.

    Per pixel: ``C_v' = min(C_v, max((P − ET)·A·10⁻³ − Q_wc, 0))`` (all m3 on the pixel), so that water
    conservation + vegetation flood regulation never exceeds the pixel's available water P − ET:
    ``Q_wc + C_v' <= max((P − ET)·A·10⁻³, Q_wc)``, hence ``<= max(P − ET, 0)·A·10⁻³`` whenever
    ``Q_wc <= max(P − ET, 0)·A·10⁻³`` (true for the water balance Q_wc = (P − αP − ET)·A·10⁻³ with α >= 0,
    clipped or kept, and for InVEST AWY with its own AET as ET). The water-body share is not bounded (it is
    storage of lakes, reservoirs and marshes, not rain retained on the pixel) and is added back:
    ``total = C_v' + water``.

    Parameters
    ----------
    vegetation_m3 : float32 (h, w)
        Unbounded vegetation storm retention C_v, m3/a per pixel (from :func:`storm_retention`; 0 off the
        vegetation ecosystems, NaN = unknown / nodata).
    water_bodies_m3 : float32 (h, w)
        Water-body flood volume of the pixel, m3/a (0 where none; NaN read as 0 unless the vegetation part
        is NaN too).
    precip_mm : float32 (h, w)
        Annual precipitation P, mm/a (NaN = nodata).
    et_mm : float32 (h, w)
        Evapotranspiration ET, mm/a: the ET of the water-conservation balance (actual ET, Kc·ET0, or the
        InVEST AWY AET) when water conservation runs, else actual ET or Kc·ET0 (NaN = nodata).
    water_conservation_m3 : float32 (h, w)
        Water conservation Q_wc of the same pixel, m3/a (zeros when water conservation is disabled; a
        negative value kept by ``negative_values: keep`` widens the room accordingly).
    row_area_m2 : float64 (h,)
        Pixel area per row, m2.

    Returns
    -------
    total, vegetation, capped : float32 (h, w)
        m3/a per pixel. ``vegetation`` is the bounded C_v'; ``capped`` = C_v − C_v' >= 0, the volume cut by
        the bound (0 where the bound does not bind or there is no vegetation term). Where C_v > 0 but P, ET
        or Q_wc is NaN the bound cannot be evaluated: ``vegetation`` and ``capped`` are NaN and ``total`` is
        the water-body share if positive, else NaN (the rule of :func:`storm_retention`).

    Raises
    ------
    ValueError
        Arrays are not 2-D of one shape, or ``row_area_m2`` does not have one value per row.

    Notes
    -----
    Engineering rule of this engine against double counting (methods note §6.4: water conservation and
    flood regulation can value the same water), not from a standard. The vegetation term itself is
    **[U]** (methods note §2.8: reported for the MEE 2020 guideline / Zhejiang practice, not read in a
    primary source; Garzê GEP 2010 counts water bodies only). Arithmetic in float64, outputs float32.
    """
    shape = np.shape(vegetation_m3)
    arrays = (vegetation_m3, water_bodies_m3, precip_mm, et_mm, water_conservation_m3)
    if len(shape) != 2 or any(np.shape(x) != shape for x in arrays):
        raise ValueError(f"water_balance_bound: vegetation_m3, water_bodies_m3, precip_mm, et_mm and "
                         f"water_conservation_m3 must be 2-D arrays of one shape; got {[np.shape(x) for x in arrays]}")
    if np.shape(row_area_m2) != (shape[0],):
        raise ValueError("water_balance_bound: row_area_m2 needs one pixel area per row")
    f = np.float32
    return _bound(*(np.asarray(x, f) for x in arrays), np.asarray(row_area_m2, np.float64),
                  np.empty(shape, f), np.empty(shape, f), np.empty(shape, f))


@njit(nogil=True, cache=True)
def _spread(poly, row, col, frac, valid, share, row_area, out):
    for k in range(poly.shape[0]):
        if valid[k] != 0:
            out[row[k], col[k]] += share[poly[k]] * frac[k] * row_area[row[k]]
    return out


def spread_window(poly, row, col, frac, valid, share_m3_per_m2, row_area_m2, shape):
    """Spread per-body volumes to the pixels of one window in proportion to covered area.

    ``out[r, c] = Σ_entries share[body] × frac × pixel_area(r)`` over the entries whose pixel has a valid
    land cover, where ``share[body] = C_body / valid covered area(body)`` (m3 per m2), so that the
    pixels of a body add up to C_body exactly (methods note §5.3: a per-water-body quantity is spread
    to pixels by a documented rule before zonal summation).

    Parameters
    ----------
    poly : int32 (n,)
        Body position of each coverage entry (:meth:`gep_raster.accounts.zonal.CoverageIndex.entries`).
    row, col : int32 (n,)
        Row and column of the entry relative to the window.
    frac : float64 (n,)
        Exact coverage fraction of the pixel by the body (0, 1].
    valid : uint8 (n,)
        1 where the pixel's land cover is valid (not nodata, has a legend row).
    share_m3_per_m2 : float64 (n_bodies,)
        Body volume per m2 of its valid covered area.
    row_area_m2 : float64 (h,)
        Pixel area of each window row, m2.
    shape : (h, w)
        Window shape.

    Returns
    -------
    float64 (h, w)
        Volume per pixel, m3/a.

    Raises
    ------
    ValueError
        Entry arrays of different lengths, or an entry outside the window.
    """
    n = len(poly)
    if not (len(row) == len(col) == len(frac) == len(valid) == n):
        raise ValueError("spread_window: poly, row, col, frac and valid must have the same length")
    h, w = shape
    if n and (row.min() < 0 or row.max() >= h or col.min() < 0 or col.max() >= w):
        raise ValueError("spread_window: an entry lies outside the window")
    if np.shape(row_area_m2) != (h,):
        raise ValueError("spread_window: row_area_m2 needs one pixel area per window row")
    return _spread(np.asarray(poly, np.int64), np.asarray(row, np.int64), np.asarray(col, np.int64),
                   np.asarray(frac, np.float64), np.asarray(valid, np.uint8),
                   np.asarray(share_m3_per_m2, np.float64), np.asarray(row_area_m2, np.float64),
                   np.zeros((h, w), np.float64))
