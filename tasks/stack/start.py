"""`inv start`: the host service, then the containers, then wait for every started service's
probe. Progress goes to `say` (stderr), never to stdout."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

from tasks.core.flags import MlxFlags
from tasks.core.say import Say, say_as
from tasks.core.settings import Settings, SettingsError, positive_seconds
from tasks.host import mlx_process
from tasks.host.model_asked import other_model_sentence
from tasks.host.running_service import running_port
from tasks.host.service_settings import check_service_settings
from tasks.stack.container import ContainerState
from tasks.stack.errors import ComposeError, StackError
from tasks.stack.image_resolution import resolve_images, warn_skipped
from tasks.stack.port_conflicts import port_warnings
from tasks.stack.prometheus_targets import NOT_SCRAPED, wait_first_scrape
from tasks.stack.otlp_endpoints import otlp_environment, running_services
from tasks.stack.project import Stack, make_stack, open_stack
from tasks.stack.readiness import PROBES, NotReady, wait_ready
from tasks.stack.services import BUILT_SERVICES, parse_services
from tasks.stack.started_record import remember_started
from tasks.stack.stop import refuse_foreign

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
            "extra_args": tuple(options.server_args), "create_venv": options.create}


def start_host_service(settings: Settings, say: Say, fast: bool = False, install: bool = True,
                       options: MlxFlags = MlxFlags()) -> dict:
    """The host service started (or found healthy with `fast`) with `options`: the venv, the
    wait and timeout, and the server's own arguments."""
    if fast:
        current = mlx_process.service_status(settings)
        # Healthy, not merely answering: a 503 (loading, broken), a foreign server on the
        # port, or another checkout's service must not pass for this checkout's.
        if current.get("healthy") and not current.get("other_checkout"):
            other = other_model_sentence(settings, current["url"], current.get("pid"))
            if other:
                raise StackError(f"The host embedding service was not started: {other}")
            say(f"--fast: the host service is already healthy at {current.get('url')}; "
                "not installing or restarting it")
            return current
    try:
        return mlx_process.start_service(settings, install=install, say=say,
                                         **host_start_kwargs(options))
    except SettingsError:
        raise  # a setting it could not use (MLX_LOCK_TIMEOUT): exit 2, said as it is
    except mlx_process.ServiceError as exc:
        raise StackError(f"The host embedding service did not start: {exc}") from None


def aimed_at_the_running_service(stack: Stack, host: dict | None, say: Say) -> Stack:
    """The stack whose containers reach the host service where it runs. A service started
    earlier on another port (`MLX_PORT=8091 inv mlx start`, then `inv start`) keeps running
    there: the gateway is pointed at that port, not at the configured one, where nothing (or
    something else) answers. MLX_HOST_URL set by the user is theirs: left as it is."""
    settings = stack.settings
    # Where it runs: the start's own answer, else its PID file, as every task finds it.
    port = host.get("port") if host is not None else running_port(settings)
    if (not isinstance(port, int) or port == settings.mlx_port
            or settings.get("MLX_HOST_URL") is not None):
        return stack
    aimed = settings.with_env(MLX_PORT=str(port))
    say(f"the host service runs on port {port}, not the configured {settings.mlx_port}: "
        f"the containers reach it there (MLX_HOST_URL {aimed.mlx_host_url})")
    return make_stack(aimed, stack.engine, stack.offline, stack.auto_pull)


def start(settings: Settings, services: Sequence[str] | None = None, *, fast: bool = False,
          install: bool = True, mlx: MlxFlags = MlxFlags(), with_mlx: bool = True,
          timeout: float | None = None, say: Say = say_as("stack")) -> StartResult:
    """Host service, then containers, then wait for every started service's probe."""
    selected = parse_services(services)
    wait_for = ready_timeout(settings, timeout)
    settings.ports()  # every port, before Compose is asked anything
    if with_mlx:
        check_service_settings(settings, mlx.server_args, mlx.venv)
    stack = open_stack(settings)
    # Compose would start (and reuse) another checkout's containers of the same project name.
    refuse_foreign(stack, "containers", outcome="started nothing")
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
    stack = aimed_at_the_running_service(stack, host, say)
    if not runnable:
        return StartResult([], skipped, {}, host, warnings, stack.offline)
    say(f"starting {', '.join(runnable)} (project {stack.compose.project})")
    try:
        stack.compose.up(runnable, build=any(s in BUILT_SERVICES for s in runnable))
    except ComposeError as exc:
        raise StackError(f"Compose could not start {', '.join(runnable)}: {exc}") from None
    # Recorded once Compose started them: one removed by hand later is gone, not skipped.
    remember_started(settings, runnable)
    say(f"waiting up to {wait_for:g}s for {', '.join(s for s in runnable if s in PROBES)}")
    try:
        took = wait_ready(runnable, settings.ports(), wait_for, state_of=state_reader(stack),
                          say=say)
    except NotReady as exc:
        logs = service_log_tail(stack, exc.service)
        raise StackError(f"{exc}.\nLast log lines of {exc.service}:\n{logs or '(none)'}") from None
    if "prometheus" in runnable:
        first_scrape(settings, say)
    return StartResult(runnable, skipped, took, host, warnings, stack.offline)


def first_scrape(settings: Settings, say: Say) -> None:
    """Wait for Prometheus's first scrape of every target, so that `inv status` right after
    `inv start` says up or down, not "not scraped yet"."""
    jobs = wait_first_scrape(settings.ports()["prometheus"])
    waiting = sorted(job for job, health in jobs.items() if health == NOT_SCRAPED)
    if waiting:
        say(f"prometheus has not scraped {', '.join(waiting)} yet")
    elif jobs:
        say("prometheus scraped every target once: "
            + ", ".join(f"{job}={health}" for job, health in jobs.items()))
