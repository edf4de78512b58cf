"""The speed settings and planners of the service (pure logic, no model, no numpy)."""
from __future__ import annotations

import pytest

from mlx_service.config import ConfigError, load_config
from mlx_service.engine.worker import Worker
from mlx_service.models.batch_plan import PASS_OVERHEAD_TOKENS, plan_batches, split_rows


# --- plan_batches: padding against the fixed cost of a pass -------------------------------------
def test_a_short_row_rides_with_slightly_longer_ones():
    # "hello world" (4 tokens) among 8-12-token texts: padding it costs less than a pass
    lengths = [12, 11, 10, 9, 9, 8, 8, 4]
    assert plan_batches(lengths, 8192) == [[0, 1, 2, 3, 4, 5, 6, 7]]


def test_short_rows_still_leave_long_ones_when_padding_would_cost_more_than_a_pass():
    assert plan_batches([256, 250, 40, 30], 8192) == [[0, 1], [2, 3]]
    # many rows just under half the width: their total padding outweighs one more pass
    lengths = [30] * 10 + [14] * 10
    assert [sorted(b) for b in plan_batches(lengths, 8192)] == [list(range(10)),
                                                                list(range(10, 20))]


def test_one_lone_short_row_splits_only_when_its_padding_exceeds_the_overhead():
    width = 2 * PASS_OVERHEAD_TOKENS
    assert plan_batches([width, 1], 8192) == [[0], [1]]               # wastes width - 1
    assert plan_batches([20, 9], 8192, pass_overhead=10) == [[0], [1]]  # wastes 11 > 10
    assert plan_batches([20, 9], 8192, pass_overhead=11) == [[0, 1]]    # 11 is not more
    assert plan_batches([20, 10], 8192, pass_overhead=0) == [[0, 1]]    # not under half width


# --- split_rows: one part per core ----------------------------------------------------------------
@pytest.mark.parametrize("lengths, parts", [
    ([256, 250, 240, 230], 2),
    ([256, 12, 11, 10, 9, 8], 2),
    ([9, 9, 9, 9, 9, 9, 9], 3),
    ([5], 2),
    ([40, 30], 4),
])
def test_split_rows_covers_every_row_once_longest_first(lengths, parts):
    out = split_rows(lengths, parts)
    flat = [i for part in out for i in part]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)  # contiguous runs
    assert 1 <= len(out) <= min(parts, len(lengths)) and all(out)


def test_split_rows_balances_cost_not_row_count():
    # one 256-token row costs about as much as many short ones: it goes alone
    out = split_rows([256] + [16] * 12, 2)
    assert out == [[0], list(range(1, 13))]
    even = split_rows([100] * 8, 2)
    assert [len(p) for p in even] == [4, 4]


def test_split_rows_of_nothing_is_nothing():
    assert split_rows([], 2) == []


# --- settings -----------------------------------------------------------------------------------
def test_speed_settings_defaults_and_env():
    config = load_config([], {})
    assert config.coalesce_rows == 4096 and config.cpu_fast is True and config.cpu_lanes == 0
    config = load_config([], {"MLX_COALESCE_ROWS": "1", "MLX_CPU_FAST": "off",
                              "MLX_CPU_LANES": "1"})
    assert config.coalesce_rows == 1 and config.cpu_fast is False and config.cpu_lanes == 1
    assert config.limits()["coalesce_rows"] == 1  # reported in /info with the other limits


@pytest.mark.parametrize("env, names", [
    ({"MLX_COALESCE_ROWS": "0"}, "MLX_COALESCE_ROWS"),
    ({"MLX_CPU_FAST": "maybe"}, "MLX_CPU_FAST"),
    ({"MLX_CPU_LANES": "-1"}, "MLX_CPU_LANES"),
    ({"MLX_CPU_LANES": "two"}, "MLX_CPU_LANES"),
])
def test_bad_speed_settings_are_refused_by_name(env, names):
    with pytest.raises(ConfigError, match=names):
        load_config([], env)


