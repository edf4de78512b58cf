"""The root invoke namespace: each module of tasks/ contributes its tasks or a collection.

Two things here hold for every task, whichever module defines it:
- the seed's `inv logs SERVICE`: invoke has no optional positional arguments (pyinvoke/invoke
  issue #159), so the service word after `logs` is rewritten to `--service=SERVICE` before
  invoke parses the tasks (`seed_spellings`, `accept_seed_spellings`);
- a reader that closes our stdout early (`inv status --json | head -1`) ends the task quietly,
  as Python's documentation advises for SIGPIPE (`exit_quietly_on_closed_reader`).
"""
from __future__ import annotations

import atexit
import copy
import functools
import os
import sys
from typing import Iterable

from invoke import Collection, Exit, Failure, ParseError, Task
from invoke.parser import ParserContext

from tasks.cli import bench_tasks
from tasks.cli import check_tasks
from tasks.cli import mlx_tasks
from tasks.cli import stack_tasks
from tasks.cli import stress_tasks
from tasks.cli import test_tasks
from tasks.core.settings import ALL_SERVICES, SettingsError

LOGS_TASK = "logs"
LOG_NAMES = ("mlx", "mlx-server") + ALL_SERVICES


def build_namespace() -> Collection:
    ns = Collection()
    for module in (stack_tasks, check_tasks, bench_tasks, stress_tasks):
        for t in module.TASKS:
            ns.add_task(t)
    ns.add_collection(mlx_tasks.ns, name="mlx")
    ns.add_collection(test_tasks.ns, name="test")
    return quiet_collection(ns)


def quiet_collection(source: Collection, name: str | None = None) -> Collection:
    """A copy of `source` whose tasks end quietly when their reader closes; the modules' own
    task objects stay as they are (tests and other code read their bodies)."""
    name = name or source.name
    target = Collection(name) if name else Collection()  # the root has no name
    for task_name, t in source.tasks.items():
        target.add_task(quiet_task(t), name=task_name, default=source.default == task_name)
    for sub_name, sub in source.collections.items():
        target.add_collection(quiet_collection(sub, sub_name), name=sub_name)
    target.configure(source.configuration())
    return target


# --- a closed reader -----------------------------------------------------------------------------

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


def one_line_failure(exc: Exception) -> Exit:
    """What a user sees when a task fails outside its own handling: a setting it could not use
    (SettingsError: it names the setting, or the env file and line) with exit 2; a file or
    folder the machine refused, and anything else, as one line with exit 1. CORTEX_DEBUG=1
    shows the traceback instead."""
    if isinstance(exc, SettingsError):
        return Exit(f"error: {exc}", code=2)
    if isinstance(exc, OSError) and exc.strerror:  # a file or folder of this machine
        where = f": {exc.filename}" if exc.filename else ""
        return Exit(f"error: {exc.strerror}{where}", code=1)
    text = " ".join(str(exc).split()) or "no message"
    return Exit(f"error: {type(exc).__name__}: {text} (this is a bug in the tasks; "
                "CORTEX_DEBUG=1 shows where)", code=1)


def quiet_task(t: Task) -> Task:
    """A copy of `t` whose body ends quietly on BrokenPipeError (the flush inside makes
    buffered output meet a closed reader here rather than at interpreter exit), and whose
    other failures reach the user as one line, never a traceback (one_line_failure)."""
    body = t.body

    @functools.wraps(body)  # invoke reads the flags from the wrapped signature
    def run(*args, **kwargs):
        try:
            result = body(*args, **kwargs)
            sys.stdout.flush()
            return result
        except BrokenPipeError:
            exit_quietly_on_closed_reader()
        except (Exit, Failure, ParseError):
            raise  # invoke's own: it prints them as they are meant
        except Exception as exc:
            if os.environ.get("CORTEX_DEBUG", "").strip() not in ("", "0"):
                raise
            raise one_line_failure(exc) from None

    quiet = copy.deepcopy(t)  # its own help dict too: building parser contexts consumes it
    quiet.body = run
    return quiet


# --- the seed's `inv logs SERVICE` ---------------------------------------------------------------

def _context_names(contexts: Iterable[ParserContext]) -> dict[str, ParserContext]:
    names = {}
    for ctx in contexts:
        names[ctx.name] = ctx
        for alias in ctx.aliases:
            names[alias] = ctx
    return names


def _takes_value(ctx: ParserContext, token: str) -> bool:
    """A flag of `ctx` given without `=value`, whose value is the next token."""
    if "=" in token:
        return False
    if not token.startswith("--") and len(token) > 2:  # -ft: a cluster, or -t5: value attached
        head = token[:2]
        if head in ctx.flags and ctx.flags[head].takes_value:
            return False
        return _takes_value(ctx, "-" + token[-1])
    if token not in ctx.flags:  # (a Lexicon: `in` and [] see the short aliases, .get does not)
        return False
    flag = ctx.flags[token]
    return flag.takes_value and not flag.optional


def seed_spellings(tokens: list[str], contexts: Iterable[ParserContext]) -> list[str]:
    """The task part of argv with `logs WORD` turned into `logs --service=WORD`.

    Walks the tokens as invoke's parser does (flags and their values, positional arguments,
    task names). After `logs`, each word that is not a flag or a flag's value and names a
    service (`mlx` included, though it is also a collection) is a service (`inv logs mlx
    nats`); so is a word that names no task (refused later, as an unknown service); a word
    naming another task keeps invoke's meaning (`inv logs health` runs both).
    """
    names = _context_names(contexts)
    out: list[str] = []
    ctx: ParserContext | None = None
    positionals_left = 0
    service_given = False
    value_next = False
    for index, token in enumerate(tokens):
        if token == "--":
            return out + tokens[index:]
        if value_next:
            value_next = False
        elif token.startswith("-") and token != "-":
            if ctx is not None:
                value_next = _takes_value(ctx, token)
                if ctx.name == LOGS_TASK and token.split("=")[0] in ("-s", "--service"):
                    service_given = True
        elif positionals_left:
            positionals_left -= 1
        elif (ctx is not None and ctx.name == LOGS_TASK
              and (token in LOG_NAMES or token not in names)):
            service_given = True
            token = f"--service={token}"
        elif token in names:
            ctx = names[token]
            positionals_left = len(ctx.positional_args)
            service_given = False
        out.append(token)
    return out


def accept_seed_spellings(ns: Collection) -> None:
    """Rewrite the running `inv`'s task tokens (see seed_spellings).

    invoke parses its own flags and keeps the rest (`program.core.unparsed`) before it imports
    tasks.py, and parses the tasks after: the only moment the words can still be rewritten is
    this import. Only the program `inv` / `python -m invoke` runs on sys.argv is touched.
    """
    from invoke.main import program
    core = getattr(program, "core", None)
    if core is None or program.argv is not sys.argv or not hasattr(core, "unparsed"):
        return
    # On a copy: building contexts consumes each task's help texts (Task.arg_opts pops them).
    core.unparsed[:] = seed_spellings(list(core.unparsed), copy.deepcopy(ns).to_contexts())
