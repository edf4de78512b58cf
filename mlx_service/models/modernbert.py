"""ModernBERT's encoder, ours: mlx-embeddings 0.1.0's `Model` returns a pooled vector in
`last_hidden_state` (so nothing can pool it again) and uses the tanh GELU; this one returns
every token's state and follows transformers' ModernBertModel: RoPE (rotate-half), global
attention every `global_attn_every_n_layers` layers and a sliding window of
`local_attention` tokens in the others (each with its own rope theta), a gated GELU MLP,
LayerNorms without bias by default. Parameter names are the checkpoint's (no "model."
prefix: the loader strips it), so nn.quantize and MLX-quantized folders work unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

MASK_VALUE = -1e9  # what transformers adds to masked scores (finite: no NaN on empty rows)


@dataclass(frozen=True)
class ModernBertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    norm_eps: float = 1e-5
    norm_bias: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    global_attn_every_n_layers: int = 3
    local_attention: int = 128
    global_rope_theta: float = 160000.0
    local_rope_theta: float = 10000.0
    hidden_activation: str = "gelu"
    layer_types: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, cfg: dict) -> "ModernBertConfig":
        rope = cfg.get("rope_parameters") or {}  # transformers 5 nests the thetas here
        global_theta = (rope.get("full_attention") or {}).get("rope_theta") \
            or cfg.get("global_rope_theta") or 160000.0
        local_theta = (rope.get("sliding_attention") or {}).get("rope_theta") \
            or cfg.get("local_rope_theta") or 10000.0
        names = set(cls.__dataclass_fields__) - {"global_rope_theta", "local_rope_theta",
                                                 "layer_types"}
        return cls(**{k: cfg[k] for k in names if k in cfg}, global_rope_theta=global_theta,
                   local_rope_theta=local_theta, layer_types=tuple(cfg.get("layer_types") or ()))

    def is_sliding(self, layer: int) -> bool:
        if self.layer_types:
            return self.layer_types[layer] == "sliding_attention"
        return layer % self.global_attn_every_n_layers != 0


def activation(name: str) -> nn.Module:
    # transformers' ACT2FN: "gelu" is the exact (erf) GELU, "gelu_new"/"gelu_pytorch_tanh" tanh.
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return nn.GELU(approx="precise")
    if name == "gelu":
        return nn.GELU()
    if name == "silu":
        return nn.SiLU()
    raise ValueError(f"ModernBERT hidden_activation {name!r} is not supported")


class Embeddings(nn.Module):
    def __init__(self, c: ModernBertConfig):
        super().__init__()
        self.tok_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.norm_eps, bias=c.norm_bias)

    def __call__(self, ids):
        return self.norm(self.tok_embeddings(ids))


class Attention(nn.Module):
    def __init__(self, c: ModernBertConfig, layer: int):
        super().__init__()
        self.heads = c.num_attention_heads
        self.head_dim = c.hidden_size // c.num_attention_heads
        self.sliding = c.is_sliding(layer)
        theta = c.local_rope_theta if self.sliding else c.global_rope_theta
        self.rope = nn.RoPE(self.head_dim, traditional=False, base=theta)
        self.Wqkv = nn.Linear(c.hidden_size, 3 * c.hidden_size, bias=c.attention_bias)
        self.Wo = nn.Linear(c.hidden_size, c.hidden_size, bias=c.attention_bias)

    def __call__(self, x, global_mask, sliding_mask):
        batch, width, _ = x.shape
        qkv = self.Wqkv(x).reshape(batch, width, 3, self.heads, self.head_dim)
        qkv = qkv.transpose(2, 0, 3, 1, 4)  # (3, batch, heads, tokens, head_dim)
        q, k, v = self.rope(qkv[0]), self.rope(qkv[1]), qkv[2]
        mask = sliding_mask if self.sliding else global_mask
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.head_dim ** -0.5,
                                                   mask=mask)
        return self.Wo(out.transpose(0, 2, 1, 3).reshape(batch, width, -1))


class Mlp(nn.Module):
    def __init__(self, c: ModernBertConfig):
        super().__init__()
        self.Wi = nn.Linear(c.hidden_size, 2 * c.intermediate_size, bias=c.mlp_bias)
        self.Wo = nn.Linear(c.intermediate_size, c.hidden_size, bias=c.mlp_bias)
        self.act = activation(c.hidden_activation)

    def __call__(self, x):
        inner, gate = mx.split(self.Wi(x), 2, axis=-1)
        return self.Wo(self.act(inner) * gate)


class Layer(nn.Module):
    def __init__(self, c: ModernBertConfig, layer: int):
        super().__init__()
        # The first layer's attention norm is the identity (the embeddings were just normed).
        self.attn_norm = (nn.LayerNorm(c.hidden_size, eps=c.norm_eps, bias=c.norm_bias)
                          if layer else None)
        self.attn = Attention(c, layer)
        self.mlp_norm = nn.LayerNorm(c.hidden_size, eps=c.norm_eps, bias=c.norm_bias)
        self.mlp = Mlp(c)

    def __call__(self, x, global_mask, sliding_mask):
        normed = self.attn_norm(x) if self.attn_norm is not None else x
        x = x + self.attn(normed, global_mask, sliding_mask)
        return x + self.mlp(self.mlp_norm(x))


class ModernBert(nn.Module):
    """`self(ids, attention_mask) -> (batch, tokens, hidden)`: every token's last state."""

    def __init__(self, c: ModernBertConfig):
        super().__init__()
        self.config = c
        self.embeddings = Embeddings(c)
        self.layers = [Layer(c, i) for i in range(c.num_hidden_layers)]
        self.final_norm = nn.LayerNorm(c.hidden_size, eps=c.norm_eps, bias=c.norm_bias)

    def masks(self, attention_mask, dtype):
        width = attention_mask.shape[1]
        keys = mx.where(attention_mask[:, None, None, :] > 0, 0.0, MASK_VALUE).astype(dtype)
        positions = mx.arange(width)
        near = mx.abs(positions[None, :] - positions[:, None]) <= self.config.local_attention // 2
        sliding = mx.where(near[None, None], keys, MASK_VALUE).astype(dtype)
        return keys, sliding

    def __call__(self, ids, attention_mask=None):
        if attention_mask is None:
            attention_mask = mx.ones(ids.shape, dtype=mx.int32)
        x = self.embeddings(ids)
        global_mask, sliding_mask = self.masks(attention_mask, x.dtype)
        for layer in self.layers:
            x = layer(x, global_mask, sliding_mask)
        return self.final_norm(x)

    @staticmethod
    def sanitize(weights: dict) -> dict:
        """Checkpoint names -> ours: ModernBertModel's as they are; a "model." prefix
        (ModernBertForMaskedLM, mlx-embeddings' converted folders) stripped; heads dropped."""
        out = {}
        for key, value in weights.items():
            if key.startswith("model."):
                key = key[len("model."):]
            if key.startswith(("head.", "decoder.", "classifier.")):
                continue
            out[key] = value
        return out


def build(cfg: dict):
    """The model for a config.json and its weight-name sanitizer (models/loading.py)."""
    return ModernBert(ModernBertConfig.from_dict(cfg)), ModernBert.sanitize