# --- coalescing can be turned off ---------------------------------------------------------------
class RecordingEmbedder:
    def __init__(self):
        import threading
        self.calls = []
        self.gate = threading.Event()

    def embed(self, batch):
        self.gate.wait(5)
        self.calls.append(len(batch))
        return [[float(sum(r))] for r in batch]


@pytest.mark.parametrize("coalesce_rows, passes", [(1, 4), (4096, 2)])
def test_coalesce_rows_1_runs_one_request_per_pass(coalesce_rows, passes):
    emb = RecordingEmbedder()
    worker = Worker(lambda: emb, 16, 8192, coalesce_rows=coalesce_rows)
    worker.start()
    assert worker.ready.wait(5)
    first = worker.submit([[1]])     # taken at once; holds the worker at the gate
    import time
    time.sleep(0.1)
    rest = [worker.submit([[i, i]]) for i in range(2, 5)]  # queue up behind it
    emb.gate.set()
    for job in (first, *rest):
        assert job.done.wait(5) and job.error is None
    assert len(emb.calls) == passes
    assert [job.result for job in rest] == [[[float(2 * i)]] for i in range(2, 5)]
    worker.drain()  # nothing queued: the thread just ends
    worker.join(5)


# --- waiting for the clients just answered, under load only -----------------------------------
class CountingEmbedder:
    def __init__(self, delay: float = 0.0):
        self.calls = []
        self.delay = delay

    def embed(self, batch):
        import time
        time.sleep(self.delay)
        self.calls.append(len(batch))
        return [[float(sum(r))] for r in batch]


def _two_request_pass(worker, emb):
    """Make the previous pass answer two requests: queue two while the worker is busy."""
    import threading
    gate = threading.Event()
    real = emb.embed
    emb.embed = lambda batch: (gate.wait(5), real(batch))[1]
    first = worker.submit([[1]])
    import time
    time.sleep(0.05)
    pair = [worker.submit([[2]]), worker.submit([[3]])]
    gate.set()
    for job in (first, *pair):
        assert job.done.wait(5)
    emb.embed = real
    return len(emb.calls)


@pytest.mark.parametrize("wait_ms, pass_s, passes_after", [
    (400, 0.0, 1),   # waits for the late second client: one pass
    (0, 0.0, 2),     # never waits
    (100, 0.0, 2),   # waits, but not that long
])
def test_under_load_the_worker_waits_for_the_clients_it_just_answered(wait_ms, pass_s,
                                                                       passes_after):
    import time
    emb = CountingEmbedder(delay=pass_s)
    worker = Worker(lambda: emb, 16, 8192, batch_wait_ms=wait_ms)
    worker.start()
    assert worker.ready.wait(5)
    before = _two_request_pass(worker, emb)          # last pass: two requests
    first = worker.submit([[4]])
    time.sleep(0.15)                                 # the second client is a little late
    second = worker.submit([[5]])
    assert first.done.wait(5) and second.done.wait(5)
    assert len(emb.calls) - before == passes_after
    worker.drain()  # nothing queued: the thread just ends
    worker.join(5)


def test_a_lone_client_never_waits():
    import time
    emb = CountingEmbedder()
    worker = Worker(lambda: emb, 16, 8192, batch_wait_ms=2000)
    worker.start()
    assert worker.ready.wait(5)
    t0 = time.monotonic()
    for i in range(3):  # one request at a time: every previous pass had one request
        job = worker.submit([[i]])
        assert job.done.wait(5)
    assert time.monotonic() - t0 < 1.0
    worker.drain()  # nothing queued: the thread just ends
    worker.join(5)


def test_batch_wait_setting():
    assert load_config([], {}).batch_wait_ms == 20
    assert load_config([], {"MLX_BATCH_WAIT_MS": "0"}).batch_wait_ms == 0
    with pytest.raises(ConfigError, match="MLX_BATCH_WAIT_MS"):
        load_config([], {"MLX_BATCH_WAIT_MS": "-1"})
