"""Never signal what is not ours, with the real service through the real `inv`: two starts
at once, a wall-clock step, and a pid of ours handed by the kernel to someone else.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support import REPO_ROOT, inv, isolated_env, live_group_members, process_alive

START_TIMEOUT = 240
PR_SET_CHILD_SUBREAPER = 36


def pidfile(env: dict) -> Path:
    return Path(env["CORTEX_RUN_DIR"]) / "mlx-server.pid"


def service_processes_on(port: int) -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if proc.info["status"] != psutil.STATUS_ZOMBIE and "mlx_service" in cmd \
                and f"--port {port}" in cmd:
            found.append(proc.pid)
    return found


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def env(tmp_path):
    e = isolated_env(tmp_path)
    yield e
    inv("mlx.stop", "--grace", "3", env=e, timeout=60)
    for pid in service_processes_on(int(e["MLX_PORT"])):  # only ours, by its unique port
        os.kill(pid, signal.SIGKILL)


def _hold_lock(env: dict) -> int:
    """Hold the PID file's lock as another task would, naming ourselves in it."""
    path = pidfile(env).with_name("mlx-server.pid.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.pwrite(fd, f"pid {os.getpid()} (the test)\n".encode(), 0)
    return fd


def _start_in_background(env: dict, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "invoke", "mlx.start"], cwd=REPO_ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=out.open("w"))


def test_two_starts_at_once_give_one_service_and_a_clock_step_keeps_it_ours(env, tmp_path):
    outs = [tmp_path / "start1.err", tmp_path / "start2.err"]
    fd = _hold_lock(env)
    try:
        starts = [_start_in_background(env, out) for out in outs]
        me = f"pid {os.getpid()} (the test)"
        wait_until(lambda: all(me in out.read_text() for out in outs), 60,
                   "both starts to wait for the lock")
        time.sleep(1.0)
        for out in outs:  # nothing touched the venv (pip) before holding the lock
            assert "venv" not in out.read_text(), out.read_text()
    finally:
        os.close(fd)
    codes = [p.wait(timeout=START_TIMEOUT) for p in starts]
    texts = [out.read_text() for out in outs]
    assert codes == [0, 0], texts
    assert all("Traceback" not in t for t in texts), texts
    assert sum("started the mlx service" in t for t in texts) == 1, texts
    other = next(t for t in texts if "started the mlx service" not in t)
    assert "already running and healthy" in other or "already starting" in other, other
    record = json.loads(pidfile(env).read_text())
    assert service_processes_on(int(env["MLX_PORT"])) == [record["pid"]]

    # A wall-clock step moves psutil's create_time; the recorded one now disagrees with it
    # by as much as the step (here 1.5 s, in both directions): still our service.
    for step in (1.5, -1.5):
        stepped = dict(record, create_time=record["create_time"] + step)
        pidfile(env).write_text(json.dumps(stepped))
        status = inv("mlx.status", "--json", env=env, timeout=60)
        assert status.returncode == 0, status.stderr
        doc = json.loads(status.stdout)
        assert doc["running"] is True and doc["pid"] == record["pid"], doc
        assert pidfile(env).exists()
    stop = inv("mlx.stop", "--grace", "5", env=env, timeout=60)
    assert stop.returncode == 0, stop.stderr
    assert "stopped" in stop.stderr and "not running" not in stop.stderr, stop.stderr
    assert not process_alive(record["pid"]) and live_group_members(record["pid"]) == []
    assert not pidfile(env).exists()


def _subreaper(on: bool) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0, ctypes.get_errno()


def _fork_with_pid(pid: int, tries: int = 50) -> int:
    """Fork a session leader that gets `pid` (as root, via ns_last_pid), starts a daemon in
    its own group and exits: returns the daemon's pid. The daemon runs `sleep 300`."""
    for _ in range(tries):
        Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # only async-signal-safe work here: we are a copy of pytest
            os.close(read_end)
            if os.getpid() != pid:
                os._exit(3)
            os.setsid()
            daemon = os.fork()
            if daemon == 0:
                os.execv("/bin/sleep", ["sleep", "300"])
            os.write(write_end, str(daemon).encode())
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            text = pipe.read()
        os.waitpid(child, 0)
        if child == pid:
            return int(text)
    raise AssertionError(f"could not get pid {pid} back from the kernel in {tries} tries")


@pytest.mark.skipif(os.geteuid() != 0, reason="handing a pid back needs root (ns_last_pid)")
def test_a_pid_of_ours_reused_by_another_session_is_never_signalled(env):
    _subreaper(True)  # the service, orphaned when `inv` exits, becomes our child: we reap it
    daemon = None
    try:
        start = inv("mlx.start", env=env, timeout=START_TIMEOUT)
        assert start.returncode == 0, start.stderr
        record = pidfile(env).read_text()
        old = json.loads(record)["pid"]
        os.kill(old, signal.SIGKILL)
        os.waitpid(old, 0)
        assert live_group_members(old) == []
        daemon = _fork_with_pid(old)
        wait_until(lambda: psutil.Process(daemon).cmdline() == ["sleep", "300"], 10, "exec")
        assert os.getpgid(daemon) == old  # our old pid is now the id of a stranger's group

        stop = inv("mlx.stop", "--grace", "1", env=env, timeout=60)
        assert stop.returncode == 0, stop.stderr
        assert f"pid {daemon} (sleep 300)" in stop.stderr and "left alone" in stop.stderr
        assert "not running" in stop.stderr
        time.sleep(0.3)
        assert process_alive(daemon), "inv mlx stop signalled a process that is not ours"
        assert not pidfile(env).exists()

        pidfile(env).write_text(record)  # and start, which used to "clean up" the group
        start = inv("mlx.start", env=env, timeout=START_TIMEOUT)
        assert start.returncode == 0, start.stderr
        assert f"pid {daemon} (sleep 300)" in start.stderr and "ready at" in start.stderr
        assert process_alive(daemon), "inv mlx start signalled a process that is not ours"
    finally:
        if daemon is not None:
            os.kill(daemon, signal.SIGKILL)
            os.waitpid(daemon, 0)
        _subreaper(False)
