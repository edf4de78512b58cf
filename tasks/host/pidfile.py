"""PID files that can tell our process from a stranger that inherited its pid.

A PID file records the pid and what identifies that process for as long as it lives:
- on Linux, the kernel's start time in clock ticks since boot (field 22 of /proc/PID/stat)
  and the boot's id. Unlike psutil's create_time (boot time, itself derived from the wall
  clock, plus those ticks) it does not move when the clock is stepped (NTP, VM resume);
- elsewhere (macOS: no /proc), psutil's create_time within a tolerance;
- everywhere, a marker only we set: CORTEX_SERVICE_TOKEN=<random> in the service's
  environment (children inherit it, so leftovers of our process group are recognisable),
  else its command line (loosely: it contains "mlx_service", because the service re-execs
  itself; strictly equal when no marker is given).
The decision of which facts count on which platform is one pure function, `same_process`.
Anything not proven ours is stale: the process is gone, or the pid belongs to another
program now. Nothing here ever sends a signal. PID files of the previous format (no ticks,
no token) are still read and judged by create_time and command line. The lock beside the
file is pidfile_lock.py's.
"""
from __future__ import annotations

import json
import os
import platform
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import psutil

from tasks.core.errors import TaskError
from tasks.core.enums import StrEnum

SYSTEM = platform.system()
TOKEN_VAR = "CORTEX_SERVICE_TOKEN"
# psutil's create_time is wall-clock derived: a clock step moves it. Where no kernel start
# ticks exist (macOS) or were recorded (old PID files) it is compared with this tolerance,
# and never alone: the token or the command line must match too.
CREATE_TIME_TOLERANCE = 2.0


class RunMode(StrEnum):
    """How the service was started (the PID file's `mode`)."""

    DETACHED = "detached"      # output appended to the log
    FOREGROUND = "foreground"  # attached: output to the terminal and the log
    WATCH = "watch"            # attached, restarted on every source change


class Ownership(StrEnum):
    """Whether a recorded pid is still our process."""

    OURS = "ours"        # the same live process
    GONE = "gone"        # exited (or a zombie)
    FOREIGN = "foreign"  # the pid names another program now, or one we may not inspect


class PidFileError(TaskError, ValueError):
    """The PID file exists but cannot be understood."""


def new_token() -> str:
    """A marker only our start puts into the service's environment."""
    return secrets.token_hex(16)


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def read_proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start ticks since boot) from /proc/PID/stat; None without /proc.
    Raises psutil.NoSuchProcess when /proc exists but the pid does not."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            raise psutil.NoSuchProcess(pid) from None
        return None
    except (PermissionError, OSError):
        return None
    # "PID (comm) S ...": comm may hold spaces and parentheses, so split after the last ")".
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[22 - 3])  # fields[0] is field 3 (state); starttime is 22


@dataclass
class ProcessRef:
    """Who a process is: pid plus what distinguishes it from a later one with that pid."""

    pid: int
    create_time: float
    cmdline: list[str] = field(default_factory=list)
    start_ticks: int | None = None   # Linux: kernel start time, clock ticks since boot
    boot_id: str | None = None       # Linux: the boot those ticks count from
    token: str | None = None         # CORTEX_SERVICE_TOKEN we put in its environment

    @classmethod
    def of(cls, pid: int, token: str | None = None) -> "ProcessRef":
        """The live process `pid` (raises psutil.NoSuchProcess when there is none)."""
        seen = observe(pid)
        return cls(pid, seen.create_time, list(seen.cmdline or []), seen.start_ticks,
                   seen.boot_id, token)

    @classmethod
    def from_json(cls, data: dict | None) -> "ProcessRef | None":
        if not data:
            return None
        ticks = data.get("start_ticks")
        return cls(int(data["pid"]), float(data["create_time"]), list(data.get("cmdline") or []),
                   int(ticks) if ticks is not None else None, data.get("boot_id"),
                   data.get("token"))


@dataclass
class Observed:
    """What can be read of a live process now."""

    create_time: float
    cmdline: list[str] | None            # None: unreadable
    start_ticks: int | None = None
    boot_id: str | None = None
    environ: dict[str, str] | None = None  # None: unreadable
    zombie: bool = False


def observe(pid: int) -> Observed:
    """Read process `pid` (psutil.NoSuchProcess when there is none; AccessDenied passes)."""
    stat = read_proc_stat(pid)
    proc = psutil.Process(pid)
    with proc.oneshot():
        zombie = stat[0] == "Z" if stat else proc.status() == psutil.STATUS_ZOMBIE
        create_time = proc.create_time()
        try:
            cmdline = proc.cmdline()
        except (psutil.AccessDenied, psutil.ZombieProcess):
            cmdline = None
        try:
            environ = proc.environ()
        except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
            environ = None
    return Observed(create_time, cmdline, stat[1] if stat else None,
                    _boot_id() if stat else None, environ, zombie)


def identity_rule(system: str) -> Literal["start-ticks", "create-time"]:
    """What pins a process's start on `system`: the kernel's start ticks on Linux (they do
    not move with clock steps), psutil's create_time within a tolerance elsewhere (macOS
    has no /proc). Either way a marker must match too (see same_process)."""
    return "start-ticks" if system == "Linux" else "create-time"


