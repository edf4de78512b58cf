"""The rerank routes with no reranker configured (issue 24, items 3, 4 and 6), through the real
service over HTTP: every shape, the embedding model's cosine order, bad input, metrics per
route, /v1/models and /info saying how documents are ranked."""
from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tasks.checks.roundtrip import cosine
from tests.service_support import http

JSON = {"Content-Type": "application/json"}
QUERY = "what does a man eat?"
DOCUMENTS = ["A man is eating food.", "The girl is carrying a baby.",
             "A man is eating a piece of bread.", "東京は日本の首都です。",
             "Emoji: 🚀🔥🎉 mixed with text 👍🏽", ""]


def embedding_cosines(service, query: str, documents: list[str]) -> list[float]:
    """The cosine of each document to the query, from the service's own /v1/embeddings
    (MiniLM has no prompts: query and documents are embedded alike)."""
    texts = [query] + [d for d in documents if d]
    status, body = service.post("/v1/embeddings", {"input": texts})
    assert status == 200, body
    vectors = [d["embedding"] for d in body["data"]]
    by_text = dict(zip(texts[1:], vectors[1:]))
    return [cosine(vectors[0], by_text[d]) if d else None for d in documents]


def post(service, path: str, payload) -> tuple[int, dict, object]:
    status, headers, raw = http("POST", service.url + path, json.dumps(payload).encode(), JSON)
    return status, headers, json.loads(raw)


def test_tei_rerank_ranks_by_the_embedding_models_cosine(service):
    texts = DOCUMENTS[:-1]  # the empty document is checked on its own below
    want = embedding_cosines(service, QUERY, texts)
    status, headers, body = post(service, "/rerank", {"query": QUERY, "texts": texts,
                                                      "return_text": True})
    assert status == 200, body
    assert headers["X-Ranked-By"] == "embedding-cosine"
    assert [r["index"] for r in body] == sorted(range(len(texts)), key=lambda i: -want[i])
    for result in body:
        assert set(result) == {"index", "score", "text"}
        assert result["text"] == texts[result["index"]]
        assert abs(result["score"] - want[result["index"]]) < 1e-4, result


def test_cohere_v1_and_jina_shape(service):
    texts = DOCUMENTS[:-1]
    want = embedding_cosines(service, QUERY, texts)
    order = sorted(range(len(texts)), key=lambda i: -want[i])
    documents = [texts[0], {"text": texts[1]}, *texts[2:]]  # strings or {"text": ...}
    status, headers, body = post(service, "/v1/rerank", {
        "model": "rerank-english-v3.0", "query": QUERY, "documents": documents, "top_n": 2,
        "return_documents": True})
    assert status == 200, body
    assert body["ranked_by"] == "embedding-cosine" and headers["X-Ranked-By"] == body["ranked_by"]
    assert body["id"] and "MiniLM" in body["model"] and body["usage"]["total_tokens"] > 0
    assert [r["index"] for r in body["results"]] == order[:2]
    for result in body["results"]:
        assert result["document"] == {"text": texts[result["index"]]}
        assert abs(result["relevance_score"] - want[result["index"]]) < 1e-4
    status, _, body = post(service, "/v1/rerank", {"query": QUERY, "documents": texts})
    assert status == 200 and [r["index"] for r in body["results"]] == order
    assert all(set(r) == {"index", "relevance_score"} for r in body["results"])  # Cohere's default


def test_cohere_v2_shape(service):
    texts = DOCUMENTS[:3]
    want = embedding_cosines(service, QUERY, texts)
    status, _, body = post(service, "/v2/rerank", {"model": "rerank-v3.5", "query": QUERY,
                                                   "documents": texts, "top_n": 3})
    assert status == 200, body
    assert [r["index"] for r in body["results"]] == sorted(range(3), key=lambda i: -want[i])
    assert all(set(r) == {"index", "relevance_score"} for r in body["results"])
    assert body["meta"]["api_version"]["version"] == "2"
    assert body["meta"]["tokens"]["input_tokens"] > 0 and body["id"]


def test_an_empty_document_is_scored_not_refused(service):
    status, _, body = post(service, "/rerank", {"query": QUERY, "texts": DOCUMENTS})
    assert status == 200, body
    assert sorted(r["index"] for r in body) == list(range(len(DOCUMENTS)))


def test_predict_without_a_classifier_says_none_is_served(service):
    status, headers, body = post(service, "/predict", {"inputs": "a text"})
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    assert body["error"]["code"] == "no_classifier" and "RERANK_MODEL" in body["error"]["message"]


