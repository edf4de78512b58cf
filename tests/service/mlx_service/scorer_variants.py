"""Copies of a tiny reranker in other published forms, made in the service's venv (MLX):

    python scorer_variants.py copy SRC DEST float16|bfloat16
    python scorer_variants.py quantize SRC DEST BITS

mlx-embeddings' convert refuses classifier folders (its loader is strict about the names of
a *ForSequenceClassification checkpoint), so `quantize` does what it would: every 2-D weight
whose rows split into groups of 64 goes through mx.quantize (affine, group size 64), its
scales and biases saved beside it, and config.json says {"quantization": {...}}; names and
every other file stay as published.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

GROUP = 64


def copy(src: Path, dest: Path, kind: str) -> None:
    import mlx.core as mx

    shutil.copytree(src, dest)
    weights = mx.load(str(src / "model.safetensors"))
    mx.save_safetensors(str(dest / "model.safetensors"),
                        {k: v.astype(getattr(mx, kind)) for k, v in weights.items()},
                        metadata={"format": "pt"})


def quantize(src: Path, dest: Path, bits: int) -> None:
    import mlx.core as mx

    shutil.copytree(src, dest)
    out = {}
    for name, value in mx.load(str(src / "model.safetensors")).items():
        if name.endswith(".weight") and value.ndim == 2 and value.shape[-1] % GROUP == 0:
            stem = name[: -len(".weight")]
            out[name], out[f"{stem}.scales"], out[f"{stem}.biases"] = mx.quantize(
                value, group_size=GROUP, bits=bits)
        else:
            out[name] = value
    mx.save_safetensors(str(dest / "model.safetensors"), out, metadata={"format": "mlx"})
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization"] = {"group_size": GROUP, "bits": bits}
    (dest / "config.json").write_text(json.dumps(cfg, indent=2))


if __name__ == "__main__":
    command, src, dest, arg = sys.argv[1:5]
    if command == "copy":
        copy(Path(src), Path(dest), arg)
    else:
        quantize(Path(src), Path(dest), int(arg))
