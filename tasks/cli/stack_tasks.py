"""The stack's tasks: setup, start, stop, status, logs, health, clean (root namespace).

Thin: parse flags, call the modules of tasks/stack (one per task), print. Progress and warnings
go to stderr; stdout carries only what was asked for (the JSON of `status --json`, logs).
"""
from __future__ import annotations

import sys
import time

from invoke import Collection, Exit, task

from tasks.core.flags import count, mlx_flags, seconds
from tasks.core.say import untagged
from tasks.core.settings import ALL_SERVICES, load_settings


@task(help={"no-install": "do not create/update the host service's venv",
            "no-images": "do not build or pull images",
            "rebuild": "rebuild the locally built images even when they exist"})
def setup(c, no_install=False, no_images=False, rebuild=False):
    """Onboarding: check tools, write .env.dev if missing, install the service venv, then check
    the engine and build or pull the images; then say what to run next. With the engine down
    the first steps are still done, and it ends with one sentence about the engine."""
    from tasks.stack.setup import setup as run_setup
    steps = run_setup(load_settings(), install=not no_install, images=not no_images,
                      rebuild=rebuild)
    untagged("setup done. Next:")
    for line in steps:
        untagged(f"  {line}")


@task(iterable=["services", "mlx_flag"],
      help={"services": "services to start: a,b or repeated (default: all; groups core, app)",
            "fast": "skip installing/starting the host service when it already answers",
            "follow": "follow the logs after start (Ctrl-C stops following, not the stack)",
            "watch": "rebuild/restart a service when its sources change (Ctrl-C ends)",
            "no-install": "do not install/update the host service's venv",
            "mlx-venv": "the host service's venv (default MLX_VENV_PATH or .venv-mlx)",
            "mlx-timeout": "seconds to wait for the host service's /health",
            "mlx-flag": "a flag for the host service, repeatable: --no-wait, --timeout=S and "
                        "--venv=PATH as start-mlx-host.sh reads them (--create: make that "
                        "venv outside the checkout); any other (--dim=N) goes to the server",
            "no-mlx": "containers only: leave the host service alone",
            "timeout": "seconds to wait for the containers' readiness (CORTEX_READY_TIMEOUT)"})
def start(c, services=None, fast=False, follow=False, watch=False, no_install=False,
          mlx_venv=None, mlx_timeout=None, mlx_flag=None, no_mlx=False, timeout=None):
    """Start the host embedding service and the containers, and wait until they are ready."""
    from tasks.stack.logs import logs as show_logs
    from tasks.stack.start import start as run_start
    from tasks.stack.watch import watch as run_watch
    settings = load_settings()
    began = time.monotonic()
    host = mlx_flags(mlx_flag, venv=mlx_venv, timeout=seconds(mlx_timeout, "mlx-timeout", positive=True))
    result = run_start(settings, services or None, fast=fast, install=not no_install,
                       mlx=host, with_mlx=not no_mlx,
                       timeout=seconds(timeout, "timeout", positive=True))
    ready = ", ".join(result.services) or "no containers"
    untagged(f"ready in {time.monotonic() - began:.1f}s: {ready}"
         + ("" if no_mlx else f"; host service at {(result.mlx or {}).get('url', settings.mlx_url)}"))
    if result.skipped:
        untagged(f"skipped (no image): {', '.join(result.skipped)}")
    if "grafana" in result.services:
        from tasks.stack.otlp_endpoints import grafana_url
        untagged(f"Grafana: {grafana_url(settings)} (dashboards: Embedding service, Stack overview)")
    if watch:
        run_watch(settings, result.services, with_mlx=not no_mlx, mlx=host)
    elif follow:
        try:
            show_logs(settings, None, follow=True)
        except KeyboardInterrupt:
            pass


@task(help={"keep-mlx": "leave the host service running"})
def stop(c, keep_mlx=False):
    """Stop the containers (volumes and data kept) and the host service."""
    from tasks.stack.stop import stop as run_stop
    run_stop(load_settings(), with_mlx=not keep_mlx)
    untagged("stopped (volumes kept; `inv clean` removes them)")


@task(help={"json": "print only the status document (JSON, schemas/status.schema.json)"})
def status(c, json_=False):
    """What runs: host service, containers (running / healthy / ready), ports, connectivity."""
    from tasks.stack.status_doc import build_status, status_json
    from tasks.stack.status_text import status_text
    settings = load_settings()
    if json_:
        print(status_json(settings))
        return
    print(status_text(build_status(settings)))


@task(iterable=["service"],
      help={"service": f"mlx or one of: {', '.join(ALL_SERVICES)} (default: all); repeatable; "
                       "also given as the words after logs",
            "follow": "keep following", "tail": "lines of history (default 100)"})
def logs(c, service=None, follow=False, tail=None):
    """Logs of the host service (mlx) or containers; all of them when none is named.

    `inv logs SERVICE... [-f] [--tail N]` as the seed spells it, or `inv logs -s A -s B`."""
    from tasks.stack.logs import logs as show_logs
    lines = count(tail, "--tail", default=100)
    try:
        show_logs(load_settings(), service or None, follow=follow, tail=lines)
    except KeyboardInterrupt:
        pass


@task
def health(c):
    """A table of every part's health; exit 1 unless everything started answers."""
    from tasks.stack.health import health as check_health, unhealthy_summary
    from tasks.stack.table import format_table
    rows, ok = check_health(load_settings())
    print(format_table(rows, ["name", "running", "healthy", "ready", "detail"]))
    if not ok:
        raise Exit("unhealthy: " + unhealthy_summary(rows), code=1)


@task(help={"yes": "do not ask for confirmation"})
def clean(c, yes=False):
    """Remove the project's containers, volumes (NATS data, ...) and networks; stop the host
    service. Asks first unless --yes."""
    from tasks.stack.stop import clean as run_clean
    settings = load_settings()
    if not yes:
        sys.stderr.write(f"Remove every container, volume and network of project "
                         f"{settings.compose_project!r} (NATS JetStream data included)? [y/N] ")
        sys.stderr.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            raise Exit("clean cancelled: nothing removed (use --yes to skip the question)",
                       code=1)
    run_clean(settings)
    untagged("removed containers, volumes and networks")


ns = Collection(setup, start, stop, status, logs, health, clean)
