"""`inv stress`: the host service under hostile and heavy load, measured in one run.

Each phase starts from a healthy service with the default limits (a fresh one where a phase
ends it) and prints what it saw next to the same run's idle figures:

- memory: peak RSS while 16 clients each send one 3.8 MB text at once (target < 1.5 GB);
- flood: /health latency while 48 clients post 512 x 300-word inputs without pause
  (target p99 < 250 ms, no probe lost), and the share of 429s they get;
- shutdown: SIGTERM in the middle of that flood to process exit (target < 10 s);
- fuzz: hostile bodies and headers (target >= 10,000 sent, 0 answers 5xx, healthy after);
- soak: 16 clients for a while (target: 0 errors, RSS growth < 5 %).

Only loopback is contacted: the service is started here, on a free port. The options are
stress_options.py's, the table and its verdicts stress_report.py's.
"""
from __future__ import annotations

import http.client
import json
import os
import random
import signal
import threading
import time
from typing import Callable

import psutil

from tasks.bench.client import auth_headers
from tasks.bench.machine import cpu_model
from tasks.bench.stats import percentile
from tasks.bench.stress_options import StressOptions
from tasks.bench.stress_report import Report
from tasks.core.local_http import Answer, KeepAliveClient
from tasks.core.say import Say

WORDS = ("river stone light paper garden window music winter valley engine market "
         "silver orange signal harbor forest letter bridge candle planet").split()


# --- HTTP on loopback ------------------------------------------------------------------------

