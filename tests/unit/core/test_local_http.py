"""Probes of our own services never go through a proxy from the environment."""
import http.server
import json
import threading

import pytest

from tasks.core.local_http import http_ok
from tests.support import QuietHandler, inv, isolated_env


class _Recorder(QuietHandler):
    seen: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.seen.append(self.path)
        self.reply(200, json.dumps({"status": "ok"}).encode())


@pytest.fixture
def server():
    """A loopback server used once as the service and once as a 'proxy' trap."""
    def start():
        handler = type("Handler", (_Recorder,), {"seen": []})
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return httpd, handler
    started = []
    yield lambda: started.append(start()) or started[-1]
    for httpd, _ in started:
        httpd.shutdown()


def test_readiness_probe_ignores_http_proxy(server, monkeypatch):
    service, service_seen = server()
    trap, trap_seen = server()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{trap.server_address[1]}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{trap.server_address[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    ok, _ = http_ok(f"http://127.0.0.1:{service.server_address[1]}/health")
    assert ok
    assert service_seen.seen == ["/health"] and trap_seen.seen == []


def test_status_and_roundtrip_send_nothing_to_a_proxy(server, tmp_path):
    trap, trap_seen = server()
    proxy = f"http://127.0.0.1:{trap.server_address[1]}"
    env = isolated_env(tmp_path, HTTP_PROXY=proxy, http_proxy=proxy, NO_PROXY="", no_proxy="",
                       DOCKER_HOST=f"unix://{tmp_path}/dead.sock")
    inv("status", "--json", env=env, timeout=120)
    inv("roundtrip", env=env, timeout=120)
    assert trap_seen.seen == []
