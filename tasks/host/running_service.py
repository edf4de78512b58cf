"""Where this checkout's host service runs, for every task that talks to it.

`MLX_PORT=8091 inv mlx start` leaves the service on 8091; a later task run without the
variable must find it there, as `inv status` does, not call the configured port where nothing
(or something else) answers. The PID file (verified against the live process) says where it
listens; the settings returned here aim there. `inv mlx start/stop/restart` keep the configured
settings: they are how a new port is asked for.
"""
from __future__ import annotations

from tasks.core.settings import Settings
from tasks.host.service_state import inspect


def running_port(settings: Settings) -> int | None:
    """The port this checkout's running service listens on (None: none of ours runs)."""
    state = inspect(settings, cleanup=False)
    if not state.running or not isinstance(state.record.port, int):
        return None
    return state.record.port


def aimed_at_running_service(settings: Settings) -> Settings:
    """`settings` whose MLX_PORT and MLX_HOST are where this checkout's service runs; the same
    settings when none of ours runs or it runs where they say."""
    state = inspect(settings, cleanup=False)
    if not state.running:
        return settings
    record = state.record
    changes: dict[str, str] = {}
    if isinstance(record.port, int) and record.port != settings.mlx_port:
        changes["MLX_PORT"] = str(record.port)
    if record.bind and ",".join(record.bind) != settings.mlx_host:
        changes["MLX_HOST"] = ",".join(record.bind)
    return settings.with_env(**changes) if changes else settings
