"""Gemma 3's text encoder, ours, as transformers' Gemma3TextModel runs it for EmbeddingGemma
(`use_bidirectional_attention`: every token sees the whole text on full-attention layers,
and the tokens less than `sliding_window` away on either side on sliding ones). mlx-embeddings
0.1.0's gemma3_text needs mlx-lm and gives every layer the same full mask, which is wrong
on sliding layers once a text is longer than the window.

Gemma's own pieces: embeddings scaled by sqrt(hidden_size), RMSNorms that multiply by
(1 + weight), q/k RMSNorm per head, queries scaled by query_pre_attn_scalar^-0.5, norms
before and after both attention and MLP, a gated tanh-GELU MLP, and rotary positions with
one base for sliding layers and another for full ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from mlx_service.models.activations import hidden_activation, mlx_function
from mlx_service.models.decoder import additive_mask, rope_settings


@dataclass(frozen=True)
class Gemma3Config:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    rms_norm_eps: float
    query_pre_attn_scalar: float
    sliding_window: int
    sliding: tuple[bool, ...]     # per layer
    bidirectional: bool
    activation: str
    softcap: float | None
    rope_full: tuple[float, float]     # (base, scale)
    rope_sliding: tuple[float, float]

    @classmethod
    def from_dict(cls, cfg: dict) -> "Gemma3Config":
        layers = cfg["num_hidden_layers"]
        types = cfg.get("layer_types")
        if types:
            sliding = tuple(t == "sliding_attention" for t in types)
        else:  # older files: every pattern-th layer is a full one
            pattern = cfg.get("sliding_window_pattern") or cfg.get("_sliding_window_pattern") or 6
            sliding = tuple((i + 1) % pattern != 0 for i in range(layers))
        act = hidden_activation(cfg.get("hidden_activation") or cfg.get("hidden_act")
                                or "gelu_pytorch_tanh")
        if act is None:
            raise ValueError(f"Gemma 3 hidden_activation {cfg.get('hidden_activation')!r} "
                             "is not supported")
        heads = cfg["num_attention_heads"]
        head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
        window = cfg.get("sliding_window") or 4096
        if cfg.get("use_bidirectional_attention"):
            # transformers' Gemma3TextConfig: config.json's window is the span both sides
            # together; a token sees keys less than window // 2 + 1 away on either side.
            window = window // 2 + 1
        local = (rope_settings(cfg, "sliding_attention", "rope_local_base_freq")
                 if isinstance((cfg.get("rope_parameters") or {}).get("sliding_attention"), dict)
                 else (float(cfg.get("rope_local_base_freq") or 10000.0), 1.0))
        return cls(vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
                   num_hidden_layers=layers, num_attention_heads=heads,
                   num_key_value_heads=cfg.get("num_key_value_heads") or heads,
                   head_dim=head_dim, intermediate_size=cfg["intermediate_size"],
                   rms_norm_eps=cfg.get("rms_norm_eps", 1e-6),
                   query_pre_attn_scalar=cfg.get("query_pre_attn_scalar") or head_dim,
                   sliding_window=window, sliding=sliding,
                   bidirectional=bool(cfg.get("use_bidirectional_attention")), activation=act,
                   softcap=cfg.get("attn_logit_softcapping"),
                   rope_full=rope_settings(cfg, "full_attention"), rope_sliding=local)


class RMSNorm(nn.Module):
    """Gemma's: x / rms(x) * (1 + weight)."""

    def __init__(self, dims: int, eps: float):
        super().__init__()
        self.weight = mx.zeros((dims,))
        self.eps = eps

    def __call__(self, x):
        return mx.fast.rms_norm(x, 1.0 + self.weight, self.eps)


