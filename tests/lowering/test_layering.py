"""The compiler's import structure: lowering sits below the backends, and nothing imports in a circle.

Read from the sources (ast), imports inside functions included: a function-level import is how a
circle hides, and it still ties the two modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import wasinfer

SRC = Path(wasinfer.__file__).parent
# lowering → passes → frontends → ops → ir (and numpy): never up into a backend
LOWERING_MAY_IMPORT = ("wasinfer.lowering", "wasinfer.passes", "wasinfer.frontends", "wasinfer.ops", "wasinfer.ir")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: str) -> dict[str, Path]:
    return {module_name(p): p for p in (SRC / package).rglob("*.py")}


def imports(path: Path, known: set[str]) -> set[str]:
    """The wasinfer modules `path` imports, anywhere in it; `from pkg import sub` counts as pkg.sub
    (not pkg, whose __init__ merely runs first)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & known
            found |= submodules
            if len(submodules) < len(node.names):  # names defined in the module itself
                found.add(node.module)
    return {name for name in found if name.startswith("wasinfer.")}


def test_lowering_imports_nothing_above_it() -> None:
    lowering = modules("lowering")
    assert "wasinfer.lowering.conv" in lowering
    for name, path in lowering.items():
        for imported in imports(path, set(lowering)):
            assert imported.startswith(LOWERING_MAY_IMPORT), f"{name} imports {imported}"


def test_no_import_circles_in_the_compiler() -> None:
    graph_modules = {**modules("backends"), **modules("lowering")}
    known = set(graph_modules)
    edges = {name: imports(path, known) & known for name, path in graph_modules.items()}
    circles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for imported in sorted(edges[name]):
            if state.get(imported) == 1:
                circles.append([*path[path.index(imported):], imported])
            elif imported not in state:
                visit(imported)
        path.pop()
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name)
    assert circles == []
