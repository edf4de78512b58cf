"""The host service run attached (`inv mlx start --foreground` and `--watch`).

Its output goes to the terminal and the log. Ctrl+C stops it gently, a second Ctrl+C at
once; in watch mode a change of the service's sources restarts it. The PID file names the
attached `inv` process as `supervisor`, so `inv mlx stop` elsewhere asks it to stop.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import TextIO

import psutil

from tasks.host.logfiles import rotate_log
from tasks.host.mlx_process import (
    HEALTH_POLL, PROGRESS_EVERY, Owner, Say, ServiceError, _check_port, _kill_leftovers,
    _killpg, _log_header, _log_max_bytes, _new_record, _ready_line, group_alive, health_error,
    inspect, is_healthy, print_to_stderr, probe_health, service_lock, terminate_group,
)
from tasks.host.pidfile import TOKEN_VAR, ProcessRef, new_token, remove_pidfile, write_pidfile
from tasks.core.settings import Settings
from tasks.host.watch import SourceWatcher, summarize, watched_dir

class _AttachedChild:
    """One service process, its output copied to our stdout and appended to the log."""

    def __init__(self, cmd: list[str], env: dict, cwd: Path, log: Path, mode: str,
                 bind: list[str], port: int, out: TextIO):
        import subprocess

        self.tail: deque[str] = deque(maxlen=20)
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log, "ab")
        self._log.write(_log_header(cmd, bind, port, mode))
        self._log.flush()
        self._out = out
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                     start_new_session=True, close_fds=True)
        try:
            self.ref: ProcessRef | None = ProcessRef.of(self.proc.pid, token=env.get(TOKEN_VAR))
            self.ref.cmdline = cmd
        except psutil.NoSuchProcess:
            self.ref = None
        self.started = time.monotonic()
        self._pump = threading.Thread(target=self._copy, daemon=True)
        self._pump.start()

    def _copy(self) -> None:
        for line in iter(self.proc.stdout.readline, b""):
            self.tail.append(line.decode(errors="replace").rstrip("\n"))
            try:
                self._log.write(line)
                self._log.flush()
                self._out.write(line.decode(errors="replace"))
                self._out.flush()
            except (OSError, ValueError):
                pass

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def finish(self) -> int:
        code = self.proc.wait()
        self._pump.join(timeout=2)
        self.proc.stdout.close()
        self._log.close()
        return code


def run_attached(settings: Settings, cmd: list[str], env: dict, cwd: Path, *, bind: list[str],
                 url: str, venv: Path, timeout: float, watch: bool = False,
                 grace: float | None = None, say: Say = print_to_stderr,
                 out: TextIO | None = None) -> int:
    """Run the service attached. Returns the exit code: 0 after a clean stop on request
    (Ctrl+C, SIGTERM, `inv mlx stop`), 130 when it had to be killed (second Ctrl+C or
    grace exceeded), the service's own code when it exits by itself, 1 on a start failure.
    `grace` (SIGTERM to SIGKILL) defaults to MLX_STOP_GRACE, as for a detached service."""
    grace = settings.mlx_stop_grace if grace is None else float(grace)
    out = out or sys.stdout
    mode = "watch" if watch else "foreground"
    # Every process we start carries the token: only those are ever signalled.
    env = dict(env, **{TOKEN_VAR: env.get(TOKEN_VAR) or new_token()})
    owner = Owner(token=env[TOKEN_VAR])
    me = ProcessRef.of(os.getpid())
    requests = {"n": 0}

    def on_signal(signum, frame):
        requests["n"] += 1

    handled = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    previous = {s: signal.signal(s, on_signal) for s in handled}
    watcher = None
    child: _AttachedChild | None = None
    restarts = 0
    exit_code = 0

    def record(c: _AttachedChild | None) -> None:
        write_pidfile(settings.mlx_pidfile, _new_record(
            settings, c.ref if c else None, cmd, bind, url, mode, venv, supervisor=me,
            restarts=restarts))

    def spawn() -> _AttachedChild | None:
        rotate_log(settings.mlx_log, _log_max_bytes(settings))
        c = _AttachedChild(cmd, env, cwd, settings.mlx_log, mode, bind, settings.mlx_port, out)
        record(c)
        say(f"started the mlx service (pid {c.pid}); waiting for {url}/health "
            f"(up to {timeout:g}s)")
        return c

    try:
        with service_lock(settings, "inv mlx start", say):
            state = inspect(settings, cleanup=True, say=say)
            if state.running or state.supervised:
                raise ServiceError(f"the mlx service is already running (pid "
                                   f"{state.record.pid}); stop it first (`inv mlx stop`)")
            _check_port(settings, bind)
            if watch:
                watcher = SourceWatcher(watched_dir(settings)).start()
                say(f"watching {watched_dir(settings)} for changes")
            child = spawn()
        ready = False
        next_poll = next_progress = 0.0
        timed_out = False
        term_sent = None
        killed = False
        while True:
            now = time.monotonic()
            # 1. Stop requested: gently first, at once on a second request or after grace.
            if requests["n"]:
                # The child is not reaped yet, so its group id cannot name anyone else's.
                if child is not None and group_alive(child.pid):
                    if term_sent is None:
                        say(f"stopping the mlx service (SIGTERM, then SIGKILL after {grace:g}s; "
                            f"Ctrl+C again to kill it now)")
                        _killpg(child.pid, signal.SIGTERM)
                        term_sent = now
                    elif not killed and (requests["n"] >= 2 or now - term_sent > grace):
                        say("killing the mlx service (SIGKILL)")
                        _killpg(child.pid, signal.SIGKILL)
                        killed = True
                    time.sleep(0.05)
                    continue
                if child is not None:
                    code = child.finish()
                    if killed:
                        exit_code = 130
                    elif exit_code == 0 and code not in (0, -signal.SIGTERM):
                        exit_code = code if code > 0 else 128 - code
                    say(f"the mlx service stopped ({_how(code)})")
                return exit_code
            # 2. The service exited by itself.
            if child is not None and child.exited():
                code = child.finish()
                _kill_leftovers(child.pid, say, owner)
                if not watch:
                    what = "while starting" if not ready else "by itself"
                    say(f"the mlx service exited {what} ({_how(code)})")
                    return code if code else (0 if ready else 1)
                last = [line for line in child.tail if line.strip()][-5:]
                say(f"the mlx service {'failed to start' if not ready else 'exited'} "
                    f"({_how(code)})" + (":\n" + "\n".join("    " + l for l in last) if last else "")
                    + f"\n[mlx] watching {watched_dir(settings)}: fix the code and it restarts")
                child = None
                record(None)
            # 3. Waiting for health.
            if child is not None and not ready and now >= next_poll:
                next_poll = now + HEALTH_POLL
                status, body, detail = probe_health(url, timeout=1.0)
                if is_healthy(status, body):
                    ready = True
                    say(_ready_line(url, child.pid, body, child.started, settings.mlx_log))
                elif health_error(body) is not None:
                    # Up but broken (its output, shown above, says more): stop it now.
                    terminate_group(child.pid, min(grace, 5.0), say, owner,
                                    interrupted=lambda: requests["n"] >= 2)
                    child.finish()
                    child = None
                    if not watch:
                        raise ServiceError(f"the mlx service failed to start: "
                                           f"{health_error(body)}; stopped it")
                    say(f"the mlx service failed to start: {health_error(body)}; stopped it"
                        f"\n[mlx] watching {watched_dir(settings)}: fix the code and it restarts")
                    record(None)
                    continue
                elif now - child.started > timeout and not timed_out:
                    timed_out = True
                    if not watch:
                        say(f"the mlx service did not become healthy within {timeout:g}s "
                            f"(last: {detail}); stopping it")
                        exit_code = 1
                        requests["n"] += 1
                        continue
                    say(f"the mlx service is not healthy after {timeout:g}s ({detail}); "
                        f"still watching")
                elif now >= next_progress and now - child.started >= PROGRESS_EVERY:
                    say(f"  ... {now - child.started:.0f}s, still waiting ({detail})")
                    next_progress = now + PROGRESS_EVERY
            # 4. Sources changed: restart.
            if watcher is not None:
                if watcher.error is not None:
                    say(f"the file watcher failed: {watcher.error}; no more restarts")
                    watcher = None
                    continue
                paths = watcher.next_batch(timeout=0.1)
                if paths and not requests["n"]:
                    say(f"change detected ({summarize(paths, watched_dir(settings))}); "
                        f"restarting the mlx service")
                    if child is not None:
                        terminate_group(child.pid, min(grace, 5.0), say, owner,
                                        interrupted=lambda: requests["n"] >= 2)
                        child.finish()
                    restarts += 1
                    child = spawn()
                    ready, timed_out, next_progress = False, False, 0.0
            else:
                time.sleep(0.1)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if watcher is not None:
            watcher.stop()
        if child is not None and group_alive(child.pid):
            terminate_group(child.pid, 2.0, say, owner)
        remove_pidfile(settings.mlx_pidfile, only_if_pid=me.pid)


def _how(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
