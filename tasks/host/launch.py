"""What a start runs: the service's command, environment, listen addresses and URL, the
port check before it, and the header a start writes into the log. Decided under the lock."""
from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from mlx_service.config import ConfigError, parse_log_max_bytes

from tasks.core.say import Say
from tasks.core.settings import Settings, SettingsError, called_host, http_url
from tasks.host.bind_addresses import bind_addresses
from tasks.host.pidfile import TOKEN_VAR, RunMode, new_token, remove_pidfile
from tasks.host.port_holders import address_free, describe_holders, port_holders
from tasks.host.process_groups import ServiceError, terminate_group
from tasks.host.service_state import MARKER, ServiceState, owner_of
from tasks.host.service_venv import install_service_venv, service_python
from tasks.host.watch import service_src


@dataclass
class Launch:
    """What a start runs, decided under the lock."""

    cmd: list[str]
    env: dict[str, str]
    cwd: Path
    bind: list[str]
    url: str
    venv: Path


def service_url(settings: Settings, bind: list[str] | None = None) -> str:
    """The URL to probe: the first listen address (a wildcard is probed on loopback)."""
    hosts = bind or [h.strip() for h in settings.mlx_host.split(",") if h.strip()] or ["127.0.0.1"]
    return http_url(called_host(hosts[0]), settings.mlx_port)


def service_command(settings: Settings, venv_path: Path | None, bind: list[str],
                    extra_args: Iterable[str] = ()) -> list[str]:
    python = service_python(settings, venv_path)
    cmd = [str(python), "-m", MARKER, "--host", ",".join(bind), "--port", str(settings.mlx_port)]
    # EMBEDDINGS_MODEL and EMBEDDINGS_DIM reach the service in its environment (service_env),
    # not as --model/--dim: a value it refuses is then named as the variable the user set.
    return cmd + list(extra_args)


def service_env(settings: Settings, bind: list[str]) -> dict[str, str]:
    env = {k: str(v) for k, v in settings.env.items() if v is not None}
    src = str(service_src(settings))
    env.update(MLX_HOST=",".join(bind), MLX_PORT=str(settings.mlx_port), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([src] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def prepare_launch(settings: Settings, state: ServiceState, venv: Path, install: bool,
                   extra_args: list[str], say: Say) -> Launch:
    """Under the lock: end our leftovers, install the venv, decide the command."""
    if state.leftovers:
        say(f"cleaning up: {state.stale}")
        terminate_group(state.record.pid, 5.0, say, owner_of(state.record))
        remove_pidfile(settings.mlx_pidfile)
    if install:
        if not install_service_venv(settings, venv, say=say):
            say(f"venv up to date ({venv})")
    python = service_python(settings, venv)
    if not python.exists():
        raise ServiceError(f"the service venv {venv} does not exist; run `inv mlx install`")
    bind = bind_addresses(settings)
    cwd = service_src(settings)
    if not (cwd / MARKER).is_dir():
        raise ServiceError(f"no {MARKER} package in {cwd} (MLX_SERVICE_SRC)")
    env = dict(service_env(settings, bind), **{TOKEN_VAR: new_token()})
    return Launch(service_command(settings, venv, bind, extra_args), env, cwd, bind,
                  service_url(settings, bind), venv)


def check_port(settings: Settings, bind: list[str]) -> None:
    """ServiceError naming the holder when the port is taken on one of `bind`."""
    port = settings.mlx_port
    busy = [a for a in bind if not address_free(a, port)]
    if not busy:
        return
    holders = port_holders(port, bind)
    raise ServiceError(
        f"port {port} is already in use on {', '.join(busy)} by {describe_holders(holders)}; "
        f"stop that program or choose another port (MLX_PORT)")


def log_header(cmd: list[str], bind: list[str], port: int, mode: RunMode) -> bytes:
    """The line a start writes into the log before the service's own output."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return (f"\n===== {stamp} inv mlx start ({mode}): {shlex.join(cmd)} "
            f"[listen {', '.join(bind)} port {port}]\n").encode()


def log_max_bytes(settings: Settings) -> int:
    """MLX_LOG_MAX_BYTES by the service's own parser (one rule for both: a value the service
    would refuse is refused here too, in its words)."""
    try:
        return parse_log_max_bytes(settings.env)
    except ConfigError as exc:
        raise SettingsError(str(exc)) from None
