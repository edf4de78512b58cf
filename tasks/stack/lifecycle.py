"""The stack's plain logic: setup, start, stop, clean, logs, health (status: status_doc.py).

Everything here takes Settings and returns values or raises StackError with a sentence a
person can act on; tasks/stack_tasks.py only parses flags, calls these and prints.
Progress goes to `say` (stderr), never to stdout.

Images: CORTEX_IMAGES = auto (default) | local | upstream.
  upstream  compose/docker-compose.yml as is; missing images are pulled.
  local     adds compose/docker-compose.offline.yml: NATS and the Python base built locally
            (tasks/images.py); nothing is pulled; services without a local image (Grafana,
            Loki, Tempo) run only when their image is already present, else are skipped.
  auto      tasks.stack.images.choose_images decides from the machine's facts: images already
            here first; else the offline local build where it can run (Linux with
            debootstrap, as root); else the pinned upstream images, pulled, with one line
            saying why (macOS, no root or sudo, rootless Podman, ...); else one sentence saying
            what to do. Services without a local build (Grafana, Loki, Tempo) whose image is
            absent are skipped with a warning, as before, unless upstream was chosen.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tasks.stack.compose import (Compose, ComposeError, Engine, EngineError, compose_files,
                           find_engine)
from tasks.core.flags import MlxFlags
from tasks.stack.readiness import PROBES, NotReady, wait_ready
from tasks.core.settings import ALL_SERVICES, APP_SERVICES, CORE_SERVICES, Settings, SettingsError

Say = Callable[[str], None]
GROUPS = {"core": CORE_SERVICES, "app": APP_SERVICES, "all": ALL_SERVICES}
IMAGE_MODES = ("auto", "local", "upstream")
UPSTREAM_NATS = "nats:2.10-alpine"
UPSTREAM_PYTHON = "python:3.12-slim"
BUILT_SERVICES = ("model-gateway", "mcp-registry")
DEFAULT_READY_TIMEOUT = 120.0
PULL_HINT = "CORTEX_IMAGES=upstream inv setup pulls missing images where a registry is reachable"


def say_stderr(line: str) -> None:
    print(f"[stack] {line}", file=sys.stderr, flush=True)


class StackError(RuntimeError):
    """Stops a task: the message is what the user reads."""


# --- services ------------------------------------------------------------------------------------

def parse_services(values: str | Iterable[str] | None) -> list[str]:
    """`--services a,b` and repeated flags, groups (core, app, all) expanded, order kept.

    Empty means every service. Unknown names raise StackError listing the valid ones.
    """
    if values is None:
        return list(ALL_SERVICES)
    if isinstance(values, str):
        values = [values]
    names: list[str] = []
    for value in values:
        names += [part.strip() for part in str(value).split(",") if part.strip()]
    if not names:
        return list(ALL_SERVICES)
    unknown = [n for n in names if n not in ALL_SERVICES and n not in GROUPS]
    if unknown:
        raise StackError(
            f"Unknown service{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
            f"valid services are {', '.join(ALL_SERVICES)} (groups: core, app, all).")
    selected: list[str] = []
    for name in names:
        for service in GROUPS.get(name, (name,)):
            if service not in selected:
                selected.append(service)
    return selected


# --- the compose project ---------------------------------------------------------------------------

def compose_env(settings: Settings) -> dict[str, str]:
    """The environment Compose runs in: the user's, plus the settings' values (ports from
    .env.dev and CORTEX_* overrides, MLX_HOST_URL). DOCKER_HOST/contexts pass through."""
    env = {k: str(v) for k, v in settings.env.items() if v is not None}
    env["MLX_PORT"] = str(settings.mlx_port)
    env["MLX_HOST_URL"] = settings.mlx_host_url
    settings.ports()  # validated here: a bad port is a SettingsError before Compose sees it
    return env


def image_mode(settings: Settings) -> str:
    mode = (settings.get("CORTEX_IMAGES", "auto") or "auto").strip().lower()
    if mode not in IMAGE_MODES:
        raise StackError(f"CORTEX_IMAGES={mode!r} is not one of {', '.join(IMAGE_MODES)}.")
    return mode


def extra_compose_files(settings: Settings) -> list[Path]:
    """CORTEX_COMPOSE_OVERRIDES: more compose files (os.pathsep-separated), merged last."""
    raw = settings.get("CORTEX_COMPOSE_OVERRIDES", "") or ""
    files = [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]
    for path in files:
        if not path.exists():
            raise StackError(f"CORTEX_COMPOSE_OVERRIDES names {path}, which does not exist.")
    return files


@dataclass
class Stack:
    settings: Settings
    engine: Engine
    compose: Compose
    offline: bool
    env: dict[str, str] = field(repr=False, default_factory=dict)
    auto_pull: bool = False  # CORTEX_IMAGES=auto chose the upstream images, to be pulled

    def with_offline(self, offline: bool) -> "Stack":
        return make_stack(self.settings, self.engine, offline, self.auto_pull)


def make_stack(settings: Settings, engine: Engine, offline: bool,
               auto_pull: bool = False) -> Stack:
    env = compose_env(settings)
    files = compose_files(settings.compose_dir, offline, extra_compose_files(settings))
    compose = Compose(engine=engine, project=settings.compose_project,
                      project_dir=settings.compose_dir, files=files,
                      env_file=settings.env_file, env=env)
    return Stack(settings, engine, compose, offline, env, auto_pull)


def image_present(engine: Engine, image: str, env: dict[str, str]) -> bool:
    from tasks.stack.images import image_exists
    return image_exists(engine, image, env)


def open_stack(settings: Settings, check_daemon: bool = True) -> Stack:
    """Engine found (and answering), compose files chosen. Raises EngineError/StackError."""
    env = compose_env(settings)
    engine = find_engine(env, check_daemon=check_daemon)
    mode = image_mode(settings)
    if mode == "auto" and check_daemon:
        from tasks.stack.images import auto_choice
        upstream = (settings.get("CORTEX_NATS_IMAGE", UPSTREAM_NATS),
                    settings.get("CORTEX_PYTHON_BASE_IMAGE", UPSTREAM_PYTHON))
        choice = auto_choice(engine, env, upstream, settings.compose_dir)
        if choice.source == "none":
            raise StackError(choice.message)
        if choice.message:
            say_stderr(choice.message)
        return make_stack(settings, engine, choice.source == "local", choice.pull)
    return make_stack(settings, engine, mode == "local")


def service_images(stack: Stack, services: Sequence[str]) -> dict[str, dict]:
    """service -> {"image": name, "build": bool, "base": base image or None}."""
    config = stack.compose.config().get("services", {})
    out = {}
    for service in services:
        spec = config.get(service, {})
        build = spec.get("build")
        base = (build or {}).get("args", {}).get("BASE_IMAGE") if isinstance(build, dict) else None
        out[service] = {"image": spec.get("image"), "build": bool(build), "base": base}
    return out


def _pull(engine: Engine, image: str, env: dict[str, str], say: Say) -> bool:
    import subprocess
    say(f"pulling {image}")
    try:
        done = subprocess.run([engine.cli, "pull", "--quiet", image], env=env,
                              capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        say(f"could not pull {image}: no answer within 600s")
        return False
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
        say(f"could not pull {image}: {reason[:200]}")
    return done.returncode == 0


def resolve_images(stack: Stack, services: Sequence[str], say: Say,
                   allow_pull: bool | None = None) -> tuple[Stack, list[str], dict[str, str]]:
    """Make the images of `services` available: pull, or build locally (see the module doc).

    Returns (the stack to use, services that can run, {skipped service: why}).
    """
    from tasks.stack.images import ImageError, ensure_local_images
    mode = image_mode(stack.settings)
    if allow_pull is None:
        allow_pull = mode == "upstream" or stack.auto_pull
    env = stack.env
    wanted_images = service_images(stack, services)
    tried: set[str] = set()

    def pull(image: str) -> bool:
        if image in tried:
            return False
        tried.add(image)
        return _pull(stack.engine, image, env, say)

    if not stack.offline:
        absent = []
        for service, spec in wanted_images.items():
            needed = spec["base"] if spec["build"] else spec["image"]
            if needed and not image_present(stack.engine, needed, env):
                absent.append(service)
        if absent and allow_pull:
            for service in list(absent):
                spec = wanted_images[service]
                if pull(spec["base"] if spec["build"] else spec["image"]):
                    absent.remove(service)
        nats_or_python_missing = [s for s in absent if s == "nats" or s in BUILT_SERVICES]
        if nats_or_python_missing and mode != "upstream" and not stack.auto_pull:
            say(f"no registry image for {', '.join(nats_or_python_missing)}: using locally built "
                "images (compose/docker-compose.offline.yml)")
            stack = stack.with_offline(True)
        elif absent and nats_or_python_missing:
            raise StackError(f"The images of {', '.join(absent)} are not here and could not be "
                             f"pulled (CORTEX_IMAGES={mode}): make a registry reachable"
                             + (" or unset CORTEX_IMAGES to build them locally."
                                if mode == "upstream" else "."))
    if stack.offline:
        needs_local = [s for s in services if s == "nats" or s in BUILT_SERVICES]
        if needs_local:
            try:
                built = ensure_local_images(stack.engine, stack.settings.compose_dir, env, say=say)
            except ImageError as exc:
                raise StackError(f"Local images could not be built: {exc}") from None
            if built:
                say(f"built {', '.join(built)}")
    skipped: dict[str, str] = {}
    info = service_images(stack, services)
    for service in services:
        spec = info[service]
        if spec["build"]:
            continue
        if image_present(stack.engine, spec["image"], env):
            continue
        if stack.offline and allow_pull and pull(spec["image"]):
            continue
        skipped[service] = f"image {spec['image']} is not here" + (
            " and could not be pulled" if allow_pull else "")
    return stack, [s for s in services if s not in skipped], skipped


def warn_skipped(skipped: dict[str, str], say: Say, doing: str) -> None:
    """One line per skipped service, then one hint on how to get the images."""
    for service, why in skipped.items():
        say(f"warning: {doing} {service}: {why}")
    if skipped:
        say(f"  ({PULL_HINT}; status shows skipped services as not running)")


# --- ports ------------------------------------------------------------------------------------------

def published_ports(stack: Stack, services: Sequence[str]) -> list[tuple[str, str, int]]:
    """(service, host ip, port) of every port the services publish."""
    config = stack.compose.config().get("services", {})
    out = []
    for service in services:
        for port in config.get(service, {}).get("ports", []) or []:
            published = port.get("published")
            if published:
                out.append((service, port.get("host_ip") or "0.0.0.0", int(published)))
    return out


def port_warnings(stack: Stack, services: Sequence[str],
                  containers: list[dict] | None = None) -> list[str]:
    """A sentence for each published port that something other than this project holds."""
    from tasks.host.port_holders import address_free, describe_holders, port_holders
    if containers is None:
        try:
            containers = stack.compose.ps()
        except ComposeError:
            containers = []
    ours = set()
    for container in containers:
        if container.get("State") in ("running", "restarting", "paused"):
            for pub in container.get("Publishers") or []:
                if pub.get("PublishedPort"):
                    ours.add(int(pub["PublishedPort"]))
    warnings = []
    for service, ip, port in published_ports(stack, services):
        if port in ours or address_free(ip, port):
            continue
        holders = describe_holders(port_holders(port, [ip]))
        warnings.append(f"port {port} ({service}) on {ip} is already in use by {holders}: "
                        f"{service} will not be able to publish it (set its CORTEX_*_PORT in "
                        ".env.dev or the environment)")
    return warnings


# --- setup --------------------------------------------------------------------------------------------

def setup(settings: Settings, say: Say = say_stderr, install: bool = True,
          images: bool = True, rebuild: bool = False) -> list[str]:
    """Onboarding: tools, .env.dev, the service venv, then the engine and images. Returns the
    next steps. The steps that need no engine come first, so that an engine that is down
    costs only the images: StackError then says so in one sentence."""
    import shutil
    for tool in ("git",):
        if not shutil.which(tool):
            say(f"warning: {tool} is not on PATH")
    write_env_file(settings, say)
    if install:
        from tasks.host.mlx_process import service_lock
        from tasks.host.service_venv import install_service_venv
        say(f"service venv: {settings.mlx_venv}")
        # The start lock: pip never runs in the venv while `inv mlx start` uses it.
        with service_lock(settings, "inv setup: install", say):
            if not install_service_venv(settings, say=say):
                say("service venv up to date")
    try:
        stack = open_stack(settings)
    except EngineError as exc:
        ready = settings.env_file.name + (" and the service venv are" if install else " is")
        raise StackError(f"{str(exc).rstrip('.')}; {ready} ready, so run `inv setup` again "
                         "once the engine answers, to build the images.") from None
    say(f"engine: {stack.engine.kind} ({' '.join(Path(a).name for a in stack.engine.compose)} "
        f"{stack.engine.version}) at {stack.engine.where(stack.env)}")
    if images:
        if rebuild:
            from tasks.stack.images import ensure_local_images
            ensure_local_images(stack.engine, settings.compose_dir, stack.env, say=say, force=True)
        stack, runnable, skipped = resolve_images(stack, list(ALL_SERVICES), say)
        say(f"images: {'local builds (offline override)' if stack.offline else 'registry'}")
        if skipped:
            warn_skipped(skipped, say, "start will skip")
        built = [s for s in runnable if s in BUILT_SERVICES]
        if built:
            say(f"building {', '.join(built)}")
            stack.compose.run("build", "--quiet", *built)  # its log shows only on failure
    return ["inv start                  # host service + containers, waits until ready",
            "inv status                 # what runs (inv status --json for scripts)",
            "inv health                 # one line per service, exit code for scripts"]


def write_env_file(settings: Settings, say: Say) -> None:
    """The settings file with the defaults, unless it exists (it is the user's then)."""
    if settings.env_file.exists():
        say(f"{settings.env_file.name} present")
        return
    from tasks.core.settings import DEFAULTS
    lines = ["# cortex-dev: ports and URLs of the development stack (written by inv setup)."]
    lines += [f"{k}={v}" for k, v in DEFAULTS.items()]
    settings.env_file.parent.mkdir(parents=True, exist_ok=True)
    settings.env_file.write_text("\n".join(lines) + "\n")
    say(f"wrote {settings.env_file} with the defaults")


# --- start --------------------------------------------------------------------------------------------

@dataclass
class StartResult:
    services: list[str]
    skipped: dict[str, str]
    ready_after: dict[str, float]
    mlx: dict | None
    warnings: list[str]
    offline: bool


def ready_timeout(settings: Settings, override: float | None = None) -> float:
    raw = override if override is not None else settings.get("CORTEX_READY_TIMEOUT",
                                                              str(DEFAULT_READY_TIMEOUT))
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise StackError(f"CORTEX_READY_TIMEOUT={raw!r} is not a number of seconds") from None


def _state_reader(stack: Stack) -> Callable[[str], str | None]:
    cache: dict[str, object] = {"at": 0.0, "states": {}}

    def state_of(service: str) -> str | None:
        if time.monotonic() - cache["at"] > 1.0:
            try:
                cache["states"] = {c["Service"]: c["State"] for c in stack.compose.ps()}
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


def start_host_service(settings: Settings, say: Say, fast: bool = False, install: bool = True,
                       options: MlxFlags = MlxFlags()) -> dict:
    """The host service started (or found healthy with `fast`) with `options`: the venv, the
    wait and timeout, and the server's own arguments."""
    from tasks.host import mlx_process
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


def host_start_kwargs(options: MlxFlags) -> dict:
    """mlx_process.start_service's arguments for `options` (start and every watch restart)."""
    return {"venv_path": options.venv, "wait": options.wait, "timeout": options.timeout,
            "extra_args": tuple(options.server_args)}


def start(settings: Settings, services: Sequence[str] | None = None, *, fast: bool = False,
          install: bool = True, mlx: MlxFlags = MlxFlags(), with_mlx: bool = True,
          timeout: float | None = None, say: Say = say_stderr) -> StartResult:
    """Host service, then containers, then wait for every started service's probe."""
    selected = parse_services(services)
    wait_for = ready_timeout(settings, timeout)
    stack = open_stack(settings)
    stack, runnable, skipped = resolve_images(stack, selected, say)
    warn_skipped(skipped, say, "skipping")
    warnings = port_warnings(stack, runnable)
    for line in warnings:
        say(f"warning: {line}")
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
        took = wait_ready(runnable, settings.ports(), wait_for, state_of=_state_reader(stack),
                          say=say)
    except NotReady as exc:
        logs = service_log_tail(stack, exc.service)
        raise StackError(f"{exc}.\nLast log lines of {exc.service}:\n{logs or '(none)'}") from None
    return StartResult(runnable, skipped, took, host, warnings, stack.offline)


# --- stop / clean -----------------------------------------------------------------------------------

def _stop_host(settings: Settings, say: Say) -> bool:
    from tasks.host import mlx_process
    return mlx_process.stop_service(settings, say=say)


def refuse_foreign(stack: Stack, kept: str) -> None:
    """StackError naming the other checkout when project containers of that name were
    created from somewhere else: stop and clean act only on what this checkout created."""
    from tasks.stack.compose import foreign_origins, project_origins
    project = stack.compose.project
    others = foreign_origins(project_origins(stack.engine, project, stack.env),
                             stack.compose.project_dir)
    if not others:
        return
    where = sorted({o.where() for o in others})
    names = ", ".join(sorted(o.name for o in others))
    raise StackError(
        f"Compose project {project!r} also has containers created from another checkout, "
        f"{'; '.join(where)} (containers: {names}); left the project's {kept} alone: set "
        f"CORTEX_COMPOSE_PROJECT to a name of this checkout's own, or act from that checkout.")


def stop(settings: Settings, say: Say = say_stderr, with_mlx: bool = True) -> None:
    """Containers stopped (volumes and containers kept), then the host service. Refused when
    the project name also has containers of another checkout."""
    problem = None
    try:
        stack = open_stack(settings)
        refuse_foreign(stack, "containers")
        say(f"stopping the containers of project {stack.compose.project}")
        stack.compose.stop()
    except (EngineError, ComposeError, StackError, SettingsError) as exc:
        problem = exc  # the host service is still stopped below
    if with_mlx:
        _stop_host(settings, say)
    if problem is not None:
        raise StackError(f"The containers were not stopped: {problem}")


def clean(settings: Settings, say: Say = say_stderr) -> None:
    """Containers, volumes and networks of the project removed; host service stopped.
    Refused (nothing removed, volumes included) when the project name also has containers
    of another checkout."""
    problem = None
    try:
        stack = open_stack(settings)
        refuse_foreign(stack, "containers and volumes")
        say(f"removing containers, volumes and networks of project {stack.compose.project}")
        stack.compose.down(volumes=True)
    except (EngineError, ComposeError, StackError, SettingsError) as exc:
        problem = exc  # the host service is still stopped below
    _stop_host(settings, say)
    if problem is not None:
        raise StackError(f"The project was not removed: {problem}")


# --- logs ----------------------------------------------------------------------------------------------

def logs(settings: Settings, service: str | None = None, follow: bool = False, tail: int = 100,
         out=None) -> None:
    """`mlx` (the host service's log file), one container, or everything; `follow` keeps
    copying new lines to `out` until Ctrl-C or a reader that goes away."""
    from tasks.host.mlx_process import follow_log, tail_lines
    out = out or sys.stdout
    if service not in (None, "", "mlx", "mlx-server") and service not in ALL_SERVICES:
        raise StackError(f"Unknown service {service!r}: valid are mlx, {', '.join(ALL_SERVICES)}.")
    if service in ("mlx", "mlx-server"):
        if not settings.mlx_log.exists() and not follow:
            raise StackError(f"The host service has no log yet ({settings.mlx_log}).")
        if follow:
            follow_log(settings.mlx_log, out, n=tail)
        else:
            for line in tail_lines(settings.mlx_log, tail):
                print(line, file=out)
        return
    stack = open_stack(settings)
    services = [service] if service else []
    if follow:
        stop_event = threading.Event()
        if not service:
            follow_host_log_prefixed(settings, out, tail, stop_event)
        try:
            follow_containers(stack, services, tail, out)
        finally:
            stop_event.set()
        return
    if not service:
        for line in tail_lines(settings.mlx_log, tail):
            print(f"mlx-server | {line}", file=out)
    try:
        text = stack.compose.logs(services, tail=tail)
    except ComposeError as exc:
        raise StackError(str(exc)) from None
    if text:
        out.write(text if text.endswith("\n") else text + "\n")


def follow_host_log_prefixed(settings: Settings, out, tail: int,
                             stop_event: threading.Event) -> None:
    """The host service's log, each line marked `mlx-server | ` like Compose marks its own,
    followed in a thread until stop_event; a closed reader ends it quietly."""
    from tasks.host.mlx_process import follow_log

    class Prefixed:
        def write(self, text):
            for line in text.splitlines():
                out.write(f"mlx-server | {line}\n")

        def flush(self):
            out.flush()

    def run():
        try:
            follow_log(settings.mlx_log, Prefixed(), n=tail, stop=stop_event.is_set)
        except BrokenPipeError:
            pass  # the main thread notices it too, and ends the task quietly

    threading.Thread(target=run, name="mlx-log", daemon=True).start()


def follow_containers(stack: Stack, services: Sequence[str], tail: int, out) -> None:
    """`compose logs --follow` copied line by line to `out` (cursor codes removed) until the
    containers stop or Ctrl-C. A reader that goes away raises BrokenPipeError here, after
    Compose is stopped, so the task ends as any task whose reader closed (tasks/namespace.py)."""
    import subprocess
    from tasks.stack.compose import strip_ansi
    argv = stack.compose.argv("logs", "--no-color", "--tail", str(tail), "--follow", *services)
    proc = subprocess.Popen(argv, env=stack.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    try:
        for line in proc.stdout:
            out.write(strip_ansi(line))
            out.flush()
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.stdout.close()
        code = proc.wait()
    if code != 0:
        raise StackError(f"`compose logs --follow` ended with exit code {code}.")


# --- health -------------------------------------------------------------------------------------------

def health(settings: Settings) -> tuple[list[dict], bool]:
    """One row per part of the stack; ok when the host service answers and every service
    that has a container runs and answers its probe (and at least one does)."""
    from tasks.stack.status_doc import build_status
    doc = build_status(settings)
    mlx = doc["mlx"]
    mlx_ready = bool(mlx.get("healthy"))  # /health said ok: loaded, worker alive
    detail = mlx["url"]
    if mlx["responding"] and not mlx_ready:
        detail += f" answers, but not ready ({(mlx.get('health') or {}).get('status', 'not our service')})"
    rows = [{"name": "mlx (host)", "running": mlx["running"], "healthy": mlx.get("healthy"),
             "ready": mlx_ready, "detail": detail}]
    ok = mlx_ready
    started = 0
    for name, svc in doc.get("services", {}).items():
        rows.append({"name": name, "running": svc["running"], "healthy": svc["healthy"],
                     "ready": svc["ready"], "detail": _short(svc.get("detail") or svc["state"])})
        if svc["state"] != "absent":
            started += 1
            ok = ok and svc["running"] and svc["ready"]
    if not doc.get("engine", {}).get("available", True):
        rows.append({"name": "engine", "running": False, "healthy": None, "ready": False,
                     "detail": doc["engine"].get("error") or "no engine"})
        ok = False
    return rows, ok and started > 0


def _short(text: str, width: int = 70) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + "..."


def format_table(rows: list[dict], columns: Sequence[str]) -> str:
    def cell(value) -> str:
        if value is True:
            return "yes"
        if value is False:
            return "no"
        return "-" if value is None else str(value)
    table = [list(columns)] + [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in table)


# --- watch --------------------------------------------------------------------------------------------

def watch(settings: Settings, services: Sequence[str], with_mlx: bool = True,
          say: Say = say_stderr, stop_event: threading.Event | None = None,
          mlx: MlxFlags = MlxFlags()) -> None:
    """Rebuild and restart a built service when its folder under compose/ changes, and restart
    the host service when mlx_service/ changes, with the venv, flags and timeout it was
    started with (`mlx`); until Ctrl-C (or stop_event)."""
    import watchfiles
    stack = open_stack(settings)
    targets: dict[Path, str] = {}
    for service in services:
        if service in BUILT_SERVICES:
            targets[(settings.compose_dir / service).resolve()] = service
    if with_mlx:
        from tasks.host.watch import watched_dir
        targets[watched_dir(settings)] = "mlx"
    if not targets:
        say("--watch: nothing to watch (no built service was started and no host service)")
        return
    say("watching " + ", ".join(f"{p} ({name})" for p, name in targets.items())
        + "; Ctrl-C ends")
    try:
        for batch in watchfiles.watch(*targets, stop_event=stop_event, raise_interrupt=False):
            changed = {name for _, path in batch for root, name in targets.items()
                       if Path(path).resolve().is_relative_to(root)}
            for name in sorted(changed):
                try:
                    if name == "mlx":
                        from tasks.host import mlx_process
                        say("mlx_service changed: restarting the host service")
                        mlx_process.restart_service(settings, say=say, install=False,
                                                    **host_start_kwargs(mlx))
                    else:
                        say(f"{name} changed: rebuilding and restarting it")
                        stack.compose.up([name], build=True)
                        wait_ready([name], settings.ports(), ready_timeout(settings),
                                   state_of=_state_reader(stack), say=say)
                except Exception as exc:  # keep watching: the next save may fix it
                    say(f"{name}: {exc}")
    except KeyboardInterrupt:
        pass
