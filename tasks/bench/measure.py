"""`inv bench`: how fast the embedding service is, as ratios measured in one run.

What one run measures (all on the fixed corpus bench/corpus.json):

- throughput, texts/s, per workload (same texts, same batch sizes) for three engines side
  by side: the service's model code in-process (bench/inprocess.py, service venv), the service
  over HTTP (one client, POST /embed per batch), and the peer (bench/peer_st.py:
  sentence-transformers on torch CPU, in a venv of its own, when installed). Repeats are
  interleaved (engine by engine inside each repeat) so a noisy neighbour hits all engines alike;
  each figure is the median over repeats. service efficiency = HTTP / in-process.
- batching gain: 16 concurrent clients, each sending one short text per request (queries: the
  usual one-text request), against a service
  that coalesces requests and one that runs one text per forward pass (both started by us,
  measured in alternation).
- latency of one short text at idle: p50 and p99 over sequential requests.
- every shape of work, on real prose (bench/prose.json: 512 paragraphs of the license texts
  every Debian machine has, built by bench/build_prose_corpus.py, checked against
  bench/prose.sha256): the whole corpus in one call (the peer with its own global length sort:
  `model.encode(all, batch_size=32)`), chunks of 32 in corpus order, single-length batches
  (short, medium, long), and 16 concurrent one-text clients against the peer encoding one
  text at a time.

Every HTTP client here is a keep-alive stdlib connection (`Client`): on a 2-core machine the
clients share the cores with the service, and a heavy client library would measure itself.
- cold start: launch of `python -m mlx_service` to the first 200 from /health (median).

Plain functions here; tasks/bench_tasks.py only parses flags and prints. Progress goes to
stderr through the `say` callback; the result is one JSON-able document.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from tasks.core import local_http
from tasks.core.local_http import local_session

SCHEMA = "cortex-bench/1"
CLIENTS = 16
# Both services are started with MLX_COALESCE_ROWS: the worker takes further queued requests
# into a forward pass only while it holds fewer rows than this. 1 = one request per forward
# pass, which for one-text requests is one text per forward pass.
COALESCE_ENV = "MLX_COALESCE_ROWS"
UNBATCHED_ENV = {COALESCE_ENV: "1"}
PEER_VENV = Path(".venvs") / "peer-st"
PEER_REQUIREMENTS = Path("bench") / "peer-requirements.txt"
PEER_REQUIREMENTS_NODEPS = Path("bench") / "peer-requirements-nodeps.txt"
RESULTS_DIR = "bench-results"
PROSE = Path("bench") / "prose.json"
PROSE_DIGEST = Path("bench") / "prose.sha256"
CHUNK = 32               # the peer's encode batch size, and the chunked shapes' request size
# Single-length bins by words (about 1.3 tokens a word): (name, fewest, most words).
LENGTH_BINS = (("short", 3, 20), ("medium", 30, 80), ("long", 150, 10_000))
BIN_TEXTS = 64           # texts per single-length workload
# The service's auth when MLX_API_KEY is set (the services we start inherit it).
API_KEY_ENV = "MLX_API_KEY"

# (key, label, comparison, threshold): the issue's targets for a 2-core machine.
TARGETS = (
    ("service_efficiency", "service efficiency (HTTP / in-process)", ">=", 0.9),
    ("batching_gain", f"batching gain ({CLIENTS} one-text clients)", ">=", 3.0),
    ("vs_peer", "service / sentence-transformers throughput", ">=", 1.0),
    ("cold_start_s", "cold start, launch to healthy (s)", "<=", 3.0),
    ("vs_peer_corpus", "whole corpus in one call vs peer", ">=", 1.0),
    ("vs_peer_short", "short single-length batches vs peer", ">=", 1.0),
    ("vs_peer_medium", "medium single-length batches vs peer", ">=", 1.0),
    ("vs_peer_long", "long single-length batches vs peer", ">=", 1.0),
    ("vs_peer_chunks", f"chunks of {CHUNK} in corpus order vs peer", ">=", 2.0),
    ("vs_peer_one_text", f"{CLIENTS} one-text clients vs peer one by one", ">=", 1.5),
)


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why."""


Say = Callable[[str], None]


def _quiet(line: str) -> None:
    pass


