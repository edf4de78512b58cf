"""DistilBERT on mlx-embeddings' BERT layers (the library has no DistilBERT): the same
post-norm encoder without token types, so its config and weight names are renamed onto
BERT's and a zero token-type table added. BERT's CPU fast path then runs it as it is.
"""
from __future__ import annotations

import re

from mlx_service.models.library import layers

EPS = 1e-12  # DistilBERT's LayerNorms, fixed in transformers' code
# DistilBERT's names -> BERT's, after the "transformer.layer.N." prefix.
LAYER_NAMES = {"attention.q_lin": "attention.self.query", "attention.k_lin": "attention.self.key",
               "attention.v_lin": "attention.self.value",
               "attention.out_lin": "attention.output.dense",
               "sa_layer_norm": "attention.output.LayerNorm", "ffn.lin1": "intermediate.dense",
               "ffn.lin2": "output.dense", "output_layer_norm": "output.LayerNorm"}
LAYER_KEY = re.compile(r"^transformer\.layer\.(\d+)\.(.+)\.(weight|bias)$")


def bert_args(cfg: dict) -> dict:
    return {"model_type": "bert", "num_hidden_layers": cfg["n_layers"],
            "num_attention_heads": cfg["n_heads"], "hidden_size": cfg["dim"],
            "intermediate_size": cfg["hidden_dim"],
            "max_position_embeddings": cfg["max_position_embeddings"],
            "vocab_size": cfg["vocab_size"], "type_vocab_size": 1, "layer_norm_eps": EPS}


def sanitize(weights: dict, hidden: int) -> dict:
    import mlx.core as mx

    out = {}
    for key, value in weights.items():
        if key.startswith("distilbert."):
            key = key[len("distilbert."):]
        match = LAYER_KEY.match(key)
        if match and match.group(2) in LAYER_NAMES:
            key = (f"encoder.layer.{match.group(1)}.{LAYER_NAMES[match.group(2)]}."
                   f"{match.group(3)}")
        elif not key.startswith("embeddings."):
            continue  # heads (vocab_*, pre_classifier, classifier, qa_outputs)
        out[key] = value
    dtype = out["embeddings.word_embeddings.weight"].dtype \
        if "embeddings.word_embeddings.weight" in out else mx.float32
    out["embeddings.token_type_embeddings.weight"] = mx.zeros((1, hidden), dtype=dtype)
    return out


def build(cfg: dict):
    """mlx-embeddings' BERT for a DistilBERT config.json, and the renaming sanitizer."""
    import mlx.nn as nn

    bert = layers("bert")
    model = bert.Model(bert.ModelArgs.from_dict(bert_args(cfg)))
    activation = str(cfg.get("activation", "gelu")).lower()
    if activation == "relu":
        for layer in model.encoder.layer:
            layer.intermediate.intermediate_act_fn = nn.ReLU()
    elif activation != "gelu":
        raise ValueError(f"DistilBERT activation {activation!r} is not supported")
    return model, lambda weights: sanitize(weights, cfg["dim"])
