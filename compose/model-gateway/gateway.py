"""The model gateway: forwards embedding requests from containers to the host service.

Flask on waitress (httpserve.py: bounded bodies, timeouts, JSON errors). Routes:
  GET  /health          200 {"status": "ok", "service": "model-gateway", "upstream": {...}}
                        when the host service it targets answers as the embedding service;
                        else 503 {"status": "degraded", ...}. "upstream": {"url", "reachable",
                        "status", "model", "dimensions", "reason"}: reason says why it is not
                        ready (unreachable, loading, not the embedding service), null when ok.
  GET  /ping            {"message": "pong"}: the gateway itself runs (liveness)
  POST /embed           forwarded to MLX_HOST_URL/embed (the seed's shape)
  POST /v1/embeddings   forwarded to MLX_HOST_URL/v1/embeddings (OpenAI's shape)
The host's answers (errors included: 400, 413, 415, 429 ...) pass through unchanged, status,
body and Retry-After; the request goes on as the client sent it (Content-Type and
Content-Encoding included, none added), so the host applies its own rules. An upstream that
cannot be reached is a 502; every error of the gateway's own is OpenAI's shape
{"error": {"message", "type", "param", "code"}}.
Probes never wait behind forwarding: at most GATEWAY_MAX_FORWARDS requests are forwarded at
once (beyond: 429 at once, as the host does), and waitress keeps PROBE_THREADS more threads.
MLX_API_KEY, when set, goes to the host service as `Authorization: Bearer <key>`; without it a
client's own Authorization header is passed on.
"""
from __future__ import annotations

import http.client
import json
import os
import threading
import urllib.parse

from flask import Flask, Response, request

from httpserve import Limits, install_json_errors, json_error, log_requests, serve
from telemetry import Telemetry

NAME = "model-gateway"
UPSTREAM = os.environ.get("MLX_HOST_URL", "http://host.docker.internal:8081").rstrip("/")
PORT = int(os.environ.get("GATEWAY_PORT", "8083"))
TIMEOUT = float(os.environ.get("GATEWAY_UPSTREAM_TIMEOUT", "60"))
HEALTH_TIMEOUT = float(os.environ.get("GATEWAY_HEALTH_TIMEOUT", "2"))
# Forwarded requests in flight (the host admits 64 by default); probes get threads beyond.
_forwards_raw = os.environ.get("GATEWAY_MAX_FORWARDS", "").strip() or "64"
if not _forwards_raw.isdigit() or int(_forwards_raw) < 1:
    raise SystemExit(f"GATEWAY_MAX_FORWARDS={_forwards_raw!r} is not a positive whole number.")
MAX_FORWARDS = int(_forwards_raw)
PROBE_THREADS = 8
LIMITS = Limits.from_env("GATEWAY", os.environ, max_body=16 * 1024 * 1024,
                         threads=MAX_FORWARDS + PROBE_THREADS)
API_KEY = os.environ.get("MLX_API_KEY", "").strip()
FORWARDED = ("/embed", "/v1/embeddings")
# Request headers the host needs as the client sent them (the host's rules depend on them).
PASSED_ON = ("Content-Type", "Content-Encoding", "Accept", "traceparent", "tracestate")
# Upstream headers a client needs besides the body: backpressure and auth challenges.
PASSED_BACK = ("Retry-After", "WWW-Authenticate")

_TARGET = urllib.parse.urlsplit(UPSTREAM)
_SLOTS = threading.BoundedSemaphore(MAX_FORWARDS)

app = Flask(NAME)
install_json_errors(app, LIMITS.max_body)
log_requests(app, NAME)
TELEMETRY = Telemetry(app, NAME)  # /metrics; spans and trace headers where OTEL_* asks


def auth_headers(client_authorization: str | None) -> dict[str, str]:
    if API_KEY:
        return {"Authorization": f"Bearer {API_KEY}"}
    return {"Authorization": client_authorization} if client_authorization else {}


