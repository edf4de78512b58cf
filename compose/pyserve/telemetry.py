"""Metrics and traces of the stack's small Python services (model gateway, MCP registry).

- /metrics (prometheus_client, a registry of the service's own): requests by route, method
  and status, their latency, process RSS and CPU, and for the gateway its calls to the host
  service (latency by path and status, errors by reason);
- OTLP traces and logs where the standard OTEL_* variables ask for them (otlp.py: the host
  service's mlx_service/telemetry/otlp.py, copied in by the Dockerfile): a SERVER span per
  request that continues the caller's `traceparent`, a CLIENT span per call to the host
  service, and the trace headers passed on with it, so one trace runs from the container into
  the host service.
Works with Debian bookworm's python3-prometheus-client 0.16 and PyPI's 0.26.
"""
from __future__ import annotations

import logging
import sys
import time

from flask import Flask, Response, g, has_request_context, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest
from prometheus_client.process_collector import ProcessCollector

import otlp

try:  # no `<name>_created` series beside each counter (prometheus_client 0.17+; 0.16 keeps them)
    from prometheus_client import disable_created_metrics
    disable_created_metrics()
except ImportError:
    pass

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Telemetry:
    """`Telemetry(app, name)` adds /metrics and the request series to a Flask app, and
    spans where OTEL_* asks. `traced_upstream(call)` wraps the gateway's calls to the host."""

    def __init__(self, app: Flask, name: str):
        self.name = name
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.requests = Counter("cortex_http_requests", "HTTP requests by route and status.",
                                ("route", "method", "code"), registry=self.registry)
        self.latency = Histogram("cortex_http_request_duration_seconds", "Request latency.",
                                 ("route",), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.upstream_latency = Histogram(
            "cortex_upstream_request_duration_seconds",
            "Calls to the host embedding service, by path and status.", ("path", "code"),
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.upstream_errors = Counter(
            "cortex_upstream_errors", "Calls to the host service that failed: no answer "
            "(unreachable) or a 5xx answer (status).", ("path", "reason"),
            registry=self.registry)
        if not logging.getLogger().handlers:
            # httpserve.serve configures stderr logging later, with basicConfig, which does
            # nothing once the root logger has a handler (the OTLP one, added below): the
            # same stderr configuration first, so `docker logs` keeps every line.
            logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                                format=f"{name}: %(name)s %(levelname)s %(message)s")
        dropped = Counter("cortex_telemetry_dropped", "Spans and log records not exported, "
                          "by signal and reason.", ("signal", "reason"), registry=self.registry)
        self.otlp = otlp.setup(name, lambda signal, reason, n: dropped.labels(
            signal, reason).inc(n), default_service_name=name)
        otlp.server_spans(app, self.otlp)
        app.before_request(self._start)
        app.after_request(self._observe)
        app.add_url_rule("/metrics", "metrics", self.metrics, methods=["GET"])

    @staticmethod
    def _start() -> None:
        g.telemetry_t0 = time.monotonic()

    def _observe(self, response: Response) -> Response:
        seconds = time.monotonic() - getattr(g, "telemetry_t0", time.monotonic())
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        self.requests.labels(route, request.method, str(response.status_code)).inc()
        self.latency.labels(route).observe(seconds)
        return response

    def metrics(self) -> Response:
        return Response(generate_latest(self.registry), mimetype=None,
                        content_type=CONTENT_TYPE_LATEST)

    def traced_upstream(self, call):
        """Wraps `call(method, path, body, headers, timeout) -> (status, headers, body)`, the
        gateway's one way to the host service: timed and counted by path and status, traced
        (a CLIENT span inside a traced request), and the trace headers set on the call: this
        service's span, or the caller's traceparent as it came when traces are off here."""
        def traced(method: str, path: str, body, headers: dict, timeout: float):
            with _client_span(self.otlp, f"{method} {path}"):
                incoming = request.headers if has_request_context() else {}
                headers = {**headers, **otlp.outgoing_trace_headers(self.otlp, incoming)}
                t0 = time.monotonic()
                code = "none"
                try:
                    answer = call(method, path, body, headers, timeout)
                    code = str(answer[0])
                    if answer[0] >= 500:
                        self.upstream_errors.labels(path, "status").inc()
                    return answer
                except Exception:
                    self.upstream_errors.labels(path, "unreachable").inc()
                    raise
                finally:
                    self.upstream_latency.labels(path, code).observe(time.monotonic() - t0)
        return traced


def _client_span(made: otlp.Otlp, name: str):
    """A CLIENT span, only inside a traced request (health probes stay untraced)."""
    import contextlib
    if made.tracer is None:
        return contextlib.nullcontext()
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind
    if not trace.get_current_span().is_recording():
        return contextlib.nullcontext()
    return made.tracer.start_as_current_span(name, kind=SpanKind.CLIENT)
