"""After `inv mlx restart` moved the host service to another port, the containers that reach
it follow: they are recreated with MLX_HOST_URL at the new port (as `inv start` would make
them), then waited for. Without this the gateway kept calling the old port, degraded, until the
next `inv start`, and nothing said so.
"""
from __future__ import annotations

from tasks.core.say import Say
from tasks.core.settings import Settings
from tasks.stack.engine import EngineError
from tasks.stack.errors import ComposeError, StackError
from tasks.stack.otlp_endpoints import otlp_environment, running_services
from tasks.stack.project import make_stack, open_stack
from tasks.stack.readiness import NotReady, wait_ready
from tasks.stack.start import ready_timeout
from tasks.stack.stop import refuse_foreign

# The services whose compose environment carries MLX_HOST_URL (compose/docker-compose.yml).
FOLLOWERS = ("model-gateway", "prometheus")


def containers_follow(settings: Settings, moved_from: int | None, host: dict, say: Say,
                      wait: bool = True) -> list[str]:
    """Recreate the running FOLLOWERS when the host service moved from port `moved_from` to
    host["port"]; the services recreated. Raises StackError saying what is left to do when
    they could not follow."""
    port = host.get("port")
    if moved_from is None or not isinstance(port, int) or port == moved_from:
        return []
    if settings.get("MLX_HOST_URL") is not None:  # the user's own address: theirs to change
        say(f"the host service moved to port {port}; MLX_HOST_URL is set, so the containers "
            f"keep calling {settings.mlx_host_url}")
        return []
    try:
        stack = open_stack(settings)
        running = running_services(stack)
    except (EngineError, ComposeError, StackError):
        return []  # no engine, no project: no container to follow
    followers = [s for s in FOLLOWERS if s in running]
    if not followers:
        return []
    moved = (f"the host service moved from port {moved_from} to {port}, but "
             f"{', '.join(followers)} still call{'s' if len(followers) == 1 else ''} port "
             f"{moved_from}")
    try:
        refuse_foreign(stack, "containers", outcome="recreated nothing")
        # As `inv start` makes them: the new port, and OTLP to the Tempo and Loki that run.
        aimed = settings.with_env(MLX_PORT=str(port), **otlp_environment(settings, running))
        stack = make_stack(aimed, stack.engine, stack.offline, stack.auto_pull)
        say(f"the host service moved from port {moved_from} to {port}: recreating "
            f"{', '.join(followers)} so they call it there")
        stack.compose.up(followers, build=False)
        if wait:
            wait_ready(followers, aimed.ports(), ready_timeout(settings), say=say)
    except (EngineError, ComposeError, StackError, NotReady) as exc:
        raise StackError(f"{moved}: {exc}; `inv start` points them at it") from None
    return followers
