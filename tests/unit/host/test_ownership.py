"""Never signal or delete what is not ours: identity rules per platform, PID files of the
previous format, reused process-group ids, the lock, and who created a Compose project.

The pure rules are tested with facts; the rest through the real `inv` and real processes.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tasks.stack.origins import ContainerOrigin, foreign_origins, parse_inspect_origins
from tasks.host.pidfile import (
    CREATE_TIME_TOLERANCE, TOKEN_VAR, Observed, ProcessRef, check_process, identity_rule,
    read_pidfile, read_proc_stat, same_process, seconds_since_start,
)
from tests.support import inv, isolated_env, process_alive

TOKEN = "0123456789abcdef0123456789abcdef"
CMD = ["/venv/bin/python", "-m", "mlx_service", "--port", "8081"]


def _recorded(**overrides) -> ProcessRef:
    facts = dict(pid=4242, create_time=1_700_000_000.0, cmdline=list(CMD), start_ticks=123456,
                 boot_id="boot-a", token=TOKEN)
    facts.update(overrides)
    return ProcessRef(**facts)


def _seen(**overrides) -> Observed:
    facts = dict(create_time=1_700_000_000.0, cmdline=list(CMD), start_ticks=123456,
                 boot_id="boot-a", environ={TOKEN_VAR: TOKEN, "HOME": "/x"})
    facts.update(overrides)
    return Observed(**facts)


# --- the platform decision (pure) -----------------------------------------------------------

def test_linux_pins_a_process_by_kernel_start_ticks():
    assert identity_rule("Linux") == "start-ticks"


def test_macos_pins_a_process_by_create_time_and_a_marker():
    assert identity_rule("Darwin") == "create-time"


def test_other_systems_use_create_time_and_a_marker():
    assert identity_rule("FreeBSD") == "create-time"


def test_linux_clock_step_keeps_our_process_ours():
    # A step of the wall clock moves psutil's create_time (boot time is derived from it);
    # the kernel's start ticks do not move.
    for step in (1.2, -1.2, 3600.0):
        assert same_process(_recorded(), _seen(create_time=1_700_000_000.0 + step), "Linux",
                            "mlx_service") is None


def test_linux_other_start_ticks_is_another_program():
    why = same_process(_recorded(), _seen(start_ticks=123999), "Linux", "mlx_service")
    assert why and "start time" in why


def test_linux_another_boot_is_another_program():
    why = same_process(_recorded(), _seen(boot_id="boot-b"), "Linux", "mlx_service")
    assert why and "restarted" in why


def test_linux_same_ticks_without_our_token_is_another_program():
    why = same_process(_recorded(), _seen(environ={"HOME": "/x"}), "Linux", "mlx_service")
    assert why and "token" in why


def test_linux_unreadable_environment_falls_back_to_the_marker():
    assert same_process(_recorded(), _seen(environ=None), "Linux", "mlx_service") is None
    why = same_process(_recorded(), _seen(environ=None, cmdline=["sleep", "9"]), "Linux",
                       "mlx_service")
    assert why and "command line" in why


def test_macos_our_token_proves_it_across_a_clock_step():
    assert same_process(_recorded(), _seen(create_time=1_700_000_090.0, start_ticks=None,
                                           boot_id=None), "Darwin", "mlx_service") is None


def test_macos_another_token_is_another_program():
    why = same_process(_recorded(), _seen(environ={TOKEN_VAR: "f" * 32}, start_ticks=None),
                       "Darwin", "mlx_service")
    assert why and "token" in why


def test_macos_unreadable_environment_needs_create_time_and_command_line():
    near = 1_700_000_000.0 + CREATE_TIME_TOLERANCE / 2
    far = 1_700_000_000.0 + CREATE_TIME_TOLERANCE * 5
    assert same_process(_recorded(), _seen(environ=None, create_time=near), "Darwin",
                        "mlx_service") is None
    assert "start time" in same_process(_recorded(), _seen(environ=None, create_time=far),
                                        "Darwin", "mlx_service")
    assert "command line" in same_process(_recorded(), _seen(environ=None, cmdline=["vim"]),
                                          "Darwin", "mlx_service")


def test_old_record_without_ticks_or_token_is_judged_by_create_time_and_marker():
    old = _recorded(start_ticks=None, boot_id=None, token=None)
    assert same_process(old, _seen(create_time=1_700_000_000.3), "Linux", "mlx_service") is None
    assert same_process(old, _seen(create_time=1_700_000_100.0), "Linux", "mlx_service")


# --- the kernel's facts -------------------------------------------------------------------------

def test_proc_stat_start_ticks_survive_a_command_name_with_parentheses(tmp_path):
    # comm sits in parentheses in /proc/PID/stat and may hold ") (" itself.
    odd = tmp_path / "a) b (c"
    shutil.copy(shutil.which("sleep"), odd)
    proc = subprocess.Popen([str(odd), "30"])
    try:
        deadline = time.monotonic() + 5
        while psutil.Process(proc.pid).name() != "a) b (c" and time.monotonic() < deadline:
            time.sleep(0.01)
        state, ticks = read_proc_stat(proc.pid)
        assert state in "RS"
        hz = os.sysconf("SC_CLK_TCK")
        expected = (psutil.Process(proc.pid).create_time() - psutil.boot_time()) * hz
        assert abs(ticks - expected) <= 2
    finally:
        proc.kill()
        proc.wait()


def test_pidfile_of_the_previous_format_is_read_and_recognises_its_process(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                                "mlx_service"])
    try:
        deadline = time.monotonic() + 5
        while "mlx_service" not in " ".join(psutil.Process(sleeper.pid).cmdline()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        path = tmp_path / "mlx-server.pid"
        # Exactly the keys the previous version wrote: no start_ticks, boot_id or token.
        path.write_text(json.dumps({
            "pid": sleeper.pid, "create_time": psutil.Process(sleeper.pid).create_time(),
            "cmdline": [sys.executable, "-m", "mlx_service"], "port": 8081,
            "url": "http://127.0.0.1:8081", "log": "logs/mlx-server.log",
            "bind": ["127.0.0.1"], "mode": "detached", "supervisor": None, "restarts": 0,
            "started_at": time.time(), "marker": "mlx_service", "venv": ".venv-mlx"}))
        record = read_pidfile(path)
        assert record.start_ticks is None and record.token is None
        assert check_process(record.service, record.marker).state == "ours"
    finally:
        sleeper.kill()
        sleeper.wait()


# --- a reused process-group id (the recipe) -------------------------------------------

# A daemon (it stays in the group of its session leader) and the leader, which exits.
DAEMON = ("import os, time\n"
          "child = os.fork()\n"
          "if child == 0: time.sleep(300); os._exit(0)\n"
          "print(child, flush=True)")


def _daemon_whose_session_leader_exited() -> tuple[int, int, float]:
    """(leader pid, daemon pid, leader create time): a process group whose id is a dead pid."""
    leader = subprocess.Popen([sys.executable, "-c", DAEMON, "mlx_service"],
                              start_new_session=True, stdout=subprocess.PIPE, text=True)
    created = psutil.Process(leader.pid).create_time()
    daemon = int(leader.stdout.readline())
    leader.wait()
    leader.stdout.close()
    assert os.getpgid(daemon) == leader.pid and not process_alive(leader.pid)
    return leader.pid, daemon, created


def _pidfile_naming(env: dict, pid: int, created: float, token: str | None) -> Path:
    path = Path(env["CORTEX_RUN_DIR"]) / "mlx-server.pid"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "create_time": created, "cmdline": [sys.executable, "-m", "mlx_service"],
              "port": int(env["MLX_PORT"]), "url": f"http://127.0.0.1:{env['MLX_PORT']}",
              "log": "x.log", "bind": ["127.0.0.1"], "marker": "mlx_service"}
    if token:
        record["token"] = token
    path.write_text(json.dumps(record))
    return path


@pytest.mark.parametrize("token", [None, TOKEN], ids=["old-format", "with-token"])
def test_stop_leaves_a_daemon_in_the_recorded_group_id_alone(tmp_path, token):
    env = isolated_env(tmp_path)
    leader, daemon, created = _daemon_whose_session_leader_exited()
    try:
        path = _pidfile_naming(env, leader, created, token)
        status = inv("mlx.status", "--json", env=env, timeout=60)
        assert status.returncode == 0, status.stderr
        stale = json.loads(status.stdout)["stale"]
        assert f"pid {daemon}" in stale and "left alone" in stale and "mlx_service" in stale
        assert not path.exists()  # a stale file is removed (the lock was free)
        assert process_alive(daemon)

        _pidfile_naming(env, leader, created, token)
        stop = inv("mlx.stop", "--grace", "1", env=env, timeout=60)
        assert stop.returncode == 0, stop.stderr
        assert f"pid {daemon}" in stop.stderr and "left alone" in stop.stderr
        assert "not running" in stop.stderr
        time.sleep(0.3)
        assert process_alive(daemon), "inv mlx stop signalled a process that is not ours"
        assert psutil.Process(daemon).status() != psutil.STATUS_STOPPED
    finally:
        os.kill(daemon, signal.SIGKILL)


def test_stop_ends_leftovers_that_carry_our_token(tmp_path):
    """Our own leftovers (children of a killed service) carry its token: they are stopped."""
    env = isolated_env(tmp_path)
    leader = subprocess.Popen(["sh", "-c", "sleep 120 & wait", "mlx_service"],
                              start_new_session=True, env=dict(os.environ, **{TOKEN_VAR: TOKEN}))
    created = psutil.Process(leader.pid).create_time()
    deadline = time.monotonic() + 5
    while len([p for p in psutil.process_iter() if _pgid(p.pid) == leader.pid]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    child = next(p.pid for p in psutil.process_iter()
                 if _pgid(p.pid) == leader.pid and p.pid != leader.pid)
    leader.kill()
    leader.wait()
    try:
        _pidfile_naming(env, leader.pid, created, TOKEN)
        stop = inv("mlx.stop", "--grace", "2", env=env, timeout=60)
        assert stop.returncode == 0, stop.stderr
        assert "stopping the mlx service" in stop.stderr
        assert not process_alive(child)
    finally:
        if process_alive(child):
            os.kill(child, signal.SIGKILL)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


# --- the lock -------------------------------------------------------------------------------------

class _HeldLock:
    """The PID file's lock held by this test process, as another task would hold it."""

    def __init__(self, env: dict):
        run = Path(env["CORTEX_RUN_DIR"])
        run.mkdir(parents=True, exist_ok=True)
        self.path = run / "mlx-server.pid.lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()} (a test holding the lock)\n".encode(), 0)

    def release(self) -> None:
        os.close(self.fd)


