"""`inv stress`'s verdicts: a target the run skipped by design is "skipped", not missed
(issue 20: `--quick` printed "fuzz cases sent >= 10000: no" after sending its 2,000 by design,
and "no" on both soak rows when there was no soak)."""
from __future__ import annotations

from tasks.bench.stress_options import StressOptions
from tasks.bench.stress_report import Report, format_report, report_dict


def quick_report(**changes) -> Report:
    report = Report(cpu="test", idle={"health_p50_ms": 1.0, "health_p99_ms": 2.0, "rss_mb": 300},
                    memory={"rss_peak_mb": 900, "statuses": {"200": 16}, "seconds": 3.0},
                    flood={"health": {"p99_ms": 40.0, "lost": 0}, "share_429": 0.5,
                           "statuses": {"200": 10, "429": 10}},
                    shutdown={"sigterm_to_exit_s": 1.5, "statuses": {"200": 5}},
                    fuzz={"cases": 2000, "5xx": 0}, soak={})
    for name, value in changes.items():
        setattr(report, name, value)
    return report


def verdicts(report: Report) -> dict[str, str]:
    return {t["name"]: t["verdict"] for t in report_dict(report)["targets"]}


def row(table: str, name: str) -> str:
    return next(line for line in table.splitlines() if line.startswith(f"| {name}"))


def test_a_quick_run_skips_what_it_did_not_set_out_to_measure():
    report = quick_report()
    found = verdicts(report)
    assert found["fuzz cases sent"] == "skipped"
    assert found["soak errors"] == found["soak RSS growth"] == "skipped"
    assert set(found.values()) == {"yes", "skipped"}
    assert [t["met"] for t in report_dict(report)["targets"]
            if t["verdict"] == "skipped"] == [None, None, None]
    table = format_report(report)
    for name in ("fuzz cases sent", "soak errors", "soak RSS growth"):
        assert row(table, name).rstrip(" |").endswith("skipped")
        assert "| no" not in row(table, name)


def test_a_full_run_still_misses_what_it_misses():
    report = quick_report(fuzz={"cases": 10_000, "5xx": 3},
                          soak={"errors": 2, "rss_growth_pct": 9.0})
    found = verdicts(report)
    assert found["fuzz cases sent"] == "yes"
    assert found["fuzz answers 5xx"] == found["soak errors"] == found["soak RSS growth"] == "no"
    assert "| no" in row(format_report(report), "soak errors")


def test_options_from_flags():
    quick = StressOptions.from_flags(quick=True)
    assert (quick.flood_seconds, quick.fuzz_cases, quick.soak_seconds) == (10, 2000, 0)
    full = StressOptions.from_flags(soak="30", fuzz="500", flood="5", api_key="k")
    assert (full.flood_seconds, full.fuzz_cases, full.soak_seconds, full.api_key) == \
        (5, 500, 30, "k")
