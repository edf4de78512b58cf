"""Process CPU and RSS on the host service's /metrics: the Linux collector, and the getrusage
collector that stands in where /proc is absent (macOS), which must give the same names."""
from __future__ import annotations

import sys

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mlx_service.telemetry.process_metrics import (UsageCollector, register_process_metrics,
                                                   resident_bytes)


def samples(registry) -> dict[str, float]:
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_this_platforms_collector_gives_cpu_and_rss():
    registry = CollectorRegistry()
    register_process_metrics(registry)
    found = samples(registry)
    assert found["process_cpu_seconds_total"] > 0
    if sys.platform.startswith("linux") or sys.platform == "darwin":
        assert found["process_resident_memory_bytes"] > 10e6


def test_the_stand_in_counts_cpu_time_under_the_same_name():
    registry = CollectorRegistry()
    registry.register(UsageCollector())
    before = samples(registry)["process_cpu_seconds_total"]
    sum(i * i for i in range(2_000_000))  # burn a little CPU
    assert samples(registry)["process_cpu_seconds_total"] > before


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS reads proc_pidinfo")
def test_no_rss_is_made_up_where_it_cannot_be_read():
    assert resident_bytes() is None
