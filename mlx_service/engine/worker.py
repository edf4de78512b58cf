"""The one inference thread: loads the models, then runs what the queue brings, in batches.

MLX streams belong to the thread that made them, and waitress serves on many threads, so
every MLX call happens here. Requests that are queued together are coalesced: their rows
are sorted by length and cut into batches capped in padded tokens (the idea of TEI's
router), each row remembering which request and position it came from, so results can
never be handed to the wrong caller.

The loaded object is the model runner (TEI's `Model` trait): `embed(rows, skips)` for
embedding jobs and, when a reranker or classifier is served, `score(rows)` for scoring jobs
(mlx_service/engine/model_runner.py). Jobs of both kinds share the queue, the cycle and its
limits; a pass holds rows of one kind only.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from mlx_service.engine.cycle_policy import (CycleLimits, coalesce_tokens, requests_to_expect,
                                             take_cycle)
from mlx_service.enums import StrEnum
from mlx_service.models.batch_plan import plan_batches

log = logging.getLogger("mlx_service.worker")


class QueueFull(Exception):
    """The worker's queue is full: the client should retry later (429)."""


class ShuttingDown(Exception):
    """The service stopped before this request's turn came (503)."""


class Abandoned(Exception):
    """The request's client left, or its deadline passed, before it ran: not run."""


class WorkerState(StrEnum):
    """loading -> ready -> stopped, or error (the model failed to load, or the thread died)."""
    LOADING = "loading"
    READY = "ready"
    ERROR = "error"
    STOPPED = "stopped"


class JobKind(StrEnum):
    """What a job's rows are for: which of the runner's passes computes them."""
    EMBED = "embed"  # one vector per row (the embedding model)
    SCORE = "score"  # one row of logits per pair (the reranker or classifier)


class JobOutcome(StrEnum):
    """How a job ended, once `done` is set."""
    ANSWERED = "answered"            # `result` holds one vector per row
    SHUT_DOWN = "shut_down"          # the service stopped before its turn (503)
    ABANDONED = "abandoned"          # client gone or deadline passed: not run
    FAILED = "failed"                # the pass raised (e.g. out of memory)


@dataclass(frozen=True)
class PassTiming:
    """A forward pass as a job that had rows in it saw it (wall clock, ns): its spans are
    made from these by mlx_service/telemetry/tracing.py, on the request's own thread."""
    start_ns: int
    end_ns: int
    rows: int
    padded_tokens: int
    tokens: int
    own_rows: int  # of the rows, how many were this job's


def mark_pass(row_jobs: list, lengths: list[int], seconds: float) -> None:
    """Writes a pass's PassTiming on each job that had rows in it (row_jobs: a row's job)."""
    end_ns = time.time_ns()
    own: dict[int, list] = {}
    for job in row_jobs:
        own.setdefault(id(job), [job, 0])[1] += 1
    for job, rows in own.values():
        job.passes.append(PassTiming(end_ns - int(seconds * 1e9), end_ns, len(lengths),
                                     max(lengths) * len(lengths), sum(lengths), rows))


@dataclass
class Job:
    """One request's rows of token ids, and where its answer lands."""
    rows: list[list[int]]
    skips: list[int] | None = None    # per row, leading tokens left out of the pool (a prompt)
    done: threading.Event = field(default_factory=threading.Event)
    result: list | None = None        # one vector per row, in the request's order
    error: BaseException | None = None
    cancelled: bool = False           # set by the HTTP thread when its client hung up
    enqueued: float = field(default_factory=time.monotonic)
    enqueued_ns: int = field(default_factory=time.time_ns)  # wall clock, for its spans
    passes: list[PassTiming] = field(default_factory=list)  # the passes that held its rows
    deadline: float | None = None     # monotonic; past it the answer would go unread
    kind: JobKind = JobKind.EMBED

    def abandoned(self, now: float) -> bool:
        return self.cancelled or (self.deadline is not None and now > self.deadline)

    def fail(self, exc: BaseException) -> None:
        self.result, self.error = None, exc
        self.done.set()

    @property
    def outcome(self) -> JobOutcome:
        if self.error is None:
            return JobOutcome.ANSWERED
        if isinstance(self.error, ShuttingDown):
            return JobOutcome.SHUT_DOWN
        if isinstance(self.error, Abandoned):
            return JobOutcome.ABANDONED
        return JobOutcome.FAILED


