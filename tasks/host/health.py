"""Asking the host service how it is: /health, whether our key opens its API, and waiting
until it is ready. Every call goes through tasks.core.local_http (loopback, no proxies)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from tasks.core import local_http
from tasks.core.errors import TaskError
from tasks.core.enums import StrEnum
from tasks.core.polling import poll_until
from tasks.core.say import Say
from tasks.core.settings import with_path
from tasks.host.port_holders import describe_holders, port_holders

PROGRESS_EVERY = 3.0      # seconds between "still waiting" lines
HEALTH_POLL = 0.25


class AuthCheck(StrEnum):
    """Whether our calls get through the service's API key check (the status's `auth`)."""

    OPEN = "open"          # it wants no key
    MISSING = "missing"    # it wants one and MLX_API_KEY is not set
    ACCEPTED = "accepted"  # it wants one and ours opens it
    REFUSED = "refused"    # it wants one and ours is not it


class DiedWhileWaiting(Exception):
    """The process exited before /health said ok; carries the last description."""


class HealthError(TaskError):
    """/health said "error" (the model failed to load, the worker died): waiting cannot help."""


def probe_health(url: str, timeout: float = 2.0) -> tuple[int | None, dict | None, str]:
    """GET url/health: (HTTP status or None, JSON body or None, a short description)."""
    status, body, detail = local_http.get_json(with_path(url, "/health"), timeout=timeout)
    if isinstance(body, dict) and body.get("status"):
        detail += f" {body['status']}"
    return status, body if isinstance(body, dict) else None, detail


def probe_auth(url: str, headers: dict[str, str], timeout: float = 2.0) -> AuthCheck | None:
    """Whether our calls get through the service's API key check; None when it does not say.
    Costs a GET of the open /info, plus, with a key, one empty POST the key check answers
    before any work (anything but 401 means the key passed)."""
    status, info, _ = local_http.get_json(with_path(url, "/info"), timeout=timeout)
    answered = status is not None and 200 <= status < 300 and isinstance(info, dict)
    wants = info.get("auth") if answered else None
    if wants not in ("none", "bearer"):
        return None
    if wants == "none":
        return AuthCheck.OPEN
    if not headers:
        return AuthCheck.MISSING
    try:
        resp = local_http.post(with_path(url, "/v1/embeddings"), data=b'{"input": []}',
                               headers={"Content-Type": "application/json", **headers},
                               timeout=timeout)
    except local_http.RequestException:
        return None
    return AuthCheck.REFUSED if resp.status_code == 401 else AuthCheck.ACCEPTED


def is_healthy(status: int | None, body: dict | None) -> bool:
    return (status == 200 and isinstance(body, dict) and body.get("status") == "ok"
            and speaks_as_the_service(body))


def speaks_as_the_service(body: object) -> bool:
    """Whether a /health body is the embedding service's own: it always names its status,
    model and dimensions; a gateway's (it has an upstream) or another program's is not."""
    return (isinstance(body, dict) and all(key in body for key in ("status", "model", "dimensions"))
            and "upstream" not in body)


def foreign_listener(port: int, status: int | None, body: object,
                     bind: list[str] | None = None) -> str | None:
    """When something answers on the service's port but is not the embedding service: one
    sentence naming it (pid and command, where this user may see them); else None."""
    if status is None or speaks_as_the_service(body):
        return None
    said = "JSON that is not its /health" if isinstance(body, dict) else "no JSON health document"
    return (f"port {port} answers (HTTP {status}, {said}) but is not the embedding service: "
            f"{describe_holders(port_holders(port, bind))}; stop that program or set MLX_PORT "
            f"to another port")


def health_error(body: dict | None) -> str | None:
    """The service's own reason when /health reports status "error", else None."""
    if isinstance(body, dict) and body.get("status") == "error":
        return str(body.get("error") or "the service reports an error without a reason")
    return None


def wait_for_health(url: str, timeout: float, alive: Callable[[], bool], say: Say,
                    progress_every: float = PROGRESS_EVERY) -> dict:
    """Poll /health until healthy (returns the body), the process dies (DiedWhileWaiting),
    /health says "error" (HealthError carrying its reason) or the timeout passes
    (TimeoutError carrying the last description). Progress goes to `say`."""
    say(f"waiting for {url}/health (up to {timeout:g}s)")
    detail = "not polled yet"
    next_progress = progress_every

    def healthy_body() -> dict | None:
        nonlocal detail
        if not alive():
            raise DiedWhileWaiting(detail)
        status, body, detail = probe_health(url, timeout=min(2.0, max(timeout, 0.1)))
        if is_healthy(status, body):
            return body
        if health_error(body) is not None:
            raise HealthError(health_error(body))
        if not alive():
            raise DiedWhileWaiting(detail)
        return None

    def progress(elapsed: float) -> None:
        nonlocal next_progress
        if elapsed >= next_progress:
            say(f"  ... {elapsed:.0f}s, still waiting ({detail})")
            next_progress = elapsed + progress_every

    body = poll_until(healthy_body, timeout, interval=HEALTH_POLL, on_wait=progress)
    if body is None:
        raise TimeoutError(detail)
    return body


def ready_line(url: str, pid: int, body: dict, started: float, log: Path) -> str:
    """The one line that says the service is ready (`started`: time.monotonic() at spawn)."""
    model = body.get("model", "?")
    dims = body.get("dimensions", "?")
    return (f"ready at {url} (pid {pid}, model {model}, {dims} dimensions) "
            f"after {time.monotonic() - started:.1f}s; log: {log}")
