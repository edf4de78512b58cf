"""`inv logs`: the host service's log file, one container's log, or everything."""
from __future__ import annotations

import sys
import threading
from typing import Sequence

from tasks.core.settings import ALL_SERVICES, Settings
from tasks.host.logfiles import follow_log, tail_lines
from tasks.stack.errors import ComposeError, StackError
from tasks.core.output_text import strip_ansi
from tasks.stack.project import Stack, open_stack

HOST_SERVICE_NAMES = ("mlx", "mlx-server")
HOST_PREFIX = "mlx-server | "  # how Compose marks its own lines, for the host service's


def chosen_services(service: str | Sequence[str] | None) -> list[str]:
    """The names asked for, in order, once each ([] means everything); unknown ones refused."""
    names = [service] if isinstance(service, str) else list(service or ())
    names = list(dict.fromkeys(n.strip() for n in names if n and n.strip()))
    unknown = [n for n in names if n not in HOST_SERVICE_NAMES and n not in ALL_SERVICES]
    if unknown:
        raise StackError(f"Unknown service{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))}: valid are mlx, "
                         f"{', '.join(ALL_SERVICES)}.")
    return names


def logs(settings: Settings, service: str | Sequence[str] | None = None, follow: bool = False,
         tail: int = 100, out=None) -> None:
    """`mlx` (the host service's log file), containers, or everything; several may be named.
    `follow` keeps copying new lines to `out` until Ctrl-C or a reader that goes away."""
    out = out or sys.stdout
    names = chosen_services(service)
    containers = [n for n in names if n not in HOST_SERVICE_NAMES]
    with_host = not names or len(containers) < len(names)
    if names and not containers:
        host_log_only(settings, follow, tail, out)
        return
    stack = open_stack(settings)
    if follow:
        stop_event = threading.Event()
        if with_host:
            follow_host_log_prefixed(settings, out, tail, stop_event)
        try:
            follow_containers(stack, containers, tail, out)
        finally:
            stop_event.set()
        return
    if with_host:
        for line in tail_lines(settings.mlx_log, tail):
            print(f"{HOST_PREFIX}{line}", file=out)
    try:
        text = stack.compose.logs(containers, tail=tail)
    except ComposeError as exc:
        raise StackError(str(exc)) from None
    if text:
        out.write(text if text.endswith("\n") else text + "\n")


def host_log_only(settings: Settings, follow: bool, tail: int, out) -> None:
    if not settings.mlx_log.exists() and not follow:
        raise StackError(f"The host service has no log yet ({settings.mlx_log}).")
    if follow:
        follow_log(settings.mlx_log, out, n=tail)
    else:
        for line in tail_lines(settings.mlx_log, tail):
            print(line, file=out)


class Prefixed:
    """A writer that marks each line `mlx-server | ` before handing it to `out`."""

    def __init__(self, out):
        self.out = out

    def write(self, text: str) -> None:
        for line in text.splitlines():
            self.out.write(f"{HOST_PREFIX}{line}\n")

    def flush(self) -> None:
        self.out.flush()


def follow_host_log_prefixed(settings: Settings, out, tail: int,
                             stop_event: threading.Event) -> None:
    """The host service's log, each line marked `mlx-server | ` like Compose marks its own,
    followed in a thread until stop_event; a closed reader ends it quietly."""
    def run():
        try:
            follow_log(settings.mlx_log, Prefixed(out), n=tail, stop=stop_event.is_set)
        except BrokenPipeError:
            pass  # the main thread notices it too, and ends the task quietly

    threading.Thread(target=run, name="mlx-log", daemon=True).start()


def follow_containers(stack: Stack, services: Sequence[str], tail: int, out) -> None:
    """`compose logs --follow` copied line by line to `out` (cursor codes removed) until the
    containers stop or Ctrl-C. A reader that goes away raises BrokenPipeError here, after
    Compose is stopped, so the task ends as any task whose reader closed (tasks/cli/namespace.py)."""
    with stack.compose.follow("logs", "--no-color", "--tail", str(tail), "--follow",
                              *services) as following:
        for line in following.lines():
            out.write(strip_ansi(line))
            out.flush()
    if following.exit_code != 0:
        raise StackError(f"`compose logs --follow` ended with exit code {following.exit_code}.")
