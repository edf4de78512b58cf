"""One way to fail (issue 20): every domain error of the tasks is a TaskError, and the one
wrapper every task goes through turns it into one line and its exit code; no task catches to
print."""
from __future__ import annotations

import ast
import importlib

import pytest
from invoke import Collection, Exit, task

from tasks.cli.task_edge import quiet_collection
from tasks.core.errors import TaskError
from tasks.core.settings import SettingsError
from tests.support import REPO_ROOT

# Raised and caught inside one module to carry a value, never shown to a user.
INTERNAL = {"DiedWhileWaiting"}


def error_classes() -> list[tuple[str, str]]:
    found = []
    for path in sorted((REPO_ROOT / "tasks").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.bases and node.name not in INTERNAL \
                    and (node.name.endswith("Error") or node.name in ("NotReady", "LockTimeout",
                                                                      "KeyRefused")):
                module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
                found.append((module, node.name))
    return found


def test_every_domain_error_is_a_task_error():
    classes = error_classes()
    assert len(classes) >= 12
    wrong = [f"{m}.{n}" for m, n in classes if not issubclass(getattr(importlib.import_module(m), n),
                                                               TaskError)]
    assert not wrong


def test_no_task_module_catches_domain_errors_to_print_them():
    for name in ("stack_tasks", "mlx_tasks"):
        source = (REPO_ROOT / "tasks" / "cli" / f"{name}.py").read_text()
        assert "_failures" not in source and "_fail(" not in source


class Broken(TaskError):
    pass


def run_wrapped(error: Exception, collection: str | None = None) -> Exit:
    @task
    def boom(c):
        raise error

    inner = Collection(boom)
    root = Collection()
    if collection:
        root.add_collection(inner, name=collection)
        wrapped = quiet_collection(root).collections[collection].tasks["boom"]
    else:
        wrapped = quiet_collection(inner).tasks["boom"]
    with pytest.raises(Exit) as caught:
        wrapped.body(None)
    return caught.value


def test_a_task_error_is_one_line_and_its_exit_code(monkeypatch):
    monkeypatch.setenv("CORTEX_DEBUG", "1")  # a known failure is never a traceback
    done = run_wrapped(Broken("the engine is not running"))
    assert (done.message, done.code) == ("error: the engine is not running", 1)
    done = run_wrapped(SettingsError("MLX_PORT='x' is not a port number"), "mlx")
    assert (done.message, done.code) == ("[mlx] error: MLX_PORT='x' is not a port number", 2)


def test_anything_else_is_one_line_that_says_it_is_a_bug(monkeypatch):
    monkeypatch.delenv("CORTEX_DEBUG", raising=False)
    done = run_wrapped(KeyError("x"))
    assert done.code == 1 and "bug in the tasks" in done.message and "\n" not in done.message
