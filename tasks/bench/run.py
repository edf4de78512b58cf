"""`inv bench`: how fast the embedding service is, as ratios measured in one run.

What one run measures (all on the fixed corpus tasks/bench/data/corpus.json):

- throughput, texts/s, per workload (same texts, same batch sizes) for three engines side
  by side: the service's model code in-process (tasks/bench/scripts/inprocess.py, service
  venv), the service over HTTP (one client, POST /embed per batch), and the peer
  (tasks/bench/scripts/peer_st.py: sentence-transformers on torch CPU, in a venv of its own,
  when installed). Repeats are interleaved (engine by engine inside each repeat) so a noisy
  neighbour hits all engines alike; each figure is the median over repeats. service
  efficiency = HTTP / in-process.
- batching gain: 16 concurrent clients, each sending one short text per request (queries: the
  usual one-text request), against a service
  that coalesces requests and one that runs one text per forward pass (both started by us,
  measured in alternation).
- latency of one short text at idle: p50 and p99 over sequential requests.
- every shape of work, on real prose (tasks/bench/data/prose.json: 512 paragraphs of the
  license texts every Debian machine has, built by tasks/bench/scripts/build_prose_corpus.py,
  checked against tasks/bench/data/prose.sha256): the whole corpus in one call (the peer with
  its own global length sort: `model.encode(all, batch_size=32)`), chunks of 32 in corpus
  order, single-length batches (short, medium, long), and 16 concurrent one-text clients
  against the peer encoding one text at a time.

Every HTTP client here is a keep-alive stdlib connection (tasks/bench/client.py): on a 2-core
machine the clients share the cores with the service, and a heavy client library would
measure itself.
- cold start: launch of `python -m mlx_service` to the first 200 from /health (median).

Plain functions here, one per step of the run; tasks/cli/bench_tasks.py only parses flags and
prints. Progress goes to stderr through the `say` callback; the result is one JSON-able
document (tasks/bench/document.py).
"""
from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Sequence

from mlx_service.kernels.blas import find_mkl
from mlx_service.kernels.native_bf16 import buildable_here as native_bf16_buildable
from mlx_service.kernels.precision import cpu_bf16_units

from tasks.bench import corpus as inputs
from tasks.bench import precision_sides as sides_mod
from tasks.bench.client import EmbedClient, auth_headers, concurrent_run, http_pass, \
    latency_samples
from tasks.bench.document import RESULTS_DIR, build_document, summarize_throughput
from tasks.bench.engines import BenchService, EngineProcess
from tasks.bench.errors import BenchError
from tasks.bench.machine import loadavg, machine_info
from tasks.bench.metrics import parse_metrics, rows_per_pass
from tasks.bench.peer import peer_python
from tasks.bench.stats import median, percentile, rate, ratio
from tasks.bench.workloads import CLIENTS, Workload, build_shape_workloads, build_workloads, \
    client_plan, client_texts
from tasks.core.say import Say, quiet
from tasks.host.service_venv import install_service_venv, service_python

# Both services are started with MLX_COALESCE_ROWS: the worker takes further queued requests
# into a forward pass only while it holds fewer rows than this. 1 = one request per forward
# pass, which for one-text requests is one text per forward pass.
COALESCE_ENV = "MLX_COALESCE_ROWS"
UNBATCHED_ENV = {COALESCE_ENV: "1"}
SCRIPTS = Path("tasks") / "bench" / "scripts"
INPROCESS_SCRIPT = SCRIPTS / "inprocess.py"
PEER_SCRIPT = SCRIPTS / "peer_st.py"

Engine = Callable[[Workload], float]


@dataclass(frozen=True)
class BenchOptions:
    quick: bool = False
    peer: bool = True
    repeats: int | None = None
    peer_venv: Path | None = None
    model: Path | None = None      # a model folder (EMBEDDINGS_MODEL); None: the bundled one

    @property
    def model_env(self) -> dict[str, str]:
        return {"EMBEDDINGS_MODEL": str(self.model)} if self.model else {}

    @property
    def model_args(self) -> list[str]:
        return ["--model", str(self.model)] if self.model else []

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


@dataclass(frozen=True)
class Inputs:
    corpus: dict
    workloads: list[Workload]
    prose: list[str]
    shape_workloads: list[Workload]


@dataclass
class Services:
    """The two measured services, launched one after the other as cold starts."""
    batched: BenchService
    unbatched: BenchService
    client: EmbedClient           # one keep-alive client on the coalescing service
    cold: list[float]             # launch-to-healthy seconds, every launch
    first_embed_ms: float


@dataclass
class Engines:
    inproc: EngineProcess
    peer: EngineProcess | None
    peer_doc: dict


def now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_inputs(root: Path) -> Inputs:
    corpus = inputs.load_corpus(root / inputs.CORPUS)
    prose = inputs.load_prose(root / inputs.PROSE, root / inputs.PROSE_DIGEST)
    return Inputs(corpus, build_workloads(corpus), prose, build_shape_workloads(prose))


