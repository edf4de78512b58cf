"""The MCP registry: serves the MCP servers listed in servers.json. Standard library only.

Routes:
  GET /health           200 {"status": "ok", "servers": N}; 503 when the file cannot be read
  GET /servers          {"servers": [...]}  (also /v1/servers)
  GET /servers/<name>   one server; 404 {"error": ...} for a name not in the registry
The file is re-read when it changes, so edits show without a restart.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("REGISTRY_PORT", "8084"))
FILE = os.environ.get("REGISTRY_FILE", "/registry/servers.json")


def log(message: str) -> None:
    print(f"mcp-registry: {message}", file=sys.stderr, flush=True)


class Registry:
    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._stamp = None
        self._servers: list[dict] = []
        self._error: str | None = None

    def load(self) -> tuple[list[dict], str | None]:
        with self._lock:
            try:
                stat = os.stat(self.path)
                stamp = (stat.st_mtime_ns, stat.st_size)
            except OSError as exc:
                self._stamp, self._servers = None, []
                self._error = f"cannot read {self.path}: {exc.strerror}"
                return self._servers, self._error
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    with open(self.path, encoding="utf-8") as fh:
                        data = json.load(fh)
                    servers = data["servers"] if isinstance(data, dict) else data
                    if not isinstance(servers, list) or not all(
                            isinstance(s, dict) and isinstance(s.get("name"), str) for s in servers):
                        raise ValueError("expected {\"servers\": [{\"name\": ...}, ...]}")
                    self._servers, self._error = servers, None
                    log(f"loaded {len(servers)} servers from {self.path}")
                except (OSError, ValueError, KeyError) as exc:
                    self._servers, self._error = [], f"{self.path} is not a valid registry: {exc}"
                    log(self._error)
            return self._servers, self._error


REGISTRY = Registry(FILE)


class Handler(BaseHTTPRequestHandler):
    server_version = "cortex-mcp-registry/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        log(f"{self.address_string()} {fmt % args}")

    def send_json(self, code: int, payload) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path.rstrip("/") or "/"
        servers, error = REGISTRY.load()
        if path == "/health":
            if error:
                self.send_json(503, {"status": "error", "error": error})
            else:
                self.send_json(200, {"status": "ok", "servers": len(servers)})
            return
        for prefix in ("/servers", "/v1/servers"):
            if path == prefix:
                self.send_json(200, {"servers": servers, "count": len(servers)})
                return
            if path.startswith(prefix + "/"):
                name = urllib.parse.unquote(path[len(prefix) + 1:])
                match = next((s for s in servers if s.get("name") == name), None)
                if match is None:
                    self.send_json(404, {"error": f"no MCP server named {name!r}",
                                         "known": [s["name"] for s in servers]})
                else:
                    self.send_json(200, match)
                return
        self.send_json(404, {"error": f"no route GET {path}"})


def main() -> None:
    REGISTRY.load()
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = True
    log(f"listening on :{PORT}, serving {FILE}")
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
