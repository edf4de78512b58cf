"""Copies of a fixture model in the other forms models are published in, and the library's
own vectors for a folder. Run in the service's venv (it needs MLX), by the tests:

    python model_variants.py copy SRC DEST float16|bfloat16|sharded
    python model_variants.py quantize SRC DEST BITS          (mlx-embeddings' own convert)
    python model_variants.py quantize-heads SRC DEST BITS    (the same with the folder's
                                                              sentence-transformers modules
                                                              moved aside, then put back)
    python model_variants.py library FOLDER TEXTS.json       (JSON: vectors as loaded, and
                                                              with the weights in float32)
    python model_variants.py without-prompt FOLDER PROMPT TEXTS.json  (mean pooling that
                                                              leaves the prompt's tokens out)
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path


def copy(src: Path, dest: Path, kind: str) -> None:
    import mlx.core as mx

    shutil.copytree(src, dest)
    (dest / "model.safetensors").unlink()
    weights = mx.load(str(src / "model.safetensors"))
    if kind in ("float16", "bfloat16"):
        dtype = getattr(mx, kind)
        mx.save_safetensors(str(dest / "model.safetensors"),
                            {k: v.astype(dtype) for k, v in weights.items()},
                            metadata={"format": "pt"})
        for dense in dest.glob("*_Dense/model.safetensors"):  # its heads too, as published
            mx.save_safetensors(str(dense), {k: v.astype(dtype)
                                             for k, v in mx.load(str(dense)).items()},
                                metadata={"format": "pt"})
        return
    names = sorted(weights)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    weight_map = {}
    for file, keys in shards.items():
        mx.save_safetensors(str(dest / file), {k: weights[k] for k in keys},
                            metadata={"format": "pt"})
        weight_map.update({k: file for k in keys})
    (dest / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": weight_map}))


def quantize(src: Path, dest: Path, bits: str) -> None:
    subprocess.run([sys.executable, "-m", "mlx_embeddings.convert", "--hf-path", str(src),
                    "--mlx-path", str(dest), "-q", "--q-bits", bits], check=True,
                   capture_output=True)


def quantize_heads(src: Path, dest: Path, bits: str, work: Path) -> None:
    """mlx-embeddings' convert reads every safetensors file under the folder and stops at a
    Dense module's ("parameters not in model"): convert the transformer alone, then give the
    result the folder's sentence-transformers files back, as a user would. Its BERT loader
    also wants the pooler LaBSE's checkpoint has and the fixture lacks: a zero one is added
    (no embedding reads it)."""
    import mlx.core as mx

    bare = work / f"{src.name}-bare"
    shutil.copytree(src, bare, ignore=shutil.ignore_patterns("*_Dense", "*_Pooling",
                                                             "*_Normalize", "modules.json"))
    weights = mx.load(str(bare / "model.safetensors"))
    if "pooler.dense.weight" not in weights:
        hidden = json.loads((bare / "config.json").read_text())["hidden_size"]
        weights.update({"pooler.dense.weight": mx.zeros((hidden, hidden)),
                        "pooler.dense.bias": mx.zeros((hidden,))})
        mx.save_safetensors(str(bare / "model.safetensors"), weights, metadata={"format": "pt"})
    quantize(bare, dest, bits)
    for item in src.iterdir():
        if item.is_dir() and item.name.split("_", 1)[-1] in ("Dense", "Pooling", "Normalize"):
            shutil.copytree(item, dest / item.name, dirs_exist_ok=True)
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"):
        shutil.copy(src / name, dest / name)


def library(folder: Path, texts_file: Path) -> None:
    """mlx-embeddings' load_model and forward pass, one text at a time (its own pooling)."""
    import mlx.core as mx
    from mlx.utils import tree_map
    from mlx_embeddings.utils import load_model
    from transformers import AutoTokenizer

    texts = json.loads(texts_file.read_text())
    tok = AutoTokenizer.from_pretrained(str(folder))
    model = load_model(folder)
    out = {}
    for label in ("as_loaded", "float32"):
        if label == "float32":
            model.update(tree_map(lambda p: p.astype(mx.float32)
                                  if p.dtype in (mx.float16, mx.bfloat16) else p,
                                  model.parameters()))
        rows = []
        for text in texts:
            ids = tok([text], truncation=True, max_length=256)["input_ids"]
            result = model(mx.array(ids), attention_mask=mx.ones((1, len(ids[0])), mx.int32))
            rows.append(result.text_embeds[0].astype(mx.float32).tolist())
        out[label] = rows
    print(json.dumps(out))


def without_prompt(folder: Path, prompt: str, texts_file: Path) -> None:
    """The mean of each text's token states after its prompt's tokens (sentence-transformers'
    include_prompt false: prompt_length = the prompt's tokens less its last special one),
    from the same MLX layers, one text at a time."""
    import mlx.core as mx
    import numpy as np
    from mlx_service.models.embedder import Embedder
    from mlx_service.models.folder import read_spec

    embedder = Embedder(read_spec(str(folder)), cpu_fast=False)
    skip = len(embedder.tokenize([prompt])[0]) - 1
    rows = []
    for ids in embedder.tokenize([prompt + t for t in json.loads(texts_file.read_text())]):
        ids = np.array([ids], np.int32)
        states = embedder.hidden_states(ids, np.ones_like(ids)).astype(mx.float32)
        vector = np.array(states[0, skip:].mean(axis=0))
        rows.append((vector / np.linalg.norm(vector)).tolist())
    print(json.dumps({"skip": skip, "vectors": rows}))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "copy":
        copy(Path(args[0]), Path(args[1]), args[2])
    elif command == "quantize":
        quantize(Path(args[0]), Path(args[1]), args[2])
    elif command == "quantize-heads":
        quantize_heads(Path(args[0]), Path(args[1]), args[2], Path(args[1]).parent)
    elif command == "library":
        library(Path(args[0]), Path(args[1]))
    elif command == "without-prompt":
        without_prompt(Path(args[0]), args[1], Path(args[2]))
    else:
        sys.exit(f"unknown command {command!r}")
