"""`inv mlx ...`: the host embedding service's lifecycle. Thin: flags in, plain functions
(tasks/host/mlx_process.py) do the work, progress on stderr; errors are raised and printed
once, by tasks/cli/task_edge.py."""
from __future__ import annotations

import inspect
import json
import os
import sys
from pathlib import Path

from invoke import Collection, Exit, task

from mlx_service.kernels.precision import cpu_bf16_units

from tasks.core.flags import count, seconds
from tasks.core.say import say_as
from tasks.core.settings import load_settings
from tasks.host import mlx_process as mp
from tasks.host.logfiles import follow_log, tail_lines
from tasks.host.service_lock import service_lock
from tasks.host.service_status import format_status
from tasks.host.service_venv import (bf16_hint, check_venv_flag, install_service_venv,
                                     saved_extras, service_python)

say = say_as("mlx")


def _settings():
    return load_settings()


def _seconds(value, name: str, positive: bool = False) -> float | None:
    return seconds(value, name, prefix="[mlx] error", positive=positive)


@task(help={"venv": "where the venv lives (default MLX_VENV_PATH or .venv-mlx)",
            "force": "reinstall even when the fingerprint says it is up to date",
            "create": "make --venv PATH when it is outside the checkout and does not exist"
                      " (otherwise refused as a likely typo)",
            "blas": "mkl: add Intel oneMKL (about 1 GB; MLX_BLAS=auto measures it and "
                    "preloads the fastest), default: remove it again"})
def install(c, venv=None, force=False, blas=None, create=False):
    """Create or reuse the service's venv; reuse costs a hash, not a pip run."""
    settings = _settings()
    check_venv_flag(settings, venv, create)
    path = venv or settings.mlx_venv
    # The start lock: pip never runs in the venv while a start installs or spawns from it.
    with service_lock(settings, "inv mlx install", say):
        ran = install_service_venv(settings, path, force=force, say=say, blas=blas)
    say(f"venv installed ({path})" if ran else f"venv up to date ({path})")
    extras = saved_extras(Path(path))
    measured = None
    if cpu_bf16_units():  # what bf16 gives here, not what it might
        from mlx_service.kernels import blas as libraries  # `blas` is this task's --blas flag
        measured = libraries.choose("auto", os.environ, say=say,
                                    python=str(service_python(settings, Path(path))),
                                    precision=settings.get("MLX_PRECISION", "auto")).as_dict()
    hint = bf16_hint(extras, measured=measured)
    if hint:
        say(hint)


@task(help={
    "foreground": "run attached: output here, Ctrl+C stops it (twice: at once)",
    "install": "create/refresh the venv first (default; --no-install skips it)",
    "wait": "wait for /health (default; --no-wait returns at once)",
    "timeout": "seconds to wait for /health (default MLX_WAIT_TIMEOUT)",
    "venv": "the service venv (default MLX_VENV_PATH or .venv-mlx)",
    "watch": "attached, and restart on every change of mlx_service/ sources",
            "create": "make --venv PATH when it is outside the checkout and does not exist"
                      " (otherwise refused as a likely typo)",
})
def start(c, foreground=False, install=True, wait=True, timeout=None, venv=None, watch=False,
          create=False):
    """Start the host embedding service (detached by default)."""
    result = mp.start_service(_settings(), venv_path=venv, install=install, wait=wait,
                              timeout=_seconds(timeout, "timeout", positive=True),
                              foreground=foreground, watch=watch, create_venv=create)
    code = result.get("exit_code", 0)
    if code:
        raise Exit(code=code)


@task(help={"grace": "seconds between SIGTERM and SIGKILL (default MLX_STOP_GRACE, 10)"})
def stop(c, grace=None):
    """Stop the service: SIGTERM to its process group, then SIGKILL after the grace period."""
    mp.stop_service(_settings(), grace=_seconds(grace, "grace"))


@task(help={"install": "refresh the venv first (default)", "wait": "wait for /health",
            "timeout": "seconds to wait for /health", "venv": "the service venv",
            "grace": "seconds between SIGTERM and SIGKILL when stopping "
                     "(default MLX_STOP_GRACE)",
            "create": "make --venv PATH when it is outside the checkout and does not exist"
                      " (otherwise refused as a likely typo)",
})
def restart(c, install=True, wait=True, timeout=None, venv=None, grace=None, create=False):
    """Stop the service if it runs, then start it (detached); the stack's containers that call
    it follow a new port."""
    from tasks.host.running_service import running_port
    from tasks.stack.follow_host import containers_follow
    settings = _settings()
    before = running_port(settings)
    result = mp.restart_service(settings, grace=_seconds(grace, "grace"), venv_path=venv,
                                install=install, wait=wait,
                                timeout=_seconds(timeout, "timeout", positive=True),
                                create_venv=create)
    containers_follow(settings, before, result, say_as("stack"), wait=wait)


