"""Whose is a configured port: free, held by our own stack, or held by something else."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass

from tasks.port_holders import address_free, describe_holders, port_holders
from tasks.settings import Settings


@dataclass(frozen=True)
class Ownership:
    state: str  # free, ours, foreign
    holder: str = ""


def _our_published_ports(settings: Settings) -> set[int]:
    """Host ports published by this compose project's containers (docker-proxy holds them)."""
    try:
        done = subprocess.run(
            ["docker", "ps", "--filter", f"label=com.docker.compose.project={settings.compose_project}",
             "--format", "{{.Ports}}"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    ports = set()
    for mapping in done.stdout.replace("\n", ",").split(","):
        # e.g. "127.0.0.1:4222->4222/tcp"
        host_side = mapping.split("->", 1)[0].strip()
        if "->" in mapping and host_side.rsplit(":", 1)[-1].isdigit():
            ports.add(int(host_side.rsplit(":", 1)[-1]))
    return ports


def _our_service_pid(settings: Settings) -> int | None:
    from tasks.mlx_process import inspect

    state = inspect(settings, cleanup=False)
    return state.record.pid if state.running and state.record else None


def classify_port(settings: Settings, port: int) -> Ownership:
    holders = port_holders(port)
    if not holders:
        # No listener we can see; a bind test catches what we may not inspect.
        return Ownership("free") if address_free("127.0.0.1", port) else Ownership(
            "foreign", "a program we may not inspect")
    if port in _our_published_ports(settings):
        return Ownership("ours", f"a container of compose project {settings.compose_project}")
    our_pid = _our_service_pid(settings)
    if our_pid is not None and all(h.pid == our_pid for h in holders):
        return Ownership("ours", f"the mlx service, pid {our_pid}")
    return Ownership("foreign", describe_holders(holders))
