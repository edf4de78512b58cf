"""The seed's spellings of `inv start` and `inv logs`, on the real engine, through the real `inv`.

Each test stops the host service first: one already running would be reused as it is, and
the flags under test would never reach it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support import REPO_ROOT, health, inv

REAL_VENV = REPO_ROOT / ".venv-mlx"
START_TIMEOUT = 600


def _wait_until(predicate, timeout: float, what: str, watcher=None, out: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if watcher is not None and watcher.poll() is not None:
            raise AssertionError(f"inv exited while waiting for {what}:\n{out.read_text()}")
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f":\n{out.read_text()}" if out else ""))


def _ok(done, what: str) -> None:
    assert done.returncode == 0, (f"{what} exited {done.returncode}\n--- stdout\n"
                                  f"{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-5000:]}")


def _stop_host(env: dict) -> None:
    _ok(inv("mlx", "stop", env=env, timeout=120), "inv mlx stop")


def _env_whose_default_venv_is_wrong(stack_env: dict, tmp_path: Path, **more) -> dict:
    """Only the flags name the real venv: a start or restart that drops them fails."""
    return dict(stack_env, MLX_VENV_PATH=str(tmp_path / "no-venv-here"), **more)


def test_start_takes_lifecycle_flags_and_logs_take_the_service_by_name(stack_env, tmp_path):
    env = _env_whose_default_venv_is_wrong(stack_env, tmp_path)
    _stop_host(env)
    try:
        _start_and_read_logs(env, tmp_path)
    finally:
        _stop_host(env)  # later tests must not reuse a service with these flags


def _start_and_read_logs(env: dict, tmp_path: Path) -> None:
    started = inv("start", "--services=nats,model-gateway", "--mlx-flag=--no-wait",
                  "--mlx-flag=--timeout=30", f"--mlx-flag=--venv={REAL_VENV}",
                  "--mlx-flag=--dim=128", env=env, timeout=START_TIMEOUT)
    _ok(started, "inv start with the seed's --mlx-flag lifecycle flags")
    assert "not waiting for it to be ready (--no-wait)" in started.stderr
    served = _wait_until(lambda: health(int(env["MLX_PORT"]))[1], 180, "the host service's /health")
    assert served["dimensions"] == 128  # a server flag still reaches the server

    gateway = inv("logs", "model-gateway", "--tail", "20", env=env, timeout=120)
    _ok(gateway, "inv logs model-gateway")
    lines = gateway.stdout.splitlines()
    assert lines and all(line.startswith("model-gateway") for line in lines), gateway.stdout

    host = inv("logs", "mlx", "--tail", "5", env=env, timeout=120)
    _ok(host, "inv logs mlx")
    assert 0 < len(host.stdout.splitlines()) <= 5

    everything = inv("logs", "--tail", "5", env=env, timeout=120)
    _ok(everything, "inv logs")
    assert "mlx-server | " in everything.stdout
    assert "nats" in everything.stdout and "model-gateway" in everything.stdout

    # Followed, into a reader that is gone: a quiet end, Compose stopped with it.
    closed = subprocess.Popen([sys.executable, "-m", "invoke", "logs", "-f"], cwd=REPO_ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    closed.stdout.close()
    err = closed.communicate(timeout=60)[1].decode()
    assert closed.returncode == 1 and "Traceback" not in err and "Exception" not in err, err

    # The service after -f, as the seed writes it: it follows until interrupted.
    out = tmp_path / "follow.out"
    follower = subprocess.Popen([sys.executable, "-m", "invoke", "logs", "nats", "-f",
                                 "--tail", "3"], cwd=REPO_ROOT, env=env, stdout=out.open("w"),
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until(lambda: out.read_text().strip(), 60, "followed nats lines", follower, out)
        time.sleep(1)
        assert follower.poll() is None, out.read_text()  # still following
        assert all(line.startswith("nats") for line in out.read_text().splitlines())
    finally:
        os.killpg(follower.pid, signal.SIGINT)
        follower.wait(timeout=30)


def test_start_watch_restarts_with_the_venv_flags_and_timeout_it_started_with(stack_env,
                                                                                 tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO_ROOT / "mlx_service", src / "mlx_service",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = _env_whose_default_venv_is_wrong(stack_env, tmp_path, MLX_SERVICE_SRC=str(src))
    _stop_host(env)
    out = tmp_path / "watch.out"
    watcher = subprocess.Popen(
        [sys.executable, "-m", "invoke", "start", "--services=nats", "--watch",
         f"--mlx-venv={REAL_VENV}", "--mlx-flag=--timeout=77", "--mlx-flag=--dim=96"],
        cwd=REPO_ROOT, env=env, stdout=out.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        _wait_until(lambda: "watching" in out.read_text(), START_TIMEOUT, "the watch to begin",
                    watcher, out)
        first = health(int(env["MLX_PORT"]))[1]
        assert first and first["dimensions"] == 96, out.read_text()
        first_pid = json.loads(inv("mlx", "status", "--json", env=env, timeout=60).stdout)["pid"]

        main_py = src / "mlx_service" / "__main__.py"
        main_py.write_text(main_py.read_text() + "\n# touched by the watch test\n")
        _wait_until(lambda: "restarting the host service" in out.read_text(), 60,
                    "the restart", watcher, out)

        def restarted():
            doc = json.loads(inv("mlx", "status", "--json", env=env, timeout=60).stdout)
            return doc if doc["healthy"] and doc["pid"] != first_pid else None
        _wait_until(restarted, 180, "the restarted service to be healthy", watcher, out)
        text = out.read_text()
        assert health(int(env["MLX_PORT"]))[1]["dimensions"] == 96, text            # the flags
        assert text.count("(up to 77s)") == 2, text               # the timeout, both times
        assert "does not exist" not in text, text                 # the venv
    finally:
        if watcher.poll() is None:
            os.killpg(watcher.pid, signal.SIGINT)
            try:
                watcher.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(watcher.pid, signal.SIGKILL)
                watcher.wait()
        _stop_host(env)
