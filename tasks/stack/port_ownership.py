"""Whose is a configured port: free, held by our own stack, or held by something else."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from tasks.core.enums import StrEnum
from tasks.core.settings import Settings, SettingsError
from tasks.host.service_state import inspect
from tasks.host.port_holders import address_free, describe_holders, port_holders
from tasks.stack.container import Container, live_published_ports
from tasks.stack.engine import EngineError
from tasks.stack.errors import ComposeError, StackError
from tasks.stack.project import open_stack


class PortOwner(StrEnum):
    FREE = "free"
    OURS = "ours"
    FOREIGN = "foreign"


@dataclass(frozen=True)
class Ownership:
    state: PortOwner
    holder: str = ""


def published_ports(containers: Iterable[Container]) -> set[int]:
    """Host ports that live containers publish, from the Publishers of `compose ps --format json`
    (what the engine itself reports: the same on Docker and Podman, no text to parse)."""
    return live_published_ports(containers)


def our_containers(settings: Settings) -> list[Container]:
    """This compose project's containers, through the project's own Compose (whichever engine);
    none when the engine or Compose cannot say."""
    try:
        return open_stack(settings, check_daemon=False).compose.ps()
    except (EngineError, ComposeError, StackError, SettingsError, OSError):
        return []


def our_service_pid(settings: Settings) -> int | None:
    state = inspect(settings, cleanup=False)
    return state.record.pid if state.running and state.record else None


def classify_port(settings: Settings, port: int) -> Ownership:
    holders = port_holders(port)
    if not holders:
        # No listener we can see; a bind test catches what we may not inspect.
        return Ownership(PortOwner.FREE) if address_free("127.0.0.1", port) else Ownership(
            PortOwner.FOREIGN, "a program we may not inspect")
    if port in published_ports(our_containers(settings)):
        return Ownership(PortOwner.OURS, f"a container of compose project {settings.compose_project}")
    our_pid = our_service_pid(settings)
    if our_pid is not None and all(h.pid == our_pid for h in holders):
        return Ownership(PortOwner.OURS, f"the mlx service, pid {our_pid}")
    return Ownership(PortOwner.FOREIGN, describe_holders(holders))
