"""The host embedding service's lifecycle: start, stop, restart, status. Plain functions.

Safety rules, in one place:
- a PID file records pid, kernel start time, command line and a token we put in the
  service's environment; a pid counts as ours only while they still match
  (tasks/host/pidfile.py). A stale PID file is reported and removed, under the lock only
  (tasks/host/service_state.py);
- the service runs in its own session and process group; a group is signalled only while
  a member of it is proven ours (tasks/host/process_groups.py), and stop returns once none
  of ours is left (tasks/host/mlx_stop.py). Anything else is reported by pid and command,
  and left alone;
- one lock beside the PID file serialises start (venv install included), stop and the
  stale-file cleanup; a waiter names the holder, a timeout is one sentence
  (tasks/host/service_lock.py);
- the port is checked before starting; a holder is named by pid and command
  (tasks/host/launch.py).

Modes: detached (default: output appended to the log; tasks/host/mlx_detached.py),
foreground (attached: output to the terminal and the log; Ctrl+C stops it gently, a second
Ctrl+C kills it at once) and watch (foreground plus a restart on every change of the
service's sources). In foreground and watch modes the PID file also names the attached
`inv` process as `supervisor`, so that `inv mlx stop` elsewhere asks it to stop instead of
racing it (tasks/host/mlx_attached.py).

This module is the lifecycle's public face: start_service and restart_service live here;
stop_service, service_status and ServiceError are re-exported from their own modules.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable

from tasks.core.say import Say, say_as
from tasks.core.settings import Settings
from tasks.host.health import (
    DiedWhileWaiting, HealthError, is_healthy, probe_health, ready_line, wait_for_health,
)
from tasks.host.launch import prepare_launch, service_url
from tasks.host.logfiles import tail_lines
from tasks.host.mlx_attached import run_attached
from tasks.host.mlx_detached import await_started, failed_message, spawn_detached
from tasks.host.mlx_stop import stop_service
from tasks.host.model_asked import other_model_sentence
from tasks.host.pidfile import Ownership, check_process, remove_pidfile
from tasks.host.process_groups import ServiceError, terminate_group
from tasks.host.service_lock import service_lock
from tasks.host.service_settings import check_service_settings
from tasks.host.service_state import ServiceState, inspect, owner_of
from tasks.host.service_venv import check_venv_flag
from tasks.host.service_status import service_status

__all__ = ["ServiceError", "ServiceState", "restart_service", "service_status", "start_service",
           "stop_service"]



def start_service(settings: Settings, *, venv_path: Path | str | None = None, install: bool = True,
                  wait: bool = True, timeout: float | None = None, extra_args: Iterable[str] = (),
                  foreground: bool = False, watch: bool = False, create_venv: bool = False,
                  say: Say = say_as("mlx")) -> dict:
    """Start the service (or find it running). Returns the status dict after start; in
    foreground/watch mode that is after it stopped, with "exit_code" added.
    Raises ServiceError with one clear sentence on failure.

    Everything up to the PID file (stale cleanup, venv install, the spawn) happens under
    the lock: a second start at the same moment waits, then finds this one running."""
    timeout = settings.mlx_wait_timeout if timeout is None else float(timeout)
    # A bad setting, or a log that cannot be written, is the user's to fix before anything is
    # installed or run: one sentence naming it, not a traceback or a service dying in its log.
    venv = Path(venv_path).expanduser() if venv_path else settings.mlx_venv
    check_service_settings(settings, extra_args, venv)
    check_venv_flag(settings, venv_path, create_venv)
    attached = foreground or watch
    proc = offset = launch = None
    with service_lock(settings, "inv mlx start", say):
        state = inspect(settings, cleanup=True, say=say)
        if not (state.running or state.supervised):
            launch = prepare_launch(settings, state, venv, install, list(extra_args), say)
            if not attached:
                proc, offset = spawn_detached(settings, launch, say)
    if state.running or state.supervised:
        return already_running(settings, state, wait=wait, timeout=timeout,
                               attached=attached, say=say)
    if attached:
        code = run_attached(settings, launch.cmd, launch.env, launch.cwd, bind=launch.bind,
                            url=launch.url, venv=launch.venv, timeout=timeout, watch=watch,
                            say=say)
        result = service_status(settings, cleanup=False)
        result["exit_code"] = code
        return result
    say(f"started the mlx service (pid {proc.pid}); output goes to {settings.mlx_log}")
    if not wait:
        say("not waiting for it to be ready (--no-wait)")
        return service_status(settings, cleanup=False)
    return await_started(settings, proc, offset, launch, timeout, say)


def already_running(settings: Settings, state: ServiceState, *, wait: bool, timeout: float,
                    attached: bool, say: Say) -> dict:
    """A start that finds the service running: its status, after waiting for it to be ready."""
    record = state.record
    url = record.url or service_url(settings)
    if not state.running:  # a watcher whose service is down (waiting for a fix)
        sup = record.supervisor_ref
        raise ServiceError(f"`inv mlx start --watch` (pid {sup.pid if sup else '?'}) supervises "
                           f"the mlx service, which is not running now (waiting for a "
                           f"change); see its terminal, or `inv mlx stop`")
    if record.port and record.port != settings.mlx_port:
        say(f"note: it runs on port {record.port}, not the configured {settings.mlx_port}; "
            f"`inv mlx restart` applies the new port")
    if attached:
        raise ServiceError(f"the mlx service is already running (pid {record.pid}, "
                           f"{record.mode}); stop it first (`inv mlx stop`) to run it attached")
    status, body, detail = probe_health(url)
    if is_healthy(status, body):
        # EMBEDDINGS_MODEL asks for another model than the one that runs: not a start of it.
        other = other_model_sentence(settings, url, record.pid)
        if other:
            raise ServiceError(other)
        say(f"the mlx service is already running and healthy (pid {record.pid}) at {url}, "
            f"serving {body.get('model')}")
        return service_status(settings, cleanup=False)
    if not wait:
        say(f"the mlx service is already running (pid {record.pid}) but not healthy yet ({detail})")
        return service_status(settings, cleanup=False)
    say(f"the mlx service is already starting (pid {record.pid}); waiting for it")
    return _wait_for_the_running_one(settings, record, url, timeout, say)


def _wait_for_the_running_one(settings: Settings, record, url: str, timeout: float,
                              say: Say) -> dict:
    started = time.monotonic()
    ref = record.service
    log = Path(record.log or settings.mlx_log)

    def still_ours() -> bool:
        return check_process(ref, record.marker).state == Ownership.OURS

    try:
        body = wait_for_health(url, timeout, still_ours, say)
    except HealthError as exc:
        if still_ours():  # it cannot recover: stop it
            terminate_group(record.pid, 5.0, say, owner_of(record))
        remove_pidfile(settings.mlx_pidfile, only_if_pid=record.pid)
        raise ServiceError(failed_message(str(exc), log)) from None
    except DiedWhileWaiting:
        remove_pidfile(settings.mlx_pidfile, only_if_pid=record.pid)
        lines = tail_lines(log, 20)
        raise ServiceError(f"the mlx service (pid {record.pid}) exited while starting; last "
                           f"lines of its log:\n" + "\n".join("    " + l for l in lines)) from None
    except TimeoutError as exc:
        raise ServiceError(f"the mlx service (pid {record.pid}) did not become healthy within "
                           f"{timeout:g}s (last: {exc}); see {record.log}") from None
    say(ready_line(url, record.pid, body, started, log))
    return service_status(settings, cleanup=False)


def restart_service(settings: Settings, *, grace: float | None = None,
                    say: Say = say_as("mlx"), **start_kwargs) -> dict:
    # Refused before the running one is stopped.
    check_service_settings(settings, start_kwargs.get("extra_args", ()),
                           start_kwargs.get("venv_path"))
    check_venv_flag(settings, start_kwargs.get("venv_path"), start_kwargs.get("create_venv", False))
    stop_service(settings, grace=grace, say=say)
    return start_service(settings, say=say, **start_kwargs)