@task(help={"json": "print the status document as JSON (only JSON on stdout)"})
def status(c, json_=False):
    """Is the service running, responding, healthy? Stale PID files are reported and removed."""
    result = mp.service_status(_settings(), say=say)
    if json_:
        print(json.dumps(result, indent=2))
    else:
        print(format_status(result))


@task(help={"follow": "keep printing what is appended (like tail -F)",
            "n": "how many of the last lines to print (default 50)"})
def logs(c, follow=False, n=None):
    """Print the service log's last lines; -f follows it."""
    n = count(n, "-n", prefix="[mlx] error", default=50)
    settings = _settings()
    path = settings.mlx_log
    if not path.exists() and not follow:
        say(f"no log yet at {path}")
        return
    if not follow:
        for line in tail_lines(path, n):
            print(line)
        return
    say(f"following {path} (Ctrl+C to stop)")
    try:
        follow_log(path, sys.stdout, n=n)
    except KeyboardInterrupt:
        pass


ACTIONS = {"install": install, "start": start, "stop": stop, "restart": restart,
           "status": status, "logs": logs}
# The seed's -f: --foreground for start (start-mlx-host.sh -f|--foreground), --follow for logs.
SHORT_F = {"start": "foreground", "logs": "follow"}


def flags_for(action: str, given: dict) -> dict:
    """The flags `action` takes, out of everything `inv mlx ACTION` accepts; -f becomes the
    action's own meaning of it. Raises Exit (2) for -f on an action without one."""
    given = dict(given)
    if given.pop("f"):
        if action not in SHORT_F:
            raise Exit(f"[mlx] error: -f means --foreground for start and --follow for logs; "
                       f"`inv mlx {action}` takes neither", code=2)
        given[SHORT_F[action]] = True
    accepted = inspect.signature(ACTIONS[action].body).parameters
    return {name: value for name, value in given.items() if name in accepted}


def print_actions() -> None:
    print("Usage: inv mlx ACTION [flags]   (or inv mlx.ACTION [flags])\n")
    for name, chosen in ACTIONS.items():
        print(f"  {name:<8} {(chosen.__doc__ or '').strip().splitlines()[0]}")
    print("\n-f: start runs in the foreground (--foreground), logs follows (--follow).")
    print("Flags of one action: inv --help mlx.ACTION")


@task(positional=["action"], default=True, help={
    "action": "install, start, stop, restart, status or logs",
    "f": "start: --foreground; logs: --follow (as the seed's scripts)",
    "foreground": "start: run attached", "install": "start/restart: refresh the venv first",
    "wait": "start/restart: wait for /health", "timeout": "start/restart: seconds to wait",
    "venv": "the service venv", "watch": "start: restart on source changes",
    "grace": "stop/restart: seconds between SIGTERM and SIGKILL",
    "force": "install: reinstall", "json": "status: JSON only on stdout",
    "create": "install/start/restart: make --venv PATH outside the checkout",
    "follow": "logs: keep following", "n": "logs: how many lines",
    "blas": "install: mkl adds oneMKL, default removes it"})
def dispatch(c, action, f=False, foreground=False, follow=False, n=None, timeout=None, json_=False,
             venv=None, install=True, wait=True, watch=False, grace=None, force=False, blas=None,
             create=False):
    """`inv mlx ACTION [flags]`: the same tasks as `inv mlx.ACTION`, in the seed's spelling."""
    # Parameter order sets invoke's short flags: `f` owns -f (meaning chosen per action),
    # foreground keeps -o as before.
    if action in ("-h", "--help", "help"):
        # The positional argument eats --help before invoke sees it: answer it here.
        print_actions()
        return
    chosen = ACTIONS.get(action)
    if chosen is None:
        raise Exit(f"[mlx] error: unknown action {action!r}; choose one of: "
                   + ", ".join(ACTIONS), code=2)
    given = {"f": f, "foreground": foreground, "install": install, "wait": wait,
             "timeout": timeout, "venv": venv, "watch": watch, "grace": grace, "force": force,
             "json_": json_, "follow": follow, "n": n, "blas": blas, "create": create}
    chosen(c, **flags_for(action, given))


# `inv mlx start` reaches `dispatch` (the collection's default task, `action` positional);
# `inv mlx.start` reaches the task itself.
ns = Collection("mlx", install, start, stop, restart, status, logs)
ns.add_task(dispatch, name="run", default=True)
