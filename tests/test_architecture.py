"""Layer contracts of the package, read from the source (every ``import`` and ``from ... import``, at module
level or inside functions; imports under ``if TYPE_CHECKING:`` are not made at run time and are left out).

* kernels (``gep_raster.kernels``) are pure numpy/numba functions: they import nothing of the package;
* services and the checks of ``gep validate`` do not import the pipeline; the input opening
  (``gep_raster.grid.run_inputs``) neither;
* outputs (writers, block store, figures, provenance, progress) import no service;
* the stages of the pipeline (``gep_raster.pipeline.*``) do not import :mod:`gep_raster.pipeline` itself;
* the package has no import cycle. The configuration builds its ``services:`` schema from the service registry
  (config -> services.registry -> each service); services, the tables, the accounts and the input opening import
  the run configuration for type hints only (``if TYPE_CHECKING:``).
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "gep_raster"

#: modules that write or describe outputs: they must not import a service
OUTPUT_MODULES = ("gep_raster.outputs.io_write", "gep_raster.outputs.block_store", "gep_raster.outputs.figures", "gep_raster.outputs.provenance",
                  "gep_raster.progress")


def _modules(pkg: Path = PKG) -> dict[str, Path]:
    out = {}
    for p in pkg.rglob("*.py"):
        parts = list(p.relative_to(pkg.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph(pkg: Path = PKG) -> dict[str, set[str]]:
    """module -> package modules it imports (a ``from pkg import name`` of a submodule counts the submodule)."""
    mods = _modules(pkg)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        package = m if p.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in _runtime_nodes(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                # ``from pkg import submodule`` depends on the submodule (as ``import pkg.submodule`` does: the
                # package's __init__ runs for either); ``from pkg import name`` on the package
                names = [f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            graph[m].update(n for n in names if n in mods and n != m)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.add(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(comp)
    return out


def test_scc_finder_on_a_known_graph():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert strongly_connected(g) == [{"a", "b", "c"}]


def test_kernels_import_nothing_of_the_package():
    graph = import_graph()
    bad = {m: sorted(t for t in ts if not t.startswith("gep_raster.kernels"))
           for m, ts in graph.items() if m.startswith("gep_raster.kernels")}
    assert {m: t for m, t in bad.items() if t} == {}


def test_services_validate_and_inputs_do_not_import_the_pipeline():
    graph = import_graph()
    users = [m for m in graph if m.startswith("gep_raster.services") or m in ("gep_raster.validation",
                                                                               "gep_raster.grid.run_inputs")]
    assert len(users) > 10
    bad = {m: sorted(t for t in graph[m] if t == "gep_raster.pipeline" or t.startswith("gep_raster.pipeline."))
           for m in users}
    assert {m: t for m, t in bad.items() if t} == {}


def test_graph_sees_function_level_imports_and_skips_type_checking(tmp_path):
    pkg = tmp_path / "pk"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import X\n"
                              "def f():\n    from .sub import c\n")
    (pkg / "b.py").write_text("from . import a\nX = 1\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from ..b import X\nfrom .. import a as _a\n")
    g = import_graph(pkg)
    assert g["pk.a"] == {"pk.sub.c"} and g["pk.b"] == {"pk.a"} and g["pk.sub.c"] == {"pk.b", "pk.a"}
    assert strongly_connected(g) == [{"pk.a", "pk.b", "pk.sub.c"}]
    (pkg / "b.py").write_text("X = 1\n")
    (pkg / "sub" / "c.py").write_text("from ..b import X\n")
    assert strongly_connected(import_graph(pkg)) == []


def test_no_import_cycle():
    comps = strongly_connected(import_graph())
    assert comps == [], f"import cycles: {[sorted(c) for c in comps]}"


def test_outputs_import_no_service():
    graph = import_graph()
    assert all(m in graph for m in OUTPUT_MODULES)
    bad = {m: sorted(t for t in graph[m] if t.startswith("gep_raster.services")) for m in OUTPUT_MODULES}
    assert {m: t for m, t in bad.items() if t} == {}


def test_pipeline_stages_do_not_import_the_pipeline_package():
    graph = import_graph()
    stages = [m for m in graph if m.startswith("gep_raster.pipeline.")]
    assert len(stages) >= 10
    assert {m: "gep_raster.pipeline" for m in stages if "gep_raster.pipeline" in graph[m]} == {}


def test_zonal_imports_only_grid_and_errors():
    """The coverage index (``gep_raster.accounts.zonal``) is the accounts' geometry engine: it needs the reference grid and
    the error types, nothing of the services, the configuration or the pipeline."""
    graph = import_graph()
    zonal = [m for m in graph if m == "gep_raster.accounts.zonal" or m.startswith("gep_raster.accounts.zonal.")]
    assert len(zonal) >= 8
    bad = {m: sorted(t for t in graph[m] if not t.startswith("gep_raster.accounts.zonal")
                     and t not in ("gep_raster.grid", "gep_raster.errors")) for m in zonal}
    assert {m: t for m, t in bad.items() if t} == {}


def function_lengths(pkg: Path = PKG) -> dict[str, int]:
    """``module:qualified.name`` -> lines of code of every function and method (from the first statement after its
    docstring to its last line; decorators, signature and docstring not counted)."""
    out = {}
    for mod, p in _modules(pkg).items():
        tree = ast.parse(p.read_text(encoding="utf-8"))
        stack = [(tree, "")]
        while stack:
            node, prefix = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = f"{prefix}{child.name}"
                    if not isinstance(child, ast.ClassDef):
                        body = child.body
                        doc = (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                               and isinstance(body[0].value.value, str))
                        start = (body[1].lineno if len(body) > 1 else body[0].end_lineno + 1) if doc else body[0].lineno
                        out[f"{mod}:{name}"] = child.end_lineno - start + 1
                    stack.append((child, name + "."))
    return out


def test_function_lengths_are_measured(tmp_path):
    pkg = tmp_path / "pk"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "m.py").write_text('def f(x):\n    """Doc\n    more."""\n    a = 1\n    return a\n\n\n'
                              'class C:\n    def g(self):\n        return 1\n')
    assert function_lengths(pkg) == {"pk.m:f": 2, "pk.m:C.g": 1}


def test_no_function_over_80_lines():
    """Functions stay readable: at most 80 lines of code each (docstrings excluded), numba kernels included."""
    lengths = function_lengths()
    assert len(lengths) > 500
    assert {k: n for k, n in lengths.items() if n > 80} == {}


def test_pipeline_stages_are_short():
    """Each stage of the run (``gep_raster.pipeline.*``) is at most 60 lines of code per function."""
    lengths = function_lengths()
    assert {k: n for k, n in lengths.items() if k.startswith("gep_raster.pipeline") and n > 60} == {}
