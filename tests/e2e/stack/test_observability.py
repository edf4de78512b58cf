"""Observability on the real engine: Prometheus from the local image scrapes the real host
service, gateway and registry; after `inv roundtrip` every PromQL expression of the Grafana
dashboards (with $__rate_interval = 1m) is valid and returns data from that Prometheus; one
trace runs from a caller through the gateway container into the host service, received by an
OTLP/HTTP receiver of the test; a stopped host service is a down target, not an error.
"""
from __future__ import annotations

import json
import subprocess
import time

import pytest
import requests

from tasks.host.bind_addresses import docker_bridge_gateway
from tests.otlp_receiver import OtlpReceiver
from tests.support import REPO_ROOT, inv, remove_services

DASHBOARDS = REPO_ROOT / "compose" / "grafana" / "dashboards"
JOBS = {"prometheus", "mlx", "model-gateway", "mcp-registry"}
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


def _ok(result, what: str) -> None:
    assert result.returncode == 0, (f"{what} exited {result.returncode}\n--- stdout\n"
                                    f"{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}")


@pytest.fixture(scope="module")
def observed(stack_env):
    bridge = docker_bridge_gateway()
    assert bridge, "no Docker bridge address on this host: containers cannot reach the receiver"
    with OtlpReceiver(host=bridge) as receiver:
        env = dict(stack_env, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                   OTEL_BSP_SCHEDULE_DELAY="200", OTEL_BLRP_SCHEDULE_DELAY="200",
                   CORTEX_CONTAINERS_OTLP_TRACES_ENDPOINT=(
                       f"http://host.docker.internal:{receiver.port}/v1/traces"),
                   CORTEX_CONTAINERS_OTLP_LOGS_ENDPOINT=(
                       f"http://host.docker.internal:{receiver.port}/v1/logs"))
        # A host service an earlier module started runs without these OTEL_* settings.
        inv("mlx", "stop", env=env, timeout=120)
        started = inv("start", "--services=prometheus,model-gateway,mcp-registry", env=env,
                      timeout=900)
        _ok(started, "inv start --services=prometheus,model-gateway,mcp-registry")
        yield {"env": env, "receiver": receiver, "start": started,
               "prometheus": f"http://127.0.0.1:{env['CORTEX_PROMETHEUS_PORT']}",
               "gateway": f"http://127.0.0.1:{env['CORTEX_MODEL_GATEWAY_PORT']}"}
        remove_services(env, "prometheus")  # later modules' health checks count it otherwise


def targets(prometheus: str) -> dict[str, str]:
    body = requests.get(prometheus + "/api/v1/targets", timeout=10).json()
    return {t["labels"]["job"]: t["health"] for t in body["data"]["activeTargets"]}


def wait_targets(prometheus: str, want: dict[str, str], timeout: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    seen = {}
    while time.monotonic() < deadline:
        seen = targets(prometheus)
        if all(seen.get(job) == health for job, health in want.items()):
            break
        time.sleep(1)
    return seen


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expression) of every query, $__rate_interval = 1m."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                found.append((path.name, panel["title"],
                              target["expr"].replace("$__rate_interval", "1m")))
    return found


def test_prometheus_scrapes_host_service_gateway_and_registry(observed):
    ready = requests.get(observed["prometheus"] + "/-/ready", timeout=10)
    assert ready.status_code == 200
    seen = wait_targets(observed["prometheus"], {job: "up" for job in JOBS})
    assert seen == {job: "up" for job in JOBS}, seen


def test_every_dashboard_query_returns_data_after_a_roundtrip(observed):
    env = observed["env"]
    _ok(inv("roundtrip", env=env, timeout=300), "inv roundtrip")
    queries = dashboard_queries()
    assert len(queries) >= 20
    # rate() over 1m needs two scrapes (5 s apart) after the traffic: poll, then judge.
    deadline = time.monotonic() + 90
    empty = queries
    while empty and time.monotonic() < deadline:
        requests.post(observed["gateway"] + "/v1/embeddings", json={"input": ["keep it busy"]},
                      timeout=60)  # traffic stays in the last minute while we wait
        empty = []
        for board, title, expr in queries:
            answer = requests.get(observed["prometheus"] + "/api/v1/query",
                                  params={"query": expr}, timeout=10).json()
            assert answer["status"] == "success", (board, title, expr, answer)
            if not answer["data"]["result"]:
                empty.append((board, title, expr))
        if empty:
            time.sleep(3)
    assert not empty, f"queries that return no data: {empty}"


