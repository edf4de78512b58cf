"""The host embedding service's lifecycle: start, stop, status, logs. Plain functions.

Safety rules, in one place:
- a PID file records pid, kernel start time, command line and a token we put in the
  service's environment; a pid counts as ours only while they still match
  (tasks/pidfile.py). A stale PID file is reported and removed, under the lock only;
- the service runs in its own session and process group; a group is signalled only while
  a member of it is proven ours (tasks/process_groups.py), and stop returns once none of
  ours is left. Anything else is reported by pid and command, and left alone;
- one lock beside the PID file serialises start (venv install included), stop and the
  stale-file cleanup; a waiter names the holder, a timeout is one sentence;
- the port is checked before starting; a holder is named by pid and command.

Modes: detached (default: output appended to the log), foreground (attached: output to the
terminal and the log; Ctrl+C stops it gently, a second Ctrl+C kills it at once) and watch
(foreground plus a restart on every change of the service's sources). In foreground and
watch modes the PID file also names the attached `inv` process as `supervisor`, so that
`inv mlx stop` elsewhere asks it to stop instead of racing it (tasks/mlx_attached.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import psutil

from tasks.host.bind_addresses import bind_addresses as _bind_addresses
from tasks.host.logfiles import LOG_KEEP, LOG_MAX_BYTES, follow_log, rotate_log, tail_lines  # noqa: F401
from tasks.host.pidfile import (
    TOKEN_VAR, Check, LockTimeout, PidFileError, PidRecord, ProcessRef, check_process,
    describe_process, lock_if_free, locked, new_token, read_pidfile, remove_pidfile,
    seconds_since_start, write_pidfile,
)
from tasks.host.process_groups import (  # noqa: F401
    KILL_WAIT, Owner, ServiceError, _killpg, describe_strangers, group_alive, group_members,
    split_group, terminate_group,
)
from tasks.host.port_holders import address_free, describe_holders, port_holders
from tasks.host.service_venv import install_service_venv, service_python
from tasks.core.settings import Settings, called_host, http_url
from tasks.host.watch import service_src

MARKER = "mlx_service"
PROGRESS_EVERY = 3.0      # seconds between "still waiting" lines
HEALTH_POLL = 0.25
# How long a task waits for the PID file's lock: long enough for another start to install
# the venv. MLX_LOCK_TIMEOUT (seconds) changes it.
LOCK_TIMEOUT = 300.0

Say = Callable[[str], None]


def print_to_stderr(line: str) -> None:
    print(f"[mlx] {line}", file=sys.stderr, flush=True)


# --- addresses ------------------------------------------------------------------------------

def bind_addresses(settings: Settings) -> list[str]:
    """settings.mlx_host plus, on Linux, the Docker bridge's gateway address (when found)."""
    return _bind_addresses(settings)


def service_url(settings: Settings, bind: list[str] | None = None) -> str:
    """The URL to probe: the first listen address (a wildcard is probed on loopback)."""
    hosts = bind or [h.strip() for h in settings.mlx_host.split(",") if h.strip()] or ["127.0.0.1"]
    return http_url(called_host(hosts[0]), settings.mlx_port)


