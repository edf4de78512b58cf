"""Cortex-OS's model-gateway shapes (its packages/model-gateway/src/handlers.ts) and their
translation to the host service's own routes. Plain Python, no Flask: the gateway's routes
call these, and the unit tests call them as they are.

  POST /embeddings {texts, model?}           -> host /embed {texts, model?}
       {embeddings, model, dimensions}       -> {vectors, dimensions, modelUsed}
  POST /rerank     {query, docs, topK?, model?} -> host /rerank (TEI) {query, texts}
       [{index, score}] best first           -> {rankedItems: [{index, score, content}], modelUsed}
                                                best first, cut to topK; modelUsed from the
                                                host's /health and its X-Ranked-By header
  POST /chat       {msgs, model?, tools?}    -> checked, then 503: no chat model is served

A body the gateway refuses raises BadRequest(param, message) and never reaches the host.
"""
from __future__ import annotations

import json
from typing import Any


class BadRequest(ValueError):
    """The client's mistake in one field: a 400 naming `param`."""

    def __init__(self, param: str | None, message: str, code: str = "invalid_type"):
        super().__init__(message)
        self.param, self.message, self.code = param, message, code


class UpstreamShapeError(ValueError):
    """The host answered 200 with a body that is not the shape its contract says."""


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def parse_body(raw: bytes) -> dict:
    """The JSON object of a request body, or BadRequest."""
    if not raw.strip():
        raise BadRequest(None, "request body is empty; send a JSON object", "invalid_json")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest(None, "request body is not valid JSON", "invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest(None, f"request body must be a JSON object, got {_type_name(body)}")
    return body


def _required(body: dict, field: str, hint: str) -> Any:
    if field not in body or body[field] is None:
        raise BadRequest(field, f"'{field}' is required: {hint}", "missing_field")
    return body[field]


def _strings(body: dict, field: str, hint: str) -> list[str]:
    """A non-empty array of strings (an empty string is the host's to judge)."""
    value = _required(body, field, hint)
    if not isinstance(value, list):
        raise BadRequest(field, f"'{field}' must be an array of strings, got {_type_name(value)}")
    if not value:
        raise BadRequest(field, f"'{field}' must not be empty: {hint}", "empty_input")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise BadRequest(field, f"'{field}[{i}]' must be a string, got {_type_name(item)}")
    return value


def _optional_string(body: dict, field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise BadRequest(field, f"'{field}' must be a string, got {_type_name(value)}")
    return value


def _with_model(payload: dict, model: str | None) -> dict:
    return {**payload, "model": model} if model is not None else payload


# --- /embeddings ---------------------------------------------------------------------------

def embeddings_request(body: dict) -> dict:
    """Cortex-OS {texts, model?} -> the host's /embed body."""
    texts = _strings(body, "texts", "an array of the texts to embed")
    return _with_model({"texts": texts}, _optional_string(body, "model"))


def embeddings_answer(host: Any) -> dict:
    """The host's /embed answer -> {vectors, dimensions, modelUsed}."""
    if not isinstance(host, dict) or not isinstance(host.get("embeddings"), list):
        raise UpstreamShapeError("the host's /embed answer has no 'embeddings' array")
    return {"vectors": host["embeddings"], "dimensions": host.get("dimensions"),
            "modelUsed": host.get("model")}


# --- /rerank -------------------------------------------------------------------------------

def is_tei_rerank(body: dict) -> bool:
    """POST /rerank serves two shapes on one path: TEI's {query, texts, ...} is the host's own
    and goes on unchanged; Cortex-OS's carries `docs`. A body with `texts` and no `docs` is
    TEI's; anything else is Cortex-OS's (and is checked as such)."""
    return "texts" in body and "docs" not in body


def rerank_request(body: dict) -> tuple[dict, list[str], int | None]:
    """Cortex-OS {query, docs, topK?, model?} -> (the host's TEI /rerank body, docs, topK)."""
    query = _required(body, "query", "the text the documents are ranked against")
    if not isinstance(query, str):
        raise BadRequest("query", f"'query' must be a string, got {_type_name(query)}")
    docs = _strings(body, "docs", "an array of the documents to rank")
    top_k = body.get("topK")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            raise BadRequest("topK", f"'topK' must be a whole number, got {_type_name(top_k)}")
        if top_k < 1:
            raise BadRequest("topK", f"'topK' must be at least 1, got {top_k}", "invalid_value")
    _optional_string(body, "model")  # checked; TEI's shape has no model: the served one ranks
    # The documents' text comes back from our own copy: return_text would only echo it.
    return {"query": query, "texts": docs, "return_text": False}, docs, top_k


def rerank_answer(host: Any, docs: list[str], top_k: int | None, model_used: str | None) -> dict:
    """The host's TEI answer [{index, score}] -> {rankedItems, modelUsed}, best first, topK."""
    if not isinstance(host, list) or not all(
            isinstance(item, dict) and isinstance(item.get("index"), int)
            and 0 <= item["index"] < len(docs) and isinstance(item.get("score"), (int, float))
            for item in host):
        raise UpstreamShapeError("the host's /rerank answer is not a list of {index, score} "
                                 f"for {len(docs)} documents")
    ranked = sorted(host, key=lambda item: -item["score"])  # stable: the host's order on ties
    if top_k is not None:
        ranked = ranked[:top_k]
    return {"rankedItems": [{"index": item["index"], "score": item["score"],
                             "content": docs[item["index"]]} for item in ranked],
            "modelUsed": model_used}


def ranking_model(health: Any, ranked_by: str | None) -> str | None:
    """The model that ranked, named from the host's /health ({model, rerank_model}) and how its
    answer says it ranked (the X-Ranked-By header): the reranker, or the embedding model when
    it ranked by cosine (no RERANK_MODEL, or one that is a classifier, for /predict only)."""
    if not isinstance(health, dict):
        return None
    embedding = health.get("model") if isinstance(health.get("model"), str) else None
    reranker = health.get("rerank_model") if isinstance(health.get("rerank_model"), str) else None
    if ranked_by == "embedding-cosine":
        return embedding
    return reranker or embedding


# --- /chat ---------------------------------------------------------------------------------

NO_CHAT_MODEL = ("No chat models available: this gateway serves embeddings (/embeddings) and "
                 "reranking (/rerank) from the host service, which serves no chat model")


def check_chat_request(body: dict) -> None:
    """Cortex-OS {msgs: [{role, content}], model?, tools?}: checked though nothing answers it."""
    msgs = _required(body, "msgs", "an array of {role, content} messages")
    if not isinstance(msgs, list):
        raise BadRequest("msgs", f"'msgs' must be an array of messages, got {_type_name(msgs)}")
    if not msgs:
        raise BadRequest("msgs", "'msgs' must not be empty", "empty_input")
    for i, msg in enumerate(msgs):
        if not isinstance(msg, dict):
            raise BadRequest("msgs", f"'msgs[{i}]' must be an object with role and content, "
                                     f"got {_type_name(msg)}")
        for key in ("role", "content"):
            if not isinstance(msg.get(key), str):
                raise BadRequest("msgs", f"'msgs[{i}].{key}' must be a string, got "
                                         f"{_type_name(msg.get(key))}")
    _optional_string(body, "model")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise BadRequest("tools", f"'tools' must be an array, got {_type_name(tools)}")
