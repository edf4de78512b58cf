"""The stack's Compose project: its environment, its files, and the engine it runs on.

Images: CORTEX_IMAGES = auto (default) | local | upstream.
  upstream  compose/docker-compose.yml as is; missing images are pulled.
  local     adds compose/docker-compose.offline.yml: NATS and the Python base built locally
            (tasks.stack.images); nothing is pulled; services without a local image (Grafana,
            Loki, Tempo) run only when their image is already present, else are skipped.
  auto      tasks.stack.image_choice.choose_images decides from the machine's facts: images already
            here first; else the offline local build where it can run (Linux with
            debootstrap, as root); else the pinned upstream images, pulled, with one line
            saying why (macOS, no root or sudo, rootless Podman, ...); else one sentence saying
            what to do. Services without a local build (Grafana, Loki, Tempo) whose image is
            absent are skipped with a warning, as before, unless upstream was chosen.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tasks.core.say import Say, say_as
from tasks.core.settings import Settings
from tasks.stack.compose import Compose, compose_files
from tasks.stack.engine import Engine, find_engine
from tasks.stack.errors import StackError, StackSettingError
from tasks.stack.image_choice import auto_choice

IMAGE_MODES = ("auto", "local", "upstream")
UPSTREAM_NATS = "nats:2.10-alpine"
UPSTREAM_PYTHON = "python:3.12-slim"


def compose_env(settings: Settings) -> dict[str, str]:
    """The environment Compose runs in: the user's, plus the settings' values (ports from
    .env.dev and CORTEX_* overrides, MLX_HOST_URL). DOCKER_HOST/contexts pass through."""
    env = {k: str(v) for k, v in settings.env.items() if v is not None}
    env["MLX_PORT"] = str(settings.mlx_port)
    env["MLX_HOST_URL"] = settings.mlx_host_url
    # Validated here: a bad port or project name is a SettingsError before Compose sees it.
    settings.ports()
    settings.compose_project
    return env


def image_mode(settings: Settings) -> str:
    mode = (settings.get("CORTEX_IMAGES", "auto") or "auto").strip().lower()
    if mode not in IMAGE_MODES:
        raise StackSettingError(f"CORTEX_IMAGES={mode!r} is not one of {', '.join(IMAGE_MODES)}.")
    return mode


def extra_compose_files(settings: Settings) -> list[Path]:
    """CORTEX_COMPOSE_OVERRIDES: more compose files (os.pathsep-separated), merged last."""
    raw = settings.get("CORTEX_COMPOSE_OVERRIDES", "") or ""
    files = [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]
    for path in files:
        if not path.exists():
            raise StackSettingError(f"CORTEX_COMPOSE_OVERRIDES names {path}, which does not exist.")
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


def open_stack(settings: Settings, check_daemon: bool = True,
               say: Say = say_as("stack")) -> Stack:
    """Engine found (and answering), compose files chosen. Raises EngineError/StackError."""
    env = compose_env(settings)
    mode = image_mode(settings)  # a setting is refused (exit 2) before the engine is asked
    extra_compose_files(settings)
    engine = find_engine(env, check_daemon=check_daemon)
    if mode == "auto" and check_daemon:
        upstream = (settings.get("CORTEX_NATS_IMAGE", UPSTREAM_NATS),
                    settings.get("CORTEX_PYTHON_BASE_IMAGE", UPSTREAM_PYTHON))
        choice = auto_choice(engine, env, upstream, settings.compose_dir)
        if choice.source == "none":
            raise StackError(choice.message)
        if choice.message:
            say(choice.message)
        return make_stack(settings, engine, choice.source == "local", choice.pull)
    return make_stack(settings, engine, mode == "local")


@dataclass(frozen=True)
class ServiceImage:
    """What a service runs: an image by name, or a build (FROM its base image, if any)."""

    image: str | None
    build: bool
    base: str | None

    @property
    def needed(self) -> str | None:
        """The image that must be here before the service can start."""
        return self.base if self.build else self.image


def service_images(stack: Stack, services: Sequence[str]) -> dict[str, ServiceImage]:
    """service -> its ServiceImage, from the merged compose configuration."""
    config = stack.compose.config().get("services", {})
    out = {}
    for service in services:
        spec = config.get(service, {})
        build = spec.get("build")
        base = (build or {}).get("args", {}).get("BASE_IMAGE") if isinstance(build, dict) else None
        out[service] = ServiceImage(spec.get("image"), bool(build), base)
    return out


def configured_ports(stack: Stack, services: Sequence[str]) -> list[tuple[str, str, int]]:
    """(service, host ip, port) of every port the services publish, from the configuration."""
    config = stack.compose.config().get("services", {})
    out = []
    for service in services:
        for port in config.get(service, {}).get("ports", []) or []:
            published = port.get("published")
            if published:
                out.append((service, port.get("host_ip") or "0.0.0.0", int(published)))
    return out
