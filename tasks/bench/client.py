"""The bench's HTTP measurements: embedding requests on keep-alive loopback connections, one
client in order, or many at once.

Every client is tasks.core.local_http.KeepAliveClient: the machine's cores are shared by the
clients and the service, and a light client leaves them to the service, so the figures
describe the service more than the client library.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Sequence
from urllib.parse import urlsplit

from tasks.bench.errors import BenchError
from tasks.bench.stats import rate
from tasks.core.local_http import Answer, KeepAliveClient
from tasks.core.settings import load_settings


def auth_headers(api_key: str | None) -> dict[str, str]:
    """What every request of ours carries when the service wants a key (MLX_API_KEY)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class EmbedClient(KeepAliveClient):
    """One keep-alive connection to the service that sends POST /embed, as a lean client does;
    a connection the server dropped is reopened once. The API key defaults to MLX_API_KEY from
    the environment or .env.dev, as every task reads it."""

    def __init__(self, url: str, timeout: float = 120.0, api_key: str | None = None):
        parts = urlsplit(url)
        key = load_settings().mlx_api_key if api_key is None else api_key
        super().__init__(parts.port, parts.hostname, timeout=timeout,
                         headers=auth_headers(key), reconnect=True)
        self.url = url

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def embed(self, texts: Sequence[str]) -> None:
        """POST /embed; raises BenchError unless it answers 200 with one vector per text."""
        status, _, raw = self.request("POST", "/embed", json.dumps({"input": list(texts)}).encode(),
                                      {"Content-Type": "application/json"})
        if status != 200:
            raise BenchError(f"POST {self.url}/embed answered {status}: {raw[:200]!r}")
        got = len(json.loads(raw).get("embeddings", []))
        if got != len(texts):
            raise BenchError(f"POST {self.url}/embed returned {got} embeddings for "
                             f"{len(texts)} texts")


def http_pass(client: EmbedClient, texts: Sequence[str], batch_size: int) -> float:
    """One client, batches of batch_size in order: seconds for the whole pass."""
    parts = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
    t0 = time.perf_counter()
    for part in parts:
        client.embed(part)
    return time.perf_counter() - t0


def latency_samples(client: EmbedClient, texts: Sequence[str], requests_: int) -> list[float]:
    """Sequential one-text requests at idle: milliseconds each."""
    out = []
    for i in range(requests_):
        t0 = time.perf_counter()
        client.embed([texts[i % len(texts)]])
        out.append((time.perf_counter() - t0) * 1000)
    return out


def concurrent_run(url: str, plan: Sequence[Sequence[str]]) -> dict:
    """One thread per client, released together; each sends its texts one per request.

    Returns wall seconds (release to last answer), texts/s and per-request latencies (ms).
    """
    barrier = threading.Barrier(len(plan) + 1)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(texts: Sequence[str]) -> None:
        client = EmbedClient(url)
        client.get("/ping")  # open the connection before the clock starts
        mine = []
        barrier.wait()
        try:
            for text in texts:
                t0 = time.perf_counter()
                client.embed([text])
                mine.append((time.perf_counter() - t0) * 1000)
        except Exception as exc:  # reported after the run
            with lock:
                errors.append(str(exc))
        client.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(texts,), daemon=True) for texts in plan]
    for thread in threads:
        thread.start()
    barrier.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    if errors:
        raise BenchError(f"{len(errors)} concurrent clients failed, e.g. {errors[0]}")
    total = sum(len(texts) for texts in plan)
    return {"seconds": wall, "tps": rate(total, wall), "latencies_ms": latencies}
