"""Plain-text tables for `inv status` and `inv health`."""
from __future__ import annotations

from typing import Sequence


def shorten(text: str, width: int = 70) -> str:
    """One line of at most `width` characters, whitespace squeezed."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 3] + "..."


def format_table(rows: list[dict], columns: Sequence[str]) -> str:
    def cell(value) -> str:
        if value is True:
            return "yes"
        if value is False:
            return "no"
        return "-" if value is None else str(value)
    table = [list(columns)] + [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in table)
