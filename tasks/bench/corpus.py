"""The benchmark's fixed inputs in tasks/bench/data/: the corpus of three lengths, and the prose
corpus checked against its sha256 (both read, checked and fingerprinted here; pure)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Mapping

from tasks.bench.errors import BenchError

# Relative to the repository root, as the result document names them.
DATA = Path("tasks") / "bench" / "data"
CORPUS = DATA / "corpus.json"
PROSE = DATA / "prose.json"
PROSE_DIGEST = DATA / "prose.sha256"
PROSE_BUILDER = Path("tasks") / "bench" / "scripts" / "build_prose_corpus.py"
LENGTHS = ("short", "medium", "long")


def load_corpus(path: Path) -> dict:
    corpus = json.loads(Path(path).read_text())
    for kind in LENGTHS:
        texts = corpus.get(kind)
        if not isinstance(texts, list) or not texts or not all(
                isinstance(t, str) and t.strip() for t in texts):
            raise BenchError(f"{path}: {kind!r} must be a non-empty list of non-empty texts")
    return corpus


def corpus_digest(corpus: Mapping) -> str:
    payload = json.dumps({k: corpus[k] for k in LENGTHS}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def read_digest(digest_path: Path) -> str:
    """The sha256 a `sha256sum`-style file names (its first word)."""
    return Path(digest_path).read_text().split()[0]


def load_prose(path: Path, digest_path: Path) -> list[str]:
    """The prose corpus, refused when it is not the file its checked-in sha256 names."""
    try:
        data = Path(path).read_bytes()
        expected = read_digest(digest_path)
    except (OSError, IndexError) as exc:
        raise BenchError(f"cannot read the prose corpus: {exc}") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise BenchError(f"{path} does not match {digest_path}: rebuild both with "
                         f"{PROSE_BUILDER}, or restore them from git")
    texts = json.loads(data).get("texts")
    if not isinstance(texts, list) or len(texts) < 2 or not all(
            isinstance(t, str) and t.strip() for t in texts):
        raise BenchError(f"{path}: 'texts' must be a list of non-empty texts")
    return texts


def describe(root: Path, corpus: Mapping, prose: list[str]) -> dict:
    """The result document's `corpus` part: which inputs, fingerprinted."""
    return {"path": str(CORPUS), "sha256": corpus_digest(corpus),
            "texts": sum(len(corpus[k]) for k in LENGTHS),
            "counts": {k: len(corpus[k]) for k in LENGTHS},
            "prose": {"path": str(PROSE), "texts": len(prose),
                      "sha256": read_digest(Path(root) / PROSE_DIGEST)}}
