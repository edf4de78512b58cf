"""The one way the tasks talk to a person: short lines on stderr, tagged with who speaks.

stdout stays free for results (`--json` writes only JSON there). Functions that report
progress take a `say: Say` argument, so tests and callers can capture or silence them.
"""
from __future__ import annotations

import sys
from typing import Callable

Say = Callable[[str], None]


def say_as(tag: str) -> Say:
    """A printer whose lines start with `[tag] `, flushed at once (progress while waiting)."""
    def say(line: str) -> None:
        print(f"[{tag}] {line}", file=sys.stderr, flush=True)
    return say


def quiet(line: str) -> None:
    """A Say that says nothing."""


def untagged(line: str) -> None:
    """A Say for lines that speak for no task in particular (stderr, flushed)."""
    print(line, file=sys.stderr, flush=True)
