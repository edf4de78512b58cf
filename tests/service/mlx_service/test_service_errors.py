"""Bad input is the client's error: a 4xx with a JSON body naming the problem, and the
service keeps serving afterwards."""
from __future__ import annotations

import json
import time

import pytest

from tests.service_support import http

JSON = {"Content-Type": "application/json"}

# (id, path, raw body, headers, status, words the message must contain)
CASES = [
    ("missing input", "/embed", b"{}", JSON, 400, ["input", "required"]),
    ("missing input openai", "/v1/embeddings", b'{"texts": ["a"]}', JSON, 400, ["input"]),
    ("null input", "/v1/embeddings", b'{"input": null}', JSON, 400, ["input"]),
    ("empty list", "/embed", b'{"input": []}', JSON, 400, ["empty list"]),
    ("empty texts list", "/embed", b'{"texts": []}', JSON, 400, ["texts", "empty"]),
    ("empty string", "/v1/embeddings", b'{"input": ""}', JSON, 400, ["empty string"]),
    ("empty string in list", "/embed", b'{"input": ["ok", ""]}', JSON, 400, ["input[1]", "empty"]),
    ("integer item", "/embed", b'{"input": ["ok", 5]}', JSON, 400, ["input[1]", "string", "integer"]),
    ("null item", "/v1/embeddings", b'{"input": [null]}', JSON, 400, ["input[0]", "null"]),
    ("object item", "/embed", b'{"input": [{"text": "a"}]}', JSON, 400, ["input[0]", "object"]),
    ("nested list", "/embed", b'{"input": [["a", "b"]]}', JSON, 400, ["nested"]),
    ("token id arrays", "/v1/embeddings", b'{"input": [[1, 2, 3]]}', JSON, 400,
     ["token ids", "check_embedding_ctx_length=False"]),
    ("token ids", "/v1/embeddings", b'{"input": [101, 7592, 102]}', JSON, 400,
     ["token ids", "check_embedding_ctx_length=False"]),
    ("input is a number", "/embed", b'{"input": 42}', JSON, 400, ["string", "integer"]),
    # The hostile rows of issue 9: each was a 500 or a 200 before.
    ("lone surrogate", "/v1/embeddings", b'{"input": "a\\ud800"}', JSON, 400,
     ["lone surrogate", "U+D800"]),
    ("lone surrogate in list", "/embed", b'{"input": ["ok", "\\udfff b"]}', JSON, 400,
     ["input[1]", "lone surrogate"]),
    ("deep nesting", "/v1/embeddings", b'{"input": ' + b"[" * 5000 + b"]" * 5000 + b"}", JSON,
     400, ["nested too deeply"]),
    ("user is an object", "/v1/embeddings", b'{"input": "x", "user": {}}', JSON, 400,
     ["'user'", "string", "object"]),
    ("huge integer", "/v1/embeddings", b'{"input": "x", "dimensions": ' + b"9" * 5000 + b"}",
     JSON, 400, ["not valid JSON"]),
    ("huge number", "/v1/embeddings", b'{"input": "x", "dimensions": 1e999}', JSON, 400,
     ["dimensions", "integer"]),
    ("invalid UTF-8 inside a string", "/v1/embeddings", b'{"input": "ok \xc3\x28"}', JSON, 400,
     ["UTF-8"]),
    ("input is an object", "/v1/embeddings", b'{"input": {"a": 1}}', JSON, 400, ["object"]),
    ("body is a list", "/embed", b'["a", "b"]', JSON, 400, ["JSON object", "array"]),
    ("body is a string", "/v1/embeddings", b'"hello"', JSON, 400, ["JSON object", "string"]),
    ("body is null", "/embed", b"null", JSON, 400, ["JSON object"]),
    ("invalid JSON", "/embed", b'{"input": ["a",', JSON, 400, ["not valid JSON"]),
    ("empty body", "/v1/embeddings", b"", JSON, 400, ["empty"]),
    ("not UTF-8", "/embed", b'{"input": "\xff\xfe"}', JSON, 400, ["UTF-8"]),
    ("text/plain", "/embed", b'{"input": "a"}', {"Content-Type": "text/plain"}, 415,
     ["application/json", "text/plain"]),
    ("form content type", "/v1/embeddings", b"input=a",
     {"Content-Type": "application/x-www-form-urlencoded"}, 415, ["application/json"]),
    ("no content type", "/embed", b'{"input": "a"}', {}, 415, ["application/json"]),
    ("too many items", "/embed", json.dumps({"input": ["a"] * 65}).encode(), JSON, 413,
     ["65 items", "64", "MLX_MAX_BATCH_ITEMS"]),
    ("body too large", "/v1/embeddings", json.dumps({"input": "a" * 70000}).encode(), JSON, 413,
     ["65536", "MLX_MAX_REQUEST_BYTES"]),
    ("unknown encoding_format", "/v1/embeddings", b'{"input": "a", "encoding_format": "int8"}',
     JSON, 400, ["encoding_format", "int8"]),
    ("dimensions zero", "/v1/embeddings", b'{"input": "a", "dimensions": 0}', JSON, 400,
     ["dimensions", "between 1 and 384"]),
    ("dimensions too large", "/v1/embeddings", b'{"input": "a", "dimensions": 385}', JSON, 400,
     ["dimensions", "385"]),
    ("dimensions negative", "/embed", b'{"input": "a", "dimensions": -3}', JSON, 400, ["dimensions"]),
    ("dimensions a string", "/v1/embeddings", b'{"input": "a", "dimensions": "12"}', JSON, 400,
     ["dimensions", "integer"]),
    ("dimensions a boolean", "/v1/embeddings", b'{"input": "a", "dimensions": true}', JSON, 400,
     ["dimensions", "integer"]),
    ("model not a string", "/v1/embeddings", b'{"input": "a", "model": 3}', JSON, 400, ["model"]),
    ("input and texts", "/embed", b'{"input": "a", "texts": ["b"]}', JSON, 400, ["not both"]),
]


