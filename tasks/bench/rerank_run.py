"""`inv bench --rerank`: the service's /rerank against sentence-transformers'
CrossEncoder.predict on the same folder, as ratios measured in one run.

For each published shape (tasks/bench/rerank_models.py: full-width random cross-encoders,
built once into bench-results/models), one service (`python -m mlx_service` with the bundled
embedding model and RERANK_MODEL=the folder, on a free loopback port) and one peer process
(tasks/bench/scripts/peer_rerank.py in the peer venv) score the same workload
(tasks/bench/rerank_workload.py: 1 query x 100 documents):

- one client: one POST /rerank at a time, seconds per request;
- RERANK_CLIENTS clients at once, each sending the same request (429s retried after
  Retry-After): wall seconds for all of them;
- the peer: one `predict` of the 100 pairs. It has no server, so its concurrent clients would
  be served one after another: its rate is the same with one client or many.

After one warm-up request on each side, rounds run the three in an order that rotates
(tasks/bench/rerank_rounds.py), the costly concurrent run in fewer rounds, spread over them;
each figure is the median over its runs. Progress goes to stderr through `say`; the result
is one JSON-able document (tasks/bench/rerank_document.py).
"""
from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from tasks.bench import corpus as inputs
from tasks.bench.client import auth_headers
from tasks.bench.document import RESULTS_DIR
from tasks.bench.engines import BenchService, EngineProcess
from tasks.bench.errors import BenchError
from tasks.bench.machine import loadavg, machine_info
from tasks.bench.peer import peer_python
from tasks.bench.rerank_client import RerankClient, concurrent_requests, timed_request
from tasks.bench.rerank_document import PEER, SERVICE, SERVICE_CONCURRENT, \
    build_rerank_document, summarize_shape
from tasks.bench.rerank_models import PUBLISHED_LAYERS, RANDOM_RERANKERS, random_reranker
from tasks.bench.rerank_workload import RERANK_CLIENTS, RerankWorkload, build_rerank_workload
from tasks.bench.rerank_rounds import interleaved_rounds
from tasks.bench.run import now_utc
from tasks.core.say import Say, quiet
from tasks.host.service_venv import install_service_venv, service_python

PEER_SCRIPT = Path("tasks") / "bench" / "scripts" / "peer_rerank.py"


