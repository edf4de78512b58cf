"""The root invoke namespace: each module of tasks/ contributes its tasks or a collection."""
from invoke import Collection

from tasks import bench_tasks, check_tasks, mlx_tasks, stack_tasks, test_tasks


def build_namespace() -> Collection:
    ns = Collection()
    for module in (stack_tasks, check_tasks, bench_tasks):
        for t in module.TASKS:
            ns.add_task(t)
    ns.add_collection(mlx_tasks.ns, name="mlx")
    ns.add_collection(test_tasks.ns, name="test")
    return ns
