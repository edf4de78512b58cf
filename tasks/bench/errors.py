"""The benchmark's one error: it cannot go on, and the message says why."""


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why."""
