"""The root invoke namespace: each module of tasks/cli contributes its tasks or a collection,
all wrapped by tasks/cli/task_edge.py (one way to fail). The seed's `inv logs SERVICE`
(seed_spellings.py) and a closed reader outside tasks (closed_reader.py) are tasks.py's to
switch on."""
from __future__ import annotations

from invoke import Collection

from tasks.cli import bench_tasks
from tasks.cli import check_tasks
from tasks.cli import mlx_tasks
from tasks.cli import stack_tasks
from tasks.cli import stress_tasks
from tasks.cli import test_tasks
from tasks.cli.task_edge import quiet_collection


def build_namespace() -> Collection:
    """Each task module exports its Collection (`ns`; invoke's from_module collects the tasks
    of a module without one): the stack's, the checks', bench and stress at the root, mlx and
    test as collections of their own."""
    ns = Collection()
    for module in (stack_tasks, check_tasks, bench_tasks, stress_tasks):
        for name, t in Collection.from_module(module).tasks.items():
            ns.add_task(t, name=name)
    ns.add_collection(mlx_tasks.ns, name="mlx")
    ns.add_collection(test_tasks.ns, name="test")
    return quiet_collection(ns)
