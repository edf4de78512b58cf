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

from tasks.stack.compose import ComposeError, EngineError
from tasks.stack.readiness import PROBES, http_ok, probe_url, tcp_ok
from tasks.core.settings import ALL_SERVICES, Settings, http_url

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "status.schema.json"
CONTAINER_KEYS = ("Name", "State", "Service", "Health", "Status", "Image", "ExitCode", "ID",
                  "Project", "Publishers")


class StatusDocError(RuntimeError):
    """The document does not match its schema (a bug: it is not printed)."""


def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def validate(doc: dict) -> None:
    import jsonschema
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
        from tasks.host.mlx_process import service_status
        raw = dict(service_status(settings, cleanup=False))
    except Exception as exc:  # the lifecycle module missing or failing must not hide the rest
        ok, _ = http_ok(settings.mlx_url + "/health")
        raw = {"running": False, "pid": None, "url": settings.mlx_url, "responding": ok,
               "log": str(settings.mlx_log), "error": f"{type(exc).__name__}: {exc}"}
    raw["running"] = bool(raw.get("running"))
    raw["responding"] = bool(raw.get("responding"))
    pid = raw.get("pid")
    raw["pid"] = int(pid) if isinstance(pid, int) and pid > 0 else None
    raw["url"] = str(raw.get("url") or settings.mlx_url)
    raw["log"] = None if raw.get("log") is None else str(raw["log"])
    return json.loads(json.dumps(raw, default=str))


def _container(item: dict) -> dict:
    out = {k: item[k] for k in CONTAINER_KEYS if k in item and item[k] is not None}
    out["Name"] = str(item.get("Name") or item.get("ID") or "?")
    out["State"] = str(item.get("State") or "")
    out["Service"] = str(item.get("Service") or "")
    if "ExitCode" in out:
        try:
            out["ExitCode"] = int(out["ExitCode"])
        except (TypeError, ValueError):
            del out["ExitCode"]
    return out


def service_facts(name: str, container: dict | None, ports: dict[str, int]) -> dict:
    key = PROBES.get(name, (None, None))[0]
    port = ports.get(key) if key else None
    url = probe_url(name, ports) if name in PROBES else None
    if container is None:
        return {"running": False, "healthy": None, "ready": False, "state": "absent",
                "health": None, "container": None, "port": port, "probe": url,
                "detail": "no container"}
    state = container.get("State") or "unknown"
    running = state == "running"
    health = container.get("Health") or None
    healthy = None  # no health check, not running, or still "starting"
    if running and health in ("healthy", "unhealthy"):
        healthy = health == "healthy"
    ready, detail = False, container.get("Status") or state
    if running and url:
        ready, detail = http_ok(url, timeout=2.0)
    return {"running": running, "healthy": healthy, "ready": bool(ready), "state": state,
            "health": health, "container": container.get("Name"), "port": port, "probe": url,
            "detail": detail}


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
    from tasks.stack.lifecycle import StackError, open_stack
    ports = settings.ports()
    engine: dict[str, Any] = {"available": False, "kind": None, "version": None, "error": None}
    containers: list[dict] = []
    try:
        stack = open_stack(settings)
        engine.update(available=True, kind=stack.engine.kind, version=stack.engine.version)
        containers = [_container(c) for c in stack.compose.ps()]
    except (EngineError, ComposeError, StackError) as exc:
        engine["error"] = str(exc)
    mlx = mlx_status(settings)
    by_service = {}
    for container in containers:
        # a running container wins over an exited one of the same service
        current = by_service.get(container["Service"])
        if current is None or (current["State"] != "running" and container["State"] == "running"):
            by_service[container["Service"]] = container
    services = {name: service_facts(name, by_service.get(name), ports) for name in ALL_SERVICES}
    return {
        "schemaVersion": 1,
        "generatedAt": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "project": settings.compose_project,
        "ports": ports,
        "mlx": mlx,
        "containers": containers,
        "connectivity": connectivity(settings, ports, mlx),
        "engine": engine,
        "services": services,
    }


def status_json(settings: Settings) -> str:
    """The validated document as text: what `inv status --json` prints, and nothing else."""
    doc = build_status(settings)
    validate(doc)
    return json.dumps(doc, indent=2)
