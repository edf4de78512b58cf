"""The architectures the service serves, and what each needs (after TEI's candle backend,
which keeps one table of the model types it knows): its MLX layers (mlx-embeddings' or
ours), its own pooling, what its positions ask of padding, and its CPU fast pass. Adding an
architecture is an entry here and its module (`build(cfg)`, and a fast pass if it pays).

Every architecture's rows are padded on the right (models/embedder.py): absolute positions
need it, and a causal model's real tokens never see what follows them.

Pure data: the folder check (no MLX) and the loader read the same table.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    name: str              # the model_type, as mlx-embeddings' module names it
    # The module holding the MLX layers: mlx-embeddings' (mlx_embeddings.models.<name>: its
    # ModelArgs and Model) or ours (mlx_service.models.<name>, whose build(cfg) gives the
    # model and its weight-name sanitizer), where the library's is wrong or missing.
    layers: str
    own_pooling: str       # pooling when the folder has no sentence-transformers Pooling files
    own_pooling_why: str   # why that one, for the log and /info
    absolute_positions: bool  # BERT-like: rows must be padded on the right
    position_offset: int = 0  # positions the table holds beyond the usable ones (XLM-R: pad+1)
    # The forward pass reads config.json's pad_token_id (XLM-R: positions skip that id), so
    # the tokenizer must pad with that very id. Elsewhere it is unused (multilingual-e5-small,
    # a BERT, says 0 and pads with <pad> = 1), and a difference is no reason to refuse.
    pad_id_matters: bool = False
    # The CPU fast forward pass, "module:Class" (its module's supports(model) says whether
    # a loaded model can take it: quantized ones and other activations keep the MLX layers);
    # None: the MLX layers always.
    fast: str | None = None

    @property
    def library_module(self) -> str | None:
        """mlx_embeddings.models.<this>, when the layers are the library's."""
        prefix = f"{LIBRARY}.models."
        return self.layers[len(prefix):] if self.layers.startswith(prefix) else None


LIBRARY = "mlx_embeddings"
OURS = "mlx_service.models"
MEAN_WHY = "sentence-transformers' default for a bare transformer"
BERT_FAST = "mlx_service.models.fast_bert:CpuBertForward"
DECODER_FAST = f"{OURS}.fast_qwen3:CpuQwen3Forward"


ARCHITECTURES = {
    "bert": Architecture("bert", f"{LIBRARY}.models.bert", "mean", MEAN_WHY,
                         absolute_positions=True, fast=BERT_FAST),
    "xlm_roberta": Architecture("xlm_roberta", f"{LIBRARY}.models.xlm_roberta", "mean",
                                MEAN_WHY, absolute_positions=True, position_offset=2,
                                pad_id_matters=True, fast=BERT_FAST),
    # mlx-embeddings 0.1.0's ModernBERT returns its pooled vector as last_hidden_state:
    # mlx_service/models/modernbert.py runs the same weights and returns every token's state.
    "modernbert": Architecture("modernbert", f"{OURS}.modernbert", "mean", MEAN_WHY,
                               absolute_positions=False,
                               fast=f"{OURS}.fast_modernbert:CpuModernBertForward"),
    # Decoder-only: the last token has seen the whole text (Qwen3-Embedding's authors and
    # mlx-embeddings pool it), a mean over causal states would not.
    "qwen3": Architecture("qwen3", f"{LIBRARY}.models.qwen3", "lasttoken", "Qwen3 embeds with "
                          "its last token, as its authors and mlx-embeddings do",
                          absolute_positions=False, fast=DECODER_FAST),
    # mlx-embeddings 0.1.0 has no MPNet: ours (relative position buckets per head).
    "mpnet": Architecture("mpnet", f"{OURS}.mpnet", "mean", MEAN_WHY, absolute_positions=True,
                          position_offset=2, fast=f"{OURS}.fast_mpnet:CpuMPNetForward"),
    # DistilBERT is BERT without token types: the library's BERT layers, renamed onto.
    "distilbert": Architecture("distilbert", f"{OURS}.distilbert", "mean", MEAN_WHY,
                               absolute_positions=True, fast=BERT_FAST),
    # EmbeddingGemma: the library's gemma3_text needs mlx-lm and masks sliding layers wrong.
    "gemma3_text": Architecture("gemma3_text", f"{OURS}.gemma3", "mean", MEAN_WHY,
                                absolute_positions=False,
                                fast=f"{OURS}.fast_gemma3:CpuGemma3Forward"),
    # gte-Qwen2, e5-mistral: causal decoders that embed with their last token (no library
    # layers for either in mlx-embeddings 0.1.0).
    "qwen2": Architecture("qwen2", f"{OURS}.decoder", "lasttoken", "a causal decoder embeds "
                          "with its last token, as gte-Qwen2's authors do",
                          absolute_positions=False, fast=DECODER_FAST),
    "mistral": Architecture("mistral", f"{OURS}.decoder", "lasttoken", "a causal decoder "
                            "embeds with its last token, as e5-mistral's authors do",
                            absolute_positions=False, fast=DECODER_FAST),
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
