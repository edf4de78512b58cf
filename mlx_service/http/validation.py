"""Request bodies -> what to embed, or a RequestError that names the client's mistake.

Status codes, as OpenAI's API answers them: 400 for every invalid request body (not JSON,
wrong types, missing fields, an empty text or list, an unknown encoding_format, dimensions out
of range or not an integer); 413 = too much (body bytes, items); 415 = not JSON content.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from mlx_service.errors import RequestError

ENCODINGS = ("float", "base64")
STRING_FIELDS = ("model", "encoding_format", "user", "prompt_name")
# Every field a body may carry; any other is refused with 400 naming it, as OpenAI's API does
# (a typo such as "dimension" must not be answered with the model's full dimensions).
# prompt_name is TEI's extension: the model's named prompt (e.g. "query") put before the text.
OPENAI_FIELDS = ("input", "model", "encoding_format", "dimensions", "user", "prompt_name")
SEED_FIELDS = ("input", "texts", *OPENAI_FIELDS[1:])


@dataclass(frozen=True)
class EmbedRequest:
    texts: list[str]
    model: str | None
    encoding_format: str
    dimensions: int | None
    prompt_name: str | None = None  # TEI's field: a prompt of the model's, put before each text


def type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean",
            int: "integer", float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def check_content_encoding(header: str | None) -> None:
    """Compressed bodies are refused with 415 (RFC 9110), not decoded as if they were text."""
    codings = [c.strip().lower() for c in (header or "").split(",") if c.strip()]
    unsupported = [c for c in codings if c != "identity"]
    if unsupported:
        raise RequestError(415, f"Content-Encoding {', '.join(unsupported)} is not supported: "
                                "send the JSON body uncompressed", code="unsupported_content_encoding")


def check_known_fields(body: dict, known: tuple[str, ...]) -> None:
    for name in body:
        if name not in known:
            near = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise RequestError(400, f"Unrecognized request argument supplied: {name}{hint}; "
                                    f"known arguments: {', '.join(known)}", param=str(name),
                               code="unknown_parameter")


def check_content_type(mimetype: str) -> None:
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        got = mimetype or "none"
        raise RequestError(415, f"Content-Type must be application/json (got {got})",
                           code="unsupported_media_type")


def decode_json(raw: bytes) -> Any:
    if not raw.strip():
        raise RequestError(400, "request body is empty; send a JSON object", code="invalid_json")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise RequestError(400, "request body is not UTF-8 text", code="invalid_json") from None
    except RecursionError:
        raise RequestError(400, "request body is nested too deeply", code="invalid_json") from None
    except ValueError as exc:
        raise RequestError(400, f"request body is not valid JSON: {exc}",
                           code="invalid_json") from None


def _token_ids(value: Any) -> bool:
    """An array of token ids, or of arrays of them (OpenAI's schema allows both)."""
    if not isinstance(value, list) or not value:
        return False
    first = value[0]
    if isinstance(first, list):
        return bool(first) and all(isinstance(x, int) and not isinstance(x, bool) for x in first)
    return all(isinstance(x, int) and not isinstance(x, bool) for x in value)


def check_unicode(text: str, where: str, field: str) -> None:
    """JSON may escape a lone surrogate (\\ud800): a str Python holds but no UTF-8 can carry."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestError(400, f"{where} has a lone surrogate (U+{ord(text[exc.start]):04X}) at "
                                f"character {exc.start}: not valid Unicode text", param=field,
                           code="invalid_text") from None


def parse_embed_request(body: Any, *, openai: bool, max_items: int, max_dim: int) -> EmbedRequest:
    """Validate a decoded body. `openai`: /v1/embeddings (only `input`); else /embed
    (the seed's shape: `input` or `texts`)."""
    if not isinstance(body, dict):
        raise RequestError(400, f"request body must be a JSON object, got {type_name(body)}",
                           code="invalid_type")
    if openai:
        field = "input"
    else:
        present = [k for k in ("input", "texts") if k in body]
        if len(present) == 2:
            raise RequestError(400, "give either 'input' or 'texts', not both", param="input",
                               code="ambiguous_input")
        field = present[0] if present else "input"
    if field not in body or body[field] is None:
        names = "'input'" if openai else "'input' (or 'texts')"
        raise RequestError(400, f"{names} is required: a string or a list of strings",
                           param=field, code="missing_input")
    check_known_fields(body, OPENAI_FIELDS if openai else SEED_FIELDS)
    value = body[field]
    if _token_ids(value):
        raise RequestError(400, f"'{field}' holds token ids: this service takes text and "
                                "tokenizes it itself; send strings. (LangChain's "
                                "OpenAIEmbeddings sends token ids unless it is created with "
                                "check_embedding_ctx_length=False.)", param=field,
                           code="token_ids_not_supported")
    single = isinstance(value, str)
    if single:  # one string is answered as a list of one, as OpenAI does
        texts = [value]
    elif isinstance(value, list):
        texts = value
    else:
        raise RequestError(400, f"'{field}' must be a string or a list of strings, "
                                f"got {type_name(value)}", param=field, code="invalid_type")
    if not texts:
        raise RequestError(400, f"'{field}' is an empty list; send at least one text",
                           param=field, code="empty_input")
    if len(texts) > max_items:
        raise RequestError(413, f"'{field}' has {len(texts)} items; at most {max_items} per "
                                "request (MLX_MAX_BATCH_ITEMS)", param=field, code="too_many_items")
    for i, text in enumerate(texts):
        where = field if single else f"{field}[{i}]"
        if isinstance(text, list):
            raise RequestError(400, f"{where} is a list: nested lists (and token-id arrays) are "
                                    "not supported, send strings", param=field, code="invalid_type")
        if not isinstance(text, str):
            raise RequestError(400, f"{where} must be a string, got {type_name(text)}",
                               param=field, code="invalid_type")
        if not text:
            raise RequestError(400, f"{where} is an empty string; send non-empty text",
                               param=field, code="empty_input")
        check_unicode(text, where, field)

    for name in STRING_FIELDS:  # OpenAI's known fields keep their types
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise RequestError(400, f"'{name}' must be a string, got {type_name(value)}",
                               param=name, code="invalid_type")
    model = body.get("model")

    encoding = body.get("encoding_format")
    if encoding is None:
        encoding = "float"
    if encoding not in ENCODINGS:
        raise RequestError(400, f"'encoding_format' must be one of {', '.join(ENCODINGS)}, "
                                f"got {encoding!r}", param="encoding_format",
                           code="invalid_encoding_format")

    dims = body.get("dimensions")
    if dims is not None:
        if isinstance(dims, bool) or not isinstance(dims, int):
            raise RequestError(400, f"'dimensions' must be an integer, got {type_name(dims)}",
                               param="dimensions", code="invalid_dimensions")
        if not 1 <= dims <= max_dim:
            raise RequestError(400, f"'dimensions' must be between 1 and {max_dim}, got {dims}",
                               param="dimensions", code="invalid_dimensions")
    return EmbedRequest(texts=texts, model=model, encoding_format=encoding,
                        dimensions=dims, prompt_name=body.get("prompt_name"))
