"""Which fast forward pass runs a model on the CPU (one module per architecture):

- BERT, XLM-R and DistilBERT (on BERT's layers): mlx_service/cpu_fast.py's CpuBertForward
  (the same layers; XLM-R's embeddings count positions from padding_idx + 1 themselves);
- Qwen3, Qwen2 and Mistral: mlx_service/models/fast_qwen3.py; ModernBERT:
  mlx_service/models/fast_modernbert.py; MPNet: mlx_service/models/fast_mpnet.py (BERT's
  pass with a relative position bias).

Each has `use(precision)` / `forget(precision)` (mlx_service/gemm.py's precisions) and
`__call__(ids, mask) -> last hidden state`. Quantized models, and activations a fast pass
does not implement exactly, keep the MLX layers (None here).
"""
from __future__ import annotations

from mlx_service import cpu_fast
from mlx_service.models import fast_modernbert, fast_mpnet, fast_qwen3


def build(model):
    """The fast forward pass for this MLX module, or None."""
    if cpu_fast.supports(model):
        return cpu_fast.CpuBertForward(model)
    if fast_qwen3.supports(model):
        return fast_qwen3.CpuQwen3Forward(model)
    if fast_modernbert.supports(model):
        return fast_modernbert.CpuModernBertForward(model)
    if fast_mpnet.supports(model):
        return fast_mpnet.CpuMPNetForward(model)
    return None
