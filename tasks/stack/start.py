"""`inv start`: the host service, then the containers, then wait for every started service's
probe. Progress goes to `say` (stderr), never to stdout."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

from tasks.core.flags import MlxFlags
from tasks.core.say import Say, say_as
from tasks.core.settings import Settings, positive_seconds
from tasks.host import mlx_process
from tasks.host.service_settings import check_service_settings
from tasks.stack.container import ContainerState
from tasks.stack.errors import ComposeError, StackError
from tasks.stack.image_resolution import resolve_images, warn_skipped
from tasks.stack.port_conflicts import port_warnings
from tasks.stack.otlp_endpoints import otlp_environment, running_services
from tasks.stack.project import Stack, make_stack, open_stack
from tasks.stack.readiness import PROBES, NotReady, wait_ready
from tasks.stack.services import BUILT_SERVICES, parse_services

DEFAULT_READY_TIMEOUT = 120.0
STATE_MAX_AGE = 1.0  # seconds a `compose ps` answer is reused while waiting


@dataclass
class StartResult:
    services: list[str]
    skipped: dict[str, str]
    ready_after: dict[str, float]
    mlx: dict | None
    warnings: list[str]
    offline: bool


def ready_timeout(settings: Settings, override: float | None = None) -> float:
    if override is not None:
        return override
    return positive_seconds("CORTEX_READY_TIMEOUT",
                            settings.get("CORTEX_READY_TIMEOUT", str(DEFAULT_READY_TIMEOUT)))


def state_reader(stack: Stack) -> Callable[[str], ContainerState | None]:
    """service -> its container's state, from one `compose ps` per STATE_MAX_AGE at most."""
    cache: dict[str, object] = {"at": 0.0, "states": {}}

    def state_of(service: str) -> ContainerState | None:
        if time.monotonic() - cache["at"] > STATE_MAX_AGE:
            try:
                cache["states"] = {c.service: c.state for c in stack.compose.ps()}
            except ComposeError:
                cache["states"] = {}
            cache["at"] = time.monotonic()
        return cache["states"].get(service)  # type: ignore[union-attr]
    return state_of


def service_log_tail(stack: Stack, service: str, lines: int = 20) -> str:
    try:
        return stack.compose.logs([service], tail=lines).rstrip()
    except ComposeError as exc:
        return f"(no logs: {exc})"


def host_start_kwargs(options: MlxFlags) -> dict:
    """mlx_process.start_service's arguments for `options` (start and every watch restart)."""
    return {"venv_path": options.venv, "wait": options.wait, "timeout": options.timeout,
            "extra_args": tuple(options.server_args)}


def start_host_service(settings: Settings, say: Say, fast: bool = False, install: bool = True,
                       options: MlxFlags = MlxFlags()) -> dict:
    """The host service started (or found healthy with `fast`) with `options`: the venv, the
    wait and timeout, and the server's own arguments."""
    if fast:
        current = mlx_process.service_status(settings)
        # Healthy, not merely answering: a 503 (loading, broken) or a foreign server on the
        # port must not pass for a running service.
        if current.get("healthy"):
            say(f"--fast: the host service is already healthy at {current.get('url')}; "
                "not installing or restarting it")
            return current
    try:
        return mlx_process.start_service(settings, install=install, say=say,
                                         **host_start_kwargs(options))
    except mlx_process.ServiceError as exc:
        raise StackError(f"The host embedding service did not start: {exc}") from None


def start(settings: Settings, services: Sequence[str] | None = None, *, fast: bool = False,
          install: bool = True, mlx: MlxFlags = MlxFlags(), with_mlx: bool = True,
          timeout: float | None = None, say: Say = say_as("stack")) -> StartResult:
    """Host service, then containers, then wait for every started service's probe."""
    selected = parse_services(services)
    wait_for = ready_timeout(settings, timeout)
    settings.ports()  # every port, before Compose is asked anything
    if with_mlx:
        check_service_settings(settings)
    stack = open_stack(settings)
    stack, runnable, skipped = resolve_images(stack, selected, say)
    warn_skipped(skipped, say, "skipping")
    warnings = port_warnings(stack, runnable)
    for line in warnings:
        say(f"warning: {line}")
    # Tempo and Loki running: the host service and the containers export to them over OTLP.
    otlp = otlp_environment(settings, set(runnable) | running_services(stack))
    if otlp:
        settings = settings.with_env(**otlp)
        stack = make_stack(settings, stack.engine, stack.offline, stack.auto_pull)
    host = None
    if with_mlx:
        host = start_host_service(settings, say, fast=fast, install=install, options=mlx)
    if not runnable:
        return StartResult([], skipped, {}, host, warnings, stack.offline)
    say(f"starting {', '.join(runnable)} (project {stack.compose.project})")
    try:
        stack.compose.up(runnable, build=any(s in BUILT_SERVICES for s in runnable))
    except ComposeError as exc:
        raise StackError(f"Compose could not start {', '.join(runnable)}: {exc}") from None
    say(f"waiting up to {wait_for:g}s for {', '.join(s for s in runnable if s in PROBES)}")
    try:
        took = wait_ready(runnable, settings.ports(), wait_for, state_of=state_reader(stack),
                          say=say)
    except NotReady as exc:
        logs = service_log_tail(stack, exc.service)
        raise StackError(f"{exc}.\nLast log lines of {exc.service}:\n{logs or '(none)'}") from None
    return StartResult(runnable, skipped, took, host, warnings, stack.offline)
