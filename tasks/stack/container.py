"""One container as `compose ps --format json` reports it: the `Container` every module reads.

Compose before 2.21 prints one JSON array; since 2.21 it prints one object per line; a line
may itself hold an array (as testcontainers-python's compose module also allows). Field names
vary a little between versions and engines (Name or Names, a list or a string; Service or
only the compose label), and Publishers may be null: `Container.from_ps` takes any of them,
and keeps nothing but what the stack reads. Unknown keys are ignored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from tasks.core.enums import OpenStrEnum
from tasks.stack.errors import ComposeError
from tasks.core.output_text import as_text

SERVICE_LABEL = "com.docker.compose.service"


class ContainerState(OpenStrEnum):
    """A container's State, lower-cased. A state this list lacks (an engine's own, such as
    Podman's "stopped") is kept as it was written, as a member made for it."""

    CREATED = "created"
    RUNNING = "running"
    RESTARTING = "restarting"
    PAUSED = "paused"
    EXITED = "exited"
    DEAD = "dead"
    REMOVING = "removing"
    NONE = ""  # the engine wrote no state
    UNKNOWN = "unknown"  # what status says for NONE
    ABSENT = "absent"  # a service without a container (status document only)


# Containers that hold their published ports.
LIVE_STATES = (ContainerState.RUNNING, ContainerState.RESTARTING, ContainerState.PAUSED)
# Containers that will not answer a probe without being started again.
ENDED_STATES = (ContainerState.EXITED, ContainerState.DEAD, ContainerState.REMOVING)


class ContainerHealth(OpenStrEnum):
    """The container's own health check; NONE when it has none (Compose writes "")."""

    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    STARTING = "starting"
    NONE = ""


@dataclass(frozen=True)
class Publisher:
    """One published port: Compose's URL, TargetPort, PublishedPort and Protocol."""

    url: str | None = None
    target_port: int | None = None
    published_port: int | None = None  # 0: exposed, not published
    protocol: str | None = None

    @classmethod
    def from_ps(cls, item: Mapping[str, Any]) -> "Publisher":
        def port(value: Any) -> int | None:
            return value if isinstance(value, int) and not isinstance(value, bool) else None
        return cls(url=item.get("URL"), target_port=port(item.get("TargetPort")),
                   published_port=port(item.get("PublishedPort")), protocol=item.get("Protocol"))

    def as_json(self) -> dict[str, Any]:
        """Compose's own keys, in its order (what `inv status --json` prints)."""
        pairs = (("URL", self.url), ("TargetPort", self.target_port),
                 ("PublishedPort", self.published_port), ("Protocol", self.protocol))
        return {key: value for key, value in pairs if value is not None}


@dataclass(frozen=True)
class Container:
    name: str = ""
    service: str = ""
    state: ContainerState = ContainerState.NONE
    health: ContainerHealth = ContainerHealth.NONE
    publishers: tuple[Publisher, ...] = ()
    project: str | None = None
    status: str | None = None  # Compose's words: "Up 10 seconds (healthy)"
    image: str | None = None
    exit_code: int | None = None
    id: str | None = None

    @classmethod
    def from_ps(cls, item: Mapping[str, Any]) -> "Container":
        """One object of `compose ps --format json`, whatever the Compose version wrote."""
        name = item.get("Name") or item.get("Names") or ""
        if isinstance(name, list):
            name = name[0] if name else ""
        labels = item.get("Labels")
        service = item.get("Service")
        if not service and isinstance(labels, dict):
            service = labels.get(SERVICE_LABEL)
        publishers = item.get("Publishers")
        exit_code = item.get("ExitCode")
        try:
            exit_code = None if exit_code is None else int(exit_code)
        except (TypeError, ValueError):
            exit_code = None

        return cls(
            name=str(name), service=str(service or ""),
            state=ContainerState(str(item.get("State") or "").lower()),
            health=ContainerHealth(str(item.get("Health") or "").lower()),
            publishers=tuple(Publisher.from_ps(p) for p in publishers
                             if isinstance(p, Mapping)) if isinstance(publishers, list) else (),
            project=item.get("Project"), status=item.get("Status"), image=item.get("Image"),
            exit_code=exit_code, id=item.get("ID"))

    @property
    def shown_name(self) -> str:
        """The name status shows: the container's name, else its ID."""
        return self.name or self.id or "?"

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    def published_ports(self) -> set[int]:
        """Host ports this container publishes (whatever its state)."""
        return {p.published_port for p in self.publishers if p.published_port}


def parse_ps_json(text: str | bytes) -> list[Container]:
    """Containers from `compose ps --format json`, in either of its formats (one JSON array,
    or one object per line). Empty output means no containers. ComposeError names the line
    that is not JSON, or an item that is not a container object."""
    text = as_text(text).strip()
    if not text:
        return []
    try:
        items = _items(json.loads(text))
    except json.JSONDecodeError:
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            try:
                items += _items(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ComposeError(f"`compose ps` printed line {number} that is not JSON: "
                                   f"{line[:120]!r} ({exc.msg})") from None
    for item in items:
        if not isinstance(item, dict):
            raise ComposeError(f"`compose ps` printed {type(item).__name__}, not a container object")
    return [Container.from_ps(item) for item in items]


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def live_published_ports(containers: Iterable[Container]) -> set[int]:
    """Host ports that live containers publish: what the engine itself reports (the same on
    Docker and Podman, no text to parse)."""
    ports: set[int] = set()
    for container in containers:
        if container.live:
            ports |= container.published_ports()
    return ports
