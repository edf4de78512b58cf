"""Parsing of task flags that invoke passes as strings."""
from __future__ import annotations

from invoke import Exit


def seconds(value, flag: str, prefix: str = "error") -> float | None:
    """A --timeout-like flag: empty means the default; anything else must be a number."""
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError:
        raise Exit(f"{prefix}: --{flag} {value!r} is not a number of seconds", code=2) from None
