"""What the engines are given: workloads (texts in batches of a size), the shapes of work on
the prose, and the concurrent clients' plan (pure)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

CLIENTS = 16
CHUNK = 32               # the peer's encode batch size, and the chunked shapes' request size
# Single-length bins by words (about 1.3 tokens a word): (name, fewest, most words).
LENGTH_BINS = (("short", 3, 20), ("medium", 30, 80), ("long", 150, 10_000))
BIN_TEXTS = 64           # texts per single-length workload


@dataclass(frozen=True)
class Workload:
    name: str
    texts: tuple[str, ...]
    batch_size: int

    @property
    def size(self) -> int:
        return len(self.texts)


def interleave(*lists: Sequence[str]) -> list[str]:
    """Round-robin: a[0], b[0], c[0], a[1], ... so every batch mixes lengths."""
    out: list[str] = []
    for i in range(max(len(x) for x in lists)):
        out.extend(x[i] for x in lists if i < len(x))
    return out


def build_workloads(corpus: Mapping) -> list[Workload]:
    """Batches as clients send them: 8 texts of one length; then the mixed corpus, 16 a batch."""
    short, medium, long_ = corpus["short"], corpus["medium"], corpus["long"]
    return [
        Workload("short", tuple(short), 8),
        Workload("medium", tuple(medium), 8),
        Workload("long", tuple(long_), 4),
        Workload("mixed", tuple(interleave(short, medium, long_)), 16),
    ]


def length_bins(texts: Sequence[str], limit: int = BIN_TEXTS) -> dict[str, list[str]]:
    """Texts of one length each (LENGTH_BINS, by words), the first `limit` of each, in order."""
    bins: dict[str, list[str]] = {name: [] for name, _, _ in LENGTH_BINS}
    for text in texts:
        words = len(text.split())
        for name, low, high in LENGTH_BINS:
            if low <= words <= high and len(bins[name]) < limit:
                bins[name].append(text)
    return bins


def build_shape_workloads(texts: Sequence[str]) -> list[Workload]:
    """The shapes of work on the prose: all in one call, chunks in order, one length each."""
    bins = length_bins(texts)
    return [Workload("corpus", tuple(texts), len(texts)),
            Workload("chunks", tuple(texts), CHUNK),
            *(Workload(name, tuple(bins[name]), CHUNK) for name, _, _ in LENGTH_BINS
              if bins[name])]


def client_texts(corpus: Mapping) -> list[str]:
    """What the concurrent one-text clients send: the short texts, as search queries are."""
    return list(corpus["short"])


def client_plan(texts: Sequence[str], clients: int, per_client: int) -> list[list[str]]:
    """Client i's j-th request is texts[(i * per_client + j) % len]: every text, in turn."""
    if clients < 1 or per_client < 1:
        raise ValueError("clients and per_client must be >= 1")
    return [[texts[(i * per_client + j) % len(texts)] for j in range(per_client)]
            for i in range(clients)]
