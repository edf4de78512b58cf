"""Issue 28 on a real Docker engine, through the real `inv`: the stack tells the truth in
every state.

Row 15: `inv status` right after `inv start` shows every Prometheus target up or down (start
waits for the first scrape). Row 6: `inv mlx restart` on a new port makes the gateway and
Prometheus follow. Row 2: a stopped gateway fails roundtrip's gateway step. Row 1: a container
`inv start` started and that was removed by hand is named by `inv health`, exit 1.

One compose project, ports and run folder of the module's own; the tests run in this order,
each leaving the stack as the next one expects it.
"""
from __future__ import annotations

import json
import os

import pytest
import requests

from tests.e2e.stack.test_careless_stack_e2e import _ok, docker, remove_project
from tests.support import free_port, inv, isolated_env

SERVICES = "nats,model-gateway,prometheus"


@pytest.fixture(scope="module")
def stack(engine, stack_env, tmp_path_factory):
    ports = {var: str(free_port()) for var in stack_env
             if var.startswith("CORTEX_") and var.endswith("_PORT")}
    env = isolated_env(tmp_path_factory.mktemp("truthful"), CORTEX_IMAGES="local",
                       CORTEX_READY_TIMEOUT="120",
                       CORTEX_COMPOSE_PROJECT=f"cortex-truthful-{os.getpid()}", **ports)
    started = inv("start", f"--services={SERVICES}", "--no-install", env=env, timeout=900)
    _ok(started, f"inv start --services={SERVICES}")
    yield {"env": env, "start": started}
    inv("mlx", "stop", env=env, timeout=120)  # the PID file names it, whatever its port
    remove_project(env["CORTEX_COMPOSE_PROJECT"])


def container_of(env: dict, service: str) -> str:
    return f"{env['CORTEX_COMPOSE_PROJECT']}-{service}-1"


def test_status_right_after_start_shows_each_target_scraped(stack):
    env = stack["env"]
    assert "prometheus scraped every target once" in stack["start"].stderr, stack["start"].stderr
    doc = json.loads(inv("status", "--json", env=env, timeout=120).stdout)
    targets = doc["services"]["prometheus"]["targets"]
    assert set(targets.values()) <= {"up", "down"}, targets
    assert {job: targets.get(job) for job in ("mlx", "model-gateway", "prometheus")} == {
        "mlx": "up", "model-gateway": "up", "prometheus": "up"}, targets


def test_restart_on_a_new_port_makes_the_gateway_follow(stack):
    env = stack["env"]
    moved = str(free_port())
    restarted = inv("mlx", "restart", "--no-install", "--timeout", "240",
                    env=dict(env, MLX_PORT=moved), timeout=600)
    _ok(restarted, f"MLX_PORT={moved} inv mlx restart")
    stack["moved"] = moved
    assert f"moved from port {env['MLX_PORT']} to {moved}: recreating model-gateway, " \
           f"prometheus" in restarted.stderr, restarted.stderr
    gateway = f"http://127.0.0.1:{env['CORTEX_MODEL_GATEWAY_PORT']}"
    upstream = requests.get(f"{gateway}/health", timeout=10).json()["upstream"]
    assert upstream["url"].endswith(f":{moved}"), upstream
    # Without the variable: health finds the service where it runs, the gateway reaches it.
    checked = inv("health", env=env, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    roundtrip = inv("roundtrip", env=env, timeout=300)
    assert roundtrip.returncode == 0, roundtrip.stdout + roundtrip.stderr
    assert "[ok  ] gateway: container -> host vectors equal the host's" in roundtrip.stdout


def test_roundtrip_fails_when_the_gateway_it_started_is_stopped(stack):
    env = stack["env"]
    docker("stop", container_of(env, "model-gateway"))
    # The port it runs on, named: only the gateway step is in question here.
    done = inv("roundtrip", env=dict(env, MLX_PORT=stack.get("moved", env["MLX_PORT"])),
               timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[FAIL] gateway: model-gateway does not answer" in done.stdout, done.stdout
    assert "inv start started it" in done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("roundtrip FAILED")


def test_health_names_a_started_container_that_is_gone(stack):
    env = stack["env"]
    docker("rm", "--force", container_of(env, "nats"))
    checked = inv("health", env=env, timeout=120)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    said = checked.stderr.strip().splitlines()[-1]
    assert said.startswith("unhealthy: ") and "nats (absent: gone: inv start started it" in said, \
        said
    row = next(line for line in checked.stdout.splitlines() if line.startswith("nats"))
    assert "gone" in row, row
    shown = inv("status", env=env, timeout=120).stdout
    assert any(line.split()[:2] == ["nats", "gone"] for line in shown.splitlines()), shown
    # A service the stack never started is not a problem, only "no container".
    grafana = next(line for line in checked.stdout.splitlines() if line.startswith("grafana"))
    assert "no container" in grafana and "grafana" not in said
