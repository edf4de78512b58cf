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
FACTS = ("role", "kind", "architecture", "activation", "max_length", "path", "num_labels")
# The service's own key where it differs from the status document's.
SAID_AS = {"architecture": "hf_architecture", "path": "model_path"}
COSINE = "embedding-cosine"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def reranker_from_info(info: Any) -> dict[str, Any] | None:
    """{name, ranks_by, role, kind, architecture, activation, max_length, path, num_labels}, or None
    when /info says nothing of reranking. name: the RERANK_MODEL served (None: none is set);
    ranks_by: how /rerank ranks now, "reranker" or "embedding-cosine" (no RERANK_MODEL, or
    one that is a classifier, which serves /predict only)."""
    if not isinstance(info, dict):
        return None
    for key in RERANKER_KEYS:
        if key not in info:
            continue
        value = info[key]
        if isinstance(value, str) and value:
            value = {"model": value}
        if not isinstance(value, dict) or not value or value.get("configured") is False:
            return {"name": None, "ranks_by": COSINE, **{fact: None for fact in FACTS}}
        name = _text(value.get("model")) or _text(value.get("name")) or _text(value.get("id"))
        said = str(value.get("ranked_by") or value.get("ranks_by") or "")
        facts = {fact: value.get(fact, value.get(SAID_AS.get(fact, fact))) for fact in FACTS}
        for fact in FACTS:  # a fact of the wrong type is dropped, not trusted
            wanted = int if fact in ("max_length", "num_labels") else str
            if not isinstance(facts[fact], wanted) or isinstance(facts[fact], bool):
                facts[fact] = None
        return {"name": name, "ranks_by": COSINE if "cosine" in said else "reranker", **facts}
    return None


def served_reranker(info_url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The reranker of the service whose /info is `info_url` (None: no answer, or none said)."""
    status, body, _ = get_json(info_url, timeout=timeout)
    return reranker_from_info(body) if status == 200 else None


def reranker_line(reranker: dict[str, Any] | None) -> str:
    """One phrase for `inv health` and `inv status`."""
    if reranker is None:
        return "reranking: not said by the service (no /rerank, or an older service)"
    extra = ", ".join(f"{k} {reranker[k]}" for k in ("kind", "activation", "max_length")
                      if reranker.get(k) is not None)
    named = f"{reranker['name']}" + (f" ({extra})" if extra else "")
    if reranker["ranks_by"] == COSINE:
        return ("reranking: /rerank ranks by the embedding model's cosine; "
                + (f"RERANK_MODEL {named} serves /predict only" if reranker["name"]
                   else "no RERANK_MODEL"))
    return f"reranker: {named}"
