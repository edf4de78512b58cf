"""Gemma 3's forward pass on the CPU fast path (models/gemma3.py's semantics): the matmuls
on the chosen BLAS and precision (mlx_service/kernels/gemm.py), softmax's exp in numpy or the native
kernels over the real rows only, and the gated tanh-GELU in numpy, where MLX's CPU kernels
are scalar. Grouped-query attention as fast_qwen3's (query heads stacked per key/value head);
the scale query_pre_attn_scalar^-0.5 folded into q's norm weight, every (1 + weight) of
Gemma's RMSNorms computed once.
"""
from __future__ import annotations

import math

import numpy as np

from mlx_service.kernels import gemm
from mlx_service.models.fast_bert import attend, exp_real_rows_, writable
from mlx_service.models.fast_qwen3 import future_of

GELU_CHUNK = 65536
_SQRT_2_PI = math.sqrt(2.0 / math.pi)


def supports(model) -> bool:
    """Our Gemma 3 with float Linears, tanh-GELU and no soft-capping."""
    try:
        import mlx.nn as nn

        from mlx_service.models import gemma3
        if type(model) is not gemma3.Gemma3:
            return False
        c = model.config
        if c.softcap is not None or c.activation != "gelu_tanh":
            return False
        layers = list(model.model.layers)
        for layer in layers:
            att, mlp = layer.self_attn, layer.mlp
            if not all(type(m) is nn.Linear for m in (att.q_proj, att.k_proj, att.v_proj,
                                                      att.o_proj, mlp.gate_proj, mlp.up_proj,
                                                      mlp.down_proj)):
                return False
        return bool(layers)
    except (ImportError, AttributeError, TypeError):
        return False


