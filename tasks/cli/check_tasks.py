"""`inv verify` (pre-flight) and `inv roundtrip` (embeddings and reranking end to end)."""
from __future__ import annotations

import json

from invoke import Collection, Exit, task

from tasks.checks.roundtrip import run_roundtrip
from tasks.checks.verify import as_document, env_file_lines, run_checks, verdict
from tasks.core.flags import seconds
from tasks.core.say import untagged
from tasks.core.settings import load_settings, read_settings

MARKS = {"pass": "ok  ", "warn": "warn", "fail": "FAIL", "skip": "skip"}


@task(help={"json": "print one JSON document on stdout"})
def verify(c, json_=False):
    """Pre-flight: platform, MLX backend, Python, tooling, engine, Compose, ports, venv, model, disk."""
    # A bad line of .env.dev is one failed check; the others run on the file's good lines.
    settings, env_file = read_settings()
    checks = env_file_lines(env_file) + run_checks(settings)
    if json_:
        print(json.dumps(as_document(checks), indent=2))
    else:
        for check in checks:
            print(f"[{MARKS[check.status]}] {check.name}: {check.detail}")
            if check.fix and check.status != "pass":
                print(f"       fix: {check.fix}")
        failed = sum(c.status == "fail" for c in checks)
        warned = sum(c.status == "warn" for c in checks)
        print(f"verify: {len(checks)} checks, {failed} failed, {warned} warnings")
    if verdict(checks) == "fail":
        raise Exit(code=1)


@task(help={"json": "print one JSON document on stdout",
            "timeout": "seconds per request (default 30)"})
def roundtrip(c, json_=False, timeout=None):
    """Embeddings and reranking end to end: host /health, /embed, /v1/embeddings, meaning,
    /rerank, and the same via the gateway."""

    def show(step):
        if not json_:
            print(f"[{MARKS[step.status]}] {step.name}: {step.detail}", flush=True)

    # A text flag, read here: invoke's own float() would end `--timeout abc` in a traceback.
    per_request = seconds(timeout, "timeout", positive=True) or 30.0
    result = run_roundtrip(load_settings(), timeout=per_request, progress=show)
    if json_:
        print(json.dumps(result.as_document(), indent=2))
    else:
        print(result.summary())
    if not result.ok:
        if json_:
            untagged(result.summary())
        raise Exit(code=1)


# invoke turns `json_` into --json
ns = Collection(verify, roundtrip)
