"""The e2e session: a real Docker engine, one compose project and free ports for the session.

No skips: without an engine that answers, every test here fails with a sentence saying so.
Images come from local builds (CORTEX_IMAGES=local), so nothing but loopback and this
project's own containers is contacted.
"""
from __future__ import annotations

import subprocess

import pytest

from tests.support import free_port, isolated_env

PORT_VARS = ("CORTEX_NATS_PORT", "CORTEX_NATS_MONITOR_PORT", "CORTEX_MODEL_GATEWAY_PORT",
             "CORTEX_MCP_REGISTRY_PORT", "CORTEX_GRAFANA_PORT", "CORTEX_LOKI_PORT",
             "CORTEX_TEMPO_PORT", "CORTEX_TEMPO_OTLP_GRPC_PORT", "CORTEX_TEMPO_OTLP_HTTP_PORT",
             "CORTEX_API_PORT", "CORTEX_WEBUI_PORT", "CORTEX_PROMETHEUS_PORT")


def _engine_problem() -> str | None:
    try:
        done = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return "the docker command is not installed"
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30s"
    if done.returncode != 0 or not done.stdout.strip():
        return (done.stderr.strip().splitlines() or ["`docker info` failed"])[-1].rstrip(".")
    return None


@pytest.fixture(scope="session")
def engine():
    problem = _engine_problem()
    if problem:
        pytest.fail(f"The e2e tests need a running Docker engine and none answers: {problem}. "
                    "(scripts/install-docker-engine.sh, which scripts/bootstrap.sh runs, installs "
                    "and starts one.)", pytrace=False)


@pytest.fixture(scope="session")
def stack_env(engine, tmp_path_factory):
    """The environment every `inv` of the session runs with; the project is removed after."""
    tmp = tmp_path_factory.mktemp("stack")
    ports: set[int] = set()
    overrides = {}
    for var in PORT_VARS:
        port = free_port()
        while port in ports:
            port = free_port()
        ports.add(port)
        overrides[var] = str(port)
    env = isolated_env(tmp, CORTEX_IMAGES="local", CORTEX_READY_TIMEOUT="120", **overrides)
    yield env
    _teardown(env)


def _teardown(env: dict[str, str]) -> None:
    from tasks.stack.engine import find_engine
    from tasks.core.settings import load_settings
    from tasks.stack.project import make_stack
    settings = load_settings(environ=env)
    try:
        from tasks.host.mlx_process import stop_service
        stop_service(settings, say=lambda line: None)
    finally:
        stack = make_stack(settings, find_engine(env), offline=True)
        subprocess.run(stack.compose.argv("down", "--volumes", "--remove-orphans"), env=env,
                       capture_output=True, timeout=180)
