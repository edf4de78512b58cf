"""/metrics through prometheus_client: the series the hand-written text had, and no others."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from mlx_service.telemetry.metrics import Metrics, RequestOutcome

INFO = {"model": "m", "dimensions": 384, "blas": "openblas", "device": "cpu"}


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_the_series_their_types_and_nothing_else():
    m = Metrics()
    m.observe_request("/embed", 200, 0.03, texts=2)
    m.observe_batch(rows=3, padded_tokens=30, tokens=20, seconds=0.2)
    text = m.render(queue_depth=5, ready=True, info=INFO)
    found = {name: f.type for name, f in families(text).items()}
    p = "mlx_embed"
    assert found == {f"{p}_info": "gauge", f"{p}_ready": "gauge", f"{p}_requests": "counter",
                     f"{p}_request_duration_seconds": "histogram",
                     f"{p}_batch_size_rows": "histogram", f"{p}_batch_padded_tokens": "histogram",
                     f"{p}_batch_duration_seconds": "histogram", f"{p}_tokens": "counter",
                     f"{p}_padded_tokens": "counter", f"{p}_texts": "counter",
                     f"{p}_scored_pairs": "counter", f"{p}_refused_requests": "counter",
                     f"{p}_queue_depth": "gauge"}
    assert "_created" not in text
    lines = text.splitlines()
    assert f"{p}_tokens_total 20.0" in lines and f"{p}_padded_tokens_total 30.0" in lines
    assert f"{p}_texts_total 2.0" in lines and f"{p}_queue_depth 5.0" in lines
    assert f"{p}_ready 1.0" in lines
    assert f'{p}_info{{blas="openblas",device="cpu",dimensions="384",model="m"}} 1.0' in lines


def test_bucket_bounds_are_written_as_before():
    m = Metrics()
    m.observe_batch(rows=3, padded_tokens=30, tokens=20, seconds=0.2)
    text = m.render(0, True, INFO)
    assert 'mlx_embed_batch_size_rows_bucket{le="4"} 1.0' in text.splitlines()
    assert 'le="2.5"' in text and 'le="0.005"' in text and 'le="+Inf"' in text
    assert 'le="1.0"' not in text and 'le="4.0"' not in text


def test_requests_by_endpoint_outcome_and_code():
    m = Metrics()
    for status in (200, 200, 422, 429, 503):
        m.observe_request("/embed", status, 0.01)
    samples = {frozenset(s.labels.items()): s.value
               for s in families(m.render(0, True, INFO))["mlx_embed_requests"].samples}
    expect = {("ok", "200"): 2, ("client_error", "422"): 1, ("rejected", "429"): 1,
              ("server_error", "503"): 1}
    assert samples == {frozenset({"endpoint": "/embed", "outcome": o, "code": c}.items()): n
                       for (o, c), n in expect.items()}
    assert [RequestOutcome.of(s) for s in (204, 404, 429, 500)] == [
        "ok", "client_error", "rejected", "server_error"]
    assert RequestOutcome.of(503, not_ready=True) == "not_ready"


def test_refusals_are_counted_by_reason():
    m = Metrics()
    m.observe_request("/embed", 429, 0.01, refusal="queue_full")
    m.observe_request("/rerank", 429, 0.01, refusal="too_many_requests")
    m.observe_request("/embed", 413, 0.01, refusal="too_many_items")
    m.observe_request("/embed", 400, 0.01, refusal="empty_input")  # not a refusal: a mistake
    samples = {s.labels["reason"]: s.value for s in
               families(m.render(0, True, INFO))["mlx_embed_refused_requests"].samples}
    assert samples == {"queue_full": 1, "too_many_requests": 1, "too_many_items": 1}
    assert m.refusals() == samples


def test_the_device_label_follows_the_loaded_model_and_registries_are_separate():
    m, other = Metrics(), Metrics()
    m.render(0, False, dict(INFO, device=""))
    text = m.render(0, True, INFO)
    info = [line for line in text.splitlines() if line.startswith("mlx_embed_info")]
    assert len(info) == 1 and 'device="cpu"' in info[0]
    m.observe_request("/embed", 200, 0.01)
    assert "mlx_embed_requests_total{" not in other.render(0, True, INFO)
