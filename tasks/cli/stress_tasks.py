"""`inv stress`: the host service under hostile and heavy load (tasks/bench/stress.py)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from invoke import Collection, Exit, task

from tasks.core.say import say_as

say = say_as("stress")


@task(help={
    "json": "print one JSON document on stdout (progress stays on stderr)",
    "quick": "a short run: 10 s floods, 2,000 fuzz cases, no soak",
    "soak": "seconds of the 16-client soak (default 600; 0 skips it)",
    "fuzz": "hostile requests to send (default 10000)",
    "flood": "seconds of each 48-client flood (default 20)",
})
def stress(c, json_=False, quick=False, soak=None, fuzz=None, flood=None):
    """The host service under hostile load: peak memory, /health under a flood, 429s,
    SIGTERM under load, fuzzing, and a soak, next to the same run's idle figures."""
    from tasks.bench.engines import BenchService
    from tasks.host.service_venv import service_python
    from tasks.core.settings import load_settings
    from tasks.bench.stress import run_stress
    from tasks.bench.stress_options import StressOptions
    from tasks.bench.stress_report import format_report, report_dict

    options = StressOptions.from_flags(quick, soak=soak, fuzz=fuzz, flood=flood,
                                       api_key=load_settings().mlx_api_key)
    python = service_python(load_settings())
    if not Path(python).exists():
        raise Exit("the service venv is missing: run `inv mlx install` first", code=1)
    logs = Path(tempfile.mkdtemp(prefix="cortex-stress-"))
    env = {"MLX_API_KEY": options.api_key} if options.api_key else {}

    def start():
        say("starting the service with its default limits")
        service = BenchService(Path(python), load_settings().root, logs / "mlx-service.log",
                               env=env, label="the service", defaults=True)
        service.start()
        return service

    report = run_stress(start, options, say)
    if json_:
        print(json.dumps(report_dict(report), indent=2))
    else:
        print(format_report(report))
    say(f"service logs: {logs}")


ns = Collection(stress)
