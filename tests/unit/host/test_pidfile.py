"""PID file logic: records, verdicts on live/gone/reused pids, stale cleanup, log files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from tasks.host import logfiles, mlx_process as mp, process_groups, service_state
from tasks.host.pidfile import (
    TOKEN_VAR, PidFileError, PidRecord, ProcessRef, check_process, read_pidfile, remove_pidfile,
    write_pidfile,
)
from tasks.core.settings import load_settings


def _sleeper(*extra: str) -> subprocess.Popen:
    """A live process whose command line contains `extra` (e.g. the mlx_service marker)."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *extra])
    _wait_exec(p, "time.sleep(120)")
    return p


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


def _wait_exec(p: subprocess.Popen, word: str) -> None:
    """Popen returns after fork; wait until the child runs the program we asked for."""
    deadline = time.monotonic() + 5
    while word not in " ".join(psutil.Process(p.pid).cmdline()) and time.monotonic() < deadline:
        time.sleep(0.01)


def _record(pid: int, create_time: float, cmdline=("python", "-m", "mlx_service")) -> PidRecord:
    return PidRecord(pid=pid, create_time=create_time, cmdline=list(cmdline), port=1234,
                     url="http://127.0.0.1:1234", log="/tmp/x.log", bind=["127.0.0.1"])


def test_record_round_trips_through_an_atomic_write(tmp_path):
    path = tmp_path / "run" / "svc.pid"
    record = _record(4242, 1700000000.25)
    record.restarts = 3
    write_pidfile(path, record)
    assert read_pidfile(path) == record
    assert json.loads(path.read_text())["create_time"] == 1700000000.25
    assert [p.name for p in path.parent.iterdir()] == ["svc.pid"]  # no temp file left over


def test_missing_pidfile_reads_as_none(tmp_path):
    assert read_pidfile(tmp_path / "nope.pid") is None


@pytest.mark.parametrize("text", ["", "12345", "{not json", '{"port": 1}', '{"pid": -3}',
                                  '{"pid": "x"}', "[1, 2]"])
def test_unreadable_pidfiles_raise(tmp_path, text):
    path = tmp_path / "bad.pid"
    path.write_text(text)
    with pytest.raises(PidFileError):
        read_pidfile(path)


def test_unknown_keys_are_ignored(tmp_path):
    path = tmp_path / "x.pid"
    path.write_text(json.dumps({"pid": 7, "create_time": 1.5, "future_key": True}))
    assert read_pidfile(path).pid == 7


def test_live_process_with_marker_is_ours(procs):
    p = _sleeper("mlx_service")
    procs.append(p)
    ref = ProcessRef.of(p.pid)
    # The recorded command line may differ (the service re-execs): the marker decides.
    verdict = check_process(ProcessRef(p.pid, ref.create_time, ["other"]), "mlx_service")
    assert verdict.state == "ours", verdict.reason
    assert verdict.process.pid == p.pid


def test_reused_pid_with_another_start_time_is_foreign(procs):
    p = _sleeper("mlx_service")
    procs.append(p)
    ref = ProcessRef.of(p.pid)
    verdict = check_process(ProcessRef(p.pid, ref.create_time - 1000, ref.cmdline), "mlx_service")
    assert verdict.state == "foreign"
    assert "start time" in verdict.reason and str(p.pid) in verdict.reason


def test_same_start_time_but_another_program_is_foreign(procs):
    p = subprocess.Popen(["sleep", "120"])
    procs.append(p)
    _wait_exec(p, "sleep")
    ref = ProcessRef.of(p.pid)
    verdict = check_process(ref, "mlx_service")
    assert verdict.state == "foreign"
    assert "command line" in verdict.reason and "sleep 120" in verdict.reason


def test_without_marker_the_command_line_must_match_exactly(procs):
    p = _sleeper("a")
    procs.append(p)
    ref = ProcessRef.of(p.pid)
    assert check_process(ref, None).state == "ours"
    assert check_process(ProcessRef(p.pid, ref.create_time, ref.cmdline + ["b"]), None).state \
        == "foreign"


def test_gone_and_zombie_processes_are_gone(procs):
    p = _sleeper("mlx_service")
    ref = ProcessRef.of(p.pid)
    p.kill()
    deadline = time.monotonic() + 5
    while psutil.Process(p.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.02)
    assert check_process(ref, "mlx_service").state == "gone"  # a zombie: exited, not reaped
    p.wait()
    verdict = check_process(ref, "mlx_service")
    assert verdict.state == "gone" and str(p.pid) in verdict.reason


def test_remove_only_if_it_names_the_pid(tmp_path):
    path = tmp_path / "x.pid"
    write_pidfile(path, _record(11, 1.0))
    assert remove_pidfile(path, only_if_pid=12) is False and path.exists()
    assert remove_pidfile(path, only_if_pid=11) is True and not path.exists()
    assert remove_pidfile(path) is False


def _settings(tmp_path):
    return load_settings(environ={"CORTEX_RUN_DIR": str(tmp_path / "run"),
                                 "CORTEX_LOG_DIR": str(tmp_path / "logs"),
                                 "MLX_PORT": "1"})


