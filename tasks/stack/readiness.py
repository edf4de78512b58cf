"""Readiness probes, run from the host against the published ports (127.0.0.1 only).

A container that runs is not yet a service that answers: `start` waits on these probes, and
`status`/`health` report them as "ready", apart from "running" and the container's own
"healthy".
"""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from tasks.core.errors import TaskError
from tasks.core import local_http
from tasks.core.polling import poll_until
from tasks.core.say import Say, quiet
from tasks.core.settings import http_url
from tasks.stack.container import ENDED_STATES, ContainerState

PROGRESS_EVERY = 5.0  # seconds between "waiting for ..." lines

# service -> (key in Settings.ports(), path). 2xx is ready.
PROBES: dict[str, tuple[str, str]] = {
    "nats": ("natsMonitor", "/healthz"),
    "model-gateway": ("modelGateway", "/health"),
    "mcp-registry": ("mcpRegistry", "/health"),
    "loki": ("loki", "/ready"),
    "tempo": ("tempo", "/ready"),
    "grafana": ("grafana", "/api/health"),
    "prometheus": ("prometheus", "/-/ready"),
}


@dataclass
class ProbeResult:
    service: str
    url: str
    ready: bool
    detail: str


def probe_url(service: str, ports: Mapping[str, int], host: str = "127.0.0.1") -> str:
    key, path = PROBES[service]
    return http_url(host, ports[key], path)


def tcp_ok(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# A health document whose "status" says one of these is not ready, whatever its HTTP status:
# the gateway answered 200 "degraded" while its upstream was not the embedding service.
NOT_READY_WORDS = ("degraded", "error", "loading", "starting", "unhealthy", "down")


def upstream_words(upstream: object) -> str:
    """Which upstream a service targets and why it is not usable, from its health document."""
    if not isinstance(upstream, dict):
        return ""
    url = upstream.get("url") or "?"
    why = (upstream.get("reason") or upstream.get("error")
           or ("it answers, status " + str(upstream.get("status"))
               if upstream.get("reachable") else "it does not answer"))
    return f"upstream {url}: {why}"


def ready_from_answer(status: int | None, body: object, detail: str) -> tuple[bool, str]:
    """(ready, detail) of one probe answer: 2xx, and a health document (if any) that does not
    say it is degraded; the detail names the upstream and the reason when there is one."""
    word = body.get("status") if isinstance(body, dict) else None
    if isinstance(word, str) and word.lower() in NOT_READY_WORDS:
        upstream = upstream_words(body.get("upstream"))
        return False, f"{word}" + (f" ({upstream})" if upstream else f" ({detail})")
    return status is not None and 200 <= status < 300, detail


def probe_answer(url: str, timeout: float = 2.0) -> tuple[bool, str]:
    """GET url: (ready, what it said in a few words)."""
    try:
        resp = local_http.get(url, timeout=timeout)
    except local_http.ConnectionError:
        return False, "connection refused"
    except local_http.Timeout:
        return False, f"no answer within {timeout:g}s"
    except local_http.RequestException as exc:
        return False, type(exc).__name__
    try:
        body = resp.json()
    except ValueError:
        body = None
    text = resp.text.strip().replace("\n", " ")
    return ready_from_answer(resp.status_code, body, f"HTTP {resp.status_code} {text[:120]}".strip())


def probe(service: str, ports: Mapping[str, int], timeout: float = 2.0) -> ProbeResult:
    url = probe_url(service, ports)
    ok, detail = probe_answer(url, timeout)
    return ProbeResult(service, url, ok, detail)


class NotReady(TaskError, RuntimeError):
    """A service did not become ready; names it and why."""

    def __init__(self, service: str, reason: str):
        super().__init__(f"{service} did not become ready: {reason}")
        self.service = service
        self.reason = reason


def wait_ready(services: Iterable[str], ports: Mapping[str, int], timeout: float,
               state_of: Callable[[str], ContainerState | None] | None = None,
               say: Say = quiet, interval: float = 0.5) -> dict[str, float]:
    """Poll every service's probe until all answer; seconds each took. Raises NotReady.

    state_of(service) gives the container's state; a container that exited or keeps
    restarting fails at once instead of after the whole timeout.
    """
    pending = [s for s in services if s in PROBES]
    start = time.monotonic()
    took: dict[str, float] = {}
    last: dict[str, str] = {}
    last_report = 0.0

    def all_ready() -> bool:
        """One round: probe each pending service once; True when none is left."""
        for service in list(pending):
            result = probe(service, ports)
            last[service] = result.detail
            if result.ready:
                took[service] = time.monotonic() - start
                pending.remove(service)
                say(f"{service} ready ({result.url}, {took[service]:.1f}s)")
                continue
            if state_of is not None:
                state = state_of(service)
                if state in ENDED_STATES:
                    raise NotReady(service, f"its container is {state} (probe {result.url}: "
                                            f"{result.detail})")
        return not pending

    def report(elapsed: float) -> None:
        nonlocal last_report
        if elapsed - last_report >= PROGRESS_EVERY:
            last_report = elapsed
            say(f"waiting for {', '.join(pending)} ({elapsed:.0f}s of {timeout:g}s)")

    if not poll_until(all_ready, timeout, interval=interval, on_wait=report):
        service = pending[0]
        raise NotReady(service, f"{probe_url(service, ports)} gave {last[service]} for "
                                f"{timeout:g} seconds")
    return took
