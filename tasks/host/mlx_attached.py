"""The host service run attached (`inv mlx start --foreground` and `--watch`).

Its output goes to the terminal and the log. Ctrl+C stops it gently, a second Ctrl+C at
once; in watch mode a change of the service's sources restarts it. The PID file names the
attached `inv` process as `supervisor`, so `inv mlx stop` elsewhere asks it to stop.

`Supervisor.run` is one loop over four steps, each its own method: a stop was requested,
the service exited by itself, waiting for /health, the sources changed.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import TextIO

import psutil

from tasks.core.say import Say, say_as
from tasks.core.settings import Settings
from tasks.host.health import (
    HEALTH_POLL, PROGRESS_EVERY, health_error, is_healthy, probe_health, ready_line,
)
from tasks.host.launch import check_port, log_header, log_max_bytes
from tasks.host.logfiles import rotate_log
from tasks.host.pidfile import (
    TOKEN_VAR, ProcessRef, RunMode, new_token, remove_pidfile, write_pidfile,
)
from tasks.host.process_groups import (
    Owner, ServiceError, end_leftovers, group_alive, killpg, terminate_group,
)
from tasks.host.service_lock import service_lock
from tasks.host.service_state import inspect, new_record
from tasks.host.watch import SourceWatcher, summarize, watched_dir

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class AttachedChild:
    """One service process, its output copied to our stdout and appended to the log."""

    def __init__(self, cmd: list[str], env: dict, cwd: Path, log: Path, mode: RunMode,
                 bind: list[str], port: int, out: TextIO):
        self.tail: deque[str] = deque(maxlen=20)
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log, "ab")
        self._log.write(log_header(cmd, bind, port, mode))
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


class Supervisor:
    """The attached run's state, and one method per thing that can happen to it."""

    def __init__(self, settings: Settings, cmd: list[str], env: dict, cwd: Path, *,
                 bind: list[str], url: str, venv: Path, timeout: float, watch: bool,
                 grace: float, say: Say, out: TextIO):
        self.settings, self.cmd, self.cwd, self.bind = settings, cmd, cwd, bind
        self.url, self.venv, self.timeout, self.watch = url, venv, timeout, watch
        self.grace, self.say, self.out = grace, say, out
        self.mode = RunMode.WATCH if watch else RunMode.FOREGROUND
        # Every process we start carries the token: only those are ever signalled.
        self.env = dict(env, **{TOKEN_VAR: env.get(TOKEN_VAR) or new_token()})
        self.owner = Owner(token=self.env[TOKEN_VAR])
        self.me = ProcessRef.of(os.getpid())
        self.stop_requests = 0     # Ctrl+C, SIGTERM, SIGHUP, or our own decision to stop
        self.watcher: SourceWatcher | None = None
        self.child: AttachedChild | None = None
        self.restarts = 0
        self.exit_code = 0
        self.ready = False
        self.timed_out = False
        self.next_poll = self.next_progress = 0.0
        self.term_sent: float | None = None
        self.killed = False

    # --- bookkeeping ----------------------------------------------------------------------

    def on_signal(self, signum, frame) -> None:
        self.stop_requests += 1

    def interrupted_twice(self) -> bool:
        return self.stop_requests >= 2

    def record(self) -> None:
        """The PID file: us as supervisor, and the child when one runs."""
        ref = self.child.ref if self.child else None
        write_pidfile(self.settings.mlx_pidfile, new_record(
            self.settings, ref, self.cmd, self.bind, self.url, self.mode, self.venv,
            supervisor=self.me, restarts=self.restarts))

    def spawn(self) -> None:
        rotate_log(self.settings.mlx_log, log_max_bytes(self.settings))
        self.child = AttachedChild(self.cmd, self.env, self.cwd, self.settings.mlx_log,
                                   self.mode, self.bind, self.settings.mlx_port, self.out)
        self.record()
        self.say(f"started the mlx service (pid {self.child.pid}); waiting for {self.url}/health "
                 f"(up to {self.timeout:g}s)")

    def watching_line(self) -> str:
        return f"\n[mlx] watching {watched_dir(self.settings)}: fix the code and it restarts"

    def stop_child_for_restart(self) -> None:
        terminate_group(self.child.pid, min(self.grace, 5.0), self.say, self.owner,
                        interrupted=self.interrupted_twice)
        self.child.finish()

    # --- the run --------------------------------------------------------------------------

    def start(self) -> None:
        """Under the lock: nothing of ours runs, the port is free; then the first child."""
        with service_lock(self.settings, "inv mlx start", self.say):
            state = inspect(self.settings, cleanup=True, say=self.say)
            if state.running or state.supervised:
                raise ServiceError(f"the mlx service is already running (pid "
                                   f"{state.record.pid}); stop it first (`inv mlx stop`)")
            check_port(self.settings, self.bind)
            if self.watch:
                self.watcher = SourceWatcher(watched_dir(self.settings)).start()
                self.say(f"watching {watched_dir(self.settings)} for changes")
            self.spawn()

    def run(self) -> int:
        """Until the service stops: the exit code (see run_attached)."""
        while True:
            now = time.monotonic()
            if self.stop_requests:
                code = self.stopping(now)
                if code is not None:
                    return code
                continue
            if self.child is not None and self.child.exited():
                code = self.child_exited()
                if code is not None:
                    return code
            if self.child is not None and not self.ready and now >= self.next_poll:
                if self.check_health(now):
                    continue
            if self.watcher is not None:
                self.follow_sources()
            else:
                time.sleep(0.1)

    def stopping(self, now: float) -> int | None:
        """A stop was requested: gently first, at once on a second request or after grace.
        The exit code once the child is gone, else None (call again)."""
        child = self.child
        # The child is not reaped yet, so its group id cannot name anyone else's.
        if child is not None and group_alive(child.pid):
            if self.term_sent is None:
                self.say(f"stopping the mlx service (SIGTERM, then SIGKILL after "
                         f"{self.grace:g}s; Ctrl+C again to kill it now)")
                killpg(child.pid, signal.SIGTERM)
                self.term_sent = now
            elif not self.killed and (self.interrupted_twice()
                                      or now - self.term_sent > self.grace):
                self.say("killing the mlx service (SIGKILL)")
                killpg(child.pid, signal.SIGKILL)
                self.killed = True
            time.sleep(0.05)
            return None
        if child is not None:
            code = child.finish()
            if self.killed:
                self.exit_code = 130
            elif self.exit_code == 0 and code not in (0, -signal.SIGTERM):
                self.exit_code = code if code > 0 else 128 - code
            self.say(f"the mlx service stopped ({describe_exit(code)})")
        return self.exit_code

    def child_exited(self) -> int | None:
        """The service exited by itself: the exit code, or None when watching (it waits)."""
        code = self.child.finish()
        end_leftovers(self.child.pid, self.say, self.owner)
        if not self.watch:
            what = "while starting" if not self.ready else "by itself"
            self.say(f"the mlx service exited {what} ({describe_exit(code)})")
            return code if code else (0 if self.ready else 1)
        last = [line for line in self.child.tail if line.strip()][-5:]
        self.say(f"the mlx service {'failed to start' if not self.ready else 'exited'} "
                 f"({describe_exit(code)})"
                 + (":\n" + "\n".join("    " + l for l in last) if last else "")
                 + self.watching_line())
        self.child = None
        self.record()
        return None

    def check_health(self, now: float) -> bool:
        """One /health poll while not ready; True when the loop should start over."""
        self.next_poll = now + HEALTH_POLL
        status, body, detail = probe_health(self.url, timeout=1.0)
        if is_healthy(status, body):
            self.ready = True
            self.say(ready_line(self.url, self.child.pid, body, self.child.started,
                                self.settings.mlx_log))
        elif health_error(body) is not None:
            # Up but broken (its output, shown above, says more): stop it now.
            self.stop_child_for_restart()
            self.child = None
            if not self.watch:
                raise ServiceError(f"the mlx service failed to start: "
                                   f"{health_error(body)}; stopped it")
            self.say(f"the mlx service failed to start: {health_error(body)}; stopped it"
                     + self.watching_line())
            self.record()
            return True
        elif now - self.child.started > self.timeout and not self.timed_out:
            self.timed_out = True
            if not self.watch:
                self.say(f"the mlx service did not become healthy within {self.timeout:g}s "
                         f"(last: {detail}); stopping it")
                self.exit_code = 1
                self.stop_requests += 1
                return True
            self.say(f"the mlx service is not healthy after {self.timeout:g}s ({detail}); "
                     f"still watching")
        elif now >= self.next_progress and now - self.child.started >= PROGRESS_EVERY:
            self.say(f"  ... {now - self.child.started:.0f}s, still waiting ({detail})")
            self.next_progress = now + PROGRESS_EVERY
        return False

    def follow_sources(self) -> None:
        """Sources changed (after a quiet period): restart the service."""
        if self.watcher.error is not None:
            self.say(f"the file watcher failed: {self.watcher.error}; no more restarts")
            self.watcher = None
            return
        paths = self.watcher.next_batch(timeout=0.1)
        if paths and not self.stop_requests:
            self.say(f"change detected ({summarize(paths, watched_dir(self.settings))}); "
                     f"restarting the mlx service")
            if self.child is not None:
                self.stop_child_for_restart()
            self.restarts += 1
            self.spawn()
            self.ready, self.timed_out, self.next_progress = False, False, 0.0

    def clean_up(self) -> None:
        """Whatever happened: no watcher, no child of ours, no PID file naming us."""
        if self.watcher is not None:
            self.watcher.stop()
        if self.child is not None and group_alive(self.child.pid):
            terminate_group(self.child.pid, 2.0, self.say, self.owner)
        remove_pidfile(self.settings.mlx_pidfile, only_if_pid=self.me.pid)


def run_attached(settings: Settings, cmd: list[str], env: dict, cwd: Path, *, bind: list[str],
                 url: str, venv: Path, timeout: float, watch: bool = False,
                 grace: float | None = None, say: Say = say_as("mlx"),
                 out: TextIO | None = None) -> int:
    """Run the service attached. Returns the exit code: 0 after a clean stop on request
    (Ctrl+C, SIGTERM, `inv mlx stop`), 130 when it had to be killed (second Ctrl+C or
    grace exceeded), the service's own code when it exits by itself, 1 on a start failure.
    `grace` (SIGTERM to SIGKILL) defaults to MLX_STOP_GRACE, as for a detached service."""
    grace = settings.mlx_stop_grace if grace is None else float(grace)
    supervisor = Supervisor(settings, cmd, env, cwd, bind=bind, url=url, venv=venv,
                            timeout=timeout, watch=watch, grace=grace, say=say,
                            out=out or sys.stdout)
    previous = {s: signal.signal(s, supervisor.on_signal) for s in STOP_SIGNALS}
    try:
        supervisor.start()
        return supervisor.run()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        supervisor.clean_up()


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
