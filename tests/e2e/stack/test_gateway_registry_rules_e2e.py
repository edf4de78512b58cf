"""Issue 17, the containers' side: the model gateway's probes never wait (idle connections past
its limit, 16 clients embedding through it), its readiness says whether it can reach the
embedding service and why not, it passes the host's answers on (a body over the host's limit,
a missing Content-Type, a compressed body), and the MCP registry says when its file is broken
and sees a file an editor replaced.

The containers are the locally built images, started by the real `inv start` in front of the
real host service; raw sockets where a client library would hide the case.
"""
from __future__ import annotations

import gzip
import http.client
import json
import os
import shutil
import socket
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, QuietHandler, bridge_gateway, free_port, inv, isolated_env

PROBE_LIMIT_S = 0.25  # the bound for /health
CONNECTION_LIMIT = 100  # the gateway's and registry's, in this module
SERVERS = REPO_ROOT / "compose" / "mcp-registry" / "servers.json"
WORDS = " ".join(f"word{i % 89}" for i in range(300))


def _ok(result, what: str) -> None:
    assert result.returncode == 0, (f"{what} exited {result.returncode}\n--- stdout\n"
                                    f"{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}")


@pytest.fixture(scope="module")
def stack(stack_env, tmp_path_factory):
    folder = tmp_path_factory.mktemp("registry")
    folder.chmod(0o755)  # read by the container's unprivileged user
    shutil.copy(SERVERS, folder / "servers.json")
    (folder / "servers.json").chmod(0o644)
    env = dict(stack_env, CORTEX_MCP_REGISTRY_DIR=str(folder),
               GATEWAY_CONNECTION_LIMIT=str(CONNECTION_LIMIT),
               REGISTRY_CONNECTION_LIMIT=str(CONNECTION_LIMIT))
    _ok(inv("start", "--services=model-gateway,mcp-registry", env=env, timeout=900),
        "inv start --services=model-gateway,mcp-registry")
    return {"gateway": int(env["CORTEX_MODEL_GATEWAY_PORT"]),
            "registry": int(env["CORTEX_MCP_REGISTRY_PORT"]), "mlx": int(env["MLX_PORT"]),
            "folder": folder}


def _request(port: int, method: str, path: str, body: bytes | None = None,
             headers: dict | None = None, timeout: float = 60) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _timed_health(port: int) -> tuple[int, float]:
    started = time.monotonic()
    status, _, _ = _request(port, "GET", "/health", timeout=10)
    return status, time.monotonic() - started


def _error(raw: bytes) -> dict:
    error = json.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    return error


# --- rows 1 and 2: the gateway's probes never wait --------------------------------------------------

@pytest.mark.parametrize("app", ["gateway", "registry"])
def test_health_answers_past_the_connection_limit(stack, app):
    held = []
    try:
        for _ in range(CONNECTION_LIMIT + 40):
            held.append(socket.create_connection(("127.0.0.1", stack[app]), timeout=10))
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", stack[app]), timeout=10)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            held.append(sock)
        time.sleep(0.5)  # the connections have reached the container
        timings = [_timed_health(stack[app]) for _ in range(3)]
        assert all(status == 200 for status, _ in timings), timings
        assert max(took for _, took in timings) < PROBE_LIMIT_S, timings
    finally:
        for sock in held:
            sock.close()


def test_gateway_health_does_not_wait_behind_forwarding(stack):
    body = json.dumps({"input": [WORDS] * 8}).encode()
    stop = threading.Event()
    statuses: list[int] = []

    def client():
        while not stop.is_set():
            status, _, _ = _request(stack["gateway"], "POST", "/embed", body,
                                    {"Content-Type": "application/json"}, timeout=120)
            statuses.append(status)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(16)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)  # every forwarding thread the old gateway had is busy by now
        timings = []
        for _ in range(8):
            timings.append(_timed_health(stack["gateway"]))
            time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(150)
    assert all(status == 200 for status, _ in timings), timings
    slow = [took for _, took in timings if took >= PROBE_LIMIT_S]
    assert len(slow) <= 1 and max(took for _, took in timings) < 1.0, timings
    assert statuses and set(statuses) <= {200, 429}, statuses


# --- row 3, the gateway's half: ready only when the upstream answers as the embedding service ---------

class _NotTheService(QuietHandler):
    def do_GET(self):
        reply = b'{"hello": "I am some other program"}'
        self.reply(200, reply)


