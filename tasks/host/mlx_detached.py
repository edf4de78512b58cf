"""The host service started detached (the default): spawned in its own session with its
output appended to the log, then waited for until /health says ok."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil

from tasks.core.say import Say
from tasks.core.settings import Settings
from tasks.host.health import DiedWhileWaiting, HealthError, ready_line, wait_for_health
from tasks.host.launch import Launch, check_port, log_header, log_max_bytes
from tasks.host.logfiles import rotate_log, tail_lines
from tasks.host.pidfile import TOKEN_VAR, ProcessRef, RunMode, remove_pidfile, write_pidfile
from tasks.host.process_groups import Owner, ServiceError, end_leftovers, terminate_group
from tasks.host.service_state import new_record
from tasks.host.service_status import service_status


def spawn_detached(settings: Settings, launch: Launch, say: Say) -> tuple[subprocess.Popen, int]:
    """Under the lock: check the port, start the service detached, write the PID file.
    Returns (the Popen, the log offset where its output starts)."""
    check_port(settings, launch.bind)
    log = settings.mlx_log
    log.parent.mkdir(parents=True, exist_ok=True)
    if rotate_log(log, log_max_bytes(settings)):
        say(f"rotated {log} to {log.name}.1")
    # The service rotates its own log while it runs (one line per request, for as long
    # as it runs); stdout/stderr still go to the same file for crashes and tracebacks.
    env = dict(launch.env, MLX_LOG_FILE=str(log), MLX_LOG_MAX_BYTES=str(log_max_bytes(settings)))
    with open(log, "ab") as fh:
        fh.write(log_header(launch.cmd, launch.bind, settings.mlx_port, RunMode.DETACHED))
        fh.flush()
        offset = fh.tell()
        proc = subprocess.Popen(launch.cmd, stdin=subprocess.DEVNULL, stdout=fh,
                                stderr=subprocess.STDOUT, cwd=launch.cwd, env=env,
                                start_new_session=True, close_fds=True)
    try:
        ref = ProcessRef.of(proc.pid, token=launch.env[TOKEN_VAR])
    except psutil.NoSuchProcess:
        ref = None
    if ref is None or proc.poll() is not None:
        proc.wait()
        raise ServiceError(died_message(proc.returncode, log, offset))
    ref.cmdline = launch.cmd  # the command we ran; the service may re-exec under another one
    write_pidfile(settings.mlx_pidfile, new_record(settings, ref, launch.cmd, launch.bind,
                                                   launch.url, RunMode.DETACHED, launch.venv))
    return proc, offset


def await_started(settings: Settings, proc: subprocess.Popen, offset: int, launch: Launch,
                  timeout: float, say: Say) -> dict:
    """Wait for the service we just spawned to be healthy; stop it when it cannot become so."""
    log = settings.mlx_log
    owner = Owner(token=launch.env[TOKEN_VAR])
    started = time.monotonic()
    try:
        body = wait_for_health(launch.url, timeout, lambda: proc.poll() is None, say)
    except DiedWhileWaiting:
        code = proc.wait()
        end_leftovers(proc.pid, say, owner)
        remove_pidfile(settings.mlx_pidfile, only_if_pid=proc.pid)
        raise ServiceError(died_message(code, log, offset)) from None
    except HealthError as exc:
        # It stays up answering 503 "error" forever: stop our group rather than leave it.
        terminate_group(proc.pid, 5.0, say, owner)
        proc.wait()
        remove_pidfile(settings.mlx_pidfile, only_if_pid=proc.pid)
        raise ServiceError(failed_message(str(exc), log, offset)) from None
    except TimeoutError as exc:
        raise ServiceError(
            f"the mlx service (pid {proc.pid}) did not become healthy within {timeout:g}s "
            f"(last: {exc}); it is still running: see {log}, wait longer with --timeout, "
            f"or stop it with `inv mlx stop`") from None
    say(ready_line(launch.url, proc.pid, body, started, log))
    return service_status(settings, cleanup=False)


def died_message(code: int | None, log: Path, offset: int) -> str:
    lines = tail_lines(log, 20, start_offset=offset)
    how = f"exit code {code}" if code is None or code >= 0 else f"signal {-code}"
    text = f"the mlx service exited while starting ({how})"
    if lines:
        return text + f"; last lines of {log}:\n" + "\n".join("    " + line for line in lines)
    return text + f"; {log} has nothing from it"


def failed_message(error: str, log: Path, offset: int = 0) -> str:
    lines = tail_lines(log, 20, start_offset=offset)
    text = f"the mlx service failed to start: {error}; stopped it"
    if lines:
        return text + f"; last lines of {log}:\n" + "\n".join("    " + line for line in lines)
    return text
