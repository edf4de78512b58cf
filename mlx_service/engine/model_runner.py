"""The model runner the inference thread holds: TEI's `Model` trait, `embed` and `score`.

The embedding model is always there; a reranker or classifier (RERANK_MODEL) beside it when
one is configured. Both are loaded and run on the one inference thread
(mlx_service/engine/worker.py), so MLX is only ever touched there, and both share the queue,
the batching and the limits.
"""
from __future__ import annotations


class NoScorer(RuntimeError):
    """A scoring pass was asked of a runner without a reranker (a bug of the caller)."""


class ModelRunner:
    def __init__(self, embedder, scorer=None):
        self.embedder = embedder
        self.scorer = scorer
        self.device = getattr(embedder, "device", None)

    def embed(self, rows: list[list[int]], skips: list[int] | None = None):
        """(rows, dim) L2-normalised float32 vectors (see Embedder.embed)."""
        return self.embedder.embed(rows, skips) if skips else self.embedder.embed(rows)

    def score(self, rows: list[list[int]]):
        """(rows, num_labels) float32 logits of the reranker or classifier."""
        if self.scorer is None:
            raise NoScorer("no reranker is served (RERANK_MODEL is unset)")
        return self.scorer.score(rows)
