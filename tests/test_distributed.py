"""Execution on a Dask distributed cluster, order-independent sums, progress display.

The ``cluster`` fixture starts a real ``dask scheduler`` and two single-threaded ``dask worker``
processes on the loopback interface (subprocesses of this test run, stopped in the finalizer, killed
on timeout). Runs through the cluster must give the very rasters and tables of the local threaded run.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio

from gep_raster.config import load_config
from gep_raster.errors import ConfigError, RasterError
from gep_raster.pipeline import BlockSink, run, store_distributed
from gep_raster.progress import BlockProgress, format_duration

from conftest import REPO, write_raster

DASK = Path(sys.executable).with_name("dask")
START_TIMEOUT_S = 60


# --------------------------------------------------------------------------------------
# a local cluster of real processes
# --------------------------------------------------------------------------------------
def _start(args, log_path: Path, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    log = open(log_path, "wb")
    # own process group: the finalizer can stop the worker processes a nanny spawned
    return subprocess.Popen([str(DASK), *args], stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def _stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


@contextlib.contextmanager
def _local_cluster(d: Path, env: dict | None = None):
    """A scheduler on 127.0.0.1 and 2 worker processes (1 thread each, under a nanny) in folder ``d``; the
    workers get ``env`` added to their environment."""
    from distributed import Client

    sched_file = d / "sched.json"
    procs = []
    try:
        procs.append(_start(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                             "--scheduler-file", str(sched_file)], d / "scheduler.log", d))
        t0 = time.monotonic()
        while not (sched_file.exists() and sched_file.stat().st_size > 0):
            if procs[0].poll() is not None or time.monotonic() - t0 > START_TIMEOUT_S:
                pytest.fail(f"dask scheduler did not start:\n{(d / 'scheduler.log').read_text()[-3000:]}")
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written in one go, but be safe about a partial read
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:"), address
        procs.append(_start(["worker", "--scheduler-file", str(sched_file), "--nworkers", "2", "--nthreads", "1",
                             "--no-dashboard", "--host", "127.0.0.1", "--local-directory", str(d / "work")],
                            d / "workers.log", d, env))
        with Client(address, set_as_default=False, timeout="30s") as client:
            try:
                client.wait_for_workers(2, timeout=START_TIMEOUT_S)
            except TimeoutError:
                pytest.fail(f"2 dask workers did not connect:\n{(d / 'workers.log').read_text()[-3000:]}")
        yield {"address": address, "scheduler_file": str(sched_file), "dir": d}
    finally:
        for p in reversed(procs):
            _stop(p)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Address of a scheduler on 127.0.0.1 with 2 worker processes (1 thread each)."""
    if not DASK.exists():
        pytest.skip(f"no dask CLI next to {sys.executable}")
    with _local_cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


# --------------------------------------------------------------------------------------
def _assert_same_run(a, b):
    """Every raster of run ``a`` equals run ``b``'s value for value (NaN included); tables and totals equal."""
    rasters = [o["path"] for o in a.manifest["outputs"] if o["path"].endswith(".tif")]
    assert rasters
    for rel in rasters:
        with rasterio.open(a.output_dir / rel) as x, rasterio.open(b.output_dir / rel) as y:
            va, vb = x.read(), y.read()
        assert va.dtype == vb.dtype and va.shape == vb.shape, rel
        assert np.array_equal(va, vb, equal_nan=True), rel
    for name in a.tables:
        pd.testing.assert_frame_equal(a.tables[name].drop(columns="geometry"),
                                      b.tables[name].drop(columns="geometry"), check_exact=True)
        ca = pd.read_csv(a.output_dir / "tables" / f"{name}.csv")
        cb = pd.read_csv(b.output_dir / "tables" / f"{name}.csv")
        pd.testing.assert_frame_equal(ca, cb, check_exact=True)
    assert a.manifest["totals"] == b.manifest["totals"]
    assert a.manifest["hierarchy_checks"] == b.manifest["hierarchy_checks"]


@pytest.mark.slow
def test_tiny_run_on_cluster_equals_local_run(tiny, cluster):
    local = run(load_config(tiny, overrides={"output": {"dir": "out_local"}}), progress=False, workers=2)
    dist = run(load_config(tiny, overrides={"output": {"dir": "out_dist"}}), progress=False,
               scheduler=cluster["address"])
    assert local.manifest["execution"]["scheduler"] == "threads"
    ex = dist.manifest["execution"]
    assert ex["scheduler"] == "distributed" and ex["workers"] == 2 and ex["address"] == cluster["address"]
    _assert_same_run(local, dist)


