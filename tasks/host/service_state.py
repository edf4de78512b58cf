"""The service's record and state: what the PID file says, checked against the live
processes, and the record a start writes. A stale PID file is described here, and removed
only by a caller that holds the lock (tasks/host/service_lock.py)."""
from __future__ import annotations

import time
from pathlib import Path

import psutil

from tasks.core.say import Say
from tasks.core.settings import Settings
from tasks.host.pidfile import (
    Ownership, PidFileError, PidRecord, ProcessRef, ProcessVerdict, RunMode, check_process,
    read_pidfile, remove_pidfile,
)
from tasks.host.process_groups import Owner, describe_strangers, split_group

MARKER = "mlx_service"  # the service's module: its command line contains it


class ServiceState:
    """What the PID file says, checked against the live processes."""

    def __init__(self, record: PidRecord | None, service: ProcessVerdict | None,
                 supervisor: ProcessVerdict | None, stale: str | None,
                 leftovers: list[psutil.Process],
                 strangers: list[psutil.Process] | None = None):
        self.record, self.service, self.supervisor = record, service, supervisor
        self.stale, self.leftovers = stale, leftovers  # leftovers: proven ours
        self.strangers = strangers or []  # in the recorded group id, not ours: left alone

    @property
    def running(self) -> bool:
        return self.service is not None and self.service.state == Ownership.OURS

    @property
    def supervised(self) -> bool:
        return self.supervisor is not None and self.supervisor.state == Ownership.OURS


def owner_of(record: PidRecord) -> Owner:
    """What proves a process of `record`'s group ours (its token; else its verified leader)."""
    return Owner(token=record.token, leader=record.service, marker=record.marker)


def inspect(settings: Settings, *, cleanup: bool = True, say: Say | None = None) -> ServiceState:
    """Read and verify the PID file. A stale one is described (and removed with `cleanup`,
    which only a caller holding the lock may ask for)."""
    path = settings.mlx_pidfile
    try:
        record = read_pidfile(path)
    except PidFileError as exc:
        stale = f"the PID file {path} is unreadable ({exc})"
        if cleanup:
            remove_pidfile(path)
            if say:
                say(f"stale PID file: {stale}; removed it (no process was signalled)")
        return ServiceState(None, None, None, stale, [])
    if record is None:
        return ServiceState(None, None, None, None, [])
    service = supervisor = None
    if record.service is not None:
        service = check_process(record.service, record.marker)
    if record.supervisor_ref is not None:
        supervisor = check_process(record.supervisor_ref, None)
    state = ServiceState(record, service, supervisor, None, [])
    if state.running or state.supervised:
        return state
    # Stale. Processes may still hold the recorded group id: ours only when proven (our
    # token), since that id may have been handed to a stranger's group since.
    if service is not None and service.state == Ownership.GONE and record.pid:
        state.leftovers, state.strangers = split_group(record.pid, owner_of(record))
    reason = service.reason if service is not None else "no service process recorded"
    state.stale = f"the PID file named pid {record.pid}, but {reason}" if record.pid else reason
    if state.strangers:
        state.stale += "; " + describe_strangers(record.pid, state.strangers)
    if state.leftovers:
        pids = ", ".join(str(p.pid) for p in state.leftovers)
        state.stale += f"; processes of its group are still running (pids {pids})"
    elif cleanup:
        remove_pidfile(path)
        if say:
            say(f"stale PID file: {state.stale}; removed it (no process was signalled)")
    return state


def new_record(settings: Settings, ref: ProcessRef | None, cmd: list[str], bind: list[str],
               url: str, mode: RunMode, venv: Path, supervisor: ProcessRef | None = None,
               restarts: int = 0) -> PidRecord:
    """The PID file a start writes (`ref` None: a supervisor with no service running)."""
    return PidRecord(
        pid=ref.pid if ref else None, create_time=ref.create_time if ref else None,
        cmdline=ref.cmdline if ref and ref.cmdline else cmd, port=settings.mlx_port, url=url,
        log=str(settings.mlx_log), bind=bind, mode=mode,
        supervisor=vars(supervisor) if supervisor else None, restarts=restarts,
        started_at=time.time(), marker=MARKER, venv=str(venv),
        start_ticks=ref.start_ticks if ref else None, boot_id=ref.boot_id if ref else None,
        token=ref.token if ref else None)
