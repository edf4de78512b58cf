"""Before/after: the same work against the host service of two checkouts, in one run.

    .venv/bin/python bench/ab_checkouts.py OLD_CHECKOUT [NEW_CHECKOUT] [--rounds 5]

Starts `python -m mlx_service` from each checkout (the same service venv, free loopback
ports) and alternates between them, round by round, on the same work: bench/corpus.json in
its batches (one client), and 16 concurrent clients sending one short text each. Prints each
side's median texts/s and the ratio new / old.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = json.loads((ROOT / "bench" / "corpus.json").read_text())


def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(checkout: Path, python: str, logs: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLX_", "EMBEDDINGS_"))}
    env.update(MLX_PORT=str(port), MLX_HOST="127.0.0.1", PYTHONPATH=str(checkout),
               HF_HUB_OFFLINE="1")
    log = open(logs / f"{checkout.name}-{port}.log", "wb")
    proc = subprocess.Popen([python, "-m", "mlx_service"], cwd=checkout, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the service of {checkout} did not become healthy")


def post(conn: http.client.HTTPConnection, texts: list[str]) -> None:
    conn.request("POST", "/embed", body=json.dumps({"input": texts}),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200, resp.status


def corpus_rate(port: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    texts, t0 = 0, time.perf_counter()
    for kind, size in (("short", 8), ("medium", 8), ("long", 4)):
        items = CORPUS[kind]
        for i in range(0, len(items), size):
            post(conn, items[i:i + size])
            texts += len(items[i:i + size])
    conn.close()
    return texts / (time.perf_counter() - t0)


def clients_rate(port: int, clients: int = 16, each: int = 12) -> float:
    short = CORPUS["short"]

    def client(k: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for j in range(each):
            post(conn, [short[(k + j) % len(short)]])
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients * each / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path, nargs="?", default=ROOT)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--python", default=str(ROOT / ".venv-mlx" / "bin" / "python"))
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="ab-"))
    sides = {"old": args.old.resolve(), "new": args.new.resolve()}
    running = {name: start(path, args.python, logs) for name, path in sides.items()}
    results = {name: {"corpus": [], "clients": []} for name in sides}
    try:
        for name, (_, port) in running.items():  # warm-up, not counted
            corpus_rate(port)
        for r in range(args.rounds):
            order = list(running) if r % 2 == 0 else list(reversed(running))
            for name in order:
                port = running[name][1]
                results[name]["corpus"].append(corpus_rate(port))
                results[name]["clients"].append(clients_rate(port))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for proc, _ in running.values():
            proc.terminate()
            proc.wait(30)
    print(f"{os.cpu_count()} cores; medians of {args.rounds} alternating rounds, texts/s")
    for work in ("corpus", "clients"):
        old = statistics.median(results["old"][work])
        new = statistics.median(results["new"][work])
        label = {"corpus": "bench/corpus.json in its batches, one client",
                 "clients": "16 clients, one short text each"}[work]
        print(f"  {label:46} old {old:7.1f}  new {new:7.1f}  new/old {new / old:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
