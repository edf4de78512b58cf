"""A thin Compose wrapper over the one engine runner (tasks.core.runner, built on `sh`).

It names the project, the env file, the compose files and the profiles once, and runs Compose
subcommands with them through the Engine that tasks.stack.engine found. It never sets
DOCKER_HOST or a context: whatever the user's environment selects is what it talks to.
A failed subcommand is a ComposeError carrying the last lines of its output.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from tasks.core import runner
from tasks.stack.container import Container, parse_ps_json
from tasks.stack.engine import Engine, EngineKind
from tasks.stack.errors import ComposeError
from tasks.core.output_text import strip_ansi

PROFILES = ("core", "app")
BASE_FILE = "docker-compose.yml"
OFFLINE_FILE = "docker-compose.offline.yml"


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
        if self.engine.kind == EngineKind.DOCKER:
            argv += ["--ansi", "never"]  # no cursor codes in captured or streamed output
        argv += ["--project-name", self.project, "--project-directory", str(self.project_dir)]
        for path in self.files:
            argv += ["--file", str(path)]
        if self.env_file is not None and Path(self.env_file).exists():
            argv += ["--env-file", str(self.env_file)]
        for profile in self.profiles:
            argv += ["--profile", profile]
        return argv + [str(a) for a in args]

    def run(self, *args: str, timeout: float | None = None, stream: Any = None) -> str:
        """Run `compose ARGS`; return stdout. Failure is a ComposeError with the output's tail.

        stream: where output goes while it runs (e.g. sys.stderr) instead of being captured.
        """
        argv = self.argv(*args)
        if stream is not None:
            done = runner.stream(argv, copier(stream), env=self.env, timeout=timeout)
        else:
            done = runner.run(argv, env=self.env, timeout=timeout)
        done.check(ComposeError, f"`compose {' '.join(args)}`", streamed=stream is not None)
        return strip_ansi(done.stdout)

    def follow(self, *args: str) -> runner.Following:
        """`compose ARGS` read line by line while it runs (`logs --follow`)."""
        return runner.Following(self.argv(*args), env=self.env)

    # --- the subcommands the stack uses ----------------------------------------------------
    def config(self) -> dict[str, Any]:
        return json.loads(self.run("config", "--format", "json"))

    def service_names(self) -> list[str]:
        return [s for s in self.run("config", "--services").split() if s]

    def ps(self, services: Iterable[str] = ()) -> list[Container]:
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
        """What the containers logged so far. Following is tasks.stack.logs.follow_containers:
        it copies lines itself, so a reader that goes away ends it quietly."""
        args = ["logs", "--no-color"]
        if tail is not None:
            args += ["--tail", str(tail)]
        return self.run(*args, *services, stream=stream)


def copier(stream) -> Callable[[str], None]:
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
