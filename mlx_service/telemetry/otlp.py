"""OTLP/HTTP export of spans and log records, configured only by the standard OTEL_* variables.

One file for both sides: the host service imports it, and the gateway and registry images
copy it next to compose/pyserve/telemetry.py (compose/pyserve/Dockerfile), so it imports
nothing of mlx_service.

- OTEL_SDK_DISABLED=true: nothing is set up. OTEL_TRACES_EXPORTER / OTEL_LOGS_EXPORTER:
  "otlp" (the default), "console" or "none".
- Endpoints: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / ..._LOGS_ENDPOINT, else
  OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, /v1/logs (empty counts as unset). A signal
  whose exporter is otlp and that no endpoint variable names is not exported: a service that
  nobody pointed anywhere sends nothing (the SDK alone would try localhost:4318 forever).
- OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the service (the SDK's Resource).
- Queues: OTEL_BSP_* for spans and OTEL_BLRP_* for logs (MAX_QUEUE_SIZE, MAX_EXPORT_BATCH_SIZE,
  SCHEDULE_DELAY in ms), as the SDK's batch processors read them.

What the SDK's batch processors do not give is done here: the queue is bounded and adding to
it never waits, so a collector that is down or slow never slows a request; what is dropped
(queue full, export failed) is handed to `on_drop(signal, reason, count)`, for a metric, and
`warn_every` says so at most once a minute. Exporting runs on one daemon thread per signal.
"""
from __future__ import annotations

import collections
import copy
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping

log = logging.getLogger("otlp")
WARN_INTERVAL_S = 60.0
# Loggers whose records are never exported: the exporters' own (a collector that is down
# would otherwise feed its failures back into the queue it cannot empty) and this module's.
NOT_EXPORTED = ("opentelemetry", "urllib3", "requests", "otlp")

