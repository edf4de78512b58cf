"""Named states whose value is their word: `StrEnum` (the standard library's from 3.11).

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


class OpenStrEnum(StrEnum):
    """A StrEnum that keeps a value it does not list as written, instead of failing: for
    words another program reports (an engine state such as Podman's "stopped")."""

    @classmethod
    def _missing_(cls, value: object):
        member = str.__new__(cls, str(value))
        member._name_ = str(value).upper()
        member._value_ = str(value)
        return member
