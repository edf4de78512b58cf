"""The model gateway and the MCP registry containers as HTTP servers, over raw sockets where a
client library would hide the case: negative Content-Length, chunked bodies, bodies over the
limit, idle and half-sent connections; plus the routes and answers they have always had.

Both run from the locally built images (Flask and waitress from Debian), started by the real
`inv start`, the gateway in front of the real host service.
"""
from __future__ import annotations

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
import requests

from tests.support import QuietHandler, bridge_gateway, free_port, inv, isolated_env

IDLE_TIMEOUT = 3  # the containers' channel timeout in this module, seconds
MAX_BODY = 1024 * 1024  # the gateway's body limit in this module
TEXTS = ["The quick brown fox jumps over the lazy dog.", "Containers reach the host."]


def _ok(result, what: str) -> None:
    assert result.returncode == 0, (f"{what} exited {result.returncode}\n--- stdout\n"
                                    f"{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}")


@pytest.fixture(scope="module")
def apps(stack_env):
    env = dict(stack_env, GATEWAY_CHANNEL_TIMEOUT=str(IDLE_TIMEOUT),
               REGISTRY_CHANNEL_TIMEOUT=str(IDLE_TIMEOUT), GATEWAY_MAX_BODY=str(MAX_BODY))
    _ok(inv("start", "--services=model-gateway,mcp-registry", env=env, timeout=900),
        "inv start --services=model-gateway,mcp-registry")
    return {"gateway": int(env["CORTEX_MODEL_GATEWAY_PORT"]),
            "registry": int(env["CORTEX_MCP_REGISTRY_PORT"]), "mlx": int(env["MLX_PORT"]),
            "env": env}


def _connect(port: int, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def _response(sock: socket.socket) -> tuple[int, dict, bytes]:
    """One response read off the socket: status, headers, body."""
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    return resp.status, dict(resp.getheaders()), resp.read()


# The code string each status carries, as the host service names them (issue 28, row 13).
CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
         413: "request_too_large"}


def _assert_openai_error(body: bytes, status: int) -> dict:
    """OpenAI's shape, as the host writes it: a string code, invalid_request_error for a 4xx."""
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["code"] == CODES[status] and error["message"], error
    assert error["type"] == "invalid_request_error", error
    return error


def _request_head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


def _chunked(body: bytes, size: int) -> bytes:
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


# --- what they have always answered ---------------------------------------------------------------

