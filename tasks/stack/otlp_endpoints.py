"""Where `inv start` points OTLP: the stack's Tempo (traces) and Loki (logs), when they run.

For the host service, the standard variables (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and
..._LOGS_ENDPOINT) at the ports Tempo and Loki publish on 127.0.0.1; for the containers,
CORTEX_CONTAINERS_OTLP_*_ENDPOINT, which compose/docker-compose.yml hands them as those same
standard variables, at the services' names on the compose network. A service that does not
run gets nothing (no endpoint: that signal is not exported), and OTLP settings the user made
are kept as they are.
"""
from __future__ import annotations

from typing import Iterable

from tasks.core.settings import Settings, http_url
from tasks.stack.container import ContainerState
from tasks.stack.errors import ComposeError
from tasks.stack.project import Stack

# The user's own collector for every signal: kept (OTEL_SDK_DISABLED=true needs nothing
# here: the service reads it and exports nothing, whatever the endpoints).
USER_OTLP = ("OTEL_EXPORTER_OTLP_ENDPOINT",)


def otlp_environment(settings: Settings, running: Iterable[str]) -> dict[str, str]:
    """The variables to add for the services in `running` (started now or already up)."""
    running = set(running)
    ports = settings.ports()
    tempo_otlp = settings.get("CORTEX_TEMPO_OTLP_HTTP_PORT", "4318")
    env: dict[str, str] = {}
    user_set = any(settings.get(name) for name in USER_OTLP)
    if "tempo" in running:
        env["CORTEX_CONTAINERS_OTLP_TRACES_ENDPOINT"] = "http://tempo:4318/v1/traces"
        if not user_set and not settings.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = http_url(
                "127.0.0.1", int(tempo_otlp), "/v1/traces")
    if "loki" in running:
        env["CORTEX_CONTAINERS_OTLP_LOGS_ENDPOINT"] = "http://loki:3100/otlp/v1/logs"
        if not user_set and not settings.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"):
            env["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"] = http_url(
                "127.0.0.1", ports["loki"], "/otlp/v1/logs")
    return {k: v for k, v in env.items() if not settings.get(k)}


def grafana_url(settings: Settings) -> str:
    """Where a developer opens Grafana: the embedding service's dashboard."""
    return http_url("127.0.0.1", settings.ports()["grafana"], "/d/cortex-embeddings")


def running_services(stack: Stack) -> set[str]:
    """The stack's services whose container runs now (none when Compose cannot tell)."""
    try:
        return {c.service for c in stack.compose.ps() if c.state == ContainerState.RUNNING}
    except ComposeError:
        return set()
