"""The package's shape: imports run one way, from the views down to the tables.

A cycle between two modules means neither can be read, tested or changed without
the other. Imports under ``if TYPE_CHECKING:`` do not count (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "plugin" / "flask_dynamics_sync"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts}


def runtime_imports(name: str) -> set[str]:
    """The package's modules that ``name`` imports when it runs (at import time or in a function)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only or not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        elif node.module and node.module.split(".")[0] == PACKAGE.name:
            target = node.module
        else:
            continue
        submodules = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in MODULES]
        found.update(module for module in submodules or [target] if module in MODULES and module != name)
    return found


GRAPH = {name: runtime_imports(name) for name in MODULES}


def cycle_through(start: str) -> list[str] | None:
    """A chain of imports from ``start`` back to itself, if there is one."""
    seen: set[str] = set()

    def walk(module: str, chain: list[str]) -> list[str] | None:
        for imported in sorted(GRAPH[module]):
            if imported == start:
                return [*chain, imported]
            if imported not in seen:
                seen.add(imported)
                found = walk(imported, [*chain, imported])
                if found:
                    return found
        return None

    return walk(start, [start])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_itself_back_through_others(module):
    assert cycle_through(module) is None


def test_the_graph_sees_the_imports_it_should():
    assert {"flask_dynamics_sync.models", "flask_dynamics_sync.database"} <= GRAPH["flask_dynamics_sync.recorder"]
    assert "flask_dynamics_sync.views.errors" in GRAPH["flask_dynamics_sync.views"]