_STOP = object()


class Worker(threading.Thread):
    """Owns the model. `state`: see WorkerState; `error` says why when it is ERROR."""

    def __init__(self, load: Callable[[], object], queue_size: int, max_batch_tokens: int,
                 metrics=None, coalesce_rows: int = 4096, batch_wait_ms: float = 0.0):
        super().__init__(name="mlx-inference", daemon=True)
        self._load = load
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.max_batch_tokens = max_batch_tokens
        self.coalesce_rows = coalesce_rows
        self.coalesce_tokens = coalesce_tokens(max_batch_tokens)
        self.batch_wait_s = max(0.0, batch_wait_ms) / 1000
        self._last_jobs = 0  # requests in play at the end of the previous cycle
        self.metrics = metrics
        self.runner = None    # the loaded model runner: embed, and score when a scorer is served
        self.embedder = None  # the runner's embedding model (the runner itself when it is one)
        self.state = WorkerState.LOADING
        self.error: str | None = None
        self.load_seconds: float | None = None
        self.device: str | None = None
        self.ready = threading.Event()
        self._current: list[Job] = []
        self._draining = threading.Event()
        self._submit_lock = threading.Lock()
        self.pass_started: float | None = None  # monotonic start of the latest pass
        self.in_pass = False
        self.dropped = 0  # requests dropped unrun: client gone or deadline passed

    # --- called from HTTP threads ---------------------------------------------------------
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def submit(self, rows: list[list[int]], deadline: float | None = None,
               skips: list[int] | None = None, kind: JobKind = JobKind.EMBED) -> Job:
        job = Job(rows, skips=skips, deadline=deadline, kind=kind)
        with self._submit_lock:  # never a job queued behind drain(): nobody would answer it
            if self._draining.is_set():
                raise ShuttingDown("the service is shutting down")
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise QueueFull from None
        return job

    def drain(self) -> None:
        """Shutdown: what is queued is answered ShuttingDown at once, the pass in progress
        finishes (its own rows only: the passes after it are not started), then the thread
        ends."""
        with self._submit_lock:
            self._draining.set()
        self._fail_pending(ShuttingDown("the service is shutting down"))
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            pass  # the worker sees _draining after its pass

    # --- the inference thread --------------------------------------------------------------
    def run(self) -> None:
        started = time.monotonic()
        try:
            self.runner = self._load()
            self.embedder = getattr(self.runner, "embedder", self.runner)
            self.load_seconds = time.monotonic() - started
            self.device = getattr(self.embedder, "device", None)
            self.state = WorkerState.READY
            self.ready.set()
        except BaseException as exc:  # report any load failure through /health, then end
            # One line for the user (the main thread exits with it); the trace for debugging.
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.state, self.error = WorkerState.ERROR, f"model failed to load: {first}"
            log.error("%s", self.error)
            log.debug("model load failure", exc_info=True)
            self.ready.set()
            return
        try:
            self._serve()
        except BaseException as exc:  # a bug here must show up as /health 503, not a hang
            self.state, self.error = WorkerState.ERROR, f"inference worker died: {exc!r}"
            log.exception("inference worker died")
            for job in self._current:
                job.error = RuntimeError(self.error)
                job.done.set()
            self._fail_pending(RuntimeError(self.error))
            raise
        self.state = WorkerState.STOPPED

    def _serve(self) -> None:
        while True:
            if self._draining.is_set():
                self._fail_pending(ShuttingDown("the service is shutting down"))
                return
            item = self._queue.get()
            if item is _STOP:
                return
            # Under concurrent load, wait up to batch_wait for as many requests as were in
            # play after the previous cycle, so all clients share one pass (README, "Under load").
            limits = CycleLimits(self.coalesce_rows, self.coalesce_tokens,
                                 requests_to_expect(self._last_jobs, self.coalesce_rows))
            jobs, stop_after = take_cycle(self._queue, item, limits,
                                          time.monotonic() + self.batch_wait_s, _STOP)
            self._current = self._live(jobs)
            self._run_jobs(self._current)
            self._last_jobs = len(jobs) + self._queue.qsize()
            self._current = []
            if self.metrics:
                self.metrics.set_queue_depth(self._queue.qsize())
            if stop_after:
                return

    def _live(self, jobs: list[Job]) -> list[Job]:
        """The jobs still worth running; the others are answered Abandoned, unrun."""
        now = time.monotonic()
        live = []
        for job in jobs:
            if job.abandoned(now):
                self.dropped += 1
                job.fail(Abandoned("the client left or its deadline passed before it ran"))
            else:
                live.append(job)
        return live

    def _run_jobs(self, jobs: list[Job]) -> None:
        """The cycle's jobs, kind by kind: rows of one kind share passes."""
        for kind in JobKind:
            self._run_kind([job for job in jobs if job.kind == kind], kind)

    def _pass(self, kind: JobKind, rows: list[list[int]], skips: list[int]):
        if kind == JobKind.SCORE:
            return self.runner.score(rows)
        return self.runner.embed(rows, skips) if any(skips) else self.runner.embed(rows)

    def _run_kind(self, jobs: list[Job], kind: JobKind) -> None:
        if not jobs:
            return
        # Flatten: every row keeps (job, position) so results go back where they came from.
        owners = [(j, r) for j in jobs for r in range(len(j.rows))]
        lengths = [len(j.rows[r]) for j, r in owners]
        results: dict[int, object] = {}
        failed: dict[int, BaseException] = {}
        for batch in plan_batches(lengths, self.max_batch_tokens):
            if self._draining.is_set():  # shutdown: no new pass; the rest is answered 503
                for i in batch:
                    failed.setdefault(id(owners[i][0]), ShuttingDown("the service is shutting down"))
                continue
            now = time.monotonic()
            if all(owners[i][0].abandoned(now) for i in batch):
                for i in batch:  # nobody waits for these rows any more
                    failed.setdefault(id(owners[i][0]), Abandoned("abandoned before it ran"))
                continue
            t0 = time.monotonic()
            self.pass_started = t0
            self.in_pass = True
            skips = [owners[i][0].skips[owners[i][1]] if owners[i][0].skips else 0
                     for i in batch]
            try:
                rows = [owners[i][0].rows[owners[i][1]] for i in batch]
                vectors = self._pass(kind, rows, skips)
            except Exception as exc:  # e.g. out of memory: fail these requests, keep serving
                log.exception("batch of %d rows failed", len(batch))
                for i in batch:
                    failed[id(owners[i][0])] = exc
                continue
            finally:
                self.in_pass = False
            took = time.monotonic() - t0
            mark_pass([owners[i][0] for i in batch], [lengths[i] for i in batch], took)
            if self.metrics:
                self.metrics.observe_batch(len(batch), max(lengths[i] for i in batch) * len(batch),
                                           sum(lengths[i] for i in batch), took, kind)
            if took > 2:  # a pass this long delays shutdown and every queued request
                log.info("a pass of %d rows x %d tokens took %.1fs", len(batch),
                         max(lengths[i] for i in batch), took)
            for k, i in enumerate(batch):
                results[i] = vectors[k]
        start = 0
        for job in jobs:
            n = len(job.rows)
            if id(job) in failed:
                job.result, job.error = None, failed[id(job)]
            else:
                job.result = [results[start + r] for r in range(n)]
            start += n
            job.done.set()

    def _fail_pending(self, exc: BaseException) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Job):
                item.fail(exc)
