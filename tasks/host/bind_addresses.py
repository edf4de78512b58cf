"""Where the host service listens: MLX_HOST, plus (on Linux) the Docker bridge's gateway.

Containers reach the host as `host.docker.internal`, which on Linux resolves to the bridge's
gateway address, not to 127.0.0.1. Listening there too makes the service reachable from
containers without listening on 0.0.0.0 (reachable from the network). The address is found,
never assumed: the `docker0` interface's IPv4 address, else the gateway that
`docker network inspect bridge` reports, kept only when it is an address of this host.
No Docker: nothing is added. MLX_BIND_DOCKER_BRIDGE=0 turns the addition off.
"""
from __future__ import annotations

import shutil
import sys
from typing import Mapping

import psutil

from tasks.core import runner
from tasks.host.port_holders import WILDCARDS

BRIDGE_INTERFACE = "docker0"
OFF_VALUES = ("0", "false", "no", "off")


def host_list(value: str | None) -> list[str]:
    """MLX_HOST is a comma-separated list of addresses."""
    return [h.strip() for h in (value or "").split(",") if h.strip()] or ["127.0.0.1"]


def local_ipv4_addresses() -> dict[str, list[str]]:
    """Interface name -> its IPv4 addresses."""
    import socket

    return {name: [a.address for a in addrs if a.family == socket.AF_INET]
            for name, addrs in psutil.net_if_addrs().items()}


def _docker_cli_gateway(timeout: float = 3.0) -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    result = runner.run([docker, "network", "inspect", "bridge",
                         "--format", "{{range .IPAM.Config}}{{.Gateway}} {{end}}"],
                        timeout=timeout)
    if not result.ok:
        return None
    for candidate in result.stdout.split():
        if ":" not in candidate:  # IPv4 gateway
            return candidate
    return None


def docker_bridge_gateway(interfaces: Mapping[str, list[str]] | None = None,
                          cli=_docker_cli_gateway) -> str | None:
    """The Docker bridge's gateway address when it is an address of this host, else None."""
    interfaces = local_ipv4_addresses() if interfaces is None else interfaces
    on_bridge = interfaces.get(BRIDGE_INTERFACE) or []
    if on_bridge:
        return on_bridge[0]
    gateway = cli()
    if gateway and any(gateway in addrs for addrs in interfaces.values()):
        return gateway
    return None


def compute_bind_addresses(mlx_host: str | None, *, platform: str = sys.platform,
                           bridge: bool = True, gateway_finder=docker_bridge_gateway) -> list[str]:
    hosts = host_list(mlx_host)
    if any(h in WILDCARDS for h in hosts):
        return hosts  # the user asked for every address; nothing to add
    if bridge and platform.startswith("linux"):
        gateway = gateway_finder()
        if gateway and gateway not in hosts:
            hosts.append(gateway)
    return hosts


def bind_addresses(settings) -> list[str]:
    """settings.mlx_host (a list) plus, on Linux, the Docker bridge gateway when there is one."""
    flag = (settings.get("MLX_BIND_DOCKER_BRIDGE", "auto") or "auto").strip().lower()
    return compute_bind_addresses(settings.mlx_host, bridge=flag not in OFF_VALUES)
