"""Whose is a configured port: free, held by our own stack, or held by something else."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from tasks.host.port_holders import address_free, describe_holders, port_holders
from tasks.core.settings import Settings

LIVE_STATES = ("running", "restarting", "paused")


@dataclass(frozen=True)
class Ownership:
    state: str  # free, ours, foreign
    holder: str = ""


def published_ports(containers: Iterable[Mapping]) -> set[int]:
    """Host ports that live containers publish, from the Publishers of `compose ps --format json`
    (what the engine itself reports: the same on Docker and Podman, no text to parse)."""
    ports = set()
    for container in containers:
        if str(container.get("State", "")).lower() not in LIVE_STATES:
            continue
        for publisher in container.get("Publishers") or []:
            port = publisher.get("PublishedPort") if isinstance(publisher, Mapping) else None
            if isinstance(port, int) and port > 0:
                ports.add(port)
    return ports


def _our_containers(settings: Settings) -> list[dict]:
    """This compose project's containers, through the project's own Compose (whichever engine);
    none when the engine or Compose cannot say."""
    from tasks.stack.compose import ComposeError, EngineError
    from tasks.core.settings import SettingsError
    from tasks.stack.lifecycle import StackError, open_stack
    try:
        return open_stack(settings, check_daemon=False).compose.ps()
    except (EngineError, ComposeError, StackError, SettingsError, OSError):
        return []


def _our_service_pid(settings: Settings) -> int | None:
    from tasks.host.mlx_process import inspect

    state = inspect(settings, cleanup=False)
    return state.record.pid if state.running and state.record else None


def classify_port(settings: Settings, port: int) -> Ownership:
    holders = port_holders(port)
    if not holders:
        # No listener we can see; a bind test catches what we may not inspect.
        return Ownership("free") if address_free("127.0.0.1", port) else Ownership(
            "foreign", "a program we may not inspect")
    if port in published_ports(_our_containers(settings)):
        return Ownership("ours", f"a container of compose project {settings.compose_project}")
    our_pid = _our_service_pid(settings)
    if our_pid is not None and all(h.pid == our_pid for h in holders):
        return Ownership("ours", f"the mlx service, pid {our_pid}")
    return Ownership("foreign", describe_holders(holders))
