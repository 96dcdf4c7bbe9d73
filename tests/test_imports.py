"""The package's import graph, read from the source with ``ast``: no cycles, and the layers
point one way (the web kernel under the API and the console, neither of which imports the
other; only the composition root sees both).

Every ``import`` counts wherever it stands: at module level, inside a function (where a
cycle would otherwise hide) and under ``if TYPE_CHECKING:`` (types that point both ways
are a cycle in the design even when Python never runs the import).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "m11_tenant"

def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    modules = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports (``from pkg import sub`` names ``sub``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # ``import a.b.c`` of a name in a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each
    returned as one closed path through it, so a failure shows the loop to cut."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(_loop(graph, set(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _loop(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest closed path from the component's first module back to itself."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    return sorted(component)  # unreachable for a strongly connected component


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, list[str]]:
    """Every module ``start`` imports, directly or not, with the chain that gets there."""
    chains = {start: [start]}
    frontier = [start]
    while frontier:
        node = frontier.pop()
        for nxt in sorted(graph[node]):
            if nxt not in chains:
                chains[nxt] = [*chains[node], nxt]
                frontier.append(nxt)
    return chains


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


GRAPH = import_graph()


def test_the_graph_is_read():
    assert "m11_tenant.factory" in GRAPH["m11_tenant"]
    assert "m11_tenant.web.context" in GRAPH["m11_tenant.console.routes"]
    assert {"m11_tenant.api.routes_admin", "m11_tenant.console"} <= GRAPH["m11_tenant.app"]


def test_no_import_cycle():
    found = cycles(GRAPH)
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


@pytest.mark.parametrize(("importer", "imported"), [
    ("m11_tenant.api", "m11_tenant.console"),
    ("m11_tenant.console", "m11_tenant.api"),
    ("m11_tenant.web", "m11_tenant.api"),
    ("m11_tenant.web", "m11_tenant.console"),
    ("m11_tenant.web", "m11_tenant.app"),
    ("m11_tenant.api", "m11_tenant.app"),
    ("m11_tenant.console", "m11_tenant.app"),
])
def test_layers_point_one_way(importer, imported):
    """Not even through a third module: the composition root alone sees both sides."""
    chains = [chain for module in GRAPH if _in(module, importer)
              for target, chain in reachable(GRAPH, module).items() if _in(target, imported)]
    assert not chains, f"{importer} reaches {imported}: " + " -> ".join(chains[0])
