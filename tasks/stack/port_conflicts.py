"""Before `start`: the published ports that something other than this project holds."""
from __future__ import annotations

from typing import Sequence

from tasks.host.port_holders import address_free, describe_holders, port_holders
from tasks.stack.container import Container, live_published_ports
from tasks.stack.errors import ComposeError
from tasks.stack.project import Stack, configured_ports


def port_warnings(stack: Stack, services: Sequence[str],
                  containers: list[Container] | None = None) -> list[str]:
    """A sentence for each published port that something other than this project holds."""
    if containers is None:
        try:
            containers = stack.compose.ps()
        except ComposeError:
            containers = []
    ours = live_published_ports(containers)
    warnings = []
    for service, ip, port in configured_ports(stack, services):
        if port in ours or address_free(ip, port):
            continue
        holders = describe_holders(port_holders(port, [ip]))
        warnings.append(f"port {port} ({service}) on {ip} is already in use by {holders}: "
                        f"{service} will not be able to publish it (set its CORTEX_*_PORT in "
                        ".env.dev or the environment)")
    return warnings
