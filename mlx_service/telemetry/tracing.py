"""The host service's telemetry beyond /metrics' request series: process RSS and CPU
(mlx_service/telemetry/process_metrics.py), OTLP traces and logs
(mlx_service/telemetry/otlp.py: only the standard OTEL_* variables), and the count of what
export dropped.

Spans: one SERVER span per request (the caller's `traceparent` continued), and under an
embedding request: `tokenize`, `queue wait` (from submit to the first pass that held its rows)
and one `forward pass` per pass that held them (rows, padded tokens, real tokens). The
inference thread only writes timestamps on the job (mlx_service/engine/worker.py); the spans are
made here, on the request's thread, after the answer came: the worker never waits on
telemetry. Log records go out with the trace and span ids of the request they belong to.
"""
from __future__ import annotations

from prometheus_client import Counter

from mlx_service.telemetry import otlp
from mlx_service.telemetry.metrics import SeriesAsBefore
from mlx_service.telemetry.process_metrics import register_process_metrics

SERVICE_NAME = "mlx-embeddings"
_OTLP = otlp.Otlp()  # what install() set up; empty until then, and when nothing is exported


def install(app, metrics) -> otlp.Otlp:
    """Process series and the dropped-telemetry counter on the service's /metrics, and spans
    and log export where OTEL_* asks for them. `app`: the Flask app; `metrics`: its Metrics."""
    global _OTLP
    register_process_metrics(metrics.registry)  # process RSS and CPU, Linux and macOS
    dropped = Counter("mlx_embed_telemetry_dropped", "Spans and log records not exported, "
                      "by signal and reason (queue_full, export_failed).",
                      ("signal", "reason"), registry=None)
    metrics.registry.register(SeriesAsBefore((dropped,)))  # no _created, like the others
    _OTLP = otlp.setup("mlx_service", lambda signal, reason, n: dropped.labels(
        signal, reason).inc(n), default_service_name=SERVICE_NAME)
    otlp.server_spans(app, _OTLP)
    return _OTLP


def step(name: str, **attributes):
    """A child span of the request being served (a context manager)."""
    return otlp.child_span(_OTLP, name, **attributes)


def job_spans(job) -> None:
    """`queue wait` and `forward pass` spans of a job the inference thread has answered,
    from the wall-clock times it wrote on it (ns)."""
    tracer = _OTLP.tracer
    if tracer is None or not job.passes:
        return
    tracer.start_span("queue wait", start_time=job.enqueued_ns).end(
        end_time=max(job.enqueued_ns, job.passes[0].start_ns))
    for one in job.passes:
        span = tracer.start_span("forward pass", start_time=one.start_ns, attributes={
            "embedding.rows": one.rows, "embedding.padded_tokens": one.padded_tokens,
            "embedding.tokens": one.tokens, "embedding.rows_of_this_request": one.own_rows})
        span.end(end_time=one.end_ns)


def flush(timeout: float) -> bool:
    """Export what is queued, waiting at most `timeout` seconds (at exit)."""
    return _OTLP.flush(timeout)