def test_gateway_routes_and_forwarding(apps):
    base = f"http://127.0.0.1:{apps['gateway']}"
    assert requests.get(base + "/ping", timeout=10).json() == {"message": "pong"}
    health = requests.get(base + "/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["service"] == "model-gateway"
    assert health.json()["upstream"]["reachable"] is True
    host = requests.post(f"http://127.0.0.1:{apps['mlx']}/embed", json={"input": TEXTS},
                         timeout=60).json()["embeddings"]
    via = requests.post(base + "/embed", json={"input": TEXTS}, timeout=60)
    assert via.status_code == 200, via.text
    assert _close(via.json()["embeddings"], host)
    openai = requests.post(base + "/v1/embeddings", json={"input": TEXTS[0]}, timeout=60)
    assert openai.status_code == 200 and openai.json()["object"] == "list"
    # an upstream error passes through unchanged, status and body
    bad = requests.post(base + "/v1/embeddings", json={"input": 5}, timeout=60)
    direct = requests.post(f"http://127.0.0.1:{apps['mlx']}/v1/embeddings", json={"input": 5},
                           timeout=60)
    assert bad.status_code == direct.status_code and 400 <= bad.status_code < 500
    assert bad.json() == direct.json()


def _close(a, b) -> bool:
    return len(a) == len(b) and all(
        max(abs(p - q) for p, q in zip(x, y)) < 1e-6 for x, y in zip(a, b))


def test_gateway_unknown_route_and_method_are_openai_errors(apps):
    base = f"http://127.0.0.1:{apps['gateway']}"
    missing = requests.get(base + "/nothing", timeout=10)
    assert missing.status_code == 404
    assert "no route GET /nothing" in _assert_openai_error(missing.content, 404)["message"]
    wrong = requests.get(base + "/embed", timeout=10)
    assert wrong.status_code == 405 and "POST" in wrong.headers["Allow"]
    _assert_openai_error(wrong.content, 405)


def test_registry_routes(apps):
    base = f"http://127.0.0.1:{apps['registry']}"
    listed = json.loads(Path(__file__).resolve().parents[3].joinpath(
        "compose/mcp-registry/servers.json").read_text())["servers"]
    names = [s["name"] for s in listed]
    health = requests.get(base + "/health", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok", "servers": len(names)}
    for path in ("/servers", "/servers/", "/v1/servers"):
        doc = requests.get(base + path, timeout=10).json()
        assert [s["name"] for s in doc["servers"]] == names and doc["count"] == len(names)
    one = requests.get(f"{base}/v1/servers/{names[0]}", timeout=10)
    assert one.status_code == 200 and one.json() == listed[0]
    missing = requests.get(base + "/servers/no-such-server", timeout=10)
    assert missing.status_code == 404
    assert "no-such-server" in _assert_openai_error(missing.content, 404)["message"]
    assert missing.json()["known"] == names
    post = requests.post(base + "/servers", data=b"{}", timeout=10)
    assert post.status_code == 405
    _assert_openai_error(post.content, 405)


# --- what the hand-rolled servers got wrong ------------------------------------------------------------

@pytest.mark.parametrize("app, path", [("gateway", "/embed"), ("registry", "/servers")])
def test_negative_content_length_is_refused_at_once(apps, app, path):
    with _connect(apps[app], timeout=5) as sock:
        sock.sendall(_request_head("POST", path, "Content-Type: application/json",
                                   "Content-Length: -5"))
        status, headers, body = _response(sock)  # the old server read until the client closed
    assert status == 400
    assert "Content-Length" in _assert_openai_error(body, 400)["message"]
    assert headers["Content-Type"].startswith("application/json")


def test_chunked_body_is_forwarded_whole_and_the_connection_stays_in_step(apps):
    payload = json.dumps({"input": TEXTS}).encode()
    host = requests.post(f"http://127.0.0.1:{apps['mlx']}/embed", json={"input": TEXTS},
                         timeout=60).json()["embeddings"]
    with _connect(apps["gateway"], timeout=60) as sock:
        sock.sendall(_request_head("POST", "/embed", "Content-Type: application/json",
                                   "Transfer-Encoding: chunked") + _chunked(payload, 7))
        status, _, body = _response(sock)
        assert status == 200, body
        assert _close(json.loads(body)["embeddings"], host)
        # the chunks were the body, not a next request: the next request is answered as itself
        sock.sendall(_request_head("GET", "/ping"))
        status, _, body = _response(sock)
        assert status == 200 and json.loads(body) == {"message": "pong"}


def test_declared_body_over_the_limit_is_refused_before_it_is_sent(apps):
    with _connect(apps["gateway"], timeout=5) as sock:
        sock.sendall(_request_head("POST", "/embed", "Content-Type: application/json",
                                   f"Content-Length: {MAX_BODY + 1}"))
        status, _, body = _response(sock)  # no byte of the body was sent
    assert status == 413
    _assert_openai_error(body, 413)


@pytest.mark.parametrize("app, path, limit", [("gateway", "/embed", MAX_BODY),
                                              ("registry", "/servers", 64 * 1024)])
def test_chunked_body_over_the_limit_is_refused(apps, app, path, limit):
    chunk = b"x" * 65536
    with _connect(apps[app], timeout=10) as sock:
        sock.sendall(_request_head("POST", path, "Content-Type: application/json",
                                   "Transfer-Encoding: chunked"))
        sent = 0
        try:
            while sent <= limit + len(chunk):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused mid-body: the answer is already waiting
        status, _, body = _response(sock)
    assert status == 413
    _assert_openai_error(body, 413)


@pytest.mark.parametrize("app", ["gateway", "registry"])
@pytest.mark.parametrize("sent", [b"", b"GET /health HTTP/1.1\r\nHost: x\r\n"])
def test_idle_and_half_sent_connections_are_closed(apps, app, sent):
    with _connect(apps[app], timeout=IDLE_TIMEOUT * 4 + 5) as sock:
        sock.sendall(sent)
        started = time.monotonic()
        try:
            data = sock.recv(65536)  # the old server kept them (and a thread each) forever
        except socket.timeout:
            pytest.fail(f"the {app} kept an idle connection open for "
                        f"{time.monotonic() - started:.0f}s (timeout {IDLE_TIMEOUT}s)")
        except ConnectionResetError:
            data = b""
    assert data == b""
    assert time.monotonic() - started < IDLE_TIMEOUT * 4 + 2


@pytest.mark.parametrize("app, path", [("gateway", "/ping"), ("gateway", "/health"),
                                       ("registry", "/health")])
def test_slow_clients_do_not_starve_others(apps, app, path):
    held = []
    try:
        for _ in range(150):  # more than waitress's default connection limit (100)
            sock = _connect(apps[app], timeout=10)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finished
            held.append(sock)
        for _ in range(5):
            started = time.monotonic()
            answer = requests.get(f"http://127.0.0.1:{apps[app]}{path}", timeout=5)
            assert answer.status_code == 200
            assert time.monotonic() - started < 1.5, f"{path} took {time.monotonic() - started:.2f}s"
    finally:
        for sock in held:
            sock.close()


# --- MLX_API_KEY: the gateway authenticates to the host service ---------------------------------------

class _Recorder(QuietHandler):
    seen: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Recorder.seen.append((self.path, self.headers.get("Authorization"), body))
        reply = b'{"embeddings": [[1.0]], "model": "recorder", "dimensions": 1}'
        self.reply(200, reply)

    def do_GET(self):
        # Answers /health as the embedding service does: the gateway is ready only then.
        _Recorder.seen.append((self.path, self.headers.get("Authorization"), b""))
        reply = b'{"status": "ok", "model": "recorder", "dimensions": 1}'
        self.reply(200, reply)


@pytest.fixture
def recording_gateway(engine, tmp_path):
    """A gateway container of its own compose project, with MLX_API_KEY set, in front of a
    recorder listening where containers reach the host (the bridge's address, as the host
    service does)."""
    server = ThreadingHTTPServer((bridge_gateway(), 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.seen = []
    env = isolated_env(tmp_path, CORTEX_IMAGES="local", CORTEX_READY_TIMEOUT="120",
                       CORTEX_COMPOSE_PROJECT=f"cortex-test-{os.getpid()}-key",
                       CORTEX_MODEL_GATEWAY_PORT=str(free_port()), MLX_API_KEY="s3cret-key",
                       MLX_HOST_URL=f"http://host.docker.internal:{server.server_address[1]}")
    try:
        _ok(inv("start", "--services=model-gateway", "--no-mlx", env=env, timeout=600),
            "inv start --services=model-gateway --no-mlx (MLX_API_KEY set)")
        yield int(env["CORTEX_MODEL_GATEWAY_PORT"])
    finally:
        _down(env)
        server.shutdown()


def _down(env: dict) -> None:
    import subprocess

    from tasks.stack.engine import find_engine
    from tasks.core.settings import load_settings
    from tasks.stack.project import make_stack
    stack = make_stack(load_settings(environ=env), find_engine(env), offline=True)
    subprocess.run(stack.compose.argv("down", "--volumes", "--remove-orphans"), env=env,
                   capture_output=True, timeout=180)


def test_gateway_sends_the_api_key_to_the_host_service(recording_gateway):
    answer = requests.post(f"http://127.0.0.1:{recording_gateway}/embed",
                           json={"input": "x"}, timeout=30)
    assert answer.status_code == 200, answer.text
    paths = [(path, auth) for path, auth, _ in _Recorder.seen]
    assert ("/embed", "Bearer s3cret-key") in paths
    body = next(b for p, _, b in _Recorder.seen if p == "/embed")
    assert json.loads(body) == {"input": "x"}


# --- port ownership through Compose, whatever the engine's CLI is called ------------------------------

def _podman_named_path(tmp_path: Path) -> str:
    """A PATH where the engine's CLI is called `podman` and no `docker` exists (the real
    engine and its Compose plugin behind it, as Podman's docker-compatible CLI would be)."""
    bin_dir = tmp_path / "podman-bin"
    bin_dir.mkdir()
    for folder in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            link = bin_dir / name
            if not name.startswith("docker") and not link.exists():
                link.symlink_to(os.path.join(folder, name))
    (bin_dir / "podman").symlink_to(shutil.which("docker"))
    return str(bin_dir)


def test_published_ports_are_ours_when_the_cli_is_not_docker(apps, tmp_path):
    from tasks.stack.port_ownership import classify_port
    from tasks.core.settings import load_settings
    env = dict(apps["env"], PATH=_podman_named_path(tmp_path))
    old_path = os.environ["PATH"]
    os.environ["PATH"] = env["PATH"]  # what a subprocess of the task would find
    try:
        owner = classify_port(load_settings(environ=env), apps["gateway"])
    finally:
        os.environ["PATH"] = old_path
    assert owner.state == "ours", owner
    assert "compose project" in owner.holder
