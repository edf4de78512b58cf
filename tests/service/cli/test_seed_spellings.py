"""The seed's spellings that need no containers, through the real `inv`: `inv mlx start -f`,
CORTEX_MLX_PORT, a reader that closes early, and `inv setup` with the engine down."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.support import REPO_ROOT, free_port, health, inv, isolated_env, process_alive

START_TIMEOUT = 180


def _wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _status(env: dict) -> dict:
    done = inv("mlx", "status", "--json", env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# --- inv mlx start -f ----------------------------------------------------------------------------

def test_mlx_start_f_runs_the_service_in_the_foreground(tmp_path):
    env = isolated_env(tmp_path)
    out = tmp_path / "fg.out"
    # Its own process group, like a shell job: killpg(SIGINT) is what Ctrl+C does.
    attached = subprocess.Popen([sys.executable, "-m", "invoke", "mlx", "start", "-f"],
                                cwd=REPO_ROOT, env=env, stdout=out.open("w"),
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until(lambda: "ready at" in out.read_text() or attached.poll() is not None,
                    START_TIMEOUT, "the service started with -f to be ready")
        assert attached.poll() is None, "`inv mlx start -f` returned:\n" + out.read_text()
        status = _status(env)
        assert status["mode"] == "foreground" and status["healthy"] is True, status
        service_pid = status["pid"]
        os.killpg(attached.pid, signal.SIGINT)
        assert attached.wait(timeout=60) == 0, out.read_text()
    finally:
        if attached.poll() is None:
            os.killpg(attached.pid, signal.SIGKILL)
            attached.wait()
    assert not process_alive(service_pid)
    assert health(int(env["MLX_PORT"]))[0] is None


# --- CORTEX_MLX_PORT -----------------------------------------------------------------------------

def test_cortex_mlx_port_moves_the_host_service(tmp_path):
    port = free_port()
    env = isolated_env(tmp_path, CORTEX_MLX_PORT=str(port))
    del env["MLX_PORT"]  # as a seed user has it: only the seed's name, .env.dev says 8081
    try:
        started = inv("mlx", "start", env=env, timeout=START_TIMEOUT)
        assert started.returncode == 0, started.stderr
        assert f"127.0.0.1:{port}" in started.stderr
        assert health(port)[0] == 200
        status = _status(env)
        assert status["port"] == port and status["url"] == f"http://127.0.0.1:{port}"
    finally:
        stopped = inv("mlx", "stop", env=env, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert health(port)[0] is None


# --- a reader that closes early ------------------------------------------------------------------

@pytest.fixture
def logged_env(tmp_path):
    env = isolated_env(tmp_path)
    log = tmp_path / "logs" / "mlx-server.log"
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {i} of the host service's log\n" for i in range(5000)))
    return env


@pytest.mark.parametrize("argv", [
    ("status", "--json"),
    ("status",),
    ("mlx", "status", "--json"),
    ("logs", "-s", "mlx", "--tail", "5000"),
    ("logs", "mlx", "-t", "5000"),
    ("mlx", "logs", "-n", "5000"),
    ("mlx", "logs", "-f"),
    ("--list",),
    ("logs", "--help"),
])
def test_a_closed_reader_ends_the_task_quietly(logged_env, argv):
    """`inv ... | head -1`, with the reader gone before the first write."""
    done = subprocess.Popen([sys.executable, "-m", "invoke", *argv], cwd=REPO_ROOT,
                            env=logged_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done.stdout.close()
    try:
        err = done.communicate(timeout=120)[1].decode()
    finally:
        if done.poll() is None:
            done.kill()
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert done.returncode == 1, err  # what Python itself answers to EPIPE


# --- inv setup with the engine down --------------------------------------------------------------

def test_setup_with_the_engine_down_still_installs_and_writes_env_dev(tmp_path):
    dead = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(dead))  # a socket file nobody listens on
    sock.close()
    env_file = tmp_path / "fresh" / ".env.dev"
    env = isolated_env(tmp_path, DOCKER_HOST=f"unix://{dead}",
                       MLX_VENV_PATH=str(REPO_ROOT / ".venv-mlx"),  # reused, not rebuilt
                       CORTEX_ENV_FILE=str(env_file))
    done = inv("setup", env=env, timeout=600)
    assert done.returncode == 1, done.stderr
    assert env_file.exists() and "MLX_PORT=8081" in env_file.read_text()
    lines = done.stderr.strip().splitlines()
    assert any(line.startswith("[stack] service venv") for line in lines), done.stderr
    last = lines[-1]
    assert last.startswith("error: ") and f"DOCKER_HOST=unix://{dead}" in last
    assert "does not answer" in last and "inv setup` again" in last
    assert "Traceback" not in done.stderr
