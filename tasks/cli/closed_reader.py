"""A reader that closes our stdout early (`inv status --json | head -1`) ends the task
quietly, as Python's documentation advises for SIGPIPE."""
from __future__ import annotations

import atexit
import os
import sys

from invoke import Exit


def send_the_rest_to_devnull() -> None:
    """Our reader went away: what is left goes to /dev/null, so that the flush at exit cannot
    fail again (stderr too when it is the same pipe, as with `2>&1 | head`)."""
    try:
        out, err = sys.stdout.fileno(), sys.stderr.fileno()
        targets = [out] + ([err] if os.path.sameopenfile(out, err) else [])
    except (OSError, ValueError, AttributeError):
        return  # not a real file (captured by a test harness): nothing to redirect
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in targets:
        os.dup2(devnull, fd)
    os.close(devnull)


def exit_quietly_on_closed_reader() -> None:
    """End with status 1, as Python does on EPIPE, and no traceback."""
    send_the_rest_to_devnull()
    raise Exit(code=1)


def quiet_closed_reader_outside_tasks() -> None:
    """invoke's own output (--help, --list) meets a closed reader outside any task: no
    traceback there either (the uncaught error still ends the program with status 1)."""
    previous = sys.excepthook

    def hook(kind, value, traceback):
        if issubclass(kind, BrokenPipeError):
            send_the_rest_to_devnull()
            return
        previous(kind, value, traceback)

    def flush_at_exit():
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            send_the_rest_to_devnull()

    sys.excepthook = hook
    atexit.register(flush_at_exit)
