"""Process groups: who is left in one, and stopping what of it is ours (SIGTERM, grace, SIGKILL).

A process group id is a pid, and pids are reused: once every process of our group is gone,
the same number can name a stranger's group (a daemon whose session leader exited keeps
its group id alive with no leader). So a group is signalled only while a member of it is
proven ours (`Owner`): it carries our service token in its environment, or it is the
recorded leader and still passes the PID file's identity check. While one such member
lives the group id cannot have been handed to anyone else, so killpg reaches only our
session. Members that are not proven ours are reported by pid and command, and left alone.
"""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Callable

import psutil

from tasks.core.errors import TaskError
from tasks.core.polling import poll_until
from tasks.core.say import Say
from tasks.host.pidfile import (
    Ownership, ProcessRef, carries_token, check_process, describe_process,
)

KILL_WAIT = 10.0          # after SIGKILL, how long until we call the group unkillable


class ServiceError(TaskError, RuntimeError):
    """A lifecycle step failed; the message is one clear sentence (plus log lines).
    Defined here, where a group that survives SIGKILL raises it; tasks/host/mlx_process re-exports it."""


@dataclass(frozen=True)
class Owner:
    """What proves a process ours: our token in its environment, or being the recorded
    leader that still passes the identity check (PID files of the previous format)."""

    token: str | None = None
    leader: ProcessRef | None = None
    marker: str | None = None

    def owns(self, proc: psutil.Process) -> bool:
        if carries_token(proc, self.token):
            return True
        return (self.leader is not None and proc.pid == self.leader.pid
                and check_process(self.leader, self.marker).state == Ownership.OURS)


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes of process group `pgid`, whoever they belong to."""
    members = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or os.getpgid(proc.pid) != pgid:
                continue
            members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def split_group(pgid: int, owner: Owner) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """The live members of group `pgid`: (proven ours, everything else)."""
    ours, others = [], []
    for proc in group_members(pgid):
        (ours if owner.owns(proc) else others).append(proc)
    return ours, others


def describe_strangers(pgid: int, others: list[psutil.Process]) -> str:
    """One sentence naming processes we found in a group id of ours but may not touch."""
    names = "; ".join(describe_process(p.pid) for p in others)
    return (f"process group {pgid} now holds processes that are not ours, left alone: {names}")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return bool(group_members(pgid))


def killpg(pgid: int, sig: int) -> None:
    """os.killpg, quiet when the group is gone already. Callers prove the group ours first."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _signal_if_ours(pgid: int, sig: int, owner: Owner, say: Say) -> bool:
    """Signal the group while a member is proven ours; False (and a report) when none is."""
    ours, others = split_group(pgid, owner)
    if not ours:
        if others:
            say(describe_strangers(pgid, others))
        return False
    killpg(pgid, sig)
    return True


def terminate_group(pgid: int, grace: float, say: Say, owner: Owner,
                    label: str = "the mlx service",
                    interrupted: Callable[[], bool] = lambda: False) -> bool:
    """SIGTERM to the group, up to `grace` seconds, then SIGKILL; returns once no process of
    the group proven ours is left. True when it went gently, False when it had to be killed.
    Every signal is sent only while a member is proven ours (see the module's docstring)."""
    if not _signal_if_ours(pgid, signal.SIGTERM, owner, say):
        return True

    def none_of_ours_left() -> bool:
        return not split_group(pgid, owner)[0]

    ended = poll_until(lambda: "gone" if none_of_ours_left() else
                       "interrupted" if interrupted() else None, grace, interval=0.1)
    if ended == "gone":
        return True
    say(f"{label} (process group {pgid}) is still running"
        f"{'' if interrupted() else f' after {grace:g}s'}; sending SIGKILL")
    if not _signal_if_ours(pgid, signal.SIGKILL, owner, say):
        return False
    if not poll_until(none_of_ours_left, KILL_WAIT, interval=0.05):
        left = ", ".join(str(p.pid) for p in split_group(pgid, owner)[0])
        raise ServiceError(f"process group {pgid} survived SIGKILL (pids {left})")
    return False


def end_leftovers(pgid: int, say: Say, owner: Owner) -> None:
    """After our leader exited: stop what of its group is still ours (2 s grace)."""
    if group_alive(pgid):
        terminate_group(pgid, 2.0, say, owner)
