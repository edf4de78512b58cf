"""The official openai client (a real client we did not write) against the service."""
from __future__ import annotations

import openai

from tasks.checks.roundtrip import cosine
from tests.service_support import assert_parity


def client(service) -> openai.OpenAI:
    return openai.OpenAI(base_url=service.url + "/v1", api_key="x", max_retries=0, timeout=120)


def test_openai_client_list(service, reference):
    items = reference["items"]
    # The client asks for base64 by default and decodes it itself.
    result = client(service).embeddings.create(model="text-embedding-3-small",
                                               input=[i["text"] for i in items])
    assert [d.index for d in result.data] == list(range(len(items)))
    assert_parity(items, [d.embedding for d in result.data])
    assert result.usage.prompt_tokens > 0 and result.usage.total_tokens == result.usage.prompt_tokens
    assert "MiniLM" in result.model


def test_openai_client_single_float_and_dimensions(service, reference):
    item = reference["items"][0]
    result = client(service).embeddings.create(model="any", input=item["text"],
                                               encoding_format="float")
    assert len(result.data) == 1
    assert_parity([item], [result.data[0].embedding])
    short = client(service).embeddings.create(model="any", input=item["text"], dimensions=32)
    assert len(short.data[0].embedding) == 32
    assert cosine(short.data[0].embedding, item["embedding"][:32]) >= 0.9999


def test_openai_client_error_is_a_bad_request(service):
    # OpenAI answers an invalid body 400 (issue 28, row 12): the client raises BadRequestError,
    # as it would against OpenAI, not UnprocessableEntityError.
    for bad in ({"dimensions": 10_000}, {"dimensions": 0}, {"dimensions": "x"}, {"input": ""}):
        kwargs = {"model": "any", "input": "x", "encoding_format": "float", **bad}
        try:
            client(service).embeddings.create(**kwargs)
        except openai.BadRequestError as exc:
            assert exc.status_code == 400
            assert exc.body["param"] == next(iter(bad)), exc.body
        else:
            raise AssertionError(f"{bad} was accepted")
