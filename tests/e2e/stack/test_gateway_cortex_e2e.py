"""Cortex-OS's routes on the model gateway container, before the real host service (issue 25):
/embeddings, /rerank and /chat in Cortex-OS's shapes, the host's rerank routes passed on as
they are, bad input refused at the gateway, and `inv roundtrip`'s rerank steps; first with no
RERANK_MODEL (the host ranks by the embedding model's cosine), then with a fixture reranker.

The fixture reranker is xlmr-rerank (tests/fixtures/tiny-rerankers/): random weights, but for
the roundtrip's query its reference scores put the relevant document first (reference.json's
rank), so the roundtrip can pass with it as with a real reranker.
"""
from __future__ import annotations

import json
import math

import pytest
import requests

from tasks.checks.rerank_check import DOCS, QUERY, RELEVANT
from tests.support import FIXTURES, inv

RERANKER = FIXTURES / "tiny-rerankers" / "xlmr-rerank"
TEXTS = ["The quick brown fox jumps over the lazy dog.", "Containers reach the host."]
CHAT = {"msgs": [{"role": "user", "content": "hello"}]}
# A loaded machine (2 cores shared) can take minutes to load a model: wait up to 10.
RESTART = ("mlx", "restart", "--no-install", "--timeout=600")


def _ok(result, what: str) -> None:
    assert result.returncode == 0, (f"{what} exited {result.returncode}\n--- stdout\n"
                                    f"{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}")


@pytest.fixture(scope="module")
def stack(stack_env):
    """The gateway before a host service without RERANK_MODEL."""
    env = {k: v for k, v in stack_env.items() if k != "RERANK_MODEL"}
    _ok(inv("start", "--services=model-gateway", env=env, timeout=900),
        "inv start --services=model-gateway")
    return {"env": env, "gateway": f"http://127.0.0.1:{env['CORTEX_MODEL_GATEWAY_PORT']}",
            "host": f"http://127.0.0.1:{env['MLX_PORT']}"}


@pytest.fixture(scope="module")
def with_reranker(stack):
    """The same stack, the host service restarted with the fixture reranker."""
    assert RERANKER.is_dir(), f"the fixture reranker {RERANKER} is missing"
    env = dict(stack["env"], RERANK_MODEL=str(RERANKER))
    _ok(inv(*RESTART, env=env, timeout=900),
        "inv mlx restart with RERANK_MODEL")
    yield dict(stack, env=env)
    # Later modules expect the default service again.
    _ok(inv(*RESTART, env=stack["env"], timeout=900),
        "inv mlx restart without RERANK_MODEL")


def _post(url: str, body, **kwargs) -> requests.Response:
    return requests.post(url, json=body, timeout=120, **kwargs)


def _error(response: requests.Response, status: int, param: str | None) -> dict:
    """OpenAI's error shape, as the host writes it, naming `param`."""
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["code"], str) and error["message"], error
    assert error["type"] == ("invalid_request_error" if status < 500 else "server_error"), error
    assert error["param"] == param, error
    return error


