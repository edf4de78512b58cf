"""The MCP registry: serves the MCP servers listed in servers.json.

Flask on waitress (httpserve.py: bounded bodies, timeouts, JSON errors). Routes:
  GET /health           200 {"status": "ok", "servers": N}; 503 when the file cannot be read
  GET /servers          {"servers": [...], "count": N}  (also /v1/servers; a trailing / is fine)
  GET /servers/<name>   one server; 404 in OpenAI's error shape for a name not in the registry,
                        with "known": the names it has
While the file cannot be read or parsed, every route answers 503 with the reason (never an
empty list that looks like a registry with no servers).
Errors are {"error": {"message", "type", "param", "code"}}, as the model gateway's.
The file is re-read when it changes (also when an editor replaces it: compose mounts its
folder, not the file), so edits show without a restart.
"""
from __future__ import annotations

import json
import os
import sys
import threading

from flask import Flask, Response

from httpserve import Limits, error_document, install_json_errors, log_requests, serve
from telemetry import Telemetry

NAME = "mcp-registry"
PORT = int(os.environ.get("REGISTRY_PORT", "8084"))
FILE = os.environ.get("REGISTRY_FILE", "/registry/servers.json")
# Only GETs: a body is never needed, so a small one is the most it takes.
LIMITS = Limits.from_env("REGISTRY", os.environ, max_body=64 * 1024)
PREFIXES = ("/servers", "/v1/servers")


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
                stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
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
app = Flask(NAME)
install_json_errors(app, LIMITS.max_body)
log_requests(app, NAME)
Telemetry(app, NAME)  # /metrics; spans where OTEL_* asks (telemetry.py)


def _json(code: int, payload) -> Response:
    return Response(json.dumps(payload), status=code, mimetype="application/json")


@app.get("/health")
@app.get("/health/")
def health():
    servers, error = REGISTRY.load()
    if error:
        return _json(503, {"status": "error", "error": error})
    return _json(200, {"status": "ok", "servers": len(servers)})


def unavailable(error: str) -> Response:
    return _json(503, error_document(503, error, "registry_unavailable"))


def lookup(name: str) -> Response:
    servers, error = REGISTRY.load()
    if error:
        return unavailable(error)
    match = next((s for s in servers if s.get("name") == name), None)
    if match is None:
        missing = error_document(404, f"no MCP server named {name!r}", "not_found", "name")
        return _json(404, {**missing, "known": [s["name"] for s in servers]})
    return _json(200, match)


def listing() -> Response:
    servers, error = REGISTRY.load()
    if error:
        return unavailable(error)
    return _json(200, {"servers": servers, "count": len(servers)})


for _prefix in PREFIXES:
    app.add_url_rule(_prefix, f"list{_prefix}", listing, methods=["GET"])
    app.add_url_rule(_prefix + "/", f"list{_prefix}/", listing, methods=["GET"])
    app.add_url_rule(_prefix + "/<path:name>", f"one{_prefix}",
                     lambda name: lookup(name.rstrip("/")), methods=["GET"])


if __name__ == "__main__":
    REGISTRY.load()
    serve(app, NAME, PORT, LIMITS, detail=f", serving {FILE}")
