"""gep_raster against InVEST 3.20.2 itself on identical inputs (bench/crosscheck_invest.py, smallest cases).

Needs the InVEST peer virtualenv (``PEER_VENV=/path bash ../shared/tools/invest-peer/setup.sh``, found from
``$INVEST_PEER_VENV`` or ``../invest-venv``); skipped with that reason when it is absent. The full table
(500², 2000², Gura, carbon, AWY) is in docs/invest_methods.md.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow]


def _crosscheck():
    spec = importlib.util.spec_from_file_location("crosscheck_invest", REPO / "bench" / "crosscheck_invest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def crosscheck(tmp_path_factory):
    mod = _crosscheck()
    if mod.find_peer(None) is None:
        pytest.skip("natcap.invest peer absent: build it with PEER_VENV=/path bash ../shared/tools/invest-peer/"
                    "setup.sh and set INVEST_PEER_VENV=/path")
    work = tmp_path_factory.mktemp("crosscheck")
    out = work / "result.json"
    assert mod.main(["--cases", "sdr500,awy", "--work", str(work), "--out", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("routing", ["d8", "mfd"])
def test_sdr_equal_to_invest_3_20(crosscheck, routing):
    assert crosscheck["invest"].startswith("3.20")
    r = crosscheck["cases"]["sdr500"]["routing"][routing]["rasters"]
    for name in ("ls", "rkls", "usle", "avoided_erosion"):
        a = r[name]
        assert a["valid_both"] > 230_000, (name, a)  # 248,755 valid cells less the stream cells
        assert a["within_tol"] >= 0.999, (name, a)  # |ours - InVEST| <= 1e-4 |InVEST| on >= 99.9 % of pixels
        assert a["only_invest"] == 0, (name, a)
        assert a["sum_ratio"] == pytest.approx(1.0, rel=1e-4), (name, a)
    # identical routing: the pit-filled DEM and the flow accumulation
    assert r["pit_filled_dem"]["max_rel"] == 0.0
    assert r["flow_accumulation"]["within_tol"] == 1.0
    assert r["stream"]["max_rel"] == 0.0


def test_awy_equal_to_invest(crosscheck):
    a = crosscheck["cases"]["awy"]["rasters"]["wyield"]
    assert a["max_rel"] <= 1e-5 and a["only_ours"] == 0 and a["only_invest"] == 0
