"""`inv stop` and `inv clean`: act only on what this checkout created."""
from __future__ import annotations

from tasks.core.say import Say, say_as
from tasks.core.settings import Settings, SettingsError
from tasks.host import mlx_process
from tasks.stack.engine import EngineError
from tasks.stack.errors import ComposeError, StackError
from tasks.stack.origins import foreign_origins, project_origins
from tasks.stack.project import Stack, open_stack
from tasks.stack.started_record import forget_started


def stop_host(settings: Settings, say: Say) -> bool:
    return mlx_process.stop_service(settings, say=say)


def refuse_foreign(stack: Stack, kept: str, outcome: str | None = None) -> None:
    """StackError naming the other checkout when project containers of that name were
    created from somewhere else: start, stop and clean act only on what this checkout
    created (Compose would otherwise start, stop or remove the other checkout's)."""
    project = stack.compose.project
    others = foreign_origins(project_origins(stack.engine, project, stack.env),
                             stack.compose.project_dir)
    if not others:
        return
    where = sorted({o.where() for o in others})
    names = ", ".join(sorted(o.name for o in others))
    outcome = outcome or f"left the project's {kept} alone"
    raise StackError(
        f"Compose project {project!r} also has containers created from another checkout, "
        f"{'; '.join(where)} (containers: {names}); {outcome}: set "
        f"CORTEX_COMPOSE_PROJECT to a name of this checkout's own, or act from that checkout.")


def stop(settings: Settings, say: Say = say_as("stack"), with_mlx: bool = True) -> None:
    """Containers stopped (volumes and containers kept), then the host service. Refused when
    the project name also has containers of another checkout."""
    problem = None
    try:
        stack = open_stack(settings)
        refuse_foreign(stack, "containers")
        say(f"stopping the containers of project {stack.compose.project}")
        stack.compose.stop()
        forget_started(settings)  # stopped on purpose: no longer expected to run
    except (EngineError, ComposeError, StackError, SettingsError) as exc:
        problem = exc  # the host service is still stopped below
    if with_mlx:
        stop_host(settings, say)
    if problem is not None:
        raise StackError(f"The containers were not stopped: {problem}")


def clean(settings: Settings, say: Say = say_as("stack")) -> None:
    """Containers, volumes and networks of the project removed; host service stopped.
    Refused (nothing removed, volumes included) when the project name also has containers
    of another checkout."""
    problem = None
    try:
        stack = open_stack(settings)
        refuse_foreign(stack, "containers and volumes")
        say(f"removing containers, volumes and networks of project {stack.compose.project}")
        stack.compose.down(volumes=True)
        forget_started(settings)
    except (EngineError, ComposeError, StackError, SettingsError) as exc:
        problem = exc  # the host service is still stopped below
    stop_host(settings, say)
    if problem is not None:
        raise StackError(f"The project was not removed: {problem}")
