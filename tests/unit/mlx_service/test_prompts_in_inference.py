"""The inference façade puts the request's prompt before each text (sentence-transformers'
rule: the named prompt, else the model's default one), lowercases when the model's
sentence_bert_config.json says so, counts the prompt's tokens as embedded, and answers an
unknown prompt_name with a 400 that lists the model's names."""
from __future__ import annotations

from pathlib import Path

import pytest

from mlx_service.config import Config
from mlx_service.engine.inference import Inference
from mlx_service.engine.worker import Worker
from mlx_service.errors import RequestError
from mlx_service.http.validation import parse_embed_request
from mlx_service.models.folder import ModelSpec
from mlx_service.models.prompts import Prompts


class Recording:
    """One token per word; remembers what it was asked to tokenize."""

    def __init__(self):
        self.seen: list[str] = []

    def most_tokens(self, texts):
        return sum(len(t) for t in texts)

    def tokenize(self, texts):
        self.seen += texts
        return [[1] * len(t.split()) for t in texts]

    def prompt_tokens(self, prompt):
        return 0


def facade(spec: ModelSpec):
    embedder = Recording()
    worker = Worker(lambda: embedder, 4, 64)
    worker.start()
    assert worker.ready.wait(5)
    return Inference(config=Config(), spec=spec, dim=4, worker=worker, blas="none"), embedder


def spec(**kw) -> ModelSpec:
    return ModelSpec("m", Path("."), ("mean",), 4, 64, True, **kw)


def test_named_and_default_prompts_and_token_counts():
    prompts = Prompts({"query": "Instruct: find it\nQuery: ", "document": ""}, "query")
    inference, embedder = facade(spec(prompts=prompts))
    ticket = inference.admit()
    batch = inference.tokenize(ticket, ["Capital of Japan"])  # no name: the default one
    assert embedder.seen[-1] == "Instruct: find it\nQuery: Capital of Japan"
    assert batch.tokens == 7  # the prompt's words count: usage says what was embedded
    batch = inference.tokenize(ticket, ["Capital of Japan"], "document")
    assert embedder.seen[-1] == "Capital of Japan" and batch.tokens == 3
    with pytest.raises(RequestError) as refused:
        inference.tokenize(ticket, ["x"], "passage")
    error = refused.value
    assert (error.status, error.param, error.code) == (400, "prompt_name", "unknown_prompt_name")
    assert "'query', 'document'" in error.message
    inference.release(ticket)
    inference.worker.drain()  # nothing queued: the thread just ends
    inference.worker.join(5)


def test_lowercased_when_the_model_says_so():
    inference, embedder = facade(spec(prompts=Prompts({"q": "Query: "}), do_lower_case=True))
    ticket = inference.admit()
    inference.tokenize(ticket, ["Tokyo IS Big"], "q")
    assert embedder.seen[-1] == "query: tokyo is big"
    inference.release(ticket)
    inference.worker.drain()  # nothing queued: the thread just ends
    inference.worker.join(5)


def test_prompt_name_is_parsed_on_both_endpoints():
    for openai in (True, False):
        req = parse_embed_request({"input": "x", "prompt_name": "query"}, openai=openai,
                                  max_items=8, max_dim=4)
        assert req.prompt_name == "query"
        with pytest.raises(RequestError) as refused:
            parse_embed_request({"input": "x", "prompt_name": ["query"]}, openai=openai,
                                max_items=8, max_dim=4)
        assert refused.value.status == 400 and refused.value.param == "prompt_name"
