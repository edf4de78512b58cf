"""What the stack's Prometheus scrapes, as `inv status` shows it: each job's health at its
last scrape. A host service that is stopped is its job "down": a fact about the stack, not an
error of the status command."""
from __future__ import annotations

from tasks.core.local_http import get_json
from tasks.core.settings import http_url

TARGET_HEALTH = ("up", "down", "unknown")


def scrape_targets(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> dict[str, str]:
    """{job: "up" | "down" | "unknown"} from /api/v1/targets; {} when Prometheus does not
    answer. A job with several targets is "up" only when all are."""
    status, body, _ = get_json(http_url(host, port, "/api/v1/targets?state=active"), timeout)
    if status != 200 or not isinstance(body, dict):
        return {}
    jobs: dict[str, str] = {}
    for target in (body.get("data") or {}).get("activeTargets") or []:
        job = str(target.get("labels", {}).get("job") or target.get("scrapePool") or "?")
        health = target.get("health")
        health = health if health in TARGET_HEALTH else "unknown"
        if jobs.get(job) != "down":  # one down target makes its job down
            jobs[job] = health if jobs.get(job) is None or health != "up" else jobs[job]
    return dict(sorted(jobs.items()))