# --- statistics (pure) -----------------------------------------------------------------------
def median(values: Iterable[float]) -> float | None:
    data = sorted(v for v in values if v is not None)
    if not data:
        return None
    mid = len(data) // 2
    return data[mid] if len(data) % 2 else (data[mid - 1] + data[mid]) / 2


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear between closest ranks (numpy's default)."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    data = sorted(values)
    if not data:
        return None
    rank = (len(data) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return data[low] + (data[high] - data[low]) * (rank - low)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is not > 0."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def rate(count: int, seconds: float | None) -> float | None:
    return ratio(float(count), seconds)


# --- corpus and workloads (pure) ---------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    name: str
    texts: tuple[str, ...]
    batch_size: int

    @property
    def size(self) -> int:
        return len(self.texts)


def load_corpus(path: Path) -> dict:
    corpus = json.loads(Path(path).read_text())
    for kind in ("short", "medium", "long"):
        texts = corpus.get(kind)
        if not isinstance(texts, list) or not texts or not all(
                isinstance(t, str) and t.strip() for t in texts):
            raise BenchError(f"{path}: {kind!r} must be a non-empty list of non-empty texts")
    return corpus


def corpus_digest(corpus: Mapping) -> str:
    payload = json.dumps({k: corpus[k] for k in ("short", "medium", "long")}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def load_prose(path: Path, digest_path: Path) -> list[str]:
    """The prose corpus, refused when it is not the file its checked-in sha256 names."""
    try:
        data = Path(path).read_bytes()
        expected = Path(digest_path).read_text().split()[0]
    except (OSError, IndexError) as exc:
        raise BenchError(f"cannot read the prose corpus: {exc}") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise BenchError(f"{path} does not match {digest_path}: rebuild both with "
                         "bench/build_prose_corpus.py, or restore them from git")
    texts = json.loads(data).get("texts")
    if not isinstance(texts, list) or len(texts) < 2 or not all(
            isinstance(t, str) and t.strip() for t in texts):
        raise BenchError(f"{path}: 'texts' must be a list of non-empty texts")
    return texts


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


def shape_ratios(shapes: Mapping, one_text: Mapping) -> dict[str, float | None]:
    """service / peer per shape, keyed as TARGETS names them."""
    by_name = {row["name"]: row for row in shapes.get("workloads", [])}
    out = {f"vs_peer_{name}": by_name.get(name, {}).get("vs_peer")
           for name in ("corpus", "short", "medium", "long", "chunks")}
    out["vs_peer_one_text"] = one_text.get("vs_peer")
    return out


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


def client_texts(corpus: Mapping) -> list[str]:
    """What the concurrent one-text clients send: the short texts, as search queries are."""
    return list(corpus["short"])


def client_plan(texts: Sequence[str], clients: int, per_client: int) -> list[list[str]]:
    """Client i's j-th request is texts[(i * per_client + j) % len]: every text, in turn."""
    if clients < 1 or per_client < 1:
        raise ValueError("clients and per_client must be >= 1")
    return [[texts[(i * per_client + j) % len(texts)] for j in range(per_client)]
            for i in range(clients)]


# --- results (pure) --------------------------------------------------------------------------
def summarize_throughput(workloads: Sequence[Workload],
                         seconds: Mapping[str, Mapping[str, list[float]]]) -> dict:
    """seconds[engine][workload] = one duration per repeat -> per-workload and overall texts/s.

    An engine's overall figure is all texts over the sum of its per-workload median times, so
    each workload weighs by its work, not by its count.
    """
    engines = list(seconds)
    rows = []
    for w in workloads:
        row = {"name": w.name, "texts": w.size, "batch_size": w.batch_size}
        for engine in engines:
            row[engine] = rate(w.size, median(seconds[engine].get(w.name, [])))
        rows.append(row)
    total_texts = sum(w.size for w in workloads)
    overall = {"name": "all", "texts": total_texts, "batch_size": None}
    for engine in engines:
        medians = [median(seconds[engine].get(w.name, [])) for w in workloads]
        overall[engine] = None if any(m is None for m in medians) else rate(total_texts,
                                                                            sum(medians))
    for row in (*rows, overall):
        row["efficiency"] = ratio(row.get("http"), row.get("inprocess"))
        row["vs_peer"] = ratio(row.get("http"), row.get("peer"))
    return {"workloads": rows, "overall": overall}


def evaluate_targets(ratios: Mapping[str, float | None]) -> list[dict]:
    out = []
    for key, label, op, threshold in TARGETS:
        value = ratios.get(key)
        met = None if value is None else (value >= threshold if op == ">=" else value <= threshold)
        out.append({"key": key, "label": label, "target": f"{op} {threshold:g}",
                    "value": value, "met": met})
    return out


def build_document(*, started: str, quick: bool, repeats: int, machine: dict, corpus: dict,
                   service: dict, throughput: dict, batching: dict, latency: dict,
                   cold_start: dict, peer: dict, elapsed_s: float, shapes: dict | None = None,
                   one_text: dict | None = None) -> dict:
    overall = throughput["overall"]
    ratios = {
        "service_efficiency": overall.get("efficiency"),
        "batching_gain": batching.get("gain"),
        "vs_peer": overall.get("vs_peer"),
        "inprocess_vs_peer": ratio(overall.get("inprocess"), overall.get("peer")),
        "cold_start_s": cold_start.get("median_s"),
        **shape_ratios(shapes or {}, one_text or {}),
    }
    return {
        "schema": SCHEMA,
        "started": started,
        "quick": quick,
        "repeats": repeats,
        "elapsed_s": round(elapsed_s, 1),
        "machine": machine,
        "corpus": corpus,
        "service": service,
        "peer": peer,
        "throughput": throughput,
        "batching": batching,
        "latency": latency,
        "cold_start": cold_start,
        "shapes": shapes or {},
        "one_text": one_text or {},
        "ratios": ratios,
        "targets": evaluate_targets(ratios),
    }


def _fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def format_report(doc: dict) -> str:
    """The table people read; the JSON document carries the same figures."""
    m, s, lines = doc["machine"], doc["service"], []
    lines.append(f"inv bench: {doc['started']}  {m['cpu']} ({m['cores']} cores), "
                 f"{m['platform']}; load avg {m['loadavg_start']} -> {m['loadavg_end']}")
    peer = doc["peer"]
    peer_text = (f"sentence-transformers {peer.get('sentence_transformers')} on torch "
                 f"{peer.get('torch')} ({peer.get('torch_threads')} threads)"
                 if peer.get("measured") else f"not measured ({peer.get('reason')})")
    lines.append(f"service: mlx {s.get('mlx', '?')} on {s.get('device', '?')}, blas "
                 f"{s.get('blas', '?')}; in-process blas {s.get('inprocess_blas', '?')}; "
                 f"peer: {peer_text}")
    lines.append(f"corpus: {doc['corpus']['path']} ({doc['corpus']['texts']} texts, sha256 "
                 f"{doc['corpus']['sha256'][:12]}); medians of {doc['repeats']} interleaved "
                 f"repeats{' (--quick)' if doc['quick'] else ''}")
    lines.append("")
    head = (f"{'throughput, texts/s':<24}{'in-process':>11}{'HTTP':>9}{'efficiency':>12}"
            f"{'peer (ST)':>11}{'HTTP/peer':>11}")
    lines += [head, "-" * len(head)]
    t = doc["throughput"]
    for row in (*t["workloads"], t["overall"]):
        label = (f"{row['name']} ({row['texts']} x{row['batch_size']})"
                 if row["batch_size"] else f"all ({row['texts']} texts)")
        lines.append(f"{label:<24}{_fmt(row.get('inprocess')):>11}{_fmt(row.get('http')):>9}"
                     f"{_fmt(row.get('efficiency'), '.2f'):>12}{_fmt(row.get('peer')):>11}"
                     f"{_fmt(row.get('vs_peer'), '.2f', 'x'):>11}")
    lines += format_shapes(doc.get("shapes") or {}, doc.get("one_text") or {}, doc["corpus"])
    lines.append("")
    b = doc["batching"]
    lines.append(f"batching: {b['clients']} clients x {b['requests_per_client']} one-text "
                 f"requests: coalescing {_fmt(b.get('batched_tps'))} texts/s "
                 f"(mean {_fmt(b.get('batched_rows_per_pass'), '.1f')} rows/pass), one text per "
                 f"pass {_fmt(b.get('unbatched_tps'))} texts/s (mean "
                 f"{_fmt(b.get('unbatched_rows_per_pass'), '.1f')} rows/pass): gain "
                 f"{_fmt(b.get('gain'), '.2f', 'x')}")
    lines.append(f"  the model's ceiling, in-process: {b['clients']} texts one per pass "
                 f"{_fmt(b.get('inprocess_one_by_one_tps'))} texts/s, as one batch "
                 f"{_fmt(b.get('inprocess_batch_tps'))} texts/s: "
                 f"{_fmt(b.get('inprocess_gain'), '.2f', 'x')}")
    if b.get("note"):
        lines.append(f"  note: {b['note']}")
    lt = doc["latency"]
    lines.append(f"latency, one short text at idle ({lt['requests']} requests): "
                 f"p50 {_fmt(lt.get('p50_ms'), '.1f')} ms, p99 {_fmt(lt.get('p99_ms'), '.1f')} ms")
    c = doc["cold_start"]
    lines.append(f"cold start, launch to healthy ({len(c['samples_s'])} launches): median "
                 f"{_fmt(c.get('median_s'), '.2f')} s (min {_fmt(c.get('min_s'), '.2f')}, max "
                 f"{_fmt(c.get('max_s'), '.2f')}); first /embed after healthy "
                 f"{_fmt(c.get('first_embed_ms'), '.0f')} ms")
    lines.append("")
    lines.append("targets:")
    for target in doc["targets"]:
        mark = {True: "met", False: "NOT MET", None: "not measured"}[target["met"]]
        spec = ".2f"
        lines.append(f"  {target['label']:<46} {_fmt(target['value'], spec):>7}  "
                     f"(target {target['target']}): {mark}")
    lines.append(f"elapsed {doc['elapsed_s']:.0f} s")
    return "\n".join(lines)


def format_shapes(shapes: Mapping, one_text: Mapping, corpus: Mapping) -> list[str]:
    """The shapes-of-work table: service (HTTP) against the peer on the same prose."""
    if not shapes.get("workloads"):
        return []
    prose = corpus.get("prose") or {}
    lines = ["", f"shapes of work on {prose.get('path', 'the prose corpus')} ({prose.get('texts')} "
                 f"texts, sha256 {str(prose.get('sha256', ''))[:12]}), texts/s:"]
    head = f"{'shape':<40}{'in-process':>11}{'HTTP':>9}{'peer (ST)':>11}{'HTTP/peer':>11}"
    lines += [head, "-" * len(head)]
    labels = {"corpus": "whole corpus in one call ({n})",
              "chunks": "chunks of {b} in corpus order ({n})",
              "short": "short, one length ({n} x{b})", "medium": "medium, one length ({n} x{b})",
              "long": "long, one length ({n} x{b})"}
    for row in shapes["workloads"]:
        label = labels.get(row["name"], row["name"]).format(n=row["texts"], b=row["batch_size"])
        lines.append(f"{label:<40}{_fmt(row.get('inprocess')):>11}{_fmt(row.get('http')):>9}"
                     f"{_fmt(row.get('peer')):>11}{_fmt(row.get('vs_peer'), '.2f', 'x'):>11}")
    if one_text:
        label = f"one text a request, {one_text.get('clients')} clients ({one_text.get('texts')})"
        lines.append(f"{label:<40}{'':>11}{_fmt(one_text.get('http_tps')):>9}"
                     f"{_fmt(one_text.get('peer_tps')):>11}"
                     f"{_fmt(one_text.get('vs_peer'), '.2f', 'x'):>11}")
        lines.append("  (the peer encodes the same texts one at a time, one call each)")
    return lines


# --- prometheus text (pure) -------------------------------------------------------------------
def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus exposition text -> {'name{labels}': value}; comments skipped."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


def rows_per_pass(before: Mapping[str, float], after: Mapping[str, float]) -> float | None:
    """Mean rows per forward pass between two /metrics readings (None if the service has no such
    histogram or ran no pass)."""
    name = "mlx_embed_batch_size_rows"
    if f"{name}_count" not in after:
        return None
    passes = after[f"{name}_count"] - before.get(f"{name}_count", 0.0)
    rows = after[f"{name}_sum"] - before.get(f"{name}_sum", 0.0)
    return ratio(rows, passes)


# --- machine ----------------------------------------------------------------------------------
def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": f"{sys.platform}-{platform.machine()}",
            "python": platform.python_version(), "loadavg_start": _loadavg(), "loadavg_end": None}


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def configured_key() -> str | None:
    """MLX_API_KEY from the environment or .env.dev, as every task reads it."""
    from tasks.core.settings import load_settings
    return load_settings().mlx_api_key


def auth_headers(api_key: str | None) -> dict[str, str]:
    """What every request of ours carries when the service wants a key (MLX_API_KEY)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- processes -------------------------------------------------------------------------------
def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


class Service:
    """`python -m mlx_service` on a free loopback port, started and stopped by us."""

    def __init__(self, python: Path, root: Path, log: Path, env: Mapping[str, str] | None = None,
                 label: str = "service"):
        self.python, self.root, self.log, self.label = python, root, log, label
        self.env = dict(env or {})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.cold_start_s: float | None = None

    def start(self, timeout: float = 120.0) -> float:
        """Launch and wait for /health 200; returns launch-to-healthy seconds."""
        import requests

        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **self.env)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(
                [str(self.python), "-m", "mlx_service", "--host", "127.0.0.1",
                 "--port", str(self.port)],
                cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        session = local_session()
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.label} exited with {self.proc.returncode} before it was "
                                 f"healthy; log {self.log}:\n{_tail(self.log)}")
            try:
                if session.get(self.url + "/health", timeout=1).status_code == 200:
                    self.cold_start_s = time.perf_counter() - t0
                    return self.cold_start_s
            except requests.RequestException:
                pass
            time.sleep(0.02)
        self.stop()
        raise BenchError(f"{self.label} was not healthy after {timeout:.0f} s; log {self.log}")

    def stop(self, grace: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def get_json(self, path: str) -> dict:
        return local_http.get(self.url + path, timeout=10,
                              headers=auth_headers(configured_key())).json()

    def metrics(self) -> dict[str, float]:
        import requests
        try:
            return parse_metrics(local_http.get(
                self.url + "/metrics", timeout=10,
                headers=auth_headers(configured_key())).text)
        except requests.RequestException:
            return {}


class Worker:
    """A bench/worker.py-protocol process (in-process MLX, or the peer)."""

    def __init__(self, argv: Sequence[str], root: Path, log: Path, label: str,
                 env: Mapping[str, str] | None = None):
        self.label, self.log = label, log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(list(argv), cwd=root, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     bufsize=1, env=dict(os.environ, **(env or {})))
        self.info: dict = {}

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise BenchError(f"{self.label} exited ({self.proc.returncode}); log {self.log}:\n"
                             f"{_tail(self.log)}")
        return json.loads(line)

    def wait_ready(self) -> dict:
        reply = self._read()
        if not reply.get("ready"):
            raise BenchError(f"{self.label} did not start: {reply}")
        self.info = {k: v for k, v in reply.items() if k != "ready"}
        return self.info

    def run(self, texts: Sequence[str], batch_size: int) -> float:
        self.proc.stdin.write(json.dumps({"op": "run", "texts": list(texts),
                                          "batch_size": batch_size}) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise BenchError(f"{self.label}: {reply['error']}")
        return float(reply["seconds"])

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            self._log.close()


# --- HTTP measurements ------------------------------------------------------------------------
class Client:
    """One keep-alive HTTP/1.1 connection (stdlib http.client), as a lean client holds it.

    The machine's cores are shared by the clients and the service: a light client leaves them
    to the service, so the figures describe the service more than the client library.
    """

    def __init__(self, url: str, timeout: float = 120.0, api_key: str | None = None):
        from urllib.parse import urlsplit
        parts = urlsplit(url)
        self.url, self.host, self.port, self.timeout = url, parts.hostname, parts.port, timeout
        self.headers = auth_headers(configured_key() if api_key is None else api_key)
        self._conn = None

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        import http.client
        for attempt in (1, 2):  # a keep-alive connection the server closed: reconnect once
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                headers = dict(self.headers)
                if body is not None:
                    headers["Content-Type"] = "application/json"
                self._conn.request(method, path, body=body, headers=headers)
                response = self._conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str) -> tuple[int, bytes]:
        return self._request("GET", path)

    def embed(self, texts: Sequence[str]) -> None:
        """POST /embed; raises BenchError unless it answers 200 with one vector per text."""
        status, raw = self._request("POST", "/embed", json.dumps({"input": list(texts)}).encode())
        if status != 200:
            raise BenchError(f"POST {self.url}/embed answered {status}: {raw[:200]!r}")
        got = len(json.loads(raw).get("embeddings", []))
        if got != len(texts):
            raise BenchError(f"POST {self.url}/embed returned {got} embeddings for "
                             f"{len(texts)} texts")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def http_pass(client: Client, texts: Sequence[str], batch_size: int) -> float:
    """One client, batches of batch_size in order: seconds for the whole pass."""
    parts = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
    t0 = time.perf_counter()
    for part in parts:
        client.embed(part)
    return time.perf_counter() - t0


def latency_samples(client: Client, texts: Sequence[str], requests_: int) -> list[float]:
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
        client = Client(url)
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


# --- the run ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchOptions:
    quick: bool = False
    peer: bool = True
    repeats: int | None = None
    peer_venv: Path | None = None

    @property
    def n_repeats(self) -> int:
        return self.repeats or (3 if self.quick else 7)

    @property
    def latency_requests(self) -> int:
        return 60 if self.quick else 200

    @property
    def per_client(self) -> int:
        return 8 if self.quick else 12

    @property
    def cold_starts(self) -> int:
        """Launches in all: the two measured services, plus extra launch-and-stop ones."""
        return 2 if self.quick else 5


def peer_python(root: Path, peer_venv: Path | None = None) -> Path:
    from tasks.core.venvs import venv_python
    return venv_python(Path(peer_venv) if peer_venv else root / PEER_VENV)


def setup_peer(root: Path, peer_venv: Path | None = None, say: Say = _quiet,
               force: bool = False) -> bool:
    """Create or reuse the peer venv (sentence-transformers on torch CPU); True when pip ran."""
    from tasks.core.venvs import InstallStep, ensure_venv
    path = Path(peer_venv) if peer_venv else root / PEER_VENV
    steps = [InstallStep(root / PEER_REQUIREMENTS),
             InstallStep(root / PEER_REQUIREMENTS_NODEPS, ("--no-deps",))]
    return ensure_venv(path, steps, say=say, force=force)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_bench(settings, options: BenchOptions = BenchOptions(), say: Say = _quiet) -> dict:
    """The whole benchmark; returns the result document (see build_document)."""
    from tasks.host.service_venv import install_service_venv, service_python

    started_clock, started = time.perf_counter(), _now()
    root = Path(settings.root)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    logs = root / RESULTS_DIR / "logs" / stamp
    corpus_path = root / "bench" / "corpus.json"
    corpus = load_corpus(corpus_path)
    workloads = build_workloads(corpus)
    prose = load_prose(root / PROSE, root / PROSE_DIGEST)
    shape_workloads = build_shape_workloads(prose)
    machine = machine_info()
    repeats = options.n_repeats

    if install_service_venv(settings, say=say):
        say("service venv installed")
    python = service_python(settings)

    services: list[Service] = []
    workers: list[Worker] = []
    try:
        # 1. Cold starts, one launch at a time while nothing else of ours runs.
        cold: list[float] = []
        for i in range(options.cold_starts - 2):
            extra = Service(python, root, logs / f"cold-{i}.log", label=f"cold start {i + 1}")
            say(f"cold start {i + 1}/{options.cold_starts}: launching {extra.url}")
            try:
                cold.append(extra.start())
            finally:
                extra.stop()
        batched = Service(python, root, logs / "service.log", label="service (coalescing)")
        services.append(batched)
        say(f"cold start {len(cold) + 1}/{options.cold_starts}: service (coalescing) "
            f"{batched.url}")
        cold.append(batched.start())
        client = Client(batched.url)
        t0 = time.perf_counter()
        client.embed(["hello world"])
        first_embed_ms = (time.perf_counter() - t0) * 1000
        unbatched = Service(python, root, logs / "service-unbatched.log", env=UNBATCHED_ENV,
                            label="service (one text per pass)")
        services.append(unbatched)
        say(f"cold start {len(cold) + 1}/{options.cold_starts}: service (one text per pass, "
            f"{COALESCE_ENV}=1) {unbatched.url}")
        cold.append(unbatched.start())
        info = batched.get_json("/info")

        # 2. Workers: in-process MLX (same BLAS mode as the service), and the peer.
        blas_mode = os.environ.get("MLX_BLAS", "auto")
        say("starting the in-process MLX worker")
        inproc = Worker([str(python), "bench/inprocess.py", "--blas", blas_mode], root,
                        logs / "inprocess.log", "in-process MLX worker")
        workers.append(inproc)
        inproc.wait_ready()
        peer_doc: dict = {"measured": False, "engine": "sentence-transformers (torch CPU)"}
        peer = None
        ppy = peer_python(root, options.peer_venv)
        if not options.peer:
            peer_doc["reason"] = "--no-peer"
        elif not ppy.exists():
            peer_doc["reason"] = (f"no peer venv at {ppy.parent.parent}; create it with "
                                  "`inv bench --setup-peer`")
        else:
            say(f"starting the peer worker ({ppy})")
            try:
                peer = Worker([str(ppy), "bench/peer_st.py"], root, logs / "peer.log",
                              "peer worker", env={"HF_HUB_OFFLINE": "1"})
                workers.append(peer)
                peer_doc.update(peer.wait_ready(), measured=True)
            except BenchError as exc:
                peer, peer_doc["reason"] = None, f"peer failed to start: {exc}"
                say(peer_doc["reason"])

        engines: dict[str, Callable[[Workload], float]] = {
            "inprocess": lambda w: inproc.run(w.texts, w.batch_size),
            "http": lambda w: http_pass(client, w.texts, w.batch_size),
        }
        if peer is not None:
            engines["peer"] = lambda w: peer.run(w.texts, w.batch_size)

        # 3. Throughput, interleaved: every repeat runs every workload on every engine, the
        # engine order rotating so none always runs first (warm caches, turbo, neighbours).
        say("warm-up pass on every engine")
        for w in workloads:
            for run in engines.values():
                run(w)
        seconds = interleaved(engines, workloads, repeats, say, "throughput")
        throughput = summarize_throughput(workloads, seconds)
        throughput["seconds"] = seconds
        shapes = measure_shapes(engines, shape_workloads, repeats, say)

        # 4. Latency at idle: one short text per request, one after another.
        say(f"latency: {options.latency_requests} one-text requests")
        latency_samples(client, corpus["short"], 5)  # warm
        samples = latency_samples(client, corpus["short"], options.latency_requests)
        latency = {"requests": len(samples), "p50_ms": percentile(samples, 50),
                   "p99_ms": percentile(samples, 99), "mean_ms": sum(samples) / len(samples)}

        # 5. Batching: CLIENTS one-text clients, alternating the two services.
        plan = client_plan(client_texts(corpus), CLIENTS, options.per_client)
        runs: dict[str, list[dict]] = {"batched": [], "unbatched": []}
        mean_rows: dict[str, list[float]] = {"batched": [], "unbatched": []}
        for name, svc in (("batched", batched), ("unbatched", unbatched)):
            concurrent_run(svc.url, client_plan(client_texts(corpus), CLIENTS, 1))  # warm
        pair = [("batched", batched), ("unbatched", unbatched)]
        for rep in range(repeats):
            for name, svc in (pair if rep % 2 == 0 else pair[::-1]):  # alternate who goes first
                before = svc.metrics()
                runs[name].append(concurrent_run(svc.url, plan))
                rows = rows_per_pass(before, svc.metrics())
                if rows is not None:
                    mean_rows[name].append(rows)
            say(f"batching repeat {rep + 1}/{repeats}: "
                f"{runs['batched'][-1]['tps']:.1f} vs {runs['unbatched'][-1]['tps']:.1f} texts/s")
        # The model's own ceiling for this gain: the same CLIENTS texts embedded in-process one
        # per forward pass, then as one batch (no HTTP, no queue).
        ceiling_texts = [texts[0] for texts in client_plan(client_texts(corpus), CLIENTS, 1)]
        one_by_one = [inproc.run(ceiling_texts, 1) for _ in range(repeats)]
        as_batch = [inproc.run(ceiling_texts, len(ceiling_texts)) for _ in range(repeats)]
        batched_tps = median(r["tps"] for r in runs["batched"])
        unbatched_tps = median(r["tps"] for r in runs["unbatched"])
        batching = {
            "clients": CLIENTS, "requests_per_client": options.per_client,
            "unbatched_setting": UNBATCHED_ENV,
            "batched_tps": batched_tps, "unbatched_tps": unbatched_tps,
            "gain": ratio(batched_tps, unbatched_tps),
            "inprocess_one_by_one_tps": rate(len(ceiling_texts), median(one_by_one)),
            "inprocess_batch_tps": rate(len(ceiling_texts), median(as_batch)),
            "inprocess_gain": ratio(median(one_by_one), median(as_batch)),
            "batched_rows_per_pass": median(mean_rows["batched"]),
            "unbatched_rows_per_pass": median(mean_rows["unbatched"]),
            "batched_p50_ms": percentile([x for r in runs["batched"] for x in r["latencies_ms"]],
                                         50),
            "unbatched_p50_ms": percentile(
                [x for r in runs["unbatched"] for x in r["latencies_ms"]], 50),
        }
        unb_rows = batching["unbatched_rows_per_pass"]
        if unb_rows is not None and unb_rows > 1.05:
            batching["note"] = (f"the service ignored {COALESCE_ENV}=1 (mean {unb_rows:.2f} rows "
                                "per pass): the gain compares coalescing with itself")
            batching["gain"] = None
        elif unb_rows is None:
            batching["note"] = ("the service's /metrics has no batch-size histogram: could not "
                                f"check that {COALESCE_ENV}=1 gave one text per pass")

        one_text = measure_one_text(batched.url, peer, prose, options.per_client, repeats, say)

        service_doc = {
            "url_batched": batched.url,
            "blas": info.get("blas"), "device": info.get("device"),
            "mlx": (info.get("versions") or {}).get("mlx"),
            "limits": info.get("limits"), "versions": info.get("versions"),
            "inprocess_blas": inproc.info.get("blas"),
            "blas_choice": info.get("blas_choice") or inproc.info.get("blas_choice"),
        }
        cold_doc = {"samples_s": cold, "median_s": median(cold), "min_s": min(cold),
                    "max_s": max(cold), "first_embed_ms": first_embed_ms}
    finally:
        for worker in workers:
            worker.close()
        for svc in services:
            svc.stop()

    machine["loadavg_end"] = _loadavg()
    corpus_doc = {"path": str(corpus_path.relative_to(root)), "sha256": corpus_digest(corpus),
                  "texts": sum(len(corpus[k]) for k in ("short", "medium", "long")),
                  "counts": {k: len(corpus[k]) for k in ("short", "medium", "long")},
                  "prose": {"path": str(PROSE), "texts": len(prose),
                            "sha256": (root / PROSE_DIGEST).read_text().split()[0]}}
    return build_document(started=started, quick=options.quick, repeats=repeats, machine=machine,
                          corpus=corpus_doc, service=service_doc, throughput=throughput,
                          batching=batching, latency=latency, cold_start=cold_doc, peer=peer_doc,
                          elapsed_s=time.perf_counter() - started_clock, shapes=shapes,
                          one_text=one_text)


def interleaved(engines: Mapping[str, Callable[[Workload], float]],
                workloads: Sequence[Workload], repeats: int, say: Say, label: str
                ) -> dict[str, dict[str, list[float]]]:
    """Seconds per engine and workload: every repeat runs every workload on every engine,
    the engine order rotating so that none always runs first (warm caches, turbo,
    neighbours)."""
    seconds: dict[str, dict[str, list[float]]] = {e: {} for e in engines}
    names = list(engines)
    for rep in range(repeats):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for w in workloads:
            for engine in order:
                seconds[engine].setdefault(w.name, []).append(engines[engine](w))
        say(f"{label} repeat {rep + 1}/{repeats} done")
    return seconds


def measure_shapes(engines: Mapping[str, Callable[[Workload], float]],
                   workloads: Sequence[Workload], repeats: int, say: Say = _quiet) -> dict:
    """Every shape on every engine, interleaved as the throughput figures are."""
    seconds = interleaved(engines, workloads, repeats, say, "shapes")
    shapes = summarize_throughput(workloads, seconds)
    shapes["seconds"] = seconds
    return shapes


def measure_one_text(url: str, peer: "Worker | None", texts: Sequence[str], per_client: int,
                     repeats: int, say: Say = _quiet) -> dict:
    """CLIENTS concurrent one-text clients on the service against the peer embedding the same
    texts one call each, alternating; medians of texts/s."""
    plan = client_plan(texts, CLIENTS, per_client)
    flat = [t for client in plan for t in client]
    http_tps: list[float] = []
    peer_tps: list[float] = []
    for rep in range(repeats):
        http_tps.append(concurrent_run(url, plan)["tps"])
        if peer is not None:
            peer_tps.append(rate(len(flat), peer.run(flat, 1)))
        say(f"one-text repeat {rep + 1}/{repeats}: {http_tps[-1]:.1f} texts/s"
            + (f" vs peer {peer_tps[-1]:.1f}" if peer_tps else ""))
    http_median, peer_median = median(http_tps), median(peer_tps)
    return {"clients": CLIENTS, "texts": len(flat), "http_tps": http_median,
            "peer_tps": peer_median, "vs_peer": ratio(http_median, peer_median)}


def save_result(root: Path, doc: dict) -> Path:
    """bench-results/bench-<UTC time>.json (git-ignored), and latest.json beside it."""
    folder = Path(root) / RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    name = "bench-" + doc["started"].replace(":", "").replace("-", "") + ".json"
    path = folder / name
    text = json.dumps(doc, indent=2)
    path.write_text(text + "\n")
    (folder / "latest.json").write_text(text + "\n")
    return path
