"""The one wrapper every task goes through, whichever module defines it: a closed reader ends
the task quietly, a TaskError (tasks/core/errors.py) becomes its message on one line and its
exit code, and anything else one line that says it is a bug (CORTEX_DEBUG=1: the traceback).
SIGTERM and SIGHUP interrupt a task as Ctrl+C does (tasks/cli/interrupts.py), and an
interrupted task ends with one line and 128 + the signal. The tasks themselves raise; they do
not catch to print."""
from __future__ import annotations

import copy
import functools
import os
import sys

from invoke import Collection, Exit, Failure, ParseError, Task

from tasks.cli.closed_reader import exit_quietly_on_closed_reader
from tasks.cli.interrupts import interrupted_line, stop_signals_interrupt
from tasks.core.errors import TaskError

# The collections whose messages carry their own tag, as their progress lines do.
PREFIXES = {"mlx": "[mlx] error"}


def quiet_collection(source: Collection, name: str | None = None,
                     prefix: str = "error") -> Collection:
    """A copy of `source` whose tasks go through quiet_task; the modules' own task objects
    stay as they are (tests and other code read their bodies)."""
    name = name or source.name
    target = Collection(name) if name else Collection()  # the root has no name
    for task_name, t in source.tasks.items():
        target.add_task(quiet_task(t, prefix), name=task_name,
                        default=source.default == task_name)
    for sub_name, sub in source.collections.items():
        target.add_collection(quiet_collection(sub, sub_name, PREFIXES.get(sub_name, prefix)),
                              name=sub_name)
    target.configure(source.configuration())
    return target


def one_line_failure(exc: Exception, prefix: str = "error") -> Exit:
    """What a user sees when a task fails: a TaskError's message and exit code (a setting it
    could not use exits 2); a file or folder the machine refused, its reason and path; anything
    else one line that says it is a bug in the tasks. All with exit >= 1."""
    if isinstance(exc, TaskError):
        return Exit(f"{prefix}: {exc}", code=exc.exit_code)
    if isinstance(exc, OSError) and exc.strerror:  # a file or folder of this machine
        where = f": {exc.filename}" if exc.filename else ""
        return Exit(f"{prefix}: {exc.strerror}{where}", code=1)
    text = " ".join(str(exc).split()) or "no message"
    return Exit(f"{prefix}: {type(exc).__name__}: {text} (this is a bug in the tasks; "
                "CORTEX_DEBUG=1 shows where)", code=1)


def quiet_task(t: Task, prefix: str = "error") -> Task:
    """A copy of `t` whose body ends quietly on BrokenPipeError (the flush inside makes
    buffered output meet a closed reader here rather than at interpreter exit), and whose
    failures reach the user as one line, never a traceback (one_line_failure; CORTEX_DEBUG=1
    shows the traceback of a failure that is not a TaskError)."""
    body = t.body

    @functools.wraps(body)  # invoke reads the flags from the wrapped signature
    def run(*args, **kwargs):
        try:
            with stop_signals_interrupt():  # SIGTERM/SIGHUP clean up as Ctrl+C does
                result = body(*args, **kwargs)
            sys.stdout.flush()
            return result
        except KeyboardInterrupt as exc:  # its cleanup ran; one line says so
            line, code = interrupted_line(exc, prefix)
            raise Exit(line, code=code) from None
        except BrokenPipeError:
            exit_quietly_on_closed_reader()
        except (Exit, Failure, ParseError):
            raise  # invoke's own: it prints them as they are meant
        except TaskError as exc:
            raise one_line_failure(exc, prefix) from None
        except Exception as exc:
            if os.environ.get("CORTEX_DEBUG", "").strip() not in ("", "0"):
                raise
            raise one_line_failure(exc, prefix) from None

    quiet = copy.deepcopy(t)  # its own help dict too: building parser contexts consumes it
    quiet.body = run
    return quiet