# (id, path, body, status, param, words the message must contain)
BAD = [
    ("empty texts", "/rerank", {"query": "q", "texts": []}, 400, "texts", ["empty"]),
    ("empty documents", "/v1/rerank", {"query": "q", "documents": []}, 400, "documents",
     ["empty"]),
    ("missing query", "/v2/rerank", {"documents": ["a"]}, 400, "query", ["'query'", "required"]),
    ("query not a string", "/rerank", {"query": 3, "texts": ["a"]}, 400, "query", ["string"]),
    ("missing texts", "/rerank", {"query": "q"}, 400, "texts", ["'texts'", "required"]),
    ("non-string document", "/v1/rerank", {"query": "q", "documents": ["a", 5]}, 400,
     "documents", ["documents[1]", "string", "integer"]),
    ("null document", "/rerank", {"query": "q", "texts": [None]}, 400, "texts",
     ["texts[0]", "null"]),
    ("object without text", "/v1/rerank", {"query": "q", "documents": [{"body": "a"}]}, 400,
     "documents", ["documents[0]", "text"]),
    ("top_n zero", "/v1/rerank", {"query": "q", "documents": ["a"], "top_n": 0}, 400, "top_n",
     ["top_n", "at least 1"]),
    ("top_n a string", "/v2/rerank", {"query": "q", "documents": ["a"], "top_n": "2"}, 400,
     "top_n", ["integer"]),
    ("unknown field", "/v1/rerank", {"query": "q", "document": ["a"]}, 400, "document",
     ["did you mean 'documents'"]),
    ("unknown field tei", "/rerank", {"query": "q", "texts": ["a"], "return_texts": True}, 400,
     "return_texts", ["did you mean 'return_text'"]),
    ("flag not a boolean", "/rerank", {"query": "q", "texts": ["a"], "raw_scores": "yes"}, 400,
     "raw_scores", ["true or false"]),
    ("too many documents", "/v1/rerank", {"query": "q", "documents": ["a"] * 65}, 413,
     "documents", ["65 documents", "64", "MLX_MAX_BATCH_ITEMS"]),
    ("lone surrogate", "/rerank", {"query": "q", "texts": ["a\ud800"]}, 400, "texts",
     ["lone surrogate"]),
    ("predict empty inputs", "/predict", {"inputs": []}, 400, "inputs", ["empty"]),
    ("predict unknown field", "/predict", {"input": "a"}, 400, "input",
     ["did you mean 'inputs'"]),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_rerank_input_is_a_4xx_naming_the_field(service, case):
    _, path, payload, want, param, words = case
    raw = json.dumps(payload).encode()  # a lone surrogate goes out as its \ud800 escape
    status, headers, body = http("POST", service.url + path, raw, JSON)
    assert status == want, body
    assert headers["Content-Type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert error["param"] == param, error
    for word in words:
        assert word in error["message"], error
    assert post(service, "/rerank", {"query": "q", "texts": ["still here"]})[0] == 200


def test_models_list_and_info_say_how_documents_are_ranked(service):
    status, body = service.get("/v1/models")
    assert status == 200 and body["object"] == "list"
    assert [m["object"] for m in body["data"]] == ["model"]
    model = body["data"][0]
    assert "MiniLM" in model["id"] and model["owned_by"] and model["kind"] == "embedding"
    assert "/rerank" in model["routes"]
    assert service.get("/v1/models/" + model["id"])[1]["id"] == model["id"]
    status, missing = service.get("/v1/models/nope")
    assert status == 404 and missing["error"]["code"] == "model_not_found"
    info = service.get("/info")[1]
    assert info["reranker"]["configured"] is False
    assert info["reranker"]["ranked_by"] == "embedding-cosine"


def test_metrics_count_each_rerank_route(service):
    for path, payload in (("/rerank", {"query": "q", "texts": ["a", "b"]}),
                          ("/v1/rerank", {"query": "q", "documents": ["a"]}),
                          ("/v2/rerank", {"query": "q", "documents": ["a"]}),
                          ("/v2/rerank", {"query": "q", "documents": []})):
        post(service, path, payload)
    text = http("GET", service.url + "/metrics")[2].decode()
    counts = {(s.labels["endpoint"], s.labels["code"]): s.value
              for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == "mlx_embed_requests_total"}
    for route in ("/rerank", "/v1/rerank", "/v2/rerank"):
        assert counts.get((route, "200"), 0) >= 1, counts
    assert counts.get(("/v2/rerank", "400"), 0) >= 1, counts


def test_the_api_key_applies_to_the_rerank_routes(service_factory):
    svc = service_factory(env={"MLX_API_KEY": "sekret"})
    raw = json.dumps({"query": "q", "texts": ["a"]}).encode()
    for path in ("/rerank", "/v1/rerank", "/v2/rerank", "/predict"):
        status, _, body = http("POST", svc.url + path, raw, JSON)
        assert status == 401, (path, body)
    status, _, body = http("POST", svc.url + "/rerank", raw,
                           {**JSON, "Authorization": "Bearer sekret"})
    assert status == 200, body
