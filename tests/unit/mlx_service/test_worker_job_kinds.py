"""The inference worker with jobs of two kinds (embed, score) through one model runner: rows go
back to their request, a pass holds one kind only, and jobs of both kinds share a cycle."""
from __future__ import annotations

from mlx_service.engine.model_runner import ModelRunner
from mlx_service.engine.worker import JobKind, Worker
from tests.unit.mlx_service.test_service_batching import FakeEmbedder


class FakeScorer:
    """'Logits' of a row: minus its token ids summed, so a row scored as an embedding (or the
    other way round) shows."""

    def __init__(self):
        self.calls = []

    def score(self, rows):
        self.calls.append([len(r) for r in rows])
        return [[-float(sum(r))] for r in rows]


def test_embed_and_score_jobs_share_a_cycle_not_a_pass():
    embedder, scorer = FakeEmbedder(delay=0.05), FakeScorer()
    w = Worker(lambda: ModelRunner(embedder, scorer), 64, 64)
    w.start()
    assert w.ready.wait(5) and w.state == "ready" and w.embedder is embedder
    blocker = w.submit([[1]])  # keeps the worker busy so the next jobs are one cycle
    jobs = []
    for i in range(6):
        kind = JobKind.SCORE if i % 2 else JobKind.EMBED
        jobs.append(w.submit([[i, 2], [i] * 3, [7]], kind=kind))
    for job in [blocker, *jobs]:
        assert job.done.wait(10) and job.error is None
    for job in jobs:
        if job.kind == JobKind.SCORE:
            assert job.result == [[-float(sum(r))] for r in job.rows]
        else:
            assert job.result == [[float(sum(r)), float(len(r))] for r in job.rows]
    # the three scoring jobs' nine pairs were scored together, not one pass per request
    assert sum(len(c) for c in scorer.calls) == 9 and len(scorer.calls) < 3
    w.drain()


def test_a_runner_without_a_scorer_fails_the_job_not_the_worker():
    w = Worker(lambda: ModelRunner(FakeEmbedder()), 8, 64)
    w.start()
    assert w.ready.wait(5)
    job = w.submit([[1, 2]], kind=JobKind.SCORE)
    assert job.done.wait(5) and "RERANK_MODEL" in str(job.error)
    ok = w.submit([[1, 2]])
    assert ok.done.wait(5) and ok.error is None and w.is_alive()
    w.drain()
