"""The rerank bench's HTTP side: POST /rerank (TEI) on keep-alive loopback connections, one
client, or many sending the same request at once (see tasks/bench/client.py for why the
stdlib client)."""
from __future__ import annotations

import json
import threading
import time
from urllib.parse import urlsplit

from tasks.bench.client import auth_headers
from tasks.bench.errors import BenchError
from tasks.bench.rerank_workload import RerankWorkload
from tasks.core.local_http import KeepAliveClient

RANKED_BY_RERANKER = "reranker"  # the service's X-Ranked-By when RERANK_MODEL scored
JSON = {"Content-Type": "application/json"}


class Refused(BenchError):
    """A 429: the service's admission control asked the client to come back later."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class RerankClient(KeepAliveClient):
    """One keep-alive connection that sends the workload's POST /rerank."""

    def __init__(self, url: str, api_key: str | None, timeout: float = 300.0):
        parts = urlsplit(url)
        super().__init__(parts.port, parts.hostname, timeout=timeout,
                         headers=auth_headers(api_key), reconnect=True)
        self.url = url

    def rerank(self, body: bytes, pairs: int) -> None:
        """POST /rerank; raises Refused on a 429, BenchError unless it answers 200 with one
        score per pair, ranked by the cross-encoder."""
        status, headers, raw = self.request("POST", "/rerank", body, JSON)
        if status == 429:
            raise Refused(f"POST {self.url}/rerank answered 429: {raw[:200]!r}",
                          float(headers.get("retry-after") or 1))
        if status != 200:
            raise BenchError(f"POST {self.url}/rerank answered {status}: {raw[:200]!r}")
        ranked_by = headers.get("x-ranked-by")
        if ranked_by != RANKED_BY_RERANKER:  # the service did not load RERANK_MODEL
            raise BenchError(f"POST {self.url}/rerank was ranked by {ranked_by}, not by the "
                             "cross-encoder")
        got = len(json.loads(raw))
        if got != pairs:
            raise BenchError(f"POST {self.url}/rerank returned {got} scores for {pairs} pairs")

    def tokens(self, workload: RerankWorkload) -> int:
        """The real tokens of the workload's pairs, after truncation: the Cohere route's
        `usage.total_tokens` for the same query and documents (TEI's answer has no usage)."""
        body = json.dumps({"query": workload.query, "documents": list(workload.documents)})
        status, _, raw = self.request("POST", "/v1/rerank", body.encode(), JSON)
        if status != 200:
            raise BenchError(f"POST {self.url}/v1/rerank answered {status}: {raw[:200]!r}")
        return int(json.loads(raw)["usage"]["total_tokens"])


def encode_body(workload: RerankWorkload) -> bytes:
    return json.dumps(workload.body()).encode()


def timed_request(client: RerankClient, workload: RerankWorkload) -> float:
    """Seconds for one rerank request, answer read (a 429 here, at idle, is an error)."""
    body = encode_body(workload)
    t0 = time.perf_counter()
    client.rerank(body, workload.pairs)
    return time.perf_counter() - t0


def concurrent_requests(url: str, api_key: str | None, workload: RerankWorkload,
                        clients: int, deadline_s: float = 900.0) -> dict:
    """`clients` threads, each on its own connection, released together, each sending the
    workload until it is answered. A 429 (the service's admission control: more tokens in
    flight than it admits) is retried after its Retry-After, as a client of TEI's API does,
    so the wall time includes the waits. Returns the wall seconds from the release to the
    last answer, the number of 429s and the Retry-After of each."""
    body = encode_body(workload)
    barrier = threading.Barrier(clients + 1)
    errors: list[str] = []
    retry_after: list[float] = []
    lock = threading.Lock()

    def one_client() -> None:
        client = RerankClient(url, api_key)
        try:
            try:
                client.request("GET", "/ping")  # open the connection before the clock starts
            except Exception:
                barrier.abort()  # nobody waits for a client that cannot start
                raise
            barrier.wait()
            give_up = time.monotonic() + deadline_s
            while True:
                try:
                    client.rerank(body, workload.pairs)
                    return
                except Refused as refused:
                    with lock:
                        retry_after.append(refused.retry_after)
                    if time.monotonic() + refused.retry_after > give_up:
                        raise
                    time.sleep(refused.retry_after)
        except Exception as exc:  # reported after the run
            with lock:
                errors.append(str(exc))
        finally:
            client.close()

    threads = [threading.Thread(target=one_client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass  # a client could not connect: its error is reported below
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    if errors:
        raise BenchError(f"{len(errors)} of {clients} concurrent rerank clients failed, e.g. "
                         f"{errors[0]}")
    return {"seconds": wall, "refusals": len(retry_after), "retry_after_s": retry_after}