def gelu_tanh_mul_rows_(gate_up: np.ndarray, inter: int) -> np.ndarray:
    """(N, 2I) [gate | up] -> gelu_tanh(gate) * up written over the gate half; returns it."""
    gate, up = gate_up[:, :inter], gate_up[:, inter:]
    rows = max(1, GELU_CHUNK // max(inter, 1))
    tmp = np.empty((rows, inter), np.float32)
    for i in range(0, gate.shape[0], rows):
        g, u = gate[i:i + rows], up[i:i + rows]
        t = tmp[:g.shape[0]]
        np.multiply(g, g, out=t)
        t *= np.float32(0.044715)
        t += np.float32(1.0)
        t *= g
        t *= np.float32(_SQRT_2_PI)
        np.tanh(t, out=t)
        t += np.float32(1.0)
        t *= np.float32(0.5)
        g *= t
        g *= u
    return gate


def window_pairs(window: int, causal: bool):
    """The hidden (query, key) pairs of a sliding layer's row of `length` real tokens."""
    cache: dict = {}

    def hidden(length: int) -> np.ndarray:
        if length not in cache:
            distance = np.arange(length)[:, None] - np.arange(length)[None, :]
            far = (distance >= window) if causal else (np.abs(distance) >= window)
            cache[length] = far | (distance < 0) if causal else far
        return cache[length]
    return hidden


class CpuGemma3Forward(gemm.LayerKernels):
    """`self(ids, mask) -> last hidden state (mx.array)`, as models/gemma3.py's Gemma3."""

    def __init__(self, model, precision: str = "fp32", gemm_fn=None):
        import mlx.core as mx

        self.model = model
        self.core = model.model
        c = model.config
        causal = not c.bidirectional
        self.hidden_full = future_of if causal else None
        self.hidden_sliding = window_pairs(c.sliding_window, causal)
        self.final_norm = 1.0 + self.core.norm.weight
        # The scale rounded to the embeddings' dtype, as transformers multiplies.
        self.embed_scale = mx.array(c.hidden_size ** 0.5,
                                    dtype=self.core.embed_tokens.weight.dtype)
        mx.eval(self.final_norm)
        super().__init__(self.core.layers, precision, gemm_fn)

    def _layer_kernels(self, layer, precision: str):
        mx = self._mx
        att, mlp = layer.self_attn, layer.mlp
        qkv = gemm.fused([(att.q_proj.weight, None), (att.k_proj.weight, None),
                          (att.v_proj.weight, None)], precision, self.bf16_gemm)
        out = gemm.Linear(att.o_proj.weight, None, precision, self.bf16_gemm)
        gate_up = gemm.fused([(mlp.gate_proj.weight, None), (mlp.up_proj.weight, None)],
                             precision, self.bf16_gemm)
        down = gemm.Linear(mlp.down_proj.weight, None, precision, self.bf16_gemm)
        norms = [1.0 + n.weight for n in (layer.input_layernorm, layer.post_attention_layernorm,
                                          layer.pre_feedforward_layernorm,
                                          layer.post_feedforward_layernorm)]
        # The attention scale folded into q's norm weight (RoPE is linear: same result).
        q_norm = (1.0 + att.q_norm.weight) * att.scale
        k_norm = 1.0 + att.k_norm.weight
        mx.eval(norms, q_norm, k_norm)
        return layer, qkv, out, gate_up, down, norms, q_norm, k_norm

    def _attend(self, q, k, v, lengths, groups: int, hidden):
        return attend(self._mx, q, k, v,
                      lambda weights: exp_real_rows_(weights, lengths, hidden, self.native),
                      groups)

    def __call__(self, ids: np.ndarray, mask: np.ndarray):
        mx = self._mx
        batch, width = ids.shape
        lengths = mask.sum(axis=1).astype(np.int64)
        x = self.core.embed_tokens(mx.array(ids))
        x = x * self.embed_scale.astype(x.dtype)
        for layer, qkv_k, out_k, gate_up_k, down_k, norms, q_norm, k_norm in self.layer_kernels:
            att = layer.self_attn
            heads, kv_heads, d = att.num_heads, att.num_key_value_heads, att.head_dim
            eps = att.q_norm.eps
            hidden = x.shape[-1]
            h = mx.fast.rms_norm(x, norms[0], layer.input_layernorm.eps)
            qkv = qkv_k(h.reshape(batch * width, hidden)).reshape(batch, width, -1)
            q = qkv[..., :heads * d].reshape(batch, width, heads, d)
            k = qkv[..., heads * d:(heads + kv_heads) * d].reshape(batch, width, kv_heads, d)
            v = qkv[..., (heads + kv_heads) * d:].reshape(batch, width, kv_heads, d)
            q = mx.fast.rms_norm(q, q_norm, eps).transpose(0, 2, 1, 3)
            k = mx.fast.rms_norm(k, k_norm, eps).transpose(0, 2, 1, 3)
            q = mx.contiguous(att.rotary_emb(q))
            k = att.rotary_emb(k)
            v = v.transpose(0, 2, 1, 3)
            ctx = self._attend(q, k, v, lengths, heads // kv_heads,
                               self.hidden_sliding if att.is_sliding else self.hidden_full)
            ctx = ctx.transpose(0, 2, 1, 3).reshape(batch * width, heads * d)
            attn = out_k(ctx).reshape(batch, width, hidden)
            x = x + mx.fast.rms_norm(attn, norms[1], layer.post_attention_layernorm.eps)
            h = mx.fast.rms_norm(x, norms[2], layer.pre_feedforward_layernorm.eps)
            gu = gate_up_k(h.reshape(batch * width, hidden))
            mx.eval(gu)
            gu_np = writable(gu)
            act = gelu_tanh_mul_rows_(gu_np, gu_np.shape[1] // 2)
            mlp = down_k(mx.array(act)).reshape(batch, width, hidden)
            x = x + mx.fast.rms_norm(mlp, norms[3], layer.post_feedforward_layernorm.eps)
        return mx.fast.rms_norm(x, self.final_norm, self.core.norm.eps)
