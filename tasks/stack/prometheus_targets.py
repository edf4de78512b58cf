"""What the stack's Prometheus scrapes, as `inv status` shows it: each job's health at its
last scrape. A host service that is stopped is its job "down": a fact about the stack, not an
error of the status command. A target Prometheus has not scraped yet (its lastScrape is the
zero time, its health "unknown") is said to be so, and `inv start` waits for that first scrape."""
from __future__ import annotations

from tasks.core.local_http import get_json
from tasks.core.polling import poll_until
from tasks.core.settings import http_url

NOT_SCRAPED = "not scraped yet"
TARGET_HEALTH = ("up", "down", "unknown")
FIRST_SCRAPE_WAIT = 20.0  # seconds: the scrape interval is 5s (compose/prometheus)


def target_health(target: dict) -> str:
    """One active target's health; "not scraped yet" before Prometheus's first scrape of it."""
    health = target.get("health")
    health = health if health in TARGET_HEALTH else "unknown"
    if health == "unknown" and str(target.get("lastScrape") or "").startswith("0001-"):
        return NOT_SCRAPED
    return health


def scrape_targets(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> dict[str, str]:
    """{job: "up" | "down" | "unknown" | "not scraped yet"} from /api/v1/targets; {} when
    Prometheus does not answer. A job with several targets is "up" only when all are."""
    status, body, _ = get_json(http_url(host, port, "/api/v1/targets?state=active"), timeout)
    if status != 200 or not isinstance(body, dict):
        return {}
    jobs: dict[str, str] = {}
    for target in (body.get("data") or {}).get("activeTargets") or []:
        job = str(target.get("labels", {}).get("job") or target.get("scrapePool") or "?")
        health = target_health(target)
        if jobs.get(job) != "down":  # one down target makes its job down
            jobs[job] = health if jobs.get(job) is None or health != "up" else jobs[job]
    return dict(sorted(jobs.items()))


def wait_first_scrape(port: int, timeout: float = FIRST_SCRAPE_WAIT) -> dict[str, str]:
    """The targets once every one has been scraped at least once (or, after `timeout`, as
    they are then): what `inv status` shows right after `inv start` is up or down."""
    def scraped() -> dict[str, str] | None:
        jobs = scrape_targets(port)
        return jobs if jobs and NOT_SCRAPED not in jobs.values() else None
    return poll_until(scraped, timeout, interval=0.5) or scrape_targets(port)
