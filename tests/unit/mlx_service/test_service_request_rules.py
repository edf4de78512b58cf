"""Request rules that need no model (mlx_service/http/validation.py, engine/admission.py):
unknown fields named with a near match, compressed bodies refused, and admission by the
measured rate."""
from __future__ import annotations

import pytest

from mlx_service.engine import admission as admission_module
from mlx_service.engine.admission import Admission
from mlx_service.errors import RequestError
from mlx_service.http.validation import OPENAI_FIELDS, check_content_encoding, parse_embed_request


def parse(body, openai=True):
    return parse_embed_request(body, openai=openai, max_items=8, max_dim=384)


@pytest.mark.parametrize("field, near", [("dimension", "dimensions"),
                                         ("encodingformat", "encoding_format"),
                                         ("promptname", "prompt_name"), ("texts", None)])
def test_unknown_fields_are_named(field, near):
    with pytest.raises(RequestError) as err:
        parse({"input": "x", field: 1})
    assert (err.value.status, err.value.code, err.value.param) == (400, "unknown_parameter", field)
    assert f"Unrecognized request argument supplied: {field}" in err.value.message
    assert (f"did you mean '{near}'" in err.value.message) if near else "did you mean" not in \
        err.value.message


def test_known_fields_pass_and_texts_is_the_seeds():
    assert "prompt_name" in OPENAI_FIELDS
    parse({"input": "x", "model": "m", "encoding_format": "float", "dimensions": 8, "user": "u"})
    assert parse({"texts": ["x"], "model": "m"}, openai=False).texts == ["x"]


@pytest.mark.parametrize("header", ["gzip", "br", "deflate, gzip", "identity, gzip"])
def test_compressed_bodies_are_415(header):
    with pytest.raises(RequestError) as err:
        check_content_encoding(header)
    assert err.value.status == 415 and err.value.code == "unsupported_content_encoding"


@pytest.mark.parametrize("header", [None, "", "identity", " Identity "])
def test_plain_bodies_pass(header):
    check_content_encoding(header)


def test_admission_by_rate(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(admission_module.time, "monotonic", lambda: clock[0])
    gate = Admission(max_requests=64, max_tokens=10**6)
    # measure: 4,000 tokens answered in 4 busy seconds -> 1,000 tokens/s
    first = gate.enter()
    assert gate.reserve(first, 4000)
    clock[0] += 4
    gate.done(first)
    gate.leave(first)
    assert gate.rate() == pytest.approx(1000, rel=0.01)
    # alone: always admitted, however long it would take
    big = gate.enter()
    assert gate.reserve(big, 50_000)
    assert gate.seconds_over(big, 3.0) is None
    # beside it, a request that would take the work in flight past the budget: refused,
    # with the seconds of excess work (about 51 s of work against a 3 s budget)
    small = gate.enter()
    assert gate.reserve(small, 1000)
    over = gate.seconds_over(small, 3.0)
    assert over == pytest.approx(51 - 3, rel=0.05)
    assert gate.snapshot()["refused_time"] == 1
