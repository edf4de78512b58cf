"""What `inv bench --rerank` asks both sides to score: one query and 100 documents from the
bench's fixed inputs (tasks/bench/data), the same on both sides (pure)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from tasks.bench.errors import BenchError
from tasks.bench.workloads import CLIENTS

DOCUMENTS = 100
QUERY = "How do I reset my password?"  # one of corpus.json's short texts, a search query
RERANK_CLIENTS = CLIENTS               # concurrent clients, each sending the same request


@dataclass(frozen=True)
class RerankWorkload:
    query: str
    documents: tuple[str, ...]

    @property
    def pairs(self) -> int:
        return len(self.documents)

    def as_texts(self) -> list[str]:
        """The query then the documents: how the peer worker's line protocol carries it."""
        return [self.query, *self.documents]

    def body(self) -> dict:
        """TEI's POST /rerank body; truncation to the model's window, as sentence-transformers
        truncates a pair (the service's default too, said here so the bench cannot drift)."""
        return {"query": self.query, "texts": list(self.documents), "truncate": True}


def build_rerank_workload(corpus: Mapping, prose: Sequence[str],
                          documents: int = DOCUMENTS) -> RerankWorkload:
    """QUERY (checked to be in the corpus) against the first `documents` prose paragraphs in
    corpus order: mixed lengths, as a search engine's candidates are."""
    if QUERY not in corpus.get("short", []):
        raise BenchError(f"the rerank query {QUERY!r} is not among the corpus's short texts")
    if len(prose) < documents:
        raise BenchError(f"the prose corpus has {len(prose)} texts, fewer than {documents}")
    return RerankWorkload(QUERY, tuple(prose[:documents]))
