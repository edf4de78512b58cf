"""Process groups: who is left in one, and stopping all of it (SIGTERM, grace, SIGKILL)."""
from __future__ import annotations

import os
import signal
import time
from typing import Callable

import psutil

KILL_WAIT = 10.0          # after SIGKILL, how long until we call the group unkillable

Say = Callable[[str], None]


class ServiceError(RuntimeError):
    """A lifecycle step failed; the message is one clear sentence (plus log lines).
    Defined here, where a group that survives SIGKILL raises it; tasks/mlx_process re-exports it."""

def group_members(pgid: int, not_before: float | None = None) -> list[psutil.Process]:
    """Live (non-zombie) processes of process group `pgid`; with `not_before`, only those
    started at or after that time (the leftovers of a group whose leader is gone)."""
    members = []
    for proc in psutil.process_iter(["pid", "status", "create_time"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or os.getpgid(proc.pid) != pgid:
                continue
            if not_before is not None and proc.info["create_time"] < not_before - 0.5:
                continue
            members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return bool(group_members(pgid))


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def terminate_group(pgid: int, grace: float, say: Say, label: str = "the mlx service",
                    interrupted: Callable[[], bool] = lambda: False) -> bool:
    """SIGTERM to the group, up to `grace` seconds, then SIGKILL; returns once no process of
    the group is left. True when the group went gently, False when it had to be killed."""
    if not group_alive(pgid):
        return True
    _killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while group_alive(pgid):
        if time.monotonic() >= deadline or interrupted():
            break
        time.sleep(0.1)
    else:
        return True
    say(f"{label} (process group {pgid}) is still running"
        f"{'' if interrupted() else f' after {grace:g}s'}; sending SIGKILL")
    _killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            left = ", ".join(str(p.pid) for p in group_members(pgid))
            raise ServiceError(f"process group {pgid} survived SIGKILL (pids {left})")
        time.sleep(0.05)
    return False
