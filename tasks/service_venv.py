"""The host service's venv: where it lives and what goes in it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from tasks.settings import Settings
from tasks.venvs import InstallStep, ensure_venv, is_current, venv_python


def service_install_steps(root: Path) -> list[InstallStep]:
    service = root / "mlx_service"
    return [
        InstallStep(service / "requirements.txt"),
        InstallStep(service / "requirements-nodeps.txt", ("--no-deps",)),
    ]


def install_service_venv(settings: Settings, venv_path: Path | None = None, force: bool = False,
                         say: Callable[[str], None] | None = None) -> bool:
    """Create or reuse the service venv; True when pip ran."""
    kwargs = {"say": say} if say else {}
    return ensure_venv(venv_path or settings.mlx_venv, service_install_steps(settings.root),
                       force=force, **kwargs)


def service_venv_ready(settings: Settings, venv_path: Path | None = None) -> bool:
    return is_current(venv_path or settings.mlx_venv, service_install_steps(settings.root))


def service_python(settings: Settings, venv_path: Path | None = None) -> Path:
    return venv_python(venv_path or settings.mlx_venv)
