"""A thin Compose wrapper over the `sh` library.

It finds the engine (`docker compose` v2, else `podman compose`), names the project, the env
file, the compose files and the profiles once, and runs Compose subcommands with them. It never
sets DOCKER_HOST or a context: whatever the user's environment selects is what it talks to.
Problems that stop everything (no engine, a daemon that does not answer) are `EngineError`s whose
message is one sentence a person can act on.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import sh

PROFILES = ("core", "app")
BASE_FILE = "docker-compose.yml"
OFFLINE_FILE = "docker-compose.offline.yml"


class EngineError(RuntimeError):
    """No container engine, or one that does not answer."""


class ComposeError(RuntimeError):
    """A Compose command failed; the message carries its last lines of output."""


@dataclass(frozen=True)
class Engine:
    """How to reach the container engine: `docker` (or `podman`) and its compose command."""

    kind: str  # "docker" or "podman"
    cli: str  # path of the engine's CLI
    compose: tuple[str, ...]  # argv prefix of its compose command
    version: str = ""

    def where(self, env: Mapping[str, str] | None = None) -> str:
        """Words for the engine's address, used in error sentences."""
        env = os.environ if env is None else env
        if self.kind == "docker":
            if env.get("DOCKER_HOST"):
                return f"DOCKER_HOST={env['DOCKER_HOST']}"
            if env.get("DOCKER_CONTEXT"):
                return f"Docker context {env['DOCKER_CONTEXT']!r}"
            return "the default Docker socket"
        if env.get("CONTAINER_HOST"):
            return f"CONTAINER_HOST={env['CONTAINER_HOST']}"
        return "the default Podman socket"


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """Compose 2.2x writes cursor codes (ESC[2K) into `logs` even with --ansi never."""
    return _ANSI.sub("", text)


def _tail(text: str | bytes | None, lines: int = 8) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "\n".join((text or "").strip().splitlines()[-lines:])


def _first_line(text: str | bytes | None) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for line in (text or "").splitlines():
        line = line.strip()
        if line:
            return line
    return ""


def _runs(argv: Sequence[str], env: Mapping[str, str]) -> str | None:
    """stdout of argv when it exits 0 within a few seconds, else None."""
    try:
        out = sh.Command(argv[0])(*argv[1:], _env=dict(env), _timeout=20, _err_to_out=True,
                                  _tty_out=False)
    except (sh.ErrorReturnCode, sh.TimeoutException, sh.CommandNotFound, OSError):
        return None
    return str(out)


def find_engine(env: Mapping[str, str] | None = None, check_daemon: bool = True) -> Engine:
    """The engine to use: `docker compose` v2, else `podman compose`. Raises EngineError.

    CORTEX_ENGINE=docker|podman forces one. With check_daemon, the engine must also answer.
    """
    env = dict(os.environ if env is None else env)
    wanted = env.get("CORTEX_ENGINE", "").strip().lower()
    path = env.get("PATH")
    candidates: list[Engine] = []
    docker = shutil.which("docker", path=path)
    podman = shutil.which("podman", path=path)
    if docker and wanted in ("", "docker"):
        version = _runs([docker, "compose", "version", "--short"], env)
        if version is not None:
            candidates.append(Engine("docker", docker, (docker, "compose"), version.strip()))
        else:
            legacy = shutil.which("docker-compose", path=path)
            out = _runs([legacy, "version", "--short"], env) if legacy else None
            if out and out.strip().lstrip("v").startswith("2"):
                candidates.append(Engine("docker", docker, (legacy,), out.strip()))
    if podman and wanted in ("", "podman"):
        version = _runs([podman, "compose", "version"], env)
        if version is not None:
            candidates.append(Engine("podman", podman, (podman, "compose"), _first_line(version)))
    if not candidates:
        if docker and wanted in ("", "docker"):
            raise EngineError("Docker is installed but its Compose v2 plugin is not: install "
                              "`docker compose` (the docker-compose-plugin package).")
        raise EngineError("No container engine found: install Docker with the Compose v2 plugin "
                          "(or Podman with `podman compose`) and make sure it is on PATH.")
    engine = candidates[0]
    if check_daemon:
        ensure_daemon(engine, env)
    return engine


def ensure_daemon(engine: Engine, env: Mapping[str, str] | None = None, timeout: float = 20) -> str:
    """The server version, or EngineError saying which engine address did not answer."""
    env = dict(os.environ if env is None else env)
    fmt = "{{.ServerVersion}}" if engine.kind == "docker" else "{{.Version.Version}}"
    try:
        out = sh.Command(engine.cli)("info", "--format", fmt, _env=env, _timeout=timeout,
                                     _tty_out=False)
    except sh.TimeoutException:
        raise EngineError(f"The {engine.kind} engine at {engine.where(env)} did not answer "
                          f"within {timeout:g} seconds: is the daemon running?") from None
    except sh.ErrorReturnCode as exc:
        reason = _first_line(exc.stderr) or _first_line(exc.stdout) or f"exit {exc.exit_code}"
        raise EngineError(f"The {engine.kind} engine at {engine.where(env)} does not answer "
                          f"({reason}): start the daemon or point DOCKER_HOST/the context at "
                          "one that runs.") from None
    version = str(out).strip()
    if not version or version.startswith("<no value>"):
        raise EngineError(f"The {engine.kind} engine at {engine.where(env)} does not answer: "
                          "start the daemon or point DOCKER_HOST/the context at one that runs.")
    return version


