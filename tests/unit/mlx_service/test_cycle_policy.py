"""The worker's queue policy (mlx_service/engine/cycle_policy.py), on a real queue, without a
thread."""
from __future__ import annotations

import queue
from dataclasses import dataclass

from mlx_service.engine.cycle_policy import CycleLimits, requests_to_expect, take_cycle

STOP = object()


@dataclass
class FakeJob:
    rows: list


def job(rows: int, length: int = 4) -> FakeJob:
    return FakeJob([[1] * length for _ in range(rows)])


def queued(*items) -> queue.Queue:
    q: queue.Queue = queue.Queue()
    for item in items:
        q.put(item)
    return q


class WaitRecorder(queue.Queue):
    """Records the timeouts of blocking reads: a policy that waits when it should not shows."""

    def __init__(self, *items):
        super().__init__()
        self.waits: list[float] = []
        for item in items:
            self.put(item)

    def get(self, block=True, timeout=None):
        if block:  # queue.Queue's get_nowait is get(False)
            self.waits.append(timeout)
        return super().get(block, timeout)


def test_takes_everything_queued_within_limits():
    first, a, b = job(1), job(2), job(3)
    jobs, stop = take_cycle(queued(a, b), first, CycleLimits(100, 10_000), 0.0, STOP)
    assert jobs == [first, a, b] and not stop


def test_stops_taking_once_rows_reach_the_limit():
    first, a, b = job(3), job(2), job(1)
    q = queued(a, b)
    jobs, _ = take_cycle(q, first, CycleLimits(5, 10_000), 0.0, STOP)
    assert jobs == [first, a] and q.get_nowait() is b


def test_stops_taking_once_tokens_reach_the_limit():
    first, a = job(1, length=400), job(1)
    q = queued(a)
    jobs, _ = take_cycle(q, first, CycleLimits(100, 400), 0.0, STOP)
    assert jobs == [first] and q.qsize() == 1


def test_stop_sentinel_ends_the_cycle_and_is_reported():
    first, a, b = job(1), job(1), job(1)
    q = queued(a, STOP, b)
    jobs, stop = take_cycle(q, first, CycleLimits(100, 10_000), 0.0, STOP)
    assert jobs == [first, a] and stop and q.get_nowait() is b


def test_a_lone_client_never_waits():
    assert requests_to_expect(0, 4096) == 0
    assert requests_to_expect(1, 4096) == 0
    assert requests_to_expect(5, 1) == 0  # coalescing off
    assert requests_to_expect(5, 4096) == 5
    q = WaitRecorder()
    jobs, _ = take_cycle(q, job(1), CycleLimits(100, 10_000, expect=0), 1e9, STOP,
                         clock=lambda: 0.0)
    assert len(jobs) == 1 and q.waits == []


def test_waits_until_the_deadline_for_the_expected_requests_only():
    now = [10.0]
    a = job(1)
    q = WaitRecorder(a)
    jobs, _ = take_cycle(q, job(1), CycleLimits(100, 10_000, expect=3), 10.5, STOP,
                         clock=lambda: now[0])
    # One blocking read took `a` with the time left; the next one found nothing in it.
    assert len(jobs) == 2 and q.waits == [0.5, 0.5]


def test_no_wait_once_the_deadline_passed():
    q = WaitRecorder(job(1))
    jobs, _ = take_cycle(q, job(1), CycleLimits(100, 10_000, expect=5), 1.0, STOP,
                         clock=lambda: 2.0)
    assert len(jobs) == 2 and q.waits == []


def test_no_wait_once_the_expected_requests_came():
    q = WaitRecorder(job(1), job(1))
    jobs, _ = take_cycle(q, job(1), CycleLimits(100, 10_000, expect=2), 5.0, STOP,
                         clock=lambda: 0.0)
    # The second job was expected (waited for, found at once); the third was not.
    assert len(jobs) == 3 and q.waits == [5.0]
