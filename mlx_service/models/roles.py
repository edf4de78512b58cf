"""Which job a model folder does: embedding texts (EMBEDDINGS_MODEL) or scoring pairs
(RERANK_MODEL), read from its JSON files only (no MLX, no tensors).

A cross-encoder is a folder that sentence-transformers loads as a CrossEncoder: its
config_sentence_transformers.json says `"model_type": "CrossEncoder"`, or its config.json names a
`*ForSequenceClassification` architecture, or a `*ForCausalLM` one scored by a `LogitScore`
module (Qwen3-Reranker). A `*ForCausalLM` alone is not one: Qwen3-Embedding's folders name
Qwen3ForCausalLM too. Given in the wrong setting, either kind would load and answer nonsense
(a cross-encoder mean-pooled into "embeddings"), so each setting refuses the other kind in one
sentence that names the right setting.
"""
from __future__ import annotations

import json
from pathlib import Path

EMBEDDING = "embedding"
SCORER = "scorer"


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # unreadable files are the folder check's business, not the role's


def architectures(folder: Path, cfg=None) -> list[str]:
    """config.json's architectures (`cfg`: the file as the caller already read it)."""
    if cfg is None:
        cfg = _json(folder / "config.json")
    names = cfg.get("architectures") if isinstance(cfg, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else []


def has_logit_score(folder: Path) -> bool:
    """A sentence-transformers LogitScore module (true/false token ids) in modules.json."""
    modules = _json(folder / "modules.json")
    if not isinstance(modules, list):
        return False
    return any(isinstance(m, dict) and str(m.get("type", "")).endswith("LogitScore")
               for m in modules)


def scorer_evidence(folder: Path, cfg=None) -> str | None:
    """Why the folder is a cross-encoder (a few words), or None when it is not one."""
    st = _json(folder / "config_sentence_transformers.json")
    if isinstance(st, dict) and st.get("model_type") == "CrossEncoder":
        return "config_sentence_transformers.json says model_type CrossEncoder"
    for name in architectures(folder, cfg):
        if name.endswith("ForSequenceClassification"):
            return f"its architecture is {name}"
        if name.endswith("ForCausalLM") and has_logit_score(folder):
            return f"its architecture is {name} scored by a LogitScore module"
    return None


def folder_role(folder: Path) -> str:
    """"scorer" for a cross-encoder (reranker or classifier), else "embedding"."""
    return SCORER if scorer_evidence(Path(folder)) else EMBEDDING


def cross_encoder_as_embeddings(folder: Path, cfg=None) -> str | None:
    """The sentence refusing a cross-encoder given as EMBEDDINGS_MODEL, or None."""
    why = scorer_evidence(Path(folder), cfg)
    if why is None:
        return None
    return (f"this folder is a cross-encoder ({why}): it scores query-document pairs and "
            "gives no embeddings; set it as RERANK_MODEL, and an embedding model as "
            "EMBEDDINGS_MODEL")


def embeddings_as_reranker(folder: Path) -> str | None:
    """The sentence refusing an embedding model given as RERANK_MODEL, or None."""
    if scorer_evidence(Path(folder)) is not None:
        return None
    names = ", ".join(architectures(folder)) or "no *ForSequenceClassification architecture"
    return (f"this folder is an embedding model ({names}, no CrossEncoder files): it cannot "
            "score pairs; set it as EMBEDDINGS_MODEL, and a cross-encoder (reranker or "
            "classifier) as RERANK_MODEL")
