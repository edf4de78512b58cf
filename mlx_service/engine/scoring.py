"""Scoring requests: a query against documents (rerank), or texts and pairs (predict).

Between the HTTP shapes (mlx_service/http/rerank_api.py) and the inference façade
(mlx_service/engine/inference.py): tokenize the pairs with the reranker's own rules, reserve their
tokens, run them as ONE job of the inference thread (TEI queues each pair alone, its issue
#713), and turn logits into scores. Without a reranker, documents are ranked by the embedding
model's cosine similarity to the query, and the answer says so (`ranked_by`).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from mlx_service.engine.admission import Ticket
from mlx_service.engine.inference import Inference, Tokenized
from mlx_service.enums import StrEnum
from mlx_service.errors import RequestError
from mlx_service.telemetry.tracing import step

# sentence-transformers' encode_document takes the first of these prompts the model has.
DOCUMENT_PROMPTS = ("document", "passage", "corpus")
QUERY_PROMPT = "query"


class RankedBy(StrEnum):
    """How an answer's scores were made (the `ranked_by` of answers and /info)."""
    RERANKER = "reranker"                    # RERANK_MODEL's scores
    EMBEDDING_COSINE = "embedding-cosine"    # no reranker: cosine of the embedding model's vectors


@dataclass(frozen=True)
class Ranking:
    scores: list[float]   # per document, in the request's order
    tokens: int           # real tokens computed
    ranked_by: RankedBy

    def order(self) -> list[int]:
        """Document indices, best first (ties keep the request's order, as a stable sort)."""
        return sorted(range(len(self.scores)), key=lambda i: -self.scores[i])


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class Scoring:
    def __init__(self, inference: Inference):
        self.inference = inference
        self._cut_lock = threading.Lock()

    # --- what is served --------------------------------------------------------------------
    @property
    def scorer(self):
        """The loaded reranker or classifier; None when RERANK_MODEL is unset (or loading)."""
        return getattr(self.inference.worker.runner, "scorer", None)

    @property
    def configured(self) -> bool:
        return self.inference.rerank_spec is not None

    def reranks(self) -> bool:
        """A one-label model is served: /rerank uses it (a classifier of several labels
        answers /predict; documents are then ranked by cosine)."""
        spec = self.inference.rerank_spec
        return spec is not None and getattr(spec, "num_labels", 1) == 1

    def ranked_by(self) -> RankedBy:
        return RankedBy.RERANKER if self.reranks() else RankedBy.EMBEDDING_COSINE

    def prompt_names(self) -> tuple[str | None, str | None]:
        """(query, document) prompt names of the embedding model, chosen as
        sentence-transformers' encode_query and encode_document do; None: the default."""
        names = self.inference.spec.prompts.names()
        query = QUERY_PROMPT if QUERY_PROMPT in names else None
        document = next((n for n in DOCUMENT_PROMPTS if n in names), None)
        return query, document

    # --- rerank ----------------------------------------------------------------------------
    def rank(self, ticket: Ticket, query: str, documents: list[str], *,
             instruction: str | None = None, raw: bool = False, truncate: bool = True,
             client_gone: Callable[[], bool] | None = None) -> Ranking:
        if not self.reranks():
            return self.rank_by_cosine(ticket, query, documents, client_gone)
        batch = self.tokenize_pairs(ticket, query, documents, instruction)
        if not truncate:
            self.refuse_truncated(batch, "texts")
        logits = self.inference.score(ticket, batch, client_gone)[:, 0]
        scores = logits if raw else self.activate(logits)
        return Ranking([float(s) for s in scores], batch.tokens, RankedBy.RERANKER)

    def activate(self, logits: np.ndarray) -> np.ndarray:
        """The reranker's own activation (config_sentence_transformers.json's activation_fn)."""
        return np.asarray(self.scorer.activate(logits), dtype=np.float32).reshape(logits.shape)

    def tokenize_pairs(self, ticket: Ticket, query: str, documents: list[str],
                       instruction: str | None) -> Tokenized:
        """The pairs as the reranker tokenizes them, their tokens reserved on an upper bound
        first (a request that would be refused does not pay for tokenizing)."""
        scorer = self.scorer
        self.inference.reserve_estimate(ticket, scorer.most_tokens(query, documents, instruction))
        with step("tokenize", **{"rerank.pairs": len(documents)}):
            try:
                rows = scorer.tokenize_pairs(query, documents, instruction)
            except ValueError as exc:  # an instruction for a model without a chat template
                raise RequestError(400, str(exc), param="instruction",
                                   code="invalid_instruction") from None
        return Tokenized(rows, sum(len(r) for r in rows))

    def refuse_truncated(self, batch: Tokenized, field: str) -> None:
        """`truncate: false` (TEI): an input that fills the model's window is refused, not cut."""
        window = self.scorer.max_length
        for i, row in enumerate(batch.rows):
            if len(row) >= window:
                raise RequestError(413, f"{field}[{i}] with the query fills the model's window "
                                        f"of {window} tokens and would be truncated; send "
                                        "\"truncate\": true or a shorter text", param=field,
                                   code="input_too_long")

    def rank_by_cosine(self, ticket: Ticket, query: str, documents: list[str],
                       client_gone: Callable[[], bool] | None) -> Ranking:
        """No reranker: the cosine of the embedding model's vectors, the query and the
        documents each under their own prompt (as sentence-transformers' encode_query and
        encode_document choose it), all in one job."""
        query_prompt, document_prompt = self.prompt_names()
        batch = self.inference.tokenize_groups(ticket, [([query], query_prompt),
                                                        (documents, document_prompt)])
        vectors = self.inference.embed(ticket, batch, None, client_gone)
        scores = np.asarray(vectors[1:]) @ np.asarray(vectors[0])  # unit vectors: the cosine
        return Ranking([float(s) for s in scores], batch.tokens, RankedBy.EMBEDDING_COSINE)

    def cut_documents(self, documents: list[str], max_tokens: int) -> list[str]:
        """Cohere v2's max_tokens_per_doc: each document cut to its first `max_tokens` tokens
        of the model that ranks (its tokenizer's offsets say where), before pairing."""
        model = self.scorer.encoder if self.reranks() else self.inference.worker.embedder
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None or not getattr(tokenizer, "is_fast", False):
            return documents  # no offsets to cut by: the model's window still bounds each pair
        out = []
        for doc in documents:
            with self._cut_lock:  # transformers' wrapper sets truncation on every call
                enc = tokenizer(doc, add_special_tokens=False, truncation=True,
                                max_length=max_tokens, return_offsets_mapping=True)
            spans = [end for _, end in enc["offset_mapping"]]
            out.append(doc[:max(spans)] if len(spans) >= max_tokens and spans else doc)
        return out

    # --- predict ---------------------------------------------------------------------------
    def predict(self, ticket: Ticket, items: list[str | tuple[str, str]], *, raw: bool = False,
                truncate: bool = True,
                client_gone: Callable[[], bool] | None = None) -> list[list[dict]]:
        """Per input, [{label, score}] best first: softmax over the labels (sigmoid for one
        label, as TEI does) unless raw."""
        scorer = self.scorer
        if not self.configured or scorer is None:
            raise RequestError(400, "no classifier is served: set RERANK_MODEL to a sequence "
                                    "classification model folder to use /predict",
                               code="no_classifier")
        # A single text takes no more tokens than itself paired with an empty text.
        pairs = [item if isinstance(item, tuple) else (item, "") for item in items]
        self.inference.reserve_estimate(ticket, sum(scorer.most_tokens(a, [b]) for a, b in pairs))
        with step("tokenize", **{"rerank.pairs": len(items)}):
            try:
                rows = scorer.tokenize_inputs(items)
            except ValueError as exc:  # single texts for a causal-LM reranker
                raise RequestError(400, str(exc), param="inputs", code="invalid_input") from None
        batch = Tokenized(rows, sum(len(r) for r in rows))
        if not truncate:
            self.refuse_truncated(batch, "inputs")
        logits = self.inference.score(ticket, batch, client_gone)
        if raw:
            scores = logits
        elif logits.shape[1] == 1:
            scores = sigmoid(logits)
        else:
            scores = scorer.softmax(logits)
        labels = list(scorer.labels)
        out = []
        for row in scores:
            preds = [{"label": labels[k], "score": float(row[k])} for k in range(len(row))]
            out.append(sorted(preds, key=lambda p: -p["score"]))
        return out