def launch_services(python: Path, root: Path, logs: Path, options: BenchOptions,
                    headers: Mapping[str, str], stack: ExitStack, say: Say) -> Services:
    """Cold starts, one launch at a time while nothing else of ours runs; the last two are the
    services measured (coalescing, and one text per pass)."""
    cold: list[float] = []
    for i in range(options.cold_starts - 2):
        extra = BenchService(python, root, logs / f"cold-{i}.log", label=f"cold start {i + 1}",
                             headers=headers, env=options.model_env)
        say(f"cold start {i + 1}/{options.cold_starts}: launching {extra.url}")
        try:
            cold.append(extra.start())
        finally:
            extra.stop()
    batched = BenchService(python, root, logs / "service.log", label="service (coalescing)",
                           headers=headers, env=options.model_env)
    stack.callback(batched.stop)
    say(f"cold start {len(cold) + 1}/{options.cold_starts}: service (coalescing) "
        f"{batched.url}")
    cold.append(batched.start())
    client = EmbedClient(batched.url)
    stack.callback(client.close)
    t0 = time.perf_counter()
    client.embed(["hello world"])
    first_embed_ms = (time.perf_counter() - t0) * 1000
    unbatched = BenchService(python, root, logs / "service-unbatched.log",
                             env={**UNBATCHED_ENV, **options.model_env},
                             label="service (one text per pass)", headers=headers)
    stack.callback(unbatched.stop)
    say(f"cold start {len(cold) + 1}/{options.cold_starts}: service (one text per pass, "
        f"{COALESCE_ENV}=1) {unbatched.url}")
    cold.append(unbatched.start())
    return Services(batched, unbatched, client, cold, first_embed_ms)


def start_engines(python: Path, root: Path, logs: Path, options: BenchOptions, stack: ExitStack,
                  say: Say) -> Engines:
    """In-process MLX (same BLAS mode as the service), and the peer when its venv exists."""
    blas_mode = os.environ.get("MLX_BLAS", "auto")
    say("starting the in-process MLX worker")
    inproc = EngineProcess([str(python), str(INPROCESS_SCRIPT), "--blas", blas_mode,
                            *options.model_args], root,
                           logs / "inprocess.log", "in-process MLX worker")
    stack.callback(inproc.close)
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
            peer = EngineProcess([str(ppy), str(PEER_SCRIPT), *options.model_args], root,
                                 logs / "peer.log",
                                 "peer worker", env={"HF_HUB_OFFLINE": "1"})
            stack.callback(peer.close)
            peer_doc.update(peer.wait_ready(), measured=True)
        except BenchError as exc:
            peer, peer_doc["reason"] = None, f"peer failed to start: {exc}"
            say(peer_doc["reason"])
    return Engines(inproc, peer, peer_doc)


def engine_runs(client: EmbedClient, engines: Engines) -> dict[str, Engine]:
    """Each engine as one callable: a workload in, the seconds of its pass out."""
    runs: dict[str, Engine] = {
        "inprocess": lambda w: engines.inproc.run(w.texts, w.batch_size),
        "http": lambda w: http_pass(client, w.texts, w.batch_size),
    }
    if engines.peer is not None:
        peer = engines.peer
        runs["peer"] = lambda w: peer.run(w.texts, w.batch_size)
    return runs


def interleaved(engines: Mapping[str, Engine], workloads: Sequence[Workload], repeats: int,
                say: Say, label: str) -> dict[str, dict[str, list[float]]]:
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


def measure_throughput(engines: Mapping[str, Engine], workloads: Sequence[Workload],
                       repeats: int, say: Say = quiet) -> dict:
    """A warm-up pass on every engine, then every workload on every engine, interleaved."""
    say("warm-up pass on every engine")
    for w in workloads:
        for run in engines.values():
            run(w)
    seconds = interleaved(engines, workloads, repeats, say, "throughput")
    throughput = summarize_throughput(workloads, seconds)
    throughput["seconds"] = seconds
    return throughput


def measure_shapes(engines: Mapping[str, Engine], workloads: Sequence[Workload], repeats: int,
                   say: Say = quiet) -> dict:
    """Every shape on every engine, interleaved as the throughput figures are."""
    seconds = interleaved(engines, workloads, repeats, say, "shapes")
    shapes = summarize_throughput(workloads, seconds)
    shapes["seconds"] = seconds
    return shapes


def measure_latency(client: EmbedClient, texts: Sequence[str], requests_: int,
                    say: Say = quiet) -> dict:
    """Latency at idle: one short text per request, one after another."""
    say(f"latency: {requests_} one-text requests")
    latency_samples(client, texts, 5)  # warm
    samples = latency_samples(client, texts, requests_)
    return {"requests": len(samples), "p50_ms": percentile(samples, 50),
            "p99_ms": percentile(samples, 99), "mean_ms": sum(samples) / len(samples)}


def service_metrics(service: BenchService) -> dict[str, float]:
    """The service's /metrics as numbers; {} when it has none we can read."""
    try:
        return parse_metrics(service.metrics_text())
    except ValueError:
        return {}