@pytest.mark.slow
def test_sample_run_on_cluster_equals_local_run(tmp_path, cluster):
    cfg_path = REPO / "pipelines" / "sample.yaml"
    if not (REPO / "sample_tiles" / "data" / "land_cover").is_dir():
        pytest.skip("sample_tiles/data not present")

    def cfg(name):
        return load_config(cfg_path, overrides={"output": {"dir": str(tmp_path / name)}})

    local = run(cfg("local"), progress=False, workers=2)
    # scheduler file instead of the address; 6 blocks of 256 px through a window of 4 blocks
    dist = run(cfg("dist"), progress=False, scheduler=cluster["scheduler_file"])
    assert dist.manifest["execution"]["blocks"] == 6
    _assert_same_run(local, dist)


@pytest.mark.slow
def test_run_completes_when_a_worker_process_is_killed(tmp_path):
    """A worker process SIGKILLs itself before its 2nd block (gep_raster.faults, once in the whole cluster): the
    nanny restarts it, the scheduler computes its blocks again elsewhere, and the run equals the local run."""
    if not DASK.exists():
        pytest.skip(f"no dask CLI next to {sys.executable}")
    from conftest import sample_config

    marker = tmp_path / "killed-once"
    local = run(load_config(sample_config(tmp_path, "local", chunk=128, workers=2)), progress=False)
    env = {"GEP_FAULT": "compute@2:KILL", "GEP_FAULT_ONCE": str(marker)}
    (tmp_path / "cluster").mkdir()
    with _local_cluster(tmp_path / "cluster", env) as c:
        dist = run(load_config(sample_config(tmp_path, "dist", chunk=128)), progress=False, scheduler=c["address"])
        log = (c["dir"] / "workers.log").read_text(errors="replace")
    assert marker.exists(), "no worker was killed: the fault point was not reached"
    assert "was killed by signal 9" in log, log[-3000:]  # the nanny saw its worker die (and restarted it)
    assert dist.manifest["execution"]["blocks"] == 20
    _assert_same_run(local, dist)


# --------------------------------------------------------------------------------------
def _stack_of_sources(tmp_path, h=150, w=170, chunk=32):
    """A (2, h, w) dask array of two GridSources in ``chunk``-px blocks, and its numpy value."""
    import dask.array as da

    from gep_raster.grid import RefGrid
    from gep_raster.grid.io_read import GridSource

    rng = np.random.default_rng(1)
    a = rng.normal(size=(h, w)).astype(np.float32)
    b = rng.normal(size=(h, w)).astype(np.float32)
    a[5:9, 7:40] = -9999.0
    pa = write_raster(tmp_path / "a.tif", a, nodata=-9999.0)
    pb = write_raster(tmp_path / "b.tif", b, nodata=-9999.0)
    grid = RefGrid.from_raster(pa)
    sa = GridSource("inputs.a", [pa], grid, "continuous")
    sb = GridSource("inputs.b", [pb], grid, "continuous")
    chunks = da.core.normalize_chunks((chunk, chunk), shape=grid.shape)
    stacked = da.stack([sa.to_dask(chunks), sb.to_dask(chunks)]).rechunk((2, chunk, chunk))
    a = np.where(a == -9999.0, np.nan, a)
    return stacked, np.stack([a, b]), (pa, pb), (sa, sb)


class _Collect:
    """Sink that records the blocks it is given (the sink interface: ``put(r0, c0, block)``)."""

    def __init__(self, shape):
        self.out = np.full(shape, -1.0, np.float32)
        self.seen = []

    def put(self, r0, c0, block):
        self.seen.append((r0, c0))
        self.out[:, r0:r0 + block.shape[1], c0:c0 + block.shape[2]] = block


def test_grid_source_pickles_without_its_open_handles(tmp_path):
    from gep_raster.grid.io_read import SumSource

    _, ref, _, (sa, sb) = _stack_of_sources(tmp_path)
    sa.read(0, 10, 0, 10)  # opens a handle in this thread
    assert sa._local.handles
    blob = pickle.dumps(sa)
    c1, c2 = pickle.loads(blob), pickle.loads(blob)
    assert not getattr(c1._local, "handles", None)  # nothing open came along
    assert np.array_equal(c1.read(0, 150, 0, 170), ref[0], equal_nan=True)
    # the copies of one source (a worker unpickles one per task) share the thread's open files
    assert c2._local is c1._local and c2._local.handles
    assert pickle.loads(pickle.dumps(sb))._local is not c1._local
    total = pickle.loads(pickle.dumps(SumSource("inputs.ab", [sa, sb])))
    assert np.allclose(total.read(0, 150, 0, 170), ref[0] + ref[1], equal_nan=True)


