"""The inference façade's status and admission, over a real batching thread and a stand-in
model (the vectors themselves need numpy and MLX: the service tests check those)."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mlx_service.config import Config
from mlx_service.engine.inference import Inference, ServiceStatus
from mlx_service.engine.worker import Worker
from mlx_service.errors import RequestError
from mlx_service.models.folder import ModelSpec

SPEC = ModelSpec("m", Path("."), ("mean",), 4, 8, True)


class WordTokens:
    """One token per word; vectors are never asked for here."""

    def most_tokens(self, texts):
        return sum(len(t) for t in texts)

    def tokenize(self, texts):
        return [[1] * len(t.split()) for t in texts]


def facade(load, **config) -> Inference:
    worker = Worker(load, 4, 64)
    worker.start()
    return Inference(config=Config(**config), spec=SPEC, dim=4, worker=worker, blas="none")


def test_status_follows_the_worker_and_shutdown():
    gate = threading.Event()

    def load():
        gate.wait(5)
        return WordTokens()

    inference = facade(load)
    assert inference.status() == (ServiceStatus.LOADING, None)
    with pytest.raises(RequestError) as refused:
        inference.admit()
    assert (refused.value.status, refused.value.code) == (503, "model_loading")
    gate.set()
    assert inference.worker.ready.wait(5)
    assert inference.status() == (ServiceStatus.OK, None) and inference.status()[0] == "ok"
    inference.draining = True
    assert inference.status() == (ServiceStatus.STOPPING, "the service is shutting down")
    with pytest.raises(RequestError) as refused:
        inference.admit()
    assert (refused.value.status, refused.value.code) == (503, "service_unavailable")
    inference.worker.drain()  # nothing queued: the thread just ends
    inference.worker.join(5)


def test_a_failed_load_is_an_error_status_with_its_reason():
    def load():
        raise FileNotFoundError("model.safetensors")

    inference = facade(load)
    assert inference.worker.ready.wait(5)
    status, why = inference.status()
    assert status == ServiceStatus.ERROR and "model.safetensors" in why


def test_slots_and_tokens_are_admitted_counted_and_given_back():
    inference = facade(WordTokens, max_concurrent_requests=1, max_inflight_tokens=10)
    assert inference.worker.ready.wait(5)
    ticket = inference.admit()
    with pytest.raises(RequestError) as refused:
        inference.admit()
    assert (refused.value.status, refused.value.code) == (429, "too_many_requests")
    batch = inference.tokenize(ticket, ["one two three"])
    assert batch.rows == [[1, 1, 1]] and batch.tokens == 3
    inference.admit_tokens(ticket, batch.tokens)
    assert inference.in_flight()["tokens"] == 3
    with pytest.raises(RequestError) as refused:
        inference.admit_tokens(ticket, 11)
    assert (refused.value.status, refused.value.code) == (413, "too_many_tokens")
    inference.release(ticket)
    assert inference.in_flight()["requests"] == 0 and inference.in_flight()["tokens"] == 0
    inference.worker.drain()  # nothing queued: the thread just ends
    inference.worker.join(5)
