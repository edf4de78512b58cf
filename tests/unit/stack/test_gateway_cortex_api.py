"""The model gateway's translation between Cortex-OS's shapes and the host service's
(compose/model-gateway/cortex_api.py): plain functions, no server. The routes themselves run
in tests/e2e/stack/test_gateway_cortex_e2e.py, in the gateway container before the real host."""
from __future__ import annotations

import importlib.util

import pytest

from tests.support import REPO_ROOT

_spec = importlib.util.spec_from_file_location(
    "cortex_api", REPO_ROOT / "compose" / "model-gateway" / "cortex_api.py")
cortex_api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cortex_api)
BadRequest = cortex_api.BadRequest

DOCS = ["A man is eating food.", "The girl is carrying a baby.", "Tax filings are due."]


def test_embeddings_request_and_answer():
    assert cortex_api.embeddings_request({"texts": ["a", ""], "model": "m"}) == {
        "texts": ["a", ""], "model": "m"}
    assert cortex_api.embeddings_request({"texts": ["a"]}) == {"texts": ["a"]}
    host = {"embeddings": [[0.6, 0.8]], "model": "all-MiniLM-L6-v2", "dimensions": 2}
    assert cortex_api.embeddings_answer(host) == {
        "vectors": [[0.6, 0.8]], "dimensions": 2, "modelUsed": "all-MiniLM-L6-v2"}
    with pytest.raises(cortex_api.UpstreamShapeError):
        cortex_api.embeddings_answer({"data": []})


@pytest.mark.parametrize("body, param, code", [
    ({}, "texts", "missing_field"),
    ({"texts": None}, "texts", "missing_field"),
    ({"texts": "one text"}, "texts", "invalid_type"),
    ({"texts": []}, "texts", "empty_input"),
    ({"texts": ["a", 3]}, "texts", "invalid_type"),
    ({"texts": ["a"], "model": 7}, "model", "invalid_type"),
])
def test_embeddings_bad_input_names_the_field(body, param, code):
    with pytest.raises(BadRequest) as caught:
        cortex_api.embeddings_request(body)
    assert (caught.value.param, caught.value.code) == (param, code)
    assert f"'{param}" in caught.value.message


def test_rerank_body_shapes_are_told_apart():
    assert cortex_api.is_tei_rerank({"query": "q", "texts": ["a"], "raw_scores": True})
    assert not cortex_api.is_tei_rerank({"query": "q", "docs": ["a"]})
    assert not cortex_api.is_tei_rerank({"query": "q", "docs": ["a"], "texts": ["b"]})
    assert not cortex_api.is_tei_rerank({"query": "q"})  # checked as Cortex-OS's: docs missing


def test_rerank_request_goes_to_tei_shape():
    payload, docs, top_k = cortex_api.rerank_request(
        {"query": "q", "docs": DOCS, "topK": 2, "model": "r"})
    # TEI's shape has no `model` (the host refuses unknown fields): the served model ranks
    assert payload == {"query": "q", "texts": DOCS, "return_text": False}
    assert (docs, top_k) == (DOCS, 2)
    assert cortex_api.rerank_request({"query": "", "docs": [""]})[2] is None


@pytest.mark.parametrize("body, param, code", [
    ({"docs": DOCS}, "query", "missing_field"),
    ({"query": ["q"], "docs": DOCS}, "query", "invalid_type"),
    ({"query": "q"}, "docs", "missing_field"),
    ({"query": "q", "docs": "a doc"}, "docs", "invalid_type"),
    ({"query": "q", "docs": []}, "docs", "empty_input"),
    ({"query": "q", "docs": ["a", {"text": "b"}]}, "docs", "invalid_type"),
    ({"query": "q", "docs": DOCS, "topK": 0}, "topK", "invalid_value"),
    ({"query": "q", "docs": DOCS, "topK": -3}, "topK", "invalid_value"),
    ({"query": "q", "docs": DOCS, "topK": 1.5}, "topK", "invalid_type"),
    ({"query": "q", "docs": DOCS, "topK": "2"}, "topK", "invalid_type"),
    ({"query": "q", "docs": DOCS, "topK": True}, "topK", "invalid_type"),
])
def test_rerank_bad_input_names_the_field(body, param, code):
    with pytest.raises(BadRequest) as caught:
        cortex_api.rerank_request(body)
    assert (caught.value.param, caught.value.code) == (param, code)


def test_rerank_answer_best_first_cut_to_top_k_with_content():
    host = [{"index": 2, "score": 0.1}, {"index": 0, "score": 0.9}, {"index": 1, "score": 0.5}]
    answer = cortex_api.rerank_answer(host, DOCS, 2, "ms-marco")
    assert answer == {"rankedItems": [{"index": 0, "score": 0.9, "content": DOCS[0]},
                                      {"index": 1, "score": 0.5, "content": DOCS[1]}],
                      "modelUsed": "ms-marco"}
    assert len(cortex_api.rerank_answer(host, DOCS, 10, None)["rankedItems"]) == 3


@pytest.mark.parametrize("host", [
    {"results": []},
    [{"index": 3, "score": 0.2}],  # an index beyond the documents sent
    [{"index": 0}],
    [{"index": "0", "score": 0.2}],
])
def test_rerank_answer_of_another_shape_is_refused(host):
    with pytest.raises(cortex_api.UpstreamShapeError):
        cortex_api.rerank_answer(host, DOCS, None, None)


@pytest.mark.parametrize("health, ranked_by, name", [
    ({"model": "all-MiniLM-L6-v2", "rerank_model": "xlmr-rerank"}, "reranker", "xlmr-rerank"),
    ({"model": "all-MiniLM-L6-v2", "rerank_model": None}, "embedding-cosine",
     "all-MiniLM-L6-v2"),
    # a classifier as RERANK_MODEL serves /predict only: the embedding model ranked
    ({"model": "all-MiniLM-L6-v2", "rerank_model": "bert-nli"}, "embedding-cosine",
     "all-MiniLM-L6-v2"),
    ({"model": "all-MiniLM-L6-v2", "rerank_model": "xlmr-rerank"}, None, "xlmr-rerank"),
    ({"model": "all-MiniLM-L6-v2"}, None, "all-MiniLM-L6-v2"),
    ([], "reranker", None),
    ({"model": 3}, None, None),
])
def test_ranking_model_from_health_and_how_the_host_ranked(health, ranked_by, name):
    assert cortex_api.ranking_model(health, ranked_by) == name


@pytest.mark.parametrize("body, param", [
    ({}, "msgs"),
    ({"msgs": "hi"}, "msgs"),
    ({"msgs": []}, "msgs"),
    ({"msgs": ["hi"]}, "msgs"),
    ({"msgs": [{"role": "user"}]}, "msgs"),
    ({"msgs": [{"role": "user", "content": "hi"}], "tools": {}}, "tools"),
    ({"msgs": [{"role": "user", "content": "hi"}], "model": 1}, "model"),
])
def test_chat_bad_input_names_the_field(body, param):
    with pytest.raises(BadRequest) as caught:
        cortex_api.check_chat_request(body)
    assert caught.value.param == param


def test_chat_good_request_passes_the_check():
    cortex_api.check_chat_request({"msgs": [{"role": "user", "content": "hi"}], "tools": []})


@pytest.mark.parametrize("raw", [b"", b"  ", b"not json", b"[1]", b"\xff\xfe"])
def test_body_must_be_a_json_object(raw):
    with pytest.raises(BadRequest):
        cortex_api.parse_body(raw)
