"""The one inference thread: loads the model, then embeds what the queue brings, in batches.

MLX streams belong to the thread that made them, and waitress serves on many threads, so
every MLX call happens here. Requests that are queued together are coalesced: their rows
are sorted by length and cut into batches capped in padded tokens (the idea of TEI's
router), each row remembering which request and position it came from, so results can
never be handed to the wrong caller.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

log = logging.getLogger("mlx_service.worker")


class QueueFull(Exception):
    """The worker's queue is full: the client should retry later (429)."""


@dataclass
class Job:
    """One request's rows of token ids, and where its answer lands."""
    rows: list[list[int]]
    done: threading.Event = field(default_factory=threading.Event)
    result: list | None = None        # one vector per row, in the request's order
    error: BaseException | None = None
    cancelled: bool = False
    enqueued: float = field(default_factory=time.monotonic)


def plan_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Cut rows into forward passes: indices into `lengths`, longest rows first.

    A batch costs (rows x its longest row) padded tokens. A batch closes when the next row
    would push that past `max_tokens`, or when the next row is less than half the batch's
    width (padding it would waste more than it saves). A row longer than `max_tokens` goes
    alone: truncation already bounds it by the model's max_seq_length.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        n = max(lengths[i], 1)
        if current and ((len(current) + 1) * width > max_tokens or 2 * n < width):
            batches.append(current)
            current = []
        if not current:
            width = n
        current.append(i)
    if current:
        batches.append(current)
    return batches


_STOP = object()


class Worker(threading.Thread):
    """Owns the model. `state` is loading -> ready -> stopped, or error with `error` set."""

    def __init__(self, load: Callable[[], object], queue_size: int, max_batch_tokens: int,
                 metrics=None, coalesce_rows: int = 4096):
        super().__init__(name="mlx-inference", daemon=True)
        self._load = load
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.max_batch_tokens = max_batch_tokens
        self.coalesce_rows = coalesce_rows
        self.metrics = metrics
        self.embedder = None
        self.state = "loading"
        self.error: str | None = None
        self.load_seconds: float | None = None
        self.device: str | None = None
        self.ready = threading.Event()
        self._current: list[Job] = []

    # --- called from HTTP threads ---------------------------------------------------------
    def alive(self) -> bool:
        return self.is_alive() and self.state == "ready"

    def queue_depth(self) -> int:
        return self._queue.qsize()

    def submit(self, rows: list[list[int]]) -> Job:
        job = Job(rows)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull from None
        return job

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then end the thread."""
        if self.is_alive():
            self._queue.put(_STOP)
            self.join(timeout)

    # --- the inference thread --------------------------------------------------------------
    def run(self) -> None:
        started = time.monotonic()
        try:
            self.embedder = self._load()
            self.load_seconds = time.monotonic() - started
            self.device = getattr(self.embedder, "device", None)
            self.state = "ready"
            self.ready.set()
        except BaseException as exc:  # report any load failure through /health, then end
            self.state, self.error = "error", f"model failed to load: {exc}"
            log.exception("model failed to load")
            self.ready.set()
            return
        try:
            self._serve()
        except BaseException as exc:  # a bug here must show up as /health 503, not a hang
            self.state, self.error = "error", f"inference worker died: {exc!r}"
            log.exception("inference worker died")
            for job in self._current:
                job.error = RuntimeError(self.error)
                job.done.set()
            self._fail_pending(RuntimeError(self.error))
            raise
        self.state = "stopped"

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            jobs = [item]
            rows = len(item.rows)
            stop_after = False
            # Coalesce whatever else is already waiting (bounded, so one cycle stays short).
            while rows < self.coalesce_rows:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop_after = True
                    break
                jobs.append(nxt)
                rows += len(nxt.rows)
            self._current = [j for j in jobs if not j.cancelled]
            self._run_jobs(self._current)
            self._current = []
            if self.metrics:
                self.metrics.set_queue_depth(self._queue.qsize())
            if stop_after:
                return

    def _run_jobs(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        # Flatten: every row keeps (job, position) so results go back where they came from.
        owners = [(j, r) for j in jobs for r in range(len(j.rows))]
        lengths = [len(j.rows[r]) for j, r in owners]
        results: dict[int, object] = {}
        failed: dict[int, BaseException] = {}
        for batch in plan_batches(lengths, self.max_batch_tokens):
            t0 = time.monotonic()
            try:
                vectors = self.embedder.embed([owners[i][0].rows[owners[i][1]] for i in batch])
            except Exception as exc:  # e.g. out of memory: fail these requests, keep serving
                log.exception("batch of %d rows failed", len(batch))
                for i in batch:
                    failed[id(owners[i][0])] = exc
                continue
            if self.metrics:
                self.metrics.observe_batch(len(batch), max(lengths[i] for i in batch) * len(batch),
                                           sum(lengths[i] for i in batch), time.monotonic() - t0)
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
                item.error = exc
                item.done.set()
