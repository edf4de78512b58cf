"""Pure-Python wheels for the offline Python base image, where Debian has no package.

The OpenTelemetry SDK and its OTLP/HTTP exporter (compose/pyserve/requirements-wheels.txt)
are on PyPI only. `pip download --no-deps --only-binary=:all:` fetches exactly the pinned
wheels (py3-none-any), and each is unpacked into the debootstrap root's
/usr/local/lib/python3.X/dist-packages, which Debian's python3 searches: a wheel is a zip of
the files pip would install, its .dist-info (entry points, which the SDK reads) included.
"""
from __future__ import annotations

import sys
import tempfile
import zipfile
from pathlib import Path

from tasks.core.errors import TaskError
from tasks.core import runner
from tasks.core.settings import REPO_ROOT

WHEELS_FILE = REPO_ROOT / "compose" / "pyserve" / "requirements-wheels.txt"
DEBIAN_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}


class WheelError(TaskError, RuntimeError):
    """The wheels could not be had; the message says which and why."""


def wheel_specs(path: Path = WHEELS_FILE) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def wheels_text(path: Path = WHEELS_FILE) -> str:
    """What the image's digest covers: the pinned list."""
    return "\n".join(wheel_specs(path))


def add_wheels(root: Path, suite: str, path: Path = WHEELS_FILE) -> list[str]:
    """Download the pinned wheels and unpack them into `root`; their file names."""
    python = DEBIAN_PYTHON[suite]
    site = root / "usr" / "local" / "lib" / f"python{python}" / "dist-packages"
    with tempfile.TemporaryDirectory(prefix="cortex-wheels-") as folder:
        done = runner.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "-q", "--platform", "any", "--implementation", "py",
             "--python-version", python, "-d", folder, *wheel_specs(path)], merge_stderr=True)
        wheels = sorted(Path(folder).glob("*.whl"))
        if done.exit_code != 0 or len(wheels) != len(wheel_specs(path)):
            tail = "\n".join(done.stdout.strip().splitlines()[-6:])
            raise WheelError(f"pip could not download the wheels of {path.name}:\n{tail}")
        site.mkdir(parents=True, exist_ok=True)
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as zf:
                members = [m for m in zf.namelist() if ".data/" not in m.split("/", 1)[0] + "/"]
                zf.extractall(site, members)
        return [w.name for w in wheels]
