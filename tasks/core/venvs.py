"""Create-or-reuse virtual environments, nox-style: reuse costs a hash, not a pip run."""
from __future__ import annotations

import hashlib
import json
import platform
import sys
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tasks.core import runner
from tasks.core.errors import TaskError
from tasks.core.say import Say, untagged

FINGERPRINT_FILE = ".cortex-fingerprint"


@dataclass(frozen=True)
class InstallStep:
    """One `pip install -r FILE [ARGS]`; `--no-deps` steps carry packages whose deps we pick."""

    requirements: Path
    pip_args: tuple[str, ...] = ()


class VenvError(TaskError, RuntimeError):
    pass


def venv_python(path: Path) -> Path:
    return path / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def python_identity(base_python: str) -> str:
    """What a venv depends on: the interpreter's version, not the path it was reached by
    (the tooling venv's python and the system python must not force a reinstall)."""
    if Path(base_python).resolve() == Path(sys.executable).resolve():
        return f"{platform.python_implementation()} {platform.python_version()}"
    return base_python


def fingerprint(steps: Sequence[InstallStep], base_python: str) -> str:
    digest = hashlib.sha256()
    digest.update(f"{platform.system()} {platform.machine()} {python_identity(base_python)}".encode())
    for step in steps:
        digest.update(step.requirements.read_bytes())
        digest.update(json.dumps(step.pip_args).encode())
    return digest.hexdigest()


def is_current(path: Path, steps: Sequence[InstallStep], base_python: str = sys.executable) -> bool:
    stamp = path / FINGERPRINT_FILE
    return (
        venv_python(path).exists()
        and stamp.exists()
        and stamp.read_text().strip() == fingerprint(steps, base_python)
    )


def ensure_venv(
    path: Path,
    steps: Sequence[InstallStep],
    base_python: str = sys.executable,
    say: Say = untagged,
    force: bool = False,
) -> bool:
    """Make `path` a venv holding `steps`. Returns True when pip ran, False when reused."""
    path = Path(path)
    if not force and is_current(path, steps, base_python):
        return False
    if not venv_python(path).exists():
        say(f"creating venv {path}")
        if base_python == sys.executable:
            venv.EnvBuilder(with_pip=True, clear=False).create(path)
        else:
            runner.run([base_python, "-m", "venv", str(path)], merge_stderr=True).check(
                VenvError, f"`{base_python} -m venv {path}`")
    stamp = path / FINGERPRINT_FILE
    stamp.unlink(missing_ok=True)  # a failed install must not look current next time
    for step in steps:
        say(f"installing {step.requirements.name} into {path}")
        cmd = [str(venv_python(path)), "-m", "pip", "install", "-q", "--disable-pip-version-check",
               "-r", str(step.requirements), *step.pip_args]
        result = runner.run(cmd, merge_stderr=True)
        if not result.ok:
            tail = "\n".join(result.stdout.strip().splitlines()[-15:])
            raise VenvError(f"pip could not install {step.requirements}:\n{tail}")
    stamp.write_text(fingerprint(steps, base_python) + "\n")
    return True