class LoadClient(KeepAliveClient):
    """One keep-alive connection that sends the load (no reconnect: a request that fails is
    counted as no answer)."""

    def __init__(self, port: int, timeout: float = 60.0, api_key: str | None = None):
        super().__init__(port, timeout=timeout, headers=auth_headers(api_key))

    def post_json(self, path: str, body: bytes) -> Answer:
        return self.request("POST", path, body, {"Content-Type": "application/json"})


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def prose(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


# --- watching the service ----------------------------------------------------------------------

class RssSampler(threading.Thread):
    """Peak resident memory of a process, sampled every 20 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = self.proc.memory_info().rss
        self._halt = threading.Event()

    def run(self):
        while not self._halt.wait(0.02):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return

    def stop(self) -> int:
        self._halt.set()
        self.join(2)
        return self.peak


def _probe_loop(port: int, every: float, timeout: float, stop, out) -> None:
    """The prober's own process: GET /health every `every` s until `stop` is set; sends
    back (latencies in s, lost probes)."""
    client = LoadClient(port, timeout=timeout)
    latencies: list[float] = []
    lost = 0
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            status, _, _ = client.request("GET", "/health")
            ok = status in (200, 503)
        except (OSError, http.client.HTTPException):
            ok = False
        took = time.perf_counter() - t0
        if ok:
            latencies.append(took)
        else:
            lost += 1
        stop.wait(max(0.0, every - took))
    client.close()
    out.send((latencies, lost))


class HealthProber:
    """GET /health every `every` s from a process of its own (as `inv status` or a container's
    health check would: the load generator's threads must not delay it); a probe that takes
    longer than `timeout` or fails is lost."""

    def __init__(self, port: int, every: float = 0.1, timeout: float = 2.0):
        import multiprocessing
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._recv, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_probe_loop, args=(port, every, timeout, self._stop, send),
                                 daemon=True)
        self.timeout = timeout

    def start(self) -> None:
        self._proc.start()

    def stop(self) -> dict:
        self._stop.set()
        latencies, lost = self._recv.recv() if self._recv.poll(self.timeout + 10) else ([], -1)
        self._proc.join(5)
        ms = [x * 1000 for x in latencies]
        return {"probes": len(ms) + max(lost, 0), "lost": lost,
                "p50_ms": _rounded(percentile(ms, 50)), "p99_ms": _rounded(percentile(ms, 99)),
                "max_ms": round(max(ms), 1) if ms else None}


# --- phases ------------------------------------------------------------------------------------

def idle_figures(port: int, pid: int, probes: int = 50) -> dict:
    client = LoadClient(port)
    ms = []
    for _ in range(probes):
        t0 = time.perf_counter()
        client.request("GET", "/health")
        ms.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.01)
    client.close()
    return {"health_p50_ms": _rounded(percentile(ms, 50)),
            "health_p99_ms": _rounded(percentile(ms, 99)),
            "rss_mb": round(psutil.Process(pid).memory_info().rss / 2**20)}


def run_clients(count: int, seconds: float, work: Callable[[LoadClient, random.Random], int],
                port: int, api_key: str | None, stop: threading.Event | None = None
                ) -> dict[int, int]:
    """`count` threads call `work` in a loop until `seconds` pass (or `stop`); each call
    returns a status (0: no answer). Returns how many answers of each status."""
    stop = stop or threading.Event()
    counts: dict[int, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop(seed: int):
        rng = random.Random(seed)
        client = LoadClient(port, timeout=max(seconds, 30), api_key=api_key)
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                status = work(client, rng)
            except (OSError, http.client.HTTPException):
                status = 0
                time.sleep(0.05)
            with lock:
                counts[status] = counts.get(status, 0) + 1
        client.close()

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)
    return counts


def memory_phase(port: int, pid: int, api_key: str | None, clients: int = 16,
                 text_bytes: int = 3_800_000) -> dict:
    body = json.dumps({"input": "a " * (text_bytes // 2)}).encode()
    sampler = RssSampler(pid)
    before = sampler.peak
    sampler.start()
    statuses: list[int] = []
    barrier = threading.Barrier(clients)

    def one():
        client = LoadClient(port, timeout=300, api_key=api_key)
        barrier.wait()
        try:
            statuses.append(client.post_json("/v1/embeddings", body)[0])
        except OSError:
            statuses.append(0)
        client.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    peak = sampler.stop()
    return {"clients": clients, "text_mb": round(text_bytes / 1e6, 1),
            "rss_before_mb": round(before / 2**20), "rss_peak_mb": round(peak / 2**20),
            "seconds": round(time.monotonic() - t0, 2),
            "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))}}


def heavy_body(rng: random.Random, items: int = 512, words: int = 300) -> bytes:
    return json.dumps({"input": [prose(rng, words) for _ in range(items)]}).encode()


def flood_phase(port: int, api_key: str | None, seconds: float, clients: int = 48,
                signal_pid: int | None = None) -> dict:
    """48 clients posting heavy requests back to back, with /health probed throughout. With
    `signal_pid`, SIGTERM goes to it halfway and the time to its exit is measured."""
    bodies = [heavy_body(random.Random(i)) for i in range(4)]
    prober = HealthProber(port)
    prober.start()
    stop = threading.Event()
    result: dict = {}

    def work(client: LoadClient, rng: random.Random) -> int:
        return client.post_json("/v1/embeddings", rng.choice(bodies))[0]

    duration = seconds
    if signal_pid is not None:
        duration = seconds / 2 + 60  # the clients go on until the process is gone

        def terminate():
            time.sleep(seconds / 2)
            t0 = time.monotonic()
            os.kill(signal_pid, signal.SIGTERM)
            proc = psutil.Process(signal_pid)
            try:
                proc.wait(60)
                result["sigterm_to_exit_s"] = round(time.monotonic() - t0, 2)
            except psutil.TimeoutExpired:
                result["sigterm_to_exit_s"] = None
            stop.set()
        threading.Thread(target=terminate, daemon=True).start()

    counts = run_clients(clients, duration, work, port, api_key, stop)
    health = prober.stop()
    answers = sum(counts.values())
    result.update({"clients": clients, "seconds": seconds, "answers": answers,
                   "statuses": {str(k): v for k, v in sorted(counts.items())},
                   "share_429": round(counts.get(429, 0) / answers, 3) if answers else None,
                   "health": health})
    return result


def hostile_bodies(rng: random.Random):
    """Endless (path, body, headers) a hostile or careless client might send."""
    scalars = [None, True, 0, -1, 1e308, 10**30, "", "x", "a\ud800", "\x00", "😀" * 50,
               [], {}, [1, 2], [[1]], ["ok", 5], {"a": 1}, "é" * 300, float("nan")]
    fields = ["input", "texts", "model", "encoding_format", "dimensions", "user"]
    while True:
        path = rng.choice(["/embed", "/v1/embeddings"])
        kind = rng.random()
        headers = {"Content-Type": rng.choice(["application/json", "application/json",
                                               "text/plain", "", "application/x+json"])}
        if kind < 0.45:
            body = {f: rng.choice(scalars) for f in rng.sample(fields, rng.randint(0, 4))}
            if rng.random() < 0.6:
                body["input"] = rng.choice([prose(rng, rng.randint(1, 20)),
                                            [prose(rng, 5)] * rng.randint(1, 4)])
            raw = json.dumps(body, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        elif kind < 0.6:
            depth = rng.randint(1, 20000)
            raw = ('{"input":' + "[" * depth + "]" * depth + "}").encode()
        elif kind < 0.75:
            raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
        elif kind < 0.85:
            good = json.dumps({"input": prose(rng, 8)}).encode()
            cut = rng.randint(0, len(good))
            raw = good[:cut] + bytes([rng.getrandbits(8)]) + good[cut + 1:]
        else:
            raw = ('{"input": "x", "dimensions": ' + "9" * rng.randint(1, 6000) + "}").encode()
        yield path, raw, headers


def fuzz_phase(port: int, api_key: str | None, cases: int, seed: int = 7) -> dict:
    rng = random.Random(seed)
    client = LoadClient(port, timeout=30, api_key=api_key)
    statuses: dict[int, int] = {}
    not_json = 0
    t0 = time.monotonic()
    for _, (path, raw, headers) in zip(range(cases), hostile_bodies(rng)):
        try:
            status, resp_headers, _ = client.request("POST", path, raw, headers)
        except (OSError, http.client.HTTPException):
            status, resp_headers = 0, {}
        statuses[status] = statuses.get(status, 0) + 1
        if status and not resp_headers.get("content-type", "").startswith("application/json"):
            not_json += 1
    health = LoadClient(port).request("GET", "/health")[0]
    return {"cases": cases, "seconds": round(time.monotonic() - t0, 1),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "5xx": sum(v for k, v in statuses.items() if k >= 500), "no_answer": statuses.get(0, 0),
            "not_json": not_json, "healthy_after": health == 200}


def soak_phase(port: int, pid: int, api_key: str | None, seconds: float,
               clients: int = 16) -> dict:
    """Steady, polite traffic: mixed small requests; RSS after a warm-up vs at the end."""
    proc = psutil.Process(pid)
    warm = min(60.0, seconds / 10)

    def work(client: LoadClient, rng: random.Random) -> int:
        n = rng.choice([1, 1, 1, 4, 16])
        body = json.dumps({"input": [prose(rng, rng.randint(3, 120)) for _ in range(n)]}).encode()
        return client.post_json(rng.choice(["/embed", "/v1/embeddings"]), body)[0]

    rss: list[int] = []

    def sample():
        time.sleep(warm)
        while len(rss) < 2 or time.monotonic() < end:
            rss.append(proc.memory_info().rss)
            time.sleep(1)

    end = time.monotonic() + seconds
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    counts = run_clients(clients, seconds, work, port, api_key)
    sampler.join(5)
    errors = sum(v for k, v in counts.items() if k != 200)
    start_rss, end_rss = (rss[0], rss[-1]) if rss else (0, 0)
    return {"clients": clients, "seconds": seconds, "requests": sum(counts.values()),
            "errors": errors, "statuses": {str(k): v for k, v in sorted(counts.items())},
            "rss_after_warmup_mb": round(start_rss / 2**20), "rss_end_mb": round(end_rss / 2**20),
            "rss_growth_pct": round(100 * (end_rss - start_rss) / start_rss, 2) if start_rss else None}


def cpu_name() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores"


def run_stress(start: Callable[[], "object"], options: StressOptions, say: Say) -> Report:
    """`start()` gives a started, healthy service with `.port`, `.proc` and `.stop()`."""
    report = Report(cpu=cpu_name())
    svc = start()
    try:
        report.idle = idle_figures(svc.port, svc.proc.pid)
        say(f"idle: /health p50 {report.idle['health_p50_ms']} ms, RSS {report.idle['rss_mb']} MB")
        say("memory: 16 concurrent 3.8 MB texts")
        report.memory = memory_phase(svc.port, svc.proc.pid, options.api_key)
        say(f"  peak RSS {report.memory['rss_peak_mb']} MB")
        say(f"fuzz: {options.fuzz_cases} hostile requests")
        report.fuzz = fuzz_phase(svc.port, options.api_key, options.fuzz_cases)
        say(f"  5xx {report.fuzz['5xx']}, healthy after: {report.fuzz['healthy_after']}")
        if options.soak_seconds > 0:
            say(f"soak: 16 clients for {options.soak_seconds:g}s")
            report.soak = soak_phase(svc.port, svc.proc.pid, options.api_key,
                                     options.soak_seconds)
            say(f"  errors {report.soak['errors']}, RSS growth {report.soak['rss_growth_pct']} %")
        say(f"flood: 48 clients x 512 texts for {options.flood_seconds:g}s")
        report.flood = flood_phase(svc.port, options.api_key, options.flood_seconds)
        say(f"  /health p99 {report.flood['health']['p99_ms']} ms, "
            f"lost {report.flood['health']['lost']}, 429 share {report.flood['share_429']}")
    finally:
        svc.stop()
    say("shutdown: SIGTERM halfway through a flood")
    svc = start()
    try:
        report.shutdown = flood_phase(svc.port, options.api_key, options.flood_seconds,
                                      signal_pid=svc.proc.pid)
        say(f"  SIGTERM to exit {report.shutdown.get('sigterm_to_exit_s')} s")
    finally:
        svc.stop()
    return report
