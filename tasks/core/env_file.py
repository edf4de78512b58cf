"""`.env.dev` read strictly: a line that cannot be parsed is the user's to fix, named by file
and line, before any task goes on.

python-dotenv only warns ("could not parse statement starting at line 29", without the
file's name) and drops the line; Compose, given the same file with --env-file, then fails in
its own words, and a NUL byte reaches exec() as a traceback. Here every such line stops the
task with one sentence instead. `inv verify` reads the same file leniently (scan_env_file):
the good lines' values, so that its other checks still run, and every bad or repeated line
named.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
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


def _line_number(binding) -> int:
    """The line a binding's text starts on (python-dotenv counts from the blank lines and
    comments before it)."""
    original = binding.original
    leading = original.string[:len(original.string) - len(original.string.lstrip())]
    return original.line + leading.count("\n")


@dataclass
class EnvFileContents:
    """What a file gives: the values of its good lines, one sentence per line that cannot be
    used (`problems`), and one per name set on more than one line (`duplicates`)."""

    values: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)


def _line_problem(path: Path, binding) -> str | None:
    line, original = _line_number(binding), binding.original.string
    if binding.error:
        return f"{path}, line {line}: cannot parse {_shown(original)} (expected NAME=value)"
    if "\x00" in original:
        return f"{path}, line {line}: a NUL byte in {_shown(original)}"
    quoted = original.partition("=")[2].strip().startswith("'")  # never expanded
    if binding.value and not quoted and UNCLOSED_REFERENCE.search(binding.value):
        # Compose refuses it ("Invalid template"); python-dotenv keeps it as text.
        return f"{path}, line {line}: {_shown(original)} has a ${{ without its closing }}"
    return None


def _duplicates(path: Path, lines_of: dict[str, list[int]]) -> list[str]:
    return [f"{path}: {name} is set on lines {', '.join(map(str, lines[:-1]))} and "
            f"{lines[-1]}; the last one wins" for name, lines in lines_of.items()
            if len(lines) > 1]


def scan_env_file(path: Path) -> EnvFileContents:
    """Every line of `path` judged ({} and no problems when it does not exist): the good ones'
    values, expanded as python-dotenv expands them (from good lines only, so a bad line
    changes nothing else), and what is wrong with the others."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return EnvFileContents()
    except OSError as exc:
        return EnvFileContents(problems=[f"{path} cannot be read ({exc.strerror or exc})"])
    found = EnvFileContents()
    try:
        text = _decoded(path, data)
    except EnvFileError as exc:
        found.problems.append(str(exc))
        text = data.decode("utf-8", errors="replace")
    good, lines_of = [], {}
    for binding in parse_stream(io.StringIO(text)):
        problem = _line_problem(path, binding)
        if problem or "\ufffd" in binding.original.string:
            if problem:
                found.problems.append(problem)
            continue
        good.append(binding.original.string)
        if binding.key is not None:
            lines_of.setdefault(binding.key, []).append(_line_number(binding))
    values = dotenv_values(stream=io.StringIO("".join(good)))
    found.values = {k: v for k, v in values.items() if v is not None}
    found.duplicates = _duplicates(path, lines_of)
    return found

