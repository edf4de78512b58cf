"""The architectures the service serves, and what each needs (after TEI's candle backend,
which keeps one table of the model types it knows).

Pure data: the folder check (no MLX) and the loader read the same table.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    name: str              # the model_type, as mlx-embeddings' module names it
    library_module: str    # mlx_embeddings.models.<this> holds the layers and the weight names
    own_pooling: str       # pooling when the folder has no sentence-transformers Pooling files
    own_pooling_why: str   # why that one, for the log and /info
    forward: str           # "library": mlx-embeddings' layers; "ours": a module of this package
    absolute_positions: bool  # BERT-like: rows must be padded on the right
    position_offset: int = 0  # positions the table holds beyond the usable ones (XLM-R: pad+1)
    # The forward pass reads config.json's pad_token_id (XLM-R: positions skip that id), so
    # the tokenizer must pad with that very id. Elsewhere it is unused (multilingual-e5-small,
    # a BERT, says 0 and pads with <pad> = 1), and a difference is no reason to refuse.
    pad_id_matters: bool = False


ARCHITECTURES = {
    "bert": Architecture("bert", "bert", "mean", "sentence-transformers' default for a bare "
                         "transformer", "library", absolute_positions=True),
    "xlm_roberta": Architecture("xlm_roberta", "xlm_roberta", "mean", "sentence-transformers' "
                                "default for a bare transformer", "library",
                                absolute_positions=True, position_offset=2,
                                pad_id_matters=True),
    # mlx-embeddings 0.1.0's ModernBERT returns its pooled vector as last_hidden_state:
    # mlx_service/models/modernbert.py runs the same weights and returns every token's state.
    "modernbert": Architecture("modernbert", "modernbert", "mean", "sentence-transformers' "
                               "default for a bare transformer", "ours",
                               absolute_positions=False),
    # Decoder-only: the last token has seen the whole text (Qwen3-Embedding's authors and
    # mlx-embeddings pool it), a mean over causal states would not.
    "qwen3": Architecture("qwen3", "qwen3", "lasttoken", "Qwen3 embeds with its last token, as "
                          "its authors and mlx-embeddings do", "library",
                          absolute_positions=False),
}

# model_type spellings found in published config.json files.
ALIASES = {"xlm-roberta": "xlm_roberta", "roberta": "xlm_roberta", "modern_bert": "modernbert",
           "modern-bert": "modernbert"}


def normalize_model_type(model_type: str) -> str:
    value = str(model_type).strip().lower()
    return ALIASES.get(value, value)


def supported_names() -> str:
    return ", ".join(sorted(ARCHITECTURES))


def architecture_of(model_type: str) -> Architecture | None:
    return ARCHITECTURES.get(normalize_model_type(model_type))
