"""Decoder-only embedders, ours (mlx-embeddings 0.1.0 has Qwen3 only): the Llama family's
layers as transformers' Qwen2Model and MistralModel run them (RMSNorm before attention and
MLP, rotary positions, grouped-query attention, SwiGLU), causal, with Mistral's sliding
window where one is set; Qwen2 projects q/k/v with a bias. Attribute names follow
mlx-embeddings' qwen3 module (model.model.layers[i].self_attn.q_proj, ...), parameter names
the checkpoint's after a "model." prefix, as the library's decoders load them.
"""
from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

MASK_VALUE = -1e9


def rope_settings(cfg: dict, layer_type: str | None = None,
                  theta_key: str = "rope_theta") -> tuple[float, float]:
    """(base, scale) for nn.RoPE from config.json, in transformers 5's rope_parameters
    (flat, or per layer type) or the older rope_theta / rope_scaling; only the default and
    linear scalings are served."""
    params = cfg.get("rope_parameters") or {}
    if layer_type and isinstance(params.get(layer_type), dict):
        params = params[layer_type]
    elif any(isinstance(v, dict) for v in params.values()):
        params = {}
    scaling = cfg.get("rope_scaling") or {}
    theta = params.get("rope_theta") or cfg.get(theta_key) or 10000.0
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    factor = params.get("factor") or scaling.get("factor") or 1.0
    if kind == "default":
        return float(theta), 1.0
    if kind == "linear":
        return float(theta), 1.0 / float(factor)
    raise ValueError(f"rope_type {kind!r} is not supported (served: default, linear)")


@dataclass(frozen=True)
class DecoderConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    head_dim: int
    rms_norm_eps: float
    qkv_bias: bool
    rope_base: float
    rope_scale: float
    sliding_window: int | None  # keys more than this far back are hidden (Mistral)

    @classmethod
    def from_dict(cls, cfg: dict, qkv_bias: bool) -> "DecoderConfig":
        heads = cfg["num_attention_heads"]
        window = cfg.get("sliding_window")
        if cfg.get("model_type") == "qwen2" and not cfg.get("use_sliding_window"):
            window = None  # Qwen2 declares a window it uses only when this says so
        if cfg.get("hidden_act", "silu") not in ("silu", "swish"):
            raise ValueError(f"hidden_act {cfg['hidden_act']!r} is not supported (SwiGLU: silu)")
        base, scale = rope_settings(cfg)
        return cls(vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
                   num_hidden_layers=cfg["num_hidden_layers"], num_attention_heads=heads,
                   num_key_value_heads=cfg.get("num_key_value_heads") or heads,
                   intermediate_size=cfg["intermediate_size"],
                   head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
                   rms_norm_eps=cfg.get("rms_norm_eps", 1e-6),
                   qkv_bias=cfg.get("attention_bias", qkv_bias), rope_base=base,
                   rope_scale=scale, sliding_window=window if isinstance(window, int) else None)


class Attention(nn.Module):
    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.num_heads, self.num_key_value_heads = c.num_attention_heads, c.num_key_value_heads
        self.head_dim = c.head_dim
        self.q_proj = nn.Linear(c.hidden_size, c.num_attention_heads * c.head_dim, bias=c.qkv_bias)
        self.k_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, bias=c.qkv_bias)
        self.v_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, bias=c.qkv_bias)
        self.o_proj = nn.Linear(c.num_attention_heads * c.head_dim, c.hidden_size, bias=False)
        self.rotary_emb = nn.RoPE(c.head_dim, traditional=False, base=c.rope_base,
                                  scale=c.rope_scale)

    def __call__(self, x, mask):
        batch, width, _ = x.shape

        def heads(t, n):
            return t.reshape(batch, width, n, self.head_dim).transpose(0, 2, 1, 3)
        q = self.rotary_emb(heads(self.q_proj(x), self.num_heads))
        k = self.rotary_emb(heads(self.k_proj(x), self.num_key_value_heads))
        v = heads(self.v_proj(x), self.num_key_value_heads)
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.head_dim ** -0.5,
                                                   mask=mask)
        return self.o_proj(out.transpose(0, 2, 1, 3).reshape(batch, width, -1))


class Mlp(nn.Module):
    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def __call__(self, x):
        return self.down_proj(nn.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.self_attn = Attention(c)
        self.mlp = Mlp(c)
        self.input_layernorm = nn.RMSNorm(c.hidden_size, eps=c.rms_norm_eps)
        self.post_attention_layernorm = nn.RMSNorm(c.hidden_size, eps=c.rms_norm_eps)

    def __call__(self, x, mask):
        x = x + self.self_attn(self.input_layernorm(x), mask)
        return x + self.mlp(self.post_attention_layernorm(x))


def additive_mask(attention_mask, dtype, causal: bool = True, window: int | None = None,
                   symmetric_window: bool = False):
    """(rows, 1, T, T) additive mask: padding keys hidden; with `causal`, keys after the
    query too; with `window`, keys `window` or more before it (Mistral), or either side of
    it with `symmetric_window` (Gemma 3's bidirectional sliding layers)."""
    width = attention_mask.shape[1]
    visible = attention_mask[:, None, None, :] > 0
    positions = mx.arange(width)
    distance = positions[:, None] - positions[None, :]  # query - key
    allowed = None
    if causal:
        allowed = distance >= 0
    if window is not None:
        near = (mx.abs(distance) < window) if symmetric_window else (distance < window)
        allowed = near if allowed is None else allowed & near
    if allowed is not None:
        visible = visible & allowed[None, None]
    return mx.where(visible, 0.0, MASK_VALUE).astype(dtype)


class DecoderModel(nn.Module):
    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = [DecoderLayer(c) for _ in range(c.num_hidden_layers)]
        self.norm = nn.RMSNorm(c.hidden_size, eps=c.rms_norm_eps)


class Decoder(nn.Module):
    """`self(ids, attention_mask) -> (batch, tokens, hidden)`: every token's last state."""

    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.config = c
        self.model = DecoderModel(c)

    def __call__(self, ids, attention_mask=None):
        if attention_mask is None:
            attention_mask = mx.ones(ids.shape, dtype=mx.int32)
        x = self.model.embed_tokens(ids)
        mask = additive_mask(attention_mask, x.dtype, causal=True,
                             window=self.config.sliding_window)
        for layer in self.model.layers:
            x = layer(x, mask)
        return self.model.norm(x)

    @staticmethod
    def sanitize(weights: dict) -> dict:
        """Qwen2Model/MistralModel names gain "model."; *ForCausalLM's keep theirs; the LM
        head and rotary buffers are dropped."""
        out = {}
        for key, value in weights.items():
            if key.startswith("lm_head.") or "rotary_emb" in key:
                continue
            out[key if key.startswith("model.") else f"model.{key}"] = value
        return out


def build(cfg: dict):
    """The model for a config.json (Qwen2: q/k/v with a bias; Mistral and Llama: without,
    unless attention_bias says so) and its weight-name sanitizer (models/loading.py)."""
    qkv_bias = cfg.get("model_type") == "qwen2"
    return Decoder(DecoderConfig.from_dict(cfg, qkv_bias=qkv_bias)), Decoder.sanitize
