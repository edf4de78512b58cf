"""The status document of `inv status --json`, validated against schemas/status.schema.json.

A superset of the seed's shape (ports, mlx, containers, connectivity); additions: project,
engine, and services, where "running" (container state), "healthy" (the container's own health
check) and "ready" (the probe from the host answers) are kept as separate facts.
"""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import jsonschema

from tasks.core.errors import TaskError
from tasks.core.local_http import get_json, http_ok
from tasks.core.settings import ALL_SERVICES, Settings, http_url, with_path
from tasks.host.mlx_process import service_status
from tasks.host.reranker_info import served_reranker
from tasks.stack.container import Container, ContainerHealth, ContainerState
from tasks.stack.engine import EngineError
from tasks.stack.errors import ComposeError, StackError
from tasks.stack.origins import foreign_origins, project_origins
from tasks.stack.project import open_stack
from tasks.stack.prometheus_targets import scrape_targets
from tasks.stack.readiness import PROBES, probe_answer, probe_url, tcp_ok
from tasks.stack.started_record import started_services

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "status.schema.json"


class StatusDocError(TaskError, RuntimeError):
    """The document does not match its schema (a bug: it is not printed)."""


def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def validate(doc: dict) -> None:
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        raise StatusDocError(f"status document invalid at {where}: {first.message}"
                             + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))


def mlx_status(settings: Settings) -> dict[str, Any]:
    """The host service's status with the seed's keys guaranteed."""
    try:
        raw = dict(service_status(settings, cleanup=False))
    except Exception as exc:  # the lifecycle failing must not hide the rest
        ok, _ = http_ok(settings.mlx_endpoint("/health"))
        raw = {"running": False, "pid": None, "url": settings.mlx_url, "responding": ok,
               "log": str(settings.mlx_log), "error": f"{type(exc).__name__}: {exc}"}
    raw["running"] = bool(raw.get("running"))
    raw["responding"] = bool(raw.get("responding"))
    pid = raw.get("pid")
    raw["pid"] = int(pid) if isinstance(pid, int) and pid > 0 else None
    raw["url"] = str(raw.get("url") or settings.mlx_url)
    raw["log"] = None if raw.get("log") is None else str(raw["log"])
    raw["model"] = served_model(raw["url"]) if raw["responding"] and not raw.get("foreign") \
        else None
    # RERANK_MODEL as the running service names it (reranker_info.py), or its cosine default.
    raw["reranker"] = served_reranker(settings.mlx_endpoint("/info")) \
        if raw["responding"] and not raw.get("foreign") else None
    return json.loads(json.dumps(raw, default=str))


# What the status names of the served model: the service's /info "model_info" (issue 16).
MODEL_KEYS = ("name", "architecture", "pooling", "pooling_source", "prompts", "max_seq_length",
              "weights", "dtype", "quantization", "forward", "layers")


def served_model(url: str) -> dict[str, Any] | None:
    """The model the service at `url` (where it runs, as its status found it) serves, as its
    /info describes it (None: an older service, or no answer)."""
    status, body, _ = get_json(with_path(url, "/info"), timeout=2.0)
    info = body.get("model_info") if status == 200 and isinstance(body, dict) else None
    if not isinstance(info, dict):
        return None
    return {key: info.get(key) for key in MODEL_KEYS}


def container_doc(container: Container, other_where: str | None = None) -> dict:
    """A container as the document shows it: Compose's own keys (Name, State, Service, Health,
    then Status, Image, ExitCode, ID and Project where the engine gave them, and Publishers)."""
    out: dict[str, Any] = {"Name": container.shown_name,
                           "State": container.state, "Service": container.service,
                           "Health": container.health}
    optional = (("Status", container.status), ("Image", container.image),
                ("ExitCode", container.exit_code), ("ID", container.id),
                ("Project", container.project))
    out.update((key, value) for key, value in optional if value is not None)
    out["Publishers"] = [p.as_json() for p in container.publishers]
    if other_where is not None:  # created from another checkout: shown, never taken for ours
        out["OtherCheckout"] = other_where
    return out


def other_checkouts(stack) -> dict[str, str]:
    """Container name -> the other checkout it was created from, for the project's containers
    that this checkout did not create (a second checkout with the same project name)."""
    try:
        origins = project_origins(stack.engine, stack.compose.project, stack.env)
    except ComposeError:
        return {}
    return {o.name: o.where() for o in foreign_origins(origins, stack.compose.project_dir)}


