"""The package's shape (docs/architecture.md): layers import only downwards, no two modules import each other (not
even lazily or for type checking), no module over 500 lines. Read from the source with ``ast``; nothing runs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_domaingen"
ROOT = "napari_domaingen"
MAX_LINES = 500

#: what each layer must never import (a layer is the first name below the package)
FORBIDDEN = {
    "io": ("core", "cli", "_widgets", "_napari", "models"),
    "models": ("core", "cli", "_widgets", "_napari"),
    "core": ("cli", "_widgets", "_napari"),
    "cli": ("_widgets", "_napari"),
    "progress": ("io", "core", "cli", "models", "_widgets", "_napari"),
    "errors": ("io", "core", "cli", "models", "_widgets", "_napari"),
    "typing": ("io", "core", "cli", "models", "_widgets", "_napari"),
    "cpu_runtime": ("io", "core", "cli", "models", "_widgets", "_napari", "progress", "errors"),
}

#: the one upward import: `domaingen demo --gui` opens napari with the plugin's docks
ALLOWED = {("napari_domaingen.cli.demo", "napari_domaingen._napari.gui")}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every package module ``name`` imports, anywhere in the file (top level, functions, TYPE_CHECKING)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            submodules = [f"{target}.{alias.name}" for alias in node.names]
            # `from pkg import module` imports that module; the package itself only for a name defined in it
            names_in_target = any(sub not in modules for sub in submodules)
            candidates = [target] * names_in_target + submodules
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c in modules and c != name and c.startswith(ROOT))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_two_modules_import_each_other(graph):
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layers_import_only_downwards(graph):
    wrong = []
    for name, targets in graph.items():
        layer = name.split(".")[1] if "." in name else ""
        for target in targets:
            other = target.split(".")[1] if "." in target else ""
            if other in FORBIDDEN.get(layer, ()) and (name, target) not in ALLOWED:
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def test_no_qt_or_napari_below_the_widgets():
    wrong = []
    for name, path in _modules().items():
        if name.split(".")[1:2] and name.split(".")[1] in ("_widgets", "_napari"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            wrong += [f"{name} imports {n}" for n in names if n.split(".")[0] in ("qtpy", "napari", "magicgui")]
    allowed = {"napari_domaingen.cli.demo"}  # `domaingen demo --gui` opens napari
    assert [w for w in wrong if w.split(" ")[0] not in allowed] == []


def test_no_module_over_500_lines():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}
