"""Parsing of task flags that invoke passes as strings."""
from __future__ import annotations

import math
from dataclasses import dataclass

from invoke import Exit


def seconds(value, flag: str, prefix: str = "error", positive: bool = False) -> float | None:
    """A --timeout-like flag: empty means the default; anything else must be a finite number
    of seconds, not negative (above zero with `positive`): `--timeout -1` or `nan` would
    otherwise start the service and give up on it at once, or never."""
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except ValueError:
        raise Exit(f"{prefix}: --{flag} {value!r} is not a number of seconds", code=2) from None
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        bound = "above 0" if positive else "0 or more"
        raise Exit(f"{prefix}: --{flag} {value!r} must be a finite number of seconds, {bound}",
                   code=2)
    return number


def count(value, flag: str, prefix: str = "error", default: int = 0, unit: str = "lines") -> int:
    """A --tail/-n flag (`flag` as spelled: "--tail"): a whole number of lines, 0 or more;
    None means `default`. (Such a flag's task default is None, not a number: invoke would
    convert the text itself, and a word would end in a ValueError traceback.)"""
    if value is None:
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        raise Exit(f"{prefix}: {flag} {value!r} is not a whole number of {unit}", code=2) \
            from None
    if number < 0:
        raise Exit(f"{prefix}: {flag} {value!r} must be 0 or more {unit}", code=2)
    return number


# start-mlx-host.sh's own flags, as `inv start --mlx-flag=...` passes them on (the seed's way);
# every other --mlx-flag is an argument of the server itself (e.g. --dim=128).
LIFECYCLE_FLAGS = ("--no-wait", "--wait", "--timeout", "--venv", "--create")
FOREGROUND_FLAGS = ("-f", "--foreground")


@dataclass(frozen=True)
class MlxFlags:
    """How `inv start` runs the host service: the lifecycle part, and the server's arguments."""
    wait: bool = True
    timeout: float | None = None
    venv: str | None = None
    server_args: tuple[str, ...] = ()
    create: bool = False  # --venv outside the checkout that does not exist yet: make it


def _pairs(values: list[str]) -> list[tuple[str, str | None]]:
    """(flag, value) per lifecycle flag, `--timeout=30` or `--timeout` then `30`; server
    arguments as (argument, None)."""
    pairs, i = [], 0
    while i < len(values):
        name, eq, value = values[i].partition("=")
        if name in ("--timeout", "--venv") and not eq:
            if i + 1 >= len(values):
                raise Exit(f"error: --mlx-flag={name} needs a value (--mlx-flag={name}=VALUE)",
                           code=2)
            value, i = values[i + 1], i + 1
        pairs.append((name, value) if name in LIFECYCLE_FLAGS else (values[i], None))
        i += 1
    return pairs


def _one(flag: str, given, from_flags, same=lambda a, b: a == b):
    """The task's own option and the same setting passed as --mlx-flag must agree."""
    if given is not None and from_flags is not None and not same(given, from_flags):
        def show(value):
            return f"{value:g}" if isinstance(value, float) else value
        raise Exit(f"error: --mlx-{flag}={show(given)} and --mlx-flag=--{flag}="
                   f"{show(from_flags)} disagree; give one of them", code=2)
    return given if given is not None else from_flags


def mlx_flags(values, venv: str | None = None, timeout: float | None = None) -> MlxFlags:
    """Split `--mlx-flag` values into lifecycle flags and server arguments, merged with the
    task's --mlx-venv / --mlx-timeout. Bad values raise Exit(2) with one sentence."""
    values = [str(v) for v in (values or ())]
    wait, flag_timeout, flag_venv, server, create = True, None, None, [], False
    for name, value in _pairs(values):
        if name in FOREGROUND_FLAGS:
            raise Exit(f"error: --mlx-flag={name}: `inv start` runs the host service in "
                       "the background; `inv mlx start -f` runs it in the foreground", code=2)
        if name in ("--wait", "--no-wait"):
            wait = name == "--wait"
        elif name == "--timeout":
            flag_timeout = seconds(value, "mlx-flag=--timeout", positive=True)
        elif name == "--venv":
            flag_venv = value
        elif name == "--create":
            create = True
        else:
            server.append(name)
    return MlxFlags(wait=wait, timeout=_one("timeout", timeout, flag_timeout),
                    venv=_one("venv", venv, flag_venv), server_args=tuple(server),
                    create=create)