@pytest.mark.slow
def test_store_distributed_small_window_every_block_once(tmp_path, cluster):
    stacked, ref, _, _ = _stack_of_sources(tmp_path)
    sink = _Collect(ref.shape)
    info = store_distributed(stacked, sink, cluster["address"], window=3)
    n_blocks = len(stacked.chunks[1]) * len(stacked.chunks[2])
    assert info["max_blocks_in_flight"] == 3 and info["workers"] == 2
    assert len(sink.seen) == len(set(sink.seen)) == n_blocks
    assert np.array_equal(sink.out, ref, equal_nan=True)


@pytest.mark.slow
def test_worker_error_is_raised_in_the_client(tmp_path, cluster):
    stacked, ref, (pa, _), _ = _stack_of_sources(tmp_path)
    pa.unlink()  # the workers cannot open the raster any more
    with pytest.raises(RasterError, match="a.tif"):
        store_distributed(stacked, _Collect(ref.shape), cluster["address"])


def test_missing_scheduler_file_is_a_config_error(tiny, tmp_path):
    with pytest.raises(ConfigError, match="scheduler file"):
        run(load_config(tiny), progress=False, scheduler=str(tmp_path / "nope.json"))


# --------------------------------------------------------------------------------------
# BlockSink: sums independent of the arrival order
# --------------------------------------------------------------------------------------
def test_block_sink_sums_do_not_depend_on_arrival_order():
    import geopandas as gpd
    import shapely
    from affine import Affine
    from rasterio.crs import CRS

    from gep_raster.grid import RefGrid
    from gep_raster.services import OutputSpec
    from gep_raster.accounts.zonal import CoverageIndex

    h, w, ch = 90, 110, 16
    grid = RefGrid(CRS.from_epsg(32650), Affine(30, 0, 500000, 0, -30, 3000000), w, h)
    polys = gpd.GeoDataFrame({"i": [0, 1, 2]}, crs="EPSG:32650", geometry=[
        shapely.box(500000 + 17, 3000000 - 2000, 500000 + 1900.5, 3000000 - 3.3),
        shapely.Point(500000 + 1500, 3000000 - 1400).buffer(900),
        shapely.box(500000 + 3000, 3000000 - 2600, 500000 + 3290, 3000000 - 10)])
    idx = {"a": CoverageIndex.build(polys, grid, layer_name="a")}
    outputs = [OutputSpec(k, "s", "value", "yuan", k, write=False) for k in ("x_yuan", "y_yuan", "gep_r_yuan")]
    rng = np.random.default_rng(3)
    data = (rng.lognormal(10, 3, size=(3, h, w))).astype(np.float32)
    data[:, rng.random((h, w)) < 0.05] = np.nan
    rows = list(range(0, h, ch))
    cols = list(range(0, w, ch))
    blocks = [(r, c) for r in rows for c in cols]
    chunks = (tuple(min(ch, h - r) for r in rows), tuple(min(ch, w - c) for c in cols))
    results = []
    for seed in range(4):
        order = list(blocks)
        np.random.default_rng(seed).shuffle(order)
        sink = BlockSink(outputs, None, idx, ["x_yuan", "y_yuan", "gep_r_yuan"], chunks=chunks)
        for r, c in order:
            sink.put(r, c, data[:, r:r + ch, c:c + ch])
        sink.check_complete()
        results.append((sink.totals.copy(), sink.sums["a"].copy(), sink.valid_area["a"].copy()))
    for res in results[1:]:
        for x, y in zip(results[0], res):
            assert np.array_equal(x, y)  # bit for bit
    ref = idx["a"].zonal_sum(data)
    assert np.allclose(results[0][1], ref, rtol=1e-12)
    with pytest.raises(ValueError, match="arrived twice"):
        sink.put(0, 0, data[:, :ch, :ch])
    incomplete = BlockSink(outputs, None, idx, ["x_yuan"], chunks=chunks)
    incomplete.put(0, 0, data[:, :ch, :ch])
    with pytest.raises(Exception, match="blocks were not written"):
        incomplete.check_complete()


# --------------------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------------------
def test_progress_counts_blocks_and_pixels_and_throttles():
    buf = io.StringIO()
    p = BlockProgress(10, 10 * 100, enabled=True, label="compute_write", stream=buf, use_rich=False,
                      min_interval=3600)
    with p:
        for _ in range(10):
            p.advance(100)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2  # the first block, then (throttled) only the final line
    assert lines[0].startswith("compute_write blocks 1/10 · 0.0/0.0 Mpx")
    assert "blocks 10/10" in lines[-1] and "done in" in lines[-1]
    s = p.snapshot()
    assert (s["blocks_done"], s["pixels_done"], s["pixels_total"]) == (10, 1000, 1000)
    assert s["eta_s"] == 0
    assert format_duration(3725) == "1:02:05" and format_duration(None) == "--:--:--"


def test_progress_disabled_writes_nothing():
    buf = io.StringIO()
    with BlockProgress(3, 300, enabled=False, stream=buf) as p:
        for _ in range(3):
            p.advance(100)
    assert buf.getvalue() == "" and p.blocks_done == 3


