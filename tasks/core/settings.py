"""The stack's settings: defaults, overlaid by `.env.dev`, overlaid by the environment.

Also the control plane's one URL builder (`http_url`): every URL the tasks call or print is
written by it, so an IPv6 host comes out in brackets.
"""
from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from tasks.core.errors import TaskError
from tasks.core.env_file import EnvFileContents, scan_env_file

REPO_ROOT = Path(__file__).resolve().parents[2]

CORE_SERVICES = ("nats", "grafana", "loki", "tempo", "prometheus")
APP_SERVICES = ("model-gateway", "mcp-registry")
ALL_SERVICES = CORE_SERVICES + APP_SERVICES

DEFAULTS = {
    "MLX_HOST": "127.0.0.1",
    "MLX_PORT": "8081",
    "MLX_WAIT_TIMEOUT": "120",
    "CORTEX_API_PORT": "8080",
    "CORTEX_WEBUI_PORT": "3000",
    "CORTEX_MODEL_GATEWAY_PORT": "8083",
    "CORTEX_MCP_REGISTRY_PORT": "8084",
    "CORTEX_NATS_PORT": "4222",
    "CORTEX_NATS_MONITOR_PORT": "8222",
    "CORTEX_GRAFANA_PORT": "3001",
    "CORTEX_LOKI_PORT": "3100",
    "CORTEX_TEMPO_PORT": "3200",
    "CORTEX_PROMETHEUS_PORT": "9090",
    "CORTEX_COMPOSE_PROJECT": "cortex",
}

# MLX_STOP_GRACE: seconds the service has from SIGTERM to exit. The service drains within it
# (mlx_service/config.py reads the same name and bounds), and the lifecycle waits it before
# SIGKILL: one setting for both sides.
STOP_GRACE_DEFAULT = 10
STOP_GRACE_MINIMUM = 2


# Compose's rule for a project name (it refuses any other, in words that do not name our
# setting): lowercase letters, digits, dashes and underscores, starting with a letter or digit.
COMPOSE_PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")

# A service listening on a wildcard address is called on the loopback of the same family.
WILDCARD_CALLED_ON = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1", "[::]": "::1"}


class SettingsError(TaskError, ValueError):
    """A setting has a value the stack cannot use (it names the setting, or the env file and
    line): exit 2, as for a bad flag."""

    exit_code = 2


