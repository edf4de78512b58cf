"""Who created a Compose project's containers: the checkout each came from (its labels).

`inv stop` and `inv clean` act only on what this checkout created; these read the labels
Compose records on every container through the engine's `ps` and `inspect`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from tasks.stack.engine import Engine
from tasks.stack.errors import ComposeError
from tasks.core.output_text import as_text, first_line

PROJECT_LABEL = "com.docker.compose.project"
WORKING_DIR_LABEL = "com.docker.compose.project.working_dir"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"
LIST_TIMEOUT = 60


@dataclass(frozen=True)
class ContainerOrigin:
    """One container of a Compose project and the checkout it was created from (its labels)."""

    name: str
    working_dir: str | None
    config_files: tuple[str, ...] = ()

    def where(self) -> str:
        """Words for its checkout, for a refusal sentence."""
        if not self.working_dir:
            return "an unknown directory (its container carries no working-directory label)"
        files = f" (compose files {', '.join(self.config_files)})" if self.config_files else ""
        return f"{self.working_dir}{files}"


def parse_inspect_origins(text: str | bytes) -> list[ContainerOrigin]:
    """Containers from `docker/podman inspect` JSON (an array of objects), with the labels
    Compose records: the project's working directory and its compose files (comma-joined,
    which is why `compose ps`'s one-string Labels cannot be split reliably)."""
    text = as_text(text).strip()
    if not text:
        return []
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ComposeError(f"`inspect` printed something that is not JSON ({exc.msg})") from None
    origins = []
    for item in items if isinstance(items, list) else [items]:
        if not isinstance(item, dict):
            raise ComposeError(f"`inspect` printed {type(item).__name__}, not a container object")
        labels = (item.get("Config") or {}).get("Labels") or {}
        files = labels.get(CONFIG_FILES_LABEL) or ""
        origins.append(ContainerOrigin(
            name=str(item.get("Name") or item.get("Id") or "?").lstrip("/"),
            working_dir=labels.get(WORKING_DIR_LABEL) or None,
            config_files=tuple(f for f in files.split(",") if f)))
    return origins


def same_dir(a: str | Path, b: str | Path) -> bool:
    return os.path.realpath(os.path.expanduser(str(a))) == \
        os.path.realpath(os.path.expanduser(str(b)))


def foreign_origins(origins: Iterable[ContainerOrigin],
                    project_dir: str | Path) -> list[ContainerOrigin]:
    """The containers not created from `project_dir` (another checkout, or unknown). Pure."""
    return [o for o in origins if not (o.working_dir and same_dir(o.working_dir, project_dir))]


def project_origins(engine: Engine, project: str,
                    env: Mapping[str, str] | None = None) -> list[ContainerOrigin]:
    """Every container (running or not) labelled as Compose project `project`, wherever it
    was created from. Raises ComposeError when the engine cannot list them."""
    env = dict(os.environ if env is None else env)
    listed = engine.run("ps", "--all", "--quiet", "--no-trunc", "--filter",
                        f"label={PROJECT_LABEL}={project}", env=env, timeout=LIST_TIMEOUT)
    if listed.ok:
        ids = listed.stdout.split()
        if not ids:
            return []
        inspected = engine.run("inspect", "--type", "container", *ids, env=env,
                               timeout=LIST_TIMEOUT)
    else:
        inspected = listed
    if inspected.timed_out:
        raise ComposeError(f"`{engine.kind}` did not list project {project}'s containers "
                           f"within {LIST_TIMEOUT} seconds")
    out = inspected.stdout
    # A container removed between `ps` and `inspect`: the others are still printed.
    if inspected.exit_code != 0 and not (inspected is not listed
                                         and out.strip().startswith("[")):
        detail = first_line(inspected.stderr) or f"exit {inspected.exit_code}"
        raise ComposeError(f"could not list project {project}'s containers: {detail}")
    return parse_inspect_origins(out)
