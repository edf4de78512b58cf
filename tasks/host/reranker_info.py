"""What the running host service says about reranking, read from its /info.

The service names its reranker (RERANK_MODEL) there, or says that /rerank ranks by the
embedding model's cosine when none is loaded. /info is read defensively: a service from
before reranking, or an /info of another shape, gives None (nothing said), never an error.
"""
from __future__ import annotations

from typing import Any

from tasks.core.local_http import get_json

# Where /info may carry the reranker: one dict of facts, or only its name.
RERANKER_KEYS = ("reranker", "rerank_model", "rerank")
FACTS = ("kind", "architecture", "activation", "max_length", "path", "num_labels")
COSINE = "embedding-cosine"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def reranker_from_info(info: Any) -> dict[str, Any] | None:
    """{name, ranks_by, kind, architecture, activation, max_length, path, num_labels}, or None
    when /info says nothing of reranking. ranks_by: "reranker" (a RERANK_MODEL is loaded) or
    "embedding-cosine" (no reranker: the embedding model ranks)."""
    if not isinstance(info, dict):
        return None
    for key in RERANKER_KEYS:
        if key not in info:
            continue
        value = info[key]
        if isinstance(value, str) and value:
            value = {"name": value}
        if not isinstance(value, dict) or not value:
            return {"name": _text(info.get("model")), "ranks_by": COSINE,
                    **{fact: None for fact in FACTS}}
        name = _text(value.get("name")) or _text(value.get("model")) or _text(value.get("id"))
        said = _text(value.get("ranks_by")) or _text(value.get("ranking")) or ""
        cosine = "cosine" in said or "embedding" in str(value.get("kind", ""))
        facts = {fact: value.get(fact) if isinstance(value.get(fact), (str, int)) else None
                 for fact in FACTS}
        if facts["max_length"] is not None and not isinstance(facts["max_length"], int):
            facts["max_length"] = None
        if facts["num_labels"] is not None and not isinstance(facts["num_labels"], int):
            facts["num_labels"] = None
        return {"name": name or _text(info.get("model")),
                "ranks_by": COSINE if cosine else "reranker", **facts}
    return None


def served_reranker(info_url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The reranker of the service whose /info is `info_url` (None: no answer, or none said)."""
    status, body, _ = get_json(info_url, timeout=timeout)
    return reranker_from_info(body) if status == 200 else None


def reranker_line(reranker: dict[str, Any] | None) -> str:
    """One phrase for `inv health` and `inv status`."""
    if reranker is None:
        return "reranking: not said by the service (no /rerank, or an older service)"
    if reranker["ranks_by"] == COSINE:
        return (f"reranking: no RERANK_MODEL; /rerank ranks by the embedding model's cosine "
                f"({reranker['name'] or 'unnamed'})")
    extra = ", ".join(f"{k} {reranker[k]}" for k in ("kind", "activation", "max_length")
                      if reranker.get(k) is not None)
    return f"reranker: {reranker['name'] or 'unnamed'}" + (f" ({extra})" if extra else "")
