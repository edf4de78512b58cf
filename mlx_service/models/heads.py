"""The scoring heads on top of an encoder's last hidden states, as transformers computes them,
in float32 numpy (a head is one or two small matmuls per row):

- bert:        BertForSequenceClassification: pooler (dense + tanh) on the first token, then
               classifier;
- roberta:     XLM-R/RoBERTa's classification head: dense + tanh + out_proj on <s>;
- modernbert:  ModernBertForSequenceClassification: the first token's state (classifier_pooling
               cls) or the mean over real tokens (mean), then head (dense, activation,
               LayerNorm) and classifier;
- logit-score: a causal LM with sentence-transformers' LogitScore: the last real position's
               logit of the true token less the false one's; only those two rows of the LM
               head (its own, or the tied embedding table) are ever read.

Each head says which position it reads (`reads`: first, mean or last) so the scorer reduces
the (rows, tokens, hidden) states in MLX before anything is copied out. MLX-quantized head
tensors (`<name>.scales` beside them) are dequantized here, once.
"""
from __future__ import annotations

import math

import numpy as np

from mlx_service.models.folder import ModelError
from mlx_service.models.scorer_folder import ScorerSpec, find_tensor


def _tensors(spec: ScorerSpec, names: list[str]) -> dict:
    """name -> MLX array for the named tensors (and their quantization companions)."""
    import mlx.core as mx

    wanted = set(names)
    for name in names:
        stem = name.rsplit(".", 1)[0]
        wanted |= {f"{stem}.scales", f"{stem}.biases"}
    out = {}
    for path in spec.weights.files:
        loaded = mx.load(str(path))  # lazy: only what is read below is
        out.update({k: v for k, v in loaded.items() if k in wanted})
    return out


def _float(tensors: dict, name: str, spec: ScorerSpec, rows: list[int] | None = None):
    """A weight as float32 numpy (rows: only these rows), dequantized when it is quantized."""
    import mlx.core as mx

    value = tensors[name]
    stem = name.rsplit(".", 1)[0]
    scales = tensors.get(f"{stem}.scales")
    take = (lambda a: a[mx.array(rows)]) if rows is not None else (lambda a: a)
    if scales is not None and name.endswith(".weight"):
        quant = spec.quantization or {}
        value = mx.dequantize(take(value), take(scales), take(tensors[f"{stem}.biases"]),
                              group_size=quant.get("group_size", 64), bits=quant.get("bits", 8))
    else:
        value = take(value)
    return np.array(value.astype(mx.float32), dtype=np.float32)


def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    out = x @ weight.T
    return out + bias if bias is not None else out


def _gelu(x: np.ndarray) -> np.ndarray:
    from mlx_service.models.fast_bert import gelu_erf_
    return gelu_erf_(np.ascontiguousarray(x, dtype=np.float32))


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(np.float32(math.sqrt(2 / math.pi)) * (x + 0.044715 * x ** 3)))


# transformers' ACT2FN names a ModernBERT head may use.
HEAD_ACTIVATIONS = {"gelu": _gelu, "gelu_new": _gelu_tanh, "gelu_pytorch_tanh": _gelu_tanh,
                    "gelu_fast": _gelu_tanh, "tanh": np.tanh, "relu": lambda x: np.maximum(x, 0),
                    "silu": lambda x: x / (1 + np.exp(-x)), "identity": lambda x: x}


class Head:
    reads = "first"  # which position's state the head needs: first, mean or last

    def __call__(self, states: np.ndarray) -> np.ndarray:  # (rows, hidden) -> (rows, labels)
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class BertHead(Head):
    def __init__(self, spec: ScorerSpec, t: dict):
        names = t.keys()
        self.pool_w = _float(t, find_tensor(names, "bert.pooler.dense.weight"), spec)
        self.pool_b = _float(t, find_tensor(names, "bert.pooler.dense.bias"), spec)
        self.w, self.b = _float(t, "classifier.weight", spec), _float(t, "classifier.bias", spec)

    def __call__(self, states):
        return _linear(np.tanh(_linear(states, self.pool_w, self.pool_b)), self.w, self.b)

    def describe(self):
        return "pooler (dense + tanh) on the first token, classifier"


