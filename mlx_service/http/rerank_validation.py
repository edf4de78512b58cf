"""Rerank and predict request bodies -> what to score, or a RequestError naming the field.

The same rules as embedding bodies (mlx_service/http/validation.py): 400 for a body that is not
what the route takes (a missing or mistyped field, an empty list, an unknown field with its
near match), 413 for more documents than MLX_MAX_BATCH_ITEMS. An empty-string document is
a document: it is scored (sentence-transformers and TEI score it too), not refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlx_service.enums import StrEnum
from mlx_service.errors import RequestError
from mlx_service.http.validation import check_known_fields, check_unicode, type_name


class RerankShape(StrEnum):
    """Which API's body a route takes."""
    TEI = "tei"          # POST /rerank
    COHERE_V1 = "v1"     # POST /v1/rerank (Cohere v1, Jina)
    COHERE_V2 = "v2"     # POST /v2/rerank


# `instruction` (every shape): the system message of a chat-template reranker (Qwen3-Reranker).
FIELDS = {
    RerankShape.TEI: ("query", "texts", "raw_scores", "return_text", "truncate",
                      "truncation_direction", "instruction"),
    RerankShape.COHERE_V1: ("model", "query", "documents", "top_n", "return_documents",
                            "max_chunks_per_doc", "rank_fields", "instruction"),
    RerankShape.COHERE_V2: ("model", "query", "documents", "top_n", "max_tokens_per_doc",
                            "instruction"),
}
PREDICT_FIELDS = ("inputs", "raw_scores", "truncate", "truncation_direction", "model")


@dataclass(frozen=True)
class RerankRequest:
    query: str
    documents: list[str]
    model: str | None = None
    top_n: int | None = None        # None: every document
    return_documents: bool = False  # v1: each result carries its document; TEI: return_text
    raw_scores: bool = False        # TEI: the logits, not the activation
    truncate: bool = True           # TEI: false refuses a pair longer than the window
    instruction: str | None = None
    max_tokens_per_doc: int | None = None  # v2: each document cut to this many tokens


@dataclass(frozen=True)
class PredictRequest:
    items: list[str | tuple[str, str]]
    single: bool                    # one input (answered as one list of labels)
    raw_scores: bool = False
    truncate: bool = True


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise RequestError(400, f"request body must be a JSON object, got {type_name(body)}",
                           code="invalid_type")
    return body


def _text(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str):
        raise RequestError(400, f"'{where}' must be a string, got {type_name(value)}",
                           param=field, code="invalid_type")
    check_unicode(value, where, field)
    return value


