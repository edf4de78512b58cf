"""Which compose services a task acts on: `--services a,b`, repeated flags and groups."""
from __future__ import annotations

from typing import Iterable

from tasks.core.settings import ALL_SERVICES, APP_SERVICES, CORE_SERVICES
from tasks.stack.errors import StackError

GROUPS = {"core": CORE_SERVICES, "app": APP_SERVICES, "all": ALL_SERVICES}
# The services built from compose/<name>/ (the others run a pulled or locally built image).
BUILT_SERVICES = ("model-gateway", "mcp-registry")


def parse_services(values: str | Iterable[str] | None) -> list[str]:
    """`--services a,b` and repeated flags, groups (core, app, all) expanded, order kept.

    Empty means every service. Unknown names raise StackError listing the valid ones.
    """
    if values is None:
        return list(ALL_SERVICES)
    if isinstance(values, str):
        values = [values]
    names: list[str] = []
    for value in values:
        names += [part.strip() for part in str(value).split(",") if part.strip()]
    if not names:
        return list(ALL_SERVICES)
    unknown = [n for n in names if n not in ALL_SERVICES and n not in GROUPS]
    if unknown:
        raise StackError(
            f"Unknown service{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
            f"valid services are {', '.join(ALL_SERVICES)} (groups: core, app, all).")
    selected: list[str] = []
    for name in names:
        for service in GROUPS.get(name, (name,)):
            if service not in selected:
                selected.append(service)
    return selected
