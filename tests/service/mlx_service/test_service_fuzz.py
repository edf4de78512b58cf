"""Property-based fuzzing of the embedding endpoints (hypothesis): whatever a client sends, the
answer is a 2xx or a 4xx with a JSON body, and the service stays healthy. 2,000+ cases a run."""
from __future__ import annotations

import http.client
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CASES_PER_ENDPOINT = 1100

# Plain text, and text where lone surrogates (valid in JSON's \\uXXXX, not in UTF-8), control
# characters and combining marks are common (hypothesis leaves surrogates out by default).
hostile_chars = (st.characters(categories=["L", "N", "P", "S", "Z", "M", "Cc", "Cf"])
                 | st.characters(categories=["Cs"]))

# JSON values of every kind, a little deeper than real bodies, with the strings that broke
# the service before (lone surrogates, NULs, huge numbers) in the mix.
scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**40), max_value=10**40)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=40) | st.text(hostile_chars, max_size=10) | st.sampled_from(["a\ud800", "\udfff", "\x00", "😀" * 10, ""]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
fields = st.sampled_from(["input", "texts", "model", "encoding_format", "dimensions", "user"])
texts = st.text(min_size=0, max_size=60) | st.text(hostile_chars, max_size=20)
inputs = texts | st.lists(texts, max_size=6) | st.lists(st.integers(0, 30000), max_size=6) | values
# Nearly valid bodies: these reach the tokenizer, where hostile text did its damage before.
near_valid = st.fixed_dictionaries(
    {"input": st.text(hostile_chars, min_size=1, max_size=30)
     | st.lists(st.text(hostile_chars, min_size=1, max_size=30), min_size=1, max_size=4)},
    optional={"model": st.text(max_size=10), "user": st.text(max_size=10),
              "encoding_format": st.sampled_from(["float", "base64"])})
bodies = near_valid | st.fixed_dictionaries({"input": inputs}, optional={
    "model": values, "encoding_format": st.sampled_from(["float", "base64", "int8"]) | values,
    "dimensions": st.integers(-5, 500) | values, "user": st.text(max_size=10) | values,
    "texts": inputs}) | st.dictionaries(fields, values, max_size=4) | values


def encode(body, ascii_only: bool) -> bytes:
    text = json.dumps(body, ensure_ascii=ascii_only, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


raw_bodies = (st.builds(encode, bodies, st.booleans())
              | st.binary(max_size=300)
              | st.builds(lambda b, cut: encode(b, True)[:cut], bodies, st.integers(0, 50)))
headers = st.fixed_dictionaries({"Content-Type": st.sampled_from(
    ["application/json"] * 4 + ["application/json; charset=utf-8", "text/plain",
                                "application/x+json", "", "multipart/form-data"])}, optional={
    "Authorization": st.sampled_from(["Bearer x", "Basic abc", "", "Bearer"]),
    "Accept-Encoding": st.sampled_from(["gzip", "identity", "*"])})


@pytest.fixture(scope="module")
def connection(service):
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
    yield conn
    conn.close()


def post(conn, path: str, raw: bytes, hdrs: dict) -> tuple[int, str, bytes]:
    try:
        conn.request("POST", path, body=raw, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    except (OSError, http.client.HTTPException):
        conn.close()  # the server may close after an error answer: reconnect once
        conn.request("POST", path, body=raw, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()


def check(service, connection, path: str, raw: bytes, hdrs: dict) -> None:
    status, ctype, data = post(connection, path, raw, hdrs)
    assert 200 <= status < 500, (status, raw[:200], data[:300])
    assert ctype.startswith("application/json"), (status, ctype, data[:200])
    answer = json.loads(data)
    if status >= 400:
        assert set(answer["error"]) == {"message", "type", "param", "code"}, answer


FUZZ = settings(max_examples=CASES_PER_ENDPOINT, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@FUZZ
@given(raw=raw_bodies, hdrs=headers)
def test_fuzz_seed_endpoint(service, connection, raw, hdrs):
    check(service, connection, "/embed", raw, hdrs)


@FUZZ
@given(raw=raw_bodies, hdrs=headers)
def test_fuzz_openai_endpoint(service, connection, raw, hdrs):
    check(service, connection, "/v1/embeddings", raw, hdrs)


def test_healthy_after_fuzzing(service):
    assert service.get("/health")[0] == 200
    status, body = service.post("/v1/embeddings", {"input": "still serving"})
    assert status == 200 and len(body["data"][0]["embedding"]) == 384
