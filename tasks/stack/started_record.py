"""Which services `inv start` started, per Compose project: a small JSON file in the run folder.

Compose forgets a container that was removed by hand (`docker rm -f cortex-nats-1`): it is
then as absent as a service that was skipped for want of an image. This record tells the
two apart for `inv health`, `inv status` and `inv roundtrip`: a service `inv start` started
whose container is gone (or stopped) is a problem; one it never started is not. `inv stop` and
`inv clean` forget the record: what is left after them was stopped on purpose.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable

from tasks.core.settings import Settings


def record_path(settings: Settings) -> Path:
    # One file per project name: a project of another name has its own record.
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", settings.compose_project)
    return settings.run_dir / f"started-{safe}.json"


def started_services(settings: Settings) -> set[str]:
    """The services `inv start` started in this project since the last stop or clean (an
    unreadable record counts as none: it only ever adds problems, never hides one)."""
    try:
        data = json.loads(record_path(settings).read_text())
    except (OSError, ValueError):
        return set()
    services = data.get("services") if isinstance(data, dict) else None
    return {s for s in services if isinstance(s, str)} if isinstance(services, list) else set()


def _write(settings: Settings, services: set[str]) -> None:
    path = record_path(settings)
    if not services:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"project": settings.compose_project,
                               "services": sorted(services)}) + "\n")
    os.replace(tmp, path)  # readers never see half a file


def remember_started(settings: Settings, services: Iterable[str]) -> None:
    """Add `services` (started now) to the project's record."""
    _write(settings, started_services(settings) | set(services))


def forget_started(settings: Settings, services: Iterable[str] | None = None) -> None:
    """Drop `services` from the record; all of them when None (stop, clean)."""
    kept = set() if services is None else started_services(settings) - set(services)
    _write(settings, kept)