class RobertaHead(Head):
    def __init__(self, spec: ScorerSpec, t: dict):
        self.dense_w = _float(t, "classifier.dense.weight", spec)
        self.dense_b = _float(t, "classifier.dense.bias", spec)
        self.out_w = _float(t, "classifier.out_proj.weight", spec)
        self.out_b = _float(t, "classifier.out_proj.bias", spec)

    def __call__(self, states):
        return _linear(np.tanh(_linear(states, self.dense_w, self.dense_b)), self.out_w,
                       self.out_b)

    def describe(self):
        return "classifier.dense + tanh + out_proj on <s>"


class ModernBertHead(Head):
    def __init__(self, spec: ScorerSpec, t: dict):
        cfg = spec.config
        self.reads = "mean" if spec.classifier_pooling == "mean" else "first"
        act = str(cfg.get("classifier_activation") or "gelu")
        if act not in HEAD_ACTIVATIONS:
            raise ModelError(f"config.json's classifier_activation {act!r} is not supported "
                             f"({', '.join(HEAD_ACTIVATIONS)})")
        self.act_name, self.act = act, HEAD_ACTIVATIONS[act]
        self.eps = float(cfg.get("norm_eps") or 1e-5)
        opt = lambda n: _float(t, n, spec) if n in t else None  # noqa: E731
        self.dense_w, self.dense_b = _float(t, "head.dense.weight", spec), opt("head.dense.bias")
        self.norm_w, self.norm_b = _float(t, "head.norm.weight", spec), opt("head.norm.bias")
        self.w, self.b = _float(t, "classifier.weight", spec), opt("classifier.bias")

    def __call__(self, states):
        x = self.act(_linear(states, self.dense_w, self.dense_b))
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        x = (x - mean) / np.sqrt(var + np.float32(self.eps)) * self.norm_w
        if self.norm_b is not None:
            x = x + self.norm_b
        return _linear(x, self.w, self.b)

    def describe(self):
        where = "mean of the tokens" if self.reads == "mean" else "first token"
        return f"head (dense, {self.act_name}, LayerNorm) on the {where}, classifier"


class LogitScoreHead(Head):
    reads = "last"

    def __init__(self, spec: ScorerSpec, t: dict):
        self.ids = [spec.true_token_id, spec.false_token_id]
        name = "model.embed_tokens.weight" if spec.tied_embeddings else "lm_head.weight"
        self.source = "the tied embedding table" if spec.tied_embeddings else "lm_head"
        self.rows = _float(t, name, spec, rows=self.ids)  # (2, hidden)

    def __call__(self, states):
        logits = states @ self.rows.T  # (rows, 2): the true and false tokens' logits
        return (logits[:, 0] - logits[:, 1])[:, None]

    def describe(self):
        return (f"logit[{self.ids[0]}] - logit[{self.ids[1]}] at the last position "
                f"(two rows of {self.source})")


HEADS = {"bert": (BertHead, ["bert.pooler.dense.weight", "bert.pooler.dense.bias",
                             "pooler.dense.weight", "pooler.dense.bias", "classifier.weight",
                             "classifier.bias"]),
         "roberta": (RobertaHead, ["classifier.dense.weight", "classifier.dense.bias",
                                   "classifier.out_proj.weight", "classifier.out_proj.bias"]),
         "modernbert": (ModernBertHead, ["head.dense.weight", "head.dense.bias",
                                         "head.norm.weight", "head.norm.bias",
                                         "classifier.weight", "classifier.bias"]),
         "logit-score": (LogitScoreHead, ["lm_head.weight", "model.embed_tokens.weight"])}


def load_head(spec: ScorerSpec) -> Head:
    cls, names = HEADS[spec.head]
    head = cls(spec, _tensors(spec, names))
    return head