def _host_requests(stack, endpoint: str) -> float:
    """How many requests the host service has counted on `endpoint` (its /metrics)."""
    text = requests.get(stack["host"] + "/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("mlx_embed_requests_total{") and f'endpoint="{endpoint}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _assert_rerank_equals_host(stack, expect_model: str) -> None:
    host = _post(stack["host"] + "/rerank", {"query": QUERY, "texts": list(DOCS)})
    assert host.status_code == 200, host.text
    via = _post(stack["gateway"] + "/rerank", {"query": QUERY, "docs": list(DOCS), "topK": 2})
    assert via.status_code == 200, via.text
    answer = via.json()
    assert set(answer) == {"rankedItems", "modelUsed"}
    assert answer["modelUsed"] == expect_model
    items = answer["rankedItems"]
    assert len(items) == 2  # cut to topK
    assert [i["index"] for i in items] == [i["index"] for i in host.json()[:2]]
    assert all(math.isclose(i["score"], h["score"], abs_tol=1e-5)
               for i, h in zip(items, host.json()))
    assert [i["content"] for i in items] == [DOCS[i["index"]] for i in items]
    assert items[0]["index"] == RELEVANT and items[0]["score"] >= items[1]["score"]


# --- the three routes, no reranker: the host ranks by cosine ------------------------------------

def test_embeddings_vectors_equal_the_hosts(stack):
    host = _post(stack["host"] + "/embed", {"texts": TEXTS}).json()
    via = _post(stack["gateway"] + "/embeddings", {"texts": TEXTS, "model": "qwen3-embed"})
    assert via.status_code == 200, via.text
    answer = via.json()
    assert set(answer) == {"vectors", "dimensions", "modelUsed"}
    assert answer["modelUsed"] == host["model"] and answer["dimensions"] == host["dimensions"]
    assert len(answer["vectors"]) == 2 and all(
        max(abs(a - b) for a, b in zip(x, y)) < 1e-6
        for x, y in zip(answer["vectors"], host["embeddings"]))


def test_rerank_without_a_reranker_is_the_hosts_cosine_ranking(stack):
    model = requests.get(stack["host"] + "/health", timeout=10).json()["model"]
    _assert_rerank_equals_host(stack, model)


def test_tei_rerank_passes_through_unchanged(stack):
    body = {"query": QUERY, "texts": list(DOCS), "return_text": True, "raw_scores": True}
    host = _post(stack["host"] + "/rerank", body)
    via = _post(stack["gateway"] + "/rerank", body)
    assert via.status_code == host.status_code == 200
    assert [(i["index"], i["text"]) for i in via.json()] == \
        [(i["index"], i["text"]) for i in host.json()]


@pytest.mark.parametrize("path, body", [
    ("/v1/rerank", {"query": QUERY, "documents": list(DOCS), "top_n": 2}),
    ("/v2/rerank", {"model": "any", "query": QUERY, "documents": list(DOCS), "top_n": 2}),
])
def test_cohere_routes_pass_through(stack, path, body):
    host = _post(stack["host"] + path, body)
    via = _post(stack["gateway"] + path, body)
    assert via.status_code == host.status_code == 200, via.text
    strip = lambda doc: {k: v for k, v in doc.items() if k != "id"}  # noqa: E731 (id per call)
    assert strip(via.json()) == strip(host.json())


def test_models_list_passes_through(stack):
    host = requests.get(stack["host"] + "/v1/models", timeout=10)
    via = requests.get(stack["gateway"] + "/v1/models", timeout=10)
    assert via.status_code == host.status_code == 200
    assert via.json() == host.json() and via.json()["object"] == "list"


@pytest.mark.parametrize("path, body, param", [
    ("/rerank", {"query": QUERY, "texts": []}, "texts"),
    ("/v1/rerank", {"query": QUERY, "documents": list(DOCS), "top_n": 0}, "top_n"),
    ("/v2/rerank", {"model": "m", "documents": list(DOCS)}, "query"),
    ("/predict", {"inputs": 5}, "inputs"),
])
def test_a_host_error_is_passed_on_as_it_was(stack, path, body, param):
    host = _post(stack["host"] + path, body)
    via = _post(stack["gateway"] + path, body)
    assert 400 <= host.status_code < 500, host.text
    assert via.status_code == host.status_code and via.json() == host.json()


def test_a_host_error_of_a_translated_route_is_passed_on(stack):
    # An empty string is a valid array item for the gateway; the host refuses it (its rules).
    host = _post(stack["host"] + "/embed", {"texts": [""]})
    via = _post(stack["gateway"] + "/embeddings", {"texts": [""]})
    assert 400 <= host.status_code < 500
    assert via.status_code == host.status_code and via.json() == host.json()


def test_chat_is_checked_then_answers_that_no_chat_model_is_served(stack):
    answer = _post(stack["gateway"] + "/chat", dict(CHAT, model="llama", tools=[]))
    error = _error(answer, 503, None)
    assert "No chat models available" in error["message"]


# --- bad input: a 400 naming the field, nothing reaches the host --------------------------------

@pytest.mark.parametrize("path, body, param", [
    ("/embeddings", {}, "texts"),
    ("/embeddings", {"texts": "one"}, "texts"),
    ("/embeddings", {"texts": ["a", 1]}, "texts"),
    ("/embeddings", {"texts": []}, "texts"),
    ("/rerank", {"docs": ["a"]}, "query"),
    ("/rerank", {"query": 3, "docs": ["a"]}, "query"),
    ("/rerank", {"query": "q"}, "docs"),
    ("/rerank", {"query": "q", "docs": "a"}, "docs"),
    ("/rerank", {"query": "q", "docs": [{"text": "a"}]}, "docs"),
    ("/rerank", {"query": "q", "docs": ["a"], "topK": 0}, "topK"),
    ("/rerank", {"query": "q", "docs": ["a"], "topK": "2"}, "topK"),
    ("/chat", {}, "msgs"),
    ("/chat", {"msgs": "hi"}, "msgs"),
    ("/chat", {"msgs": [{"role": "user"}]}, "msgs"),
    ("/chat", {"msgs": [{"role": "user", "content": "x"}], "tools": "all"}, "tools"),
])
def test_bad_input_is_a_400_naming_the_field_and_never_reaches_the_host(stack, path, body, param):
    host_path = {"/embeddings": "/embed"}.get(path, path)
    before = _host_requests(stack, host_path)
    error = _error(_post(stack["gateway"] + path, body), 400, param)
    assert param in error["message"]
    assert _host_requests(stack, host_path) == before, "the bad request reached the host"


@pytest.mark.parametrize("path", ["/embeddings", "/rerank", "/chat"])
def test_a_body_that_is_not_a_json_object_is_a_400(stack, path):
    answer = requests.post(stack["gateway"] + path, data=b"[1, 2]",
                           headers={"Content-Type": "application/json"}, timeout=30)
    _error(answer, 400, None)


# --- issue 28 row 13: the gateway's own errors in the host's shape -----------------------------

def test_gateway_and_host_errors_have_one_shape(stack):
    for base in (stack["gateway"], stack["host"]):
        missing = requests.get(base + "/nothing", timeout=10)
        assert _error(missing, 404, None)["code"] == "not_found"
    wrong = requests.get(stack["gateway"] + "/embeddings", timeout=10)
    assert _error(wrong, 405, None)["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["Allow"]


# --- the stack's eyes: status, health, roundtrip -------------------------------------------------

def test_status_and_roundtrip_without_a_reranker(stack):
    status = inv("status", "--json", env=stack["env"], timeout=120)
    _ok(status, "inv status --json")
    reranker = json.loads(status.stdout)["mlx"]["reranker"]
    assert reranker is not None and reranker["ranks_by"] == "embedding-cosine", reranker
    done = inv("roundtrip", env=stack["env"], timeout=300)
    _ok(done, "inv roundtrip")
    assert "[ok  ] host /rerank: relevant document first" in done.stdout, done.stdout
    assert "cosine" in done.stdout and "[ok  ] gateway /rerank:" in done.stdout, done.stdout


def test_with_a_reranker_the_routes_status_health_and_roundtrip(with_reranker):
    stack = with_reranker
    _assert_rerank_equals_host(stack, "xlmr-rerank")
    status = inv("status", "--json", env=stack["env"], timeout=120)
    _ok(status, "inv status --json")
    reranker = json.loads(status.stdout)["mlx"]["reranker"]
    assert reranker["ranks_by"] == "reranker" and reranker["name"] == "xlmr-rerank", reranker
    assert reranker["max_length"] == 256 and reranker["role"] == "reranker", reranker
    assert (reranker["architecture"] or "").endswith("ForSequenceClassification"), reranker
    health = inv("health", env=stack["env"], timeout=120)
    _ok(health, "inv health")
    assert "xlmr-rerank" in health.stdout, health.stdout
    done = inv("roundtrip", env=stack["env"], timeout=300)
    _ok(done, "inv roundtrip with RERANK_MODEL")
    assert "ranked by the reranker xlmr-rerank" in done.stdout, done.stdout
    assert done.stdout.strip().splitlines()[-1] == "roundtrip PASSED: 7 passed, 0 failed, 0 skipped"


def test_roundtrip_fails_when_the_reranker_puts_the_relevant_document_elsewhere(stack):
    """bert-rerank's random weights score the service document above the relevant one for the
    roundtrip's query (reference.json): the rerank steps must say so and exit 1."""
    env = dict(stack["env"], RERANK_MODEL=str(FIXTURES / "tiny-rerankers" / "bert-rerank"))
    _ok(inv(*RESTART, env=env, timeout=900),
        "inv mlx restart with RERANK_MODEL=bert-rerank")
    try:
        done = inv("roundtrip", env=env, timeout=300)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "[FAIL] host /rerank: the relevant document" in done.stdout, done.stdout
        assert "came at place 2 of 3" in done.stdout, done.stdout
        assert "[FAIL] gateway /rerank:" in done.stdout, done.stdout
    finally:
        _ok(inv(*RESTART, env=stack["env"], timeout=900),
            "inv mlx restart without RERANK_MODEL")