def same_process(recorded: ProcessRef, seen: Observed, system: str,
                 marker: str | None = None) -> str | None:
    """None when `seen` is the recorded process, else why not (words after its pid). Pure."""
    if identity_rule(system) == "start-ticks" and recorded.start_ticks is not None \
            and seen.start_ticks is not None:
        if recorded.boot_id and seen.boot_id and recorded.boot_id != seen.boot_id:
            return "is another program now (the machine restarted since it was recorded)"
        if seen.start_ticks != recorded.start_ticks:
            return "is another program now (its start time is not the recorded one)"
    else:  # macOS, or a PID file of the previous format
        token_proves_it = bool(recorded.token and seen.environ
                               and seen.environ.get(TOKEN_VAR) == recorded.token)
        # Our token is proof by itself (no other process can hold it); without it the
        # wall-clock start time must agree within the tolerance.
        if not token_proves_it and \
                abs(seen.create_time - recorded.create_time) > CREATE_TIME_TOLERANCE:
            return "is another program now (its start time is not the recorded one)"
    if recorded.token and seen.environ is not None:
        if seen.environ.get(TOKEN_VAR) == recorded.token:
            return None
        return "is another program now (it does not carry our service token)"
    if seen.cmdline is None:
        return "cannot be inspected (its command line is unreadable), so it is not known to be ours"
    if marker is not None:
        matches = marker in " ".join(seen.cmdline)
    else:
        matches = seen.cmdline == list(recorded.cmdline)
    return None if matches else "is another program now (its command line differs)"


def seconds_since_start(ref: ProcessRef, system: str = SYSTEM) -> float:
    """How long `ref` has run: from the kernel's start ticks on Linux (a clock step does not
    change it), else from the wall clock."""
    if identity_rule(system) == "start-ticks" and ref.start_ticks is not None \
            and hasattr(time, "CLOCK_BOOTTIME"):
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
        return max(0.0, since_boot - ref.start_ticks / os.sysconf("SC_CLK_TCK"))
    return max(0.0, time.time() - ref.create_time)


def carries_token(proc: psutil.Process, token: str | None) -> bool:
    """Whether `proc`'s environment holds our token (inherited by everything we started)."""
    if not token:
        return False
    try:
        return proc.environ().get(TOKEN_VAR) == token
    except (psutil.Error, OSError):
        return False


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
    mode: str = RunMode.DETACHED        # a RunMode (read back as its plain word)
    supervisor: dict | None = None      # the attached `inv` process (foreground, watch)
    restarts: int = 0                   # restarts done by the watcher
    started_at: float | None = None     # wall clock of the (last) start
    marker: str | None = "mlx_service"  # what the command line must contain
    venv: str | None = None
    start_ticks: int | None = None      # Linux: kernel start ticks (absent in old files)
    boot_id: str | None = None
    token: str | None = None            # CORTEX_SERVICE_TOKEN given to the service

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
            if record.start_ticks is not None:
                record.start_ticks = int(record.start_ticks)
            record.restarts = int(record.restarts or 0)
        except (TypeError, ValueError) as exc:
            raise PidFileError(f"bad field ({exc})") from None
        return record

    @property
    def service(self) -> ProcessRef | None:
        if self.pid is None or self.create_time is None:
            return None
        return ProcessRef(self.pid, self.create_time, list(self.cmdline), self.start_ticks,
                          self.boot_id, self.token)

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
class ProcessVerdict:
    """The verdict on one recorded process: is it still ours, and why (not)."""

    state: Ownership
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
    cmd = " ".join(cmd.split())  # one line, whatever the arguments hold
    if len(cmd) > 160:
        # The middle goes: the program and its last arguments say what the process is, and a
        # long interpreter path (a venv deep in a checkout) must not push the latter out.
        cmd = cmd[:80] + "..." + cmd[-77:]
    return f"pid {pid} ({cmd})" if cmd else f"pid {pid}"


def check_process(ref: ProcessRef, marker: str | None = None, system: str = SYSTEM) -> ProcessVerdict:
    """Is `ref` still the same live process? Never signals anything."""
    try:
        seen = observe(ref.pid)
    except psutil.NoSuchProcess:
        return ProcessVerdict(Ownership.GONE, f"pid {ref.pid} is gone")
    except psutil.AccessDenied:
        return ProcessVerdict(Ownership.FOREIGN, f"pid {ref.pid} belongs to a process we may not inspect")
    if seen.zombie:
        return ProcessVerdict(Ownership.GONE, f"pid {ref.pid} has exited")
    why = same_process(ref, seen, system, marker)
    if why is not None:
        return ProcessVerdict(Ownership.FOREIGN, f"{describe_process(ref.pid)} {why}")
    try:
        return ProcessVerdict(Ownership.OURS, f"pid {ref.pid} is running", psutil.Process(ref.pid))
    except psutil.NoSuchProcess:
        return ProcessVerdict(Ownership.GONE, f"pid {ref.pid} is gone")
