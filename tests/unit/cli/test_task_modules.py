"""A thin, uniform CLI (issue 20): each task module exports its Collection, and --json is
one parameter spelling (`json_`, which does not shadow the json module) in every task."""
from __future__ import annotations

import ast
import importlib

from invoke import Collection

from tests.support import REPO_ROOT

CLI = REPO_ROOT / "tasks" / "cli"


def task_modules() -> list[str]:
    return sorted(p.stem for p in CLI.glob("*_tasks.py"))


def test_each_task_module_exports_its_collection():
    modules = task_modules()
    assert {"stack_tasks", "check_tasks", "mlx_tasks", "stress_tasks", "test_tasks"} <= set(modules)
    missing = [m for m in modules if not isinstance(
        getattr(importlib.import_module(f"tasks.cli.{m}"), "ns", None), Collection)]
    assert not missing


def test_one_spelling_of_json():
    shadowing = []
    for path in CLI.glob("*_tasks.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                shadowing += [f"{path.stem}.{node.name}" for a in node.args.args
                              if a.arg == "json"]
    assert not shadowing
