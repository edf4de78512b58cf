"""SIGTERM and SIGHUP end a task as Ctrl+C does: a KeyboardInterrupt in the task's thread, so
every `finally` and ExitStack runs and what the task started is stopped (`timeout 60 inv
bench`, `kill` of the inv process, a closed terminal). Python's default for them exits at
once, leaving the bench's services and workers behind. A second such signal while the task
cleans up is ignored: cleanup is bounded by the tasks' own grace periods, and cutting it
short is what left processes behind. Ctrl+C keeps Python's own behaviour."""
from __future__ import annotations

import contextlib
import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A stop signal other than Ctrl+C, raised where the task was."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_signals_interrupt():
    """Within the block, SIGTERM and SIGHUP raise Interrupted (once) in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def on_signal(signum, frame):
        if seen:
            return  # already stopping
        seen.append(signum)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def interrupted_line(exc: KeyboardInterrupt, prefix: str = "error") -> tuple[str, int]:
    """The line a user reads and the shell's exit status (128 + the signal) of a task that
    was interrupted: `interrupted (Ctrl+C)`, `[mlx] interrupted (SIGTERM)`."""
    signum = getattr(exc, "signum", signal.SIGINT)
    how = "Ctrl+C" if signum == signal.SIGINT else signal.Signals(signum).name
    tag = prefix.removesuffix("error").strip()
    return f"{tag} interrupted ({how}); what it started was stopped".strip(), 128 + signum
