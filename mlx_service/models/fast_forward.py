"""Which fast forward pass runs a model on the CPU: the one its architecture's entry names
(models/architectures.py `fast`), when that module's `supports(model)` says the loaded
model can take it:

- BERT, XLM-R and DistilBERT (on BERT's layers): mlx_service/models/fast_bert.py's CpuBertForward
  (the same layers; XLM-R's embeddings count positions from padding_idx + 1 themselves);
- Qwen3, Qwen2 and Mistral: mlx_service/models/fast_qwen3.py; ModernBERT:
  mlx_service/models/fast_modernbert.py; MPNet: mlx_service/models/fast_mpnet.py (BERT's
  pass with a relative position bias); Gemma 3: mlx_service/models/fast_gemma3.py.

Each has `use(precision)` / `forget(precision)` (mlx_service/kernels/gemm.py's precisions) and
`__call__(ids, mask) -> last hidden state`. Quantized models, and activations a fast pass
does not implement exactly, keep the MLX layers (None here).
"""
from __future__ import annotations

import importlib

from mlx_service.models.architectures import Architecture


def build(model, arch: Architecture):
    """The fast forward pass for this MLX module of that architecture, or None."""
    if arch.fast is None:
        return None
    module_name, class_name = arch.fast.split(":")
    module = importlib.import_module(module_name)
    if not module.supports(model):
        return None
    return getattr(module, class_name)(model)
