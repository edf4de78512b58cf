"""Weights into an MLX module, as published: heads the embedding never uses (pooler, LM
head) may be missing or present, names may carry a wrapper's prefix, files may be float32,
float16 or bfloat16, single or sharded, or MLX-quantized (config.json "quantization").

mlx-embeddings 0.1.0's `load_model` is strict (a checkpoint without a pooler fails) and
always pools with its own choice; here its layers are built and filled leniently, and a
weight the forward pass needs but the folder lacks is still an error that names it.
"""
from __future__ import annotations

import importlib
import logging

from mlx_service.models.architectures import Architecture, architecture_of
from mlx_service.models.folder import ModelError, ModelSpec, read_config
from mlx_service.models.library import layers

log = logging.getLogger("mlx_service.models")

# Parameters of heads no embedding uses: absent from many published checkpoints.
UNUSED_HEADS = ("pooler.", "lm_head.", "head.", "decoder.", "classifier.", "cls.")
# Prefixes a wrapper class adds to the encoder's names (BertForMaskedLM: "bert.", ...).
WRAPPER_PREFIXES = ("bert.", "roberta.", "xlm_roberta.", "model.", "encoder_model.")


def build_module(arch: Architecture, cfg: dict):
    """The architecture's MLX module with random weights, and its name sanitizer."""
    if arch.library_module is None:  # ours: the module builds itself
        return importlib.import_module(arch.layers).build(cfg)
    module = layers(arch.library_module)
    args = module.ModelArgs.from_dict(cfg)
    model = module.Model(args)
    return model, getattr(model, "sanitize", lambda w: w)


def read_tensors(spec: ModelSpec) -> dict:
    import mlx.core as mx

    weights: dict = {}
    for path in spec.weights.files:
        try:
            weights.update(mx.load(str(path)))
        except Exception as exc:  # MLX's loader says what is wrong with the bytes
            raise ModelError(f"cannot read {path.name}: {exc}") from None
    return weights


def match_names(weights: dict, expected: set[str]) -> dict:
    """Strip a wrapper's prefix where that is what makes the names match."""
    if not expected or any(k in expected for k in weights):
        return weights
    for prefix in WRAPPER_PREFIXES:
        stripped = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in weights.items()}
        if any(k in expected for k in stripped):
            return stripped
    return weights


def load_module(spec: ModelSpec, cpu: bool):
    """(MLX module, the folder's dtype as computed) with the folder's weights loaded."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten, tree_map

    cfg = spec.config or read_config(spec.path)  # read once by models/folder.py
    arch = architecture_of(cfg["model_type"])
    model, sanitize = build_module(arch, cfg)
    weights = read_tensors(spec)
    weights = sanitize(weights)
    # Names first (a classifier's "bert."/"roberta." prefix), so that a quantized folder's
    # scales are found at the module paths nn.quantize asks about.
    weights = match_names(weights, {k for k, _ in tree_flatten(model.parameters())})
    quant = spec.quantization
    if quant:
        nn.quantize(model, group_size=quant["group_size"], bits=quant["bits"],
                    mode=quant.get("mode", "affine"),
                    class_predicate=lambda p, m: (hasattr(m, "to_quantized")
                                                  and f"{p}.scales" in weights))
    expected = {k for k, _ in tree_flatten(model.parameters())}
    weights = match_names(weights, expected)
    missing = sorted(k for k in expected - weights.keys() if not k.startswith(UNUSED_HEADS))
    if missing:
        raise ModelError(f"the weights lack {len(missing)} parameter(s) the {arch.name} model "
                         f"needs ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
    unused = sorted(weights.keys() - expected)
    if unused:
        log.info("ignoring %d tensor(s) the embedding does not use (%s)", len(unused),
                 ", ".join(unused[:3]))
    model.load_weights([(k, v) for k, v in weights.items() if k in expected], strict=False)
    dtype = spec.weights.dtype if spec.weights else "float32"
    if cpu:
        # Half-precision matmuls on a CPU are slow and lose precision: compute in float32.
        halves = (mx.float16, mx.bfloat16)
        model.update(tree_map(lambda p: p.astype(mx.float32) if p.dtype in halves else p,
                              model.parameters()))
        if dtype in ("float16", "bfloat16"):
            dtype = f"float32 (from {dtype})"
    mx.eval(model.parameters())
    model.eval()
    return model, dtype


def load_dense(spec: ModelSpec) -> list:
    """The folder's sentence-transformers Dense modules as (weight, bias or None, activation)
    MLX triples, in float32 (their weights are tiny next to the transformer's)."""
    import mlx.core as mx

    from mlx_service.models.activations import mlx_function

    out = []
    for layer in spec.modules.dense:
        try:
            tensors = mx.load(str(layer.weights))
        except Exception as exc:  # MLX's loader says what is wrong with the bytes
            raise ModelError(f"cannot read {layer.path}/{layer.weights.name}: {exc}") from None
        weight = tensors["linear.weight"].astype(mx.float32)
        bias = tensors["linear.bias"].astype(mx.float32) if layer.bias else None
        out.append((weight, bias, mlx_function(layer.activation)))
    mx.eval([w for w, _, _ in out] + [b for _, b, _ in out if b is not None])
    return out
