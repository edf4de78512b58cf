"""A full-width cross-encoder of a published shape with random weights, for speed only.

As random_model.py does for embedding models: speed does not depend on the weights, so
`inv bench --rerank` measures the published widths without downloading anything. The layers
are as wide as the published reranker's, the tokenizer and sentence-transformers files are the
repo's tiny fixture of the same architecture (tests/fixtures/tiny-rerankers), and the
checkpoint holds every tensor the Hugging Face sequence classifier holds, under its names.
bge-reranker-base keeps 3 of its 12 layers (the bench reports per layer too). Runs in
the service venv (MLX writes the safetensors):

    .venv-mlx/bin/python tasks/bench/scripts/random_reranker.py NAME OUT_FOLDER
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# random_model.py beside this file: the encoder's tensors are the same as an embedding
# checkpoint's, under the classifier's prefix.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from random_model import copy_fixture, write_random_weights  # noqa: E402
from random_model import shapes_of as encoder_shapes  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "tiny-rerankers"
MAX_LENGTH = 512  # both published rerankers truncate pairs to 512 tokens

# name -> (fixture folder, config overrides: the published widths)
SHAPES = {
    "ms-marco-minilm-l6": ("bert-rerank", {
        "hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6,
        "num_attention_heads": 12, "max_position_embeddings": 512}),
    "bge-reranker-base": ("xlmr-rerank", {
        "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 3,
        "num_attention_heads": 12, "max_position_embeddings": 514}),
}


def shapes_of(model_type: str, c: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of the Hugging Face *ForSequenceClassification checkpoint, with its shape."""
    h, labels = c["hidden_size"], len(c.get("id2label") or {"0": ""})
    if model_type == "bert":  # BertForSequenceClassification: pooler, then one linear layer
        prefix = "bert."
        head = {"bert.pooler.dense.weight": (h, h), "bert.pooler.dense.bias": (h,),
                "classifier.weight": (labels, h), "classifier.bias": (labels,)}
    elif model_type in ("xlm-roberta", "xlm_roberta"):  # no pooler; a two-layer head
        prefix = "roberta."
        head = {"classifier.dense.weight": (h, h), "classifier.dense.bias": (h,),
                "classifier.out_proj.weight": (labels, h), "classifier.out_proj.bias": (labels,)}
    else:
        raise ValueError(f"no reranker shapes for {model_type}")
    # BERT's encoder has XLM-R's tensors (token types from the config).
    encoder = {prefix + k: v for k, v in encoder_shapes("xlm-roberta", c).items()}
    return {**encoder, **head}


def write_tokenizer_limits(out: Path) -> None:
    """The published limit in the copied tokenizer files (the fixtures' is smaller), and no
    fixed padding or truncation in tokenizer.json: both sides pad and truncate per call."""
    tok_config = out / "tokenizer_config.json"
    settings = json.loads(tok_config.read_text())
    settings["model_max_length"] = MAX_LENGTH
    settings.pop("max_length", None)
    tok_config.write_text(json.dumps(settings, indent=2) + "\n")
    tokenizer = out / "tokenizer.json"
    data = json.loads(tokenizer.read_text())
    data["truncation"], data["padding"] = None, None
    tokenizer.write_text(json.dumps(data, ensure_ascii=False))


def build(name: str, out: Path, seed: int = 0) -> Path:
    fixture, overrides = SHAPES[name]
    config = copy_fixture(FIXTURES / fixture, out, overrides)
    write_tokenizer_limits(out)
    write_random_weights(out / "model.safetensors", shapes_of(config["model_type"], config),
                         seed)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(SHAPES))
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    print(build(args.name, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
