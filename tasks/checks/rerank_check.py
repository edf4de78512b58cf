"""The rerank steps of `inv roundtrip`: the host's TEI /rerank puts the relevant document
first for a fixed query, and the gateway's Cortex-OS /rerank answers the same order and scores.

The query and documents are the reranker fixtures' own texts (tests/fixtures/tiny-rerankers/
reference.json): any model worth serving, and the embedding model's cosine that ranks when no
RERANK_MODEL is set, puts "A man is eating food." first; the relevant document is sent last,
so an answer in the order it was sent fails.
"""
from __future__ import annotations

from typing import Any, Callable

from tasks.core import local_http
from tasks.host.reranker_info import COSINE, served_reranker

QUERY = "what does a man eat?"
DOCS = ("The girl is carrying a baby.",
        "The service runs natively on the host; containers reach it at host.docker.internal.",
        "A man is eating food.")
RELEVANT = 2
SCORE_TOLERANCE = 1e-5  # two passes of the same pairs; batching may change the last bits

Record = Callable[[str, str, str], None]


def _answer(url: str, payload: dict, timeout: float, headers: dict[str, str]) -> Any:
    response = local_http.post(url, json=payload, timeout=timeout, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")
    return response.json()


def ranking_problem(order: list[int]) -> str | None:
    """Why `order` (document indexes, best first) is not the expected ranking, or None."""
    if sorted(order) != list(range(len(DOCS))):
        return f"ranked documents {order}, not each of the {len(DOCS)} sent once"
    if order[0] != RELEVANT:
        return (f"the relevant document ({DOCS[RELEVANT]!r}) came at place "
                f"{order.index(RELEVANT) + 1} of {len(DOCS)}: order {order}")
    return None


def ranked_by(info_url: str) -> str:
    reranker = served_reranker(info_url)
    if reranker is None:
        return "ranked by an unnamed model"
    if reranker["ranks_by"] == COSINE:
        return "ranked by the embedding model's cosine (no reranker serves /rerank)"
    return f"ranked by the reranker {reranker['name']}"


def host_rerank(rerank_url: str, info_url: str, timeout: float, headers: dict[str, str],
                record: Record) -> list[dict] | None:
    """Step "host /rerank"; the host's [{index, score}] when it passed, for the gateway's."""
    try:
        items = _answer(rerank_url, {"query": QUERY, "texts": list(DOCS)}, timeout, headers)
        if not isinstance(items, list) or not all(
                isinstance(i, dict) and isinstance(i.get("index"), int)
                and isinstance(i.get("score"), (int, float)) for i in items):
            record("host /rerank", "fail", f"not TEI's [{{index, score}}]: {str(items)[:200]}")
            return None
        scores = [i["score"] for i in items]
        if scores != sorted(scores, reverse=True):
            record("host /rerank", "fail", f"not best first: scores {scores}")
            return None
        problem = ranking_problem([i["index"] for i in items])
        if problem:
            record("host /rerank", "fail", problem)
            return None
        record("host /rerank", "pass", f"relevant document first (score {scores[0]:.4f} vs "
               f"{scores[1]:.4f}), {ranked_by(info_url)}")
        return items
    except (local_http.RequestException, RuntimeError, ValueError) as exc:
        record("host /rerank", "fail", str(exc))
        return None


def gateway_rerank(gateway: str, host_items: list[dict] | None, timeout: float,
                   headers: dict[str, str], record: Record) -> None:
    """Step "gateway /rerank": Cortex-OS's shape through the container, equal to the host's."""
    try:
        answer = _answer(f"{gateway}/rerank", {"query": QUERY, "docs": list(DOCS)}, timeout,
                         headers)
        items = answer.get("rankedItems") if isinstance(answer, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            record("gateway /rerank", "fail", f"no rankedItems: {str(answer)[:200]}")
            return
        if host_items is None:
            record("gateway /rerank", "fail",
                   "gateway answered, but the host's ranking was not available to compare")
            return
        order = [i.get("index") for i in items]
        host_order = [i["index"] for i in host_items]
        worst = max((abs(i.get("score", float("nan")) - h["score"])
                     for i, h in zip(items, host_items)), default=0.0)
        wrong_content = [i.get("index") for i in items
                         if isinstance(i.get("index"), int) and 0 <= i["index"] < len(DOCS)
                         and i.get("content") != DOCS[i["index"]]]
        if order != host_order or not worst <= SCORE_TOLERANCE or wrong_content:
            record("gateway /rerank", "fail",
                   f"gateway order {order} vs host {host_order}, largest score difference "
                   f"{worst:.2e}" + (f", wrong content for {wrong_content}" if wrong_content
                                     else ""))
            return
        record("gateway /rerank", "pass", f"Cortex-OS shape, order and scores equal the "
               f"host's (largest difference {worst:.1e}), modelUsed {answer.get('modelUsed')!r}")
    except (local_http.RequestException, RuntimeError, ValueError) as exc:
        record("gateway /rerank", "fail", str(exc))
