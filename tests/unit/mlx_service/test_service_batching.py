"""The batching planner and the inference worker's bookkeeping, with a fake model."""
from __future__ import annotations

import threading
import time

import pytest

from mlx_service.engine.worker import QueueFull, Worker
from mlx_service.models.batch_plan import plan_batches, sub_passes


def test_plan_sorts_longest_first_and_covers_every_row_once():
    lengths = [5, 256, 7, 7, 30, 1]
    batches = plan_batches(lengths, 1024)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)


def test_plan_caps_padded_tokens():
    lengths = [100] * 25
    batches = plan_batches(lengths, 1000)
    assert [len(b) for b in batches] == [10, 10, 5]
    assert all(len(b) * max(lengths[i] for i in b) <= 1000 for b in batches)


def test_plan_keeps_short_rows_away_from_long_ones():
    batches = plan_batches([256, 250, 10, 9, 8], 8192)
    assert [sorted(b) for b in batches] == [[0, 1], [2, 3, 4]]


def test_plan_row_longer_than_cap_goes_alone():
    assert plan_batches([500, 400], 300) == [[0], [1]]
    assert plan_batches([], 100) == []


class FakeEmbedder:
    """'Vector' of a row = its token ids summed, so any mix-up shows."""

    def __init__(self, fail_on=None, delay=0.0):
        self.calls = []
        self.fail_on = fail_on
        self.delay = delay

    def embed(self, batch):
        self.calls.append([len(r) for r in batch])
        time.sleep(self.delay)
        if self.fail_on is not None and any(self.fail_on in r for r in batch):
            raise MemoryError("boom")
        return [[float(sum(r)), float(len(r))] for r in batch]


def make_worker(embedder, **kw):
    w = Worker(lambda: embedder, kw.pop("queue_size", 64), kw.pop("max_batch_tokens", 64), **kw)
    w.start()
    assert w.ready.wait(5) and w.state == "ready"
    return w


def test_rows_come_back_to_their_request_in_order():
    emb = FakeEmbedder(delay=0.05)
    w = make_worker(emb)
    blocker = w.submit([[1]])  # keeps the worker busy so the next jobs coalesce
    jobs = [w.submit([[i] * (1 + (i * 7) % 13), [i, 100], [i] * 3]) for i in range(10)]
    for job in [blocker, *jobs]:
        assert job.done.wait(10) and job.error is None
    for i, job in enumerate(jobs):
        assert job.result == [[float(sum(r)), float(len(r))] for r in job.rows]
    assert len(emb.calls) < 11  # coalesced, not one pass per request
    w.drain()  # nothing queued: the thread just ends
    w.join(5)
    assert w.state == "stopped" and not w.is_alive()


def test_a_failing_batch_fails_its_requests_and_the_worker_goes_on():
    emb = FakeEmbedder(fail_on=666)
    w = make_worker(emb)
    bad = w.submit([[666, 1]])
    assert bad.done.wait(5) and isinstance(bad.error, MemoryError)
    good = w.submit([[1, 2]])
    assert good.done.wait(5) and good.error is None and good.result == [[3.0, 2.0]]
    assert w.is_alive() and w.state == "ready"
    w.drain()  # nothing queued: the thread just ends
    w.join(5)


def test_full_queue_raises():
    gate = threading.Event()

    class Slow(FakeEmbedder):
        def embed(self, batch):
            gate.wait(5)
            return super().embed(batch)

    w = make_worker(Slow(), queue_size=1)
    first = w.submit([[1]])
    time.sleep(0.1)          # the worker has taken it
    w.submit([[2]])          # fills the queue
    with pytest.raises(QueueFull):
        w.submit([[3]])
    gate.set()
    assert first.done.wait(5)
    w.drain()  # nothing queued: the thread just ends
    w.join(5)


def test_load_failure_is_reported_not_raised():
    def load():
        raise FileNotFoundError("model.safetensors")

    w = Worker(load, 4, 64)
    w.start()
    assert w.ready.wait(5)
    w.join(5)
    assert w.state == "error" and "model.safetensors" in w.error and not w.is_alive()


def test_a_pass_within_the_lanes_budget_runs_whole():
    assert sub_passes([100, 30, 250], lanes=2, lane_tokens=1024) == [[0, 1, 2]]
    assert sub_passes([], lanes=2) == [[]]


def test_a_big_pass_runs_as_sub_passes_within_the_budget_per_lane():
    lengths = [256, 40, 200, 180, 250, 12, 90, 130] * 4
    for lanes in (1, 2, 4):
        passes = sub_passes(lengths, lanes=lanes, lane_tokens=512)
        assert sorted(i for p in passes for i in p) == list(range(len(lengths)))
        assert len(passes) > 1
        for p in passes:
            assert len(p) * max(lengths[i] for i in p) <= 512 * lanes
