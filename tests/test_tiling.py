"""Tile-split invariance: the same area given as 1 file, as 4 tiles and as 9 tiles gives identical results.

The embedded sample (pipelines/sample.yaml: 8 regulating services incl. soil retention with D8 flow
routing, plus the EPV/ECV economic accounts) is run three times from copies of its config that differ
only in how the inputs on the reference grid (land cover and DEM) are cut into files:

* ``1``: one GeoTIFF per input (assembled here from the committed 2 x 2 sample tiles);
* ``4``: 2 x 2 tiles of uneven sizes, neighbours overlapping by a few pixels (identical values there);
* ``9``: 3 x 3 tiles, idem, with other cut positions and overlaps.

The other inputs are not on the land-cover grid (the NEP raster is in EPSG:4326, the climate rasters
on a 1 km grid) and are used as they are. Cuts and overlaps are placed so that no tile edge falls on a
chunk boundary (``output.chunk_size`` 128). Every raster in the manifest must be bit-identical
(NaN = NaN) with the same grid, every CSV table and every manifest total exactly equal.

Negative controls show that the comparison can fail: a 2 x 2 tile set with one tile shifted by one
pixel, and one with a single altered DEM value, give another mosaic (read through
:class:`gep_raster.grid.io_read.GridSource`, no full run).
"""
from __future__ import annotations

import copy
import glob
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from affine import Affine
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CFG = REPO / "pipelines" / "sample.yaml"
SAMPLE_DATA = REPO / "sample_tiles" / "data"
CHUNK = 128

# cut positions (row cuts, column cuts) of the 600 x 480 px sample grid and the overlap of the tiles on
# either side of each cut: (pixels the tile before the cut extends past it, pixels the tile after it starts
# before it). None of the resulting tile edges is a multiple of CHUNK.
SPLITS = {
    4: {"rows": [(197, (3, 2))], "cols": [(341, (2, 4))]},
    9: {"rows": [(131, (2, 2)), (305, (4, 1))], "cols": [(173, (3, 3)), (419, (1, 2))]},
}

pytestmark = pytest.mark.slow


def _sample_present() -> bool:
    return SAMPLE_CFG.is_file() and (SAMPLE_DATA / "land_cover").is_dir() and (SAMPLE_DATA / "dem").is_dir()


# --------------------------------------------------------------------------------------------------
# building the inputs
# --------------------------------------------------------------------------------------------------
def _assemble(folder: Path):
    """The committed tiles of one input as one array (placed by their transforms, independently of
    gep_raster), with the profile of the first tile and the transform of the whole."""
    paths = sorted(folder.glob("*.tif"))
    dss = [rasterio.open(p) for p in paths]
    try:
        first = dss[0]
        res = first.transform.a
        left = min(d.bounds.left for d in dss)
        top = max(d.bounds.top for d in dss)
        right = max(d.bounds.right for d in dss)
        bottom = min(d.bounds.bottom for d in dss)
        w, h = round((right - left) / res), round((top - bottom) / res)
        arr = np.full((h, w), first.nodata, dtype=first.dtypes[0])
        filled = np.zeros((h, w), bool)
        for d in dss:
            c0, r0 = (d.bounds.left - left) / res, (top - d.bounds.top) / res
            assert c0 == round(c0) and r0 == round(r0), f"{d.name} is off the lattice"
            c0, r0 = round(c0), round(r0)
            assert not filled[r0:r0 + d.height, c0:c0 + d.width].any(), "committed sample tiles overlap"
            arr[r0:r0 + d.height, c0:c0 + d.width] = d.read(1)
            filled[r0:r0 + d.height, c0:c0 + d.width] = True
        assert filled.all(), f"{folder}: the committed tiles do not cover their bounding box"
        profile = {"driver": "GTiff", "count": 1, "dtype": first.dtypes[0], "crs": first.crs,
                   "nodata": first.nodata}
        return arr, Affine(res, 0, left, 0, -res, top), profile
    finally:
        for d in dss:
            d.close()


