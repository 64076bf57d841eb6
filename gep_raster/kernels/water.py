"""Water conservation (水源涵养) by the water-balance method."""
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
