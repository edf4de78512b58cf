"""/health, /ping, /info, /metrics, and the log lines users read."""
from __future__ import annotations

import os
import re

from prometheus_client.parser import text_string_to_metric_families

from mlx_service.kernels import blas
from tests.service_support import http


def test_health_is_503_loading_until_the_model_is_ready(service):
    # The fixture polled /health every 20 ms from the moment it spawned the service.
    seen = service.health_seen
    assert (503, "loading") in seen, seen
    assert seen[-1] == (200, "ok")
    assert seen.index((503, "loading")) < len(seen) - 1
    assert all(code in (0, 503) for code, _ in seen[:-1])  # never 200 before the end


def test_health_ok_body(service):
    status, body = service.get("/health")
    assert status == 200
    assert body["status"] == "ok"
    assert "MiniLM" in body["model"]
    assert body["dimensions"] == 384
    assert body["max_seq_length"] == 256


def test_ping(service):
    assert service.get("/ping") == (200, {"message": "pong"})


def test_info(service, service_py):
    status, body = service.get("/info")
    assert status == 200
    assert body["dimensions"] == body["native_dimensions"] == 384
    assert body["max_seq_length"] == 256
    assert body["pooling"] == ["mean"]
    assert body["backend"] == "mlx"
    assert body["device"] == "cpu"
    # auto: the fastest library the machine can load, by a GEMM probe (mlx_service/kernels/blas.py).
    chosen = blas.choose(os.environ.get("MLX_BLAS", "auto"), os.environ,
                         python=str(service_py)).library
    assert body["blas"] == chosen and body["blas_choice"]["library"] == chosen
    assert body["limits"]["max_batch_items"] == 64
    assert body["limits"]["max_request_bytes"] == 65536
    assert {"queue_size", "max_batch_tokens"} <= set(body["limits"])
    assert body["versions"]["mlx"] and body["versions"]["transformers"]
    assert body["listen"] == [f"127.0.0.1:{service.port}"]


def test_metrics(service):
    assert service.post("/embed", {"input": ["one", "two"]})[0] == 200
    assert service.post("/embed", {"input": []})[0] == 400
    status, headers, raw = http("GET", service.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    text = raw.decode()
    for series in ("mlx_embed_requests_total", "mlx_embed_request_duration_seconds_bucket",
                   "mlx_embed_batch_size_rows_bucket", "mlx_embed_queue_depth",
                   "mlx_embed_tokens_total", "mlx_embed_ready 1"):
        assert series in text, series
    # prometheus_client writes a sample's labels in name order: found by their set, not order.
    requests = {frozenset(s.labels.items()): s.value
                for family in text_string_to_metric_families(text) for s in family.samples
                if s.name == "mlx_embed_requests_total"}
    ok = requests.get(frozenset({"endpoint": "/embed", "outcome": "ok", "code": "200"}.items()))
    bad = requests.get(frozenset({"endpoint": "/embed", "outcome": "client_error",
                                  "code": "400"}.items()))
    assert ok and int(ok) >= 1 and bad and int(bad) >= 1
    assert int(re.search(r"^mlx_embed_tokens_total (\d+)", text, re.M).group(1)) > 0


def test_logs_say_when_ready(service):
    log = service.log()
    ready = [line for line in log.splitlines() if "ready:" in line]
    assert len(ready) == 1 and "384 dimensions" in ready[0] and "blas" in ready[0]
    assert re.search(r"GET /health 503 ", log) and re.search(r"GET /health 200 ", log)
