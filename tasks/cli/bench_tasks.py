"""`inv bench`: the embedding service's speed as ratios measured in one run (tasks/bench.py)."""
from __future__ import annotations

import json
import sys

from invoke import Exit, task

from tasks.bench import measure as logic
from tasks.bench.measure import BenchError, BenchOptions, format_report, run_bench, save_result
from tasks.core.settings import SettingsError, load_settings
from tasks.core.venvs import VenvError


def _say(line: str) -> None:
    print(f"[bench] {line}", file=sys.stderr, flush=True)


@task(help={
    "json": "print one JSON document on stdout (progress stays on stderr)",
    "quick": "fewer repeats and launches (about a minute and a half)",
    "no_peer": "do not measure sentence-transformers even when its venv exists",
    "setup_peer": "create/reuse the peer venv (.venvs/peer-st: torch CPU + sentence-transformers)"
                  " first",
    "repeats": "repeats per measurement (default 7, --quick 3)",
    "peer_venv": "the peer venv (default .venvs/peer-st)",
})
def bench(c, json_=False, quick=False, no_peer=False, setup_peer=False, repeats=None,
          peer_venv=None):
    """Benchmark the embedding service: efficiency, batching gain, latency, cold start, vs a peer."""
    settings = load_settings()
    try:
        if setup_peer:
            ran = logic.setup_peer(settings.root, peer_venv, say=_say)
            _say("peer venv installed" if ran else "peer venv up to date")
        options = BenchOptions(quick=quick, peer=not no_peer,
                               repeats=int(repeats) if repeats else None, peer_venv=peer_venv)
        doc = run_bench(settings, options, say=_say)
    except (BenchError, VenvError, SettingsError) as exc:
        raise Exit(f"[bench] error: {exc}", code=1) from None
    path = save_result(settings.root, doc)
    _say(f"saved {path.relative_to(settings.root)}")
    print(json.dumps(doc, indent=2) if json_ else format_report(doc))


# invoke turns `json_` into --json, `no_peer` into --no-peer, `setup_peer` into --setup-peer
TASKS = [bench]
