"""The service's vectors equal sentence-transformers' reference, through every route and format."""
from __future__ import annotations

import base64
import json
import math
import struct

import jsonschema
import pytest

from tasks.checks.roundtrip import cosine
from tests.service_support import assert_parity
from tests.support import REPO_ROOT


def test_embed_batch_matches_reference(service, reference):
    status, body = service.post("/embed", {"input": [i["text"] for i in reference["items"]]})
    assert status == 200, body
    assert body["dimensions"] == reference["dimensions"] == 384
    assert body["model"]
    assert_parity(reference["items"], body["embeddings"])


def test_embed_texts_key_and_single_string(service, reference):
    items = reference["items"]
    status, body = service.post("/embed", {"texts": [i["text"] for i in items[:3]]})
    assert status == 200, body
    assert_parity(items[:3], body["embeddings"])
    for item in items:  # one at a time: no padding at all, the long item alone
        status, body = service.post("/embed", {"input": item["text"]})
        assert status == 200, body
        assert_parity([item], body["embeddings"])


def test_openai_float_matches_reference(service, reference):
    texts = [i["text"] for i in reference["items"]]
    status, body = service.post("/v1/embeddings", {"input": texts, "encoding_format": "float",
                                                   "model": "qwen3-embed"})
    assert status == 200, body
    assert body["object"] == "list"
    assert [d["index"] for d in body["data"]] == list(range(len(texts)))
    assert all(d["object"] == "embedding" for d in body["data"])
    # Another model's name is answered by the served model, which the response names.
    assert body["model"] != "qwen3-embed" and "MiniLM" in body["model"]
    assert_parity(reference["items"], [d["embedding"] for d in body["data"]])
    # Real token counts: the long item alone is truncated at max_seq_length tokens.
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"]
    assert body["usage"]["prompt_tokens"] > reference["max_seq_length"]


def test_openai_base64_matches_reference(service, reference):
    texts = [i["text"] for i in reference["items"]]
    status, body = service.post("/v1/embeddings", {"input": texts, "encoding_format": "base64"})
    assert status == 200, body
    vectors = []
    for d in body["data"]:
        raw = base64.b64decode(d["embedding"])
        assert len(raw) == 4 * reference["dimensions"]  # little-endian float32, as OpenAI sends
        vectors.append(struct.unpack(f"<{len(raw) // 4}f", raw))
    assert_parity(reference["items"], vectors)


def test_long_text_is_truncated_not_refused(service, reference):
    long_item = reference["items"][-1]
    status, body = service.post("/v1/embeddings", {"input": long_item["text"] * 20})
    assert status == 200, body
    assert body["usage"]["prompt_tokens"] == reference["max_seq_length"]
    # The first 256 tokens of the repeated text are those of the original.
    assert cosine(body["data"][0]["embedding"], long_item["embedding"]) >= 0.9999


@pytest.mark.parametrize("dims", [1, 64, 383, 384])
def test_dimensions_truncate_and_renormalize(service, reference, dims):
    item = reference["items"][2]
    status, body = service.post("/v1/embeddings", {"input": item["text"], "dimensions": dims})
    assert status == 200, body
    vec = body["data"][0]["embedding"]
    assert len(vec) == dims
    assert abs(math.sqrt(sum(x * x for x in vec)) - 1) < 1e-4
    ref = item["embedding"][:dims]
    norm = math.sqrt(sum(x * x for x in ref))
    assert cosine(vec, [x / norm for x in ref]) >= 0.9999


def test_responses_match_the_schemas(service):
    schemas = REPO_ROOT / "schemas"
    embed = json.loads((schemas / "embed.schema.json").read_text())
    openai_shape = json.loads((schemas / "embeddings-openai.schema.json").read_text())
    status, body = service.post("/embed", {"input": ["a", "b"]})
    assert status == 200
    jsonschema.validate(body, embed)
    for fmt in ("float", "base64"):
        status, body = service.post("/v1/embeddings", {"input": "a", "encoding_format": fmt})
        assert status == 200
        jsonschema.validate(body, openai_shape)
    status, body = service.post("/v1/embeddings", {"input": []})
    assert status == 400
    jsonschema.validate(body, openai_shape)
    with pytest.raises(jsonschema.ValidationError):  # the schema does constrain
        jsonschema.validate({"object": "list", "data": []}, openai_shape)
