"""The suite's own conventions, checked."""

from __future__ import annotations

import ast
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_every_test_says_what_it_protects() -> None:
    """Each test function opens with a docstring saying the behaviour it protects."""
    missing = [f"{p.relative_to(HERE)}:{n.lineno} {n.name}" for p in sorted(HERE.rglob("test_*.py"))
               for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.FunctionDef)
               and n.name.startswith("test_") and not ast.get_docstring(n)]
    assert missing == []


def test_the_generator_imports_nothing_of_the_edges() -> None:
    """generator/ is the pure core: no module of it imports hooks/, lab/ or the CLI."""
    import re

    edges = re.compile(r"^\s*(from|import)\s+(lvsdr\.(hooks|lab|cli)\b|\.\.(hooks|lab|cli)\b)", re.M)
    offenders = [str(p.relative_to(HERE.parent)) for p in sorted((HERE.parent / "generator").rglob("*.py"))
                 if edges.search(p.read_text())]
    assert offenders == []


# -- the layers of the package -----------------------------------------------------------------------
PACKAGE = HERE.parent / "src" / "lvsdr"


def _modules() -> dict[str, Path]:
    """Every module of the installed package by its dotted name (the source tree's symlinked folders followed)."""
    import os

    out = {}
    for d, _dirs, files in os.walk(PACKAGE, followlinks=True):
        for f in files:
            if f.endswith(".py"):
                p = Path(d) / f
                parts = ("lvsdr", *p.relative_to(PACKAGE).with_suffix("").parts)
                out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imports(modules: dict[str, Path]) -> dict[str, dict[str, tuple[str, ...]]]:
    """module -> {imported lvsdr module: the names taken from it}, every import counted (a lazy one inside a
    function too: it is a dependency all the same)."""
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for name, path in modules.items():
        deps: dict[str, tuple[str, ...]] = {}
        is_pkg = path.name == "__init__.py"
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.Import):
                for a in n.names:
                    if a.name.startswith("lvsdr"):
                        deps.setdefault(a.name, ())
            elif isinstance(n, ast.ImportFrom):
                if n.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[:len(base) - (n.level - 1)]
                    full = ".".join(base + ([n.module] if n.module else []))
                else:
                    full = n.module or ""
                if not full.startswith("lvsdr"):
                    continue
                for a in n.names:
                    sub = f"{full}.{a.name}"
                    if sub in modules:
                        deps.setdefault(sub, ())
                    else:
                        deps[full] = (*deps.get(full, ()), a.name)
        out[name] = {d: names for d, names in deps.items() if d in modules and d != name}
    return out


def test_no_module_of_the_package_imports_itself_back() -> None:
    """No import cycle anywhere in the package, lazy imports included: each concept's module is below the ones
    that use it (rules <-> schema, replay <-> gateway and reload <-> watch were cycles)."""
    graph = {m: set(d) for m, d in _imports(_modules()).items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []


# what the lab (test scaffolding, shipped for `lvsdr lab`) may take from the product: the pure core, whole; from the
# edges, only these pure readers (it builds what the product renders, and reads the node as the product reads it)
LAB_MAY_IMPORT = ("lvsdr.errors", "lvsdr.defaults", "lvsdr.inputs", "lvsdr.generator")
LAB_FROM_THE_EDGES = {"lvsdr.hooks.processes": {"parse_stat"}, "lvsdr.hooks.facts": {"sysctl_path"},
                      "lvsdr.hooks.wire": {"flow_picks"}}
# notify's fast path, standard library only: the leaves it reads with, its own modules, and (on its way out) the
# gateway's one door and the node's address type
FAST_MAY_IMPORT = ("lvsdr.errors", "lvsdr.defaults", "lvsdr.inputs", "lvsdr.fingerprint", "lvsdr.source", "lvsdr.roles",
                   "lvsdr.hooks.fast", "lvsdr.hooks.gateway", "lvsdr.generator.node")


def _within(module: str, allowed: tuple[str, ...]) -> bool:
    return any(module == a or module.startswith(a + ".") for a in allowed)


def test_each_layer_imports_only_what_it_may() -> None:
    """The layering: generator/ (the pure core) imports none of the edges; only the CLI imports the lab; the lab
    imports the pure core and the few pure readers of hooks/ named here; hooks/fast imports its leaves alone."""
    graph = _imports(_modules())
    wrong = []
    for m, deps in sorted(graph.items()):
        for d, names in sorted(deps.items()):
            if m.startswith("lvsdr.generator.") and _within(d, ("lvsdr.hooks", "lvsdr.lab", "lvsdr.cli")):
                wrong.append(f"{m} -> {d} (the core imports an edge)")
            if _within(d, ("lvsdr.lab",)) and not _within(m, ("lvsdr.lab", "lvsdr.cli")):
                wrong.append(f"{m} -> {d} (only the CLI runs the lab)")
            named = d in LAB_FROM_THE_EDGES and bool(names) and set(names) <= LAB_FROM_THE_EDGES[d]
            if _within(m, ("lvsdr.lab",)) and not _within(d, ("lvsdr.lab", *LAB_MAY_IMPORT)) and not named:
                wrong.append(f"{m} -> {d} {names} (the lab takes no product internals but those named)")
            if _within(m, ("lvsdr.hooks.fast",)) and not _within(d, FAST_MAY_IMPORT):
                wrong.append(f"{m} -> {d} (notify's fast path imports its leaves alone)")
    assert wrong == []
