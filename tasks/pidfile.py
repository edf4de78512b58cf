"""PID files that can tell our process from a stranger that inherited its pid.

A PID file records the pid *and* the process's start time and command line. A pid is
only "ours" while a live process with that pid has the recorded start time and a command
line that still looks like ours (loosely: it contains a marker such as "mlx_service",
because the service re-execs itself and its command line may change; strictly equal when
no marker is given). Anything else is stale: the process is gone, or the pid now belongs
to another program. Nothing here ever sends a signal.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Literal

import psutil

# How far a re-read start time may drift from the recorded one (psutil derives it from
# boot time and clock ticks; equal in practice, a reused pid differs by far more).
START_TIME_TOLERANCE = 0.5


class PidFileError(ValueError):
    """The PID file exists but cannot be understood."""


@dataclass
class ProcessRef:
    """Who a process is: pid plus what distinguishes it from a later one with that pid."""

    pid: int
    create_time: float
    cmdline: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, pid: int) -> "ProcessRef":
        """The live process `pid` (raises psutil.NoSuchProcess when there is none)."""
        proc = psutil.Process(pid)
        with proc.oneshot():
            create_time = proc.create_time()
            try:
                cmdline = proc.cmdline()
            except (psutil.AccessDenied, psutil.ZombieProcess):
                cmdline = []
        return cls(pid, create_time, cmdline)

    @classmethod
    def from_json(cls, data: dict | None) -> "ProcessRef | None":
        if not data:
            return None
        return cls(int(data["pid"]), float(data["create_time"]), list(data.get("cmdline") or []))


@dataclass
class PidRecord:
    """What the PID file holds (JSON). `pid` is None while a supervisor has no child running."""

    pid: int | None
    create_time: float | None
    cmdline: list[str] = field(default_factory=list)
    port: int | None = None
    url: str | None = None
    log: str | None = None
    bind: list[str] = field(default_factory=list)
    mode: str = "detached"              # detached | foreground | watch
    supervisor: dict | None = None      # the attached `inv` process (foreground, watch)
    restarts: int = 0                   # restarts done by the watcher
    started_at: float | None = None     # wall clock of the (last) start
    marker: str | None = "mlx_service"  # what the command line must contain
    venv: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "PidRecord":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise PidFileError(f"not JSON ({exc})") from None
        if not isinstance(data, dict) or "pid" not in data:
            raise PidFileError("no pid in it")
        known = {f for f in cls.__dataclass_fields__}
        try:
            record = cls(**{k: v for k, v in data.items() if k in known})
            if record.pid is not None:
                record.pid = int(record.pid)
                if record.pid <= 0:
                    raise ValueError("pid must be positive")
            if record.create_time is not None:
                record.create_time = float(record.create_time)
            record.restarts = int(record.restarts or 0)
        except (TypeError, ValueError) as exc:
            raise PidFileError(f"bad field ({exc})") from None
        return record

    @property
    def service(self) -> ProcessRef | None:
        if self.pid is None or self.create_time is None:
            return None
        return ProcessRef(self.pid, self.create_time, list(self.cmdline))

    @property
    def supervisor_ref(self) -> ProcessRef | None:
        return ProcessRef.from_json(self.supervisor)


def read_pidfile(path: Path) -> PidRecord | None:
    """The record, or None when there is no PID file; PidFileError when it is unreadable."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PidFileError(str(exc)) from None
    return PidRecord.from_json(text)


def write_pidfile(path: Path, record: PidRecord) -> None:
    """Atomically replace the PID file (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(record.to_json())
    os.replace(tmp, path)


def remove_pidfile(path: Path, only_if_pid: int | None = None) -> bool:
    """Remove the PID file; with `only_if_pid`, only while it still names that supervisor or pid."""
    path = Path(path)
    if only_if_pid is not None:
        try:
            record = read_pidfile(path)
        except PidFileError:
            record = None
        if record is None:
            return False
        owner = record.supervisor_ref
        if record.pid != only_if_pid and (owner is None or owner.pid != only_if_pid):
            return False
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


@dataclass
class Check:
    """The verdict on one recorded process."""

    state: Literal["ours", "gone", "foreign"]
    reason: str
    process: psutil.Process | None = None


def describe_process(pid: int) -> str:
    """'pid 123 (sleep 300)', or 'pid 123' when its command line cannot be read."""
    try:
        proc = psutil.Process(pid)
        try:
            cmd = " ".join(proc.cmdline()) or proc.name()
        except (psutil.AccessDenied, psutil.ZombieProcess):
            cmd = proc.name()
    except psutil.Error:
        return f"pid {pid}"
    if len(cmd) > 160:
        cmd = cmd[:157] + "..."
    return f"pid {pid} ({cmd})" if cmd else f"pid {pid}"


def check_process(ref: ProcessRef, marker: str | None = None) -> Check:
    """Is `ref` still the same live process? Never signals anything."""
    try:
        proc = psutil.Process(ref.pid)
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                return Check("gone", f"pid {ref.pid} has exited")
            create_time = proc.create_time()
            try:
                cmdline = proc.cmdline()
            except (psutil.AccessDenied, psutil.ZombieProcess):
                cmdline = None
    except psutil.NoSuchProcess:
        return Check("gone", f"pid {ref.pid} is gone")
    except psutil.AccessDenied:
        return Check("foreign", f"pid {ref.pid} belongs to a process we may not inspect")
    who = describe_process(ref.pid)
    if abs(create_time - ref.create_time) > START_TIME_TOLERANCE:
        started = time.strftime("%H:%M:%S", time.localtime(create_time))
        return Check("foreign", f"{who} is another program now (started {started}, "
                                f"not at the recorded start time)")
    if cmdline is None:
        return Check("foreign", f"{who}: its command line cannot be read, so it is not "
                                "known to be ours")
    if marker is not None:
        matches = marker in " ".join(cmdline)
    else:
        matches = cmdline == list(ref.cmdline)
    if not matches:
        return Check("foreign", f"{who} is another program now (its command line differs)")
    return Check("ours", f"pid {ref.pid} is running", proc)


def lock_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".lock")


@contextlib.contextmanager
def locked(path: Path, timeout: float = 30.0) -> Iterator[None]:
    """Hold an exclusive advisory lock beside the PID file (two starts at once: one waits)."""
    import fcntl

    lp = lock_path(path)
    lp.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock
