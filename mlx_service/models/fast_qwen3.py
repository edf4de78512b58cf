"""Qwen3's forward pass on the CPU fast path: mlx-embeddings' qwen3 weights and semantics
(RMSNorm, q/k RMSNorm per head, rotary positions, grouped-query attention with the causal
mask, SwiGLU), with the matmuls on the chosen BLAS and precision (mlx_service/kernels/gemm.py) and
the transcendental work (softmax's exp, SiLU's sigmoid) in numpy, where MLX's CPU kernels
are scalar. Qwen2 and Mistral (mlx_service/models/decoder.py: the same attribute names) run
it too: no q/k norm (the attention scale folded into q's weights instead), q/k/v biases
(Qwen2), and Mistral's sliding window hidden with the future keys.

Rows come right-padded (mlx_service/models/embedder.py): positions count from 0 on every
row, a real token attends to the real tokens up to itself, and padding queries are kept
finite but never pooled (last-token pooling takes each row's last real token).
"""
from __future__ import annotations

import math

import numpy as np

from mlx_service.kernels import gemm
from mlx_service.models.fast_bert import attend, exp_real_rows_, writable

SILU_CHUNK = 65536  # float32 elements per numpy pass, as cpu_fast's GELU


def supports(model) -> bool:
    """mlx-embeddings' qwen3 Model (model.model.layers of Qwen3DecoderLayer) or our decoder
    (models/decoder.py), not quantized."""
    try:
        from mlx_service.models import decoder, library
        layer_types = (library.layers("qwen3").Qwen3DecoderLayer, decoder.DecoderLayer)
        layers = list(model.model.layers)
        model.model.embed_tokens, model.model.norm  # noqa: B018 (attribute probes)
    except (ImportError, AttributeError, TypeError):
        return False
    import mlx.nn as nn

    def plain(layer) -> bool:  # float Linears (a quantized model keeps the MLX layers)
        att, mlp = layer.self_attn, layer.mlp
        return all(type(m) is nn.Linear for m in (att.q_proj, att.k_proj, att.v_proj,
                                                  att.o_proj, mlp.gate_proj, mlp.up_proj,
                                                  mlp.down_proj))
    return bool(layers) and all(type(layer) in layer_types and plain(layer) for layer in layers)


def swiglu_rows_(gate_up: np.ndarray, inter: int, native=None) -> np.ndarray:
    """(N, 2I) [gate | up] -> (N, I) silu(gate) * up, written over the gate half; returns
    that half (a strided view; the caller copies it into MLX). `native`:
    mlx_service/kernels/native_math.py's kernels, else numpy's."""
    gate, up = gate_up[:, :inter], gate_up[:, inter:]
    if native is not None:
        native.silu_mul(gate_up, inter)
        return gate
    rows_per_chunk = max(1, SILU_CHUNK // max(inter, 1))
    tmp = np.empty((rows_per_chunk, inter), np.float32)
    for i in range(0, gate.shape[0], rows_per_chunk):
        g, u = gate[i:i + rows_per_chunk], up[i:i + rows_per_chunk]
        t = tmp[:g.shape[0]]
        np.negative(g, out=t)
        np.exp(t, out=t)
        t += np.float32(1.0)
        np.divide(g, t, out=g)  # silu(g) = g / (1 + exp(-g))
        g *= u
    return gate


def future_of(length: int, _cache: dict = {}) -> np.ndarray:  # noqa: B006 (a cache)
    """The causal mask's hidden pairs: key after query."""
    if length not in _cache:
        _cache[length] = np.triu(np.ones((length, length), bool), 1)
    return _cache[length]


def hidden_pairs(window: int | None):
    """The hidden (query, key) pairs of a row of `length` real tokens: the future, and with
    a sliding `window` (Mistral) the keys `window` or more before the query too."""
    if window is None:
        return future_of
    cache: dict = {}

    def hidden(length: int) -> np.ndarray:
        if length not in cache:
            distance = np.arange(length)[:, None] - np.arange(length)[None, :]
            cache[length] = (distance < 0) | (distance >= window)
        return cache[length]
    return hidden


class CpuQwen3Forward(gemm.LayerKernels):
    """`self(ids, mask) -> last hidden state (mx.array)`, as mlx-embeddings' Qwen3Model."""

    def __init__(self, model, precision: str = "fp32", gemm_fn=None):
        self.core = model.model
        from mlx_service.models.decoder import DecoderConfig
        config = getattr(model, "config", None)
        # Only our decoder's config holds a window it uses (models/decoder.py).
        self.hidden = hidden_pairs(config.sliding_window
                                   if isinstance(config, DecoderConfig) else None)
        super().__init__(self.core.layers, precision, gemm_fn)

    def _layer_kernels(self, layer, precision: str):
        att, mlp = layer.self_attn, layer.mlp
        scale = 1.0 / math.sqrt(att.head_dim)
        q_norm = getattr(att, "q_norm", None)
        # 1/sqrt(head_dim): into q's RMSNorm weight where there is one, else into q itself
        # (RoPE is linear: the same result either way).
        qkv = gemm.fused([(att.q_proj.weight, att.q_proj.get("bias")),
                          (att.k_proj.weight, att.k_proj.get("bias")),
                          (att.v_proj.weight, att.v_proj.get("bias"))], precision,
                         self.bf16_gemm, scales=None if q_norm is not None else [scale, 1, 1])
        out = gemm.Linear(att.o_proj.weight, att.o_proj.get("bias"), precision, self.bf16_gemm)
        gate_up = gemm.fused([(mlp.gate_proj.weight, None), (mlp.up_proj.weight, None)],
                             precision, self.bf16_gemm)
        down = gemm.Linear(mlp.down_proj.weight, None, precision, self.bf16_gemm)
        q_norm_w = None
        if q_norm is not None:
            q_norm_w = q_norm.weight * scale
            self._mx.eval(q_norm_w)
        return layer, qkv, out, gate_up, down, q_norm_w

    def _attend(self, q, k, v, lengths, groups: int):
        """softmax(q k^T, causal and padding) v, grouped-query: the G query heads sharing a
        key/value head are stacked along the rows, so K and V are never repeated."""
        return attend(self._mx, q, k, v,
                      lambda weights: exp_real_rows_(weights, lengths, self.hidden, self.native),
                      groups)

    def __call__(self, ids: np.ndarray, mask: np.ndarray):
        mx = self._mx
        batch, width = ids.shape
        lengths = mask.sum(axis=1).astype(np.int64)
        x = self.core.embed_tokens(mx.array(ids))
        for layer, qkv_k, out_k, gate_up_k, down_k, q_norm_w in self.layer_kernels:
            att = layer.self_attn
            heads, kv_heads, d = att.num_heads, att.num_key_value_heads, att.head_dim
            hidden = x.shape[-1]
            h = mx.fast.rms_norm(x, layer.input_layernorm.weight, layer.input_layernorm.eps)
            qkv = qkv_k(h.reshape(batch * width, hidden)).reshape(batch, width, -1)
            q = qkv[..., :heads * d].reshape(batch, width, heads, d)
            k = qkv[..., heads * d:(heads + kv_heads) * d].reshape(batch, width, kv_heads, d)
            v = qkv[..., (heads + kv_heads) * d:].reshape(batch, width, kv_heads, d)
            if q_norm_w is not None:
                q = mx.fast.rms_norm(q, q_norm_w, att.q_norm.eps)
                k = mx.fast.rms_norm(k, att.k_norm.weight, att.k_norm.eps)
            q, k = q.transpose(0, 2, 1, 3), k.transpose(0, 2, 1, 3)
            q = mx.contiguous(att.rotary_emb(q))
            k = att.rotary_emb(k)
            v = v.transpose(0, 2, 1, 3)
            ctx = self._attend(q, k, v, lengths, heads // kv_heads)
            ctx = ctx.transpose(0, 2, 1, 3).reshape(batch * width, heads * d)
            x = x + out_k(ctx).reshape(batch, width, hidden)
            h = mx.fast.rms_norm(x, layer.post_attention_layernorm.weight,
                                 layer.post_attention_layernorm.eps)
            gu = gate_up_k(h.reshape(batch * width, hidden))
            mx.eval(gu)
            gu_np = writable(gu)
            act = swiglu_rows_(gu_np, gu_np.shape[1] // 2, self.native)
            x = x + down_k(mx.array(act)).reshape(batch, width, hidden)
        return mx.fast.rms_norm(x, self.core.norm.weight, self.core.norm.eps)
