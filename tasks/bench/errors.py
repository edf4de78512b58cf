"""The benchmark's one error: it cannot go on, and the message says why."""
from tasks.core.errors import TaskError


class BenchError(TaskError, RuntimeError):
    """The benchmark cannot go on; the message says why."""
