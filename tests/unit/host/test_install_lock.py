"""`inv mlx install` and `inv setup` take the start lock around the venv install: pip never
runs in the service venv while another task holds it (a start installing or spawning)."""
from __future__ import annotations

import os
from pathlib import Path

from tasks.host.pidfile_lock import locked
from tests.support import inv, isolated_env


def _pidfile(env: dict) -> Path:
    return Path(env["CORTEX_RUN_DIR"]) / "mlx-server.pid"


def test_install_waits_for_a_start_and_gives_up_in_one_sentence(tmp_path):
    venv = tmp_path / "never-created"
    env = isolated_env(tmp_path, MLX_LOCK_TIMEOUT="1")
    with locked(_pidfile(env), 5, doing="inv mlx start"):
        done = inv("mlx", "install", "--venv", str(venv), "--create", env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    assert f"waiting for pid {os.getpid()} (inv mlx start)" in done.stderr
    assert "[mlx] error: could not install the mlx service: " in done.stderr
    assert "Traceback" not in done.stderr
    assert not venv.exists(), "pip ran while another task held the lock"


def test_setup_installs_the_venv_under_the_same_lock(tmp_path):
    venv = tmp_path / "never-created"
    env_file = tmp_path / "env.dev"
    env = isolated_env(tmp_path, MLX_LOCK_TIMEOUT="1", MLX_VENV_PATH=str(venv),
                       CORTEX_ENV_FILE=str(env_file))
    with locked(_pidfile(env), 5, doing="inv mlx start"):
        done = inv("setup", "--no-images", env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        "error: could not install the mlx service: pid "), done.stderr
    assert "Traceback" not in done.stderr
    assert env_file.exists()  # the step before the venv is done
    assert not venv.exists(), "pip ran while another task held the lock"
