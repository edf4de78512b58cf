"""Issue 17 on a real Docker engine, through the real `inv`: the stack rows of a careless
user's day.

Row 3: the host service runs on another port than the configured one; `inv start` points the
gateway at it, and a gateway whose upstream does not answer is not ready (start and health
say which upstream and why). Row 9: a stopped container is named by `inv health`. Row 10:
`inv logs` of several services. Row 15: another checkout's containers of the same project
name are told apart by status and health, and `inv start` never starts them. Row 17: status
shows the engine's own version, not Compose's.

Each test has its own compose project and ports, and removes what it made.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support import free_port, inv, isolated_env


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300,
                          check=check)


def _ok(done: subprocess.CompletedProcess, what: str) -> None:
    assert done.returncode == 0, (f"{what} exited {done.returncode}\n--- stdout\n"
                                  f"{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-5000:]}")


def project_containers(project: str) -> list[dict]:
    ids = docker("ps", "--all", "--quiet", "--filter",
                 f"label=com.docker.compose.project={project}").stdout.split()
    return json.loads(docker("inspect", *ids).stdout) if ids else []


def remove_project(project: str) -> None:
    """Every container, volume and network labelled with the project, wherever it came from."""
    label = f"label=com.docker.compose.project={project}"
    ids = docker("ps", "--all", "--quiet", "--filter", label).stdout.split()
    if ids:
        docker("rm", "--force", "--volumes", *ids, check=False)
    for kind in ("volume", "network"):
        names = docker(kind, "ls", "--quiet", "--filter", label).stdout.split()
        if names:
            docker(kind, "rm", *names, check=False)


@pytest.fixture
def own_env(engine, stack_env, tmp_path, request):
    """An environment of the test's own: project name, every published port, run and log
    folders; the host service stopped and the project removed afterwards."""
    ports = {var: str(free_port()) for var in stack_env
             if var.startswith("CORTEX_") and var.endswith("_PORT")}
    project = f"cortex-careless-{os.getpid()}-{request.node.name[:20].lower().strip('_')}"
    env = isolated_env(tmp_path, CORTEX_IMAGES="local", CORTEX_READY_TIMEOUT="120",
                       CORTEX_COMPOSE_PROJECT=project.replace("_", "-"), **ports)
    yield env
    for port in {env["MLX_PORT"], *env.get("_OTHER_MLX_PORTS", "").split()}:
        if port:
            inv("mlx", "stop", env=dict(env, MLX_PORT=port), timeout=120)
    remove_project(env["CORTEX_COMPOSE_PROJECT"])


# --- row 3 ---------------------------------------------------------------------------------------

def test_start_points_the_gateway_at_the_running_service_and_degraded_is_not_ready(own_env):
    configured, running = own_env["MLX_PORT"], str(free_port())
    own_env["_OTHER_MLX_PORTS"] = running
    _ok(inv("mlx", "start", "--no-install", env=dict(own_env, MLX_PORT=running), timeout=600),
        f"MLX_PORT={running} inv mlx start")

    started = inv("start", "--services=model-gateway", "--no-install", env=own_env, timeout=600)
    _ok(started, "inv start --services=model-gateway")
    assert f"runs on port {running}, not the configured {configured}" in started.stderr
    gateway = f"http://127.0.0.1:{own_env['CORTEX_MODEL_GATEWAY_PORT']}"
    upstream = requests.get(f"{gateway}/health", timeout=10).json()["upstream"]
    assert upstream["url"].endswith(f":{running}"), upstream
    embedded = requests.post(f"{gateway}/embed", json={"input": ["hello"]}, timeout=60)
    assert embedded.status_code == 200, embedded.text

    _ok(inv("mlx", "stop", env=dict(own_env, MLX_PORT=running), timeout=120), "inv mlx stop")
    checked = inv("health", env=own_env, timeout=120)
    assert checked.returncode == 1
    row = next(line for line in checked.stdout.splitlines() if line.startswith("model-gateway"))
    assert "degraded" in row and row.split()[3] == "no", row  # name running healthy READY
    assert "model-gateway (degraded (upstream http://" in checked.stderr, checked.stderr
    assert f":{running}" in checked.stderr

    again = inv("start", "--services=model-gateway", "--no-mlx", "--timeout=8", env=own_env,
                timeout=300)
    assert again.returncode == 1
    # No host service runs now: the gateway is back on the configured port, and says so.
    said = next(line for line in again.stderr.splitlines() if "did not become ready" in line)
    assert f"degraded (upstream http://host.docker.internal:{configured}" in said, said
    assert "Traceback" not in again.stderr


# --- rows 9, 10, 17 ------------------------------------------------------------------------------

@pytest.fixture
def nats_running(own_env):
    _ok(inv("start", "--services=nats", "--no-mlx", env=own_env, timeout=600),
        "inv start --services=nats --no-mlx")
    return own_env


def test_health_names_a_stopped_container(nats_running):
    [container] = project_containers(nats_running["CORTEX_COMPOSE_PROJECT"])
    docker("stop", container["Name"].lstrip("/"))
    checked = inv("health", env=nats_running, timeout=120)
    assert checked.returncode == 1
    said = checked.stderr.strip().splitlines()[-1]
    assert said.startswith("unhealthy: ") and "nats (exited" in said, said


def test_logs_of_several_services(nats_running):
    log = Path(nats_running["CORTEX_LOG_DIR"]) / "mlx-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("a line of the host service\n")
    for args in (["logs", "-s", "mlx", "-s", "nats", "--tail", "20"],
                 ["logs", "mlx", "nats", "--tail", "20"]):
        done = inv(*args, env=nats_running, timeout=120)
        _ok(done, "inv " + " ".join(args))
        assert "mlx-server | a line of the host service" in done.stdout
        assert any(line.startswith("nats-1") and "|" in line
                   for line in done.stdout.splitlines()), done.stdout


def test_status_shows_the_engine_version_not_compose_s(own_env):
    server = docker("info", "--format", "{{.ServerVersion}}").stdout.strip()
    compose = docker("compose", "version", "--short").stdout.strip()
    assert server != compose
    doc = json.loads(inv("status", "--json", env=own_env, timeout=120).stdout)
    assert doc["engine"]["version"] == server and doc["engine"]["compose"] == compose
    shown = inv("status", env=own_env, timeout=120).stdout
    assert f"engine    docker {server} (Compose {compose})" in shown


# --- row 15 --------------------------------------------------------------------------------------

OTHER_COMPOSE = """\
services:
  nats:
    image: cortex-dev/nats:local
    pull_policy: never
