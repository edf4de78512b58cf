"""The stack's failures whose message is what a person reads (EngineError: tasks.stack.engine)."""
from __future__ import annotations

from tasks.core.errors import TaskError


class StackError(TaskError, RuntimeError):
    """Stops a task: the message is what the user reads."""


class ComposeError(TaskError, RuntimeError):
    """A Compose command failed, or printed what it should not; the message carries its last
    lines of output."""
