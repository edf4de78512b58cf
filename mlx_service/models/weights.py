"""The weight files of a model folder, read from their safetensors headers only (no MLX, no
tensor data): which files, which dtypes, whether they are MLX-quantized, and what is wrong.

A safetensors file is an 8-byte little-endian header length, a JSON header naming each
tensor's dtype, shape and byte range, then the bytes: a truncated or overwritten file shows
in the header or in ranges that do not fit the file.
"""
from __future__ import annotations

import json
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# Weights in a form the service cannot read (torch pickles need torch, which it does not use).
UNREADABLE = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5",
              "flax_model.msgpack", "model.ckpt.index", "model.onnx", "onnx/model.onnx")
MAX_HEADER_BYTES = 100 * 1024 * 1024
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U32": 4,
               "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
FLOAT_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


class WeightsError(ValueError):
    """The folder's weights cannot be read; the message says why."""


@dataclass(frozen=True)
class Weights:
    files: tuple[Path, ...]
    sharded: bool
    dtype: str                          # the floating-point dtype most tensors have
    tensors: int
    names: frozenset[str] = field(default_factory=frozenset)

    def describe(self) -> str:
        shards = f", {len(self.files)} shards" if self.sharded else ""
        return f"{self.dtype} safetensors{shards}"


def header(path: Path) -> dict:
    """The JSON header of one safetensors file, checked against the file's size."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise WeightsError(f"{path.name} is not a safetensors file (only {size} bytes)")
            (length,) = struct.unpack("<Q", head)
            if length > min(size - 8, MAX_HEADER_BYTES):
                raise WeightsError(f"{path.name} is not a valid safetensors file (its header "
                                   f"claims {length} bytes; the file has {size})")
            raw = fh.read(length)
    except OSError as exc:
        raise WeightsError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    try:
        meta = json.loads(raw)
    except ValueError:
        raise WeightsError(f"{path.name} is not a valid safetensors file (its header is not "
                           "JSON)") from None
    if not isinstance(meta, dict):
        raise WeightsError(f"{path.name} is not a valid safetensors file (bad header)")
    data_bytes = size - 8 - length
    end = 0
    for name, info in meta.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = (int(x) for x in info["data_offsets"])
            dtype, shape = info["dtype"], [int(d) for d in info["shape"]]
        except (KeyError, TypeError, ValueError):
            raise WeightsError(f"{path.name} is not a valid safetensors file (entry {name!r} "
                               "is malformed)") from None
        count = 1
        for d in shape:
            count *= d
        width = DTYPE_BYTES.get(dtype)
        if not 0 <= begin <= stop or (width is not None and stop - begin != count * width):
            raise WeightsError(f"{path.name} is not a valid safetensors file (tensor {name!r} "
                               "has an impossible byte range)")
        end = max(end, stop)
    if end > data_bytes:
        raise WeightsError(f"{path.name} is truncated: its tensors need {end} bytes of data, "
                           f"the file holds {data_bytes}")
    return meta


def weight_files(folder: Path) -> tuple[tuple[Path, ...], bool]:
    """(files, sharded): the index's shards, else model*.safetensors (as mlx-embeddings
    globs them)."""
    index = folder / INDEX_FILE
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            names = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise WeightsError(f"{INDEX_FILE} is not a valid shard index") from None
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise WeightsError(f"{INDEX_FILE} names {len(missing)} shard(s) the folder lacks "
                               f"({', '.join(missing[:3])})")
        return tuple(folder / n for n in names), True
    files = tuple(sorted(folder.glob("*.safetensors")))
    return files, len(files) > 1


def read_weights(folder: Path) -> Weights:
    files, sharded = weight_files(folder)
    if not files:
        other = [n for n in UNREADABLE if (folder / n).exists()]
        if other:
            raise WeightsError(f"the weights are only in {other[0]}, which this service cannot "
                               "read (no torch); it reads .safetensors: convert them (e.g. "
                               "transformers' save_pretrained(safe_serialization=True))")
        raise WeightsError("the folder has no weights (*.safetensors)")
    dtypes: Counter = Counter()
    names: set[str] = set()
    for path in files:
        for name, info in header(path).items():
            if name != "__metadata__":
                names.add(name)
                dtypes[info["dtype"]] += 1
    floats = Counter({k: v for k, v in dtypes.items() if k in FLOAT_NAMES})
    if not floats:
        raise WeightsError("the safetensors files hold no floating-point tensors")
    dtype = FLOAT_NAMES[floats.most_common(1)[0][0]]
    return Weights(files=files, sharded=sharded, dtype=dtype, tensors=len(names),
                   names=frozenset(names))
