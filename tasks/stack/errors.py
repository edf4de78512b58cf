"""The stack's failures whose message is what a person reads (EngineError: tasks.stack.engine)."""
from __future__ import annotations

from tasks.core.errors import TaskError
from tasks.core.settings import SettingsError


class StackError(TaskError, RuntimeError):
    """Stops a task: the message is what the user reads."""


class StackSettingError(StackError, SettingsError):
    """A stack setting (CORTEX_IMAGES, CORTEX_COMPOSE_OVERRIDES) a task cannot use: exit 2,
    like every other setting, and still a StackError to the code that catches those."""


class ComposeError(TaskError, RuntimeError):
    """A Compose command failed, or printed what it should not; the message carries its last
    lines of output."""
