"""The line protocol between `inv bench` and a measuring engine process (inprocess.py and
peer_st.py beside this file; tasks/bench/engines.py is the other end).

Standard library only: both engines run in venvs other than the tooling's. The worker loads
its model, writes one JSON line `{"ready": true, ...info}` on stdout, then answers one JSON
line per request line read from stdin:

    {"op": "run", "texts": [...], "batch_size": B}  ->  {"seconds": s, "n": len(texts)}
    {"op": "quit"}                                   ->  (exits)

`run` embeds the texts in consecutive batches of B, in order, and times the whole pass with
time.perf_counter(). Anything the worker prints for people goes to stderr.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Callable, IO, Sequence

EmbedBatch = Callable[[Sequence[str]], object]


def batches(texts: Sequence[str], size: int) -> list[Sequence[str]]:
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [texts[i:i + size] for i in range(0, len(texts), size)]


def timed_pass(embed_batch: EmbedBatch, texts: Sequence[str], batch_size: int) -> float:
    parts = batches(texts, batch_size)
    start = time.perf_counter()
    for part in parts:
        embed_batch(part)
    return time.perf_counter() - start


def serve(embed_batch: EmbedBatch, info: dict, stdin: IO[str] = sys.stdin,
          stdout: IO[str] = sys.stdout) -> int:
    """Answer requests until `quit` or end of input. Returns the number of runs answered."""
    stdout.write(json.dumps({"ready": True, **info}) + "\n")
    stdout.flush()
    answered = 0
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
            op = request.get("op")
            if op == "quit":
                break
            if op != "run":
                raise ValueError(f"unknown op {op!r}")
            texts = list(request["texts"])
            seconds = timed_pass(embed_batch, texts, int(request["batch_size"]))
            reply = {"seconds": seconds, "n": len(texts)}
            answered += 1
        except Exception as exc:  # the harness reports it; the worker stays up
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()
    return answered