def _flag(body: dict, name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(400, f"'{name}' must be true or false, got {type_name(value)}",
                           param=name, code="invalid_type")
    return value


def _positive(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(400, f"'{name}' must be an integer, got {type_name(value)}",
                           param=name, code="invalid_type")
    if value < 1:
        raise RequestError(400, f"'{name}' must be at least 1, got {value}", param=name,
                           code=f"invalid_{name}")
    return value


def _documents(body: dict, field: str, max_items: int) -> list[str]:
    if field not in body or body[field] is None:
        raise RequestError(400, f"'{field}' is required: a list of the texts to rank",
                           param=field, code="missing_documents")
    docs = body[field]
    if not isinstance(docs, list):
        raise RequestError(400, f"'{field}' must be a list of strings, got {type_name(docs)}",
                           param=field, code="invalid_type")
    if not docs:
        raise RequestError(400, f"'{field}' is an empty list; send at least one document",
                           param=field, code="empty_documents")
    if len(docs) > max_items:
        raise RequestError(413, f"'{field}' has {len(docs)} documents; at most {max_items} "
                                "per request (MLX_MAX_BATCH_ITEMS)", param=field,
                           code="too_many_items")
    texts = []
    for i, doc in enumerate(docs):
        where = f"{field}[{i}]"
        if isinstance(doc, dict) and field == "documents":  # Cohere's and Jina's {"text": ..}
            if "text" not in doc:
                raise RequestError(400, f"'{where}' is an object without 'text': send a string "
                                        "or {\"text\": \"...\"}", param=field,
                                   code="invalid_type")
            texts.append(_text(doc["text"], f"{where}.text", field))
        else:
            texts.append(_text(doc, where, field))
    return texts


def parse_rerank_request(body: Any, shape: RerankShape, max_items: int) -> RerankRequest:
    body = _object(body)
    check_known_fields(body, FIELDS[shape])
    if "query" not in body or body["query"] is None:
        raise RequestError(400, "'query' is required: the text to rank the documents for",
                           param="query", code="missing_query")
    query = _text(body["query"], "query", "query")
    field = "texts" if shape == RerankShape.TEI else "documents"
    documents = _documents(body, field, max_items)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError(400, f"'model' must be a string, got {type_name(model)}",
                           param="model", code="invalid_type")
    instruction = body.get("instruction")
    if instruction is not None:
        instruction = _text(instruction, "instruction", "instruction")
    direction = body.get("truncation_direction")
    if direction is not None and str(direction).lower() != "right":
        raise RequestError(400, "'truncation_direction' must be \"right\": the service "
                                "truncates as sentence-transformers does",
                           param="truncation_direction", code="invalid_truncation_direction")
    if shape == RerankShape.COHERE_V1 and body.get("rank_fields") not in (None, ["text"]):
        raise RequestError(400, "'rank_fields' other than [\"text\"] is not supported: send "
                                "each document's text", param="rank_fields",
                           code="invalid_rank_fields")
    _positive(body, "max_chunks_per_doc")  # v1: accepted, documents are not chunked
    return RerankRequest(
        query=query, documents=documents, model=model, top_n=_positive(body, "top_n"),
        return_documents=_flag(body, "return_text" if shape == RerankShape.TEI
                               else "return_documents", False),
        raw_scores=_flag(body, "raw_scores", False), truncate=_flag(body, "truncate", True),
        instruction=instruction, max_tokens_per_doc=_positive(body, "max_tokens_per_doc"))


def _sequence(value: Any, where: str) -> str | tuple[str, str] | None:
    """One input of /predict: a text, or a pair as a list of two texts; None: neither."""
    if isinstance(value, str):
        return _text(value, where, "inputs")
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, str) for v in value)):
        return (_text(value[0], f"{where}[0]", "inputs"), _text(value[1], f"{where}[1]", "inputs"))
    return None


def parse_predict_request(body: Any, max_items: int) -> PredictRequest:
    """TEI's inputs: one text, one pair ([a, b]), or a list of texts and pairs (a list of
    two texts is one pair, as TEI reads it: send [[a], [b]]... or [a, b, c] for texts)."""
    body = _object(body)
    check_known_fields(body, PREDICT_FIELDS)
    if "inputs" not in body or body["inputs"] is None:
        raise RequestError(400, "'inputs' is required: a text, a pair [text, text], or a list "
                                "of them", param="inputs", code="missing_input")
    value = body["inputs"]
    single = _sequence(value, "inputs")
    if single is not None:
        items, is_single = [single], True
    elif isinstance(value, list):
        if not value:
            raise RequestError(400, "'inputs' is an empty list; send at least one input",
                               param="inputs", code="empty_input")
        if len(value) > max_items:
            raise RequestError(413, f"'inputs' has {len(value)} items; at most {max_items} per "
                                    "request (MLX_MAX_BATCH_ITEMS)", param="inputs",
                               code="too_many_items")
        items = []
        for i, item in enumerate(value):
            one = _sequence(item, f"inputs[{i}]")
            if one is None:
                raise RequestError(400, f"'inputs[{i}]' must be a text or a pair of texts, got "
                                        f"{type_name(item)}", param="inputs", code="invalid_type")
            items.append(one)
        is_single = False
    else:
        raise RequestError(400, f"'inputs' must be a text, a pair or a list of them, got "
                                f"{type_name(value)}", param="inputs", code="invalid_type")
    direction = body.get("truncation_direction")
    if direction is not None and str(direction).lower() != "right":
        raise RequestError(400, "'truncation_direction' must be \"right\"",
                           param="truncation_direction", code="invalid_truncation_direction")
    return PredictRequest(items, is_single, raw_scores=_flag(body, "raw_scores", False),
                          truncate=_flag(body, "truncate", True))
