"""Measurement behind the choice of the STAC loader (issue 21): do odc-stac's values depend on the dask chunk size?

Not part of the test suite and not a dependency of gep_raster. Run it in a separate venv:

    python -m venv /tmp/odcvenv && /tmp/odcvenv/bin/pip install odc-stac pystac rasterio numpy
    /tmp/odcvenv/bin/python bench/odc_stac_chunking.py [OUT_FOLDER]

It writes a 600x600 float32 EPSG:4326 raster, loads it with ``odc.stac.load`` onto target grids (another CRS,
an unaligned grid in the same CRS, the source grid itself) eagerly and with several dask chunkings, and prints
how many pixels differ between chunkings. Results and the conclusion: bench/RESULTS.md, "STAC loader".
"""
import sys, numpy as np, rasterio, pystac, datetime as dt
from rasterio.transform import from_origin
import odc.stac, odc.geo
from odc.geo.geobox import GeoBox
import dask, dask.array

OUT = (sys.argv[1] if len(sys.argv) > 1 else "/tmp/odc_measure") + "/src.tif"
import os; os.makedirs(os.path.dirname(OUT), exist_ok=True)
N = 600; RES = 0.001; X0, Y0 = 117.0, 30.0   # lon 117.0-117.6, lat 29.4-30.0 -> UTM 50N
rng = np.random.default_rng(42)
yy, xx = np.mgrid[0:N, 0:N].astype(np.float64)
field = (1000 + 300*np.sin(xx/37.0)*np.cos(yy/23.0) + 0.5*xx + 0.2*yy
         + 50*np.sin((xx+yy)/7.3) + rng.normal(0, 10, (N, N))).astype(np.float32)
src_tf = from_origin(X0, Y0, RES, RES)
with rasterio.open(OUT, "w", driver="GTiff", width=N, height=N, count=1, dtype="float32",
                   crs="EPSG:4326", transform=src_tf, nodata=np.nan,
                   tiled=True, blockxsize=256, blockysize=256) as ds:
    ds.write(field, 1)

def make_item(with_proj=True):
    bbox = [X0, Y0 - N*RES, X0 + N*RES, Y0]
    geom = {"type": "Polygon", "coordinates": [[[bbox[0], bbox[1]], [bbox[2], bbox[1]], [bbox[2], bbox[3]], [bbox[0], bbox[3]], [bbox[0], bbox[1]]]]}
    it = pystac.Item("src", geom, bbox, dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc), {})
    a = pystac.Asset(OUT, media_type=pystac.MediaType.COG, roles=["data"])
    if with_proj:
        a.extra_fields.update({"proj:epsg": 4326, "proj:shape": [N, N], "proj:transform": list(src_tf)[:6]})
    it.add_asset("v", a)
    return it

CFG = {"*": {"assets": {"v": {"data_type": "float32", "nodata": float("nan")}}}}
ITEM = make_item(True)

def load(geobox, resampling, chunks, item=ITEM):
    kw = dict(bands=["v"], geobox=geobox, resampling=resampling, stac_cfg=CFG)
    if chunks is not None:
        kw["chunks"] = chunks
    ds = odc.stac.load([item], **kw)
    with dask.config.set(scheduler="synchronous"):
        return ds["v"].isel(time=0).values.astype(np.float64)

vrange = float(field.max() - field.min())

def compare(name, a, b):
    na, nb = np.isnan(a), np.isnan(b)
    nan_mismatch = int((na != nb).sum())
    both = ~na & ~nb
    d = np.abs(a[both] - b[both])
    ndiff = int((d > 0).sum())
    mx = float(d.max()) if d.size else 0.0
    return (f"{name:52s} valid={int(both.sum()):7d} ndiff={ndiff:7d} ({100*ndiff/max(both.sum(),1):6.2f}%) "
            f"maxabs={mx:10.4g} max/range={mx/vrange:9.3g} nan_mismatch={nan_mismatch}")

lines = []
def p(s=""):
    print(s); lines.append(s); sys.stdout.flush()

p(f"versions: odc-stac {odc.stac.__version__}, odc-geo {odc.geo.__version__}, rasterio {rasterio.__version__}, "
  f"GDAL {rasterio.__gdal_version__}, numpy {np.__version__}, dask {dask.__version__}, python {sys.version.split()[0]}")
p(f"source: {N}x{N} float32 EPSG:4326 res {RES} deg origin ({X0},{Y0}); value range {vrange:.1f}")