def _compose(env: dict, *args: str, timeout: float = 600):
    import subprocess

    from tasks.core.settings import load_settings
    from tasks.stack.engine import find_engine
    from tasks.stack.project import make_stack
    stack = make_stack(load_settings(environ=env), find_engine(env), offline=True)
    return subprocess.run(stack.compose.argv(*args), env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_gateway_is_not_ready_unless_its_upstream_is_the_embedding_service(engine, tmp_path):
    other = ThreadingHTTPServer((bridge_gateway(), 0), _NotTheService)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    upstream = f"http://host.docker.internal:{other.server_address[1]}"
    port = free_port()
    env = isolated_env(tmp_path, CORTEX_IMAGES="local", CORTEX_READY_TIMEOUT="60",
                       CORTEX_COMPOSE_PROJECT=f"cortex-test-{os.getpid()}-upstream",
                       CORTEX_MODEL_GATEWAY_PORT=str(port), MLX_HOST_URL=upstream)
    try:
        # Compose itself: `inv start` rightly refuses a gateway that cannot be ready.
        _ok(_compose(env, "up", "-d", "--no-deps", "model-gateway"), "compose up model-gateway")
        deadline = time.monotonic() + 60
        status, raw = None, b""
        while time.monotonic() < deadline and status is None:
            try:
                status, _, raw = _request(port, "GET", "/health", timeout=10)
            except OSError:
                time.sleep(1)
        assert status == 503, raw
        doc = json.loads(raw)
        assert doc["status"] == "degraded"
        up = doc["upstream"]
        assert up["url"] == upstream and up["reachable"] is True
        assert "not as the embedding service" in up["reason"], up
        assert {"status", "model", "dimensions"} <= set(up)
        other.shutdown()
        other.server_close()
        status, _, raw = _request(port, "GET", "/health", timeout=10)
        doc = json.loads(raw)
        assert status == 503 and doc["upstream"]["reachable"] is False, doc
        assert upstream in doc["upstream"]["reason"], doc
    finally:
        _compose(env, "down", "--volumes", "--remove-orphans", timeout=180)
        other.server_close()


# --- rows 4 and 13: the host's answers, passed on -------------------------------------------------

def test_a_body_over_the_hosts_limit_is_the_hosts_413(stack):
    body = json.dumps({"input": "a" * (4 * 1024 * 1024 + 200_000)}).encode()  # 4.2 MB
    for _ in range(3):
        status, _, raw = _request(stack["gateway"], "POST", "/embed", body,
                                  {"Content-Type": "application/json"})
        assert status == 413, raw[:300]  # was 502 "Connection reset by peer"
        error = _error(raw)
        assert error["code"] == "request_too_large" and "MLX_MAX_REQUEST_BYTES" in error["message"]


@pytest.mark.parametrize("headers, body", [
    ({}, b'{"input": "x"}'),  # no Content-Type: the gateway used to add application/json
    ({"Content-Type": "application/json", "Content-Encoding": "gzip"},
     gzip.compress(b'{"input": "x"}')),
])
def test_gateway_applies_the_hosts_content_rules(stack, headers, body):
    via = _request(stack["gateway"], "POST", "/v1/embeddings", body, headers)
    direct = _request(stack["mlx"], "POST", "/v1/embeddings", body, headers)
    assert via[0] == direct[0] == 415, (via, direct)
    assert json.loads(via[2]) == json.loads(direct[2])


@pytest.mark.parametrize("app", ["gateway", "registry"])
def test_options_and_tls_are_answered_in_json_at_once(stack, app):
    status, headers, raw = _request(stack[app], "OPTIONS", "/health")
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert "GET" in json.loads(raw)["methods"]
    with socket.create_connection(("127.0.0.1", stack[app]), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(bytes.fromhex("160301002e0100002a0303") + b"\x00" * 36)
        data = b""
        while chunk := sock.recv(65536):  # the old server waited 30 s for a header
            data += chunk
    assert time.monotonic() - started < 2
    head, _, body = data.partition(b"\r\n\r\n")
    assert b" 400 " in head.split(b"\r\n")[0] and "https://" in _error(body)["message"]


def test_unknown_transfer_encoding_is_a_json_client_error(stack):
    with socket.create_connection(("127.0.0.1", stack["gateway"]), timeout=10) as sock:
        sock.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: gzip\r\n\r\n")
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        status, raw = resp.status, resp.read()
    assert status == 501
    error = _error(raw)
    assert error["type"] == "invalid_request_error" and "Transfer-Encoding" in error["message"]


# --- rows 5 and 6: the registry's file -------------------------------------------------------------

def _replace(folder: Path, text: str) -> None:
    """As sed -i and most editors do: a new file renamed over the old one."""
    new = folder / "servers.json.new"
    new.write_text(text)
    new.chmod(0o644)
    os.replace(new, folder / "servers.json")


def _wait_for(check, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def test_registry_sees_a_replaced_file_and_says_when_it_is_broken(stack):
    port, folder = stack["registry"], stack["folder"]
    original = (folder / "servers.json").read_text()
    try:
        doc = json.loads(original)
        doc["servers"].append({"name": "added-by-test", "url": "http://example.invalid"})
        _replace(folder, json.dumps(doc))
        names = _wait_for(lambda: [s["name"] for s in json.loads(
            _request(port, "GET", "/servers")[2])["servers"] if s["name"] == "added-by-test"])
        assert names == ["added-by-test"], "the registry kept the old file after a replace"

        _replace(folder, '{"servers": [ {"name": "git", ')  # broken
        assert _wait_for(lambda: _request(port, "GET", "/health")[0] == 503)
        for path in ("/servers", "/servers/git", "/v1/servers"):
            status, _, raw = _request(port, "GET", path)
            assert status == 503, (path, status, raw[:200])  # was 200 [] and 404
            assert "not a valid registry" in _error(raw)["message"]
    finally:
        _replace(folder, original)
    assert _wait_for(lambda: _request(port, "GET", "/servers")[0] == 200)
