"""ModernBERT's forward pass on the CPU fast path: the weights and semantics of
mlx_service/models/modernbert.py (RoPE with a theta per attention kind, global attention
every few layers and a sliding window of `local_attention` tokens in the others, GeGLU with
the exact GELU, LayerNorms), with the matmuls on the chosen BLAS and precision
(mlx_service/kernels/gemm.py) and softmax's exp and GELU's erf in numpy.

Rows come right-padded: padding keys get no weight; padding queries are kept finite, never
pooled.
"""
from __future__ import annotations

import math

import numpy as np

from mlx_service.kernels import gemm
from mlx_service.models.fast_bert import attend, exp_real_rows_, gelu_real_rows_


def supports(model) -> bool:
    """Our ModernBert module with the exact GELU and float Linears (the tanh GELU and
    quantized models keep the MLX layers)."""
    import mlx.nn as nn

    from mlx_service.models.modernbert import ModernBert
    if not isinstance(model, ModernBert) or not model.layers:
        return False
    return all(isinstance(layer.mlp.act, nn.GELU) and getattr(layer.mlp.act, "_approx", None)
               == "none" and all(type(m) is nn.Linear for m in (layer.attn.Wqkv, layer.attn.Wo,
                                                                layer.mlp.Wi, layer.mlp.Wo))
               for layer in model.layers)


class CpuModernBertForward(gemm.LayerKernels):
    """`self(ids, mask) -> last hidden state (mx.array)`, as ModernBert(ids, mask)."""

    def __init__(self, model, precision: str = "fp32", gemm_fn=None):
        self.model = model
        self._window: dict[int, np.ndarray] = {}
        self._half = model.config.local_attention // 2
        super().__init__(model.layers, precision, gemm_fn)

    def _layer_kernels(self, layer, precision: str):
        att, mlp = layer.attn, layer.mlp
        hidden = att.heads * att.head_dim
        # 1/sqrt(head_dim) folded into Q's rows (RoPE is linear: same result)
        scale = 1.0 / math.sqrt(att.head_dim)
        w = att.Wqkv.weight
        b = att.Wqkv.get("bias")
        qkv = gemm.fused([(w[:hidden], None if b is None else b[:hidden]),
                          (w[hidden:], None if b is None else b[hidden:])], precision,
                         self.bf16_gemm, scales=[scale, 1.0])
        out = gemm.Linear(att.Wo.weight, att.Wo.get("bias"), precision, self.bf16_gemm)
        wi = gemm.Linear(mlp.Wi.weight, mlp.Wi.get("bias"), precision, self.bf16_gemm)
        wo = gemm.Linear(mlp.Wo.weight, mlp.Wo.get("bias"), precision, self.bf16_gemm)
        return layer, qkv, out, wi, wo

    def _outside_window(self, length: int):
        if length <= self._half + 1:
            return None  # every pair is within the window
        if length not in self._window:
            pos = np.arange(length)
            self._window[length] = np.abs(pos[None, :] - pos[:, None]) > self._half
        return self._window[length]

    def __call__(self, ids: np.ndarray, mask: np.ndarray):
        mx = self._mx
        batch, width = ids.shape
        lengths = mask.sum(axis=1).astype(np.int64)
        x = self.model.embeddings(mx.array(ids))
        for layer, qkv_k, out_k, wi_k, wo_k in self.layer_kernels:
            att = layer.attn
            heads, d = att.heads, att.head_dim
            hidden = heads * d
            normed = layer.attn_norm(x) if layer.attn_norm is not None else x
            qkv = qkv_k(normed.reshape(batch * width, hidden))
            qkv = qkv.reshape(batch, width, 3, heads, d).transpose(2, 0, 3, 1, 4)
            q, k, v = att.rope(qkv[0]), att.rope(qkv[1]), qkv[2]
            hide = self._outside_window if att.sliding else (lambda _length: None)
            ctx = attend(mx, q, k, v,
                         lambda weights: exp_real_rows_(weights, lengths, hide, self.native))
            ctx = ctx.transpose(0, 2, 1, 3).reshape(batch * width, hidden)
            x = x + out_k(ctx).reshape(batch, width, hidden)
            inner_gate = wi_k(layer.mlp_norm(x).reshape(batch * width, hidden))
            mx.eval(inner_gate)
            both = np.asarray(inner_gate)
            inter = both.shape[1] // 2
            inner = np.ascontiguousarray(both[:, :inter])
            gelu_real_rows_(inner.reshape(batch, width, inter), lengths, self.native)
            inner *= both[:, inter:]
            x = x + wo_k(mx.array(inner)).reshape(batch, width, hidden)
        return self.model.final_norm(x)
