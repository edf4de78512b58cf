"""MPNet's encoder, ours (mlx-embeddings 0.1.0 has none), after transformers' MPNetModel:
BERT's post-norm layers, positions counted from padding_idx + 1 (RoBERTa's way), and a
relative position bias per head (T5-style buckets of key minus query distance) added to
every layer's attention scores. Parameter names are the checkpoint's (all-mpnet-base-v2's
`embeddings.*`, `encoder.layer.N.attention.attn.{q,k,v,o}`, ...), so a quantized folder's
scales load as they are.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_service.models.activations import hidden_activation, mlx_function

MASK_VALUE = -1e9
PADDING_IDX = 1        # MPNetEmbeddings hard-codes it, whatever config.json says
BUCKETS = 32           # compute_position_bias's default, which MPNetEncoder uses
MAX_DISTANCE = 128


@dataclass(frozen=True)
class MPNetConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    layer_norm_eps: float = 1e-5
    relative_attention_num_buckets: int = 32
    hidden_act: str = "gelu"

    @classmethod
    def from_dict(cls, cfg: dict) -> "MPNetConfig":
        return cls(**{k: cfg[k] for k in cls.__dataclass_fields__ if k in cfg})


def relative_buckets(width: int, _cache: dict = {}) -> np.ndarray:  # noqa: B006 (a cache)
    """(width, width) bucket of each (query, key) pair, as MPNetEncoder.relative_position_bucket
    computes it (half the buckets for keys before the query, half after; exact up to 8
    apart, logarithmic beyond, up to MAX_DISTANCE)."""
    if width not in _cache:
        positions = np.arange(width)
        n = -(positions[None, :] - positions[:, None])  # query - key
        half = BUCKETS // 2
        ret = (n < 0).astype(np.int64) * half
        n = np.abs(n)
        exact = half // 2
        with np.errstate(divide="ignore"):
            large = exact + (np.log(np.maximum(n, 1).astype(np.float32) / exact)
                             / math.log(MAX_DISTANCE / exact) * (half - exact)).astype(np.int64)
        large = np.minimum(large, half - 1)
        _cache[width] = (ret + np.where(n < exact, n, large)).astype(np.int32)
    return _cache[width]


class Embeddings(nn.Module):
    def __init__(self, c: MPNetConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def __call__(self, ids, mask):
        # Real tokens count from PADDING_IDX + 1, padding sits at PADDING_IDX (from the mask:
        # the same as transformers' ids != padding_idx for any text the tokenizer makes).
        positions = mx.cumsum(mask, axis=1) * mask + PADDING_IDX
        return self.LayerNorm(self.word_embeddings(ids) + self.position_embeddings(positions))


class SelfAttention(nn.Module):
    def __init__(self, c: MPNetConfig):
        super().__init__()
        self.heads = c.num_attention_heads
        self.head_dim = c.hidden_size // c.num_attention_heads
        self.q = nn.Linear(c.hidden_size, c.hidden_size)
        self.k = nn.Linear(c.hidden_size, c.hidden_size)
        self.v = nn.Linear(c.hidden_size, c.hidden_size)
        self.o = nn.Linear(c.hidden_size, c.hidden_size)

    def __call__(self, x, bias):
        batch, width, _ = x.shape

        def heads(t):
            return t.reshape(batch, width, self.heads, self.head_dim).transpose(0, 2, 1, 3)
        out = mx.fast.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)),
                                                   heads(self.v(x)),
                                                   scale=self.head_dim ** -0.5, mask=bias)
        return self.o(out.transpose(0, 2, 1, 3).reshape(batch, width, -1))


class Attention(nn.Module):
    def __init__(self, c: MPNetConfig):
        super().__init__()
        self.attn = SelfAttention(c)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def __call__(self, x, bias):
        return self.LayerNorm(self.attn(x, bias) + x)


class Intermediate(nn.Module):
    def __init__(self, c: MPNetConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)


class Output(nn.Module):
    def __init__(self, c: MPNetConfig):
        super().__init__()
        self.dense = nn.Linear(c.intermediate_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)


class Layer(nn.Module):
    def __init__(self, c: MPNetConfig):
        super().__init__()
        self.attention = Attention(c)
        self.intermediate = Intermediate(c)
        self.output = Output(c)
        act = hidden_activation(c.hidden_act)
        if act is None:
            raise ValueError(f"MPNet hidden_act {c.hidden_act!r} is not supported")
        self.act = mlx_function(act)

    def __call__(self, x, bias):
        attended = self.attention(x, bias)
        inner = self.act(self.intermediate.dense(attended))
        return self.output.LayerNorm(self.output.dense(inner) + attended)


class Encoder(nn.Module):
    def __init__(self, c: MPNetConfig):
        super().__init__()
        self.layer = [Layer(c) for _ in range(c.num_hidden_layers)]
        self.relative_attention_bias = nn.Embedding(c.relative_attention_num_buckets,
                                                    c.num_attention_heads)

    def position_bias(self, width: int):
        """(1, heads, width, width): the same for every row and layer."""
        buckets = mx.array(relative_buckets(width))
        return self.relative_attention_bias(buckets).transpose(2, 0, 1)[None]


class MPNet(nn.Module):
    """`self(ids, attention_mask) -> (batch, tokens, hidden)`: every token's last state."""

    def __init__(self, c: MPNetConfig):
        super().__init__()
        self.config = c
        self.embeddings = Embeddings(c)
        self.encoder = Encoder(c)

    def __call__(self, ids, attention_mask=None):
        if attention_mask is None:
            attention_mask = mx.ones(ids.shape, dtype=mx.int32)
        x = self.embeddings(ids, attention_mask)
        keys = mx.where(attention_mask[:, None, None, :] > 0, 0.0, MASK_VALUE)
        bias = (self.encoder.position_bias(ids.shape[1]) + keys).astype(x.dtype)
        for layer in self.encoder.layer:
            x = layer(x, bias)
        return x

    @staticmethod
    def sanitize(weights: dict) -> dict:
        """Checkpoint names -> ours: an "mpnet." prefix (MPNetForMaskedLM) stripped, heads
        and position_ids buffers dropped."""
        out = {}
        for key, value in weights.items():
            if key.startswith("mpnet."):
                key = key[len("mpnet."):]
            if key.startswith(("pooler.", "lm_head.", "classifier.")) or "position_ids" in key:
                continue
            out[key] = value
        return out


def build(cfg: dict):
    """The model for a config.json and its weight-name sanitizer (models/loading.py)."""
    return MPNet(MPNetConfig.from_dict(cfg)), MPNet.sanitize
