"""The service's named states: `StrEnum` (the standard library's from 3.11). The service
imports nothing from tasks/, so this stand-in for Python 3.10 is also in tasks/core/enums.py.

A member is a `str` equal to its value, so JSON documents, PID files, f-strings and
comparisons with the plain words read exactly as before the states had names.
"""
from __future__ import annotations

import enum

try:
    StrEnum = enum.StrEnum
except AttributeError:  # Python 3.10: the same behaviour, written out
    class StrEnum(str, enum.Enum):  # type: ignore[no-redef]
        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return format(str(self.value), spec)