def test_inspect_removes_a_stale_pidfile_without_signalling_the_stranger(tmp_path, procs):
    p = subprocess.Popen(["sleep", "120"])
    procs.append(p)
    settings = _settings(tmp_path)
    write_pidfile(settings.mlx_pidfile, _record(p.pid, ProcessRef.of(p.pid).create_time))
    said: list[str] = []
    state = service_state.inspect(settings, cleanup=True, say=said.append)
    assert not state.running
    assert str(p.pid) in state.stale
    assert not settings.mlx_pidfile.exists()
    assert any("stale" in line for line in said)
    assert p.poll() is None and psutil.Process(p.pid).status() != psutil.STATUS_STOPPED


def test_inspect_without_cleanup_keeps_the_file(tmp_path):
    settings = _settings(tmp_path)
    write_pidfile(settings.mlx_pidfile, _record(2**22 + 12345, 1.0))  # beyond pid_max
    state = service_state.inspect(settings, cleanup=False)
    assert state.stale and "gone" in state.stale
    assert settings.mlx_pidfile.exists()


def test_stop_with_a_corrupt_pidfile_signals_nothing(tmp_path):
    settings = _settings(tmp_path)
    settings.mlx_pidfile.parent.mkdir(parents=True)
    settings.mlx_pidfile.write_text("garbage")
    said: list[str] = []
    assert mp.stop_service(settings, say=said.append) is False
    assert not settings.mlx_pidfile.exists()
    assert any("unreadable" in line for line in said)
    assert any("not running" in line for line in said)


def test_status_of_nothing(tmp_path):
    settings = _settings(tmp_path).with_env(MLX_PORT=str(_free_port()))
    status = mp.service_status(settings)
    assert status["running"] is False and status["pid"] is None
    assert status["responding"] is False and status["health"] is None
    assert status["stale"] is None and status["restarts"] == 0
    assert status["log"].endswith("mlx-server.log")
    for key in ("url", "uptime", "bind"):
        assert key in status


def _free_port() -> int:
    from tests.support import free_port
    return free_port()


# --- the log beside the PID file ------------------------------------------------------------

def test_rotate_log_by_size(tmp_path):
    log = tmp_path / "mlx-server.log"
    log.write_text("x" * 100)
    assert logfiles.rotate_log(log, max_bytes=1000) is False
    assert logfiles.rotate_log(log, max_bytes=50) is True
    assert not log.exists() and (tmp_path / "mlx-server.log.1").read_text() == "x" * 100
    log.write_text("y" * 100)
    assert logfiles.rotate_log(log, max_bytes=50, keep=3)
    assert (tmp_path / "mlx-server.log.2").read_text() == "x" * 100
    assert (tmp_path / "mlx-server.log.1").read_text() == "y" * 100


def test_tail_lines(tmp_path):
    log = tmp_path / "l.log"
    log.write_text("".join(f"line {i}\n" for i in range(100000)))
    assert logfiles.tail_lines(log, 3) == ["line 99997", "line 99998", "line 99999"]
    assert logfiles.tail_lines(log, 0) == []
    assert logfiles.tail_lines(tmp_path / "missing.log", 5) == []
    offset = log.stat().st_size
    with open(log, "a") as fh:
        fh.write("after 1\nafter 2\n")
    assert logfiles.tail_lines(log, 10, start_offset=offset) == ["after 1", "after 2"]


def test_follow_log_survives_rotation(tmp_path):
    import io
    import threading

    log = tmp_path / "f.log"
    log.write_text("old 1\nold 2\n")
    out = io.StringIO()
    done = threading.Event()
    t = threading.Thread(target=logfiles.follow_log, args=(log, out),
                         kwargs={"n": 1, "poll": 0.02, "stop": done.is_set})
    t.start()
    try:
        time.sleep(0.2)
        with open(log, "a") as fh:
            fh.write("new 1\n")
        time.sleep(0.2)
        logfiles.rotate_log(log, max_bytes=1)
        log.write_text("rotated 1\n")
        deadline = time.monotonic() + 5
        while "rotated 1" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        done.set()
        t.join(5)
    assert out.getvalue() == "old 2\nnew 1\nrotated 1\n"


def test_stop_kills_what_is_left_of_a_group_whose_leader_died(tmp_path):
    """kill -9 of a leader leaves its children in its process group: they carry the token
    we gave the leader, which proves them ours, so stop ends them too."""
    token = "feedface" * 4
    leader = subprocess.Popen(["sh", "-c", "sleep 120 & wait", "mlx_service"],
                              start_new_session=True, env=dict(os.environ, **{TOKEN_VAR: token}))
    try:
        ref = ProcessRef.of(leader.pid)
        deadline = time.monotonic() + 5
        while len(process_groups.group_members(leader.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        child = [p.pid for p in process_groups.group_members(leader.pid) if p.pid != leader.pid]
        assert len(child) == 1
        settings = _settings(tmp_path)
        record = _record(leader.pid, ref.create_time)
        record.token = token
        write_pidfile(settings.mlx_pidfile, record)
        leader.kill()
        leader.wait()
        state = service_state.inspect(settings, cleanup=True)
        assert [p.pid for p in state.leftovers] == child and str(child[0]) in state.stale
        assert settings.mlx_pidfile.exists()  # kept: stop still has work to do
        said: list[str] = []
        assert mp.stop_service(settings, grace=2, say=said.append) is True
        assert process_groups.group_members(leader.pid) == []
        assert not psutil.pid_exists(child[0]) or \
            psutil.Process(child[0]).status() == psutil.STATUS_ZOMBIE
        assert not settings.mlx_pidfile.exists()
    finally:
        process_groups.killpg(leader.pid, 9)