def still_serving(service):
    status, body = service.post("/embed", {"input": "still here"})
    assert status == 200 and len(body["embeddings"][0]) == 384
    assert service.get("/health")[0] == 200


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_json_4xx(service, case):
    _, path, raw, headers, want, words = case
    status, resp_headers, body = http("POST", service.url + path, raw, headers)
    assert status == want, body
    assert resp_headers.get("Content-Type", "").startswith("application/json")
    err = json.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["code"]
    for word in words:
        assert word in err["message"], err
    still_serving(service)


def test_whitespace_and_unicode_are_texts_not_errors(service):
    status, body = service.post("/v1/embeddings", {"input": ["   ", "🚀", "a\u0000b"]})
    assert status == 200, body
    assert len(body["data"]) == 3


@pytest.mark.parametrize("method,path,want", [("GET", "/embed", 405), ("GET", "/nope", 404),
                                               ("POST", "/health", 405)])
def test_wrong_route_or_method_is_json(service, method, path, want):
    status, _, body = http(method, service.url + path, b"{}" if method == "POST" else None, JSON)
    assert status == want
    assert json.loads(body)["error"]["message"]
    still_serving(service)


def test_requests_are_logged_one_line_each(service):
    def logged() -> list[str]:
        return [line for line in service.log().splitlines() if "POST /embed 400" in line]

    before = len(logged())
    status, _, _ = http("POST", service.url + "/embed?marker=1", b'{"input": []}', JSON)
    assert status == 400
    # The access line is written as the request ends, which may be just after the client
    # has its answer: wait for it rather than read the line of the request before.
    deadline = time.monotonic() + 5
    while len(logged()) <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = logged()
    assert len(lines) == before + 1 and "error=empty_input" in lines[-1], lines[before:]
