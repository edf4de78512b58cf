"""The one lock beside the PID file: it serialises start (venv install included), stop and
the stale-file cleanup; a waiter names the holder, a timeout is one sentence."""
from __future__ import annotations

import contextlib

from tasks.core.say import Say
from tasks.core.settings import Settings, SettingsError
from tasks.host.pidfile_lock import LockTimeout, locked
from tasks.host.process_groups import ServiceError

# How long a task waits for the PID file's lock: long enough for another start to install
# the venv. MLX_LOCK_TIMEOUT (seconds) changes it.
LOCK_TIMEOUT = 300.0


class LockSettingError(ServiceError, SettingsError):
    """MLX_LOCK_TIMEOUT that is not a number of seconds: a setting (exit 2)."""


def lock_timeout(settings: Settings) -> float:
    raw = settings.get("MLX_LOCK_TIMEOUT")
    if raw is None:
        return LOCK_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise LockSettingError(f"MLX_LOCK_TIMEOUT={raw!r} is not a number of seconds")
    return value


@contextlib.contextmanager
def service_lock(settings: Settings, doing: str, say: Say | None = None):
    """The PID file's lock for one task; a timeout is a ServiceError naming the holder."""
    try:
        with locked(settings.mlx_pidfile, lock_timeout(settings), doing=doing, waiting=say):
            yield
    except LockTimeout as exc:
        raise ServiceError(f"could not {doing.split()[-1]} the mlx service: {exc}") from None
