"""A full-width, few-layer model of a published shape with random weights, for speed only.

Speed does not depend on the weights, so `inv bench --random-model NAME` measures the real
sizes without downloading them: the layers are as wide as the published model's (its
config.json's widths), there are fewer of them (the bench reports per layer), and the
tokenizer and sentence-transformers files are the repo's tiny fixture of the same
architecture (tests/fixtures/tiny-models), its vocabulary too (the embedding lookup's cost does
not depend on the vocabulary's size). Runs in the service venv (MLX writes the safetensors):

    .venv-mlx/bin/python tasks/bench/scripts/random_model.py NAME OUT_FOLDER
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "tiny-models"

# name -> (fixture folder, config overrides: the published widths, few layers)
SHAPES = {
    "qwen3-embedding-0.6b": ("qwen3-last", {
        "hidden_size": 1024, "num_attention_heads": 16, "num_key_value_heads": 8,
        "head_dim": 128, "intermediate_size": 3072, "num_hidden_layers": 2,
        "max_position_embeddings": 32768, "layer_types": ["full_attention"] * 2}),
    "multilingual-e5-small": ("xlmr-mean", {
        "hidden_size": 384, "num_attention_heads": 12, "intermediate_size": 1536,
        "num_hidden_layers": 2, "max_position_embeddings": 514}),
    "modernbert-base": ("modernbert-mean", {
        "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 1152,
        "num_hidden_layers": 3, "global_attn_every_n_layers": 3, "local_attention": 128,
        "max_position_embeddings": 8192,
        "layer_types": ["full_attention", "sliding_attention", "sliding_attention"]}),
    # all-mpnet-base-v2's widths (MPNet: relative position buckets per head).
    "all-mpnet-base-v2": ("mpnet-mean", {
        "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072,
        "num_hidden_layers": 2, "max_position_embeddings": 514}),
    # google/embeddinggemma-300m's widths: one sliding and one full-attention layer; its two
    # Dense modules (768 -> 3072 -> 768) scaled from the fixture's (64 -> 256 -> 64).
    "embeddinggemma-300m": ("gemma3-dense", {
        "hidden_size": 768, "num_attention_heads": 3, "num_key_value_heads": 1,
        "head_dim": 256, "query_pre_attn_scalar": 256, "intermediate_size": 1152,
        "num_hidden_layers": 2, "sliding_window": 512, "max_position_embeddings": 2048,
        "layer_types": ["sliding_attention", "full_attention"]}),
}


# sentence_bert_config.json's max_seq_length as published, where the fixture's is shorter.
PUBLISHED_MAX_SEQ_LENGTH = {"all-mpnet-base-v2": 384, "embeddinggemma-300m": 2048}


def _decoder_layers(c: dict, norms: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """Qwen3-shaped decoder layers (grouped-query attention with q/k norms, a gated MLP) with
    `norms` of the hidden size each."""
    h, i, d = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    heads, kv = c["num_attention_heads"], c["num_key_value_heads"]
    out: dict[str, tuple[int, ...]] = {}
    for k in range(c["num_hidden_layers"]):
        p = f"layers.{k}."
        out.update({p + "self_attn.q_proj.weight": (heads * d, h),
                    p + "self_attn.k_proj.weight": (kv * d, h),
                    p + "self_attn.v_proj.weight": (kv * d, h),
                    p + "self_attn.o_proj.weight": (h, heads * d),
                    p + "self_attn.q_norm.weight": (d,), p + "self_attn.k_norm.weight": (d,),
                    p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h),
                    p + "mlp.down_proj.weight": (h, i)})
        out.update({p + norm + ".weight": (h,) for norm in norms})
    return out


def _encoder_layers(c: dict, attention: tuple[str, ...],
                    norms: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """BERT-shaped encoder layers: the four `attention` projections, the feed-forward pair and
    the two LayerNorms `norms`, every one with its bias."""
    h, i = c["hidden_size"], c["intermediate_size"]
    out: dict[str, tuple[int, ...]] = {}
    for k in range(c["num_hidden_layers"]):
        p = f"encoder.layer.{k}."
        for name in attention:
            out.update({p + name + ".weight": (h, h), p + name + ".bias": (h,)})
        out.update({p + "intermediate.dense.weight": (i, h), p + "intermediate.dense.bias": (i,),
                    p + "output.dense.weight": (h, i), p + "output.dense.bias": (h,)})
        for norm in norms:
            out.update({p + norm + ".weight": (h,), p + norm + ".bias": (h,)})
    return out


def _encoder_embeddings(c: dict) -> dict[str, tuple[int, ...]]:
    h = c["hidden_size"]
    return {"embeddings.word_embeddings.weight": (c["vocab_size"], h),
            "embeddings.position_embeddings.weight": (c["max_position_embeddings"], h),
            "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,)}


def shapes_of(arch: str, c: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor the architecture's checkpoint holds (Hugging Face names), with its shape."""
    h, i, v, n = c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["num_hidden_layers"]
    out: dict[str, tuple[int, ...]] = {}
    if arch == "qwen3":
        out.update({"embed_tokens.weight": (v, h), "norm.weight": (h,)})
        out.update(_decoder_layers(c, ("input_layernorm", "post_attention_layernorm")))
    elif arch == "gemma3_text":
        out.update({"embed_tokens.weight": (v, h), "norm.weight": (h,)})
        out.update(_decoder_layers(c, ("input_layernorm", "post_attention_layernorm",
                                       "pre_feedforward_layernorm",
                                       "post_feedforward_layernorm")))
    elif arch == "xlm-roberta":
        out.update(_encoder_embeddings(c))
        out["embeddings.token_type_embeddings.weight"] = (c.get("type_vocab_size", 1), h)
        out.update(_encoder_layers(c, ("attention.self.query", "attention.self.key",
                                       "attention.self.value", "attention.output.dense"),
                                   ("attention.output.LayerNorm", "output.LayerNorm")))
    elif arch == "mpnet":
        out.update(_encoder_embeddings(c))
        out["encoder.relative_attention_bias.weight"] = (
            c.get("relative_attention_num_buckets", 32), c["num_attention_heads"])
        out.update(_encoder_layers(c, ("attention.attn.q", "attention.attn.k",
                                       "attention.attn.v", "attention.attn.o"),
                                   ("attention.LayerNorm", "output.LayerNorm")))
    elif arch == "modernbert":
        out.update({"embeddings.tok_embeddings.weight": (v, h),
                    "embeddings.norm.weight": (h,), "final_norm.weight": (h,)})
        for k in range(n):
            p = f"layers.{k}."
            if k:
                out[p + "attn_norm.weight"] = (h,)
            out.update({p + "attn.Wqkv.weight": (3 * h, h), p + "attn.Wo.weight": (h, h),
                        p + "mlp_norm.weight": (h,), p + "mlp.Wi.weight": (2 * i, h),
                        p + "mlp.Wo.weight": (h, i)})
    else:
        raise ValueError(f"no shapes for {arch}")
    return out