def _connection(timeout: float) -> http.client.HTTPConnection:
    """Straight to the host service: no proxy the engine injects into containers."""
    cls = http.client.HTTPSConnection if _TARGET.scheme == "https" else http.client.HTTPConnection
    return cls(_TARGET.hostname, _TARGET.port, timeout=timeout)


def _upstream(method: str, path: str, body: bytes | None, headers: dict[str, str],
              timeout: float) -> tuple[int, dict[str, str], bytes]:
    conn = _connection(timeout)
    try:
        try:
            conn.request(method, _TARGET.path.rstrip("/") + path, body=body, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it may have answered before reading all of the body (a 413): read that
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


_upstream = TELEMETRY.traced_upstream(_upstream)  # timed, counted, traced (telemetry.py)


def upstream_health() -> dict:
    """What the target answers on /health, and why it is not ready when it is not."""
    info = {"url": UPSTREAM, "reachable": False, "status": None, "model": None,
            "dimensions": None, "reason": None}
    try:
        code, _, raw = _upstream("GET", "/health", None, auth_headers(None), HEALTH_TIMEOUT)
    except (OSError, http.client.HTTPException) as exc:
        info["reason"] = f"no answer from {UPSTREAM}/health: {exc}"
        return info
    info["reachable"] = True
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict) or "status" not in body or "dimensions" not in body:
        info["reason"] = (f"{UPSTREAM} answers /health with HTTP {code} but not as the embedding "
                          "service (no status and dimensions in its JSON): another program?")
        return info
    info.update(status=body.get("status"), model=body.get("model"),
                dimensions=body.get("dimensions"))
    if code != 200 or body.get("status") != "ok":
        why = body.get("error") or body.get("status")
        info["reason"] = f"the embedding service at {UPSTREAM} is not ready: {why} (HTTP {code})"
    return info


@app.get("/health")
def health():
    upstream = upstream_health()
    ok = upstream["reason"] is None
    body = {"status": "ok" if ok else "degraded", "service": NAME, "upstream": upstream}
    return Response(json.dumps(body), status=200 if ok else 503, mimetype="application/json")


@app.get("/ping")
def ping():
    return {"message": "pong"}


def _passed_on(status: int, body: bytes, headers: dict[str, str]) -> Response:
    response = Response(body, status=status)
    response.headers["Content-Type"] = headers.get("content-type", "application/json")
    for name in PASSED_BACK:
        if headers.get(name.lower()):
            response.headers[name] = headers[name.lower()]
    return response


def forward(path: str) -> Response:
    if not _SLOTS.acquire(blocking=False):
        return json_error(429, f"{MAX_FORWARDS} requests are being forwarded "
                               "(GATEWAY_MAX_FORWARDS); retry shortly", "rate_limit_exceeded",
                          headers={"Retry-After": "1"})
    try:
        body = request.get_data(cache=False)  # waitress has already de-chunked and bounded it
        headers = {name: request.headers[name] for name in PASSED_ON if name in request.headers}
        headers.update(auth_headers(request.headers.get("Authorization")))
        try:
            status, upstream_headers, answer = _upstream("POST", path, body, headers, TIMEOUT)
        except (OSError, http.client.HTTPException) as exc:
            return json_error(502, f"the embedding service at {UPSTREAM} did not answer: {exc}",
                              "upstream_unavailable")
        return _passed_on(status, answer, upstream_headers)
    finally:
        _SLOTS.release()


@app.post("/embed")
def embed():
    return forward("/embed")


@app.post("/v1/embeddings")
def embeddings():
    return forward("/v1/embeddings")


if __name__ == "__main__":
    serve(app, NAME, PORT, LIMITS, detail=f", forwarding {', '.join(FORWARDED)} to {UPSTREAM}"
          + (f" (at most {MAX_FORWARDS} at once)") + (" with MLX_API_KEY" if API_KEY else ""))
