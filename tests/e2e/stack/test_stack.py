"""The stack on a real Docker engine, through the real `inv` program."""
from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import subprocess

import jsonschema
import pytest
import requests

from tasks.stack.status_doc import load_schema
from tests.support import REPO_ROOT, inv, remove_services

START = ("start", "--services=nats,model-gateway")
STREAM, SUBJECT = "CORTEXE2E", "cortex.e2e.persist"


def _ok(result, what: str) -> None:
    assert result.returncode == 0, (f"{what} exited {result.returncode}\n--- stdout\n"
                                    f"{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}")


def _url(env, var: str, path: str) -> str:
    return f"http://127.0.0.1:{env[var]}{path}"


def _mlx_url(env, path: str) -> str:
    return f"http://127.0.0.1:{env['MLX_PORT']}{path}"


def _run(coro):
    return asyncio.run(coro)


# --- failure paths that need nothing running ---------------------------------------------------

def test_unknown_service_is_an_error_listing_valid_ones(stack_env):
    result = inv("start", "--services=nats,natz", env=stack_env, timeout=120)
    assert result.returncode != 0
    assert "Unknown service 'natz'" in result.stderr
    for name in ("nats", "grafana", "loki", "tempo", "model-gateway", "mcp-registry"):
        assert name in result.stderr
    assert result.stdout == ""


def test_engine_that_does_not_answer(stack_env, tmp_path):
    dead = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(dead))  # a socket file nobody listens on
    sock.close()
    env = dict(stack_env, DOCKER_HOST=f"unix://{dead}")
    result = inv("start", "--services=nats", "--no-mlx", env=env, timeout=120)
    assert result.returncode != 0
    assert f"DOCKER_HOST=unix://{dead}" in result.stderr
    assert "does not answer" in result.stderr
    status = inv("status", "--json", env=env, timeout=120)  # status still tells the truth
    doc = json.loads(status.stdout)
    assert doc["engine"]["available"] is False and doc["containers"] == []


