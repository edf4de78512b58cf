"""Every fixture architecture (BERT with CLS pooling, XLM-RoBERTa, ModernBERT, Qwen3 with
last-token pooling; `more-reference.json`: MPNet, DistilBERT, EmbeddingGemma-style Gemma 3
with two Dense modules, BERT with a tanh Dense, Qwen2 and Mistral with last-token pooling)
served as published, its vectors equal to sentence-transformers' (cos >= 0.9999,
`tests/fixtures/tiny-models/reference.json`), through both endpoints, batched with mixed
lengths and one text at a time, and its queries with `prompt_name`.

One service per model for the whole module (each test reads what it needs from it).
"""
from __future__ import annotations

import json

import pytest

from tasks.checks.roundtrip import cosine
from tests.support import FIXTURES

TINY = FIXTURES / "tiny-models"
REFERENCE = json.loads((TINY / "reference.json").read_text())
MORE = json.loads((TINY / "more-reference.json").read_text())
assert MORE["texts"] == REFERENCE["texts"] and MORE["queries"] == REFERENCE["queries"]
MODEL_REFERENCES = {**REFERENCE["models"], **MORE["models"]}
MODELS = ("bert-cls", "xlmr-mean", "modernbert-mean", "qwen3-last", "mpnet-mean",
          "distilbert-cls", "gemma3-dense", "bert-dense-tanh", "qwen2-last", "mistral-last")
# What each folder is, as /info must say it: architecture, pooling, forward pass, and the
# sentence-transformers modules after pooling.
EXPECTED = {"bert-cls": ("bert", ["cls"], "cpu-fast", ["Normalize"]),
            "xlmr-mean": ("xlm_roberta", ["mean"], "cpu-fast", ["Normalize"]),
            "modernbert-mean": ("modernbert", ["mean"], "cpu-fast", ["Normalize"]),
            "qwen3-last": ("qwen3", ["lasttoken"], "cpu-fast", ["Normalize"]),
            "mpnet-mean": ("mpnet", ["mean"], "cpu-fast", ["Normalize"]),
            "distilbert-cls": ("distilbert", ["cls"], "cpu-fast", ["Normalize"]),
            "gemma3-dense": ("gemma3_text", ["mean"], "cpu-fast",
                             ["Dense 64->256 identity, no bias", "Dense 256->64 identity, no bias",
                              "Normalize"]),
            "bert-dense-tanh": ("bert", ["cls"], "cpu-fast", ["Dense 64->48 tanh", "Normalize"]),
            "qwen2-last": ("qwen2", ["lasttoken"], "cpu-fast", ["Normalize"]),
            "mistral-last": ("mistral", ["lasttoken"], "cpu-fast", ["Normalize"])}


@pytest.fixture(scope="module", params=MODELS)
def served(request, tmp_path_factory, service_py):
    from tests.service_support import spawn_service
    name = request.param
    svc = spawn_service(tmp_path_factory.mktemp(name), "--model", str(TINY / name),
                        python=service_py)
    yield name, svc, MODEL_REFERENCES[name]
    assert svc.stop() == 0, svc.log()[-2000:]


def vectors(svc, path: str, payload: dict) -> list[list[float]]:
    status, body = svc.post(path, payload)
    assert status == 200, body
    if path == "/embed":
        return body["embeddings"]
    assert [d["index"] for d in body["data"]] == list(range(len(body["data"])))
    return [d["embedding"] for d in body["data"]]


def assert_close(got, want, what: str, minimum: float = 0.9999):
    assert len(got) == len(want)
    worst = min(cosine(g, w) for g, w in zip(got, want))
    assert worst >= minimum, f"{what}: worst cosine {worst:.6f}"


@pytest.mark.parametrize("path", ["/embed", "/v1/embeddings"])
def test_documents_batched_with_mixed_lengths(served, path):
    name, svc, ref = served
    texts = REFERENCE["texts"]
    assert len({len(t) for t in texts}) > 10  # short, long past max_seq_length, scripts
    assert_close(vectors(svc, path, {"input": texts}), ref["embeddings"], f"{name} {path}")


@pytest.mark.parametrize("path", ["/embed", "/v1/embeddings"])
def test_documents_one_by_one(served, path):
    name, svc, ref = served
    got = [vectors(svc, path, {"input": text})[0] for text in REFERENCE["texts"]]
    assert_close(got, ref["embeddings"], f"{name} {path} one by one")


@pytest.mark.parametrize("path", ["/embed", "/v1/embeddings"])
def test_queries_with_prompt_name(served, path):
    name, svc, ref = served
    if "query_embeddings" not in ref:
        status, body = svc.post(path, {"input": "x", "prompt_name": "query"})
        assert status == 400 and "none" in body["error"]["message"], body  # no prompts at all
        return
    queries = REFERENCE["queries"]
    assert_close(vectors(svc, path, {"input": queries, "prompt_name": "query"}),
                 ref["query_embeddings"], f"{name} {path} queries")
    # Without the prompt the same texts are other vectors: the prompt is really applied.
    plain = vectors(svc, path, {"input": queries})
    assert min(cosine(p, q) for p, q in zip(plain, ref["query_embeddings"])) < 0.999


def test_unknown_prompt_name_is_400_listing_the_models_names(served):
    name, svc, ref = served
    for path in ("/embed", "/v1/embeddings"):
        status, body = svc.post(path, {"input": "hello", "prompt_name": "querry"})
        assert status == 400, body
        error = body["error"]
        assert error["param"] == "prompt_name" and "querry" in error["message"]
        if "query_embeddings" in ref:
            assert "'query'" in error["message"] and "'document'" in error["message"]
        status, body = svc.post(path, {"input": "hello", "prompt_name": 3})
        assert status == 400 and body["error"]["param"] == "prompt_name", body


def test_usage_counts_the_tokens_as_embedded(served):
    name, svc, ref = served
    texts = REFERENCE["texts"]
    status, body = svc.post("/v1/embeddings", {"input": texts})
    assert status == 200
    assert body["usage"]["prompt_tokens"] == sum(ref["tokens"])  # truncation kept the specials
    if "query_embeddings" in ref:
        status, plain = svc.post("/v1/embeddings", {"input": "capital of Japan"})
        status, query = svc.post("/v1/embeddings", {"input": "capital of Japan",
                                                    "prompt_name": "query"})
        assert query["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]


def test_info_says_what_is_served(served):
    name, svc, ref = served
    status, info = svc.get("/info")
    assert status == 200
    arch, pooling, forward, modules = EXPECTED[name]
    model = info["model_info"]
    assert model["architecture"] == arch and model["pooling"] == pooling == info["pooling"]
    assert model["pooling_source"] == "1_Pooling/config.json"
    assert model["forward"] == forward == info["forward"]
    assert model["modules"] == modules
    # MLX_PRECISION=auto: fp32 on a CPU without bf16 units or without oneMKL, with the reason
    assert info["precision"] == model["precision"] in ("fp32", "bf16")
    assert info["precision_reason"].startswith("auto: ")
    if forward == "cpu-fast":
        assert "self-check min cos" in info["precision_reason"]
    assert model["weights"] == "float32 safetensors" and model["quantization"] is None
    names = model["prompts"]["names"]
    assert ("query" in names) == ("query_embeddings" in ref)
    assert info["dimensions"] == ref["dimensions"] and info["max_seq_length"] == ref["max_seq_length"]
