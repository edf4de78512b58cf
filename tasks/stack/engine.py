"""The container engine: which one this machine has, how to reach it, and what it is.

One detector, `installed_clis`: the engine CLIs on PATH in the order the stack prefers them
(`docker`, then `podman`; CORTEX_ENGINE=docker|podman forces one). On it stand
- `find_engine`: the Engine the stack drives (its CLI and its Compose v2 command), which
  raises EngineError with one sentence a person can act on;
- `describe_engine`: what `inv verify` reports (Docker Desktop, OrbStack, Colima, Podman,
  dockerd; whether it answers; its Compose version), which never raises.
Nothing here sets DOCKER_HOST or a context: whatever the user's environment selects is what
it talks to. Every call goes through tasks.core.runner.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

from tasks.core import runner
from tasks.core.enums import StrEnum
from tasks.core.errors import TaskError
from tasks.core.output_text import first_line
from tasks.core.settings import SettingsError


class EngineKind(StrEnum):
    """The engines the stack drives, in the order it prefers them (also their CLIs' names)."""

    DOCKER = "docker"
    PODMAN = "podman"


DETECT_TIMEOUT = 20.0


class EngineError(TaskError, RuntimeError):
    """No container engine, or one that does not answer."""


class EngineSettingError(EngineError, SettingsError):
    """CORTEX_ENGINE names no engine the stack drives: a setting, exit 2."""


@dataclass(frozen=True)
class Engine:
    """How to reach the container engine: `docker` (or `podman`) and its compose command."""

    kind: EngineKind
    cli: str  # path of the engine's CLI
    compose: tuple[str, ...]  # argv prefix of its compose command
    version: str = ""  # of its Compose command (what `compose version` says)
    server_version: str = ""  # of the engine itself, once find_engine has asked it

    def where(self, env: Mapping[str, str] | None = None) -> str:
        """Words for the engine's address, used in error sentences."""
        env = os.environ if env is None else env
        if self.kind == EngineKind.DOCKER:
            if env.get("DOCKER_HOST"):
                return f"DOCKER_HOST={env['DOCKER_HOST']}"
            if env.get("DOCKER_CONTEXT"):
                return f"Docker context {env['DOCKER_CONTEXT']!r}"
            return "the default Docker socket"
        if env.get("CONTAINER_HOST"):
            return f"CONTAINER_HOST={env['CONTAINER_HOST']}"
        return "the default Podman socket"

    def run(self, *args: str, env: Mapping[str, str] | None = None,
            timeout: float | None = None, **options) -> runner.Finished:
        """`<engine CLI> ARGS` through the one runner (options: see runner.run)."""
        return runner.run([self.cli, *args], env=dict(os.environ if env is None else env),
                          timeout=timeout, **options)


# --- the one detector ---------------------------------------------------------------------------

def chosen_engine_kind(env: Mapping[str, str]) -> str:
    """CORTEX_ENGINE: "" (either), docker or podman; anything else is EngineError naming it."""
    wanted = (env.get("CORTEX_ENGINE") or "").strip().lower()
    if wanted not in ("", *EngineKind):
        raise EngineSettingError(f"CORTEX_ENGINE={env.get('CORTEX_ENGINE')!r} is not one of "
                          f"{', '.join(EngineKind)} (or empty for whichever is installed)")
    return wanted


def installed_clis(env: Mapping[str, str] | None = None) -> list[tuple[EngineKind, str]]:
    """(kind, path) of each engine CLI on env's PATH, preferred first; CORTEX_ENGINE narrows
    (an unknown CORTEX_ENGINE finds none)."""
    env = os.environ if env is None else env
    wanted = (env.get("CORTEX_ENGINE") or "").strip().lower()
    found = []
    for kind in EngineKind:
        path = shutil.which(kind, path=env.get("PATH"))
        if path and wanted in ("", kind):
            found.append((kind, path))
    return found


def _answer(argv: Sequence[str], env: Mapping[str, str]) -> str | None:
    """stdout (stderr merged) of argv when it exits 0 within a few seconds, else None."""
    done = runner.run(argv, env=env, timeout=DETECT_TIMEOUT, merge_stderr=True)
    return done.stdout if done.ok else None


def compose_command(kind: str, cli: str, env: Mapping[str, str]) -> Engine | None:
    """The Engine for `cli` with its Compose v2 command, or None when it has none."""
    if kind == EngineKind.PODMAN:
        version = _answer([cli, "compose", "version"], env)
        return None if version is None else Engine(EngineKind.PODMAN, cli, (cli, "compose"),
                                                   first_line(version))
    version = _answer([cli, "compose", "version", "--short"], env)
    if version is not None:
        return Engine(EngineKind.DOCKER, cli, (cli, "compose"), version.strip())
    legacy = shutil.which("docker-compose", path=env.get("PATH"))
    out = _answer([legacy, "version", "--short"], env) if legacy else None
    if out and out.strip().lstrip("v").startswith("2"):
        return Engine(EngineKind.DOCKER, cli, (legacy,), out.strip())
    return None


def find_engine(env: Mapping[str, str] | None = None, check_daemon: bool = True) -> Engine:
    """The engine to use: `docker compose` v2, else `podman compose`. Raises EngineError.

    CORTEX_ENGINE=docker|podman forces one. With check_daemon, the engine must also answer.
    """
    env = dict(os.environ if env is None else env)
    chosen_engine_kind(env)
    clis = installed_clis(env)
    engines = [e for e in (compose_command(kind, cli, env) for kind, cli in clis) if e]
    if not engines:
        if any(kind == EngineKind.DOCKER for kind, _ in clis):
            raise EngineError("Docker is installed but its Compose v2 plugin is not: install "
                              "`docker compose` (the docker-compose-plugin package).")
        raise EngineError("No container engine found: install Docker with the Compose v2 plugin "
                          "(or Podman with `podman compose`) and make sure it is on PATH.")
    engine = engines[0]
    if check_daemon:
        engine = replace(engine, server_version=ensure_daemon(engine, env))
    return engine


def ensure_daemon(engine: Engine, env: Mapping[str, str] | None = None, timeout: float = 20) -> str:
    """The server version, or EngineError saying which engine address did not answer."""
    env = dict(os.environ if env is None else env)
    fmt = "{{.ServerVersion}}" if engine.kind == EngineKind.DOCKER else "{{.Version.Version}}"
    done = engine.run("info", "--format", fmt, env=env, timeout=timeout)
    if done.timed_out:
        raise EngineError(f"The {engine.kind} engine at {engine.where(env)} did not answer "
                          f"within {timeout:g} seconds: is the daemon running?")
    if done.exit_code != 0:
        reason = first_line(done.stderr) or first_line(done.stdout) or f"exit {done.exit_code}"
        raise EngineError(f"The {engine.kind} engine at {engine.where(env)} does not answer "
                          f"({reason}): start the daemon or point DOCKER_HOST/the context at "
                          "one that runs.")
    version = done.stdout.strip()
    if not version or version.startswith("<no value>"):
        raise EngineError(f"The {engine.kind} engine at {engine.where(env)} does not answer: "
                          "start the daemon or point DOCKER_HOST/the context at one that runs.")
    return version


# --- what `inv verify` says about it -----------------------------------------------------------

@dataclass
class EngineInfo:
    cli: str | None  # "docker" or "podman", None when neither is installed
    answers: bool
    kind: str = "unknown"
    server_version: str = ""
    compose_version: str | None = None
    context: str = ""
    error: str = ""

    @property
    def start_hint(self) -> str:
        if self.kind == "Colima" or self.context == "colima":
            return "colima start"
        if self.cli == EngineKind.PODMAN:
            return "podman machine start"
        if os.environ.get("DOCKER_HOST"):
            return f"check DOCKER_HOST={os.environ['DOCKER_HOST']} (unset it for the local engine)"
        if self.kind in ("Docker Desktop", "OrbStack"):
            return f"start {self.kind}"
        return "start the Docker daemon (sudo systemctl start docker, or sudo dockerd &)"


def engine_kind(info: dict, context: str, cli: str) -> str:
    """Name the engine from `docker info`: what a user would call it."""
    os_name = str(info.get("OperatingSystem", ""))
    name = str(info.get("Name", ""))
    if cli == EngineKind.PODMAN or "podman" in os_name.lower():
        return "Podman"
    if "Docker Desktop" in os_name:
        return "Docker Desktop"
    if "OrbStack" in os_name or name == "orbstack" or context == "orbstack":
        return "OrbStack"
    if "colima" in (name + context).lower():
        return "Colima"
    return "dockerd"


def _output(argv: Sequence[str], timeout: float = 10) -> tuple[int, str, str]:
    done = runner.run(argv, env=os.environ, timeout=timeout)
    return done.exit_code, done.stdout.strip(), done.stderr.strip()


def describe_engine() -> EngineInfo:
    clis = installed_clis()
    if not clis:
        return EngineInfo(cli=None, answers=False, error="no docker or podman command")
    kind, cli = clis[0]
    _, context, _ = _output([cli, "context", "show"]) if kind == EngineKind.DOCKER else (0, "", "")
    code, out, err = _output([cli, "info", "--format", "{{json .}}"], timeout=15)
    info: dict = {}
    if code == 0:
        try:
            info = json.loads(out)
        except json.JSONDecodeError:
            info = {}
    server_errors = info.get("ServerErrors") if isinstance(info, dict) else None
    if code != 0 or not info or server_errors:
        error = "; ".join(server_errors or []) or (err.splitlines() or ["no answer"])[-1]
        return EngineInfo(cli=kind, answers=False, context=context, error=error)
    engine = EngineInfo(cli=kind, answers=True, context=context,
                        kind=engine_kind(info, context, kind),
                        server_version=str(info.get("ServerVersion")
                                           or info.get("version", {}).get("Version", "")))
    code, out, _ = _output([cli, "compose", "version", "--short"])
    engine.compose_version = out.splitlines()[0] if code == 0 and out else None
    return engine


def engine_rootless(cli: str, kind: str, env: dict | None = None) -> bool:
    """Whether the engine runs as the user (rootless Podman or Docker): then images that root
    builds (`sudo inv setup`) land in root's store, not in the one this user's engine reads."""
    fmt = ("{{.Host.Security.Rootless}}" if kind == EngineKind.PODMAN
           else "{{json .SecurityOptions}}")
    done = runner.run([cli, "info", "--format", fmt], env=os.environ if env is None else env,
                      timeout=10)
    if done.exit_code != 0:
        return False
    out = done.stdout.strip()
    return out == "true" if kind == EngineKind.PODMAN else "rootless" in out
