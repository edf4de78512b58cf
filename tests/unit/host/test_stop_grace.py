"""MLX_STOP_GRACE is the lifecycle's wait before SIGKILL, as it is the service's time to exit.

A process of ours that ignores SIGTERM (the real service cannot be made to) shows how long
the real `inv mlx stop` waits: the setting's seconds, not a fixed 10."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.host.pidfile import TOKEN_VAR, PidRecord, ProcessRef, write_pidfile
from tests.support import inv, isolated_env, process_alive

TOKEN = "5709a11ce" * 4
STUBBORN = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ignoring SIGTERM', flush=True); time.sleep(120)")


@pytest.fixture
def stubborn():
    """A live process that we started, carrying our token and the service's marker, in its
    own session, that ignores SIGTERM."""
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN, "mlx_service"],
                            start_new_session=True, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, **{TOKEN_VAR: TOKEN}))
    assert proc.stdout.readline().strip() == "ignoring SIGTERM"
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()


def _record_as_our_service(env: dict, proc: subprocess.Popen) -> None:
    ref = ProcessRef.of(proc.pid, token=TOKEN)
    write_pidfile(Path(env["CORTEX_RUN_DIR"]) / "mlx-server.pid", PidRecord(
        pid=proc.pid, create_time=ref.create_time, cmdline=ref.cmdline,
        port=int(env["MLX_PORT"]), url=f"http://127.0.0.1:{env['MLX_PORT']}", log="x.log",
        bind=["127.0.0.1"], start_ticks=ref.start_ticks, boot_id=ref.boot_id, token=TOKEN))


def test_inv_mlx_stop_kills_after_mlx_stop_grace(tmp_path, stubborn):
    env = isolated_env(tmp_path, MLX_STOP_GRACE="2")
    _record_as_our_service(env, stubborn)
    started = time.monotonic()
    stop = inv("mlx", "stop", env=env, timeout=60)
    took = time.monotonic() - started
    assert stop.returncode == 0, stop.stderr
    assert "SIGKILL after 2s" in stop.stderr and "killed" in stop.stderr, stop.stderr
    assert stubborn.wait(5) == -signal.SIGKILL and not process_alive(stubborn.pid)
    assert took < 8, f"inv mlx stop took {took:.1f}s with MLX_STOP_GRACE=2"


def test_inv_stop_grace_from_env_dev(tmp_path, stubborn):
    env_file = tmp_path / "env.dev"
    env_file.write_text("MLX_STOP_GRACE=3\n")
    env = isolated_env(tmp_path, CORTEX_ENV_FILE=str(env_file))
    env.pop("MLX_STOP_GRACE", None)
    _record_as_our_service(env, stubborn)
    stop = inv("mlx", "stop", env=env, timeout=60)
    assert stop.returncode == 0, stop.stderr
    assert "SIGKILL after 3s" in stop.stderr, stop.stderr


def test_a_grace_flag_still_beats_the_setting(tmp_path, stubborn):
    env = isolated_env(tmp_path, MLX_STOP_GRACE="30")
    _record_as_our_service(env, stubborn)
    stop = inv("mlx", "stop", "--grace", "2", env=env, timeout=60)
    assert stop.returncode == 0, stop.stderr
    assert "SIGKILL after 2s" in stop.stderr, stop.stderr


def test_a_bad_stop_grace_is_one_sentence(tmp_path):
    env = isolated_env(tmp_path, MLX_STOP_GRACE="soon")
    stop = inv("mlx", "stop", env=env, timeout=60)
    assert stop.returncode == 2  # a setting it cannot use: exit 2, from every task alike
    assert "MLX_STOP_GRACE='soon' is not a whole number of seconds" in stop.stderr
    assert "Traceback" not in stop.stderr
