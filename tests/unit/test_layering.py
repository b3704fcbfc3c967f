"""The import direction of ARCHITECTURE.md, checked on every module's source (imports inside functions too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "cluster", "actors", "analytics", "serve_app", "panel_dashboard", "cloudfn")
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "cluster": {"cluster", "core", "ray"},
    "analytics": {"analytics", "core"},
    "actors": {"actors", "analytics", "core", "ray"},
    "serve_app": {"serve_app", "actors", "analytics", "cluster", "core", "ray", "cloudfn"},
    "panel_dashboard": {"panel_dashboard", "core"},
    "cloudfn": {"cloudfn"},  # the SDK: HTTP only, never the server's packages nor Ray
}


def imported_roots(path: Path) -> set[str]:
    """Top-level names of everything a module imports (absolute imports)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_what_it_may(package: str) -> None:
    forbidden = (set(PACKAGES) | {"ray"}) - ALLOWED[package]
    bad = {str(f.relative_to(ROOT)): sorted(imported_roots(f) & forbidden)
           for f in (ROOT / package).rglob("*.py") if imported_roots(f) & forbidden}
    assert not bad, f"{package} must not import {sorted(forbidden)}: {bad}"


def test_every_package_says_what_it_owns() -> None:
    for package in PACKAGES:
        doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text()))
        assert doc and "import" in doc.lower(), f"{package}/__init__.py must say what it owns and may not import"


def module_graph(package: str) -> dict[str, set[str]]:
    """Each module of a package and the package's modules it imports (anywhere, TYPE_CHECKING blocks too)."""
    mods = {".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): f
            for f in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from pkg import mod` uses the submodule; `from mod import name` uses the module
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                           for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            deps.update(t for t in targets if t in mods and t != name and t != package)
        graph[name] = deps
    return graph


def cycle_in(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of the graph (as a path that returns to its start), or [] if there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str]:
        state[m] = 1
        path.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        path.pop()
        state[m] = 2
        return []

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return []


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles_between_modules(package: str) -> None:
    cycle = cycle_in(module_graph(package))
    assert not cycle, f"import cycle in {package}: {' -> '.join(cycle)}"


# serve_app's parts and the parts each may import: the invocation's path (http → accept → dispatch → write →
# feed) with reads (results), the function catalogue and the control plane beside it; `platform` composes them
SERVE_APP_PARTS: dict[str, set[str]] = {
    "catalog": set(),
    "accept": set(),
    "results": set(),
    "write": {"results"},
    "dispatch": {"write", "catalog"},
    "control": {"dispatch", "write", "catalog"},
    "feed": {"dispatch", "write"},
    "replicas": {"write"},
    "platform": {"accept", "catalog", "control", "dispatch", "feed", "replicas", "results", "write"},
    "http": {"platform", "results", "accept", "catalog", "control", "replicas"},
    "deployment": {"http", "platform"},
    "cli": {"deployment"},
}


def test_serve_app_parts_import_only_downstream() -> None:
    def part(module: str) -> str:
        return module.split(".")[1] if "." in module else "__init__"

    graph = module_graph("serve_app")
    assert {part(m) for m in graph} - {"__init__"} == set(SERVE_APP_PARTS), "a new part needs its row here"
    bad = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps
                 if part(d) != part(m) and part(d) not in SERVE_APP_PARTS.get(part(m), set()))
    assert not bad, f"imports against serve_app's direction: {bad}"
