"""Packaging: license metadata, the lock file against what the dependencies need, and (slow) a wheel built with
warnings as errors, installed into a fresh venv and run on the sample from outside the repository.

The build and install helpers are those of ``bench/bench_first_run.py`` (``make bench-first-run``).
"""
from __future__ import annotations

import importlib.util
import re
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None


def _pyproject() -> dict:
    if tomllib is None:
        pytest.skip("tomllib needs Python >= 3.11")
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _bench():
    spec = importlib.util.spec_from_file_location("bench_first_run", REPO / "bench" / "bench_first_run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, str]:
    out = {}
    for line in (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not pinned with =="
            out[_canon(name)] = version
    return out


def required_closure(requirements: list[str]) -> tuple[dict[str, set], list[str]]:
    """Every distribution ``requirements`` need, recursively, by the metadata of the installed distributions
    (markers evaluated here, extras followed). Returns ({name: extras asked for}, [requirements not installed])."""
    from packaging.requirements import Requirement

    seen: dict[str, set] = {}
    missing: list[str] = []
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = _canon(req.name)
        extras = set(req.extras)
        if name in seen and extras <= seen[name]:
            continue
        seen[name] = seen.get(name, set()) | extras
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            missing.append(str(req))
            continue
        for spec in dist.requires or []:
            sub = Requirement(spec)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *seen[name])):
                todo.append(sub)
    return seen, missing


def test_license_is_spdx_with_a_license_file():
    proj = _pyproject()["project"]
    assert proj["license"] == "MIT"                       # SPDX expression, not the deprecated table
    assert proj["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "gep_raster contributors" in text


def test_build_requirements_are_a_bounded_range():
    reqs = _pyproject()["build-system"]["requires"]
    st = [r for r in reqs if r.startswith("setuptools")]
    assert st and ">=" in st[0] and "<" in st[0].replace("<=", "<"), reqs   # tested range, not open-ended
    assert not any(r.startswith("wheel") for r in reqs)   # setuptools >= 70.1 builds wheels itself


def test_every_locked_package_is_required_and_every_required_one_locked():
    """requirements.lock = exactly what pyproject's dependencies + dev extra resolve to (no leftovers)."""
    proj = _pyproject()["project"]
    roots = proj["dependencies"] + proj["optional-dependencies"]["dev"]
    need, missing = required_closure(roots)
    if missing:
        pytest.skip(f"not installed in this environment (run make setup): {missing}")
    lock = _lock()
    unused = sorted(set(lock) - set(need))
    unlocked = sorted(set(need) - set(lock) - {"gep-raster"})
    assert not unused, f"locked but required by nothing (remove from requirements.lock): {unused}"
    assert not unlocked, f"required but not pinned in requirements.lock: {unlocked}"


def test_locked_versions_are_the_installed_ones():
    lock = _lock()
    differ = {}
    for name, version in lock.items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        if have != version:
            differ[name] = (version, have)
    if differ:
        pytest.skip(f"environment differs from requirements.lock (make setup reinstalls): {differ}")


@pytest.mark.slow
def test_wheel_builds_without_warnings_installs_and_runs_outside_the_repo(tmp_path):
    bench = _bench()
    wheel, sdist, log = bench.build_dists(tmp_path / "dist")
    bad = [line for line in log.splitlines() if bench.BAD_BUILD_OUTPUT.search(line)]
    assert not bad, "build printed deprecations:\n" + "\n".join(bad)

    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    data = {n.removeprefix("gep_raster/data/") for n in names if n.startswith("gep_raster/data/") and n.endswith(".csv")}
    shipped = {p.relative_to(REPO / "gep_raster" / "data").as_posix() for p in (REPO / "gep_raster" / "data").rglob("*.csv")}
    assert data == shipped and "legends/clcd.csv" in data   # defaults and the product legends
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in meta
    with tarfile.open(sdist) as tar:
        assert any(m.name.endswith("/LICENSE") for m in tar.getmembers())

    bin_ = bench.make_venv(tmp_path / "venv", wheel)
    work = tmp_path / "elsewhere"                      # not inside the repository: nothing found by accident
    out_dir = work / "out"
    cfg = bench.sample_config(work / "cfg", out_dir)
    env = bench.clean_env({"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    bench.gep(bin_, ["run", str(cfg), "-q"], cwd=work, env=env)
    totals = bench.manifest_totals(out_dir)
    from gep_raster.config import load_config

    services = [f"{name}_yuan" for name in load_config(cfg).services.enabled()]   # the sample's services
    assert len(services) >= 8
    assert set(services) <= set(totals), sorted(totals)
    assert totals["gep_r_yuan"] > 0
    assert totals["gep_r_yuan"] == pytest.approx(sum(totals[k] for k in services), rel=1e-6)
    assert totals["gep_yuan"] == pytest.approx(totals["gep_r_yuan"] + totals["provisioning_yuan"]
                                               + totals["cultural_yuan"], rel=1e-6)
    # the installed package is the one that ran (not the repository's through a path)
    proc = __import__("subprocess").run([str(bin_ / "python"), "-c", "import gep_raster; print(gep_raster.__file__)"],
                                        capture_output=True, text=True, cwd=work, env=env)
    assert str(tmp_path / "venv") in proc.stdout, proc.stdout + proc.stderr