def copy_fixture(src: Path, out: Path, overrides: dict) -> dict:
    """The fixture's files without its weights, config.json widened by `overrides`; returns
    that config."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("*.safetensors"))
    config = {**json.loads((src / "config.json").read_text()), **overrides}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return config


def write_random_weights(path: Path, shapes: dict[str, tuple[int, ...]], seed: int = 0) -> None:
    """A safetensors checkpoint of `shapes`: norms at one, biases at zero (activations stay in
    range), matrices normal * 0.02."""
    import mlx.core as mx

    mx.random.seed(seed)
    tensors = {}
    for key, shape in shapes.items():
        if len(shape) == 1:
            tensors[key] = mx.zeros(shape) if key.endswith("bias") else mx.ones(shape)
        else:
            tensors[key] = mx.random.normal(shape) * 0.02
    mx.save_safetensors(str(path), tensors, metadata={"format": "pt"})


def build(name: str, out: Path, seed: int = 0) -> Path:
    fixture, overrides = SHAPES[name]
    src = FIXTURES / fixture
    config = copy_fixture(src, out, overrides)
    arch = {"xlm_roberta": "xlm-roberta"}.get(config["model_type"], config["model_type"])
    write_random_weights(out / "model.safetensors", shapes_of(arch, config), seed)
    scale_dense_modules(src, out, config["hidden_size"])
    if name in PUBLISHED_MAX_SEQ_LENGTH:
        st_path = out / "sentence_bert_config.json"
        st = json.loads(st_path.read_text()) if st_path.is_file() else {}
        st["max_seq_length"] = PUBLISHED_MAX_SEQ_LENGTH[name]
        st_path.write_text(json.dumps(st, indent=2) + "\n")
    return out


def scale_dense_modules(src: Path, out: Path, hidden: int) -> None:
    """sentence-transformers' Dense modules (N_Dense/) widened as the layers were: each size
    times the published hidden size over the fixture's, random weights (no bias kept as none)."""
    import mlx.core as mx

    factor = hidden // json.loads((src / "config.json").read_text())["hidden_size"]
    for folder in sorted(out.glob("*_Dense")):
        cfg = json.loads((folder / "config.json").read_text())
        cfg["in_features"] *= factor
        cfg["out_features"] *= factor
        (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        tensors = {"linear.weight": mx.random.normal((cfg["out_features"],
                                                      cfg["in_features"])) * 0.02}
        if cfg.get("bias", True):
            tensors["linear.bias"] = mx.zeros((cfg["out_features"],))
        mx.save_safetensors(str(folder / "model.safetensors"), tensors,
                            metadata={"format": "pt"})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(SHAPES))
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    print(build(args.name, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
