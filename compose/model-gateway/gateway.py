"""The model gateway: forwards embedding requests from containers to the host service.

Flask on waitress (httpserve.py: bounded bodies, timeouts, JSON errors). Routes:
  GET  /health          200 {"status": "ok", "service": "model-gateway", "upstream": {...}}
                        when the host service it targets answers as the embedding service;
                        else 503 {"status": "degraded", ...}. "upstream": {"url", "reachable",
                        "status", "model", "dimensions", "reason"}: reason says why it is not
                        ready (unreachable, loading, not the embedding service), null when ok.
  GET  /ping            {"message": "pong"}: the gateway itself runs (liveness)
  POST /embed, /v1/embeddings, /v1/rerank, /v2/rerank, /predict, GET /v1/models
                        forwarded to the same path of MLX_HOST_URL (the host's own shapes:
                        the seed's, OpenAI's, Cohere's and Jina's, TEI's)
  POST /embeddings      Cortex-OS's {texts, model?} -> {vectors, dimensions, modelUsed}, by
                        the host's /embed (cortex_api.py)
  POST /rerank          one path, two shapes, told apart by the body: TEI's {query, texts, ...}
                        (the host's own) is forwarded unchanged; Cortex-OS's {query, docs,
                        topK?, model?} -> {rankedItems: [{index, score, content}], modelUsed},
                        best first and cut to topK, by the host's TEI /rerank
  POST /chat            Cortex-OS's {msgs, model?, tools?}: checked, then 503 "No chat models
                        available" (the host serves none)
A Cortex-OS body the gateway refuses (a missing or wrong-typed field, topK < 1) is a 400
naming the field, and nothing reaches the host.
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

import cortex_api
from cortex_api import BadRequest, UpstreamShapeError
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
FORWARDED = ("/embed", "/v1/embeddings", "/v1/rerank", "/v2/rerank", "/predict")
FORWARDED_GET = ("/v1/models",)
# Request headers the host needs as the client sent them (the host's rules depend on them).
PASSED_ON = ("Content-Type", "Content-Encoding", "Accept", "traceparent", "tracestate")
# Upstream headers a client needs besides the body: backpressure, auth challenges, and how
# the host ranked (its reranker, or the embedding model's cosine).
PASSED_BACK = ("Retry-After", "WWW-Authenticate", "X-Ranked-By")

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


def _busy() -> Response:
    return json_error(429, f"{MAX_FORWARDS} requests are being forwarded "
                           "(GATEWAY_MAX_FORWARDS); retry shortly", "rate_limit_exceeded",
                      headers={"Retry-After": "1"})


def _unanswered(exc: Exception) -> Response:
    return json_error(502, f"the embedding service at {UPSTREAM} did not answer: {exc}",
                      "upstream_unavailable")


def forward(path: str, method: str = "POST") -> Response:
    """The request as the client sent it, to the same path of the host; its answer back."""
    if not _SLOTS.acquire(blocking=False):
        return _busy()
    try:
        # waitress has already de-chunked and bounded it; cached, as /rerank read it first
        body = request.get_data() if method == "POST" else None
        headers = {name: request.headers[name] for name in PASSED_ON if name in request.headers}
        headers.update(auth_headers(request.headers.get("Authorization")))
        try:
            status, upstream_headers, answer = _upstream(method, path, body, headers, TIMEOUT)
        except (OSError, http.client.HTTPException) as exc:
            return _unanswered(exc)
        return _passed_on(status, answer, upstream_headers)
    finally:
        _SLOTS.release()


def _post_json(path: str, payload: dict) -> tuple[int, dict[str, str], bytes]:
    """A body of the gateway's making to the host, with the client's trace and auth headers."""
    headers = {"Content-Type": "application/json"}
    headers.update(auth_headers(request.headers.get("Authorization")))
    return _upstream("POST", path, json.dumps(payload).encode(), headers, TIMEOUT)


def translated(path: str, payload: dict, answer) -> Response:
    """`payload` to the host's `path`; a 200 becomes `answer(host_json, host_headers)`, any
    other answer of the host (a 4xx, 429, 503) goes back as it came, status, body and
    Retry-After."""
    if not _SLOTS.acquire(blocking=False):
        return _busy()
    try:
        try:
            status, upstream_headers, raw = _post_json(path, payload)
        except (OSError, http.client.HTTPException) as exc:
            return _unanswered(exc)
        if status != 200:
            return _passed_on(status, raw, upstream_headers)
        try:
            translated_body = json.dumps(answer(json.loads(raw), upstream_headers)).encode()
            return _passed_on(200, translated_body, {**upstream_headers,
                                                     "content-type": "application/json"})
        except (ValueError, UpstreamShapeError) as exc:
            return json_error(502, f"the host service at {UPSTREAM} answered {path} with an "
                                   f"unexpected body: {exc}", "upstream_bad_answer")
    finally:
        _SLOTS.release()


def _client_body() -> dict:
    """The request's JSON object (cortex_api.BadRequest otherwise); cached for a forward."""
    return cortex_api.parse_body(request.get_data())


@app.errorhandler(BadRequest)
def _bad_request(exc: BadRequest) -> Response:
    return json_error(400, exc.message, exc.code, exc.param)


for _path in FORWARDED:
    app.add_url_rule(_path, f"forward {_path}", lambda _path=_path: forward(_path),
                     methods=["POST"])
for _path in FORWARDED_GET:
    app.add_url_rule(_path, f"forward {_path}", lambda _path=_path: forward(_path, "GET"),
                     methods=["GET"])


@app.post("/embeddings")
def cortex_embeddings():
    return translated("/embed", cortex_api.embeddings_request(_client_body()),
                      lambda host, _headers: cortex_api.embeddings_answer(host))


def _ranking_model(ranked_by: str | None) -> str | None:
    """The model that ranked: the TEI answer does not name it, the host's /health does (a
    millisecond; /info takes ten). None if /health does not answer."""
    try:
        _, _, raw = _upstream("GET", "/health", None, auth_headers(None), HEALTH_TIMEOUT)
        return cortex_api.ranking_model(json.loads(raw), ranked_by)
    except (OSError, http.client.HTTPException, ValueError):
        return None


@app.post("/rerank")
def rerank():
    if request.content_encoding:
        return forward("/rerank")  # a compressed body is not ours to read: the host's rules
    body = _client_body()
    if cortex_api.is_tei_rerank(body):
        return forward("/rerank")
    payload, docs, top_k = cortex_api.rerank_request(body)
    return translated("/rerank", payload, lambda host, headers: cortex_api.rerank_answer(
        host, docs, top_k, _ranking_model(headers.get("x-ranked-by"))))


@app.post("/chat")
def chat():
    cortex_api.check_chat_request(_client_body())
    return json_error(503, cortex_api.NO_CHAT_MODEL, "model_not_available")


if __name__ == "__main__":
    routes = ", ".join(FORWARDED + FORWARDED_GET)
    serve(app, NAME, PORT, LIMITS, detail=f", forwarding {routes} to {UPSTREAM}"
          + (f" (at most {MAX_FORWARDS} at once)") + (" with MLX_API_KEY" if API_KEY else ""))