def parse_ps_json(text: str | bytes) -> list[dict[str, Any]]:
    """Containers from `compose ps --format json`, in either of its formats.

    Compose before 2.21 prints one JSON array; since 2.21 it prints one object per line.
    Empty output means no containers.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    if not text:
        return []
    items: list[Any] = []
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ComposeError(f"`compose ps` printed line {number} that is not JSON: "
                                   f"{line[:120]!r} ({exc.msg})") from None
            items.extend(value if isinstance(value, list) else [value])
    else:
        items = whole if isinstance(whole, list) else [whole]
    containers = []
    for item in items:
        if not isinstance(item, dict):
            raise ComposeError(f"`compose ps` printed {type(item).__name__}, not a container object")
        containers.append(normalize_container(item))
    return containers


def normalize_container(item: Mapping[str, Any]) -> dict[str, Any]:
    """One container with the keys status relies on, whatever the Compose version wrote."""
    out = dict(item)
    out["Name"] = item.get("Name") or item.get("Names") or ""
    if isinstance(out["Name"], list):
        out["Name"] = out["Name"][0] if out["Name"] else ""
    labels = item.get("Labels")
    service = item.get("Service")
    if not service and isinstance(labels, dict):
        service = labels.get("com.docker.compose.service")
    out["Service"] = service or ""
    state = item.get("State") or ""
    out["State"] = str(state).lower()
    out["Health"] = str(item.get("Health") or "").lower()
    publishers = item.get("Publishers") or []
    out["Publishers"] = publishers if isinstance(publishers, list) else []
    return out


# --- who created a project's containers ----------------------------------------------------------
PROJECT_LABEL = "com.docker.compose.project"
WORKING_DIR_LABEL = "com.docker.compose.project.working_dir"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"


@dataclass(frozen=True)
class ContainerOrigin:
    """One container of a Compose project and the checkout it was created from (its labels)."""

    name: str
    working_dir: str | None
    config_files: tuple[str, ...] = ()

    def where(self) -> str:
        """Words for its checkout, for a refusal sentence."""
        if not self.working_dir:
            return "an unknown directory (its container carries no working-directory label)"
        files = f" (compose files {', '.join(self.config_files)})" if self.config_files else ""
        return f"{self.working_dir}{files}"


def parse_inspect_origins(text: str | bytes) -> list[ContainerOrigin]:
    """Containers from `docker/podman inspect` JSON (an array of objects), with the labels
    Compose records: the project's working directory and its compose files (comma-joined,
    which is why `compose ps`'s one-string Labels cannot be split reliably)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    if not text:
        return []
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ComposeError(f"`inspect` printed something that is not JSON ({exc.msg})") from None
    origins = []
    for item in items if isinstance(items, list) else [items]:
        if not isinstance(item, dict):
            raise ComposeError(f"`inspect` printed {type(item).__name__}, not a container object")
        labels = (item.get("Config") or {}).get("Labels") or {}
        files = labels.get(CONFIG_FILES_LABEL) or ""
        origins.append(ContainerOrigin(
            name=str(item.get("Name") or item.get("Id") or "?").lstrip("/"),
            working_dir=labels.get(WORKING_DIR_LABEL) or None,
            config_files=tuple(f for f in files.split(",") if f)))
    return origins


def same_dir(a: str | Path, b: str | Path) -> bool:
    return os.path.realpath(os.path.expanduser(str(a))) == \
        os.path.realpath(os.path.expanduser(str(b)))


def foreign_origins(origins: Iterable[ContainerOrigin],
                    project_dir: str | Path) -> list[ContainerOrigin]:
    """The containers not created from `project_dir` (another checkout, or unknown). Pure."""
    return [o for o in origins if not (o.working_dir and same_dir(o.working_dir, project_dir))]


def project_origins(engine: Engine, project: str,
                    env: Mapping[str, str] | None = None) -> list[ContainerOrigin]:
    """Every container (running or not) labelled as Compose project `project`, wherever it
    was created from. Raises ComposeError when the engine cannot list them."""
    env = dict(os.environ if env is None else env)
    cli = sh.Command(engine.cli)
    try:
        ids = str(cli("ps", "--all", "--quiet", "--no-trunc", "--filter",
                      f"label={PROJECT_LABEL}={project}", _env=env, _timeout=60,
                      _tty_out=False)).split()
        if not ids:
            return []
        out = str(cli("inspect", "--type", "container", *ids, _env=env, _timeout=60,
                      _tty_out=False))
    except sh.TimeoutException:
        raise ComposeError(f"`{engine.kind}` did not list project {project}'s containers "
                           "within 60 seconds") from None
    except sh.ErrorReturnCode as exc:
        # A container removed between `ps` and `inspect`: the others are still printed.
        out = (exc.stdout or b"").decode("utf-8", "replace")
        if not out.strip().startswith("["):
            detail = _first_line(exc.stderr) or f"exit {exc.exit_code}"
            raise ComposeError(f"could not list project {project}'s containers: "
                               f"{detail}") from None
    return parse_inspect_origins(out)


