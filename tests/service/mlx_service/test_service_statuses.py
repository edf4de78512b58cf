"""Issue 28, the host service's rows: OpenAI's statuses for an invalid body (row 12), an
`Allow` header on every 405 (row 14), and metrics that count readiness and refusals where
their names say (row 18). Through the real service over HTTP."""
from __future__ import annotations

import json
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.service_support import http

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("body,param", [
    ({"input": "a", "dimensions": 0}, "dimensions"),
    ({"input": "a", "dimensions": "x"}, "dimensions"),
    ({"input": "a", "dimensions": 1.5}, "dimensions"),
    ({"input": ""}, "input"),
    ({"input": []}, "input"),
    ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
])
def test_every_invalid_body_is_a_400_in_openais_shape(service, body, param):
    status, _, raw = http("POST", service.url + "/v1/embeddings", json.dumps(body).encode(), JSON)
    assert status == 400, raw
    error = json.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_whitespace_input_is_still_a_text(service):
    assert service.post("/v1/embeddings", {"input": " "})[0] == 200


@pytest.mark.parametrize("method,path,allowed", [
    ("HEAD", "/v1/embeddings", {"POST", "OPTIONS"}),
    ("PUT", "/v1/embeddings", {"POST", "OPTIONS"}),
    ("GET", "/embed", {"POST", "OPTIONS"}),
    ("DELETE", "/rerank", {"POST", "OPTIONS"}),
    ("POST", "/health", {"GET", "HEAD", "OPTIONS"}),
    ("POST", "/v1/models", {"GET", "HEAD", "OPTIONS"}),
])
def test_every_405_says_allow(service, method, path, allowed):
    status, headers, raw = http(method, service.url + path, b"{}" if method != "HEAD" else None,
                                JSON)
    assert status == 405
    assert {m.strip() for m in headers.get("Allow", "").split(",") if m.strip()} == allowed
    if method != "HEAD":
        assert json.loads(raw)["error"]["code"] == "method_not_allowed"


def samples(svc, name: str) -> dict[frozenset, float]:
    text = http("GET", svc.url + "/metrics")[2].decode()
    return {frozenset(s.labels.items()): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == name}


def test_health_503s_while_loading_are_not_server_errors(service_factory):
    svc = service_factory()  # polled every 20 ms from its start: it answers 503 while loading
    assert (503, "loading") in svc.health_seen, svc.health_seen
    requests = samples(svc, "mlx_embed_requests_total")
    health = {dict(k)["outcome"]: v for k, v in requests.items() if dict(k)["endpoint"] == "/health"}
    assert health.get("not_ready", 0) >= 1, health
    assert "server_error" not in health, health


def test_every_refusal_is_counted_as_refused(service_factory):
    svc = service_factory(env={"MLX_MAX_CONCURRENT_REQUESTS": "1", "MLX_MAX_BATCH_ITEMS": "64",
                               "MLX_ADMISSION_TIME_PERCENT": "0",
                               "MLX_MAX_REQUEST_BYTES": "65536"})
    long_texts = ["word " * 300] * 32  # 32 x 256 tokens: each request holds the slot a while
    statuses: list[int] = []

    def client():
        for _ in range(2):
            statuses.append(svc.post("/v1/embeddings", {"input": long_texts})[0])

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    too_many = svc.post("/embed", {"input": ["a"] * 65})[0]
    assert too_many == 413
    # refused by waitress from its Content-Length, before the app sees it: counted too
    too_large = http("POST", svc.url + "/v1/embeddings",
                     json.dumps({"input": "a" * 70000}).encode(), JSON)[0]
    assert too_large == 413
    refused_429 = statuses.count(429)
    assert refused_429 >= 1 and statuses.count(200) >= 1, statuses
    by_reason = {dict(k)["reason"]: v for k, v in
                 samples(svc, "mlx_embed_refused_requests_total").items()}
    assert by_reason.get("too_many_items") == 1, by_reason
    assert by_reason.get("request_too_large") == 1, by_reason
    sizes = ("too_many_items", "request_too_large")
    assert sum(v for r, v in by_reason.items() if r not in sizes) == refused_429, by_reason
    info = svc.get("/info")[1]["in_flight"]
    assert info["refused_requests"] == refused_429 + 2, info
    assert info["refused"] == {r: int(v) for r, v in by_reason.items()}
