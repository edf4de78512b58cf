"""`inv start --watch`: rebuild and restart what changed, until Ctrl-C."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

from tasks.core.flags import MlxFlags
from tasks.core.say import Say, quiet, say_as
from tasks.core.settings import Settings
from tasks.host import mlx_process
from tasks.host.watch import SourceWatcher, watched_dir
from tasks.stack.project import open_stack
from tasks.stack.readiness import wait_ready
from tasks.stack.services import BUILT_SERVICES
from tasks.stack.start import (
    aimed_at_the_running_service, host_start_kwargs, ready_timeout, state_reader,
)

HOST_TARGET = "mlx"


def watch(settings: Settings, services: Sequence[str], with_mlx: bool = True,
          say: Say = say_as("stack"), stop_event: threading.Event | None = None,
          mlx: MlxFlags = MlxFlags()) -> None:
    """Rebuild and restart a built service when its folder under compose/ changes, and restart
    the host service when mlx_service/ changes, with the venv, flags and timeout it was
    started with (`mlx`); until Ctrl-C (or stop_event)."""
    # Rebuilt containers reach the host service where it runs, as `inv start` left them.
    stack = aimed_at_the_running_service(open_stack(settings), None, quiet)
    targets: dict[Path, str] = {}
    for service in services:
        if service in BUILT_SERVICES:
            targets[(settings.compose_dir / service).resolve()] = service
    if with_mlx:
        targets[watched_dir(settings)] = HOST_TARGET
    if not targets:
        say("--watch: nothing to watch (no built service was started and no host service)")
        return
    say("watching " + ", ".join(f"{p} ({name})" for p, name in targets.items())
        + "; Ctrl-C ends")
    watcher = SourceWatcher(*targets, suffixes=None).start()
    try:
        while stop_event is None or not stop_event.is_set():
            if watcher.error is not None:
                say(f"the file watcher failed: {watcher.error}; no more restarts")
                return
            paths = watcher.next_batch(timeout=0.2)
            if paths:
                restart_changed(settings, stack, targets, paths, mlx, say)
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop()


def restart_changed(settings: Settings, stack, targets: dict[Path, str], paths: set[str],
                    mlx: MlxFlags, say: Say) -> None:
    changed = {name for path in paths for root, name in targets.items()
               if Path(path).resolve().is_relative_to(root)}
    for name in sorted(changed):
        try:
            if name == HOST_TARGET:
                say("mlx_service changed: restarting the host service")
                mlx_process.restart_service(settings, say=say, install=False,
                                            **host_start_kwargs(mlx))
            else:
                say(f"{name} changed: rebuilding and restarting it")
                stack.compose.up([name], build=True)
                wait_ready([name], settings.ports(), ready_timeout(settings),
                           state_of=state_reader(stack), say=say)
        except Exception as exc:  # keep watching: the next save may fix it
            say(f"{name}: {exc}")