@dataclass
class Compose:
    """One Compose project: engine, files, env file, profiles and environment."""

    engine: Engine
    project: str
    project_dir: Path
    files: Sequence[Path]
    env_file: Path | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    profiles: Sequence[str] = PROFILES

    def argv(self, *args: str) -> list[str]:
        argv = [*self.engine.compose]
        if self.engine.kind == "docker":
            argv += ["--ansi", "never"]  # no cursor codes in captured or streamed output
        argv += ["--project-name", self.project, "--project-directory", str(self.project_dir)]
        for path in self.files:
            argv += ["--file", str(path)]
        if self.env_file is not None and Path(self.env_file).exists():
            argv += ["--env-file", str(self.env_file)]
        for profile in self.profiles:
            argv += ["--profile", profile]
        return argv + [str(a) for a in args]

    def run(self, *args: str, timeout: float | None = None, stream: Callable | Any = None) -> str:
        """Run `compose ARGS`; return stdout. Failure is a ComposeError with the output's tail.

        stream: where output goes while it runs (e.g. sys.stderr) instead of being captured.
        """
        argv = self.argv(*args)
        cmd = sh.Command(argv[0])
        # no pseudo-terminal (sh's default): Compose would write cursor codes into the output
        kwargs: dict[str, Any] = {"_env": dict(self.env), "_tty_out": False}
        if timeout:
            kwargs["_timeout"] = timeout
        try:
            if stream is not None:
                cmd(*argv[1:], _out=_copier(stream), _err=_copier(stream), **kwargs)
                return ""
            return strip_ansi(str(cmd(*argv[1:], **kwargs)))
        except sh.TimeoutException:
            raise ComposeError(f"`compose {' '.join(args)}` did not finish within "
                               f"{timeout:g} seconds") from None
        except sh.ErrorReturnCode as exc:
            detail = _tail(exc.stderr) or _tail(exc.stdout) or f"exit {exc.exit_code}"
            raise ComposeError(f"`compose {' '.join(args)}` failed (exit {exc.exit_code}): "
                               f"{detail}") from None

    # --- the subcommands the stack uses ----------------------------------------------------
    def config(self) -> dict[str, Any]:
        return json.loads(self.run("config", "--format", "json"))

    def service_names(self) -> list[str]:
        return [s for s in self.run("config", "--services").split() if s]

    def ps(self, services: Iterable[str] = ()) -> list[dict[str, Any]]:
        return parse_ps_json(self.run("ps", "--all", "--format", "json", *services))

    def up(self, services: Sequence[str], build: bool = True, stream=None,
           timeout: float | None = None) -> None:
        if build:
            # Built quietly first: a person needs the build log only when it fails, and then
            # ComposeError carries its tail.
            self.run("build", "--quiet", *services, timeout=timeout)
        args = ["up", "--detach", "--no-deps" if services else "", "--pull", "never", "--no-build"]
        self.run(*[a for a in args if a], *services, stream=stream or sys.stderr, timeout=timeout)

    def pull(self, services: Sequence[str], stream=None) -> None:
        self.run("pull", "--quiet", *services, stream=stream or sys.stderr)

    def stop(self, services: Sequence[str] = (), stream=None) -> None:
        self.run("stop", *services, stream=stream or sys.stderr)

    def down(self, volumes: bool = False, stream=None) -> None:
        args = ["down", "--remove-orphans"] + (["--volumes"] if volumes else [])
        self.run(*args, stream=stream or sys.stderr)

    def logs(self, services: Sequence[str] = (), tail: int | None = None, stream=None) -> str:
        """What the containers logged so far. Following is tasks/stack.py's follow_containers:
        it copies lines itself, so a reader that goes away ends it quietly."""
        args = ["logs", "--no-color"]
        if tail is not None:
            args += ["--tail", str(tail)]
        return self.run(*args, *services, stream=stream)


def _copier(stream) -> Callable[[str], None]:
    """sh's output callback: chunks to `stream`, cursor codes removed. A reader that went
    away (`inv stop 2>&1 | head -1`) silences it, not the command: sh's reader thread would
    print a traceback, and stop/down must still finish."""
    gone = False

    def copy(chunk: str) -> None:
        nonlocal gone
        if gone:
            return
        try:
            stream.write(strip_ansi(chunk))
            stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            gone = True

    return copy


def compose_files(compose_dir: Path, offline: bool, extra: Sequence[str | Path] = ()) -> list[Path]:
    """The compose files in the order Compose merges them."""
    files = [compose_dir / BASE_FILE]
    if offline:
        files.append(compose_dir / OFFLINE_FILE)
    files += [Path(p) for p in extra if str(p)]
    return files