def positive_seconds(name: str, raw) -> float:
    """A NAME=seconds setting: a finite number above 0 (nan, inf and -1 wait never or not at
    all), or SettingsError naming it."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{name}={raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(f"{name}={raw!r} must be a finite number of seconds above 0")
    return value


def http_url(host: str, port: int, path: str = "") -> str:
    """`http://host:port/path`; an IPv6 literal goes in brackets, its zone id escaped (RFC 6874)."""
    host = host.strip()
    if ":" in host and not host.startswith("["):
        host = "[" + host.replace("%", "%25") + "]"
    return f"http://{host}:{port}{path}"


def with_path(base_url: str, path: str) -> str:
    """An endpoint of a service whose base URL we hold (`http://host:port` + `/health`)."""
    return base_url.rstrip("/") + path


def called_host(listen_host: str) -> str:
    """The address to call a service on that listens on `listen_host`."""
    host = listen_host.strip()
    return WILDCARD_CALLED_ON.get(host, host)


@dataclass(frozen=True)
class Settings:
    root: Path
    env: Mapping[str, str] = field(repr=False)

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.env.get(name)
        return value if value not in (None, "") else default

    def port(self, name: str) -> int:
        raw = self.get(name)
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise SettingsError(f"{name}={raw!r} is not a port number") from None
        if not 1 <= value <= 65535:
            raise SettingsError(f"{name}={value} is outside 1-65535")
        return value

    # --- host embedding service -------------------------------------------------------
    @property
    def mlx_host(self) -> str:
        return self.get("MLX_HOST", "127.0.0.1")

    @property
    def mlx_port(self) -> int:
        # load_settings leaves MLX_PORT unset when the seed's CORTEX_MLX_PORT is the one chosen
        # (resolve_mlx_port), so an error names the variable the user actually set.
        if self.get("MLX_PORT") is None and self.get("CORTEX_MLX_PORT") is not None:
            return self.port("CORTEX_MLX_PORT")
        return self.port("MLX_PORT")

    @property
    def mlx_url(self) -> str:
        # MLX_HOST may list several addresses; the first is the one to call.
        return http_url(called_host(self.mlx_host.split(",")[0]), self.mlx_port)

    def mlx_endpoint(self, path: str) -> str:
        """One endpoint of the host service, e.g. mlx_endpoint("/health")."""
        return with_path(self.mlx_url, path)

    @property
    def mlx_host_url(self) -> str:
        """How containers reach the host service."""
        return self.get("MLX_HOST_URL", http_url("host.docker.internal", self.mlx_port))

    @property
    def mlx_api_key(self) -> str | None:
        """MLX_API_KEY: when set, the host service wants it on its embedding endpoints."""
        key = (self.get("MLX_API_KEY") or "").strip()
        if any(not 33 <= ord(ch) <= 126 for ch in key):
            # Named, never printed: a header cannot carry spaces, control or non-ASCII.
            raise SettingsError("MLX_API_KEY has characters an HTTP header cannot carry "
                                "(use printable ASCII without spaces)")
        return key or None

    def mlx_auth_headers(self) -> dict[str, str]:
        """What every call of ours to the host service's embedding endpoints carries."""
        key = self.mlx_api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    @property
    def mlx_stop_grace(self) -> float:
        """MLX_STOP_GRACE, validated as the service validates it (whole seconds, at least 2)."""
        raw = self.get("MLX_STOP_GRACE")
        if raw is None:
            return float(STOP_GRACE_DEFAULT)
        try:
            value = int(raw.strip())
        except ValueError:
            raise SettingsError(f"MLX_STOP_GRACE={raw!r} is not a whole number of seconds") \
                from None
        if value < STOP_GRACE_MINIMUM:
            raise SettingsError(f"MLX_STOP_GRACE={value} is below {STOP_GRACE_MINIMUM} seconds")
        return float(value)

    @property
    def embeddings_model(self) -> str | None:
        return self.get("EMBEDDINGS_MODEL")

    @property
    def embeddings_dim(self) -> str | None:
        return self.get("EMBEDDINGS_DIM")

    @property
    def mlx_venv(self) -> Path:
        return Path(self.get("MLX_VENV_PATH", str(self.root / ".venv-mlx"))).expanduser()

    @property
    def mlx_wait_timeout(self) -> float:
        return positive_seconds("MLX_WAIT_TIMEOUT", self.get("MLX_WAIT_TIMEOUT", "120"))

    @property
    def log_dir(self) -> Path:
        return Path(self.get("CORTEX_LOG_DIR", str(self.root / "logs")))

    @property
    def run_dir(self) -> Path:
        return Path(self.get("CORTEX_RUN_DIR", str(self.root / "run")))

    @property
    def mlx_log(self) -> Path:
        return self.log_dir / "mlx-server.log"

    @property
    def mlx_pidfile(self) -> Path:
        return self.run_dir / "mlx-server.pid"

    # --- containers ---------------------------------------------------------------------
    @property
    def compose_project(self) -> str:
        name = self.get("CORTEX_COMPOSE_PROJECT", "cortex")
        if not COMPOSE_PROJECT_NAME.fullmatch(name):
            raise SettingsError(f"CORTEX_COMPOSE_PROJECT={name!r} is not a Compose project "
                                "name: use lowercase letters, digits, dashes and underscores, "
                                "starting with a letter or digit")
        return name

    @property
    def compose_dir(self) -> Path:
        return self.root / "compose"

    @property
    def env_file(self) -> Path:
        return env_file_path(self.root, self.env)

    def ports(self) -> dict[str, int]:
        """Every published port by the name status uses for it."""
        return {
            "api": self.port("CORTEX_API_PORT"),
            "mlx": self.mlx_port,
            "webui": self.port("CORTEX_WEBUI_PORT"),
            "modelGateway": self.port("CORTEX_MODEL_GATEWAY_PORT"),
            "mcpRegistry": self.port("CORTEX_MCP_REGISTRY_PORT"),
            "nats": self.port("CORTEX_NATS_PORT"),
            "natsMonitor": self.port("CORTEX_NATS_MONITOR_PORT"),
            "grafana": self.port("CORTEX_GRAFANA_PORT"),
            "loki": self.port("CORTEX_LOKI_PORT"),
            "tempo": self.port("CORTEX_TEMPO_PORT"),
            "prometheus": self.port("CORTEX_PROMETHEUS_PORT"),
        }

    def with_env(self, **overrides: str) -> "Settings":
        return Settings(self.root, {**self.env, **overrides})


def env_file_path(root: Path, environ: Mapping[str, str]) -> Path:
    """`.env.dev` in the checkout, or the file CORTEX_ENV_FILE names."""
    named = environ.get("CORTEX_ENV_FILE")
    return Path(named).expanduser() if named else Path(root) / ".env.dev"


def _sets(layer: Mapping[str, str], name: str) -> bool:
    return layer.get(name) not in (None, "")


def resolve_mlx_port(merged: dict[str, str], layers: list[Mapping[str, str]]) -> None:
    """MLX_PORT and the seed's CORTEX_MLX_PORT name one port. The layer nearest the user that
    sets either decides (environment, then .env.dev, then the default 8081); within that layer
    MLX_PORT wins. When CORTEX_MLX_PORT decides, the lower layers' MLX_PORT is dropped."""
    for layer in layers:
        if _sets(layer, "MLX_PORT"):
            return
        if _sets(layer, "CORTEX_MLX_PORT"):
            merged.pop("MLX_PORT", None)
            merged["CORTEX_MLX_PORT"] = layer["CORTEX_MLX_PORT"]
            return


def read_settings(root: Path | None = None,
                  environ: Mapping[str, str] | None = None) -> tuple[Settings, EnvFileContents]:
    """Defaults < the env file's usable lines < environment, and what the file got wrong
    (lines that cannot be used, names set twice): `inv verify` reports those and checks the rest."""
    root = Path(root or REPO_ROOT)
    environ = os.environ if environ is None else environ
    found = scan_env_file(env_file_path(root, environ))
    merged: dict[str, str] = {**DEFAULTS, **found.values, **environ}
    resolve_mlx_port(merged, [environ, found.values])
    return Settings(root, merged), found


def load_settings(root: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults < `.env.dev` < environment. Values are validated lazily, by the property read;
    a line of the file that cannot be used stops the task first (SettingsError naming it)."""
    settings, found = read_settings(root, environ)
    if found.problems:  # the file and line, before any task goes on
        raise SettingsError(found.problems[0])
    return settings


def python_for_tools() -> str:
    """The interpreter running the tasks: used to start helpers the same way."""
    return sys.executable
