"""The reranker's runner: pairs into token ids, token ids into raw logits (float32), logits into
scores, as sentence-transformers 6.3's CrossEncoder computes them (reference:
tests/fixtures/tiny-rerankers/reference.json).

The encoder is an Embedder (models/embedder.py) built on the folder's ModelSpec: the same
loading (float32/float16/bfloat16, MLX-quantized), the same CPU fast paths and lanes, and the
same precision self-check; the head (models/heads.py) runs on its last hidden states.
Tokenizing is thread-safe (HTTP threads); `score` must run on the inference thread, like
Embedder.embed (on the fast path it hands parts of a batch to its lane threads and waits).

Rows are padded on the right and each head reads its position (first, mean over the real
tokens, or the last real token): for the causal LM a token never sees what follows it, so
this equals sentence-transformers' left padding. BERT's segment ids are rebuilt from the
ids (0 up to the first [SEP], 1 after), as the tokenizer's post-processor sets them.
"""
from __future__ import annotations

import threading

import numpy as np

from mlx_service.models.folder import ModelError
from mlx_service.models.scorer_folder import CAUSAL_LM_LOGIT_SCORE, ScorerSpec

ACTIVATIONS = ("sigmoid", "identity", "tanh", "softmax")


def softmax(logits) -> np.ndarray:
    """Row-wise softmax in float32 (TEI's /predict without raw_scores)."""
    x = np.asarray(logits, dtype=np.float32)
    x = np.exp(x - x.max(axis=-1, keepdims=True))
    return x / x.sum(axis=-1, keepdims=True)


def apply_activation(name: str, logits) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float32)
    if name == "sigmoid":
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)
    if name == "tanh":
        return np.tanh(x)
    if name == "softmax":
        return softmax(x)
    if name == "identity":
        return x
    raise ValueError(f"unknown activation {name!r} (known: {', '.join(ACTIVATIONS)})")


