"""Grafana, Loki and Tempo with data, where their images are on the engine: a request's trace
is in Tempo's API and its log line in Loki's query API, both found by the trace id, and
Grafana has the provisioned datasources and dashboards. This machine has no registry and no
local build of those three: the module is skipped, naming the images that are missing.
"""
from __future__ import annotations

import json
import subprocess
import time

import pytest
import requests

from tests.support import inv

TRACE_ID = "5b8efff798038103d269b633813fc60c"
PARENT_ID = "eee19b7ec3c1b174"
DEFAULT_IMAGES = {"grafana": ("CORTEX_GRAFANA_IMAGE", "grafana/grafana:11.2.0"),
                  "loki": ("CORTEX_LOKI_IMAGE", "grafana/loki:3.1.1"),
                  "tempo": ("CORTEX_TEMPO_IMAGE", "grafana/tempo:2.6.0")}


def missing_images(env: dict[str, str]) -> list[str]:
    missing = []
    for variable, default in DEFAULT_IMAGES.values():
        image = env.get(variable) or default
        found = subprocess.run(["docker", "image", "inspect", image], capture_output=True,
                               env=env, timeout=60)
        if found.returncode != 0:
            missing.append(image)
    return missing


def _ok(result, what: str) -> None:
    assert result.returncode == 0, (f"{what} exited {result.returncode}\n--- stdout\n"
                                    f"{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}")


@pytest.fixture(scope="module")
def lgtm(stack_env):
    missing = missing_images(stack_env)
    if missing:
        pytest.skip(f"needs the images {', '.join(missing)}, which are not on this engine "
                    "(no registry reachable to pull them, and they have no local build)")
    env = dict(stack_env, CORTEX_IMAGES="auto")
    inv("mlx", "stop", env=env, timeout=120)  # restarted by start, pointed at Tempo and Loki
    started = inv("start", "--services=grafana,loki,tempo,prometheus,model-gateway", env=env,
                  timeout=900)
    _ok(started, "inv start with Grafana, Loki and Tempo")
    return {"env": env, "start": started}


def _port(lgtm, name: str) -> str:
    return lgtm["env"][name]


def _poll(found, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        result = found()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(1)


def test_start_prints_the_grafana_url(lgtm):
    port = _port(lgtm, "CORTEX_GRAFANA_PORT")
    assert f"Grafana: http://127.0.0.1:{port}/d/cortex-embeddings" in (
        lgtm["start"].stdout + lgtm["start"].stderr)


def test_a_requests_trace_is_in_tempo_and_its_log_line_in_loki(lgtm):
    gateway = f"http://127.0.0.1:{_port(lgtm, 'CORTEX_MODEL_GATEWAY_PORT')}"
    answer = requests.post(gateway + "/v1/embeddings", json={"input": ["find me in Tempo"]},
                           headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}, timeout=60)
    assert answer.status_code == 200, answer.text
    tempo = f"http://127.0.0.1:{_port(lgtm, 'CORTEX_TEMPO_PORT')}"

    def trace_text():
        got = requests.get(f"{tempo}/api/traces/{TRACE_ID}", timeout=10)
        text = got.text if got.status_code == 200 else ""
        return text if "mlx-embeddings" in text and "model-gateway" in text else None

    assert _poll(trace_text, 90), f"trace {TRACE_ID} not in Tempo with both services"
    loki = f"http://127.0.0.1:{_port(lgtm, 'CORTEX_LOKI_PORT')}"
    query = f'{{service_name="mlx-embeddings"}} | trace_id="{TRACE_ID}"'

    def log_lines():
        got = requests.get(f"{loki}/loki/api/v1/query_range", timeout=10, params={
            "query": query, "start": str(int((time.time() - 600) * 1e9)),
            "end": str(int((time.time() + 60) * 1e9))})
        if got.status_code != 200:
            return None
        return [v for stream in got.json()["data"]["result"] for v in stream["values"]]

    lines = _poll(log_lines, 90)
    assert lines and any("/v1/embeddings" in line for _, line in lines), lines


def test_grafana_has_the_datasources_and_dashboards(lgtm):
    grafana = f"http://127.0.0.1:{_port(lgtm, 'CORTEX_GRAFANA_PORT')}"
    sources = _poll(lambda: requests.get(grafana + "/api/datasources", timeout=10).json(), 60)
    assert {"prometheus", "loki", "tempo"} <= {s["uid"] for s in sources}
    found = requests.get(grafana + "/api/search", params={"type": "dash-db"}, timeout=10).json()
    assert {"cortex-embeddings", "cortex-stack"} <= {d["uid"] for d in found}, json.dumps(found)
