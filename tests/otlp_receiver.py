"""An OTLP/HTTP receiver for the tests: takes what the services export (protobuf, as the
SDK's OTLP/HTTP exporters send it, decoded with opentelemetry-proto) and keeps it to look at.

Written for the tests, independently of mlx_service/telemetry/otlp.py: it checks what arrives on the
wire, not what the exporting code believes it sent.
"""
from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def _value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def _attributes(pairs) -> dict:
    return {kv.key: _value(kv.value) for kv in pairs}


@dataclass
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    start_ns: int
    end_ns: int
    attributes: dict
    kind: str = ""  # SERVER, CLIENT, INTERNAL ...


@dataclass
class LogLine:
    service: str
    body: object
    trace_id: str
    span_id: str
    severity: str
    attributes: dict


@dataclass
class Received:
    spans: list[Span] = field(default_factory=list)
    logs: list[LogLine] = field(default_factory=list)
    posts: list[str] = field(default_factory=list)  # the paths posted to, in order
    lock: threading.Lock = field(default_factory=threading.Lock)


def _decode(path: str, body: bytes, into: Received) -> bool:
    if path.endswith("/v1/traces"):
        request = ExportTraceServiceRequest.FromString(body)
        spans = [Span(_attributes(rs.resource.attributes).get("service.name", ""), s.name,
                      s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(),
                      s.start_time_unix_nano, s.end_time_unix_nano, _attributes(s.attributes),
                      s.SpanKind.Name(s.kind).removeprefix("SPAN_KIND_"))
                 for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
        with into.lock:
            into.spans += spans
        return True
    if path.endswith("/v1/logs"):
        request = ExportLogsServiceRequest.FromString(body)
        logs = [LogLine(_attributes(rl.resource.attributes).get("service.name", ""),
                        _value(r.body), r.trace_id.hex(), r.span_id.hex(), r.severity_text,
                        _attributes(r.attributes))
                for rl in request.resource_logs for sl in rl.scope_logs for r in sl.log_records]
        with into.lock:
            into.logs += logs
        return True
    return False


class OtlpReceiver:
    """`with OtlpReceiver() as receiver:` on a free loopback port; `endpoint` is the base URL
    for OTEL_EXPORTER_OTLP_ENDPOINT (the /v1/traces and /v1/logs paths are served)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.received = Received()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with received.lock:
                    received.posts.append(self.path)
                ok = _decode(self.path, body, received)
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "OtlpReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def spans_of(self, trace_id: str) -> list[Span]:
        with self.received.lock:
            return [s for s in self.received.spans if s.trace_id == trace_id]

    def logs_of(self, trace_id: str) -> list[LogLine]:
        with self.received.lock:
            return [r for r in self.received.logs if r.trace_id == trace_id]

    def wait_for(self, found, timeout: float = 20.0):
        """Polls `found()` until it gives something truthy; returns that (or the last try)."""
        deadline = time.monotonic() + timeout
        while True:
            result = found()
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.1)