class Attention(nn.Module):
    def __init__(self, c: Gemma3Config, layer: int):
        super().__init__()
        self.num_heads, self.num_key_value_heads = c.num_attention_heads, c.num_key_value_heads
        self.head_dim = c.head_dim
        self.is_sliding = c.sliding[layer]
        self.scale = c.query_pre_attn_scalar ** -0.5
        self.softcap = c.softcap
        self.q_proj = nn.Linear(c.hidden_size, c.num_attention_heads * c.head_dim, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, bias=False)
        self.o_proj = nn.Linear(c.num_attention_heads * c.head_dim, c.hidden_size, bias=False)
        self.q_norm = RMSNorm(c.head_dim, c.rms_norm_eps)
        self.k_norm = RMSNorm(c.head_dim, c.rms_norm_eps)
        base, scale = c.rope_sliding if self.is_sliding else c.rope_full
        self.rotary_emb = nn.RoPE(c.head_dim, traditional=False, base=base, scale=scale)

    def __call__(self, x, mask):
        batch, width, _ = x.shape

        def heads(t, n):
            return t.reshape(batch, width, n, self.head_dim).transpose(0, 2, 1, 3)
        q = self.rotary_emb(self.q_norm(heads(self.q_proj(x), self.num_heads)))
        k = self.rotary_emb(self.k_norm(heads(self.k_proj(x), self.num_key_value_heads)))
        v = heads(self.v_proj(x), self.num_key_value_heads)
        if self.softcap is None:
            out = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask)
        else:  # tanh soft-capping of the scores: no fused kernel takes it
            groups = self.num_heads // self.num_key_value_heads
            k, v = mx.repeat(k, groups, axis=1), mx.repeat(v, groups, axis=1)
            scores = (q * self.scale) @ k.transpose(0, 1, 3, 2)
            scores = mx.tanh(scores / self.softcap) * self.softcap + mask
            out = mx.softmax(scores, axis=-1, precise=True) @ v
        return self.o_proj(out.transpose(0, 2, 1, 3).reshape(batch, width, -1))


class Mlp(nn.Module):
    def __init__(self, c: Gemma3Config):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)
        self.act = mlx_function(c.activation)

    def __call__(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c: Gemma3Config, layer: int):
        super().__init__()
        self.self_attn = Attention(c, layer)
        self.mlp = Mlp(c)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.pre_feedforward_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_feedforward_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)

    def __call__(self, x, mask):
        x = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), mask))
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))


class Gemma3Model(nn.Module):
    def __init__(self, c: Gemma3Config):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = [Layer(c, i) for i in range(c.num_hidden_layers)]
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class Gemma3(nn.Module):
    """`self(ids, attention_mask) -> (batch, tokens, hidden)`: every token's last state."""

    def __init__(self, c: Gemma3Config):
        super().__init__()
        self.config = c
        self.model = Gemma3Model(c)

    def masks(self, attention_mask, dtype):
        c = self.config
        causal = not c.bidirectional
        full = additive_mask(attention_mask, dtype, causal=causal)
        sliding = additive_mask(attention_mask, dtype, causal=causal, window=c.sliding_window,
                                 symmetric_window=c.bidirectional)
        return full, sliding

    def __call__(self, ids, attention_mask=None):
        if attention_mask is None:
            attention_mask = mx.ones(ids.shape, dtype=mx.int32)
        weight = self.model.embed_tokens.weight
        x = self.model.embed_tokens(ids)
        # The scale rounded to the embeddings' dtype, as transformers multiplies.
        x = x * mx.array(self.config.hidden_size ** 0.5, dtype=weight.dtype).astype(x.dtype)
        full, sliding = self.masks(attention_mask, x.dtype)
        for layer in self.model.layers:
            x = layer(x, sliding if layer.self_attn.is_sliding else full)
        return self.model.norm(x)

    @staticmethod
    def sanitize(weights: dict) -> dict:
        """Gemma3TextModel's names gain "model."; a "language_model." wrapper and the LM
        head are dropped."""
        out = {}
        for key, value in weights.items():
            key = key.replace("language_model.", "")
            if key.startswith("lm_head.") or "rotary_emb" in key:
                continue
            out[key if key.startswith("model.") else f"model.{key}"] = value
        return out


def build(cfg: dict):
    """The model for a config.json and its weight-name sanitizer (models/loading.py)."""
    return Gemma3(Gemma3Config.from_dict(cfg)), Gemma3.sanitize
