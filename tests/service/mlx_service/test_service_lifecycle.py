"""Starting with other settings, refusing bad ones, 429 on a full queue, SIGTERM."""
from __future__ import annotations

import math
import threading
import time

import pytest

from tasks.checks.roundtrip import cosine
from tasks.core.ports import free_port
from tests.service_support import http, spawn_service

LONG = "the quick brown fox jumps over the lazy dog " * 40  # > 256 tokens: a full row


def test_larger_dimension_refuses_to_start(service_factory):
    svc = service_factory(env={"EMBEDDINGS_DIM": "385"}, wait=False)
    code = svc.proc.wait(60)
    assert code != 0
    log = svc.log()
    assert "EMBEDDINGS_DIM=385" in log and "384" in log and "larger" in log
    assert "Traceback" not in log


def test_sigterm_while_loading_exits_0(service_factory):
    svc = service_factory(wait=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            status, _, raw = http("GET", svc.url + "/health", timeout=2)
        except OSError:
            time.sleep(0.01)
            continue
        assert status == 503 and b"loading" in raw
        break
    svc.proc.terminate()
    assert svc.proc.wait(30) == 0, svc.log()
    assert "received SIGTERM" in svc.log()


@pytest.mark.parametrize("env,words", [
    ({"MLX_PORT": "http"}, ["MLX_PORT", "not an integer"]),
    ({"EMBEDDINGS_DIM": "0"}, ["EMBEDDINGS_DIM", "out of range"]),
    ({"MLX_BLAS": "fast"}, ["MLX_BLAS", "auto"]),
    ({"EMBEDDINGS_MODEL": "/nonexistent/model"}, ["no such model folder"]),
    ({"MLX_QUEUE_SIZE": "-1"}, ["MLX_QUEUE_SIZE"]),
])
def test_bad_settings_refuse_to_start(service_factory, env, words):
    svc = service_factory(env=env, wait=False)
    assert svc.proc.wait(60) == 2
    log = svc.log()
    assert all(w in log for w in words), log
    assert "Traceback" not in log


def test_flags_override_env_reference_blas_and_several_hosts(service_factory, reference):
    env_port, flag_port = free_port(), free_port()
    svc = service_factory("--host", "127.0.0.1,127.0.0.2", "--port", str(flag_port),
                          "--dim", "64", "--blas", "reference",
                          env={"MLX_PORT": str(env_port), "EMBEDDINGS_DIM": "100",
                               "MLX_BLAS": "openblas"},
                          port=flag_port)
    status, info = svc.get("/info")
    assert status == 200
    assert info["blas"] == "reference" and info["dimensions"] == 64
    assert info["listen"] == [f"127.0.0.1:{flag_port}", f"127.0.0.2:{flag_port}"]
    for host in ("127.0.0.1", "127.0.0.2"):
        status, _, _ = http("GET", f"http://{host}:{flag_port}/ping")
        assert status == 200
    with pytest.raises(OSError):
        http("GET", f"http://127.0.0.1:{env_port}/ping", timeout=2)
    # Reference BLAS computes the same vectors (slowly): one short item is enough here.
    item = reference["items"][0]
    status, body = svc.post("/embed", {"input": item["text"]})
    assert status == 200 and body["dimensions"] == 64
    ref = item["embedding"][:64]
    assert cosine(body["embeddings"][0], ref) >= 0.9999


@pytest.fixture(scope="module")
def small_service(tmp_path_factory, service_py):
    """EMBEDDINGS_DIM=128 and a queue of one request: for the tests below."""
    svc = spawn_service(tmp_path_factory.mktemp("small"), python=service_py,
                        env={"EMBEDDINGS_DIM": "128", "MLX_QUEUE_SIZE": "1"})
    yield svc
    svc.stop()


def test_smaller_dimension_truncates_and_renormalizes(small_service, reference):
    items = reference["items"]
    status, body = small_service.post("/embed", {"input": [i["text"] for i in items]})
    assert status == 200 and body["dimensions"] == 128
    for item, vec in zip(items, body["embeddings"]):
        assert len(vec) == 128
        assert abs(math.sqrt(sum(x * x for x in vec)) - 1) < 1e-4
        ref = item["embedding"][:128]
        assert cosine(vec, ref) >= 0.9999
    assert small_service.get("/health")[1]["dimensions"] == 128
    status, body = small_service.post("/v1/embeddings", {"input": "a", "dimensions": 129})
    assert status == 400 and "128" in body["error"]["message"]


def test_full_queue_answers_429(small_service):
    # One request runs, one waits in the queue (size 1): the rest are turned away.
    results = []
    barrier = threading.Barrier(6)

    def client():
        barrier.wait()
        results.append(small_service.post("/embed", {"input": [LONG] * 4}))

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    codes = sorted(code for code, _ in results)
    assert len(codes) == 6 and codes.count(200) >= 1 and codes.count(429) >= 1, codes
    assert set(codes) <= {200, 429}
    for code, body in results:
        if code == 429:
            assert body["error"]["code"] == "queue_full" and "MLX_QUEUE_SIZE" in body["error"]["message"]
    assert small_service.post("/embed", {"input": "after"})[0] == 200


def test_sigterm_lets_in_flight_requests_finish_and_exits_0(small_service):
    result = {}

    def client():
        # 32 full rows: about a second on 2 CPU cores with the fast path, so still running below
        result["answer"] = small_service.post("/embed", {"input": [LONG] * 32})

    t = threading.Thread(target=client)
    t.start()
    time.sleep(0.4)  # the request is in the worker's hands now
    started = time.monotonic()
    small_service.proc.terminate()
    code = small_service.proc.wait(60)
    t.join(60)
    assert code == 0, small_service.log()[-2000:]
    status, body = result["answer"]
    assert status == 200 and len(body["embeddings"]) == 32
    log = small_service.log()
    assert "received SIGTERM" in log and log.rstrip().endswith("stopped")
    # It really was in flight: answered after the signal arrived.
    lines = log.splitlines()
    signalled = next(i for i, line in enumerate(lines) if "received SIGTERM" in line)
    answered = max(i for i, line in enumerate(lines) if "POST /embed 200" in line and "items=32 tokens=8192" in line)
    assert signalled < answered
    assert time.monotonic() - started < 60