def test_lock_timeout_is_one_sentence_naming_the_holder(tmp_path):
    env = isolated_env(tmp_path, MLX_LOCK_TIMEOUT="1")
    lock = _HeldLock(env)
    try:
        started = time.monotonic()
        stop = inv("mlx.stop", env=env, timeout=120)
        took = time.monotonic() - started
    finally:
        lock.release()
    assert stop.returncode == 1, stop.stderr
    assert took < 20, took
    assert "Traceback" not in stop.stderr
    assert f"pid {os.getpid()} (a test holding the lock)" in stop.stderr
    errors = [line for line in stop.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "could not stop" in errors[0], stop.stderr


def test_bad_lock_timeout_is_one_sentence(tmp_path):
    env = isolated_env(tmp_path, MLX_LOCK_TIMEOUT="soon")
    stop = inv("mlx.stop", env=env, timeout=60)
    assert stop.returncode == 2 and "MLX_LOCK_TIMEOUT" in stop.stderr  # a setting: exit 2
    assert "Traceback" not in stop.stderr


def test_status_keeps_a_stale_pidfile_while_another_task_holds_the_lock(tmp_path):
    env = isolated_env(tmp_path)
    path = Path(env["CORTEX_RUN_DIR"]) / "mlx-server.pid"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": 2**22 + 4321, "create_time": 1.0,  # beyond pid_max
                                "cmdline": ["python", "-m", "mlx_service"]}))
    lock = _HeldLock(env)
    try:
        status = inv("mlx.status", "--json", env=env, timeout=60)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["stale"]
        assert path.exists(), "status removed a PID file while another task held the lock"
    finally:
        lock.release()
    status = inv("mlx.status", "--json", env=env, timeout=60)
    assert status.returncode == 0 and not path.exists()  # lock free: cleaned up