def _write(path: Path, arr: np.ndarray, transform, profile, **extra):
    with rasterio.open(path, "w", width=arr.shape[1], height=arr.shape[0], transform=transform,
                       **profile, **extra) as ds:
        ds.write(arr, 1)
    return path


def _spans(n: int, cuts) -> list[tuple[int, int]]:
    """[start, stop) of each tile along one axis: cut positions with their overlaps."""
    starts, stops = [0], []
    for pos, (after, before) in cuts:
        stops.append(pos + after)
        starts.append(pos - before)
    stops.append(n)
    return list(zip(starts, stops))


def _windows(shape, split) -> list[tuple[str, Window]]:
    rows, cols = _spans(shape[0], split["rows"]), _spans(shape[1], split["cols"])
    return [(f"r{i}_c{j}", Window(c0, r0, c1 - c0, r1 - r0))
            for i, (r0, r1) in enumerate(rows) for j, (c0, c1) in enumerate(cols)]


def _write_tiles(folder: Path, prefix: str, arr, transform, profile, windows) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, win in windows:
        r0, c0 = int(win.row_off), int(win.col_off)
        sub = arr[r0:r0 + int(win.height), c0:c0 + int(win.width)]
        out.append(_write(folder / f"{prefix}_{name}.tif", sub, window_transform(win, transform), profile,
                          tiled=True, blockxsize=64, blockysize=64, compress="deflate"))
    return out


