"""Stopping the host service: ask an attached supervisor first, then end the recorded group
while a member of it is proven ours. Anything else is named and left alone."""
from __future__ import annotations

import os
import signal

import psutil

from tasks.core.say import Say, say_as
from tasks.core.settings import Settings
from tasks.host.pidfile import remove_pidfile
from tasks.host.process_groups import KILL_WAIT, split_group, terminate_group
from tasks.host.service_lock import service_lock
from tasks.host.service_state import ServiceState, inspect, owner_of


def stop_service(settings: Settings, *, grace: float | None = None,
                 say: Say = say_as("mlx")) -> bool:
    """Stop the service (and an attached supervisor). True when something was stopped.
    Signals only processes proven ours; returns once none of them is left. Processes in the
    recorded group id that are not proven ours are named and left alone. `grace` (seconds
    from SIGTERM to SIGKILL) defaults to MLX_STOP_GRACE, the time the service drains in."""
    grace = settings.mlx_stop_grace if grace is None else float(grace)
    with service_lock(settings, "inv mlx stop", say):
        state = inspect(settings, cleanup=True, say=say)
        stopped = stop_supervisor(state, grace, say)
        if stop_group(state, grace, say):
            stopped = True
        if state.record is not None:
            remove_pidfile(settings.mlx_pidfile)
        if not stopped:
            say("the mlx service is not running")
        return stopped


def stop_supervisor(state: ServiceState, grace: float, say: Say) -> bool:
    """Ask an attached `inv mlx start` to stop its service; True when there was one."""
    if not state.supervised or state.supervisor.process.pid == os.getpid():
        return False
    sup = state.supervisor.process
    say(f"asking the attached `inv mlx start` (pid {sup.pid}) to stop the service")
    sup.send_signal(signal.SIGTERM)
    try:
        sup.wait(timeout=grace + KILL_WAIT + 5)
    except psutil.TimeoutExpired:
        say(f"pid {sup.pid} did not exit; stopping the service directly")
    return True


def stop_group(state: ServiceState, grace: float, say: Say) -> bool:
    """Terminate the recorded group while a member is proven ours; True when one was."""
    record = state.record
    if record is None or not record.pid:
        return False
    if not (state.running or state.leftovers):
        return False
    # Re-verify: the supervisor may have stopped it (and its pid be gone) meanwhile.
    if split_group(record.pid, owner_of(record))[0]:
        say(f"stopping the mlx service (pid {record.pid}; SIGTERM, then SIGKILL after "
            f"{grace:g}s)")
        gentle = terminate_group(record.pid, grace, say, owner_of(record))
        say("stopped" if gentle else "killed")
    return True