def service_facts(name: str, container: Container | None, ports: dict[str, int],
                  other_where: str | None = None, started: bool = False) -> dict:
    """`started`: `inv start` started this service (tasks/stack/started_record.py), so a
    missing container is gone, not skipped."""
    key = PROBES.get(name, (None, None))[0]
    port = ports.get(key) if key else None
    url = probe_url(name, ports) if name in PROBES else None
    if container is None:
        detail = ("gone: inv start started it and its container no longer exists "
                  "(inv start creates it again)" if started else "no container")
        return {"running": False, "healthy": None, "ready": False, "state": ContainerState.ABSENT,
                "health": None, "container": None, "port": port, "probe": url,
                "detail": detail, "gone": started}
    state = container.state or ContainerState.UNKNOWN
    running = state == ContainerState.RUNNING
    health = container.health or None
    healthy = None  # no health check, not running, or still "starting"
    if running and health in (ContainerHealth.HEALTHY, ContainerHealth.UNHEALTHY):
        healthy = health == ContainerHealth.HEALTHY
    ready, detail = False, container.status or state
    if other_where is not None:
        detail = (f"its container {container.shown_name} was created from another checkout, "
                  f"{other_where}: not this stack's (set CORTEX_COMPOSE_PROJECT to a name of "
                  f"this checkout's own)")
    elif running and url:
        ready, detail = probe_answer(url, timeout=2.0)
    return {"running": running, "healthy": healthy, "ready": bool(ready), "state": state,
            "health": health, "container": container.shown_name, "port": port, "probe": url,
            "detail": detail}


def by_service(containers: list[Container],
               others: dict[str, str] | None = None) -> dict[str, Container]:
    """One container per service: this checkout's wins over another checkout's, then a
    running one over an exited one of the same service."""
    others = others or {}

    def rank(container: Container) -> tuple[bool, bool]:
        return (container.shown_name not in others, container.state == ContainerState.RUNNING)

    chosen: dict[str, Container] = {}
    for container in containers:
        current = chosen.get(container.service)
        if current is None or rank(container) > rank(current):
            chosen[container.service] = container
    return chosen


def connectivity(settings: Settings, ports: dict[str, int], mlx: dict) -> dict[str, bool]:
    def answers(url: str, any_status: bool = False) -> bool:
        ok, detail = http_ok(url, timeout=2.0)
        return ok or (any_status and detail.startswith("HTTP ") and not detail.startswith("HTTP 5"))
    def local(key: str, path: str) -> str:
        return http_url("127.0.0.1", ports[key], path)
    return {
        "mlx": bool(mlx.get("responding")),
        "api": answers(local("api", "/health")),
        "modelGateway": answers(local("modelGateway", "/health")),
        "webui": answers(local("webui", "/"), any_status=True),
        "nats": tcp_ok(ports["nats"]),
        "mcpRegistry": answers(local("mcpRegistry", "/health")),
    }


def build_status(settings: Settings) -> dict:
    """Collect everything; never raises for a missing engine (it becomes engine.error)."""
    ports = settings.ports()
    engine: dict[str, Any] = {"available": False, "kind": None, "version": None,
                              "compose": None, "error": None}
    containers: list[Container] = []
    others: dict[str, str] = {}
    try:
        stack = open_stack(settings)
        # version: the engine's own (dockerd 26.1.5), not its Compose plugin's (2.26.1).
        engine.update(available=True, kind=stack.engine.kind,
                      version=stack.engine.server_version or None,
                      compose=stack.engine.version or None)
        containers = stack.compose.ps()
        others = other_checkouts(stack) if containers else {}
    except (EngineError, ComposeError, StackError) as exc:
        engine["error"] = str(exc)
    mlx = mlx_status(settings)
    chosen = by_service(containers, others)
    started = started_services(settings) if engine["available"] else set()
    services = {}
    for name in ALL_SERVICES:
        container = chosen.get(name)
        services[name] = service_facts(name, container, ports,
                                       others.get(container.shown_name) if container else None,
                                       started=name in started)
    if services.get("prometheus", {}).get("ready"):
        services["prometheus"]["targets"] = scrape_targets(ports["prometheus"])
    return {
        "schemaVersion": 1,
        "generatedAt": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "project": settings.compose_project,
        "ports": ports,
        "mlx": mlx,
        "containers": [container_doc(c, others.get(c.shown_name)) for c in containers],
        "connectivity": connectivity(settings, ports, mlx),
        "engine": engine,
        "services": services,
    }


def status_json(settings: Settings) -> str:
    """The validated document as text: what `inv status --json` prints, and nothing else."""
    doc = build_status(settings)
    validate(doc)
    return json.dumps(doc, indent=2)