class Scorer:
    def __init__(self, spec: ScorerSpec, cpu_fast: bool = True, lanes: int = 0,
                 native_kernels: bool = True, precision: str = "auto"):
        """cpu_fast, lanes, native_kernels, precision: as for Embedder (MLX_CPU_FAST,
        MLX_LANES, the native kernels, MLX_PRECISION)."""
        from mlx_service.models.embedder import Embedder
        from mlx_service.models.heads import load_head
        from mlx_service.models.tokenizer_cache import load_tokenizer

        self.spec = spec
        self.encoder = Embedder(spec.model_spec(), cpu_fast=cpu_fast, lanes=lanes,
                                precision=precision, native_kernels=native_kernels,
                                scores=True)
        self.head = load_head(spec)
        loaded = load_tokenizer(spec.path)
        self.pad_id = loaded.pad_id
        self._tok_lock = threading.Lock()
        self._slow = loaded.slow  # transformers' object when there is no Rust tokenizer
        self._pairs = self._chat = None
        if spec.kind == CAUSAL_LM_LOGIT_SCORE:
            from mlx_service.models.chat_template import PairTemplate
            from mlx_service.models.pair_tokens import ChatPairs
            if loaded.backend is None:
                raise ModelError("a causal-LM reranker needs a tokenizer.json (a Rust "
                                 "tokenizer); this folder has only a slow one")
            self._chat = ChatPairs(loaded.backend, PairTemplate(spec.chat_template),
                                   spec.max_length)
        elif loaded.backend is not None:
            from mlx_service.models.pair_tokens import EncoderPairs
            self._pairs = EncoderPairs(loaded.backend, spec.max_length)
        # BERT adds a segment embedding: the document's tokens are segment 1.
        self._sep_id = None
        if spec.architecture == "bert" and int(spec.config.get("type_vocab_size") or 0) > 1:
            self._sep_id = self._special_id("sep_token")

    def _special_id(self, role: str) -> int | None:
        from mlx_service.models.tokenizer_files import declared_specials, vocabulary
        token = declared_specials(self.spec.path).get(role)
        return (vocabulary(self.spec.path) or {}).get(token) if token else None

    # --- what it is ---------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def labels(self) -> list[str]:
        return list(self.spec.labels)

    @property
    def activation(self) -> str:
        return self.spec.activation

    @property
    def max_length(self) -> int:
        return self.spec.max_length

    @property
    def num_labels(self) -> int:
        return self.spec.num_labels

    def describe(self) -> dict:
        """For /info: the folder's facts and how it runs."""
        out = {"architecture": self.spec.hf_architecture, "kind": self.kind,
               "activation": self.activation, "activation_source": self.spec.activation_source,
               "labels": self.labels, "num_labels": self.num_labels,
               "max_length": self.max_length, "weights": self.spec.describe_weights(),
               "quantization": self.spec.quantization, "head": self.head.describe()}
        out.update(self.encoder.describe())  # dtype, forward, layers, precision, kernels
        return out

    # --- tokens -------------------------------------------------------------------------------
    def tokenize_pairs(self, query: str, documents: list[str],
                       instruction: str | None = None) -> list[list[int]]:
        """Token ids per (query, document), as the CrossEncoder tokenizes them."""
        if self._chat is not None:
            return self._chat.pairs(query, documents, instruction)
        if instruction is not None:
            raise ValueError(f"an instruction applies to a chat-template reranker only; "
                             f"{self.spec.hf_architecture} has none")
        return self._encode([(query, d) for d in documents])

    def tokenize_inputs(self, items: list) -> list[list[int]]:
        """/predict's inputs: a text, or a (text, text_pair), each."""
        pairs = [isinstance(i, (tuple, list)) for i in items]
        if self._chat is not None:
            if not all(pairs):
                raise ValueError("a causal-LM reranker scores (query, document) pairs, not "
                                 "single texts")
            return [self._chat.pairs(a, [b])[0] for a, b in items]
        out: list = [None] * len(items)
        singles = [i for i, p in enumerate(pairs) if not p]
        doubles = [i for i, p in enumerate(pairs) if p]
        if singles:
            for i, ids in zip(singles, self._encode([items[i] for i in singles])):
                out[i] = ids
        if doubles:
            for i, ids in zip(doubles, self._encode([tuple(items[i]) for i in doubles])):
                out[i] = ids
        return out

    def _encode(self, items: list) -> list[list[int]]:
        """Encoder pairs or single texts (one kind per call)."""
        if self._pairs is not None:
            if items and isinstance(items[0], tuple):
                return self._pairs.pairs(items)
            return self._pairs.singles(items)
        with self._tok_lock:  # transformers' slow tokenizer: whole texts, one at a time
            if items and isinstance(items[0], tuple):
                enc = self._slow([a for a, _ in items], [b for _, b in items], truncation=True,
                                 max_length=self.max_length)
            else:
                enc = self._slow(items, truncation=True, max_length=self.max_length)
        return [list(ids) for ids in enc["input_ids"]]

    def most_tokens(self, query: str, documents: list[str],
                    instruction: str | None = None) -> int:
        """An upper bound on the tokens tokenize_pairs gives, at no tokenizing cost."""
        if self._chat is not None:
            return sum(self._chat.most_tokens(query, d, instruction) for d in documents)
        if self._pairs is not None:
            return sum(self._pairs.most_tokens(query, d) for d in documents)
        return len(documents) * self.max_length

    # --- scores -------------------------------------------------------------------------------
    def score(self, rows: list[list[int]]) -> np.ndarray:
        """Rows of token ids -> (rows, num_labels) float32 raw logits, in the rows' order."""
        if not rows:
            return np.zeros((0, self.num_labels), dtype=np.float32)
        return self.encoder.in_lanes([len(r) for r in rows],
                                     lambda part: self._forward([rows[i] for i in part]))

    def _token_types(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
        if self._sep_id is None:
            return None
        first_sep = np.argmax(ids == self._sep_id, axis=1)
        has = (ids == self._sep_id).any(axis=1)
        after = np.arange(ids.shape[1])[None, :] > first_sep[:, None]
        return (after & has[:, None] & (mask > 0)).astype(np.int32)

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        """One forward pass on the calling thread's MLX stream, then the head."""
        import mlx.core as mx

        width = max(len(r) for r in batch)
        ids = np.full((len(batch), width), self.pad_id, dtype=np.int32)
        mask = np.zeros((len(batch), width), dtype=np.int32)
        for row, seq in enumerate(batch):  # right padding: real tokens first
            ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        hidden = self.encoder.hidden_states(ids, mask, self._token_types(ids, mask))
        reads = self.head.reads
        if reads == "first":
            states = hidden[:, 0, :]
        elif reads == "last":
            last = mx.array(np.maximum(mask.sum(axis=1) - 1, 0).astype(np.int32))
            states = mx.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0, :]
        else:
            m = mx.array(mask, dtype=mx.float32)[:, :, None]
            states = (hidden.astype(mx.float32) * m).sum(axis=1) / mx.maximum(m.sum(axis=1), 1)
        states = states.astype(mx.float32)
        mx.eval(states)
        return np.asarray(self.head(np.array(states, dtype=np.float32)), dtype=np.float32)

    # --- activation ---------------------------------------------------------------------------
    def activate(self, logits, raw: bool = False) -> np.ndarray:
        """The scores sentence-transformers' predict gives: the folder's activation of the
        logits (raw: the logits themselves)."""
        x = np.asarray(logits, dtype=np.float32)
        return x if raw else apply_activation(self.activation, x)

    @staticmethod
    def softmax(logits) -> np.ndarray:
        return softmax(logits)
