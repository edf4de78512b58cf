"""`inv bench`: the embedding service's speed as ratios measured in one run (tasks/bench/run.py)."""
from __future__ import annotations

import json

from invoke import Collection, Exit, task

from tasks.bench.document import missed_targets, save_result
from tasks.bench.errors import BenchError
from tasks.bench.models import RANDOM_MODELS, bench_model
from tasks.bench.peer import setup_peer as install_peer_venv
from tasks.bench.report import format_report
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
})
def bench(c, json_=False, quick=False, no_peer=False, setup_peer=False, repeats=None,
          peer_venv=None, model=None, random_model=None, no_fail=False):
    """Benchmark the embedding service: efficiency, batching gain, latency, cold start, vs a peer."""
    settings = load_settings()
    try:
        if setup_peer:
            ran = install_peer_venv(settings.root, peer_venv, say=say)
            say("peer venv installed" if ran else "peer venv up to date")
        folder = bench_model(settings, model, random_model)
        options = BenchOptions(quick=quick, peer=not no_peer, model=folder,
                               repeats=count(repeats, "--repeats", "[bench] error",
                                             unit="repeats") or None,
                               peer_venv=peer_venv)
        doc = run_bench(settings, options, say=say)
    except (BenchError, VenvError, SettingsError) as exc:
        raise Exit(f"[bench] error: {exc}", code=1) from None
    path = save_result(settings.root, doc)
    say(f"saved {path.relative_to(settings.root)}")
    print(json.dumps(doc, indent=2) if json_ else format_report(doc))
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