def _absolutize(node, base: Path):
    """Copy of the parsed sample config with every relative path (keys path / monthly / table / dir)
    made absolute with respect to the config's folder."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in ("path", "monthly", "table", "dir") and isinstance(v, (str, list)):
                items = v if isinstance(v, list) else [v]
                fixed = [str((base / x).resolve()) if not Path(x).is_absolute() else x for x in items]
                for x in fixed:
                    if k != "dir":
                        assert glob.glob(x), f"sample config path {x} matches nothing"
                out[k] = fixed if isinstance(v, list) else fixed[0]
            else:
                out[k] = _absolutize(v, base)
        return out
    if isinstance(node, list):
        return [_absolutize(x, base) for x in node]
    return node


# --------------------------------------------------------------------------------------------------
# the three runs
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def split_runs(tmp_path_factory):
    if not _sample_present():
        pytest.skip("the embedded sample (pipelines/sample.yaml, sample_tiles/data) is missing")
    from gep_raster.config import load_config
    from gep_raster.pipeline import run
    from gep_raster.grid.run_inputs import reference_grid

    tmp = tmp_path_factory.mktemp("tiling")
    lc, lc_t, lc_prof = _assemble(SAMPLE_DATA / "land_cover")
    dem, dem_t, dem_prof = _assemble(SAMPLE_DATA / "dem")
    assert lc.shape == dem.shape and lc_t == dem_t, "the sample DEM is no longer on the land-cover grid"
    base_raw = _absolutize(yaml.safe_load(SAMPLE_CFG.read_text(encoding="utf-8")), SAMPLE_CFG.parent)
    # only the land cover and the DEM are on the reference grid; the others are resampled (not split)
    with rasterio.open(base_raw["inputs"]["carbon"]["path"]) as ds:
        assert ds.crs != lc_prof["crs"], "the NEP raster is now on the land-cover CRS: split it too"

    single = tmp / "single"
    single.mkdir()
    layouts = {1: ([_write(single / "lc.tif", lc, lc_t, lc_prof)], [_write(single / "dem.tif", dem, dem_t, dem_prof)])}
    for n, split in SPLITS.items():
        wins = _windows(lc.shape, split)
        assert len(wins) == n
        layouts[n] = (_write_tiles(tmp / f"tiles{n}" / "lc", "lc", lc, lc_t, lc_prof, wins),
                      _write_tiles(tmp / f"tiles{n}" / "dem", "dem", dem, dem_t, dem_prof, wins))

    runs = {}
    for n, (lc_files, dem_files) in layouts.items():
        raw = copy.deepcopy(base_raw)
        if n == 1:
            raw["inputs"]["land_cover"] = {"path": str(lc_files[0])}
            raw["inputs"]["dem"] = {"path": str(dem_files[0])}
        elif n == 4:  # a folder of tiles and a glob
            raw["inputs"]["land_cover"] = {"path": str(lc_files[0].parent)}
            raw["inputs"]["dem"] = {"path": str(dem_files[0].parent / "dem_*.tif")}
        else:  # explicit lists of files (in reverse order: the mosaic must not depend on it)
            raw["inputs"]["land_cover"] = {"path": [str(p) for p in reversed(lc_files)]}
            raw["inputs"]["dem"] = {"path": [str(p) for p in reversed(dem_files)]}
        raw["output"] = {"dir": str(tmp / f"out_{n}"), "chunk_size": CHUNK}
        cfg_path = tmp / f"run_{n}.yaml"
        cfg_path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
        cfg = load_config(cfg_path)
        grid = reference_grid(cfg)
        assert (grid.width, grid.height) == (lc.shape[1], lc.shape[0]) and grid.transform == lc_t
        runs[n] = run(cfg, progress=False, force=True)
    return {"runs": runs, "layouts": layouts, "lc": lc, "dem": dem, "transform": lc_t,
            "profiles": (lc_prof, dem_prof), "tmp": tmp}


def _rasters(res) -> list[str]:
    return [o["path"] for o in res.manifest["outputs"] if o["kind"] not in ("table", "figure")]


def _csv_tables(res) -> list[str]:
    return [o["path"] for o in res.manifest["outputs"] if o["kind"] == "table" and o["path"].endswith(".csv")]


def _read(path: Path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.shape, ds.transform, ds.crs, ds.dtypes[0], ds.nodata


def assert_same_raster(a: Path, b: Path):
    da, sa, ta, ca, dta, nda = _read(a)
    db, sb, tb, cb, dtb, ndb = _read(b)
    assert (sa, ta, ca, dta) == (sb, tb, cb, dtb), f"{b}: grid or dtype differs from {a}"
    assert (nda == ndb) or (np.isnan(nda) and np.isnan(ndb)), f"{b}: nodata {ndb} != {nda}"
    if not np.array_equal(da, db, equal_nan=da.dtype.kind == "f"):
        diff = _differs(da, db)
        r, c = np.argwhere(diff)[0]
        raise AssertionError(f"{b.name}: {int(diff.sum())} pixel(s) differ from {a}; first at row {r}, col {c}: "
                             f"{da[r, c]!r} vs {db[r, c]!r}")


def _differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixels where a and b differ (NaN equals NaN)."""
    same = a == b
    if a.dtype.kind == "f":
        same |= np.isnan(a) & np.isnan(b)
    return ~same


def assert_same_array(a: np.ndarray, b: np.ndarray, what: str):
    assert a.shape == b.shape and a.dtype == b.dtype, what
    if not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
        raise AssertionError(f"{what}: {int(_differs(a, b).sum())} pixel(s) differ")


