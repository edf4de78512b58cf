"""The model gateway: forwards embedding requests from containers to the host service.

Standard library only. Routes:
  GET  /health          200 {"status": "ok"|"degraded", "service": "model-gateway",
                             "upstream": {"url", "reachable", "status", "model", "dimensions"}}
                        "degraded" means the gateway runs but the host service does not answer.
  GET  /ping            {"message": "pong"}
  POST /embed           forwarded to MLX_HOST_URL/embed (the seed's shape)
  POST /v1/embeddings   forwarded to MLX_HOST_URL/v1/embeddings (OpenAI's shape)
Upstream answers (errors included) pass through unchanged; an upstream that cannot be reached
is a 502 with an OpenAI-style error body.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The host service is reached directly: a proxy the engine injects into containers
# (HTTP_PROXY from the Docker client's config) must not carry container -> host traffic.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

UPSTREAM = os.environ.get("MLX_HOST_URL", "http://host.docker.internal:8081").rstrip("/")
PORT = int(os.environ.get("GATEWAY_PORT", "8083"))
TIMEOUT = float(os.environ.get("GATEWAY_UPSTREAM_TIMEOUT", "60"))
HEALTH_TIMEOUT = float(os.environ.get("GATEWAY_HEALTH_TIMEOUT", "2"))
MAX_BODY = int(os.environ.get("GATEWAY_MAX_BODY", str(16 * 1024 * 1024)))
FORWARDED = ("/embed", "/v1/embeddings")


def log(message: str) -> None:
    print(f"model-gateway: {message}", file=sys.stderr, flush=True)


def upstream_health() -> dict:
    info = {"url": UPSTREAM, "reachable": False, "status": None}
    try:
        with _DIRECT.open(UPSTREAM + "/health", timeout=HEALTH_TIMEOUT) as resp:
            body = json.loads(resp.read() or b"{}")
            info.update(reachable=True, status=body.get("status", "ok"),
                        model=body.get("model"), dimensions=body.get("dimensions"))
    except urllib.error.HTTPError as exc:  # it answers, but is not ready (e.g. 503 loading)
        try:
            body = json.loads(exc.read() or b"{}")
        except ValueError:
            body = {}
        info.update(reachable=True, status=body.get("status", f"http {exc.code}"))
    except (OSError, ValueError) as exc:
        info["error"] = str(getattr(exc, "reason", exc))
    return info


class Handler(BaseHTTPRequestHandler):
    server_version = "cortex-model-gateway/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # one line per request, on stderr
        log(f"{self.address_string()} {fmt % args}")

    def send_json(self, code: int, payload, raw: bytes | None = None,
                  content_type: str = "application/json") -> None:
        body = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, code: int, message: str, kind: str) -> None:
        self.send_json(code, {"error": {"message": message, "type": kind, "param": None,
                                        "code": code}})

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/health":
            upstream = upstream_health()
            ok = upstream["reachable"] and upstream["status"] == "ok"
            self.send_json(200, {"status": "ok" if ok else "degraded",
                                 "service": "model-gateway", "upstream": upstream})
        elif path == "/ping":
            self.send_json(200, {"message": "pong"})
        else:
            self.error(404, f"no route GET {path}", "not_found")

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        if path not in FORWARDED:
            self.error(404, f"no route POST {path}", "not_found")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.error(400, "Content-Length is not a number", "invalid_request_error")
            return
        if length > MAX_BODY:
            self.error(413, f"request body of {length} bytes exceeds {MAX_BODY}",
                       "invalid_request_error")
            return
        body = self.rfile.read(length) if length else b""
        request = urllib.request.Request(
            UPSTREAM + path, data=body, method="POST",
            headers={"Content-Type": self.headers.get("Content-Type", "application/json"),
                     "Accept": "application/json"})
        try:
            with _DIRECT.open(request, timeout=TIMEOUT) as resp:
                self.send_json(resp.status, None, raw=resp.read(),
                               content_type=resp.headers.get("Content-Type", "application/json"))
        except urllib.error.HTTPError as exc:
            self.send_json(exc.code, None, raw=exc.read(),
                           content_type=exc.headers.get("Content-Type", "application/json"))
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            self.error(502, f"the embedding service at {UPSTREAM} did not answer: {reason}",
                       "upstream_unavailable")


def main() -> None:
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = True
    log(f"listening on :{PORT}, forwarding {', '.join(FORWARDED)} to {UPSTREAM}")
    # PID 1 in its container: without a handler SIGTERM is ignored and `stop` waits 10s.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
