"""Before/after: the same work against the host service of two checkouts, in one run.

    .venv/bin/python tasks/bench/scripts/ab_checkouts.py OLD_CHECKOUT [NEW_CHECKOUT] [--rounds 5]

Starts `python -m mlx_service` from each checkout (the same service venv, free loopback
ports) and alternates between them, round by round, on the same work: the bench's corpus in
its batches (one client), and 16 concurrent clients sending one short text each. Prints each
side's median texts/s and the ratio new / old, the launch-to-healthy time of each side
(`--starts` launches each, alternating; the first start of a checkout is left out: it may
fill caches), and whether both sides give the same vectors for the whole corpus.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))  # run in the tooling's venv: tasks/ is importable

from tasks.bench.corpus import CORPUS as CORPUS_PATH  # noqa: E402
from tasks.bench.machine import cpu_model, loadavg  # noqa: E402
from tasks.bench.stats import median  # noqa: E402
from tasks.core.local_http import KeepAliveClient  # noqa: E402
from tasks.core.polling import poll_until  # noqa: E402
from tasks.core.ports import free_port  # noqa: E402

CORPUS = json.loads((ROOT / CORPUS_PATH).read_text())


def start(checkout: Path, python: str, logs: Path) -> tuple[subprocess.Popen, int, float]:
    """The checkout's service, healthy; with the seconds from launch to its first 200."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLX_", "EMBEDDINGS_"))}
    env.update(MLX_PORT=str(port), MLX_HOST="127.0.0.1", PYTHONPATH=str(checkout),
               HF_HUB_OFFLINE="1")
    log = open(logs / f"{checkout.name}-{port}.log", "wb")
    launched = time.perf_counter()
    proc = subprocess.Popen([python, "-m", "mlx_service"], cwd=checkout, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    probe = KeepAliveClient(port, timeout=2)

    def healthy() -> bool:
        try:
            return probe.request("GET", "/health").status == 200
        except OSError:
            return False

    try:
        if poll_until(healthy, 120, interval=0.02):
            return proc, port, time.perf_counter() - launched
    finally:
        probe.close()
    proc.kill()
    raise SystemExit(f"the service of {checkout} did not become healthy")


def post(client: KeepAliveClient, texts: list[str]) -> None:
    status = client.request("POST", "/embed", json.dumps({"input": texts}).encode(),
                            {"Content-Type": "application/json"}).status
    assert status == 200, status


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(30)


def cold_starts(sides: dict[str, Path], python: str, logs: Path, starts: int) -> dict:
    """Launch-to-healthy seconds per side, alternating, after one start each not counted."""
    out: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(starts + 1):
        for name in (list(sides) if r % 2 == 0 else list(reversed(sides))):
            proc, _, seconds = start(sides[name], python, logs)
            stop(proc)
            if r:
                out[name].append(seconds)
    return out


def vectors(port: int) -> list[list[float]]:
    client = KeepAliveClient(port, timeout=120)
    texts = [t for kind in ("short", "medium", "long") for t in CORPUS[kind]]
    status = client.request("POST", "/embed", json.dumps({"input": texts}).encode(),
                            {"Content-Type": "application/json"})
    body = json.loads(status.body)
    client.close()
    return body["embeddings"]


def min_cosine(a: list[list[float]], b: list[list[float]]) -> float:
    def cos(x, y):
        dot = sum(p * q for p, q in zip(x, y))
        return dot / ((sum(p * p for p in x) * sum(q * q for q in y)) ** 0.5 or 1.0)
    return min(cos(x, y) for x, y in zip(a, b))


def corpus_rate(port: int) -> float:
    client = KeepAliveClient(port, timeout=120)
    texts, t0 = 0, time.perf_counter()
    for kind, size in (("short", 8), ("medium", 8), ("long", 4)):
        items = CORPUS[kind]
        for i in range(0, len(items), size):
            post(client, items[i:i + size])
            texts += len(items[i:i + size])
    client.close()
    return texts / (time.perf_counter() - t0)


def clients_rate(port: int, clients: int = 16, each: int = 12) -> float:
    short = CORPUS["short"]

    def client(k: int):
        client = KeepAliveClient(port, timeout=120)
        for j in range(each):
            post(client, [short[(k + j) % len(short)]])
        client.close()

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
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--python", default=str(ROOT / ".venv-mlx" / "bin" / "python"))
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="ab-"))
    sides = {"old": args.old.resolve(), "new": args.new.resolve()}
    load_before = loadavg()
    starts = cold_starts(sides, args.python, logs, args.starts)
    running = {name: start(path, args.python, logs)[:2] for name, path in sides.items()}
    results = {name: {"corpus": [], "clients": []} for name in sides}
    try:
        same = min_cosine(vectors(running["old"][1]), vectors(running["new"][1]))
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
            stop(proc)
    print(f"{cpu_model()}, {os.cpu_count()} cores, load average {load_before} before and "
          f"{loadavg()} after; medians of {args.rounds} alternating rounds, texts/s")
    for work in ("corpus", "clients"):
        old = median(results["old"][work])
        new = median(results["new"][work])
        label = {"corpus": "the bench's corpus in its batches, one client",
                 "clients": "16 clients, one short text each"}[work]
        print(f"  {label:46} old {old:7.1f}  new {new:7.1f}  new/old {new / old:.2f}x")
    old, new = median(starts["old"]), median(starts["new"])
    print(f"  {'launch to healthy, seconds (median of ' + str(args.starts) + ')':46} "
          f"old {old:7.2f}  new {new:7.2f}  new/old {new / old:.2f}x")
    print(f"  {'same vectors for the corpus: min cosine':46} {same:.7f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