def test_run_progress_on_stderr_only_when_asked(tiny, capfd):
    run(load_config(tiny, overrides={"output": {"dir": "quiet"}}), progress=False)
    out, err = capfd.readouterr()
    assert "compute_write" not in out + err
    run(load_config(tiny, overrides={"output": {"dir": "loud"}}), progress=True)
    out, err = capfd.readouterr()
    assert "compute_write" not in out
    assert "compute_write blocks 1/1 · 0.0/0.0 Mpx" in err  # 40 x 50 px in one block


def test_cli_scheduler_option_reaches_the_run(tiny, tmp_path):
    from typer.testing import CliRunner

    from gep_raster.cli import app

    res = CliRunner().invoke(app, ["run", str(tiny), "--scheduler", str(tmp_path / "missing.json"), "-q"])
    assert res.exit_code == 2
    assert "scheduler file" in res.output and "missing.json" in res.output


def test_nan_totals_by_hand():
    """Per-band sum and count of non-NaN pixels (the block totals of BlockSink)."""
    from gep_raster.kernels.reduce import nan_totals

    block = np.array([[[1.0, np.nan], [2.5, 4.0]], [[np.nan, np.nan], [np.nan, np.nan]],
                      [[-1.0, 0.0], [0.0, 1e-3]]], np.float32)
    totals, valid = nan_totals(block)
    np.testing.assert_allclose(totals, [7.5, 0.0, -1.0 + np.float64(np.float32(1e-3))], rtol=0, atol=1e-12)
    assert valid.tolist() == [3, 0, 4]
    with pytest.raises(ValueError, match="3-D"):
        nan_totals(block[0])


def test_block_mean_by_hand():
    """x2 overview cells: mean of the non-NaN pixels; edge cells cover what is left; all-NaN -> NaN."""
    from gep_raster.kernels.reduce import block_mean

    a = np.array([[1, 3, 5], [5, np.nan, 7], [np.nan, np.nan, 2]], np.float32)
    got = block_mean(a, 2)
    # (1+3+5)/3 = 3; (5+7)/2 = 6; bottom-left all NaN; bottom-right 2
    np.testing.assert_array_equal(got, np.array([[3, 6], [np.nan, 2]], np.float32))


def test_class_counts_by_hand_and_equal_to_bincount():
    from gep_raster.kernels.reduce import class_counts

    a = np.array([[0, 1, 1], [-1, 2, 1]], np.int16)
    counts, areas, over = class_counts(a, np.array([10.0, 20.0]), n_codes=4)
    assert counts.tolist() == [1, 3, 1, 0] and over == 0
    assert areas.tolist() == [10.0, 10.0 + 10.0 + 20.0, 20.0, 0.0]
    _, _, over = class_counts(np.array([[3, 4, 9]], np.int32), n_codes=4)
    assert over == 2
    rng = np.random.default_rng(3)
    b = rng.integers(-1, 300, (257, 131)).astype(np.int32)
    ra = rng.random(257) * 900
    c, ar, _ = class_counts(b, ra)
    ok = b >= 0
    assert np.array_equal(c[:300], np.bincount(b[ok], minlength=300))
    # the same row-major float order as np.bincount with weights: equal to the last bit
    assert np.array_equal(ar[:300], np.bincount(b[ok], weights=np.broadcast_to(ra[:, None], b.shape)[ok],
                                                minlength=300))
    with pytest.raises(ValueError, match="integer"):
        class_counts(np.zeros((2, 2)))


def test_class_histogram_independent_of_threads_and_rejects_huge_codes(tmp_path):
    from affine import Affine
    from rasterio.crs import CRS

    from gep_raster.errors import InputError
    from gep_raster.grid import RefGrid
    from gep_raster.grid.run_inputs import class_histogram

    class Src:
        name = "inputs.land_cover"

        def __init__(self, arr):
            self.arr = arr
            self.grid = RefGrid(CRS.from_epsg(32650), Affine(30, 0, 0, 0, -30, 0), arr.shape[1], arr.shape[0])

        def read(self, r0, r1, c0, c1):
            return self.arr[r0:r1, c0:c1]

    rng = np.random.default_rng(5)
    arr = rng.integers(-1, 40, (300, 200)).astype(np.int32)
    one = class_histogram(Src(arr), 64, with_area=True, threads=1)
    two = class_histogram(Src(arr), 64, with_area=True, threads=3)
    assert one == two
    assert sum(one[0].values()) == int((arr >= 0).sum())
    arr[5, 7] = 70000
    with pytest.raises(InputError, match="inputs.land_cover: 1 pixels hold a class code above 65536"):
        class_histogram(Src(arr), 64, threads=2)