"""


def test_another_checkout_s_containers_are_told_apart_and_never_started(own_env, tmp_path):
    project = own_env["CORTEX_COMPOSE_PROJECT"]
    where = tmp_path / "colleague-checkout"
    where.mkdir()
    (where / "docker-compose.yml").write_text(OTHER_COMPOSE)
    compose = ["compose", "--project-name", project, "--project-directory", str(where),
               "--file", str(where / "docker-compose.yml")]
    docker(*compose, "up", "--detach", "--pull", "never")

    doc = json.loads(inv("status", "--json", env=own_env, timeout=120).stdout)
    nats = doc["services"]["nats"]
    assert nats["ready"] is False and str(where) in nats["detail"], nats
    [container] = doc["containers"]
    assert str(where) in container["OtherCheckout"]
    checked = inv("health", env=own_env, timeout=120)
    assert checked.returncode == 1 and str(where) in checked.stderr

    docker(*compose, "stop")
    started = inv("start", "--services=nats", "--no-mlx", env=own_env, timeout=300)
    assert started.returncode == 1
    assert str(where) in started.stderr and "started nothing" in started.stderr
    [after] = project_containers(project)
    assert after["State"]["Status"] == "exited"
    assert after["Config"]["Labels"]["com.docker.compose.project.working_dir"] == str(where)
