"""Concurrent clients get their own rows back: batching must never mix them up."""
from __future__ import annotations

import re
import threading

from tests.service_support import http

TEXTS = [f"sentence number {i}: " + " ".join(["alpha", "beta", "gamma", "delta"][: 1 + i % 4]) * (1 + i % 5)
         for i in range(32)]


def batches_so_far(service) -> tuple[int, float]:
    _, _, raw = http("GET", service.url + "/metrics")
    body = raw.decode()
    count = int(re.search(r"^mlx_embed_batch_size_rows_count (\d+)", body, re.M).group(1))
    rows = float(re.search(r"^mlx_embed_batch_size_rows_sum ([\d.]+)", body, re.M).group(1))
    return count, rows


def test_32_concurrent_clients_get_their_own_answers(service):
    # One at a time first: the answers concurrency must reproduce.
    single = {}
    for text in TEXTS:
        status, body = service.post("/embed", {"input": text})
        assert status == 200
        single[text] = body["embeddings"][0]
    assert len({tuple(v) for v in single.values()}) == len(TEXTS)  # all different

    batches_before, rows_before = batches_so_far(service)
    barrier = threading.Barrier(len(TEXTS))
    answers: dict[int, tuple] = {}

    def client(i: int):
        # Each client sends its text among two others, so rows of one request are
        # spread across sorted batches too.
        mine = [TEXTS[i], TEXTS[(i + 7) % 32], TEXTS[(i + 13) % 32]]
        barrier.wait()
        answers[i] = (mine, service.post("/v1/embeddings", {"input": mine}))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(TEXTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(answers) == len(TEXTS)
    tolerance = 1e-5 if service.get("/info")[1]["precision"] != "bf16" else 2e-3
    for i, (mine, (status, body)) in answers.items():
        assert status == 200, body
        for text, datum in zip(mine, body["data"]):
            got, want = datum["embedding"], single[text]
            # Padding next to longer rows may change the last bits, nothing more (in bf16,
            # such a bit can tip an activation's rounding: a bf16 step, not a wrong row).
            assert max(abs(a - b) for a, b in zip(got, want)) < tolerance, (i, text)

    batches_after, rows_after = batches_so_far(service)
    assert rows_after - rows_before == 3 * len(TEXTS)
    # Requests that arrived together were embedded together: fewer passes than requests.
    assert batches_after - batches_before < len(TEXTS)
