"""Issue 28, rows 3, 4 and 16, through the real `inv` and the real host service.

Row 3: the service was started on another port than the configured one (`MLX_PORT=P inv mlx
start`); roundtrip, status and verify, run without the variable, find it where it runs (its
PID file), as `inv mlx status` does. Row 16: roundtrip says what it checked, and never names
the seed payload's "qwen3-embed", which the stack does not serve. Row 4: a start asking for
another model than the running one is refused in one line, `inv verify` does not call both
ok, and `inv mlx restart` serves the one asked for.
"""
from __future__ import annotations

import json

import pytest

from tests.support import FIXTURES, free_port, health, inv, isolated_env

OTHER_MODEL = FIXTURES / "tiny-models" / "qwen3-last"


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """A service running on a port of its own; the environment configures another one."""
    env = isolated_env(tmp_path_factory.mktemp("moved"),
                       CORTEX_MODEL_GATEWAY_PORT=str(free_port()))
    running = str(free_port())
    started = inv("mlx", "start", "--no-install", "--timeout", "240",
                  env=dict(env, MLX_PORT=running), timeout=400)
    assert started.returncode == 0, started.stderr
    yield env, int(running)
    inv("mlx", "stop", env=env, timeout=120)  # the PID file names it, whatever the port


def test_roundtrip_checks_the_service_where_it_runs_and_names_what_it_checked(moved):
    env, running = moved
    done = inv("roundtrip", env=env, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    said = done.stdout
    assert f"[ok  ] host health: sentence-transformers/all-MiniLM-L6-v2 ready at " \
           f"http://127.0.0.1:{running}, 384 dimensions" in said, said
    assert ("[ok  ] host /embed: 2 embeddings of 384 dimensions from "
            "'sentence-transformers/all-MiniLM-L6-v2', the served model") in said, said
    assert "qwen3-embed" not in said  # the payload's name, not a model the stack serves
    assert "[skip] gateway: model-gateway not started" in said


def test_status_and_verify_read_the_service_where_it_runs(moved):
    env, running = moved
    doc = json.loads(inv("status", "--json", env=env, timeout=120).stdout)
    assert doc["mlx"]["url"] == f"http://127.0.0.1:{running}"
    assert doc["mlx"]["model"]["name"] == "sentence-transformers/all-MiniLM-L6-v2", doc["mlx"]
    checks = json.loads(inv("verify", "--json", env=env, timeout=300).stdout)["checks"]
    serving = [c for c in checks if c["name"] == "running service"]
    assert serving and serving[0]["status"] == "pass", checks
    assert "all-MiniLM-L6-v2" in serving[0]["detail"]


def test_start_of_another_model_is_refused_and_restart_serves_it(moved):
    env, running = moved
    asked = dict(env, EMBEDDINGS_MODEL=str(OTHER_MODEL))
    refused = inv("mlx", "start", "--no-install", env=asked, timeout=120)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    [line] = [l for l in refused.stderr.splitlines() if "another model is running" in l]
    assert str(OTHER_MODEL) in line and "`inv mlx restart` serves the one asked for" in line
    assert "already running and healthy" not in refused.stderr
    assert health(running)[1]["model"] == "sentence-transformers/all-MiniLM-L6-v2"

    checks = json.loads(inv("verify", "--json", env=asked, timeout=300).stdout)["checks"]
    [serving] = [c for c in checks if c["name"] == "running service"]
    assert serving["status"] == "warn" and "another model is running" in serving["detail"]

    restarted = inv("mlx", "restart", "--no-install", "--timeout", "240", env=asked,
                    timeout=400)
    assert restarted.returncode == 0, restarted.stderr
    status, body = health(int(env["MLX_PORT"]))  # restart applies the configured port too
    assert status == 200 and body["model"] == "qwen3-last", body
    again = inv("mlx", "start", "--no-install", env=asked, timeout=120)
    assert again.returncode == 0 and "serving qwen3-last" in again.stderr, again.stderr
