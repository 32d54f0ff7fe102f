"""No import cycles among l2l_torch's modules, counting every import statement (function-level ones included).

The graph is built from the source with ``ast``, not by importing: module ``A`` depends on ``B`` when any
``import`` in ``A`` names ``B``. A name imported from a package (``from l2l_torch.learned_optimizers import
REGISTRY``) counts as an import of the module that defines it (the package ``__init__`` only re-exports it),
and a parent package's ``__init__``, which Python runs first, does not count.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from tests.helpers import REPO

#: package name -> folder (``l2l_torch.tasks`` lives at the top of a checkout: see ``l2l_torch/_checkout.py``)
ROOTS = {"l2l_torch": REPO / "l2l_torch", "l2l_torch.tasks": REPO / "tasks", "l2l_torch.configs": REPO / "configs"}


def discover() -> dict[str, Path]:
    """Module name -> source file, for every module of l2l_torch (a package's name maps to its ``__init__``)."""
    files: dict[str, Path] = {}
    for pkg, folder in ROOTS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([pkg, *parts])
            if name not in files:  # (an installed-style l2l_torch/tasks/ would come first: the same modules)
                files[name] = path
    return files


MODULES = discover()


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


@cache
def parsed(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))


def absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute module name of ``from ... import`` in ``module`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def defining_module(package: str, name: str, seen: frozenset = frozenset()) -> str:
    """The module that defines ``name`` imported from ``package``: a submodule of that name, else the module the
    package's ``__init__`` imports it from (followed further), else the package itself."""
    if f"{package}.{name}" in MODULES:
        return f"{package}.{name}"
    if package not in MODULES or not is_package(package) or (package, name) in seen:
        return package
    for node in parsed(package).body:
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            src = absolute(package, node)
            original = next(a.name for a in node.names if (a.asname or a.name) == name)
            if src in MODULES:
                return defining_module(src, original, seen | {(package, name)})
    return package


def known(name: str) -> str | None:
    """``name`` or its longest prefix that is a module of l2l_torch (``None``: not ours)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in MODULES:
            return ".".join(parts[:i])
    return None


def imports(module: str) -> dict[str, int]:
    """The l2l_torch modules ``module`` imports (anywhere in its source), each with the line of its first import."""
    out: dict[str, int] = {}
    for node in ast.walk(parsed(module)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [t for a in node.names if (t := known(a.name))]
        elif isinstance(node, ast.ImportFrom):
            src = absolute(module, node)
            if src in MODULES:
                targets = [defining_module(src, a.name) if a.name != "*" else src for a in node.names]
        for t in targets:
            if t != module:
                out.setdefault(t, node.lineno)
    return out


def import_graph() -> dict[str, dict[str, int]]:
    return {m: imports(m) for m in MODULES}


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) through each strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)

    found = []
    for comp in components:  # a shortest cycle through the component's first module, by breadth-first search
        start, members = comp[0], set(comp)
        parent: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in parent:
            nxt = []
            for v in frontier:
                for w in graph[v]:
                    if w in members and w not in parent:
                        parent[w] = v
                        nxt.append(w)
            frontier = nxt
        path = [start]
        while path[-1] != start or len(path) == 1:
            path.append(parent[path[-1]])
        found.append(path[::-1])
    return found


def describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_the_graph_sees_the_imports_that_matter():
    """The resolution rules on known imports: a re-exported name counts as its defining module, function-level
    imports count, and the parent package does not."""
    graph = import_graph()
    assert "l2l_torch.tasks.quadratic" in MODULES and "l2l_torch.learned_optimizers.lstm" in MODULES
    # `from l2l_torch.tasks import Task, TaskFamily`: the names are defined in l2l_torch.tasks.base
    assert "l2l_torch.tasks.base" in graph["l2l_torch.tasks.quadratic"]
    assert "l2l_torch.tasks" not in graph["l2l_torch.tasks.quadratic"]
    # l2l_torch/cli.py imports the truncation schedule inside a function (config_horizon)
    assert "l2l_torch.truncation" in graph["l2l_torch.cli"]
    assert "l2l_torch.learned_optimizers.base" in graph["l2l_torch.learned_optimizers.lstm"]
    assert not any("l2l_torch" in deps for deps in graph.values())


def test_cycles_are_found():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}, "e": {"e": 5}}
    assert cycles(graph) == [["a", "b", "c", "a"]]


def test_no_import_cycles():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(describe(c, graph) for c in found)