CHUNKS = [("eager", None), ("chunks 64", {"x": 64, "y": 64}), ("chunks 256", {"x": 256, "y": 256}),
          ("chunks 100x37", {"x": 100, "y": 37})]

def chunk_study(label, gbox, resamplings):
    p(); p(f"== {label}: {gbox.crs} shape={gbox.shape} res={gbox.resolution.xy}")
    for rs in resamplings:
        res = {n: load(gbox, rs, c) for n, c in CHUNKS}
        ref = res["eager"]
        p(f"  resampling={rs}: eager valid px={int((~np.isnan(ref)).sum())}")
        for n, _ in CHUNKS[1:]:
            p("   " + compare(f"{rs}: eager vs {n}", ref, res[n]))
        p("   " + compare(f"{rs}: chunks 64 vs chunks 256", res["chunks 64"], res["chunks 256"]))
    return res

# 1. Reprojection to UTM 50N at 90 m (slightly finer than source ~96x111 m)
utm = odc.geo.geom.box(X0 + 0.03, Y0 - N*RES + 0.03, X0 + N*RES - 0.03, Y0 - 0.03, "EPSG:4326").to_crs("EPSG:32650")
gb_utm90 = GeoBox.from_bbox(utm.boundingbox, "EPSG:32650", resolution=90)
chunk_study("UTM 90 m (other CRS)", gb_utm90, ["nearest", "bilinear", "cubic"])

# 2. Coarser target (source finer) -> 'average'
gb_utm300 = GeoBox.from_bbox(utm.boundingbox, "EPSG:32650", resolution=300)
chunk_study("UTM 300 m (other CRS, source finer)", gb_utm300, ["bilinear", "average"])

# 3. Same CRS, unaligned grid (0.0007 deg, origin offset by 0.37 px)
from affine import Affine
gb_unal = GeoBox((700, 700), Affine(0.0007, 0, X0 + 0.05 + 0.37*RES, 0, -0.0007, Y0 - 0.05 - 0.37*RES), "EPSG:4326")
chunk_study("EPSG:4326 unaligned 0.0007 deg, origin offset", gb_unal, ["bilinear", "average"])

# 3b. Same CRS, same res, origin offset by half pixel (pure shift)
gb_shift = GeoBox((500, 500), Affine(RES, 0, X0 + 0.05 + 0.5*RES, 0, -RES, Y0 - 0.05 - 0.5*RES), "EPSG:4326")
r = chunk_study("EPSG:4326 same res, half-pixel shift", gb_shift, ["bilinear"])
# analytic bilinear of a half-pixel shift = mean of 2x2 neighbours
i0 = int(round(0.05/RES)); sub = field.astype(np.float64)
exp = 0.25*(sub[i0:i0+500, i0:i0+500] + sub[i0+1:i0+501, i0:i0+500] + sub[i0:i0+500, i0+1:i0+501] + sub[i0+1:i0+501, i0+1:i0+501])
p("   " + compare("bilinear eager vs analytic 2x2 mean (per-pixel-centre)", r["eager"], exp))
p("   " + compare("bilinear chunks 64 vs analytic 2x2 mean", r["chunks 64"], exp))

# 4. Aligned: exact source grid, and a lattice-aligned subset
p(); p("== aligned cases (expect bit-identical to source)")
gb_full = GeoBox((N, N), src_tf, "EPSG:4326")
off = 123
gb_sub = GeoBox((300, 400), Affine(RES, 0, X0 + off*RES, 0, -RES, Y0 - 77*RES), "EPSG:4326")
for gname, gb, ref in [("full source grid", gb_full, field),
                       ("subset on lattice (row 77, col 123, 300x400)", gb_sub, field[77:377, off:off+400])]:
    for rs in ["nearest", "bilinear", "cubic", "average"]:
        for n, c in CHUNKS:
            out = load(gb, rs, c)
            same = np.array_equal(out.astype(np.float32), ref, equal_nan=True)
            p(f"  {gname:45s} {rs:8s} {n:14s} bit-identical={same}  " + compare("", out, ref.astype(np.float64))[53:])
# without proj extension (odc-stac must open the file for metadata?)
try:
    out = load(gb_full, "bilinear", {"x": 64, "y": 64}, item=make_item(False))
    p(f"  no-proj-ext item, full grid bilinear chunks 64: bit-identical={np.array_equal(out.astype(np.float32), field)}")
except Exception as e:
    p(f"  no-proj-ext item: {type(e).__name__}: {e}")

open("/tmp/odc_measure/result.txt", "w").write("\n".join(lines) + "\n")