def measure_batching(services: Services, inproc: EngineProcess, corpus: Mapping,
                     options: BenchOptions, repeats: int, say: Say = quiet) -> dict:
    """CLIENTS one-text clients, alternating the coalescing service and the one-text-per-pass
    one; next to the model's own ceiling for that gain, in-process."""
    plan = client_plan(client_texts(corpus), CLIENTS, options.per_client)
    runs: dict[str, list[dict]] = {"batched": [], "unbatched": []}
    mean_rows: dict[str, list[float]] = {"batched": [], "unbatched": []}
    pair = [("batched", services.batched), ("unbatched", services.unbatched)]
    for _, svc in pair:
        concurrent_run(svc.url, client_plan(client_texts(corpus), CLIENTS, 1))  # warm
    for rep in range(repeats):
        for name, svc in (pair if rep % 2 == 0 else pair[::-1]):  # alternate who goes first
            before = service_metrics(svc)
            runs[name].append(concurrent_run(svc.url, plan))
            rows = rows_per_pass(before, service_metrics(svc))
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
    return batching


def measure_one_text(url: str, peer: EngineProcess | None, texts: Sequence[str],
                     per_client: int, repeats: int, say: Say = quiet) -> dict:
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


def describe_service(services: Services, info: Mapping, inproc: EngineProcess) -> dict:
    return {
        "url_batched": services.batched.url,
        "blas": info.get("blas"), "device": info.get("device"),
        "mlx": (info.get("versions") or {}).get("mlx"),
        "limits": info.get("limits"), "versions": info.get("versions"),
        "inprocess_blas": inproc.info.get("blas"),
        "blas_kernels": (info.get("blas_choice") or {}).get("kernels"),
        "model": info.get("model"), "forward": info.get("forward"),
        "precision": info.get("precision"), "precision_reason": info.get("precision_reason"),
        "layers": inproc.info.get("layers"),
        "blas_choice": info.get("blas_choice") or inproc.info.get("blas_choice"),
    }


def describe_cold_starts(services: Services) -> dict:
    cold = services.cold
    return {"samples_s": cold, "median_s": median(cold), "min_s": min(cold), "max_s": max(cold),
            "first_embed_ms": services.first_embed_ms}


def run_bench(settings, options: BenchOptions = BenchOptions(), say: Say = quiet) -> dict:
    """The whole benchmark; returns the result document (see document.build_document)."""
    started_clock, started = time.perf_counter(), now_utc()
    root = Path(settings.root)
    logs = root / RESULTS_DIR / "logs" / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    given = load_inputs(root)
    machine = machine_info()
    repeats = options.n_repeats
    if install_service_venv(settings, say=say):
        say("service venv installed")
    python = service_python(settings)
    headers = auth_headers(settings.mlx_api_key)

    with ExitStack() as running:  # every process we start is stopped, whatever happens
        services = launch_services(python, root, logs, options, headers, running, say)
        info = services.batched.get_json("/info")
        engines = start_engines(python, root, logs, options, running, say)
        runs = engine_runs(services.client, engines)
        # fp32 and bf16 side by side where the CPU has bf16 units (tasks/bench/precision_sides.py)
        sides, sides_why = sides_mod.wanted_sides(cpu_bf16_units(),
                                                  find_mkl({}, str(python.parent.parent)),
                                                  native_bf16_buildable())
        side_services = sides_mod.start_sides(sides, python, root, logs, options.model_env,
                                              headers, running, say)
        throughput = measure_throughput(runs, given.workloads, repeats, say)
        shapes = measure_shapes({**runs, **sides_mod.side_engines(side_services)},
                                given.shape_workloads, repeats, say)
        latency = measure_latency(services.client, given.corpus["short"],
                                  options.latency_requests, say)
        batching = measure_batching(services, engines.inproc, given.corpus, options, repeats,
                                    say)
        one_text = measure_one_text(services.batched.url, engines.peer, given.prose,
                                    options.per_client, repeats, say)
        sides_one_text = {name: measure_one_text(svc.url, None, given.prose, options.per_client,
                                                 repeats, say)
                          for name, (svc, _, _) in side_services.items()}
        sides_doc = sides_mod.describe(sides_why, machine["cpu"], side_services, shapes,
                                       sides_one_text, one_text.get("peer_tps"))
        service_doc = describe_service(services, info, engines.inproc)
        cold_doc = describe_cold_starts(services)

    machine["loadavg_end"] = loadavg()
    doc = build_document(started=started, quick=options.quick, repeats=repeats, machine=machine,
                         corpus=inputs.describe(root, given.corpus, given.prose),
                         service=service_doc, throughput=throughput, batching=batching,
                         latency=latency, cold_start=cold_doc, peer=engines.peer_doc,
                         elapsed_s=time.perf_counter() - started_clock, shapes=shapes,
                         one_text=one_text)
    doc["precision_sides"] = sides_doc
    return doc