# --------------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------------
def test_tile_sets_are_real_overlapping_tilings(split_runs):
    """The inputs really are split as intended: file counts, overlaps, uneven sizes, edges off the chunks."""
    lc, dem = split_runs["lc"], split_runs["dem"]
    for n, (lc_files, dem_files) in split_runs["layouts"].items():
        res = split_runs["runs"][n]
        assert len(res.manifest["inputs"]["lc"]["files"]) == n
        assert len(res.manifest["inputs"]["dem"]["files"]) == n
        assert res.manifest["chunk_size"] == CHUNK
        if n == 1:
            continue
        cover = np.zeros(lc.shape, np.int32)
        sizes, edges = set(), set()
        for p, q in zip(lc_files, dem_files):
            with rasterio.open(p) as a, rasterio.open(q) as b:
                assert a.transform == b.transform and a.shape == b.shape
                t = split_runs["transform"]
                r0 = round((t.f - a.transform.f) / -t.e)
                c0 = round((a.transform.c - t.c) / t.a)
                np.testing.assert_array_equal(a.read(1), lc[r0:r0 + a.height, c0:c0 + a.width])
                np.testing.assert_array_equal(b.read(1), dem[r0:r0 + a.height, c0:c0 + a.width])
                cover[r0:r0 + a.height, c0:c0 + a.width] += 1
                sizes.add(a.shape)
                edges.update({r0, c0, r0 + a.height, c0 + a.width})
        assert cover.min() == 1, "the tiles must cover the whole grid"
        assert cover.max() >= 2 and (cover >= 2).sum() > 0, "neighbouring tiles must overlap"
        assert len(sizes) == n, "tiles of uneven sizes"
        inner = edges - {0, lc.shape[0], lc.shape[1]}
        assert inner and all(e % CHUNK for e in inner), "no tile edge on a chunk boundary"


def test_rasters_are_bit_identical(split_runs):
    runs = split_runs["runs"]
    ref = runs[1]
    paths = _rasters(ref)
    assert len(paths) >= 20
    for n in (4, 9):
        assert _rasters(runs[n]) == paths
        for rel in paths:
            assert_same_raster(ref.output_dir / rel, runs[n].output_dir / rel)


def test_tables_and_totals_are_identical(split_runs):
    runs = split_runs["runs"]
    ref = runs[1]
    tables = _csv_tables(ref)
    assert {Path(t).stem for t in tables} == {"county", "township", "special_units"}
    for n in (4, 9):
        res = runs[n]
        assert _csv_tables(res) == tables
        for rel in tables:
            a = pd.read_csv(ref.output_dir / rel, dtype=str)  # exact: the written text itself
            b = pd.read_csv(res.output_dir / rel, dtype=str)
            pd.testing.assert_frame_equal(a, b, check_exact=True, obj=f"{rel} ({n} tiles)")
            pd.testing.assert_frame_equal(pd.read_csv(ref.output_dir / rel), pd.read_csv(res.output_dir / rel),
                                          check_exact=True, obj=f"{rel} ({n} tiles, parsed)")
        ta, tb = ref.manifest["totals"], res.manifest["totals"]
        assert set(ta) == set(tb)
        for k in ta:
            assert ta[k]["sum"] == tb[k]["sum"], (n, k, ta[k]["sum"], tb[k]["sum"])
            assert ta[k]["valid_pixels"] == tb[k]["valid_pixels"], (n, k)
        for key in ("routing", "diagnostics", "hierarchy_checks", "land_cover_classes_px", "grid"):
            assert res.manifest[key] == ref.manifest[key], (n, key)


def test_comparison_is_not_vacuous(split_runs):
    """Hand-checkable: the compared rasters hold real values, incl. the routing-dependent LS factor."""
    ref = split_runs["runs"][1]
    m = ref.manifest
    paths = _rasters(ref)
    assert "rasters/intermediate/ls_factor.tif" in paths and "rasters/physical/soil_retention_t.tif" in paths
    assert m["routing"][0]["method"] == "d8"
    lc = split_runs["lc"]
    valid_lc = int((lc != split_runs["profiles"][0]["nodata"]).sum())
    gep = _read(ref.output_dir / "rasters/gep_r_yuan.tif")[0]
    # every valid land-cover pixel has a GEP-R value
    assert np.isfinite(gep).sum() == m["totals"]["gep_r_yuan"]["valid_pixels"] == valid_lc > 100_000
    assert m["totals"]["gep_r_yuan"]["sum"] == pytest.approx(float(np.nansum(gep.astype(np.float64))), rel=1e-9)
    for rel in paths:
        arr = _read(ref.output_dir / rel)[0]
        assert np.isfinite(arr).any(), rel
    # flow accumulates across the tile cuts: the largest upslope area (cells) is far larger than a tile
    assert m["routing"][0]["max_upslope_cells"] > 131 * 173
    ls = _read(ref.output_dir / "rasters/intermediate/ls_factor.tif")[0]
    assert np.nanmax(ls) > 1.0 and np.nanstd(ls) > 0
    sr = _read(ref.output_dir / "rasters/physical/soil_retention_t.tif")[0]
    assert np.nansum(sr) > 0
    county = pd.read_csv(ref.output_dir / "tables/county.csv")
    assert county["gep_r_yuan"].iloc[0] > 0 and county["soil_retention_t"].iloc[0] > 0


