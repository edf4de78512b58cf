"""Request validation for /embed and /v1/embeddings (pure logic)."""
from __future__ import annotations

import pytest

from mlx_service.errors import RequestError
from mlx_service.http.validation import check_content_type, decode_json, parse_embed_request


def parse(body, openai=True, max_items=4, max_dim=384):
    return parse_embed_request(body, openai=openai, max_items=max_items, max_dim=max_dim)


def test_valid_shapes():
    r = parse({"input": "hi"})
    assert r.texts == ["hi"] and r.encoding_format == "float" and r.dimensions is None
    r = parse({"texts": ["a", "b"], "model": "qwen3-embed", "dimensions": 8}, openai=False)
    assert r.texts == ["a", "b"] and r.model == "qwen3-embed" and r.dimensions == 8
    assert parse({"input": ["a"], "encoding_format": "base64"}).encoding_format == "base64"


@pytest.mark.parametrize("body,openai,status,code", [
    ({}, True, 400, "missing_input"),
    ({"texts": ["a"]}, True, 400, "missing_input"),      # OpenAI's shape has only `input`
    ({"input": "a", "texts": ["b"]}, False, 400, "ambiguous_input"),
    ({"input": []}, True, 400, "empty_input"),
    ({"input": ["a", ""]}, True, 400, "empty_input"),
    ({"input": ["a", 1]}, True, 400, "invalid_type"),
    ({"input": [["a"]]}, True, 400, "invalid_type"),
    ({"input": 3}, False, 400, "invalid_type"),
    (["a"], True, 400, "invalid_type"),
    ({"input": ["a"] * 5}, True, 413, "too_many_items"),
    ({"input": "a", "encoding_format": "int8"}, True, 400, "invalid_encoding_format"),
    ({"input": "a", "dimensions": 385}, True, 400, "invalid_dimensions"),
    ({"input": "a", "dimensions": False}, True, 400, "invalid_dimensions"),
    ({"input": "a", "model": ["x"]}, True, 400, "invalid_type"),
])
def test_refusals(body, openai, status, code):
    with pytest.raises(RequestError) as err:
        parse(body, openai=openai)
    assert (err.value.status, err.value.code) == (status, code)
    assert err.value.message


def test_content_type_and_json():
    check_content_type("application/json")
    check_content_type("application/vnd.api+json")
    for bad in ("", "text/plain", "multipart/form-data"):
        with pytest.raises(RequestError) as err:
            check_content_type(bad)
        assert err.value.status == 415
    assert decode_json(b'{"a": 1}') == {"a": 1}
    for raw in (b"", b"{", b"\xff"):
        with pytest.raises(RequestError) as err:
            decode_json(raw)
        assert err.value.status == 400


def test_one_function_builds_every_error_body():
    """App and server answer errors through error_body (issue 20): no other module writes the
    OpenAI error shape by hand."""
    from mlx_service.errors import RequestError, error_body
    from tests.support import REPO_ROOT

    assert RequestError(413, "too big", param="input", code="too_many").body() == {
        "error": {"message": "too big", "type": "invalid_request_error", "param": "input",
                  "code": "too_many"}}
    assert error_body("x", "server_error")["error"]["type"] == "server_error"
    by_hand = [p.name for p in (REPO_ROOT / "mlx_service").rglob("*.py")
               if p.name != "errors.py" and '{"error": {' in p.read_text()]
    assert not by_hand
