"""`inv start` points OTLP at the stack's Tempo when it runs, and at nothing when it does not.

Tempo's image cannot be had here, so a stand-in takes its place through
CORTEX_COMPOSE_OVERRIDES: the local Python base image (which carries opentelemetry-proto)
running a small OTLP/HTTP receiver on Tempo's ports (3200: /ready and what it received;
4318: /v1/traces). Everything else is real: `inv start` decides, the host service exports to
Tempo's published port, the gateway container to `tempo:4318` on the compose network.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from tests.support import inv, remove_services

TRACE_ID = "3d1c9e5f7a2b4c6d8e0f1a2b3c4d5e6f"
PARENT_ID = "1a2b3c4d5e6f7a8b"

FAKE_TEMPO = '''
import json, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

seen = []

class Handler(BaseHTTPRequestHandler):
    def _send(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/ready":
            return self._send(200, b"ready")
        if self.path == "/received":
            return self._send(200, json.dumps(seen).encode())
        self._send(404, b"")

    def do_POST(self):
        request = ExportTraceServiceRequest.FromString(
            self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        for rs in request.resource_spans:
            service = next((a.value.string_value for a in rs.resource.attributes
                            if a.key == "service.name"), "")
            for ss in rs.scope_spans:
                seen.extend([service, s.trace_id.hex(), s.name] for s in ss.spans)
        self._send(200, b"")

    def log_message(self, *args):
        pass

for port in (4318, 3200):
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=(port == 4318)).start()
'''


def _ok(result, what: str) -> None:
    assert result.returncode == 0, (f"{what} exited {result.returncode}\n--- stdout\n"
                                    f"{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}")


def host_service_environment(env: dict[str, str]) -> dict[str, str]:
    status = json.loads(inv("status", "--json", env=env, timeout=120).stdout)
    pid = status["mlx"]["pid"]
    assert pid, f"the host service does not run: {status['mlx']}"
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.fixture(scope="module")
def fake_tempo(stack_env, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fake-tempo")
    (folder / "fake_tempo.py").write_text(FAKE_TEMPO)
    override = folder / "tempo-stand-in.yml"
    override.write_text(
        "services:\n"
        "  tempo:\n"
        "    image: cortex-dev/python-base:bookworm\n"
        "    pull_policy: never\n"
        "    command: [\"python3\", \"/fake/fake_tempo.py\"]\n"
        "    volumes:\n"
        f"      - {folder}:/fake:ro\n")
    env = dict(stack_env, CORTEX_COMPOSE_OVERRIDES=str(override),
               OTEL_BSP_SCHEDULE_DELAY="200")
    for name in list(env):  # inv start decides the endpoints, not the caller's shell
        if name.startswith("OTEL_EXPORTER_OTLP"):
            del env[name]
    inv("mlx", "stop", env=env, timeout=120)  # an earlier module's service runs without OTLP
    _ok(inv("start", "--services=tempo,model-gateway", env=env, timeout=900),
        "inv start --services=tempo,model-gateway (Tempo stand-in)")
    yield env
    remove_services(env, "tempo")  # later modules' health checks must not meet a stopped one


def test_start_points_host_service_and_gateway_at_tempo(fake_tempo):
    env = fake_tempo
    host_env = host_service_environment(env)
    port = env["CORTEX_TEMPO_OTLP_HTTP_PORT"]
    assert host_env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == \
        f"http://127.0.0.1:{port}/v1/traces"
    assert "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT" not in host_env, "Loki does not run"
    gateway = f"http://127.0.0.1:{env['CORTEX_MODEL_GATEWAY_PORT']}"
    answer = requests.post(gateway + "/v1/embeddings", json={"input": ["to Tempo"]},
                           headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}, timeout=60)
    assert answer.status_code == 200, answer.text
    tempo = f"http://127.0.0.1:{env['CORTEX_TEMPO_PORT']}"
    deadline = time.monotonic() + 30
    services: set[str] = set()
    while time.monotonic() < deadline and services != {"model-gateway", "mlx-embeddings"}:
        received = requests.get(tempo + "/received", timeout=10).json()
        services = {service for service, trace, _ in received if trace == TRACE_ID}
        time.sleep(0.5)
    assert services == {"model-gateway", "mlx-embeddings"}, (
        f"spans of {TRACE_ID} that reached Tempo came from {services or 'nobody'}")


def test_without_tempo_the_host_service_exports_nothing(fake_tempo):
    env = fake_tempo
    _ok(inv("stop", env=env, timeout=300), "inv stop")  # Tempo and the host service too
    _ok(inv("start", "--services=model-gateway", env=env, timeout=900),
        "inv start --services=model-gateway")
    host_env = host_service_environment(env)
    assert not any(name.startswith("OTEL_EXPORTER_OTLP") for name in host_env), host_env