# --------------------------------------------------------------------------------------------------
# negative controls: a wrong tile set gives another mosaic, and the comparison notices
# --------------------------------------------------------------------------------------------------
def _mosaic(paths, grid, kind):
    from gep_raster.grid.io_read import GridSource

    return GridSource("control", list(paths), grid, kind).read_all()


def test_negative_control_shifted_or_altered_tile_changes_the_mosaic(split_runs):
    from gep_raster.grid.io_read import grid_from_files

    tmp = split_runs["tmp"] / "controls"
    lc, dem, t = split_runs["lc"], split_runs["dem"], split_runs["transform"]
    lc_prof, dem_prof = split_runs["profiles"]
    single_lc, single_dem = split_runs["layouts"][1]
    grid = grid_from_files(single_lc, "single")
    ref_lc = _mosaic(single_lc, grid, "categorical")
    ref_dem = _mosaic(single_dem, grid, "continuous")
    # positive: the untouched 2 x 2 tiles give exactly the single-file mosaic
    lc4, dem4 = split_runs["layouts"][4]
    assert grid_from_files(lc4, "four") == grid
    assert_same_array(ref_lc, _mosaic(lc4, grid, "categorical"), "4 tiles, land cover")
    assert_same_array(ref_dem, _mosaic(dem4, grid, "continuous"), "4 tiles, DEM")

    wins = _windows(lc.shape, SPLITS[4])
    # (a) the last (bottom-right) tile shifted one pixel to the left: same grid, another mosaic
    shifted = _write_tiles(tmp / "shifted", "lc", lc, t, lc_prof, wins)
    with rasterio.open(shifted[-1], "r+") as ds:
        ds.transform = ds.transform * Affine.translation(-1, 0)
    assert grid_from_files(shifted, "shifted") == grid
    bad = _mosaic(shifted, grid, "categorical")
    assert (bad != ref_lc).sum() > 100
    with pytest.raises(AssertionError, match="differ"):
        assert_same_array(ref_lc, bad, "shifted tile")
    # (b) one DEM value altered outside the overlaps of the first tile: exactly that pixel differs
    altered = _write_tiles(tmp / "altered", "dem", dem, t, dem_prof, wins[:1])
    altered += list(dem4[1:])
    with rasterio.open(altered[0], "r+") as ds:
        a = ds.read(1)
        a[50, 60] += 1.0
        ds.write(a, 1)
    bad = _mosaic(altered, grid, "continuous")
    diff = np.argwhere(_differs(bad, ref_dem))
    assert diff.tolist() == [[50, 60]] and bad[50, 60] == ref_dem[50, 60] + 1.0
    with pytest.raises(AssertionError, match="1 pixel"):
        assert_same_array(ref_dem, bad, "altered DEM value")
    # ... and the raster comparison used for the run outputs catches it too
    single_alt = _write(tmp / "dem_alt.tif", bad, t, {**dem_prof, "nodata": np.nan})
    single_ref = _write(tmp / "dem_ref.tif", ref_dem, t, {**dem_prof, "nodata": np.nan})
    assert_same_raster(single_ref, single_ref)
    with pytest.raises(AssertionError, match="1 pixel"):
        assert_same_raster(single_ref, single_alt)
