"""The model gateway: forwards embedding requests from containers to the host service.

Flask on waitress (httpserve.py: bounded bodies, timeouts, JSON errors). Routes:
  GET  /health          200 {"status": "ok"|"degraded", "service": "model-gateway",
                             "upstream": {"url", "reachable", "status", "model", "dimensions"}}
                        "degraded" means the gateway runs but the host service does not answer.
  GET  /ping            {"message": "pong"}
  POST /embed           forwarded to MLX_HOST_URL/embed (the seed's shape)
  POST /v1/embeddings   forwarded to MLX_HOST_URL/v1/embeddings (OpenAI's shape)
Upstream answers (errors included) pass through unchanged; an upstream that cannot be reached
is a 502, and every error of the gateway's own is OpenAI's shape
{"error": {"message", "type", "param", "code"}}.
MLX_API_KEY, when set, goes to the host service as `Authorization: Bearer <key>`; without it a
client's own Authorization header is passed on.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from flask import Flask, Response, request

from httpserve import Limits, install_json_errors, json_error, log_requests, serve

NAME = "model-gateway"
UPSTREAM = os.environ.get("MLX_HOST_URL", "http://host.docker.internal:8081").rstrip("/")
PORT = int(os.environ.get("GATEWAY_PORT", "8083"))
TIMEOUT = float(os.environ.get("GATEWAY_UPSTREAM_TIMEOUT", "60"))
HEALTH_TIMEOUT = float(os.environ.get("GATEWAY_HEALTH_TIMEOUT", "2"))
LIMITS = Limits.from_env("GATEWAY", os.environ, max_body=16 * 1024 * 1024)
API_KEY = os.environ.get("MLX_API_KEY", "").strip()
FORWARDED = ("/embed", "/v1/embeddings")
# Upstream headers a client needs besides the body: backpressure and auth challenges.
PASSED_BACK = ("Retry-After", "WWW-Authenticate")

# The host service is reached directly: a proxy the engine injects into containers
# (HTTP_PROXY from the Docker client's config) must not carry container -> host traffic.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

app = Flask(NAME)
install_json_errors(app, LIMITS.max_body)
log_requests(app, NAME)


def auth_headers(client_authorization: str | None) -> dict[str, str]:
    if API_KEY:
        return {"Authorization": f"Bearer {API_KEY}"}
    return {"Authorization": client_authorization} if client_authorization else {}


def upstream_health() -> dict:
    info = {"url": UPSTREAM, "reachable": False, "status": None}
    probe = urllib.request.Request(UPSTREAM + "/health", headers=auth_headers(None))
    try:
        with _DIRECT.open(probe, timeout=HEALTH_TIMEOUT) as resp:
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


@app.get("/health")
def health():
    upstream = upstream_health()
    ok = upstream["reachable"] and upstream["status"] == "ok"
    return {"status": "ok" if ok else "degraded", "service": NAME, "upstream": upstream}


@app.get("/ping")
def ping():
    return {"message": "pong"}


def _passed_on(status: int, body: bytes, headers) -> Response:
    response = Response(body, status=status,
                        content_type=headers.get("Content-Type", "application/json"))
    for name in PASSED_BACK:
        if headers.get(name):
            response.headers[name] = headers[name]
    return response


def forward(path: str) -> Response:
    body = request.get_data(cache=False)  # waitress has already de-chunked and bounded it
    outgoing = urllib.request.Request(
        UPSTREAM + path, data=body, method="POST",
        headers={"Content-Type": request.headers.get("Content-Type", "application/json"),
                 "Accept": "application/json",
                 **auth_headers(request.headers.get("Authorization"))})
    try:
        with _DIRECT.open(outgoing, timeout=TIMEOUT) as resp:
            return _passed_on(resp.status, resp.read(), resp.headers)
    except urllib.error.HTTPError as exc:
        return _passed_on(exc.code, exc.read(), exc.headers)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return json_error(502, f"the embedding service at {UPSTREAM} did not answer: {reason}",
                          "upstream_unavailable")


@app.post("/embed")
def embed():
    return forward("/embed")


@app.post("/v1/embeddings")
def embeddings():
    return forward("/v1/embeddings")


if __name__ == "__main__":
    serve(app, NAME, PORT, LIMITS, detail=f", forwarding {', '.join(FORWARDED)} to {UPSTREAM}"
          + (" with MLX_API_KEY" if API_KEY else ""))
