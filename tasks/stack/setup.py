"""`inv setup`: onboarding. Tools, .env.dev, the service venv, then the engine and images."""
from __future__ import annotations

import shutil
from pathlib import Path

from tasks.core.say import Say, say_as
from tasks.core.settings import ALL_SERVICES, DEFAULTS, Settings
from tasks.host.service_lock import service_lock
from tasks.host.service_venv import install_service_venv
from tasks.stack.engine import EngineError
from tasks.stack.errors import StackError
from tasks.stack.image_resolution import resolve_images, warn_skipped
from tasks.stack.images import ensure_local_images
from tasks.stack.prometheus_image import build_prometheus
from tasks.stack.project import open_stack
from tasks.stack.services import BUILT_SERVICES

NEXT_STEPS = ["inv start                  # host service + containers, waits until ready",
              "inv status                 # what runs (inv status --json for scripts)",
              "inv health                 # one line per service, exit code for scripts"]


def setup(settings: Settings, say: Say = say_as("stack"), install: bool = True,
          images: bool = True, rebuild: bool = False) -> list[str]:
    """Onboarding: tools, .env.dev, the service venv, then the engine and images. Returns the
    next steps. The steps that need no engine come first, so that an engine that is down
    costs only the images: StackError then says so in one sentence."""
    for tool in ("git",):
        if not shutil.which(tool):
            say(f"warning: {tool} is not on PATH")
    write_env_file(settings, say)
    if install:
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
            ensure_local_images(stack.engine, settings.compose_dir, stack.env, say=say, force=True)
            build_prometheus(stack.engine, settings.compose_dir, stack.env, say=say, force=True)
        stack, runnable, skipped = resolve_images(stack, list(ALL_SERVICES), say)
        say(f"images: {'local builds (offline override)' if stack.offline else 'registry'}")
        if skipped:
            warn_skipped(skipped, say, "start will skip")
        built = [s for s in runnable if s in BUILT_SERVICES]
        if built:
            say(f"building {', '.join(built)}")
            stack.compose.run("build", "--quiet", *built)  # its log shows only on failure
    return list(NEXT_STEPS)


def write_env_file(settings: Settings, say: Say) -> None:
    """The settings file with the defaults, unless it exists (it is the user's then)."""
    if settings.env_file.exists():
        say(f"{settings.env_file.name} present")
        return
    lines = ["# cortex-dev: ports and URLs of the development stack (written by inv setup)."]
    lines += [f"{k}={v}" for k, v in DEFAULTS.items()]
    settings.env_file.parent.mkdir(parents=True, exist_ok=True)
    settings.env_file.write_text("\n".join(lines) + "\n")
    say(f"wrote {settings.env_file} with the defaults")
