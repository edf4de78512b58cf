"""The model's tokenizer exactly as transformers builds it, without importing transformers on
every start.

Importing transformers costs 1.0-1.3 s of a cold start (2 shared Zen 3 cores), a third of the
3 s budget, for one object. Reading tokenizer.json with the `tokenizers` library alone is not
the same thing: transformers 5 rebuilds some tokenizers from their vocabulary with the
normalizer and pre-tokenizer its class defines (BertTokenizer from tokenizer_config.json's
do_lower_case, for one), and that is what sentence-transformers embeds with. So the first
start with a model builds it with transformers and keeps the result (the Rust tokenizer's
JSON, and the pad id) in a file in the service venv; later starts read that file. The key is
the folder, every tokenizer file's size and mtime, and the versions of transformers and
tokenizers: an edited file or an upgrade builds it again. A tokenizer without a Rust backend
(a slow one) is never kept: it stays transformers' object.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger("mlx_service.models")

CACHE_DIR_NAME = "mlx-tokenizers"
CACHE_SCHEMA = 1
MAX_ENTRIES = 32  # models kept; the oldest used goes first (each file is 0.5-20 MB)
# Every file transformers reads to build a tokenizer (the key is their sizes and mtimes).
TOKENIZER_INPUTS = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt",
                    "tokenizer.model", "sentencepiece.bpe.model", "spiece.model",
                    "chat_template.jinja", "config.json")


@dataclass
class LoadedTokenizer:
    backend: Any          # tokenizers.Tokenizer, or None for a slow tokenizer
    pad_id: int           # what rows are padded with (0 when the tokenizer names no pad)
    slow: Any = None      # transformers' own object when there is no Rust backend
    cached: bool = False  # read from the cache (transformers not imported)


def cache_dir(environ: Mapping[str, str] = os.environ, prefix: str = sys.prefix) -> Path:
    return Path(environ.get("MLX_TOKENIZER_CACHE") or os.path.join(prefix, CACHE_DIR_NAME))


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def cache_key(folder: Path) -> str:
    """What a kept tokenizer depends on; any change builds it again."""
    parts = [str(folder.resolve()), _version("transformers"), _version("tokenizers"),
             f"schema {CACHE_SCHEMA}"]
    for name in TOKENIZER_INPUTS:
        try:
            st = (folder / name).stat()
        except OSError:
            continue
        parts.append(f"{name} {st.st_size} {st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _read(path: Path, key: str) -> LoadedTokenizer | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("key") != key or doc.get("schema") != CACHE_SCHEMA:
            return None
        from tokenizers import Tokenizer
        backend = Tokenizer.from_str(doc["tokenizer"])
        os.utime(path)  # most recently used: pruned last
        return LoadedTokenizer(backend, int(doc["pad_id"]), cached=True)
    except FileNotFoundError:
        return None
    except Exception as exc:  # a damaged entry is rebuilt, never fatal
        log.info("tokenizer cache entry %s unusable (%s): building it again", path.name, exc)
        return None


def _write(directory: Path, path: Path, key: str, loaded: LoadedTokenizer) -> None:
    """Atomic (another start may read it at the same time); silent when it cannot be
    written (a read-only venv only loses the speed-up)."""
    doc = {"schema": CACHE_SCHEMA, "key": key, "pad_id": loaded.pad_id,
           "tokenizer": loaded.backend.to_str()}
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, path)
        _prune(directory)
    except OSError as exc:
        log.info("tokenizer not cached (%s)", exc)
        tmp.unlink(missing_ok=True)


def _prune(directory: Path) -> None:
    entries = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[MAX_ENTRIES:]:
        old.unlink(missing_ok=True)


def build_with_transformers(folder: Path) -> LoadedTokenizer:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    pad = tokenizer.pad_token_id
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return LoadedTokenizer(backend, pad if pad is not None else 0,
                           slow=tokenizer if backend is None else None)


def load_tokenizer(folder: Path, environ: Mapping[str, str] = os.environ) -> LoadedTokenizer:
    """The folder's tokenizer as transformers builds it: from the cache when it holds this
    folder's files as they are now, else built (and kept)."""
    directory = cache_dir(environ)
    key = cache_key(folder)
    path = directory / f"{key}.json"
    loaded = _read(path, key)
    if loaded is not None:
        return loaded
    loaded = build_with_transformers(folder)
    if loaded.backend is not None:
        _write(directory, path, key, loaded)
    return loaded
