"""The code's layout holds (issue 11): layered packages (import-linter's contracts in
.importlinter, run here as `lint-imports`), no import circles, no private names reached across
modules. Read from the source with `ast`, so imports inside functions count."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

# The packages of tasks/; their order is the layers contract in .importlinter.
PACKAGES = {"core", "host", "stack", "checks", "bench", "cli"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import in the file, nested included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def graph(package: str) -> dict[str, set[str]]:
    """module -> the modules of the same top-level package it imports."""
    files = sorted((REPO_ROOT / package).rglob("*.py"))
    modules = {module_name(f): f for f in files}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported, names in imports_of(path):
            if imported in modules:
                targets.add(imported)
            for n in names:  # `from tasks.stack import lifecycle` imports a module too
                if f"{imported}.{n}" in modules:
                    targets.add(f"{imported}.{n}")
        edges[name] = targets - {name}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


@pytest.mark.parametrize("package", ["tasks", "mlx_service"])
def test_no_import_circles(package):
    assert find_cycle(graph(package)) is None


def test_the_import_contracts_hold():
    """tasks' packages import only downwards (cli > checks | bench > stack > host > core), so
    do mlx_service's (__main__ > http > engine > models > kernels | telemetry > config | enums
    | errors, every module of its root in one), mlx_service imports nothing from tasks, the
    model runner not the queue."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "4 kept, 0 broken" in done.stdout


def test_every_task_module_lives_in_a_package():
    loose = [p.name for p in (REPO_ROOT / "tasks").glob("*.py") if p.name != "__init__.py"]
    assert not loose
    assert {p.name for p in (REPO_ROOT / "tasks").iterdir() if p.is_dir()
            and p.name != "__pycache__"} == PACKAGES


@pytest.mark.parametrize("package", ["tasks", "mlx_service"])
def test_no_private_name_imported_across_modules(package):
    reached = []
    for path in sorted((REPO_ROOT / package).rglob("*.py")):
        for imported, names in imports_of(path):
            if imported.split(".")[0] == package:
                reached += [f"{module_name(path)}: {imported}.{n}" for n in names
                            if n.startswith("_") and not n.startswith("__")]
    assert not reached


def test_the_product_ships_no_test_support():
    assert not (REPO_ROOT / "mlx_service" / "testing.py").exists()
    for path in (REPO_ROOT / "mlx_service").rglob("*.py"):
        assert not any(imported.split(".")[0] in ("tasks", "tests", "pytest")
                       for imported, _ in imports_of(path)), path