# --- who created a Compose project's containers (pure) ------------------------------------------

INSPECT = json.dumps([
    {"Id": "a" * 64, "Name": "/cortex-nats-1",
     "Config": {"Labels": {"com.docker.compose.project": "cortex",
                           "com.docker.compose.project.working_dir": "/home/me/cortex/compose",
                           "com.docker.compose.project.config_files":
                               "/home/me/cortex/compose/docker-compose.yml,"
                               "/home/me/cortex/compose/docker-compose.offline.yml"}}},
    {"Id": "b" * 64, "Name": "/cortex-web-1",
     "Config": {"Labels": {"com.docker.compose.project": "cortex",
                           "com.docker.compose.project.working_dir": "/srv/colleague/app",
                           "com.docker.compose.project.config_files":
                               "/srv/colleague/app/compose.yaml"}}},
    {"Id": "c" * 64, "Name": "/cortex-old-1",
     "Config": {"Labels": {"com.docker.compose.project": "cortex"}}},
])


def test_inspect_gives_each_container_its_checkout():
    origins = parse_inspect_origins(INSPECT)
    assert origins[0] == ContainerOrigin(
        "cortex-nats-1", "/home/me/cortex/compose",
        ("/home/me/cortex/compose/docker-compose.yml",
         "/home/me/cortex/compose/docker-compose.offline.yml"))
    assert origins[1].config_files == ("/srv/colleague/app/compose.yaml",)
    assert origins[2].working_dir is None
    assert parse_inspect_origins("") == [] and parse_inspect_origins("[]") == []


def test_containers_of_other_or_unknown_checkouts_are_foreign(tmp_path):
    origins = parse_inspect_origins(INSPECT)
    foreign = foreign_origins(origins, "/home/me/cortex/compose/")
    assert [o.name for o in foreign] == ["cortex-web-1", "cortex-old-1"]
    assert "/srv/colleague/app" in foreign[0].where()
    assert "unknown" in foreign[1].where()
    # The same directory through a symlink is the same checkout.
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    mine = ContainerOrigin("x", str(tmp_path / "link"))
    assert foreign_origins([mine], tmp_path / "real") == []


def test_uptime_comes_from_the_kernel_start_ticks_on_linux():
    me = ProcessRef.of(os.getpid())
    wall = time.time() - psutil.Process().create_time()
    assert abs(seconds_since_start(me, "Linux") - wall) < 1.0
    # A recorded create_time an hour off (a clock step since) does not change it on Linux.
    stepped = ProcessRef(me.pid, me.create_time - 3600, me.cmdline, me.start_ticks, me.boot_id)
    assert abs(seconds_since_start(stepped, "Linux") - wall) < 1.0
    assert seconds_since_start(stepped, "Darwin") > 3600
