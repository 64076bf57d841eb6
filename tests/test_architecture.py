"""Layer contracts of the package, read from the source (every ``import`` and ``from ... import``, at module
level or inside functions; imports under ``if TYPE_CHECKING:`` are not made at run time and are left out).

* kernels (``gep_raster.kernels``) are pure numpy/numba functions: they import nothing of the package;
* services and the checks of ``gep validate`` do not import the pipeline; the input opening
  (``gep_raster.run_inputs``) neither;
* the import cycles of the package only shrink: every strongly connected component of the import graph lies
  within ``KNOWN_CYCLE`` (config <-> service registry; the rest of the architecture issue removes it).
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "gep_raster"

#: the one cycle left: config builds the ``services:`` schema from the service registry, services read the
#: config and legend/price tables. It may only shrink.
KNOWN_CYCLE = {
    "gep_raster.accounts", "gep_raster.config", "gep_raster.run_inputs", "gep_raster.tables", "gep_raster.services",
    "gep_raster.services.model", "gep_raster.services.registry", "gep_raster.services.carbon_sequestration",
    "gep_raster.services.flood_regulation",
}


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
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


def import_graph() -> dict[str, set[str]]:
    """module -> package modules it imports (a ``from pkg import name`` of a submodule counts the submodule)."""
    mods = _modules()
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
                names = [target] + [f"{target}.{a.name}" for a in node.names]
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
    users = [m for m in graph if m.startswith("gep_raster.services") or m in ("gep_raster.validate",
                                                                               "gep_raster.run_inputs")]
    assert len(users) > 10
    assert {m: "gep_raster.pipeline" for m in users if "gep_raster.pipeline" in graph[m]} == {}


def test_import_cycles_only_shrink():
    comps = strongly_connected(import_graph())
    outside = [sorted(c - KNOWN_CYCLE) for c in comps if not c <= KNOWN_CYCLE]
    assert outside == [], f"modules joined an import cycle: {outside}"
    assert all("gep_raster.pipeline" not in c and "gep_raster.validate" not in c for c in comps)
