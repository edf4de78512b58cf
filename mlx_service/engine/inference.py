"""The inference façade: everything between a parsed request and the batching thread.

After text-embeddings-inference's router, where the HTTP layer only calls `Infer`: the HTTP
layer (mlx_service/http/app.py) parses and answers; this layer tokenizes, admits (request slots
and tokens: mlx_service/engine/admission.py), submits to the batching thread
(mlx_service/engine/worker.py), waits, normalises, and says how the service is (status). The model
runner (mlx_service/models/embedder.py) is reached only through the worker.

What goes wrong is raised as a RequestError: what the client is told, with its status.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from mlx_service.config import Config
from mlx_service.engine.admission import Admission, Ticket
from mlx_service.engine.worker import (Job, JobKind, JobOutcome, QueueFull, ShuttingDown, Worker,
                                WorkerState)
from mlx_service.enums import StrEnum
from mlx_service.errors import RequestError
from mlx_service.models.embedder import truncate_normalize
from mlx_service.models.folder import ModelSpec
from mlx_service.models.prompts import PromptError
from mlx_service.telemetry.tracing import job_spans, step

# How often a waiting request checks whether its client is still there.
WAIT_POLL_S = 0.1


class ServiceStatus(StrEnum):
    """What /health, /info and /metrics say about the service as a whole."""
    OK = "ok"
    LOADING = "loading"
    ERROR = "error"        # the model failed to load, or the inference thread died
    STOPPING = "stopping"  # shutting down: no new work is admitted


@dataclass(frozen=True)
class Tokenized:
    rows: list[list[int]]  # token ids per text, truncated to max_seq_length
    tokens: int            # real tokens in all rows (a prompt's included: as embedded)
    skips: list[int] | None = None  # per row, the prompt's tokens left out of the pool


@dataclass
class Inference:
    config: Config
    spec: ModelSpec
    dim: int
    worker: Worker
    blas: str
    admission: Admission | None = None
    rerank_spec: object | None = None  # RERANK_MODEL's folder, read before loading; None: unset
    started: float = field(default_factory=time.time)
    draining: bool = False  # set once on SIGTERM/SIGINT

    def __post_init__(self):
        if self.admission is None:
            self.admission = Admission(self.config.max_concurrent_requests,
                                       self.config.max_inflight_tokens)

    # --- status ----------------------------------------------------------------------------
    def status(self) -> tuple[ServiceStatus, str | None]:
        """The status, with why when it is not OK (LOADING says nothing more)."""
        if self.draining:
            return ServiceStatus.STOPPING, "the service is shutting down"
        state = self.worker.state
        if state == WorkerState.ERROR or (state == WorkerState.READY
                                          and not self.worker.is_alive()):
            return ServiceStatus.ERROR, self.worker.error or "the inference worker is not running"
        if state == WorkerState.READY:
            return ServiceStatus.OK, None
        return ServiceStatus.LOADING, None

    def queue_depth(self) -> int:
        return self.worker.queue_depth()

    def in_flight(self) -> dict[str, int]:
        return self.admission.snapshot()

    @property
    def device(self) -> str | None:
        return self.worker.device

    @property
    def load_seconds(self) -> float | None:
        return self.worker.load_seconds

    @property
    def dropped(self) -> int:
        """Requests dropped unrun: client gone or deadline passed."""
        return self.worker.dropped

    def forward(self) -> dict[str, object]:
        """How the model runs a pass: forward (mlx, cpu-fast), cpu_lanes, blas_threads,
        precision and its reason (None until the model has loaded)."""
        embedder = self.worker.embedder
        return {"forward": getattr(embedder, "forward", None),
                "cpu_lanes": getattr(embedder, "lanes", None),
                "blas_threads": getattr(embedder, "blas_threads", None),
                # fp32 | bf16 | bf16-emulated, and why (mlx_service/kernels/precision.py)
                "precision": getattr(embedder, "precision", None),
                "precision_reason": getattr(embedder, "precision_reason", None)}

    def model_description(self) -> dict[str, object]:
        """What is served: architecture, pooling and where it came from, prompts, weights
        (dtype or quantization) and the forward path (its layers once loaded)."""
        spec = self.spec
        out: dict[str, object] = {
            "name": spec.name, "architecture": spec.architecture,
            "pooling": list(spec.pooling), "pooling_source": spec.pooling_source,
            "include_prompt": spec.include_prompt, "prompts": spec.prompts.describe(),
            "max_seq_length": spec.max_seq_length, "weights": spec.describe_weights(),
            "quantization": spec.quantization,
            "dtype": spec.weights.dtype if spec.weights else None,
            "forward": None, "layers": None}
        embedder = self.worker.embedder
        if embedder is not None and hasattr(embedder, "describe"):
            out.update(embedder.describe())
        return out

    @property
    def in_pass(self) -> bool:
        return self.worker.in_pass

    def pass_seconds(self) -> float | None:
        """How long the pass in progress has run, if one is."""
        worker = self.worker
        if worker.in_pass and worker.pass_started:
            return round(time.monotonic() - worker.pass_started, 3)
        return None

    # --- one embedding request -------------------------------------------------------------
    def admit(self) -> Ticket:
        """A request slot, taken before the body is read: a refusal costs nothing."""
        status, why = self.status()
        if status != ServiceStatus.OK:
            code = "model_loading" if status == ServiceStatus.LOADING else "service_unavailable"
            raise RequestError(503, why or "the model is still loading; retry shortly", code=code)
        ticket = self.admission.enter()
        if ticket is None:
            raise RequestError(429, f"{self.config.max_concurrent_requests} embedding requests "
                                    "are in flight (MLX_MAX_CONCURRENT_REQUESTS); retry shortly",
                               code="too_many_requests")
        return ticket

    def release(self, ticket: Ticket) -> None:
        self.admission.leave(ticket)

    def prompt(self, prompt_name: str | None) -> str:
        """The text put before each input: the named prompt, or the model's default one
        (sentence-transformers' rule); an unknown name is the client's mistake (400)."""
        try:
            return self.spec.prompts.resolve(prompt_name)[1]
        except PromptError as exc:
            raise RequestError(400, str(exc), param="prompt_name",
                               code="unknown_prompt_name") from None

    def tokenize(self, ticket: Ticket, texts: list[str],
                 prompt_name: str | None = None) -> Tokenized:
        """Token ids for the texts (each after the request's prompt, if any), with their
        tokens reserved on the ticket first.

        Tokens are reserved on an upper bound first, so that a request that would be refused
        does not pay for tokenizing; `embed` then shrinks the reservation to the real count.
        A bound above the whole budget is tokenized first: the real count may still fit."""
        return self.tokenize_groups(ticket, [(texts, prompt_name)])

    def tokenize_groups(self, ticket: Ticket,
                        groups: list[tuple[list[str], str | None]]) -> Tokenized:
        """`tokenize` for texts under different prompts (a query and its documents), one
        reservation for all: rows in the groups' order."""
        embedder = self.worker.embedder
        prepared = []
        for texts, prompt_name in groups:
            prompt = self.prompt(prompt_name)
            if prompt:
                texts = [prompt + text for text in texts]
            if self.spec.do_lower_case:  # as sentence-transformers does, prompt included
                texts = [text.lower() for text in texts]
                prompt = prompt.lower()
            prepared.append((texts, prompt))
        estimate = sum(embedder.most_tokens(texts) for texts, _ in prepared)
        self.reserve_estimate(ticket, estimate)
        rows: list[list[int]] = []
        skips: list[int] = []
        with step("tokenize", **{"embedding.texts": sum(len(t) for t, _ in prepared)}):
            for texts, prompt in prepared:
                group = embedder.tokenize(texts)  # bounded by max_seq_length per text
                skip = embedder.prompt_tokens(prompt) if prompt else 0
                rows += group
                skips += [skip] * len(group)
        return Tokenized(rows, sum(len(r) for r in rows), skips if any(skips) else None)

    def reserve_estimate(self, ticket: Ticket, estimate: int) -> None:
        """Reserve an upper bound of the request's tokens (429 when they would not fit);
        a bound above the whole budget is left to the real count (admit_tokens)."""
        if (estimate <= self.config.max_inflight_tokens
                and not self.admission.reserve(ticket, estimate)):
            raise self.tokens_in_flight()

    def embed(self, ticket: Ticket, batch: Tokenized, dimensions: int | None,
              client_gone: Callable[[], bool] | None = None):
        """(texts, dimensions) float32 rows, L2-normalised: admit the real token count,
        submit, wait (until the deadline, or until `client_gone` says the client hung up)."""
        job = self.run_job(ticket, batch, JobKind.EMBED, client_gone)
        return truncate_normalize(job.result, dimensions or self.dim)

    def score(self, ticket: Ticket, batch: Tokenized,
              client_gone: Callable[[], bool] | None = None):
        """(pairs, num_labels) float32 logits of the reranker, through the same admission,
        queue and batching as embedding; the pairs of one request are one job."""
        import numpy as np
        job = self.run_job(ticket, batch, JobKind.SCORE, client_gone)
        return np.asarray(job.result, dtype=np.float32).reshape(len(batch.rows), -1)

    def run_job(self, ticket: Ticket, batch: Tokenized, kind: JobKind,
                client_gone: Callable[[], bool] | None = None) -> Job:
        """Admit the real token count, submit, wait (until the deadline, or until
        `client_gone` says the client hung up): the answered job."""
        self.admit_tokens(ticket, batch.tokens)
        deadline = time.monotonic() + self.config.request_timeout
        job = self.submit(batch.rows, deadline, batch.skips, kind)
        self.wait(job, deadline, client_gone)
        job_spans(job)  # queue wait and forward passes, from the times the worker wrote
        self.admission.done(ticket)  # answered: its tokens count toward the measured rate
        return job

    def admit_tokens(self, ticket: Ticket, tokens: int) -> None:
        limit = self.config.max_inflight_tokens
        if tokens > limit:
            raise RequestError(413, f"the request has {tokens} tokens after truncation; at most "
                                    f"{limit} may be in flight (MLX_MAX_INFLIGHT_TOKENS): "
                                    "split it", code="too_many_tokens")
        if ticket.tokens:
            self.admission.settle(ticket, tokens)
        elif not self.admission.reserve(ticket, tokens):
            raise self.tokens_in_flight()
        share = self.config.admission_time_percent / 100
        over = (self.admission.seconds_over(ticket, self.config.request_timeout * share)
                if share else None)
        if over is not None:  # it would not be answered within MLX_REQUEST_TIMEOUT: say so now
            raise RequestError(429, f"the work in flight would take longer than "
                                    f"MLX_REQUEST_TIMEOUT ({self.config.request_timeout}s) allows "
                                    f"at about {self.admission.rate():.0f} "
                                    "tokens/s; retry shortly", code="too_much_work_in_flight",
                               retry_after=math.ceil(over))

    def submit(self, rows: list[list[int]], deadline: float,
               skips: list[int] | None = None, kind: JobKind = JobKind.EMBED) -> Job:
        try:
            return self.worker.submit(rows, deadline=deadline, skips=skips, kind=kind)
        except QueueFull:
            raise RequestError(429, f"the inference queue is full ({self.config.queue_size} "
                                    "requests, MLX_QUEUE_SIZE); retry shortly",
                               code="queue_full") from None
        except ShuttingDown:
            raise shutting_down() from None

    def wait(self, job: Job, deadline: float,
             client_gone: Callable[[], bool] | None = None) -> None:
        """Wait for the worker; a client that hangs up, or a deadline that passes, cancels
        the job, so the worker drops it instead of computing an answer nobody reads."""
        while not job.done.wait(WAIT_POLL_S):
            if client_gone is not None and client_gone():
                job.cancelled = True
                raise RequestError(499, "the client closed the connection", code="client_closed")
            if time.monotonic() > deadline:
                job.cancelled = True
                raise self.timed_out()
        outcome = job.outcome
        if outcome == JobOutcome.SHUT_DOWN:
            raise shutting_down()
        if outcome == JobOutcome.ABANDONED:
            raise self.timed_out()
        if outcome == JobOutcome.FAILED:
            raise RuntimeError(f"inference failed: {job.error}")

    # --- the answers more than one step gives ----------------------------------------------
    def timed_out(self) -> RequestError:
        return RequestError(503, f"no answer from the inference worker within "
                                 f"{self.config.request_timeout}s", code="timeout")

    def tokens_in_flight(self) -> RequestError:
        return RequestError(429, f"{self.config.max_inflight_tokens} tokens are in flight "
                                 "(MLX_MAX_INFLIGHT_TOKENS); retry shortly",
                            code="too_many_tokens_in_flight")


def shutting_down() -> RequestError:
    return RequestError(503, "the service is shutting down", code="shutting_down")