# --- health -----------------------------------------------------------------------------------

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def probe_health(url: str, timeout: float = 2.0) -> tuple[int | None, dict | None, str]:
    """GET url/health: (HTTP status or None, JSON body or None, a short description)."""
    try:
        with _NO_PROXY.open(url.rstrip("/") + "/health", timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, None, f"no answer ({reason})"
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    detail = f"HTTP {status}"
    if isinstance(body, dict) and body.get("status"):
        detail += f" {body['status']}"
    return status, body if isinstance(body, dict) else None, detail


def _get_json(url: str, timeout: float) -> dict | None:
    try:
        with _NO_PROXY.open(url, timeout=timeout) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def probe_auth(url: str, headers: dict[str, str], timeout: float = 2.0) -> str | None:
    """Whether our calls get through the service's API key check:
    "open" (it wants no key), "missing" (it wants one and MLX_API_KEY is not set),
    "accepted" / "refused" (it wants one: ours opens it, or not); None when it does not say.
    Costs a GET of the open /info, plus, with a key, one empty POST the key check answers
    before any work (anything but 401 means the key passed)."""
    info = _get_json(url.rstrip("/") + "/info", timeout)
    wants = info.get("auth") if info else None
    if wants not in ("none", "bearer"):
        return None
    if wants == "none":
        return "open"
    if not headers:
        return "missing"
    probe = urllib.request.Request(url.rstrip("/") + "/v1/embeddings", data=b'{"input": []}',
                                   method="POST",
                                   headers={"Content-Type": "application/json", **headers})
    try:
        with _NO_PROXY.open(probe, timeout=timeout):
            return "accepted"
    except urllib.error.HTTPError as exc:
        return "refused" if exc.code == 401 else "accepted"
    except (OSError, ValueError):
        return None


def is_healthy(status: int | None, body: dict | None) -> bool:
    return status == 200 and isinstance(body, dict) and body.get("status") == "ok"


class _Died(Exception):
    pass


class _Failed(Exception):
    """/health said "error" (the model failed to load, the worker died): waiting cannot help."""


def health_error(body: dict | None) -> str | None:
    """The service's own reason when /health reports status "error", else None."""
    if isinstance(body, dict) and body.get("status") == "error":
        return str(body.get("error") or "the service reports an error without a reason")
    return None


def wait_for_health(url: str, timeout: float, alive: Callable[[], bool], say: Say,
                    progress_every: float = PROGRESS_EVERY) -> dict:
    """Poll /health until healthy (returns the body), the process dies (_Died), /health says
    "error" (_Failed carrying its reason) or the timeout passes (TimeoutError carrying the
    last description). Progress goes to `say`."""
    start = time.monotonic()
    say(f"waiting for {url}/health (up to {timeout:g}s)")
    next_progress = start + progress_every
    detail = "not polled yet"
    while True:
        if not alive():
            raise _Died(detail)
        status, body, detail = probe_health(url, timeout=min(2.0, max(timeout, 0.1)))
        if is_healthy(status, body):
            return body
        if health_error(body) is not None:
            raise _Failed(health_error(body))
        if not alive():
            raise _Died(detail)
        now = time.monotonic()
        if now - start >= timeout:
            raise TimeoutError(detail)
        if now >= next_progress:
            say(f"  ... {now - start:.0f}s, still waiting ({detail})")
            next_progress = now + progress_every
        time.sleep(HEALTH_POLL)


# --- the lock -----------------------------------------------------------------------------------

def lock_timeout(settings: Settings) -> float:
    raw = settings.get("MLX_LOCK_TIMEOUT")
    if raw is None:
        return LOCK_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ServiceError(f"MLX_LOCK_TIMEOUT={raw!r} is not a number of seconds")
    return value


@contextlib.contextmanager
def service_lock(settings: Settings, doing: str, say: Say | None = None):
    """The PID file's lock for one task; a timeout is a ServiceError naming the holder."""
    try:
        with locked(settings.mlx_pidfile, lock_timeout(settings), doing=doing, waiting=say):
            yield
    except LockTimeout as exc:
        raise ServiceError(f"could not {doing.split()[-1]} the mlx service: {exc}") from None


def owner_of(record: PidRecord) -> Owner:
    """What proves a process of `record`'s group ours (its token; else its verified leader)."""
    return Owner(token=record.token, leader=record.service, marker=record.marker)


# --- state --------------------------------------------------------------------------------------

class ServiceState:
    """What the PID file says, checked against the live processes."""

    def __init__(self, record: PidRecord | None, service: Check | None,
                 supervisor: Check | None, stale: str | None,
                 leftovers: list[psutil.Process],
                 strangers: list[psutil.Process] | None = None):
        self.record, self.service, self.supervisor = record, service, supervisor
        self.stale, self.leftovers = stale, leftovers  # leftovers: proven ours
        self.strangers = strangers or []  # in the recorded group id, not ours: left alone

    @property
    def running(self) -> bool:
        return self.service is not None and self.service.state == "ours"

    @property
    def supervised(self) -> bool:
        return self.supervisor is not None and self.supervisor.state == "ours"


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
    if service is not None and service.state == "gone" and record.pid:
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


def service_status(settings: Settings, *, cleanup: bool = True, say: Say | None = None) -> dict:
    """The service's status document (the seed's keys plus health, uptime, stale, ...).
    A stale PID file is removed only when the lock is free (another task may be mid-start)."""
    if cleanup:
        with lock_if_free(settings.mlx_pidfile) as held:
            state = inspect(settings, cleanup=held, say=say)
    else:
        state = inspect(settings, cleanup=False, say=say)
    record = state.record
    live = record if (state.running or state.supervised) else None
    bind = list(live.bind) if live and live.bind else bind_addresses(settings)
    url = live.url if live and live.url else service_url(settings, bind)
    status, body, _ = probe_health(url, timeout=2.0)
    auth = probe_auth(url, settings.mlx_auth_headers()) if status is not None else None
    uptime = None
    if state.running and record.create_time:
        uptime = round(seconds_since_start(record.service), 1)
    return {
        "running": state.running,
        "pid": record.pid if state.running else None,
        "url": url,
        "responding": status is not None,
        "healthy": is_healthy(status, body),
        "auth": auth,
        "log": str(Path(live.log) if live and live.log else settings.mlx_log),
        "health": body,
        "uptime": uptime,
        "stale": state.stale,
        "restarts": record.restarts if live else 0,
        "bind": bind,
        "port": live.port if live and live.port else settings.mlx_port,
        "mode": live.mode if live else None,
        "watching": bool(live and live.mode == "watch" and state.supervised),
    }


# --- start ------------------------------------------------------------------------------------

def service_command(settings: Settings, venv_path: Path | None, bind: list[str],
                    extra_args: Iterable[str] = ()) -> list[str]:
    python = service_python(settings, venv_path)
    cmd = [str(python), "-m", MARKER, "--host", ",".join(bind), "--port", str(settings.mlx_port)]
    if settings.embeddings_model:
        cmd += ["--model", settings.embeddings_model]
    if settings.embeddings_dim:
        cmd += ["--dim", str(settings.embeddings_dim)]
    return cmd + list(extra_args)


def service_env(settings: Settings, bind: list[str]) -> dict[str, str]:
    env = {k: str(v) for k, v in settings.env.items() if v is not None}
    src = str(service_src(settings))
    env.update(MLX_HOST=",".join(bind), MLX_PORT=str(settings.mlx_port), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([src] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def _log_header(cmd: list[str], bind: list[str], port: int, mode: str) -> bytes:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return (f"\n===== {stamp} inv mlx start ({mode}): {shlex.join(cmd)} "
            f"[listen {', '.join(bind)} port {port}]\n").encode()


def _check_port(settings: Settings, bind: list[str]) -> None:
    port = settings.mlx_port
    busy = [a for a in bind if not address_free(a, port)]
    if not busy:
        return
    holders = port_holders(port, bind)
    raise ServiceError(
        f"port {port} is already in use on {', '.join(busy)} by {describe_holders(holders)}; "
        f"stop that program or choose another port (MLX_PORT)")


def _ready_line(url: str, pid: int, body: dict, started: float, log: Path) -> str:
    model = body.get("model", "?")
    dims = body.get("dimensions", "?")
    return (f"ready at {url} (pid {pid}, model {model}, {dims} dimensions) "
            f"after {time.monotonic() - started:.1f}s; log: {log}")


def _new_record(settings: Settings, ref: ProcessRef | None, cmd: list[str], bind: list[str],
                url: str, mode: str, venv: Path, supervisor: ProcessRef | None = None,
                restarts: int = 0) -> PidRecord:
    return PidRecord(
        pid=ref.pid if ref else None, create_time=ref.create_time if ref else None,
        cmdline=ref.cmdline if ref and ref.cmdline else cmd, port=settings.mlx_port, url=url,
        log=str(settings.mlx_log), bind=bind, mode=mode,
        supervisor=vars(supervisor) if supervisor else None, restarts=restarts,
        started_at=time.time(), marker=MARKER, venv=str(venv),
        start_ticks=ref.start_ticks if ref else None, boot_id=ref.boot_id if ref else None,
        token=ref.token if ref else None)


@dataclass
class _Launch:
    """What a start runs, decided under the lock."""

    cmd: list[str]
    env: dict[str, str]
    cwd: Path
    bind: list[str]
    url: str
    venv: Path


def start_service(settings: Settings, *, venv_path: Path | str | None = None, install: bool = True,
                  wait: bool = True, timeout: float | None = None, extra_args: Iterable[str] = (),
                  foreground: bool = False, watch: bool = False,
                  say: Say = print_to_stderr) -> dict:
    """Start the service (or find it running). Returns the status dict after start; in
    foreground/watch mode that is after it stopped, with "exit_code" added.
    Raises ServiceError with one clear sentence on failure.

    Everything up to the PID file (stale cleanup, venv install, the spawn) happens under
    the lock: a second start at the same moment waits, then finds this one running."""
    timeout = settings.mlx_wait_timeout if timeout is None else float(timeout)
    settings.mlx_port  # a bad port is the user's to fix before anything is installed or run
    venv = Path(venv_path).expanduser() if venv_path else settings.mlx_venv
    attached = foreground or watch
    proc = offset = launch = None
    with service_lock(settings, "inv mlx start", say):
        state = inspect(settings, cleanup=True, say=say)
        if not (state.running or state.supervised):
            launch = _prepare(settings, state, venv, install, list(extra_args), say)
            if not attached:
                proc, offset = _spawn_detached(settings, launch, say)
    if state.running or state.supervised:
        return _already_running(settings, state, wait=wait, timeout=timeout,
                                attached=attached, say=say)
    if attached:
        from tasks.host.mlx_attached import run_attached  # it builds on this module
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
    return _await_started(settings, proc, offset, launch, timeout, say)


def _prepare(settings: Settings, state: ServiceState, venv: Path, install: bool,
             extra_args: list[str], say: Say) -> _Launch:
    """Under the lock: end our leftovers, install the venv, decide the command."""
    if state.leftovers:
        say(f"cleaning up: {state.stale}")
        terminate_group(state.record.pid, 5.0, say, owner_of(state.record))
        remove_pidfile(settings.mlx_pidfile)
    if install:
        if not install_service_venv(settings, venv, say=say):
            say(f"venv up to date ({venv})")
    python = service_python(settings, venv)
    if not python.exists():
        raise ServiceError(f"the service venv {venv} does not exist; run `inv mlx install`")
    bind = bind_addresses(settings)
    cwd = service_src(settings)
    if not (cwd / MARKER).is_dir():
        raise ServiceError(f"no {MARKER} package in {cwd} (MLX_SERVICE_SRC)")
    env = dict(service_env(settings, bind), **{TOKEN_VAR: new_token()})
    return _Launch(service_command(settings, venv, bind, extra_args), env, cwd, bind,
                   service_url(settings, bind), venv)


def _spawn_detached(settings: Settings, launch: _Launch, say: Say):
    """Under the lock: check the port, start the service detached, write the PID file.
    Returns (the Popen, the log offset where its output starts)."""
    import subprocess

    _check_port(settings, launch.bind)
    log = settings.mlx_log
    log.parent.mkdir(parents=True, exist_ok=True)
    if rotate_log(log, _log_max_bytes(settings)):
        say(f"rotated {log} to {log.name}.1")
    # The service rotates its own log while it runs (one line per request, for as long
    # as it runs); stdout/stderr still go to the same file for crashes and tracebacks.
    env = dict(launch.env, MLX_LOG_FILE=str(log), MLX_LOG_MAX_BYTES=str(_log_max_bytes(settings)))
    with open(log, "ab") as fh:
        fh.write(_log_header(launch.cmd, launch.bind, settings.mlx_port, "detached"))
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
        raise ServiceError(_died_message(proc.returncode, log, offset))
    ref.cmdline = launch.cmd  # the command we ran; the service may re-exec under another one
    write_pidfile(settings.mlx_pidfile, _new_record(settings, ref, launch.cmd, launch.bind,
                                                    launch.url, "detached", launch.venv))
    return proc, offset


def _await_started(settings: Settings, proc, offset: int, launch: _Launch, timeout: float,
                   say: Say) -> dict:
    """Wait for the service we just spawned to be healthy; stop it when it cannot become so."""
    log = settings.mlx_log
    owner = Owner(token=launch.env[TOKEN_VAR])
    started = time.monotonic()
    try:
        body = wait_for_health(launch.url, timeout, lambda: proc.poll() is None, say)
    except _Died:
        code = proc.wait()
        _kill_leftovers(proc.pid, say, owner)
        remove_pidfile(settings.mlx_pidfile, only_if_pid=proc.pid)
        raise ServiceError(_died_message(code, log, offset)) from None
    except _Failed as exc:
        # It stays up answering 503 "error" forever: stop our group rather than leave it.
        terminate_group(proc.pid, 5.0, say, owner)
        proc.wait()
        remove_pidfile(settings.mlx_pidfile, only_if_pid=proc.pid)
        raise ServiceError(_failed_message(str(exc), log, offset)) from None
    except TimeoutError as exc:
        raise ServiceError(
            f"the mlx service (pid {proc.pid}) did not become healthy within {timeout:g}s "
            f"(last: {exc}); it is still running: see {log}, wait longer with --timeout, "
            f"or stop it with `inv mlx stop`") from None
    say(_ready_line(launch.url, proc.pid, body, started, log))
    return service_status(settings, cleanup=False)


def _log_max_bytes(settings: Settings) -> int:
    try:
        return int(settings.get("MLX_LOG_MAX_BYTES", str(LOG_MAX_BYTES)))
    except ValueError:
        return LOG_MAX_BYTES


def _died_message(code: int | None, log: Path, offset: int) -> str:
    lines = tail_lines(log, 20, start_offset=offset)
    how = f"exit code {code}" if code is None or code >= 0 else f"signal {-code}"
    text = f"the mlx service exited while starting ({how})"
    if lines:
        return text + f"; last lines of {log}:\n" + "\n".join("    " + line for line in lines)
    return text + f"; {log} has nothing from it"


def _failed_message(error: str, log: Path, offset: int = 0) -> str:
    lines = tail_lines(log, 20, start_offset=offset)
    text = f"the mlx service failed to start: {error}; stopped it"
    if lines:
        return text + f"; last lines of {log}:\n" + "\n".join("    " + line for line in lines)
    return text


def _kill_leftovers(pgid: int, say: Say, owner: Owner) -> None:
    if group_alive(pgid):
        terminate_group(pgid, 2.0, say, owner)


def _already_running(settings: Settings, state: ServiceState, *, wait: bool, timeout: float,
                     attached: bool, say: Say) -> dict:
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
        say(f"the mlx service is already running and healthy (pid {record.pid}) at {url}")
        return service_status(settings, cleanup=False)
    if not wait:
        say(f"the mlx service is already running (pid {record.pid}) but not healthy yet ({detail})")
        return service_status(settings, cleanup=False)
    say(f"the mlx service is already starting (pid {record.pid}); waiting for it")
    started = time.monotonic()
    ref = record.service
    try:
        body = wait_for_health(url, timeout,
                               lambda: check_process(ref, record.marker).state == "ours", say)
    except _Failed as exc:
        if check_process(ref, record.marker).state == "ours":  # it cannot recover: stop it
            terminate_group(record.pid, 5.0, say, owner_of(record))
        remove_pidfile(settings.mlx_pidfile, only_if_pid=record.pid)
        raise ServiceError(_failed_message(str(exc), Path(record.log or settings.mlx_log))) \
            from None
    except _Died:
        remove_pidfile(settings.mlx_pidfile, only_if_pid=record.pid)
        lines = tail_lines(Path(record.log or settings.mlx_log), 20)
        raise ServiceError(f"the mlx service (pid {record.pid}) exited while starting; last "
                           f"lines of its log:\n" + "\n".join("    " + l for l in lines)) from None
    except TimeoutError as exc:
        raise ServiceError(f"the mlx service (pid {record.pid}) did not become healthy within "
                           f"{timeout:g}s (last: {exc}); see {record.log}") from None
    say(_ready_line(url, record.pid, body, started, Path(record.log or settings.mlx_log)))
    return service_status(settings, cleanup=False)


# --- stop ---------------------------------------------------------------------------------------

def stop_service(settings: Settings, *, grace: float | None = None,
                 say: Say = print_to_stderr) -> bool:
    """Stop the service (and an attached supervisor). True when something was stopped.
    Signals only processes proven ours; returns once none of them is left. Processes in the
    recorded group id that are not proven ours are named and left alone. `grace` (seconds
    from SIGTERM to SIGKILL) defaults to MLX_STOP_GRACE, the time the service drains in."""
    grace = settings.mlx_stop_grace if grace is None else float(grace)
    with service_lock(settings, "inv mlx stop", say):
        state = inspect(settings, cleanup=True, say=say)
        stopped = _stop_supervisor(state, grace, say)
        if _stop_group(state, grace, say):
            stopped = True
        if state.record is not None:
            remove_pidfile(settings.mlx_pidfile)
        if not stopped:
            say("the mlx service is not running")
        return stopped


def _stop_supervisor(state: ServiceState, grace: float, say: Say) -> bool:
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


def _stop_group(state: ServiceState, grace: float, say: Say) -> bool:
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


def restart_service(settings: Settings, *, grace: float | None = None, say: Say = print_to_stderr,
                    **start_kwargs) -> dict:
    stop_service(settings, grace=grace, say=say)
    return start_service(settings, say=say, **start_kwargs)
