"""MPNet's forward pass on the CPU fast path: BERT's (mlx_service/models/fast_bert.py: fused Q/K/V
with the scale folded in, softmax's exp and the exact GELU in numpy or the native kernels,
matmuls on the chosen BLAS and precision) with MPNet's relative position bias added to the
scores before the softmax, and its positions counted from padding_idx + 1
(mlx_service/models/mpnet.py's embeddings).
"""
from __future__ import annotations

import math

import numpy as np

from mlx_service.kernels import gemm
from mlx_service.models.fast_bert import (MASK_BIAS, attend, encoder_layer, exp_real_rows_,
                                          exp_rows_, right_padded_lengths)


def supports(model) -> bool:
    """Our MPNet with float Linears (a quantized model keeps the MLX layers) and the exact
    GELU, the one activation this pass runs."""
    try:
        import mlx.nn as nn

        from mlx_service.models import mpnet
        from mlx_service.models.activations import hidden_activation
        if type(model) is not mpnet.MPNet or hidden_activation(model.config.hidden_act) != "gelu":
            return False
        layers = list(model.encoder.layer)
        for layer in layers:
            att = layer.attention.attn
            for linear in (att.q, att.k, att.v, att.o, layer.intermediate.dense,
                           layer.output.dense):
                if type(linear) is not nn.Linear or "bias" not in linear:
                    return False
        return bool(layers)
    except (ImportError, AttributeError, TypeError):
        return False


class CpuMPNetForward(gemm.LayerKernels):
    """`self(ids, mask) -> last hidden state (mx.array)`, as models/mpnet.py's MPNet."""

    def __init__(self, model, precision: str = "fp32", gemm_fn=None):
        self.model = model
        super().__init__(model.encoder.layer, precision, gemm_fn)

    def _layer_kernels(self, layer, precision: str):
        att = layer.attention.attn
        qkv = gemm.fused([(att.q.weight, att.q.bias), (att.k.weight, att.k.bias),
                          (att.v.weight, att.v.bias)], precision, self.bf16_gemm,
                         scales=[1.0 / math.sqrt(att.head_dim), 1.0, 1.0])
        dense = [gemm.Linear(d.weight, d.bias, precision, self.bf16_gemm)
                 for d in (att.o, layer.intermediate.dense, layer.output.dense)]
        return (layer, att.heads, att.head_dim, qkv, *dense)

    def _attend(self, q, k, v, position_bias, lengths, key_bias):
        def exp_weights(weights):
            weights += position_bias  # (1, heads, T, T) over every row
            return (exp_rows_(weights, key_bias) if lengths is None
                    else exp_real_rows_(weights, lengths, native=self.native))
        return attend(self._mx, q, k, v, exp_weights)

    def __call__(self, ids: np.ndarray, mask: np.ndarray):
        mx = self._mx
        width = ids.shape[1]
        x = self.model.embeddings(mx.array(ids), mx.array(mask))
        position_bias = np.asarray(self.model.encoder.position_bias(width).astype(mx.float32))
        lengths = right_padded_lengths(mask)
        key_bias = None
        if lengths is None:
            key_bias = ((1.0 - mask.astype(np.float32)) * np.float32(MASK_BIAS))[:, None, None, :]
        for layer, *kernels in self.layer_kernels:
            x = encoder_layer(mx, x, kernels, (layer.attention.LayerNorm, layer.output.LayerNorm),
                              lambda q, k, v: self._attend(q, k, v, position_bias, lengths,
                                                           key_bias),
                              lengths, self.native)
        return x
