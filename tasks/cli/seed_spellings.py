"""The seed's `inv logs SERVICE`: invoke has no optional positional arguments (pyinvoke/invoke
issue #159), so the service word after `logs` is rewritten to `--service=SERVICE` before
invoke parses the tasks."""
from __future__ import annotations

import copy
import sys
from typing import Iterable

from invoke import Collection
from invoke.parser import ParserContext

from tasks.core.settings import ALL_SERVICES

LOGS_TASK = "logs"
LOG_NAMES = ("mlx", "mlx-server") + ALL_SERVICES


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
