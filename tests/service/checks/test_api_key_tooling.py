"""MLX_API_KEY on the control plane's side: a real service started by `inv mlx start` with a
key; `inv roundtrip`, `inv status` and `inv mlx status` send the key they are given (the
environment or .env.dev), say in one sentence what is wrong when it is missing or not the
service's, and never print it."""
from __future__ import annotations

import json

import pytest

from tests.support import free_port, inv, isolated_env

KEY = "tooling-key-0d5e6a9c"


def _without_key(env: dict) -> dict:
    env = dict(env)
    env.pop("MLX_API_KEY", None)
    return env


def _assert_key_not_shown(done) -> None:
    assert KEY not in done.stdout and KEY not in done.stderr


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api-key")
    empty_env_file = tmp / "empty.env"
    empty_env_file.write_text("")
    # No gateway listens on this port: the roundtrip's gateway part is skipped.
    env = isolated_env(tmp, MLX_API_KEY=KEY, CORTEX_ENV_FILE=str(empty_env_file),
                       CORTEX_MODEL_GATEWAY_PORT=str(free_port()))
    started = inv("mlx", "start", "--timeout", "240", env=env, timeout=400)
    assert started.returncode == 0, started.stderr
    _assert_key_not_shown(started)
    yield env
    inv("mlx", "stop", env=env, timeout=120)


def test_roundtrip_sends_the_key_from_the_environment(keyed):
    done = inv("roundtrip", env=keyed, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[ok  ] host /embed" in done.stdout and "[ok  ] host /v1/embeddings" in done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("roundtrip PASSED")
    _assert_key_not_shown(done)


def test_roundtrip_sends_the_key_from_env_dev(keyed, tmp_path):
    env_file = tmp_path / "env.dev"
    env_file.write_text(f"MLX_API_KEY={KEY}\n")
    done = inv("roundtrip", env=dict(_without_key(keyed), CORTEX_ENV_FILE=str(env_file)),
               timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    _assert_key_not_shown(done)


def test_roundtrip_without_the_key_fails_in_one_sentence_naming_it(keyed):
    done = inv("roundtrip", env=_without_key(keyed), timeout=180)
    assert done.returncode == 1
    fails = [line for line in done.stdout.splitlines() if line.startswith("[FAIL]")]
    assert len(fails) == 1, done.stdout  # said once, not once per step
    assert "wants an API key (401) and MLX_API_KEY is not set here" in fails[0]
    assert "Traceback" not in done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("roundtrip FAILED")


def test_roundtrip_with_another_key_says_it_was_refused_without_showing_either(keyed):
    other = "not-the-service-key-77"
    done = inv("roundtrip", env=dict(keyed, MLX_API_KEY=other), timeout=180)
    assert done.returncode == 1
    assert "refused the key in MLX_API_KEY (401)" in done.stdout, done.stdout
    assert other not in done.stdout + done.stderr
    _assert_key_not_shown(done)


@pytest.mark.parametrize("task", [("status", "--json"), ("mlx", "status", "--json")],
                         ids=["inv status", "inv mlx status"])
def test_status_says_whether_our_key_opens_the_service(keyed, task):
    def auth(env: dict) -> str:
        done = inv(*task, env=env, timeout=180)
        assert done.returncode == 0, done.stderr
        _assert_key_not_shown(done)
        doc = json.loads(done.stdout)
        return (doc["mlx"] if "mlx" in doc else doc)["auth"]

    assert auth(keyed) == "accepted"
    assert auth(_without_key(keyed)) == "missing"
    assert auth(dict(keyed, MLX_API_KEY="not-the-service-key-77")) == "refused"
