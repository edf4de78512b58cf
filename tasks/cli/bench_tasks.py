"""`inv bench`: the embedding service's speed as ratios measured in one run (tasks/bench/run.py);
`inv bench --rerank`: /rerank's (tasks/bench/rerank_run.py)."""
from __future__ import annotations

import json

from invoke import Collection, Exit, task

from tasks.bench.document import missed_targets, save_result
from tasks.bench.errors import BenchError
from tasks.bench.models import RANDOM_MODELS, bench_model
from tasks.bench.peer import setup_peer as install_peer_venv
from tasks.bench.report import format_report
from tasks.bench.rerank_document import save_rerank_result
from tasks.bench.rerank_report import format_rerank_report
from tasks.bench.rerank_run import RerankOptions, rerank_flag_problem, run_rerank_bench
from tasks.bench.run import BenchOptions, run_bench
from tasks.core.flags import count
from tasks.core.say import say_as
from tasks.core.settings import SettingsError, load_settings
from tasks.core.venvs import VenvError

say = say_as("bench")

# The exit status of a run that measured a target and missed it (README, "Speed"): not 1, so
# that a script tells a slow machine from a benchmark that could not run.
TARGET_MISSED = 3


@task(help={
    "json": "print one JSON document on stdout (progress stays on stderr)",
    "quick": "fewer repeats and launches (about a minute and a half)",
    "no_peer": "do not measure sentence-transformers even when its venv exists",
    "setup_peer": "create/reuse the peer venv (.venvs/peer-st: torch CPU + sentence-transformers)"
                  " first",
    "repeats": "repeats per measurement (default 7, --quick 3)",
    "peer_venv": "the peer venv (default .venvs/peer-st)",
    "model": "a model folder to run (service and peer alike; default: the bundled MiniLM)",
    "random_model": "a full-width few-layer random model of a published shape: "
                    + ", ".join(RANDOM_MODELS),
    "no_fail": f"exit 0 even when a measured target is missed (default: exit {TARGET_MISSED})",
    "rerank": "benchmark /rerank instead: 1 query x 100 documents, 1 and 16 clients, against "
              "CrossEncoder.predict, on random rerankers of ms-marco-MiniLM-L6's and "
              "bge-reranker-base's shapes (tasks/bench/rerank_run.py)",
})
def bench(c, json_=False, quick=False, no_peer=False, setup_peer=False, repeats=None,
          peer_venv=None, model=None, random_model=None, no_fail=False, rerank=False):
    """Benchmark the embedding service (efficiency, batching, latency, cold start, vs a peer);
    with --rerank, /rerank against sentence-transformers' CrossEncoder."""
    settings = load_settings()
    n_repeats = count(repeats, "--repeats", "[bench] error", unit="repeats") or None
    problem = rerank_flag_problem(model, random_model) if rerank else None
    if problem:
        raise Exit(f"[bench] error: {problem}", code=2)
    try:
        if setup_peer:
            ran = install_peer_venv(settings.root, peer_venv, say=say)
            say("peer venv installed" if ran else "peer venv up to date")
        if rerank:
            doc = run_rerank_bench(settings, RerankOptions(quick=quick, peer=not no_peer,
                                                           repeats=n_repeats,
                                                           peer_venv=peer_venv), say=say)
        else:
            options = BenchOptions(quick=quick, peer=not no_peer,
                                   model=bench_model(settings, model, random_model),
                                   repeats=n_repeats, peer_venv=peer_venv)
            doc = run_bench(settings, options, say=say)
    except (BenchError, VenvError, SettingsError) as exc:
        raise Exit(f"[bench] error: {exc}", code=1) from None
    path = (save_rerank_result if rerank else save_result)(settings.root, doc)
    say(f"saved {path.relative_to(settings.root)}")
    report = format_rerank_report if rerank else format_report
    print(json.dumps(doc, indent=2) if json_ else report(doc))
    missed = missed_targets(doc)
    if missed:
        names = "; ".join(t["label"] for t in missed)
        if no_fail:
            say(f"target not met (--no-fail: exit 0): {names}")
        else:
            raise Exit(f"[bench] target not met: {names} (--no-fail to exit 0)",
                       code=TARGET_MISSED)


# invoke turns `json_` into --json, `no_peer` into --no-peer, `setup_peer` into --setup-peer
ns = Collection(bench)