def test_compose_config_accepts_the_whole_stack(stack_env):
    from tasks.stack.engine import find_engine
    from tasks.core.settings import load_settings
    from tasks.stack.project import make_stack
    settings = load_settings(environ=stack_env)
    for offline in (False, True):
        stack = make_stack(settings, find_engine(stack_env), offline=offline)
        done = subprocess.run(stack.compose.argv("config", "--format", "json"), env=stack.env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        services = json.loads(done.stdout)["services"]
        assert set(services) == {"nats", "grafana", "loki", "tempo", "prometheus",
                                 "model-gateway", "mcp-registry"}
        for name, spec in services.items():
            for port in spec.get("ports", []):
                assert port["host_ip"] == "127.0.0.1", (name, port)
        assert services["nats"]["command"][0] == "--jetstream"
        assert any(v["target"] == "/data" for v in services["nats"]["volumes"])
        assert services["grafana"]["ports"][0]["published"] == stack_env["CORTEX_GRAFANA_PORT"]
        assert any(v["target"] == "/etc/tempo/tempo.yml" for v in services["tempo"]["volumes"])
        assert any("host.docker.internal:host-gateway" in h.replace("=", ":")
                   for h in services["model-gateway"]["extra_hosts"])
        image = services["nats"]["image"]
        assert image.startswith("cortex-dev/nats") if offline else image.startswith("nats:")
        prometheus = services["prometheus"]
        assert prometheus["image"] == ("cortex-dev/prometheus:local" if offline
                                       else "prom/prometheus:v2.53.2")
        assert prometheus["ports"][0]["published"] == stack_env["CORTEX_PROMETHEUS_PORT"]
        assert any(v["target"] == "/prometheus" and v["type"] == "volume"
                   for v in prometheus["volumes"])
    datasources = (REPO_ROOT / "compose/grafana/provisioning/datasources/datasources.yml").read_text()
    assert "http://loki:3100" in datasources and "http://tempo:3200" in datasources


def test_service_that_never_becomes_ready(stack_env, tmp_path):
    override = tmp_path / "never-ready.yml"
    override.write_text(
        "services:\n"
        "  mcp-registry:\n"
        "    command: [\"python3\", \"-c\", \"import time; print('registry held back by the "
        "e2e override', flush=True); time.sleep(600)\"]\n")
    env = dict(stack_env, CORTEX_COMPOSE_OVERRIDES=str(override))
    try:
        result = inv("start", "--services=mcp-registry", "--no-mlx", "--timeout=8", env=env,
                     timeout=400)
        assert result.returncode != 0
        assert "mcp-registry did not become ready" in result.stderr
        assert f"127.0.0.1:{stack_env['CORTEX_MCP_REGISTRY_PORT']}/health" in result.stderr
        assert "registry held back by the e2e override" in result.stderr  # its last log lines
    finally:
        remove_services(env, "mcp-registry")


def test_port_held_by_another_program_is_named(stack_env):
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    env = dict(stack_env, CORTEX_MCP_REGISTRY_PORT=str(port))
    try:
        result = inv("start", "--services=mcp-registry", "--no-mlx", "--timeout=10", env=env,
                     timeout=400)
    finally:
        holder.close()
        remove_services(env, "mcp-registry")
    assert f"port {port} (mcp-registry)" in result.stderr
    assert f"pid {os.getpid()}" in result.stderr  # the holder: this test process
    assert result.returncode != 0  # Compose cannot publish a port that is taken


# --- the running stack --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def started(stack_env):
    result = inv(*START, env=stack_env, timeout=900)
    _ok(result, "inv start --services=nats,model-gateway")
    return result


def test_start_exits_zero_and_reports_ready(started, stack_env):
    assert "nats ready" in started.stderr and "model-gateway ready" in started.stderr
    assert started.stdout.strip() == ""  # progress goes to stderr
    assert requests.get(_url(stack_env, "CORTEX_NATS_MONITOR_PORT", "/healthz"), timeout=5).ok
    logs = inv("logs", "-s", "nats", "--tail", "50", env=stack_env, timeout=120)
    _ok(logs, "inv logs -s nats")
    assert "Server is ready" in logs.stdout and "\x1b" not in logs.stdout


def test_nats_publish_and_receive_through_the_container(started, stack_env):
    import nats

    async def roundtrip():
        nc = await nats.connect(f"nats://127.0.0.1:{stack_env['CORTEX_NATS_PORT']}",
                                connect_timeout=5)
        try:
            sub = await nc.subscribe("cortex.e2e.hello")
            await nc.publish("cortex.e2e.hello", b"hello through the container")
            msg = await sub.next_msg(timeout=5)
            return msg.data, nc.connected_url.port
        finally:
            await nc.close()

    data, port = _run(roundtrip())
    assert data == b"hello through the container"
    assert port == int(stack_env["CORTEX_NATS_PORT"])


def test_status_json_validates_and_shows_the_stack(started, stack_env):
    result = inv("status", "--json", env=stack_env, timeout=120)
    _ok(result, "inv status --json")
    doc = json.loads(result.stdout)  # stdout is the document and nothing else
    jsonschema.validate(doc, load_schema())
    by_service = {c["Service"]: c for c in doc["containers"]}
    assert by_service["nats"]["State"] == "running"
    assert by_service["model-gateway"]["State"] == "running"
    assert all(c["Name"].startswith(stack_env["CORTEX_COMPOSE_PROJECT"]) for c in doc["containers"])
    assert doc["connectivity"]["mlx"] is True
    assert doc["connectivity"]["modelGateway"] is True
    assert doc["connectivity"]["nats"] is True
    assert doc["mlx"]["running"] is True and doc["mlx"]["responding"] is True
    assert doc["ports"]["nats"] == int(stack_env["CORTEX_NATS_PORT"])
    assert doc["ports"]["mlx"] == int(stack_env["MLX_PORT"])
    services = doc["services"]
    assert services["nats"]["running"] and services["nats"]["ready"]
    assert services["model-gateway"]["ready"]
    assert services["grafana"] == {**services["grafana"], "running": False, "ready": False,
                                   "state": "absent"}
    health = inv("health", env=stack_env, timeout=120)
    _ok(health, "inv health")
    assert "model-gateway" in health.stdout


def test_gateway_embed_equals_the_host_service(started, stack_env):
    texts = ["The quick brown fox jumps over the lazy dog.", "Containers reach the host."]
    host = requests.post(_mlx_url(stack_env, "/embed"), json={"input": texts}, timeout=60)
    via = requests.post(_url(stack_env, "CORTEX_MODEL_GATEWAY_PORT", "/embed"),
                        json={"input": texts}, timeout=60)
    assert host.status_code == 200 and via.status_code == 200, via.text
    a, b = host.json()["embeddings"], via.json()["embeddings"]
    assert len(a) == len(b) == 2 and len(a[0]) == via.json()["dimensions"]
    for x, y in zip(a, b):
        assert max(abs(p - q) for p, q in zip(x, y)) < 1e-6
        assert math.isclose(sum(v * v for v in y), 1.0, rel_tol=1e-3)
    openai = requests.post(_url(stack_env, "CORTEX_MODEL_GATEWAY_PORT", "/v1/embeddings"),
                           json={"input": texts[0]}, timeout=60)
    assert openai.status_code == 200
    assert max(abs(p - q) for p, q in zip(openai.json()["data"][0]["embedding"], a[0])) < 1e-6
    health = requests.get(_url(stack_env, "CORTEX_MODEL_GATEWAY_PORT", "/health"), timeout=10).json()
    assert health["status"] == "ok" and health["upstream"]["reachable"] is True


def _js_publish(port: str) -> int:
    import nats

    async def go():
        nc = await nats.connect(f"nats://127.0.0.1:{port}", connect_timeout=5)
        try:
            js = nc.jetstream()
            await js.add_stream(name=STREAM, subjects=[SUBJECT])
            ack = await js.publish(SUBJECT, b"survives a restart")
            return ack.seq
        finally:
            await nc.close()
    return _run(go())


def _js_read(port: str, seq: int):
    import nats
    from nats.js.errors import NotFoundError

    async def go():
        nc = await nats.connect(f"nats://127.0.0.1:{port}", connect_timeout=5)
        try:
            js = nc.jetstream()
            try:
                return (await js.get_msg(STREAM, seq)).data
            except NotFoundError:
                return None
        finally:
            await nc.close()
    return _run(go())


def test_jetstream_survives_stop_and_start_and_clean_removes_it(started, stack_env):
    port = stack_env["CORTEX_NATS_PORT"]
    seq = _js_publish(port)
    stopped = inv("stop", env=stack_env, timeout=300)
    _ok(stopped, "inv stop")
    status = json.loads(inv("status", "--json", env=stack_env, timeout=120).stdout)
    assert status["services"]["nats"]["running"] is False
    assert status["mlx"]["running"] is False
    _ok(inv(*START, env=stack_env, timeout=900), "inv start (after stop)")
    assert _js_read(port, seq) == b"survives a restart"

    cleaned = inv("clean", "--yes", env=stack_env, timeout=300)
    _ok(cleaned, "inv clean --yes")
    volumes = subprocess.run(["docker", "volume", "ls", "-q", "--filter",
                              f"label=com.docker.compose.project={stack_env['CORTEX_COMPOSE_PROJECT']}"],
                             capture_output=True, text=True).stdout.split()
    assert volumes == []
    _ok(inv("start", "--services=nats", "--no-mlx", env=stack_env, timeout=900),
        "inv start (after clean)")
    assert _js_read(port, seq) is None  # the stream went with the volume


def test_clean_asks_first(stack_env):
    _ok(inv("start", "--services=nats", "--no-mlx", env=stack_env, timeout=900), "inv start")
    result = inv("clean", env=stack_env, timeout=120, input="n\n")
    assert result.returncode != 0 and "cancelled" in result.stderr
    # nothing was removed: the nats container is still there
    ps = subprocess.run(["docker", "ps", "-q", "--filter",
                         f"label=com.docker.compose.project={stack_env['CORTEX_COMPOSE_PROJECT']}"],
                        capture_output=True, text=True).stdout.split()
    assert ps
