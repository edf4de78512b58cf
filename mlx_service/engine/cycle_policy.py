"""Which queued requests the inference worker takes into one cycle: a pure policy, so it can
be tested without a thread (mlx_service/engine/worker.py runs it on its queue).

A cycle takes the request that woke the worker, then whatever else is queued, until it
holds enough rows or tokens. Under concurrent load it may wait up to a deadline for as many
requests as were in play after the previous cycle (see mlx_service/README.md, "Under load").
"""
from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from typing import Callable, Protocol

# How many full passes of work one cycle may coalesce from several requests.
COALESCE_PASSES = 4


class JobSource(Protocol):
    """queue.Queue's two reads: both raise queue.Empty when nothing comes."""

    def get(self, block: bool = True, timeout: float | None = None): ...

    def get_nowait(self): ...


@dataclass(frozen=True)
class CycleLimits:
    """rows/tokens: a cycle stops taking requests once it holds this many (a large request
    is answered when its own work is done, not when that of everything queued with it is);
    expect: how many requests it may wait for until the deadline (0: never waits)."""
    rows: int
    tokens: int
    expect: int = 0


def coalesce_tokens(max_batch_tokens: int) -> int:
    return COALESCE_PASSES * max_batch_tokens


def requests_to_expect(last_in_play: int, coalesce_rows: int) -> int:
    """The requests worth waiting for: those in play after the previous cycle, when there
    were several. A lone client, or coalescing turned off, never waits."""
    return last_in_play if last_in_play > 1 and coalesce_rows > 1 else 0


def job_tokens(job) -> int:
    return sum(len(r) for r in job.rows)


def take_cycle(source: JobSource, first, limits: CycleLimits, deadline: float, stop: object,
               clock: Callable[[], float] = time.monotonic) -> tuple[list, bool]:
    """The jobs of one cycle, `first` included, and whether `stop` (the worker's sentinel)
    was read, so the worker ends after this cycle."""
    jobs = [first]
    rows, tokens = len(first.rows), job_tokens(first)
    while rows < limits.rows and tokens < limits.tokens:
        try:
            left = deadline - clock()
            if len(jobs) < limits.expect and left > 0:
                item = source.get(timeout=left)
            else:
                item = source.get_nowait()
        except queue.Empty:
            break
        if item is stop:
            return jobs, True
        jobs.append(item)
        rows += len(item.rows)
        tokens += job_tokens(item)
    return jobs, False
