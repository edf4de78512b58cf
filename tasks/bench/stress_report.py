"""`inv stress`'s report: what each phase measured, each target and its verdict, as a table
or one JSON document. A target the run did not measure by design (no soak, fewer fuzz cases
than the target) is "skipped", never "no"."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from tasks.bench.stress_options import FULL_FUZZ_CASES


@dataclass
class Report:
    cpu: str = ""
    idle: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)
    flood: dict = field(default_factory=dict)
    shutdown: dict = field(default_factory=dict)
    fuzz: dict = field(default_factory=dict)
    soak: dict = field(default_factory=dict)


def _never(report: Report) -> bool:
    return False


def _soak_skipped(report: Report) -> bool:
    return not report.soak


@dataclass(frozen=True)
class Target:
    name: str
    value: Callable[[Report], Any]
    unit: str
    wanted: str
    met: Callable[[Any], bool]
    skipped: Callable[[Report], bool] = _never

    def verdict(self, report: Report) -> str:
        """"yes", "no", or "skipped" where this run did not set out to measure it."""
        if self.skipped(report):
            return "skipped"
        return "yes" if self.met(self.value(report)) else "no"


TARGETS = [
    Target("peak RSS, 16 x 3.8 MB texts at once", lambda r: r.memory.get("rss_peak_mb"), "MB",
           "< 1536", lambda v: v is not None and v < 1536),
    Target("/health p99 under a 48-client flood",
           lambda r: r.flood.get("health", {}).get("p99_ms"), "ms", "< 250",
           lambda v: v is not None and v < 250),
    Target("/health probes lost in the flood", lambda r: r.flood.get("health", {}).get("lost"),
           "", "0", lambda v: v == 0),
    Target("share of 429s in the flood", lambda r: r.flood.get("share_429"), "", "reported",
           lambda v: v is not None),
    Target("SIGTERM to exit under load", lambda r: r.shutdown.get("sigterm_to_exit_s"), "s",
           "< 10", lambda v: v is not None and v < 10),
    Target("fuzz cases sent", lambda r: r.fuzz.get("cases"), "", f">= {FULL_FUZZ_CASES}",
           lambda v: v is not None and v >= FULL_FUZZ_CASES,
           # a run asked for fewer (--quick, --fuzz N) did not set out to meet it
           lambda r: bool(r.fuzz) and r.fuzz.get("cases", 0) < FULL_FUZZ_CASES),
    Target("fuzz answers 5xx", lambda r: r.fuzz.get("5xx"), "", "0", lambda v: v == 0),
    Target("soak errors", lambda r: r.soak.get("errors"), "", "0", lambda v: v == 0,
           _soak_skipped),
    Target("soak RSS growth", lambda r: r.soak.get("rss_growth_pct"), "%", "< 5",
           lambda v: v is not None and v < 5, _soak_skipped),
]


def format_report(report: Report) -> str:
    lines = [f"CPU: {report.cpu}",
             f"idle: /health p50 {report.idle.get('health_p50_ms')} ms, "
             f"p99 {report.idle.get('health_p99_ms')} ms, RSS {report.idle.get('rss_mb')} MB", "",
             f"| {'measure':40} | {'value':>10} | {'target':>9} | met     |",
             f"|{'-' * 42}|{'-' * 12}|{'-' * 11}|---------|"]
    for target in TARGETS:
        value = target.value(report)
        shown = "-" if value is None else f"{value}{(' ' + target.unit) if target.unit else ''}"
        lines.append(f"| {target.name:40} | {shown:>10} | {target.wanted:>9} | "
                     f"{target.verdict(report):7} |")
    flood = report.flood
    if flood:
        lines.append("")
        lines.append(f"flood statuses: {flood['statuses']}; health {flood['health']}")
    if report.shutdown:
        lines.append(f"shutdown flood statuses: {report.shutdown['statuses']}")
    if report.memory:
        lines.append(f"memory phase statuses: {report.memory['statuses']}, "
                     f"{report.memory['seconds']} s")
    return "\n".join(lines)


def report_dict(report: Report) -> dict:
    """The JSON document: "met" is true, false, or null for a skipped target ("verdict" says
    which in words)."""
    targets = []
    for target in TARGETS:
        verdict = target.verdict(report)
        targets.append({"name": target.name, "value": target.value(report),
                        "target": target.wanted, "verdict": verdict,
                        "met": None if verdict == "skipped" else verdict == "yes"})
    return {"cpu": report.cpu, "idle": report.idle, "memory": report.memory,
            "flood": report.flood, "shutdown": report.shutdown, "fuzz": report.fuzz,
            "soak": report.soak, "targets": targets}