def test_one_trace_runs_from_the_gateway_into_the_host_service(observed):
    receiver = observed["receiver"]
    answer = requests.post(observed["gateway"] + "/v1/embeddings",
                           json={"input": ["followed through the gateway"]},
                           headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}, timeout=60)
    assert answer.status_code == 200, answer.text

    def whole_trace():
        spans = receiver.spans_of(TRACE_ID)
        services = {s.service for s in spans}
        return spans if {"model-gateway", "mlx-embeddings"} <= services and any(
            s.name == "forward pass" for s in spans) else None

    spans = receiver.wait_for(whole_trace, timeout=30)
    assert spans, ("no trace through both services: "
                   f"{[(s.service, s.name, s.trace_id) for s in receiver.received.spans][-20:]}")
    by_id = {s.span_id: s for s in spans}
    gateway_server = next(s for s in spans if s.service == "model-gateway"
                          and s.kind == "SERVER")
    assert gateway_server.parent_id == PARENT_ID, "the caller's traceparent is continued"
    assert gateway_server.name == "POST /v1/embeddings"
    client = next(s for s in spans if s.service == "model-gateway" and s.kind == "CLIENT")
    assert client.parent_id == gateway_server.span_id
    host = next(s for s in spans if s.service == "mlx-embeddings" and s.kind == "SERVER")
    assert host.name == "POST /v1/embeddings"
    assert host.parent_id == client.span_id, "the host's span is a child of the gateway's call"
    assert by_id[host.parent_id].service == "model-gateway"

    def both_services_logged():
        logs = receiver.logs_of(TRACE_ID)
        return logs if {r.service for r in logs} >= {"mlx-embeddings", "model-gateway"} else None

    logs = receiver.wait_for(both_services_logged, timeout=20)
    assert logs, f"log lines of the trace: {[(r.service, r.body) for r in receiver.logs_of(TRACE_ID)]}"
    gateway_lines = [str(r.body) for r in logs if r.service == "model-gateway"]
    assert any("POST /v1/embeddings 200" in line for line in gateway_lines), gateway_lines


def test_a_cortex_rerank_through_the_gateway_is_one_trace(observed):
    """Cortex-OS's /rerank, translated by the gateway: its SERVER span continues the caller's,
    the call to the host's TEI /rerank is its CLIENT child, the host's span a child of that."""
    receiver, trace_id = observed["receiver"], "1bf7651916cd43dd8448eb211c80319d"
    answer = requests.post(observed["gateway"] + "/rerank",
                           json={"query": "what does a man eat?", "docs": ["food", "tax"]},
                           headers={"traceparent": f"00-{trace_id}-{PARENT_ID}-01"}, timeout=60)
    assert answer.status_code == 200, answer.text

    def whole_trace():  # each service exports on its own schedule: wait for all three
        spans = receiver.spans_of(trace_id)
        seen = {(s.service, s.kind) for s in spans}
        return spans if {("model-gateway", "SERVER"), ("model-gateway", "CLIENT"),
                         ("mlx-embeddings", "SERVER")} <= seen else None

    spans = receiver.wait_for(whole_trace, timeout=30)
    seen = [(s.service, s.name) for s in receiver.received.spans][-20:]
    assert spans, f"no trace of the rerank: {seen}"
    server = next(s for s in spans if s.service == "model-gateway" and s.kind == "SERVER")
    assert server.name == "POST /rerank" and server.parent_id == PARENT_ID
    client = next(s for s in spans if s.service == "model-gateway" and s.kind == "CLIENT"
                  and s.name == "POST /rerank")
    assert client.parent_id == server.span_id
    host = next(s for s in spans if s.service == "mlx-embeddings" and s.kind == "SERVER")
    assert host.name == "POST /rerank" and host.parent_id == client.span_id


def test_status_lists_prometheus_and_a_stopped_host_service_is_a_down_target(observed):
    env = observed["env"]
    wait_targets(observed["prometheus"], {job: "up" for job in JOBS})  # scraped once at least
    status = inv("status", "--json", env=env, timeout=120)
    _ok(status, "inv status --json")
    prometheus = json.loads(status.stdout)["services"]["prometheus"]
    assert prometheus["ready"] and prometheus["port"] == int(env["CORTEX_PROMETHEUS_PORT"])
    assert prometheus["targets"] == {job: "up" for job in JOBS}
    _ok(inv("mlx", "stop", env=env, timeout=120), "inv mlx stop")
    seen = wait_targets(observed["prometheus"], {"mlx": "down"})
    assert seen.get("mlx") == "down", seen
    status = inv("status", "--json", env=env, timeout=120)
    _ok(status, "inv status --json with the host service stopped")
    doc = json.loads(status.stdout)
    assert doc["services"]["prometheus"]["targets"]["mlx"] == "down"
    assert doc["services"]["prometheus"]["targets"]["model-gateway"] == "up"
    table = inv("status", env=env, timeout=120)
    _ok(table, "inv status")
    assert "mlx=down" in table.stdout and "model-gateway=up" in table.stdout, table.stdout


def test_stop_keeps_prometheus_data(observed):
    env, prometheus = observed["env"], observed["prometheus"]

    def samples_of_gateway() -> float:
        answer = requests.get(prometheus + "/api/v1/query", timeout=10, params={
            "query": 'count_over_time(up{job="model-gateway"}[1h])'}).json()
        result = answer["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    before = samples_of_gateway()
    assert before >= 2, "the gateway has been scraped a few times by now"
    _ok(inv("stop", env=env, timeout=300), "inv stop")
    volume = f"{env['CORTEX_COMPOSE_PROJECT']}_prometheus-data"
    kept = subprocess.run(["docker", "volume", "inspect", volume], capture_output=True, env=env,
                          timeout=60)
    assert kept.returncode == 0, f"inv stop removed {volume}"
    _ok(inv("start", "--services=prometheus", "--no-mlx", env=env, timeout=600),
        "inv start --services=prometheus (after stop)")
    assert samples_of_gateway() >= before, "the samples from before the stop are still there"
