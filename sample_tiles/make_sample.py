#!/usr/bin/env python
"""Deterministic generator of the synthetic ``sample_tiles`` data set.

Everything here is synthesised from a fixed random seed with numpy/scipy (plus shapely,
rasterio and pyogrio for geometry and file writing). No external data is read.

The landscape imitates a subtropical hilly county in south-west Zhejiang (think Lishui):
a main river valley running west -> east with tributaries, forested slopes up to ~1400 m,
paddy/cropland/built-up on the valley floors, a reservoir in a southern side valley.

Usage::

    python sample_tiles/make_sample.py [--out sample_tiles/data] [--legend sample_tiles/legend.csv]

Same seed -> byte-identical files (same platform and library versions; see PROVENANCE.md).
A ``SHA256SUMS`` file is written next to the data for checking.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import heapq
import io
import os
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline

# GDAL settings must be in place before rasterio / pyogrio open anything.
os.environ["OGR_CURRENT_DATE"] = "2000-01-01T00:00:00.000Z"   # fixed GPKG last_change
os.environ["GDAL_PAM_ENABLED"] = "NO"                          # no .aux.xml side-cars

import rasterio  # noqa: E402
from rasterio import features  # noqa: E402
from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import Affine  # noqa: E402
from rasterio.warp import Resampling, reproject, transform_bounds  # noqa: E402
import shapely  # noqa: E402
import shapely.affinity  # noqa: E402
from shapely.geometry import LineString, MultiPoint, Point, Polygon, box  # noqa: E402
from shapely.ops import unary_union  # noqa: E402

SEED = 20240611

# ---------------------------------------------------------------- grid definition
CRS_UTM = CRS.from_epsg(32650)
CRS_LL = CRS.from_epsg(4326)
RES = 30.0
W, H = 600, 480                    # columns, rows of the full 30 m grid
X0, Y0 = 600000.0, 3130000.0       # upper-left corner
TILE_W, TILE_H = 300, 240          # 2 x 2 tiles, exactly abutting
FULL_TRANSFORM = Affine(RES, 0.0, X0, 0.0, -RES, Y0)

# coarse climate grid: 1 km, 1 km margin, origin offset by 137 m from the 30 m lattice
CLIM_RES = 1000.0
CLIM_X0 = X0 - 1000.0 - 137.0      # 598863
CLIM_Y0 = Y0 + 1000.0 + 137.0      # 3131137
CLIM_W, CLIM_H = 21, 17
CLIM_TRANSFORM = Affine(CLIM_RES, 0.0, CLIM_X0, 0.0, -CLIM_RES, CLIM_Y0)

# NEP grid: geographic, 0.0003 degree
NEP_RES = 0.0003

LC_NODATA = 255
F_NODATA = -9999.0

# nodata triangle in the north-east corner (outside the county): legs along the top edge
# (TRI_W columns) and the right edge (TRI_H rows)
TRI_W, TRI_H = 95, 75

# quantisation steps (binary fractions -> exact in float32, better compression)
Q_DEM = 1.0 / 256.0   # m; also the epsilon of the depression fill
Q_CLIM = 1.0 / 256.0  # mm
Q_NEP = 1.0 / 1024.0  # t C/ha/a

# terrain / landscape model parameters
A_CHANNEL = 200          # cells (0.18 km2): channel initiation for the terrain model
INFLOW_KM2 = 160.0       # main river catchment upstream of the west edge
TOWN_FRAC = 0.56         # position of the town along the main river
KS = 450.0               # channel steepness (S = KS * A[m2]^-0.6)
NOISE = 8.0              # m, fractal roughness on the slopes
G_LIN = 0.15             # linear hillslope term (keeps cones rising; no hanging valleys)
HS = 180.0               # m, hillslope relief scale
RES_AREA_KM2 = 0.8       # target reservoir area
RES_DEPTH = 80.0         # m, reservoir level above the river bed at the dam

COUNTY_CODE = "331122"
COUNTY_NAME = "示范县"

# ---------------------------------------------------------------- legend
# code, name, name_zh, ecosystem, runoff_coef, usle_c, usle_p, kc, carbon_tco2_ha,
# so2_kg_ha, nox_kg_ha, dust_kg_ha, notes
LEGEND = [
    (1, "evergreen broadleaf forest", "常绿阔叶林", "forest", 0.0267, 0.006, 1.0, 1.0, 9.0,
     88.65, 6.0, 10110,
     "runoff [V2] national water-conservation table (evergreen broadleaf forest); "
     "SO2/dust [V] 高天岩 2017 via methods note; C/P/Kc/carbon/NOx [U] assumptions"),
    (2, "evergreen needleleaf forest", "常绿针叶林", "forest", 0.0302, 0.006, 1.0, 1.0, 8.0,
     215.60, 6.0, 33200,
     "runoff [V2] national water-conservation table (evergreen needleleaf forest); "
     "SO2/dust [V] 高天岩 2017 via methods note; C/P/Kc/carbon/NOx [U] assumptions"),
    (3, "mixed forest", "针阔混交林", "forest", 0.0229, 0.006, 1.0, 1.0, 8.5,
     152.13, 6.0, 21660,
     "runoff [V2] national water-conservation table (mixed needleleaf-broadleaf forest); "
     "SO2/dust [V] 高天岩 2017 via methods note; C/P/Kc/carbon/NOx [U] assumptions"),
    (4, "bamboo forest", "竹林", "forest", 0.0267, 0.02, 1.0, 1.0, 10.0,
     98.0, 6.0, 20700,
     "runoff [U] assumption = evergreen broadleaf value; SO2/dust [V] 高天岩 2017 via "
     "methods note; C/P/Kc/carbon/NOx [U] assumptions"),
    (5, "shrub", "灌丛", "shrub", 0.0426, 0.05, 1.0, 0.9, 3.0,
     92.10, 5.0, 11400,
     "runoff [V2] national water-conservation table (evergreen broadleaf shrub); "
     "SO2/dust [V] 高天岩 2017 via methods note; C/P/Kc/carbon/NOx [U] assumptions"),
    (6, "grassland (tussock)", "草丛", "grassland", 0.0937, 0.08, 1.0, 0.85, 1.5,
     20.0, 3.0, 1000,
     "runoff [V2] national water-conservation table (tussock); C/P/Kc/carbon/SO2/NOx/dust "
     "[U] assumptions"),
    (7, "paddy", "水田", "cropland", 0.10, 0.15, 0.15, 1.1, 1.0,
     45.0, 2.0, 1000,
     "all values [U] assumptions (runoff; C/P typical ranges from methods note; Kc FAO-56-like)"),
    (8, "dry cropland", "旱地", "cropland", 0.15, 0.31, 0.5, 0.9, 0.8,
     45.0, 2.0, 1000,
     "all values [U] assumptions (runoff; C/P typical ranges from methods note; Kc FAO-56-like)"),
    (9, "tea garden / orchard", "茶园/果园", "cropland", 0.08, 0.12, 0.5, 0.95, 2.0,
     45.0, 3.0, 3000,
     "all values [U] assumptions (runoff; C/P typical ranges from methods note; Kc FAO-56-like); "
     "garden land counted as cropland ecosystem"),
    (10, "water (river + reservoir)", "水体(河流/水库)", "water", 0.0, 0.0, 1.0, 1.05, 0.0,
     0.0, 0.0, 0,
     "runoff/C/Kc [U] assumptions; P=1 irrelevant since C=0; counted as wetland (湿地) "
     "in Chinese ecosystem classification"),
    (11, "built-up", "建设用地", "urban", 0.60, 0.0, 1.0, 0.2, 0.0,
     0.0, 0.0, 0,
     "runoff/C/Kc [U] assumptions; P=1 irrelevant since C=0; no air purification credited"),
    (12, "bare", "裸地", "bare", 0.20, 1.0, 1.0, 0.2, 0.0,
     0.0, 0.0, 0,
     "runoff/C/P/Kc [U] assumptions (C=1 bare fallow reference)"),
]
LEGEND_COLUMNS = ["code", "name", "name_zh", "ecosystem", "runoff_coef", "usle_c", "usle_p",
                  "kc", "carbon_tco2_ha", "so2_kg_ha", "nox_kg_ha", "dust_kg_ha", "notes"]

# NEP ranges per class, t C/ha/a (lo, hi)
NEP_RANGE = {1: (2.2, 4.0), 2: (1.5, 3.0), 3: (1.8, 3.5), 4: (2.5, 4.0), 5: (0.8, 1.5),
             6: (0.3, 0.8), 7: (0.3, 1.0), 8: (0.3, 0.9), 9: (0.6, 1.4), 10: (0.0, 0.0),
             11: (0.0, 0.0), 12: (0.0, 0.0)}


# ================================================================ helpers
def fbm(rng, shape, beta, lmax=None, n=1024):
    """Fractal (power-law spectrum) noise, zero mean, unit std, cropped from an n x n field.
    `lmax` (px) tapers off wavelengths longer than lmax (keeps patches at a sensible size)."""
    white = rng.standard_normal((n, n))
    spec = np.fft.rfft2(white)
    ky = np.fft.fftfreq(n)[:, None]
    kx = np.fft.rfftfreq(n)[None, :]
    k = np.sqrt(kx * kx + ky * ky)
    k[0, 0] = np.inf
    spec *= k ** (-beta / 2.0)
    if lmax is not None:
        spec *= 1.0 - np.exp(-((k * lmax) ** 4))
    out = np.fft.irfft2(spec, s=(n, n))[: shape[0], : shape[1]]
    return (out - out.mean()) / out.std()


def smooth_noise(rng, shape, sigma):
    """Gaussian-filtered white noise, zero mean, unit std (patch size ~ sigma pixels)."""
    pad = int(3 * sigma)
    white = rng.standard_normal((shape[0] + 2 * pad, shape[1] + 2 * pad))
    out = ndimage.gaussian_filter(white, sigma, mode="reflect")[pad:-pad, pad:-pad]
    return (out - out.mean()) / out.std()


def ramp(x, lo, hi):
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def quantize(a, q):
    return np.round(a / q) * q


def wiggle(q, s, amp, rng):
    """Offset a dense curve perpendicular to its course by a sum of random sinusoids (px)."""
    d = np.gradient(q, axis=0)
    nrm = np.stack([-d[:, 1], d[:, 0]], 1) / np.hypot(d[:, 0], d[:, 1])[:, None]
    ph = rng.uniform(0, 2 * np.pi, 3)
    taper = np.minimum(1.0, np.minimum(s, s[-1] - s) / 600.0)
    off = amp * taper * (np.sin(s / 1300.0 + ph[0]) + 0.6 * np.sin(s / 530.0 + ph[1])
                         + 0.3 * np.sin(s / 260.0 + ph[2]))
    return q + nrm * off[:, None]


def curve(points, step=0.2):
    """Dense points (col, row) along a cubic spline through control points, and their
    cumulative arc length in metres."""
    p = np.asarray(points, dtype=float)
    seg = np.hypot(*np.diff(p, axis=0).T)
    t = np.concatenate([[0.0], np.cumsum(seg)])
    cs = CubicSpline(t, p, bc_type="natural")
    tt = np.arange(0.0, t[-1] + 1e-9, step)
    q = cs(tt)
    ds = np.hypot(*np.diff(q, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(ds)]) * RES
    return q, s


def nodata_triangle():
    rows, cols = np.mgrid[0:H, 0:W]
    return (rows + 0.5) / TRI_H + (W - cols - 0.5) / TRI_W < 1.0


def triangle_polygon():
    """The nodata triangle in map coordinates."""
    xr = X0 + W * RES
    return Polygon([(xr - TRI_W * RES, Y0), (xr, Y0), (xr, Y0 - TRI_H * RES)])


def pix_to_xy(col, row):
    return X0 + col * RES, Y0 - row * RES


# ================================================================ terrain
def build_network(rng):
    """Designed large valleys (main river + tributaries) as dense point sets with a floor
    elevation and half floor width; they only guide the drainage of the pre-terrain."""
    ctrl = [(-12, 168), (70, 186), (150, 232), (235, 218), (320, 262), (400, 292),
            (480, 286), (550, 314), (612, 332)]
    q, s = curve(ctrl)
    q = wiggle(q, s, 3.0, rng)
    q, s = curve(q[::25].tolist() + [q[-1].tolist()])
    S = s[-1]
    z = 80.0 + 170.0 * (1.0 - s / S) ** 1.35
    chans = [dict(name="main", pts=q, z=z, w=np.full_like(s, 200.0), s=s, frac=s / S)]

    def add_trib(name, parent, head, mid, target_col, rise, width):
        i = int(np.argmin(np.abs(parent["pts"][:, 0] - target_col)))
        mouth = parent["pts"][i]
        pts, sl = curve([head, mid, mouth.tolist()])
        pts = wiggle(pts, sl, 2.5, rng)
        pts, sl = curve(pts[::20].tolist() + [pts[-1].tolist()])
        pts, sl = pts[::-1], sl[-1] - sl[::-1]         # run from the mouth upstream
        L = sl[-1]
        zt = parent["z"][i] + 0.5 + rise * (sl / L) ** 1.6
        wt = width * (1.0 - sl / L) ** 1.2
        ch = dict(name=name, pts=pts, z=zt, w=wt, s=sl, frac=sl / L)
        chans.append(ch)
        return ch

    m = chans[0]
    add_trib("T1", m, (40, 12), (85, 95), 118, 520.0, 110.0)
    t2 = add_trib("T2", m, (250, 8), (232, 110), 262, 560.0, 120.0)
    add_trib("T3", m, (385, 45), (405, 170), 432, 480.0, 100.0)
    t4 = add_trib("T4", m, (40, 470), (110, 360), 160, 560.0, 110.0)
    t5 = add_trib("T5", m, (270, 470), (300, 390), 338, 600.0, 120.0)
    add_trib("T6", m, (545, 468), (505, 400), 500, 480.0, 100.0)
    add_trib("T2a", t2, (150, 40), (185, 105), 228, 380.0, 60.0)
    add_trib("T5a", t5, (395, 455), (355, 420), 318, 380.0, 60.0)
    add_trib("T4a", t4, (8, 330), (40, 320), 85, 320.0, 50.0)
    return chans


def pre_terrain(rng, chans):
    """Lower envelope of valley 'cones' around the designed valleys,
    h(x) = min_p z(p) + f(|x - p|): continuous, used only to route the drainage."""
    rr = np.mgrid[0:H, 0:W]
    Hfield = (560.0 + 120.0 * smooth_noise(rng, (H, W), 60.0)
              + 140.0 * ramp(rr[0], 330, 480) + 110.0 * ramp(-rr[1], -120, 0))
    Lhill = 1300.0
    best = np.full((H, W), np.inf)
    best_f = np.zeros((H, W))
    piece_len = 12.0                                 # px
    for ch in chans:
        pts = ch["pts"]
        col = np.floor(pts[:, 0]).astype(int)
        row = np.floor(pts[:, 1]).astype(int)
        inside = (col >= 0) & (col < W) & (row >= 0) & (row < H)
        piece_id = np.floor(ch["s"] / (piece_len * RES)).astype(int)
        for pid in np.unique(piece_id[inside]):
            sel = inside & (piece_id == pid)
            zimg = np.full((H, W), np.inf)
            wimg = np.zeros((H, W))
            order = np.argsort(-ch["z"][sel], kind="stable")
            rr_, cc_ = row[sel][order], col[sel][order]
            zimg[rr_, cc_] = ch["z"][sel][order]
            wimg[rr_, cc_] = ch["w"][sel][order]
            mask = np.isfinite(zimg)
            dist, (ir, ic) = ndimage.distance_transform_edt(~mask, return_indices=True)
            dm = dist * RES
            wn = wimg[ir, ic]
            f = 0.01 * np.minimum(dm, wn) + Hfield * (1.0 - np.exp(-np.maximum(dm - wn, 0) / Lhill))
            cand = zimg[ir, ic] + f
            upd = cand < best
            best = np.where(upd, cand, best)
            best_f = np.where(upd, f, best_f)
    return best, best_f


def priority_flood(z, valid, eps, closed_seeds=None):
    """Priority-Flood + epsilon (Barnes et al. 2014): fills pits and gives flats a drainage
    gradient of `eps` per cell. Outlets: grid border and cells next to nodata, except those
    in `closed_seeds`."""
    h, w = z.shape
    zp = np.full((h + 2, w + 2), np.nan)
    zp[1:-1, 1:-1] = z
    closed = np.ones((h + 2, w + 2), dtype=bool)
    closed[1:-1, 1:-1] = ~valid
    # seeds: valid cells with a closed (border or nodata) neighbour
    nb_closed = ndimage.binary_dilation(closed, structure=np.ones((3, 3), bool))
    seedmask = nb_closed & ~closed
    if closed_seeds is not None:
        seedmask[1:-1, 1:-1] &= ~closed_seeds
    seeds = np.flatnonzero(seedmask)
    zf = zp.ravel()
    cf = closed.ravel()
    W2 = w + 2
    offs = (-W2 - 1, -W2, -W2 + 1, -1, 1, W2 - 1, W2, W2 + 1)
    heap = [(zf[i], int(i)) for i in seeds]
    heapq.heapify(heap)
    cf[seeds] = True
    raised = 0
    while heap:
        zc, c = heapq.heappop(heap)
        for o in offs:
            n = c + o
            if cf[n]:
                continue
            cf[n] = True
            if zf[n] <= zc:
                zf[n] = zc + eps
                raised += 1
            heapq.heappush(heap, (zf[n], n))
    return zp[1:-1, 1:-1].copy(), raised


def flood_tree(z, valid, closed_seeds=None, tree_step=2.0):
    """Drainage tree from a Priority-Flood: every cell drains to the neighbour that first
    reached it (depressions drain through their deepest part to the spill point). Returns
    receiver (flat index, -1 at outlets), pop order (receivers first), step length (m).
    Outlets: valid cells on the border / next to nodata, except those in `closed_seeds`."""
    h, w = z.shape
    W2 = w + 2
    zp = np.zeros((h + 2, w + 2))
    zp[1:-1, 1:-1] = np.where(valid, z, 0.0)
    closed = np.ones((h + 2, w + 2), dtype=bool)
    closed[1:-1, 1:-1] = ~valid
    nb_closed = ndimage.binary_dilation(closed, structure=np.ones((3, 3), bool))
    seedmask = nb_closed & ~closed
    if closed_seeds is not None:
        seedmask[1:-1, 1:-1] &= ~closed_seeds
    seeds = np.flatnonzero(seedmask)
    zf = zp.ravel().tolist()
    cf = closed.ravel().tolist()
    parent = [-1] * ((h + 2) * W2)
    offs = (-W2 - 1, -W2, -W2 + 1, -1, 1, W2 - 1, W2, W2 + 1)
    steps = [0] * ((h + 2) * W2)
    heap = [(zf[i], zf[i], int(i)) for i in seeds]
    heapq.heapify(heap)
    for i in seeds:
        cf[i] = True
    popped = []
    while heap:
        lev, _, c = heapq.heappop(heap)
        popped.append(c)
        sc = steps[c]
        for o in offs:
            n = c + o
            if cf[n]:
                continue
            cf[n] = True
            parent[n] = c
            zn = zf[n]
            if zn >= lev:
                heapq.heappush(heap, (zn, zn, n))
            else:
                # inside a depression: grow short paths to the spill that prefer the deep
                # middle of the depression (no long detours, no parallel 'comb' lines)
                steps[n] = sc + 1
                heapq.heappush(heap, (lev, lev + tree_step * (sc + 1) - (lev - zn), n))
    par = np.asarray(parent)
    pop = np.asarray(popped)

    def unpad(i):
        return (i // W2 - 1) * w + (i % W2 - 1)

    rec = np.full(h * w, -1, dtype=np.int64)
    has = par[pop] >= 0
    rec[unpad(pop[has])] = unpad(par[pop[has]])
    order = unpad(pop)
    rr_, cc_ = np.divmod(np.arange(h * w), w)
    rr2, cc2 = np.divmod(np.where(rec >= 0, rec, 0), w)
    step = np.where(rec >= 0, np.hypot(rr_ - rr2, cc_ - cc2) * RES, 0.0)
    return rec, order, step


D8_OFFS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def d8(z, valid):
    """Steepest-descent receiver (flat index, -1 = outlet/none) and step length (m) of each
    cell; only valid, strictly lower neighbours are receivers."""
    h, w = z.shape
    zz = np.where(valid, z, 0.0)
    zp = np.full((h + 2, w + 2), np.inf)
    zp[1:-1, 1:-1] = np.where(valid, z, np.inf)
    rows, cols = np.mgrid[0:h, 0:w]
    best = np.zeros((h, w))
    rec = np.full((h, w), -1, dtype=np.int64)
    step = np.zeros((h, w))
    for dr, dc in D8_OFFS:
        zn = zp[1 + dr:h + 1 + dr, 1 + dc:w + 1 + dc]
        ln = float(np.hypot(dr, dc))
        s = (zz - zn) / ln
        upd = s > best
        best = np.where(upd, s, best)
        rec = np.where(upd, (rows + dr) * w + (cols + dc), rec)
        step = np.where(upd, ln * RES, step)
    rec[~valid] = -1
    return rec.ravel(), step.ravel()


def topo_order(z, valid):
    """Valid cells sorted by ascending elevation (receivers before donors)."""
    zf = np.where(valid, z, np.inf).ravel()
    order = np.argsort(zf, kind="stable")
    return order[: int(valid.sum())]


def accumulate(rec, order, weight):
    """D8 flow accumulation (sum of `weight` over each cell and all its donors)."""
    acc = weight.astype(float).ravel().copy()
    r = rec.tolist()
    a = acc.tolist()
    for c in order[::-1].tolist():
        rc = r[c]
        if rc >= 0:
            a[rc] += a[c]
    return np.asarray(a).reshape(weight.shape)


def follow(rec, start):
    """Flat indices from `start` downstream to the outlet."""
    path = [start]
    while rec[path[-1]] >= 0:
        path.append(int(rec[path[-1]]))
    return path


def upstream_mask(rec, target):
    n = rec.size
    donors_order = np.argsort(rec, kind="stable")
    rs = rec[donors_order]
    start = np.searchsorted(rs, np.arange(n), "left")
    end = np.searchsorted(rs, np.arange(n), "right")
    out = np.zeros(n, bool)
    stack = [target]
    out[target] = True
    while stack:
        c = stack.pop()
        for d in donors_order[start[c]:end[c]]:
            if not out[d]:
                out[d] = True
                stack.append(d)
    return out.reshape(H, W)


def drainage_height(z, rec, order, channel):
    """Height above the nearest drainage (HAND): elevation minus the elevation of the first
    channel cell reached downstream."""
    zf = z.ravel()
    dz = zf.copy()
    ch = channel.ravel()
    r = rec
    for c in order.tolist():
        if not ch[c] and r[c] >= 0:
            dz[c] = dz[r[c]]
    return (zf - dz).reshape(z.shape)


def slope_deg(z):
    gy, gx = np.gradient(z, RES)
    return np.degrees(np.arctan(np.hypot(gx, gy)))


# ================================================================ polygons
def county_polygon(rng):
    margin = 6 * RES
    allowed = box(X0 + margin, Y0 - H * RES + margin, X0 + W * RES - margin, Y0 - margin)
    allowed = allowed.difference(triangle_polygon().buffer(margin + 60.0))
    cx, cy = X0 + 8700.0, Y0 - 7600.0
    n = 240
    th = np.arange(n) * 2 * np.pi / n
    phase = rng.uniform(0, 2 * np.pi, 6)
    g = (0.86 + 0.05 * np.sin(2 * th + phase[0]) + 0.04 * np.sin(3 * th + phase[1])
         + 0.025 * np.sin(5 * th + phase[2]) + 0.015 * np.sin(9 * th + phase[3])
         + 0.008 * np.sin(17 * th + phase[4]))
    jitter = ndimage.gaussian_filter1d(rng.standard_normal(n), 1.5, mode="wrap")
    g = np.clip(g + 0.012 * jitter / jitter.std(), 0.6, 0.985)
    pts = []
    for t, gi in zip(th, g):
        ray = LineString([(cx, cy), (cx + 30000 * np.cos(t), cy + 30000 * np.sin(t))])
        seg = ray.intersection(allowed)
        rmax = seg.length if seg.geom_type == "LineString" else seg.geoms[0].length
        r = gi * rmax
        pts.append((round(cx + r * np.cos(t), 2), round(cy + r * np.sin(t), 2)))
    poly = Polygon(pts)
    assert poly.is_valid and allowed.contains(poly)
    return poly


def township_polygons(rng, county, town_xy):
    seeds = [town_xy,
             (X0 + 3000, Y0 - 3500), (X0 + 3500, Y0 - 11200), (X0 + 8800, Y0 - 11800),
             (X0 + 8200, Y0 - 2600), (X0 + 14500, Y0 - 11000)]
    seeds = [(x + rng.uniform(-400, 400), y + rng.uniform(-400, 400)) if i else (x, y)
             for i, (x, y) in enumerate(seeds)]
    vor = shapely.voronoi_polygons(MultiPoint(seeds), extend_to=county.envelope.buffer(5000),
                                   ordered=True)
    cells = list(vor.geoms)
    towns = []
    for (x, y), cell in zip(seeds, cells):
        assert cell.contains(Point(x, y))
        towns.append(shapely.normalize(county.intersection(cell)))
    return towns


def raster_to_polygon(mask, transform):
    shp = [shapely.geometry.shape(g) for g, v in
           features.shapes(mask.astype(np.uint8), mask=mask, transform=transform) if v == 1]
    return unary_union(shp)


# ================================================================ writers
def tif_profile(dtype, nodata, width, height, transform, crs):
    return dict(driver="GTiff", dtype=dtype, nodata=nodata, width=width, height=height,
                count=1, crs=crs, transform=transform, tiled=True, blockxsize=256,
                blockysize=256, compress="DEFLATE", zlevel=9,
                predictor=2 if dtype == "uint8" else 3, interleave="band")


def write_tif(path, arr, dtype, nodata, transform, crs, unit, desc):
    path.parent.mkdir(parents=True, exist_ok=True)
    prof = tif_profile(dtype, nodata, arr.shape[1], arr.shape[0], transform, crs)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(arr.astype(dtype), 1)
        dst.update_tags(SOURCE="synthetic: sample_tiles/make_sample.py", SEED=str(SEED))
        dst.set_band_description(1, desc)
        if unit:
            dst.units = (unit,)


def write_tiles(outdir, stem, arr, dtype, nodata, unit, desc):
    for r in range(2):
        for c in range(2):
            sub = arr[r * TILE_H:(r + 1) * TILE_H, c * TILE_W:(c + 1) * TILE_W]
            tr = Affine(RES, 0.0, X0 + c * TILE_W * RES, 0.0, -RES, Y0 - r * TILE_H * RES)
            write_tif(outdir / f"{stem}_r{r}_c{c}.tif", sub, dtype, nodata, tr, CRS_UTM,
                      unit, desc)


def write_gpkg(path, records, geoms, layer):
    import geopandas as gpd
    import pyogrio
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": "2000-01-01T00:00:00.000Z"})
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    gdf = gpd.GeoDataFrame(records, geometry=list(geoms), crs="EPSG:32650")
    pyogrio.write_dataframe(gdf, path, layer=layer, driver="GPKG", promote_to_multi=False)


# ================================================================ main build
def reservoir_at(dem, rec, acc_km2, dam):
    """Lake behind a dam at cell `dam`: the highest level (<= bed + RES_DEPTH, >= bed + 15 m)
    at which the lake spills only at the dam. Returns (mask, level) or None."""
    dam_r, dam_c = divmod(dam, W)
    up = upstream_mask(rec, dam)
    up.ravel()[dam] = False
    rr, cc = np.mgrid[0:H, 0:W]
    # the dam may span the valley (cells draining to the stem just below the dam)
    path = follow(rec, dam)
    mouth = [c for c in path if acc_km2.ravel()[c] < 100.0][-1]
    downside = upstream_mask(rec, mouth) & ~up
    near_dam = downside & (np.hypot(rr - dam_r, cc - dam_c) <= 15.0)
    start = np.flatnonzero((rec == dam) & up.ravel())
    donor = int(start[np.argmax(acc_km2.ravel()[start])])
    win = np.hypot(rr - dam_r, cc - dam_c) < 120
    for depth in np.arange(RES_DEPTH, 14.0, -1.0):
        level = quantize(dem[dam_r, dam_c] + depth, Q_DEM)
        lab, _ = ndimage.label(up & win & (dem < level))
        if lab.ravel()[donor] == 0:
            continue
        reservoir = lab == lab.ravel()[donor]
        rim = ndimage.binary_dilation(reservoir, np.ones((3, 3), bool)) & ~reservoir & ~near_dam
        if (dem[rim] > level).all():
            return reservoir, level, up | (np.arange(H * W) == dam).reshape(H, W)
    return None



def make_terrain(rng, valid):
    """Drainage-network-driven terrain.

    1. pre-terrain: envelope of designed valleys + edge ridges + fractal noise, routed
       with a Priority-Flood drainage tree to the single main-river exit (east edge);
    2. channels (accumulation >= A_CHANNEL) get a stream-power-law long profile
       S = KS * U * A^-0.6 (U: 'uplift', higher to the south and west), integrated
       upstream from the exit;
    3. hillslopes: lower envelope of 'cones' z_ch + f(d) around all channel cells
       (flat valley floor whose width grows with sqrt(A), then concave + linear rise);
    4. fractal roughness on the slopes, linear rescale to 80..1400 m.
    """
    chans = build_network(rng)
    rr = np.mgrid[0:H, 0:W]
    p0, p0_f = pre_terrain(rng, chans)
    main = chans[0]
    # main-river entry (west edge) and exit (east edge) cells
    mp = np.floor(main["pts"]).astype(int)
    ok = (mp[:, 0] >= 0) & (mp[:, 0] < W) & (mp[:, 1] >= 0) & (mp[:, 1] < H)
    c_in, r_in = mp[ok][0]
    c_out, r_out = mp[ok][-1]
    d_ends = np.minimum(np.hypot(rr[0] - r_in, rr[1] - c_in),
                        np.hypot(rr[0] - r_out, rr[1] - c_out))
    # grid edges are ridges (the county drains to the main river), except at the river ends
    padded = np.pad(valid, 1, constant_values=False)
    d_edge = ndimage.distance_transform_edt(padded)[1:-1, 1:-1] - 1.0
    edge_bump = 120.0 * (1.0 - ramp(d_edge, 0, 35)) ** 2 * ramp(d_ends, 12, 40)
    p0 = p0 + edge_bump + ramp(p0_f, 0.0, 200.0) * 110.0 * fbm(rng, (H, W), 3.1) \
        + 6.0 * fbm(rng, (H, W), 2.6)
    # the whole grid drains to the main-river exit on the east edge
    exit_win = (rr[1] >= W - 2) & (np.abs(rr[0] - r_out) <= 20)
    rec, order, step = flood_tree(p0, valid, closed_seeds=~exit_win)
    ones = valid.astype(float)
    ones[r_in, c_in] += INFLOW_KM2 * 1e6 / RES ** 2
    acc = accumulate(rec, order, ones)
    # long profiles
    uplift = (1.0 + 0.45 * ramp(rr[0], 280, 470) + 0.35 * ramp(-rr[1], -200, 0)
              + 0.15 * smooth_noise(rng, (H, W), 50.0))
    area_m2 = acc * RES ** 2
    hs = HS * (1.0 + 0.3 * fbm(rng, (H, W), 3.0)) * uplift
    ls = 420.0
    # channels never steeper than half the hillslope base gradient (no hanging valleys)
    slope_ch = np.clip(KS * uplift * np.maximum(area_m2, RES ** 2) ** -0.6, 0.0008,
                       0.5 * hs / ls).ravel()
    channel = (acc >= A_CHANNEL) & valid
    idx = order[channel.ravel()[order]]
    zc = np.full(H * W, np.nan)
    p0v = p0.ravel()
    main_out = int(np.argmax(np.where(valid, acc, -1).ravel()))
    recl = rec.tolist()
    for c in idx.tolist():
        r = recl[c]
        if r < 0:
            zc[c] = 80.0 if c == main_out else max(80.0, p0v[c])
        else:
            zc[c] = zc[r] + step[c] * slope_ch[c]
    zc_img = zc.reshape(H, W)
    # valley floor half width grows with catchment area
    k_town = int(np.argmin(np.abs(main["frac"] - TOWN_FRAC)))
    tc, tr = main["pts"][k_town]
    basin = 1.0 + 1.4 * np.exp(-(((rr[1] - tc) / 70.0) ** 2 + ((rr[0] - tr) / 45.0) ** 2))
    w_img = np.where(channel, np.clip(16.0 * np.sqrt(area_m2 / 1e6), 0.0, 250.0) * basin, 0.0)
    # hillslope envelope, computed per 8 m elevation band of channel cells
    zmin = np.nanmin(zc)
    band = np.where(channel, np.floor((zc_img - zmin) / 8.0), -1).astype(int)
    best = np.full((H, W), np.inf)
    best_f = np.zeros((H, W))
    for b in np.unique(band[band >= 0]):
        m = band == b
        dist, (ir, ic) = ndimage.distance_transform_edt(~m, return_indices=True)
        dm = dist * RES
        wn = w_img[ir, ic]
        dd = np.maximum(dm - wn, 0.0)
        f = 0.008 * np.minimum(dm, wn) + hs * np.tanh(dd / ls) + G_LIN * dd
        cand = zc_img[ir, ic] + f
        upd = cand < best
        best = np.where(upd, cand, best)
        best_f = np.where(upd, f, best_f)
    z = ndimage.gaussian_filter(best, 1.0)
    amp = ramp(best_f, 0.0, 120.0)
    z = z + amp * (NOISE * fbm(rng, (H, W), 2.6) + 3.0 * fbm(rng, (H, W), 2.0)) \
        + 0.3 * fbm(rng, (H, W), 2.2)
    vmin, vmax = z[valid].min(), z[valid].max()
    dem = 80.0 + (z - vmin) * (1320.0 / (vmax - vmin))
    return dem, chans, (r_in, c_in)


def build(out: Path, legend_path: Path):
    rng = np.random.default_rng(SEED)
    tri = nodata_triangle()
    valid = ~tri
    rr, cc = np.mgrid[0:H, 0:W]

    # ---------------- terrain
    dem, chans, (r_in, c_in) = make_terrain(rng, valid)
    dem = quantize(dem, Q_DEM)
    # the main valley at the west edge must drain into the grid, not off it
    entry = (cc <= 1) & (np.abs(rr - r_in) <= 20)
    dem, _ = priority_flood(dem, valid, Q_DEM, entry)
    rec, step = d8(dem, valid)
    order = topo_order(dem, valid)
    # main-river inflow enters at the lowest west-edge cell of the main valley
    ent = np.where((cc == 0) & (np.abs(rr - r_in) <= 20), dem, np.inf)
    r_in, c_in = divmod(int(np.argmin(ent)), W)
    assert rec[r_in * W + c_in] >= 0, "main-river entry cell drains off the grid"
    w_in = valid.astype(float)
    w_in[r_in, c_in] += INFLOW_KM2 * 1e6 / RES ** 2
    acc_km2 = accumulate(rec, order, w_in) * RES ** 2 / 1e6

    # ---------------- reservoir in the T5 valley: flat water surface behind a dam
    ch5 = [ch for ch in chans if ch["name"] == "T5"][0]
    pc, pr = np.floor(ch5["pts"][int(np.argmin(np.abs(ch5["frac"] - 0.75)))]).astype(int)
    cand = np.where((acc_km2 > 0.5) & (np.hypot(rr - pr, cc - pc) < 10), acc_km2, -1)
    stem = follow(rec, int(np.argmax(cand.ravel())))
    best_res = None
    for dam in stem[::3]:
        if not (3.0 < acc_km2.ravel()[dam] < 25.0):
            continue
        res = reservoir_at(dem, rec, acc_km2, dam)
        if res is None:
            continue
        score = abs(res[0].sum() * RES ** 2 / 1e6 - RES_AREA_KM2)
        if best_res is None or score < best_res[0]:
            best_res = (score, dam) + res
    _, dam, reservoir, level, dam_catchment = best_res
    dem = np.where(reservoir, level, dem)
    dem, n_raised = priority_flood(dem, valid, Q_DEM, entry)
    dem = np.where(valid, dem, F_NODATA)

    # ---------------- hydrology of the final DEM
    rec, step = d8(dem, valid)
    order = topo_order(dem, valid)
    acc_km2 = accumulate(rec, order, w_in) * RES ** 2 / 1e6
    z = np.where(valid, dem, 0.0)
    slope = slope_deg(np.where(valid, dem, ndimage.grey_dilation(z, 3)))
    hand = np.where(valid, drainage_height(z, rec, order, acc_km2 >= 1.0), 0.0)
    hand_s = np.where(valid, drainage_height(z, rec, order, acc_km2 >= 0.18), 0.0)

    # ---------------- land cover
    nA, nB, nC, nD = (fbm(rng, (H, W), 2.8, 90) for _ in range(4))
    nE, nF, nG, nT = (fbm(rng, (H, W), 3.0, 50) for _ in range(4))
    # forest types by competing scores (elevation preference + multi-scale patch noise)
    s_broad = 1.1 * ramp(z, 500, 950) + 0.35 * ramp(slope, 28, 42) + 0.5 * nA
    s_needle = 0.85 * (1 - ramp(z, 650, 1000)) + 0.5 * nB + 0.1 * ramp(hand_s, 30, 120)
    s_mixed = 0.62 + 0.5 * nC - 0.25 * ramp(z, 1100, 1300)
    s_bamboo = 1.0 * (1 - ramp(z, 450, 700)) * (1 - ramp(hand, 150, 300)) + 0.6 * nD - 0.25
    lc = (np.argmax(np.stack([s_broad, s_needle, s_mixed, s_bamboo]), axis=0) + 1).astype(np.uint8)
    # shrub and tussock on high ridges, shrub also on degraded slopes near farmland
    lc[(z > 1000) & (nE > 0.0) & (hand_s > 40)] = 5
    lc[(hand > 30) & (hand < 150) & (z < 600) & (nE > 1.5)] = 5
    lc[(z > 1180) & (nF > -0.3) & (slope < 32)] = 6
    lc[(z > 900) & (nG > 2.0) & (hand_s > 60)] = 6
    # tea gardens / orchards on gentle low hills
    lc[(z < 700) & (slope > 4) & (slope < 26) & (hand > 8) & (hand < 220) & (nT > 0.55)] = 9
    # dry cropland on low slopes near the valleys, paddy on valley floors and terraces
    lc[(hand < 90) & (slope < 20) & (nG > -0.2) & (z < 800)] = 8
    floor_ = (hand < 12) & (slope < 8)
    terrace = (hand_s < 50) & (slope < 21) & (nF > 0.0) & (z < 900)
    lc[(floor_ & (nG < 0.9)) | (terrace & (nG < 0.6))] = 7
    lc = majority(lc, 3)
    # bare: landslide scars on steep slopes
    steep = (slope > np.percentile(slope[valid], 92)) & valid & (z > 300)
    steep_idx = np.flatnonzero(steep.ravel())
    for k in rng.choice(steep_idx, 9, replace=False):
        r0, c0 = divmod(int(k), W)
        a = rng.uniform(0, np.pi)
        u = (cc - c0) * np.cos(a) + (rr - r0) * np.sin(a)
        v = -(cc - c0) * np.sin(a) + (rr - r0) * np.cos(a)
        lc[(u / rng.uniform(4, 7)) ** 2 + (v / rng.uniform(1.5, 2.5)) ** 2 < 1] = 12
    # built-up: the town on the main-river floor, plus villages on the valley floors
    main = chans[0]
    k_town = int(np.argmin(np.abs(main["frac"] - TOWN_FRAC)))
    tc, tr = main["pts"][k_town]
    dvec = main["pts"][k_town + 60] - main["pts"][k_town - 60]
    a = np.arctan2(dvec[1], dvec[0])
    u = (cc + 0.5 - tc) * np.cos(a) + (rr + 0.5 - tr) * np.sin(a)
    v = -(cc + 0.5 - tc) * np.sin(a) + (rr + 0.5 - tr) * np.cos(a)
    town = ((u / 48.0) ** 2 + ((v + 2.0) / 22.0) ** 2 < 1.0 + 0.5 * nE) & (hand < 22) & (slope < 12)
    town = ndimage.binary_closing(town, iterations=2) & (slope < 20) & valid
    lab, _ = ndimage.label(town)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    town = lab == int(np.argmax(sizes))
    lc[town] = 11
    vil_idx = np.flatnonzero(((hand < 10) & (slope < 9) & valid & ~town & (acc_km2 < 50)).ravel())
    for k in rng.choice(vil_idx, 24, replace=False):
        r0, c0 = divmod(int(k), W)
        rad = rng.uniform(1.5, 3.3)
        lc[((rr - r0) ** 2 + (cc - c0) ** 2 < rad ** 2) & (slope < 15)] = 11
    # water: main river ~100 m wide, larger streams 1-2 px, reservoir
    big = acc_km2 >= 100.0
    river = ndimage.distance_transform_edt(~big) <= 1.5
    river |= ndimage.binary_dilation(acc_km2 >= 25.0) & (hand < 2.0) & (acc_km2 >= 1.0)
    river |= acc_km2 >= 3.0
    lc[river & valid] = 10
    lc[reservoir] = 10

    # ---------------- county, townships
    county = county_polygon(rng)
    town_xy = pix_to_xy(tc + 0.5, tr + 0.5 - 8)
    towns = township_polygons(rng, county, town_xy)

    # ---------------- tea parcel (VEP-002): force tea inside it
    cmask = features.geometry_mask([county.buffer(-600)], (H, W), FULL_TRANSFORM, invert=True)
    far_res = ndimage.distance_transform_edt(~reservoir) > 60
    cand = ((z > 200) & (z < 520) & (slope > 6) & (slope < 22) & (hand > 20) & (hand < 160)
            & cmask & far_res & (ndimage.distance_transform_edt(~town) > 30))
    tea_density = ndimage.uniform_filter((lc == 9).astype(float), 25)
    score = np.where(cand, tea_density + 0.01 * nT, -np.inf)
    pr, pc = divmod(int(np.argmax(score)), W)
    px, py = pix_to_xy(pc + 0.5, pr + 0.5)
    nv = 28
    th = np.arange(nv) * 2 * np.pi / nv
    rad = 400.0 * (1 + 0.12 * np.sin(3 * th + 1.0) + 0.06 * np.sin(5 * th + 0.3))
    tea_poly = Polygon([(px + 1.15 * r * np.cos(t), py + 0.85 * r * np.sin(t))
                        for r, t in zip(rad, th)])
    tea_poly = shapely.affinity.scale(tea_poly, *(2 * [np.sqrt(5.0e5 / tea_poly.area)]),
                                      origin=(px, py))
    tea_poly = shapely.set_precision(tea_poly, 0.01)
    tea_mask = features.geometry_mask([tea_poly], (H, W), FULL_TRANSFORM, invert=True)
    lc[tea_mask & ~np.isin(lc, [10, 11])] = 9

    lc[tri] = LC_NODATA

    # ---------------- reservoir protection unit (VEP-001): catchment ∩ buffer, ~4 km2
    catch_poly = raster_to_polygon(dam_catchment, FULL_TRANSFORM)
    res_poly = raster_to_polygon(reservoir, FULL_TRANSFORM)
    lo, hi = 0.0, 4000.0
    for _ in range(50):
        b = 0.5 * (lo + hi)
        a_ = res_poly.buffer(b, 16).intersection(catch_poly).intersection(county).area
        lo, hi = (b, hi) if a_ < 4.0e6 else (lo, b)
    prot = res_poly.buffer(hi, 16).intersection(catch_poly).intersection(county)
    prot = shapely.set_precision(prot, 0.01)
    if prot.geom_type == "MultiPolygon":          # keep the main part
        prot = max(prot.geoms, key=lambda g: g.area)

    # ---------------- micro parcel (VEP-003): 20 m x 20 m, contains no pixel centre
    # (an ancient-tree plot at the edge of town: the first all-forest 2 x 2 pixel block found
    #  walking outwards from 14 px east / 9 px north of the town centre)
    mc0 = int(np.floor((town_xy[0] - X0) / RES)) + 14
    mr0 = int(np.floor((Y0 - town_xy[1]) / RES)) - 9
    mr, mc = mr0, mc0
    for rad in range(0, 60):
        found = False
        for dr in range(-rad, rad + 1):
            for dc in range(-rad, rad + 1):
                if max(abs(dr), abs(dc)) != rad:
                    continue
                r_, c_ = mr0 + dr, mc0 + dc
                if 0 <= r_ < H - 1 and 0 <= c_ < W - 1 and np.isin(lc[r_:r_ + 2, c_:c_ + 2], (1, 2, 3, 4)).all():
                    mr, mc, found = r_, c_, True
                    break
            if found:
                break
        if found:
            break
    mx, my = X0 + mc * RES + 17.0, Y0 - mr * RES - 17.0
    micro = box(mx, my - 20.0, mx + 20.0, my)

    # ---------------- NEP on the 30 m grid, then to EPSG:4326
    nn = 0.5 + 0.5 * np.tanh(fbm(rng, (H, W), 2.8, 60))
    elev_pen = 1.0 - 0.25 * ramp(z, 600, 1400)
    nep = np.zeros((H, W))
    for code, (lo_, hi_) in NEP_RANGE.items():
        m_ = lc == code
        val = lo_ + (hi_ - lo_) * nn[m_]
        if code <= 6:
            val = np.maximum(lo_, val * elev_pen[m_])
        nep[m_] = val
    nep[lc == LC_NODATA] = F_NODATA
    wll, sll, ell, nll = transform_bounds(CRS_UTM, CRS_LL, X0, Y0 - H * RES, X0 + W * RES, Y0,
                                          densify_pts=51)
    i0, i1 = int(np.floor(wll / NEP_RES)), int(np.ceil(ell / NEP_RES))
    j0, j1 = int(np.floor(sll / NEP_RES)), int(np.ceil(nll / NEP_RES))
    nep_tr = Affine(NEP_RES, 0.0, round(i0 * NEP_RES, 6), 0.0, -NEP_RES, round(j1 * NEP_RES, 6))
    nep_ll = np.full((j1 - j0, i1 - i0), F_NODATA, dtype=np.float32)
    reproject(nep.astype(np.float32), nep_ll, src_transform=FULL_TRANSFORM, src_crs=CRS_UTM,
              src_nodata=F_NODATA, dst_transform=nep_tr, dst_crs=CRS_LL, dst_nodata=F_NODATA,
              resampling=Resampling.nearest)
    nep_ll = np.where(nep_ll == F_NODATA, F_NODATA, quantize(nep_ll, Q_NEP)).astype(np.float32)

    # ---------------- climate on the offset 1 km grid
    zc = np.full((CLIM_H, CLIM_W), F_NODATA, dtype=np.float32)
    reproject(dem.astype(np.float32), zc, src_transform=FULL_TRANSFORM, src_crs=CRS_UTM,
              src_nodata=F_NODATA, dst_transform=CLIM_TRANSFORM, dst_crs=CRS_UTM,
              dst_nodata=F_NODATA, resampling=Resampling.average)
    zc = zc.astype(float)
    miss = zc == F_NODATA
    _, (mi, mj) = ndimage.distance_transform_edt(miss, return_indices=True)
    zc = ndimage.gaussian_filter(zc[mi, mj], 1.0, mode="nearest")
    zn = (zc - zc.min()) / (zc.max() - zc.min())
    jj, ii = np.mgrid[0:CLIM_H, 0:CLIM_W]
    xn = ii / (CLIM_W - 1)            # 0 west .. 1 east
    yn = jj / (CLIM_H - 1)            # 0 north .. 1 south
    cn = smooth_noise(rng, (CLIM_H, CLIM_W), 2.0)
    p_ann = 1420.0 + 470.0 * zn + 60.0 * yn + 25.0 * cn
    p_ann = np.clip(p_ann, 1405.0, 1995.0)
    base = np.array([5.0, 6.5, 9.5, 10.5, 12.5, 16.0, 9.0, 9.5, 7.5, 5.0, 5.0, 4.0]) / 100.0
    frac = np.repeat(base[:, None, None], CLIM_H, 1).repeat(CLIM_W, 2).copy()
    frac[7] *= 1.0 + 0.15 * xn          # typhoon rain (Aug/Sep) grows eastwards
    frac[8] *= 1.0 + 0.15 * xn
    frac[4] *= 1.0 + 0.06 * zn          # Meiyu enhanced over the mountains
    frac[5] *= 1.0 + 0.06 * zn
    frac /= frac.sum(0, keepdims=True)
    monthly = quantize(p_ann[None] * frac, Q_CLIM)
    p_ann = monthly.sum(0)              # exact: all terms are multiples of 1/256 mm
    aet = quantize(945.0 - 290.0 * zn + 4.0 * cn, Q_CLIM)
    et0 = quantize(1190.0 - 215.0 * zn - 10.0 * yn + 3.0 * cn, Q_CLIM)
    aet = np.clip(aet, 650.0, 950.0)
    et0 = np.clip(et0, 950.0, 1200.0)

    # ---------------- write rasters
    write_tiles(out / "land_cover", "lc", lc, "uint8", LC_NODATA, None,
                "land cover class (see legend.csv)")
    write_tiles(out / "dem", "dem", dem.astype(np.float32), "float32", F_NODATA, "m",
                "elevation (m), depression-filled")
    cdir = out / "climate"
    write_tif(cdir / "precip_annual.tif", p_ann.astype(np.float32), "float32", F_NODATA,
              CLIM_TRANSFORM, CRS_UTM, "mm/a", "annual precipitation (mm/a)")
    write_tif(cdir / "et_annual.tif", aet.astype(np.float32), "float32", F_NODATA,
              CLIM_TRANSFORM, CRS_UTM, "mm/a", "annual actual evapotranspiration (mm/a)")
    write_tif(cdir / "et0_annual.tif", et0.astype(np.float32), "float32", F_NODATA,
              CLIM_TRANSFORM, CRS_UTM, "mm/a", "annual reference evapotranspiration ET0 (mm/a)")
    for m in range(12):
        write_tif(cdir / f"precip_monthly_{m + 1:02d}.tif", monthly[m].astype(np.float32),
                  "float32", F_NODATA, CLIM_TRANSFORM, CRS_UTM, "mm/month",
                  f"precipitation month {m + 1:02d} (mm/month)")
    write_tif(out / "nep_tc_ha.tif", nep_ll, "float32", F_NODATA, nep_tr, CRS_LL, "t C/ha/a",
              "net ecosystem productivity (t C/ha/a)")

    make_wind_inputs(out / "wind", lc, zn, xn, yn, p_ann, et0)

    # ---------------- write polygons
    pdir = out / "polygons"
    write_gpkg(pdir / "county.gpkg",
               {"county_code": [COUNTY_CODE], "county_name": [COUNTY_NAME]}, [county], "county")
    names = ["城关镇", "大田乡", "石门镇", "溪口镇", "高山乡", "竹源乡"]
    codes = [COUNTY_CODE + c for c in ("100", "101", "102", "103", "104", "105")]
    write_gpkg(pdir / "townships.gpkg",
               {"town_code": codes, "town_name": names, "county_code": [COUNTY_CODE] * 6},
               towns, "townships")
    write_gpkg(pdir / "special_units.gpkg",
               {"unit_id": ["VEP-001", "VEP-002", "VEP-003"],
                "unit_name": ["示范水库集雨区保护单元", "茶园示范地块", "古树保护微地块"],
                "unit_type": ["reservoir_catchment", "tea_garden", "micro_parcel"]},
               [prot, tea_poly, micro], "special_units")

    # ---------------- legend
    write_legend(legend_path)

    # ---------------- checksums
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(out).as_posix()}"
             for p in files]
    (out / "SHA256SUMS").write_text("\n".join(lines) + "\n")

    return dict(dem=dem, lc=lc, valid=valid, slope=slope, hand=hand, reservoir=reservoir,
                n_raised=n_raised, acc_km2=acc_km2, rec=rec, dam=dam, county=county,
                towns=towns, prot=prot, tea=tea_poly,
                micro=micro, p_ann=p_ann, monthly=monthly, aet=aet, et0=et0, nep=nep_ll)


# ================================================================ windbreak and sand fixation inputs
#: RWEQ inputs come from their own generator (seed SEED + 1) so that the files above stay as they were
WIND_SEED_OFFSET = 1
#: typical fractional vegetation cover per class (0..1) of the synthetic sample [EX]
FVC_CLASS = {1: 0.85, 2: 0.80, 3: 0.85, 4: 0.90, 5: 0.65, 6: 0.50, 7: 0.45, 8: 0.35, 9: 0.55, 10: 0.0,
             11: 0.10, 12: 0.05}
#: days of the accounting year 2024 (a leap year): one band per day
WIND_DAYS = 366
#: rain days per year of the soil-wetness factor [EX]
RAIN_DAYS = 160.0


def make_wind_inputs(outdir, lc, zn, xn, yn, p_ann, et0):
    """RWEQ inputs of the sample (windbreak and sand fixation; all invented magnitudes [EX] of a humid
    subtropical hilly county): 366 daily mean 10-m wind speeds and the topsoil sand / silt / clay / organic matter
    (percent) and the soil wetness factor on the 1 km climate grid, fractional vegetation cover (0..1) on the
    30 m grid. Ridges and the east are windier; winter monsoon days are stronger; daily variation Weibull k = 2."""
    rng = np.random.default_rng(SEED + WIND_SEED_OFFSET)
    day = np.arange(WIND_DAYS)
    season = 1.0 + 0.12 * np.cos(2 * np.pi * (day - 15) / WIND_DAYS)       # strongest in mid January
    gust = rng.weibull(2.0, WIND_DAYS) / 0.8862269                      # mean 1 (Gamma(1.5) = 0.886)
    mean = 2.2 + 1.6 * zn + 0.4 * xn                                    # m/s at 10 m
    local = 1.0 + 0.05 * rng.standard_normal((WIND_DAYS, CLIM_H, CLIM_W))
    u10 = quantize(np.clip((season * gust)[:, None, None] * mean[None] * local, 0.0, None), Q_CLIM)
    cn = smooth_noise(rng, (CLIM_H, CLIM_W), 2.0)
    sand = quantize(38.0 + 10.0 * xn - 6.0 * zn + 3.0 * cn, Q_CLIM)
    clay = quantize(27.0 + 6.0 * zn - 2.0 * yn, Q_CLIM)
    silt = 100.0 - sand - clay                                          # exact: multiples of 1/256
    om = quantize(1.5 + 2.5 * zn + 0.3 * cn, Q_CLIM)
    # RWEQ soil wetness SW = [ETp - R Rd/Nd] / ETp with ET0 for ETp (jadeynryan/erosion form, docs/rweq.md)
    sw = quantize(np.clip((et0 - p_ann * RAIN_DAYS / 365.0) / et0, 0.0, 1.0), Q_CLIM)
    fvc = np.zeros(lc.shape)
    for code, f in FVC_CLASS.items():
        fvc[lc == code] = f
    fvc = quantize(np.clip(fvc + 0.06 * smooth_noise(rng, lc.shape, 3.0), 0.0, 1.0), Q_CLIM)
    fvc = np.where(lc == LC_NODATA, F_NODATA, fvc)
    outdir.mkdir(parents=True, exist_ok=True)
    prof = tif_profile("float32", F_NODATA, CLIM_W, CLIM_H, CLIM_TRANSFORM, CRS_UTM)
    prof.update(count=WIND_DAYS)
    with rasterio.open(outdir / "wind_speed_daily_10m.tif", "w", **prof) as dst:
        dst.write(u10.astype(np.float32))
        dst.update_tags(SOURCE="synthetic: sample_tiles/make_sample.py", SEED=str(SEED + WIND_SEED_OFFSET))
        dst.units = ("m/s",) * WIND_DAYS
        for b in range(WIND_DAYS):
            dst.set_band_description(b + 1, f"daily mean wind speed at 10 m, day {b + 1} of 2024 (m/s)")
    for name, arr, desc in (("soil_sand_pct", sand, "topsoil sand (%)"), ("soil_silt_pct", silt, "topsoil silt (%)"),
                            ("soil_clay_pct", clay, "topsoil clay (%)"),
                            ("soil_om_pct", om, "topsoil organic matter (%)"),
                            ("soil_wetness", sw, "RWEQ soil wetness factor SW (0..1)")):
        write_tif(outdir / f"{name}.tif", arr.astype(np.float32), "float32", F_NODATA, CLIM_TRANSFORM, CRS_UTM,
                  "%" if name.endswith("pct") else None, desc)
    write_tif(outdir / "fvc.tif", fvc.astype(np.float32), "float32", F_NODATA, FULL_TRANSFORM, CRS_UTM, None,
              "fractional vegetation cover (0..1)")


def majority(lc, size):
    classes = np.unique(lc)
    counts = np.stack([ndimage.uniform_filter((lc == k).astype(np.float32), size, mode="nearest")
                       for k in classes])
    return classes[np.argmax(counts, axis=0)].astype(np.uint8)


def write_legend(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LEGEND_COLUMNS)
    for row in LEGEND:
        w.writerow(["%g" % v if isinstance(v, float) else v for v in row])
    path.write_text(buf.getvalue(), encoding="utf-8")


def main(argv=None):
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=here / "data", help="output folder")
    ap.add_argument("--legend", type=Path, default=here / "legend.csv", help="legend CSV path")
    args = ap.parse_args(argv)
    res = build(args.out, args.legend)
    print(f"wrote {args.out} (depression fill raised {res['n_raised']} cells)")


if __name__ == "__main__":
    main()