Drop = Callable[[str, str, int], None]


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _number(env: Mapping[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        log.warning("%s=%r is not a whole number: using %d", name, raw, default)
        return default
    return value if value > 0 else default


@dataclass(frozen=True)
class SignalPlan:
    """How one signal (traces or logs) is exported: exporter kind and queue bounds."""
    exporter: str | None  # "otlp", "console", or None: not exported
    endpoint: str | None  # the signal's full URL (…/v1/traces, …/v1/logs)
    max_queue: int
    max_batch: int
    delay_s: float


def plan_signal(env: Mapping[str, str], signal: str) -> SignalPlan:
    """signal: "traces" or "logs"."""
    prefix = "OTEL_BSP" if signal == "traces" else "OTEL_BLRP"
    kind = (env.get(f"OTEL_{signal.upper()}_EXPORTER") or "otlp").strip().lower()
    endpoint = (env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT") or "").strip() or None
    base = (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip()
    if endpoint is None and base:  # the base URL gets the signal's path, as the spec says
        endpoint = f"{base.rstrip('/')}/v1/{signal}"
    if _truthy(env.get("OTEL_SDK_DISABLED")) or kind == "none" or (
            kind == "otlp" and endpoint is None):
        kind = None
    elif kind not in ("otlp", "console"):
        log.warning("OTEL_%s_EXPORTER=%r is not supported here (otlp, console, none): "
                    "%s are not exported", signal.upper(), kind, signal)
        kind = None
    max_queue = _number(env, f"{prefix}_MAX_QUEUE_SIZE", 2048)
    return SignalPlan(kind, endpoint, max_queue,
                      min(max_queue, _number(env, f"{prefix}_MAX_EXPORT_BATCH_SIZE", 512)),
                      _number(env, f"{prefix}_SCHEDULE_DELAY", 5000 if signal == "traces"
                              else 1000) / 1000)


class EveryMinute:
    """Says a warning at most once per interval; the ones in between are counted and the
    next one says how many were held back."""

    def __init__(self, logger: logging.Logger = log, interval: float = WARN_INTERVAL_S):
        self.logger, self.interval = logger, interval
        self._last = float("-inf")
        self._held = 0
        self._lock = threading.Lock()

    def __call__(self, message: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval:
                self._held += 1
                return False
            held, self._held, self._last = self._held, 0, now
        self.logger.warning("%s%s", message,
                            f" ({held} more like it in the last minute)" if held else "")
        return True


class BoundedExport:
    """A bounded queue in front of an exporter, emptied by one daemon thread in batches."""

    def __init__(self, signal: str, exporter, plan: SignalPlan, on_drop: Drop,
                 warn: Callable[[str], object]):
        self.signal, self.exporter, self.plan = signal, exporter, plan
        self.on_drop, self.warn = on_drop, warn
        self._queue: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"otlp-{signal}", daemon=True)
        self._thread.start()

    def add(self, item) -> None:
        """Never waits: a full queue drops the item (counted)."""
        with self._lock:
            full = len(self._queue) >= self.plan.max_queue
            if not full:
                self._queue.append(item)
                self._idle.clear()
                wake = len(self._queue) >= self.plan.max_batch
        if full:
            self.dropped("queue_full", 1, f"the {self.signal} export queue is full "
                                          f"({self.plan.max_queue})")
        elif wake:
            self._wake.set()

    def dropped(self, reason: str, count: int, why: str) -> None:
        self.on_drop(self.signal, reason, count)
        self.warn(f"OTLP: {count} {self.signal} item(s) dropped: {why}")

    def _take(self) -> list:
        with self._lock:
            n = min(len(self._queue), self.plan.max_batch)
            return [self._queue.popleft() for _ in range(n)]

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self.plan.delay_s)
            self._wake.clear()
            while batch := self._take():
                self._export(batch)
            with self._lock:  # idle: nothing queued and nothing being exported
                if not self._queue:
                    self._idle.set()

    def _export(self, batch: list) -> None:
        try:
            result = self.exporter.export(batch)
            ok = getattr(result, "name", "") == "SUCCESS"
            why = f"{self.plan.endpoint or self.plan.exporter} refused or did not answer"
        except Exception as exc:  # an exporter bug must not end the thread
            ok, why = False, f"{type(exc).__name__}: {exc}"
        if not ok:
            self.dropped("export_failed", len(batch), why)

    def flush(self, timeout: float) -> bool:
        self._wake.set()
        return self._idle.wait(timeout)

    def shutdown(self, timeout: float = 2.0) -> None:
        self.flush(timeout)
        self._stopped = True
        self._wake.set()
        try:
            self.exporter.shutdown()
        except Exception:
            pass


def _not_exported(record: logging.LogRecord) -> bool:
    return not record.name.startswith(NOT_EXPORTED)


@dataclass
class Otlp:
    """What `setup` made: a tracer (None when traces are not exported), the logging handler
    (None when logs are not), and their export queues."""
    tracer: object | None = None
    log_handler: logging.Handler | None = None
    exports: tuple = ()

    def flush(self, timeout: float = 5.0) -> bool:
        """Every signal's queue exported, within `timeout` seconds in all."""
        deadline = time.monotonic() + timeout
        return all([export.flush(max(0.0, deadline - time.monotonic()))
                    for export in self.exports])

    def shutdown(self) -> None:
        if self.log_handler is not None:
            logging.getLogger().removeHandler(self.log_handler)
        for export in self.exports:
            export.shutdown()


def setup(scope: str, on_drop: Drop, env: Mapping[str, str] | None = None,
          default_service_name: str | None = None) -> Otlp:
    """Tracer and root-logger handler from the OTEL_* variables; an empty Otlp when neither
    signal is exported (or the SDK is not installed). `scope`: the instrumentation's name."""
    env = dict(os.environ if env is None else env)
    traces, logs = plan_signal(env, "traces"), plan_signal(env, "logs")
    if traces.exporter is None and logs.exporter is None:
        return Otlp()
    try:
        from opentelemetry.sdk.resources import Resource
    except ImportError:
        log.warning("OTEL_* asks for export but the OpenTelemetry SDK is not installed")
        return Otlp()
    logging.getLogger("opentelemetry").setLevel(logging.ERROR)  # we say what was dropped
    named = env.get("OTEL_SERVICE_NAME") or "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    # The SDK reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES itself; the default name
    # stands in only where neither names the service.
    resource = Resource.create({} if named or not default_service_name
                               else {"service.name": default_service_name})
    warn = EveryMinute()
    made = Otlp()
    exports = []
    if traces.exporter:
        export = BoundedExport("traces", _span_exporter(traces), traces, on_drop, warn)
        made.tracer = _tracer_provider(resource, export).get_tracer(scope)
        exports.append(export)
    if logs.exporter:
        export = BoundedExport("logs", _log_exporter(logs), logs, on_drop, warn)
        made.log_handler = _log_handler(resource, export)
        made.log_handler.addFilter(_not_exported)
        logging.getLogger().addHandler(made.log_handler)
        exports.append(export)
    made.exports = tuple(exports)
    return made


# --- the SDK's parts ----------------------------------------------------------------------------

def _span_exporter(plan: SignalPlan):
    if plan.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    # The endpoint as planned (an empty per-signal variable would mislead the SDK's own
    # lookup); headers, timeout, compression: from OTEL_EXPORTER_OTLP_*, read by the SDK.
    return OTLPSpanExporter(endpoint=plan.endpoint)


def _log_exporter(plan: SignalPlan):
    if plan.exporter == "console":
        from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter
        return ConsoleLogRecordExporter()
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    return OTLPLogExporter(endpoint=plan.endpoint)


def _tracer_provider(resource, export: BoundedExport):
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    class Spans(SpanProcessor):
        def on_end(self, span) -> None:
            export.add(span)

        def shutdown(self) -> None:
            export.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return export.flush(timeout_millis / 1000)

    provider = TracerProvider(resource=resource)  # sampler: OTEL_TRACES_SAMPLER
    provider.add_span_processor(Spans())
    return provider


def _log_handler(resource, export: BoundedExport) -> logging.Handler:
    import warnings

    from opentelemetry.context import Context
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler, LogRecordProcessor
    from opentelemetry.sdk._logs import ReadableLogRecord

    class Logs(LogRecordProcessor):
        def on_emit(self, log_record) -> None:
            # As the SDK's batch processor does: a readable copy, without the live context.
            record = copy.copy(log_record.log_record)
            record.context = Context()
            export.add(ReadableLogRecord(log_record=record, resource=resource,
                                         instrumentation_scope=log_record.instrumentation_scope,
                                         limits=log_record.limits))

        def shutdown(self) -> None:
            export.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return export.flush(timeout_millis / 1000)

    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(Logs())
    with warnings.catch_warnings():  # the SDK's handler is "deprecated" for a contrib package
        warnings.simplefilter("ignore", DeprecationWarning)
        return LoggingHandler(level=logging.INFO, logger_provider=provider)


# --- spans around a Flask app's requests ------------------------------------------------------

TRACE_HEADERS = (("traceparent", "HTTP_TRACEPARENT"), ("tracestate", "HTTP_TRACESTATE"))
# Probes and scrapes come every few seconds from health checks and Prometheus: not traced.
UNTRACED_PATHS = ("/health", "/health/", "/ping", "/metrics")


def server_spans(flask_app, made: Otlp) -> None:
    """A SERVER span around each request of `flask_app`, continuing the caller's W3C trace
    (`traceparent`), named "METHOD /route" once Flask has matched the route."""
    if made.tracer is None:
        return
    from flask import request
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    tracer, inner = made.tracer, flask_app.wsgi_app

    def traced(environ, start_response):
        if environ.get("PATH_INFO") in UNTRACED_PATHS:
            return inner(environ, start_response)
        carrier = {name: environ[key] for name, key in TRACE_HEADERS if key in environ}
        method = environ.get("REQUEST_METHOD", "GET")
        with tracer.start_as_current_span(
                method, context=propagate.extract(carrier), kind=SpanKind.SERVER,
                attributes={"http.request.method": method,
                            "url.path": environ.get("PATH_INFO", "")}) as span:
            def respond(status, headers, exc_info=None):
                code = int(str(status).split(" ", 1)[0])
                span.set_attribute("http.response.status_code", code)
                if code >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                return start_response(status, headers, exc_info)
            return inner(environ, respond)

    flask_app.wsgi_app = traced

    @flask_app.before_request
    def _name_span():
        span = trace.get_current_span()
        if request.url_rule is not None and span.is_recording():
            span.update_name(f"{request.method} {request.url_rule.rule}")
            span.set_attribute("http.route", request.url_rule.rule)


def child_span(made: Otlp, name: str, **attributes):
    """A span under the current one (a context manager); nothing when traces are off."""
    if made.tracer is None:
        import contextlib
        return contextlib.nullcontext()
    return made.tracer.start_as_current_span(name, attributes=attributes)


def outgoing_trace_headers(made: Otlp, incoming: Mapping[str, str]) -> dict[str, str]:
    """The trace headers for a call made while serving a request: this service's span when
    traces are on, else the caller's own traceparent/tracestate passed on unchanged."""
    if made.tracer is None:
        return {name: incoming[name] for name, _ in TRACE_HEADERS if incoming.get(name)}
    from opentelemetry import propagate
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers
