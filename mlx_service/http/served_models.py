"""What the service serves, as /info and GET /v1/models say it: the embedding model, and the
reranker or classifier beside it (RERANK_MODEL), or how ranking is done without one."""
from __future__ import annotations

OWNER = "mlx_service"


def reranker_info(inference, scoring) -> dict:
    """/info's `reranker`: the served reranker's name, kind, activation, max_length and labels
    (read from its folder before it loads; how it runs once loaded), and `ranked_by`, how
    /rerank and its siblings rank now."""
    spec = inference.rerank_spec
    if spec is None:
        return {"configured": False, "ranked_by": str(scoring.ranked_by()),
                "note": "RERANK_MODEL is unset: /rerank, /v1/rerank and /v2/rerank rank by the "
                        "embedding model's cosine similarity (query and documents under its "
                        "query and document prompts, if it has them); /predict answers 503"}
    out = {"configured": True, "ranked_by": str(scoring.ranked_by()), "model": spec.name,
           "model_path": str(getattr(spec, "path", "")), **spec_facts(spec)}
    scorer = scoring.scorer
    if scorer is not None and hasattr(scorer, "describe"):
        out["model_info"] = scorer.describe()
    return out


def spec_facts(spec) -> dict:
    """The reranker folder's facts, as its spec gives them."""
    facts = {}
    facts["role"] = "reranker" if getattr(spec, "num_labels", 1) == 1 else "classifier"
    for name in ("kind", "hf_architecture", "activation", "max_length", "num_labels", "labels"):
        value = getattr(spec, name, None)
        if value is not None:
            facts[name] = list(value) if isinstance(value, tuple) else value
    return facts


def model_list(inference, scoring) -> list[dict]:
    """OpenAI's model objects {id, object: model, created, owned_by}, with what each one does."""
    spec = inference.spec
    models = [{"id": spec.name, "object": "model", "created": int(inference.started),
               "owned_by": OWNER, "kind": "embedding", "dimensions": inference.dim,
               "max_length": spec.max_seq_length,
               "routes": ["/v1/embeddings", "/embed"]
               + ([] if scoring.reranks() else ["/rerank", "/v1/rerank", "/v2/rerank"])}]
    rerank = inference.rerank_spec
    if rerank is not None:
        facts = spec_facts(rerank)
        routes = (["/rerank", "/v1/rerank", "/v2/rerank"] if scoring.reranks() else []) \
            + ["/predict"]
        models.append({"id": rerank.name, "object": "model", "created": int(inference.started),
                       "owned_by": OWNER, **facts, "routes": routes})
    return models
