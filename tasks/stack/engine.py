"""Which container engine this machine has (Docker Desktop, OrbStack, Colima, Podman, dockerd)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass


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
        if self.cli == "podman":
            return "podman machine start"
        if os.environ.get("DOCKER_HOST"):
            return f"check DOCKER_HOST={os.environ['DOCKER_HOST']} (unset it for the local engine)"
        if self.kind in ("Docker Desktop", "OrbStack"):
            return f"start {self.kind}"
        return "start the Docker daemon (sudo systemctl start docker, or sudo dockerd &)"


def _output(cmd: list[str], timeout: float = 10, env: dict | None = None) -> tuple[int, str, str]:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return 124, "", f"'{' '.join(cmd)}' timed out after {timeout:.0f}s"
    except OSError as exc:
        return 127, "", str(exc)
    return done.returncode, done.stdout.strip(), done.stderr.strip()


def engine_kind(info: dict, context: str, cli: str) -> str:
    """Name the engine from `docker info`: what a user would call it."""
    os_name = str(info.get("OperatingSystem", ""))
    name = str(info.get("Name", ""))
    if cli == "podman" or "podman" in os_name.lower():
        return "Podman"
    if "Docker Desktop" in os_name:
        return "Docker Desktop"
    if "OrbStack" in os_name or name == "orbstack" or context == "orbstack":
        return "OrbStack"
    if "colima" in (name + context).lower():
        return "Colima"
    return "dockerd"


def describe_engine() -> EngineInfo:
    cli = "docker" if shutil.which("docker") else "podman" if shutil.which("podman") else None
    if cli is None:
        return EngineInfo(cli=None, answers=False, error="no docker or podman command")
    _, context, _ = _output([cli, "context", "show"]) if cli == "docker" else (0, "", "")
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
        return EngineInfo(cli=cli, answers=False, context=context, error=error)
    engine = EngineInfo(cli=cli, answers=True, context=context,
                        kind=engine_kind(info, context, cli),
                        server_version=str(info.get("ServerVersion") or info.get("version", {}).get("Version", "")))
    code, out, _ = _output([cli, "compose", "version", "--short"])
    engine.compose_version = out.splitlines()[0] if code == 0 and out else None
    return engine


def engine_rootless(cli: str, kind: str, env: dict | None = None) -> bool:
    """Whether the engine runs as the user (rootless Podman or Docker): then images that root
    builds (`sudo inv setup`) land in root's store, not in the one this user's engine reads."""
    if kind == "podman":
        fmt = "{{.Host.Security.Rootless}}"
    else:
        fmt = "{{json .SecurityOptions}}"
    code, out, _ = _output([cli, "info", "--format", fmt], env=env)
    if code != 0:
        return False
    return out.strip() == "true" if kind == "podman" else "rootless" in out
