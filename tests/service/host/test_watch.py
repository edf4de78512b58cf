"""`inv mlx start --watch` with the real service, run from a copy of its sources.

MLX_SERVICE_SRC points the service (and the watcher) at a temporary copy of mlx_service/,
so the test edits the copy, never the repo.
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

import psutil

from tests.support import (REPO_ROOT, health, inv, isolated_env, live_group_members,
                           process_alive)

START_TIMEOUT = 180


def _status(env: dict) -> dict:
    r = inv("mlx", "status", "--json", env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)






def _wait(predicate, timeout: float, what: str, watcher: subprocess.Popen, out: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert watcher.poll() is None, f"the watcher exited while waiting for {what}:\n" \
                                       + out.read_text()
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; watcher output:\n{out.read_text()}")


def test_watch_restarts_on_change_reports_errors_and_recovers(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO_ROOT / "mlx_service", src / "mlx_service",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = isolated_env(tmp_path, MLX_SERVICE_SRC=str(src))
    main_py = src / "mlx_service" / "__main__.py"
    original = main_py.read_text()
    repo_main = (REPO_ROOT / "mlx_service" / "__main__.py").read_bytes()
    out = tmp_path / "watch.out"
    watcher = subprocess.Popen([sys.executable, "-m", "invoke", "mlx.start", "--watch"],
                               cwd=REPO_ROOT, env=env, stdout=out.open("w"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    pids: list[int] = []
    try:
        def serving_with_restarts(n):
            def check():
                if health(int(env["MLX_PORT"]))[0] != 200:
                    return None
                s = _status(env)
                return s if s["running"] and s["restarts"] == n and s["healthy"] else None
            return check

        first = _wait(serving_with_restarts(0), START_TIMEOUT, "the first start", watcher, out)
        pids.append(first["pid"])
        assert first["mode"] == "watch" and first["watching"] is True
        # It runs the copy: its working directory is the copy's root.
        assert Path(psutil.Process(first["pid"]).cwd()) == src

        # 1. An edit restarts it, and it serves again.
        main_py.write_text(original + "\n# touched by the watch test\n")
        second = _wait(serving_with_restarts(1), START_TIMEOUT, "a restart after an edit",
                       watcher, out)
        assert second["pid"] != first["pid"]
        assert not process_alive(first["pid"])
        pids.append(second["pid"])
        assert "change detected (__main__.py)" in out.read_text()

        # 2. A syntax error: reported, and the watcher goes on.
        main_py.write_text(original + "\ndef broken(:\n")
        _wait(lambda: "failed to start" in out.read_text(), START_TIMEOUT,
              "the syntax error to be reported", watcher, out)
        text = out.read_text()
        assert "SyntaxError" in text and "fix the code and it restarts" in text
        broken = _status(env)
        assert broken["running"] is False and broken["watching"] is True
        assert broken["restarts"] == 2 and broken["stale"] is None
        assert health(int(env["MLX_PORT"]))[0] is None
        assert watcher.poll() is None

        # 3. The fix recovers.
        main_py.write_text(original)
        third = _wait(serving_with_restarts(3), START_TIMEOUT, "recovery after the fix",
                      watcher, out)
        pids.append(third["pid"])
        assert third["pid"] not in pids[:-1]

        # `inv mlx stop` elsewhere stops the watcher and its service.
        stop = inv("mlx", "stop", env=env, timeout=120)
        assert stop.returncode == 0, stop.stderr
        assert watcher.wait(timeout=60) == 0, out.read_text()
    finally:
        if watcher.poll() is None:
            os.killpg(watcher.pid, signal.SIGKILL)
            watcher.wait()
    for pid in pids:
        assert not process_alive(pid) and live_group_members(pid) == []
    assert not (Path(env["CORTEX_RUN_DIR"]) / "mlx-server.pid").exists()
    assert health(int(env["MLX_PORT"]))[0] is None
    assert main_py.read_text() == original
    assert (REPO_ROOT / "mlx_service" / "__main__.py").read_bytes() == repo_main  # repo untouched
