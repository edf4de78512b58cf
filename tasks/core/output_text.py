"""Words from a program's output for a person: its first line, its last lines, no cursor codes."""
from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """Compose 2.2x writes cursor codes (ESC[2K) into `logs` even with --ansi never."""
    return _ANSI.sub("", text)


def as_text(data: str | bytes | None) -> str:
    """A program's output as text (undecodable bytes replaced; None is "")."""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data or ""


def last_lines(text: str | bytes | None, lines: int = 8) -> str:
    return "\n".join(as_text(text).strip().splitlines()[-lines:])


def first_line(text: str | bytes | None) -> str:
    for line in as_text(text).splitlines():
        line = line.strip()
        if line:
            return line
    return ""
