"""The one way the tasks wait for something: poll a check until it holds or time runs out."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def poll_until(check: Callable[[], T], timeout: float, interval: float = 0.2,
               on_wait: Callable[[float], None] | None = None,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `check` until it returns something truthy, and return that; after `timeout`
    seconds return its last (falsy) answer. `on_wait(elapsed)` runs between tries (progress
    lines); `check` always runs at least once, and once more at the deadline."""
    start = clock()
    while True:
        result = check()
        if result:
            return result
        elapsed = clock() - start
        if elapsed >= timeout:
            return result
        if on_wait is not None:
            on_wait(elapsed)
        sleep(min(interval, max(0.0, timeout - elapsed)))
