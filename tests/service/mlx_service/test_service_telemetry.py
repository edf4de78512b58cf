"""The host service's telemetry, on the real model: OTLP spans and logs as an OTLP/HTTP
receiver gets them (tests/otlp_receiver.py), the W3C trace of a caller continued, process
series and dropped-telemetry counts on /metrics, and a collector that is down costing a
request nothing measurable (p50 within 25 % of OTEL_SDK_DISABLED=true, side by side)."""
from __future__ import annotations

import json
import os
import statistics
import time

from tasks.core.ports import free_port
from tests.otlp_receiver import OtlpReceiver
from tests.service_support import http

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
# Short export delays, so the test does not wait the SDK's default 5 s.
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_BLRP_SCHEDULE_DELAY": "200"}


def embed(service, texts, headers=None):
    return http("POST", service.url + "/v1/embeddings", json.dumps({"input": texts}).encode(),
                {"Content-Type": "application/json", **(headers or {})})


def metric_value(text: str, name: str, **labels) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        if series.split("{")[0] == name and all(f'{k}="{v}"' in series for k, v in labels.items()):
            return float(value)
    return None


def test_spans_and_logs_continue_the_callers_trace(service_factory):
    with OtlpReceiver() as receiver:
        svc = service_factory(env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                                   "OTEL_SERVICE_NAME": "mlx-under-test", **FAST_EXPORT})
        status, _, body = embed(svc, ["a short text", "and a second, somewhat longer one"],
                                {"traceparent": TRACEPARENT})
        assert status == 200, body

        def request_spans():
            spans = receiver.spans_of(TRACE_ID)
            names = {s.name for s in spans}
            return spans if {"POST /v1/embeddings", "tokenize", "queue wait",
                             "forward pass"} <= names else None

        spans = receiver.wait_for(request_spans)
        assert spans, (f"spans of trace {TRACE_ID} not all received: "
                       f"{[(s.name, s.trace_id) for s in receiver.received.spans]}")
        by_name = {s.name: s for s in spans}
        server = by_name["POST /v1/embeddings"]
        assert server.parent_id == PARENT_ID, "the caller's span is the request span's parent"
        assert server.service == "mlx-under-test"
        assert server.attributes.get("http.response.status_code") == 200
        for child in ("tokenize", "queue wait", "forward pass"):
            assert by_name[child].parent_id == server.span_id, child
            assert server.start_ns <= by_name[child].start_ns <= by_name[child].end_ns \
                <= server.end_ns, f"{child} lies within the request"
        forward = by_name["forward pass"]
        assert forward.attributes["embedding.rows"] == 2
        assert forward.attributes["embedding.padded_tokens"] >= forward.attributes[
            "embedding.tokens"] > 2

        logs = receiver.wait_for(lambda: [r for r in receiver.logs_of(TRACE_ID)
                                          if "/v1/embeddings" in str(r.body)])
        assert logs, f"no log record with trace {TRACE_ID}: {receiver.received.logs[-5:]}"
        assert logs[0].span_id == server.span_id
        assert logs[0].service == "mlx-under-test"

        # A request without traceparent starts a trace of its own.
        assert embed(svc, ["no caller trace"])[0] == 200
        own = receiver.wait_for(lambda: [s for s in receiver.received.spans
                                         if s.name == "POST /v1/embeddings"
                                         and s.trace_id != TRACE_ID])
        assert own and own[0].parent_id == ""

        # At exit the queue is flushed: the service's last log line reaches the collector.
        assert svc.stop() == 0
        last = receiver.wait_for(lambda: [r for r in receiver.received.logs
                                          if str(r.body) == "stopped"], timeout=5)
        assert last, [r.body for r in receiver.received.logs][-5:]


def test_nothing_is_exported_without_an_endpoint_and_process_series_show(service_factory):
    with OtlpReceiver() as receiver:
        # Only OTEL_SERVICE_NAME: no endpoint named, so nothing may be sent anywhere.
        svc = service_factory(env={"OTEL_SERVICE_NAME": "quiet", **FAST_EXPORT})
        assert embed(svc, ["hello"], {"traceparent": TRACEPARENT})[0] == 200
        time.sleep(1)
        assert receiver.received.posts == []
        text = http("GET", svc.url + "/metrics")[2].decode()
        assert metric_value(text, "process_resident_memory_bytes") > 50e6
        assert metric_value(text, "process_cpu_seconds_total") > 0


def test_a_collector_that_is_down_is_counted_not_felt(service_factory):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    common = {"MLX_BATCH_WAIT_MS": "0", **FAST_EXPORT}
    exporting = service_factory(env={"OTEL_EXPORTER_OTLP_ENDPOINT": dead,
                                     "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
                                     "OTEL_BSP_MAX_QUEUE_SIZE": "64",
                                     "OTEL_BLRP_MAX_QUEUE_SIZE": "64", **common})
    disabled = service_factory(env={"OTEL_EXPORTER_OTLP_ENDPOINT": dead,
                                    "OTEL_SDK_DISABLED": "true", **common})
    texts = ["a sentence of ordinary length for the latency comparison"]
    for svc in (exporting, disabled):  # warm both
        for _ in range(5):
            assert embed(svc, texts)[0] == 200
    times = {"exporting": [], "disabled": []}
    rounds = int(os.environ.get("CORTEX_OTLP_LATENCY_ROUNDS", "150"))
    for i in range(rounds):  # alternating, so both see the same machine load
        pair = [("exporting", exporting), ("disabled", disabled)]
        for name, svc in (pair if i % 2 else pair[::-1]):
            t0 = time.perf_counter()
            status, _, body = embed(svc, texts, {"traceparent": TRACEPARENT})
            times[name].append(time.perf_counter() - t0)
            assert status == 200, body
    p50 = {name: statistics.median(t) for name, t in times.items()}
    print(f"p50 over {rounds} requests each: collector down {p50['exporting'] * 1000:.2f} ms, "
          f"OTEL_SDK_DISABLED=true {p50['disabled'] * 1000:.2f} ms")
    assert p50["exporting"] <= 1.25 * p50["disabled"], (
        f"p50 with the collector down {p50['exporting'] * 1000:.2f} ms, with the SDK disabled "
        f"{p50['disabled'] * 1000:.2f} ms")

    def dropped():
        text = http("GET", exporting.url + "/metrics")[2].decode()
        return sum(metric_value(text, "mlx_embed_telemetry_dropped_total", signal=s,
                                reason=r) or 0
                   for s in ("traces", "logs") for r in ("queue_full", "export_failed"))
    deadline = time.monotonic() + 20
    while dropped() < rounds and time.monotonic() < deadline:
        time.sleep(0.5)
    assert dropped() >= rounds, "each request's spans went somewhere: they must count as dropped"
    assert embed(exporting, texts)[0] == 200
    warnings = [line for line in exporting.log().splitlines() if "OTLP:" in line]
    assert 1 <= len(warnings) <= 2, f"dropped data is said at most once a minute: {warnings}"
    disabled_metrics = http("GET", disabled.url + "/metrics")[2].decode()
    assert metric_value(disabled_metrics, "mlx_embed_telemetry_dropped_total") is None
