"""The package's shape: no import cycles, no module reaching into another's private names.

The import graph is built with `ast` over dsdoctor/**/*.py. Imports inside functions count
like top-level ones: a deferred import hides a cycle from the interpreter, not from a reader
(two modules that each need the other are one module, or a third one is missing). Imports
under `if TYPE_CHECKING:` do not count: they never run and only name types.
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "dsdoctor"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Import nodes, skipping `if TYPE_CHECKING:` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            stack.append(child)


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _graph():
    """module -> {imported dsdoctor module}, and the list of (module, imported module, name)
    for every `from X import name`."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    names: list[tuple[str, str, str]] = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        is_pkg = path.name == "__init__.py"
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                src = _resolve(mod, is_pkg, node)
                targets = []
                for a in node.names:
                    sub = f"{src}.{a.name}"
                    if sub in mods:          # `from . import formats`: a module
                        targets.append(sub)
                    else:
                        targets.append(src)
                        names.append((mod, src, a.name))
            for t in targets:
                # `import a.b.c` depends on a.b.c (and runs the packages above it, which are
                # allowed to be empty or to re-export)
                if t in mods and t != mod:
                    graph[mod].add(t)
    return graph, names


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    graph, _ = _graph()
    cycles = _cycles(graph)
    assert not cycles, "import cycles in dsdoctor/:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_private_names_imported_across_modules():
    _, names = _graph()
    bad = sorted({f"{mod} imports {name} from {src}" for mod, src, name in names
                  if name.startswith("_") and not name.startswith("__")
                  and src.startswith("dsdoctor") and src != mod})
    assert not bad, "private names used outside their module:\n" + "\n".join(bad)


def test_the_graph_is_built():
    """The checks above see the package (a path mistake would make them pass vacuously)."""
    graph, names = _graph()
    assert "dsdoctor.sources.logs" in graph and len(graph) > 50
    assert "dsdoctor.pipeline" in graph["dsdoctor.api"] or any(graph.values())
    assert names
