"""gep_raster.numba_cache: where numba caches the kernels (package folder, or a user folder when it is read-only).

Each case runs in a fresh interpreter (numba reads NUMBA_CACHE_DIR once, at its import) on a copy of the module in a
package folder of the test's own: writable, read-only (chmod a-w; as root the child runs as user nobody, since root
writes through the mode bits; where nobody cannot run this interpreter, root's child sees the folder through an
``os.access`` that answers as for a read-only file system), or with NUMBA_CACHE_DIR already set.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "gep_raster" / "numba_cache.py"

# as root, where user nobody cannot run this interpreter: the folder seen as on a read-only file system
AS_READ_ONLY_FS = """
import os
_real, _ro = os.access, os.environ["TEST_READ_ONLY_DIR"]
os.access = lambda p, m, *a, **k: (False if m & os.W_OK and os.path.realpath(p).startswith(_ro)
                                   else _real(p, m, *a, **k))
"""
CHILD = """
import json, os, sys
import gep_raster.numba_cache as nc
import numba
print(json.dumps({"env": os.environ.get("NUMBA_CACHE_DIR"), "numba": numba.config.CACHE_DIR,
                  "package": str(nc.PACKAGE_DIR), "cache_dir": str(nc.cache_dir()),
                  "exists": os.path.isdir(os.environ.get("NUMBA_CACHE_DIR") or "/nonexistent")}))
"""


@pytest.fixture
def sandbox():
    """A world-readable folder with ``pkg/gep_raster/{__init__,numba_cache}.py`` and an empty ``xdg`` folder."""
    root = Path(tempfile.mkdtemp(prefix="gep_nbcache_"))
    pkg = root / "pkg" / "gep_raster"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('__version__ = "0"\n')
    shutil.copy(MODULE, pkg / "numba_cache.py")
    (root / "xdg").mkdir()
    os.chmod(root, 0o755)
    os.chmod(root / "pkg", 0o755)
    os.chmod(root / "xdg", 0o777)
    yield root
    for p in (pkg, root / "pkg"):
        if p.exists():
            os.chmod(p, 0o755)
    shutil.rmtree(root, ignore_errors=True)


def _child(root: Path, extra_env: dict, *, read_only: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "XDG_", "PYTHONPATH"))}
    env.update({"PYTHONPATH": str(root / "pkg"), "XDG_CACHE_HOME": str(root / "xdg"), "HOME": str(root / "xdg")})
    env.update(extra_env)
    kw, code = {}, CHILD
    if read_only:
        os.chmod(root / "pkg" / "gep_raster", 0o555)
        if hasattr(os, "geteuid") and os.geteuid() == 0:   # root writes through the mode bits
            if _venv_readable_by_others():
                kw["user"] = 65534
            else:
                env["TEST_READ_ONLY_DIR"] = str((root / "pkg").resolve())
                code = AS_READ_ONLY_FS + CHILD
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=root,
                          timeout=120, **kw)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _venv_readable_by_others() -> bool:
    p = Path(sys.executable).resolve()
    return all(os.stat(q).st_mode & 0o005 == 0o005 for q in [p, *p.parents] if q != Path("/"))


def test_writable_package_keeps_numba_default(sandbox):
    res = _child(sandbox, {})
    assert res["env"] is None
    assert res["numba"] in ("", None)           # numba caches next to the modules (in-tree)
    assert res["cache_dir"] == res["package"]


def test_read_only_package_uses_user_cache(sandbox):
    res = _child(sandbox, {}, read_only=True)
    want = str(sandbox / "xdg" / "gep_raster" / "numba")
    assert res["env"] == want
    assert res["numba"] == want                 # numba read it at its import
    assert res["cache_dir"] == want and res["exists"]


def test_read_only_package_without_xdg_uses_home_cache(sandbox):
    res = _child(sandbox, {"XDG_CACHE_HOME": ""}, read_only=True)
    assert res["env"] == str(sandbox / "xdg" / ".cache" / "gep_raster" / "numba")   # HOME is sandbox/xdg


def test_numba_cache_dir_already_set_wins(sandbox):
    mine = sandbox / "mine"
    res = _child(sandbox, {"NUMBA_CACHE_DIR": str(mine)}, read_only=True)
    assert res["env"] == str(mine) and res["numba"] == str(mine) and res["cache_dir"] == str(mine)


def test_configure_in_process_with_a_given_environment(tmp_path):
    """The decision itself, without touching this interpreter's environment."""
    from gep_raster import numba_cache as nc

    env = {"XDG_CACHE_HOME": str(tmp_path / "x")}
    assert nc.configure(package_dir=tmp_path, environ=env) is None          # writable: unchanged
    assert "NUMBA_CACHE_DIR" not in env
    env = {"NUMBA_CACHE_DIR": "/elsewhere"}
    assert nc.configure(package_dir=Path("/proc"), environ=env) is None     # already set wins
    assert env["NUMBA_CACHE_DIR"] == "/elsewhere"
    assert nc.user_cache_dir({"XDG_CACHE_HOME": "relative/path"}) == Path.home() / ".cache" / "gep_raster" / "numba"


def test_warmup_command_registers_and_writes_a_valid_synthetic_run(tmp_path):
    """``register(app)`` adds ``warmup`` (help renders); the synthetic county it runs is a valid config."""
    import typer
    from typer.testing import CliRunner

    from gep_raster import warmup
    from gep_raster.config import load_config

    app = typer.Typer(add_completion=False)

    @app.command()
    def _other():  # a second command, so typer keeps subcommand names
        pass

    warmup.register(app)
    res = CliRunner().invoke(app, ["warmup", "--help"])
    assert res.exit_code == 0, res.output
    assert "--keep" in res.output
    cfg = load_config(warmup._write_inputs(tmp_path))
    assert set(cfg.services.enabled()) == set(__import__("gep_raster.services.registry",
                                                         fromlist=["REGISTRY"]).REGISTRY)