@dataclass(frozen=True)
class RerankOptions:
    quick: bool = False
    peer: bool = True
    repeats: int | None = None
    peer_venv: Path | None = None

    @property
    def n_repeats(self) -> int:
        """Runs of one request on the service, and of the peer's predict."""
        return self.repeats or (3 if self.quick else 7)

    @property
    def concurrent_repeats(self) -> int:
        """Runs of RERANK_CLIENTS requests at once: each is as much work as 16 one-request
        runs (a minute or two on 2 cores) and a mean over 16 requests itself, so fewer."""
        return 1 if self.quick else max(1, self.n_repeats // 2)


def rerank_flag_problem(model: str | None, random_model: str | None) -> str | None:
    """--rerank runs its own models: a flag naming an embedding model does not go with it."""
    named = [flag for flag, value in (("--model", model), ("--random-model", random_model))
             if value]
    if named:
        return (f"--rerank runs random rerankers of {', '.join(RANDOM_RERANKERS)}: "
                f"{' and '.join(named)} {'name' if len(named) > 1 else 'names'} an embedding "
                "model")
    return None


def describe_workload(root: Path, workload: RerankWorkload) -> dict:
    return {"query": workload.query, "documents": workload.pairs, "clients": RERANK_CLIENTS,
            "source": str(inputs.PROSE), "sha256": inputs.read_digest(root / inputs.PROSE_DIGEST)}


def start_peer(root: Path, folder: Path, logs: Path, options: RerankOptions, stack: ExitStack,
               say: Say) -> tuple[EngineProcess | None, dict]:
    """The peer worker on `folder` when its venv exists; (None, why not) else."""
    doc: dict = {"measured": False, "engine": "sentence-transformers CrossEncoder (torch CPU)"}
    python = peer_python(root, options.peer_venv)
    if not options.peer:
        doc["reason"] = "--no-peer"
        return None, doc
    if not python.exists():
        doc["reason"] = (f"no peer venv at {python.parent.parent}; create it with "
                         "`inv bench --setup-peer`")
        return None, doc
    say(f"starting the peer worker ({python})")
    try:
        peer = EngineProcess([str(python), str(PEER_SCRIPT), str(folder)], root,
                             logs / f"peer-{folder.name}.log", "peer rerank worker",
                             env={"HF_HUB_OFFLINE": "1"})
        stack.callback(peer.close)
        doc.update(peer.wait_ready(), measured=True)
        return peer, doc
    except BenchError as exc:
        doc["reason"] = f"peer failed to start: {exc}"
        say(doc["reason"])
        return None, doc


def describe_model(name: str, folder: Path, reranker: dict) -> dict:
    """The shape as run: its config's widths, and how the service runs it (/info)."""
    config = json.loads((folder / "config.json").read_text())
    info = reranker.get("model_info") or {}
    return {"name": name, "folder": str(folder), "architecture": reranker.get("hf_architecture"),
            "hidden": config.get("hidden_size"), "layers": config.get("num_hidden_layers"),
            "published_layers": PUBLISHED_LAYERS.get(name), "max_length":
                reranker.get("max_length"), "precision": info.get("precision"),
            "precision_reason": info.get("precision_reason"), "forward": info.get("forward"),
            "weights": info.get("weights")}


def measure_shape(name: str, folder: Path, workload: RerankWorkload, python: Path, root: Path,
                  logs: Path, options: RerankOptions, api_key: str | None,
                  say: Say) -> tuple[dict, dict]:
    """One shape, its own service and peer: (the shape's figures, the peer's description)."""
    with ExitStack() as running:  # every process we start is stopped, whatever happens
        service = BenchService(python, root, logs / f"service-{name}.log",
                               env={"RERANK_MODEL": str(folder)}, label=f"service ({name})",
                               headers=auth_headers(api_key))
        running.callback(service.stop)
        say(f"{name}: launching the service with RERANK_MODEL={folder} on {service.url}")
        service.start()
        reranker = service.get_json("/info").get("reranker") or {}
        client = RerankClient(service.url, api_key)
        running.callback(client.close)
        peer, peer_doc = start_peer(root, folder, logs, options, running, say)

        texts = workload.as_texts()
        sides: dict[str, Callable[[], float]] = {SERVICE: lambda: timed_request(client, workload)}
        refusals: list[int] = []
        retry_after: list[float] = []

        def concurrent() -> float:
            run = concurrent_requests(service.url, api_key, workload, RERANK_CLIENTS)
            refusals.append(run["refusals"])
            retry_after.extend(run["retry_after_s"])
            return run["seconds"]

        sides[SERVICE_CONCURRENT] = concurrent
        if peer is not None:
            sides[PEER] = lambda: peer.run(texts, len(texts))
        say(f"{name}: warm-up request on each side")
        tokens = client.tokens(workload)  # the warm-up, and the tokens a pair
        if peer is not None:
            peer.run(texts, len(texts))
        runs = {SERVICE: options.n_repeats, PEER: options.n_repeats,
                SERVICE_CONCURRENT: options.concurrent_repeats}
        seconds = interleaved_rounds(sides, runs, say, f"{name}: ")
    shape = {**describe_model(name, folder, reranker),
             "tokens_per_pair": tokens / workload.pairs, "seconds": seconds,
             "refusals": refusals, "retry_after_s": retry_after, "peer": peer_doc,
             **summarize_shape(seconds, workload.pairs, RERANK_CLIENTS)}
    return shape, peer_doc


def run_rerank_bench(settings, options: RerankOptions = RerankOptions(),
                     say: Say = quiet) -> dict:
    """The whole rerank benchmark; returns the result document."""
    started_clock, started = time.perf_counter(), now_utc()
    root = Path(settings.root)
    logs = (root / RESULTS_DIR / "logs"
            / ("rerank-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")))
    workload = build_rerank_workload(inputs.load_corpus(root / inputs.CORPUS),
                                     inputs.load_prose(root / inputs.PROSE,
                                                       root / inputs.PROSE_DIGEST))
    machine = machine_info()
    if install_service_venv(settings, say=say):
        say("service venv installed")
    python = service_python(settings)
    shapes, peer_doc = [], {}
    for name in RANDOM_RERANKERS:
        folder, built = random_reranker(python, root, name)
        say(f"{name}: {'built' if built else 'reusing'} {folder}")
        shape, peer_doc = measure_shape(name, folder, workload, python, root, logs, options,
                                        settings.mlx_api_key, say)
        shapes.append(shape)
    machine["loadavg_end"] = loadavg()
    return build_rerank_document(started=started, quick=options.quick,
                                 repeats=options.n_repeats,
                                 concurrent_repeats=options.concurrent_repeats, machine=machine,
                                 workload=describe_workload(root, workload), peer=peer_doc,
                                 shapes=shapes, elapsed_s=time.perf_counter() - started_clock)
