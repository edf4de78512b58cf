"""/metrics: the service's Prometheus series, counted and written by prometheus_client.

The series live in a registry of the service's own, not the library's global one: two
services in one process (tests, benchmarks) never share counts, and nothing a dependency
registers globally shows up here. prometheus_client adds a `<name>_created` series to every
counter and histogram, and writes bucket bounds as floats (le="1.0"); the former are left
out and the latter written as before, so /metrics keeps the series it has always had (names,
types, labels, values). Two differences in form only: values are written as floats ("3.0")
and a sample's labels in name order (code, endpoint, outcome).
"""
from __future__ import annotations

import threading
from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from mlx_service.enums import StrEnum

PREFIX = "mlx_embed"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
BATCH_TOKEN_BUCKETS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768)
INFO_LABELS = ("model", "dimensions", "blas", "device")


class RequestOutcome(StrEnum):
    """The `outcome` label of mlx_embed_requests_total."""
    OK = "ok"
    REJECTED = "rejected"          # 429: over a limit, retry later
    CLIENT_ERROR = "client_error"
    SERVER_ERROR = "server_error"
    # 503 because the service is not ready (loading, stopping): /health saying so, or a
    # request refused for it. Not a fault of the service: alerting on server_error must not
    # fire on every start.
    NOT_READY = "not_ready"

    @classmethod
    def of(cls, status: int, not_ready: bool = False) -> RequestOutcome:
        if status < 400:
            return cls.OK
        if status == 429:
            return cls.REJECTED
        if status == 503 and not_ready:
            return cls.NOT_READY
        return cls.CLIENT_ERROR if status < 500 else cls.SERVER_ERROR


# Statuses that refuse a request over a limit (too much at once, too large): each is counted
# in mlx_embed_refused_requests_total by its error code.
REFUSAL_STATUSES = (413, 429)


def bucket_bound(le: str) -> str:
    """A bucket's bound as /metrics has always written it: whole numbers without ".0"
    (le="1", not prometheus_client's le="1.0"). `le` is part of a series' identity: a
    Prometheus that scraped le="1" would start a new series for le="1.0"."""
    value = float(le)
    return str(int(value)) if value.is_integer() else le


class SeriesAsBefore(Collector):
    """Collects the given metrics, in order, without their `_created` samples and with the
    bucket bounds written as before."""

    def __init__(self, metrics: Iterable[MetricWrapperBase]):
        self.metrics = tuple(metrics)

    def collect(self):
        for metric in self.metrics:
            for family in metric.collect():
                family.samples = [
                    s._replace(labels={**s.labels, "le": bucket_bound(s.labels["le"])})
                    if "le" in s.labels else s
                    for s in family.samples if not s.name.endswith("_created")]
                yield family


class Metrics:
    """Thread-safe series; `render()` gives the /metrics body. One lock around updates and
    rendering, so a scrape never sees a request counted but its latency not yet observed."""

    def __init__(self):
        self._lock = threading.Lock()
        p = PREFIX
        # registry=None: each series is collected through SeriesAsBefore, registered below.
        self.info = Gauge(f"{p}_info", "The served model and runtime.", INFO_LABELS,
                          registry=None)
        self.ready = Gauge(f"{p}_ready", "1 once the model is loaded and the worker alive.",
                           registry=None)
        self.requests = Counter(f"{p}_requests", "HTTP requests by endpoint and outcome.",
                                ("endpoint", "outcome", "code"), registry=None)
        self.latency = Histogram(f"{p}_request_duration_seconds", "Request latency.",
                                 ("endpoint",), buckets=LATENCY_BUCKETS, registry=None)
        self.batch_rows = Histogram(f"{p}_batch_size_rows", "Rows per forward pass.",
                                    buckets=BATCH_ROW_BUCKETS, registry=None)
        self.batch_padded = Histogram(f"{p}_batch_padded_tokens",
                                      "Padded tokens per forward pass.",
                                      buckets=BATCH_TOKEN_BUCKETS, registry=None)
        self.batch_seconds = Histogram(f"{p}_batch_duration_seconds", "Time per forward pass.",
                                       buckets=LATENCY_BUCKETS, registry=None)
        self.tokens = Counter(f"{p}_tokens", "Real (unpadded) tokens embedded.", registry=None)
        self.padded_tokens = Counter(f"{p}_padded_tokens", "Tokens computed including padding.",
                                     registry=None)
        self.texts = Counter(f"{p}_texts", "Texts embedded.", registry=None)
        self.pairs = Counter(f"{p}_scored_pairs", "Query-document pairs (or classifier "
                             "inputs) scored by the reranker.", registry=None)
        self.refused = Counter(f"{p}_refused_requests", "Requests refused over a limit (429, "
                               "413), by reason: the error code of the answer.", ("reason",),
                               registry=None)
        self.queue = Gauge(f"{p}_queue_depth", "Requests waiting for the inference worker.",
                           registry=None)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SeriesAsBefore((
            self.info, self.ready, self.requests, self.latency, self.batch_rows,
            self.batch_padded, self.batch_seconds, self.tokens, self.padded_tokens, self.texts,
            self.pairs, self.queue, self.refused)))
        self.queue_depth = 0  # as the worker saw it after its latest cycle
        self._refusals: dict[str, int] = {}  # the refused counter's values, for /info

    def observe_request(self, endpoint: str, status: int, seconds: float, texts: int = 0,
                        not_ready: bool = False, refusal: str | None = None) -> None:
        """`not_ready`: a 503 because the service is loading or stopping; `refusal`: the
        error code of a request refused over a limit (REFUSAL_STATUSES)."""
        with self._lock:
            self.requests.labels(endpoint, RequestOutcome.of(status, not_ready), status).inc()
            self.latency.labels(endpoint).observe(seconds)
            self.texts.inc(texts)
            if refusal is not None and status in REFUSAL_STATUSES:
                self._refuse(refusal)

    def count_refusal(self, reason: str) -> None:
        """A refusal the app never saw: waitress's 413 for a body over the limit, said by its
        Content-Length before a byte of it was read."""
        with self._lock:
            self._refuse(reason)

    def _refuse(self, reason: str) -> None:
        self.refused.labels(reason).inc()
        self._refusals[reason] = self._refusals.get(reason, 0) + 1

    def refusals(self) -> dict[str, int]:
        """Requests refused over a limit so far, by reason."""
        with self._lock:
            return dict(self._refusals)

    def observe_batch(self, rows: int, padded_tokens: int, tokens: int, seconds: float,
                      kind: str = "embed") -> None:
        with self._lock:
            if kind == "score":
                self.pairs.inc(rows)
            self.batch_rows.observe(rows)
            self.batch_padded.observe(padded_tokens)
            self.batch_seconds.observe(seconds)
            self.tokens.inc(tokens)
            self.padded_tokens.inc(padded_tokens)

    def set_queue_depth(self, depth: int) -> None:
        self.queue_depth = depth

    def render(self, queue_depth: int, ready: bool, info: dict[str, object]) -> str:
        """The exposition text; the gauges read at scrape time are set from the arguments."""
        with self._lock:
            self.info.clear()  # the device is known only once the model has loaded
            self.info.labels(**{k: str(v) for k, v in info.items()}).set(1)
            self.ready.set(int(ready))
            self.queue.set(queue_depth)
            return generate_latest(self.registry).decode()
