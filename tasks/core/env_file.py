"""`.env.dev` read strictly: a line that cannot be parsed is the user's to fix, named by file
and line, before any task goes on.

python-dotenv only warns ("could not parse statement starting at line 29", without the
file's name) and drops the line; Compose, given the same file with --env-file, then fails in
its own words, and a NUL byte reaches exec() as a traceback. Here every such line stops the
task with one sentence instead.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from tasks.core.errors import TaskError


UNCLOSED_REFERENCE = re.compile(r"\$\{[^}]*$")


class EnvFileError(TaskError, ValueError):
    """The env file cannot be read or has a line that is not NAME=value."""


def _decoded(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise EnvFileError(f"{path}, line {line}: not UTF-8 text") from None


def _shown(text: str, limit: int = 60) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def check_lines(path: Path, text: str) -> None:
    """EnvFileError for the first line that is not a comment, blank, or NAME=value."""
    for number, line in enumerate(text.splitlines(), start=1):
        if "\x00" in line:
            raise EnvFileError(f"{path}, line {number}: a NUL byte in {_shown(line)}")
    for binding in parse_stream(io.StringIO(text)):
        line, original = binding.original.line, binding.original.string
        if binding.error:
            raise EnvFileError(f"{path}, line {line}: cannot parse {_shown(original)} "
                               "(expected NAME=value)")
        quoted = original.partition("=")[2].strip().startswith("'")  # never expanded
        if binding.value and not quoted and UNCLOSED_REFERENCE.search(binding.value):
            # Compose refuses it ("Invalid template"); python-dotenv keeps it as text.
            raise EnvFileError(f"{path}, line {line}: {_shown(original)} has a ${{ without "
                               "its closing }")


def read_env_file(path: Path) -> dict[str, str]:
    """NAME -> value of every assignment in `path` ({} when it does not exist); values are
    expanded as python-dotenv expands them. Raises EnvFileError naming the file and line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise EnvFileError(f"{path} cannot be read ({exc.strerror or exc})") from None
    text = _decoded(path, data)
    check_lines(path, text)
    values = dotenv_values(stream=io.StringIO(text))
    return {k: v for k, v in values.items() if v is not None}
