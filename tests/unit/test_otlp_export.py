"""The OTLP export code (mlx_service/telemetry/otlp.py, which the containers' images copy in
too): it plans, bounds and counts as it says."""
from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import time

from tests.support import REPO_ROOT

HOST_COPY = REPO_ROOT / "mlx_service" / "telemetry" / "otlp.py"


def _otlp():
    spec = importlib.util.spec_from_file_location("otlp_under_test", HOST_COPY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_plans_follow_the_standard_variables():
    otlp = _otlp()
    plan = otlp.plan_signal({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "traces")
    assert (plan.exporter, plan.endpoint) == ("otlp", "http://c:4318/v1/traces")
    plan = otlp.plan_signal({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                             "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://l:3100/otlp/v1/logs",
                             "OTEL_BLRP_MAX_QUEUE_SIZE": "7"}, "logs")
    assert (plan.endpoint, plan.max_queue, plan.max_batch) == ("http://l:3100/otlp/v1/logs", 7, 7)
    assert otlp.plan_signal({}, "traces").exporter is None  # nobody named an endpoint
    assert otlp.plan_signal({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ""}, "traces").exporter is None
    assert otlp.plan_signal({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_SDK_DISABLED": "true"},
                            "logs").exporter is None
    assert otlp.plan_signal({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c",
                             "OTEL_TRACES_EXPORTER": "none"}, "traces").exporter is None
    assert otlp.plan_signal({"OTEL_TRACES_EXPORTER": "console"}, "traces").exporter == "console"
    assert otlp.plan_signal({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c",
                             "OTEL_BSP_MAX_QUEUE_SIZE": "x"}, "traces").max_queue == 2048


class SlowExporter:
    """Takes `delay` seconds per export and fails, like a collector that hangs."""

    def __init__(self, delay: float):
        self.delay, self.calls = delay, 0
        self.release = threading.Event()

    def export(self, batch):
        self.calls += 1
        self.release.wait(self.delay)

        class Failure:
            name = "FAILURE"
        return Failure()

    def shutdown(self):
        self.release.set()


def test_a_full_queue_drops_and_counts_without_waiting():
    otlp = _otlp()
    drops = []
    warned = []
    plan = otlp.SignalPlan("otlp", "http://x/v1/traces", max_queue=10, max_batch=5, delay_s=0.01)
    export = otlp.BoundedExport("traces", SlowExporter(30), plan,
                                lambda s, r, n: drops.append((s, r, n)), warned.append)
    t0 = time.perf_counter()
    for i in range(1000):
        export.add(i)
    took = time.perf_counter() - t0
    assert took < 0.5, f"adding 1000 items to a stuck exporter's queue took {took:.2f}s"
    full = sum(n for s, r, n in drops if r == "queue_full")
    assert 1000 - 15 <= full <= 1000 - 10  # the queue, plus at most one batch taken out
    export.shutdown(timeout=0.1)


def test_failed_exports_are_counted_and_said_once_a_minute(caplog):
    otlp = _otlp()
    drops = []
    plan = otlp.SignalPlan("otlp", "http://x/v1/logs", max_queue=100, max_batch=10, delay_s=0.01)
    warn = otlp.EveryMinute(logging.getLogger("otlp"))
    exporter = SlowExporter(0)
    export = otlp.BoundedExport("logs", exporter, plan, lambda s, r, n: drops.append((s, r, n)),
                                warn)
    with caplog.at_level(logging.WARNING, logger="otlp"):
        for i in range(35):
            export.add(i)
        assert export.flush(5)  # returns once the last batch's export has ended
    assert sum(n for s, r, n in drops if r == "export_failed") == 35
    said = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]
    export.shutdown(timeout=0.1)


def test_every_minute_holds_back_and_then_says_how_many(caplog):
    otlp = _otlp()
    warn = otlp.EveryMinute(logging.getLogger("otlp"), interval=0.2)
    with caplog.at_level(logging.WARNING, logger="otlp"):
        assert warn("first") and not warn("second") and not warn("third")
        time.sleep(0.25)
        assert warn("fourth")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["first", "fourth (2 more like it in the last minute)"]
