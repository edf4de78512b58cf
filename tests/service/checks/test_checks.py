"""inv roundtrip and inv verify against a host service started by `inv mlx start`."""
import json
import os

import pytest

from mlx_service.kernels.blas import find_openblas
from tests.support import free_port, inv, isolated_env


@pytest.fixture(scope="module")
def running_service(tmp_path_factory):
    # No gateway listens on this port: the roundtrip must say its gateway part was not run.
    env = isolated_env(tmp_path_factory.mktemp("checks"), CORTEX_MODEL_GATEWAY_PORT=str(free_port()))
    started = inv("mlx", "start", "--timeout", "240", env=env, timeout=400)
    assert started.returncode == 0, started.stderr
    yield env
    inv("mlx", "stop", env=env, timeout=120)


def test_roundtrip_passes_and_says_the_gateway_part_was_not_run(running_service):
    done = inv("roundtrip", env=running_service, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[ok  ] host /embed: 2 embeddings of 384 dimensions" in done.stdout
    assert "[ok  ] meaning" in done.stdout
    assert "[skip] gateway" in done.stdout and "gateway part not run" in done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("roundtrip PASSED")


def test_roundtrip_json_is_one_document(running_service):
    done = inv("roundtrip", "--json", env=running_service, timeout=180)
    document = json.loads(done.stdout)
    assert document["ok"] is True
    assert [s["name"] for s in document["steps"]][:4] == [
        "host health", "host /embed", "host /v1/embeddings", "meaning"]


def test_verify_counts_the_service_port_as_ours(running_service):
    done = inv("verify", "--json", env=running_service, timeout=180)
    document = json.loads(done.stdout)
    port = running_service["MLX_PORT"]
    check = next(c for c in document["checks"] if c["name"] == f"port mlx ({port})")
    assert check["status"] == "pass" and "our stack" in check["detail"], check
    running = next(c for c in document["checks"] if c["name"] == "running service")
    expected_blas = "openblas" if find_openblas(os.environ) else "reference"
    assert f"BLAS {expected_blas}" in running["detail"], running


def test_roundtrip_fails_clearly_when_the_service_is_stopped(tmp_path):
    env = isolated_env(tmp_path)  # a fresh free port: nothing listens there
    done = inv("roundtrip", env=env, timeout=60)
    assert done.returncode != 0
    assert "[FAIL] host health: no answer from" in done.stdout
    assert "inv mlx start" in done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("roundtrip FAILED")


def test_status_says_a_service_without_a_key_is_open(running_service):
    env = dict(running_service, MLX_API_KEY="a-key-this-service-does-not-want")
    done = inv("mlx", "status", "--json", env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["auth"] == "open"
    # A key the service does not ask for does not get in the way of the roundtrip.
    assert inv("roundtrip", env=env, timeout=180).returncode == 0
