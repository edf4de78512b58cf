"""HTTP: the Flask routes, request limits, JSON errors and the per-request log line."""
from __future__ import annotations

import base64
import hmac
import json
import logging
import platform
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from mlx_service.admission import Admission
from mlx_service.blas import current_choice
from mlx_service.config import Config
from mlx_service.metrics import Metrics
from mlx_service.model import ModelSpec, truncate_normalize
from mlx_service.validation import (RequestError, check_content_type, decode_json,
                                    parse_embed_request)
from mlx_service.worker import Abandoned, QueueFull, ShuttingDown, Worker

try:  # vectors to JSON ~10x faster than json + tolist(), and less time holding the GIL
    import orjson
except ImportError:  # an older service venv: the standard library still answers correctly
    orjson = None

log = logging.getLogger("mlx_service.http")
VERSION = "0.1.0"


@dataclass
class ServiceState:
    config: Config
    spec: ModelSpec
    dim: int
    worker: Worker
    metrics: Metrics
    blas: str
    admission: Admission | None = None
    started: float = field(default_factory=time.time)
    draining: bool = False

    def __post_init__(self):
        if self.admission is None:
            self.admission = Admission(self.config.max_concurrent_requests,
                                       self.config.max_inflight_tokens)

    def status(self) -> tuple[str, str | None]:
        """ok | loading | error (with why) | stopping."""
        if self.draining:
            return "stopping", "the service is shutting down"
        if self.worker.state == "error" or (self.worker.state == "ready"
                                            and not self.worker.is_alive()):
            return "error", self.worker.error or "the inference worker is not running"
        if self.worker.state == "ready":
            return "ok", None
        return "loading", None


def versions() -> dict[str, str]:
    out = {"service": VERSION, "python": platform.python_version()}
    for dist in ("mlx", "mlx-embeddings", "transformers", "tokenizers", "numpy", "flask",
                 "waitress"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _error(exc: RequestError) -> Response:
    # OpenAI's error shape; every client error carries what was wrong and where.
    resp = jsonify({"error": {"message": exc.message, "type": exc.type, "param": exc.param,
                              "code": exc.code}})
    resp.status_code = exc.status
    if exc.status in (429, 503):
        resp.headers["Retry-After"] = "1"
    if exc.status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="mlx_service"'
    return resp


# How often a waiting request checks whether its client is still there.
WAIT_POLL_S = 0.1


def _bearer_ok(header: str | None, key: str) -> bool:
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


def create_app(state: ServiceState) -> Flask:
    app = Flask("mlx_service")
    app.json.sort_keys = False
    config = state.config

    @app.before_request
    def _start():
        g.t0 = time.monotonic()
        g.note = ""
        g.texts = 0

    @app.after_request
    def _log(resp):
        seconds = time.monotonic() - getattr(g, "t0", time.monotonic())
        endpoint = request.url_rule.rule if request.url_rule else "other"
        state.metrics.observe_request(endpoint, resp.status_code, seconds, getattr(g, "texts", 0))
        log.info("%s %s %s %d %.1fms%s", request.remote_addr, request.method, request.path,
                 resp.status_code, seconds * 1000, getattr(g, "note", ""))
        return resp

    @app.errorhandler(RequestError)
    def _client_error(exc: RequestError):
        g.note = f" error={exc.code}"
        return _error(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return _error(RequestError(exc.code or 400, exc.description or exc.name, code=code))

    @app.errorhandler(Exception)
    def _server_error(exc: Exception):  # a bug, not the client's fault: say so, keep serving
        log.exception("unhandled error")
        return jsonify({"error": {"message": f"internal error: {exc}", "type": "server_error",
                                  "param": None, "code": "internal_error"}}), 500

    def read_body() -> object:
        check_content_type(request.mimetype)
        limit = config.max_request_bytes
        too_big = RequestError(413, f"request body is larger than {limit} bytes "
                                    "(MLX_MAX_REQUEST_BYTES)", code="request_too_large")
        if request.content_length is not None and request.content_length > limit:
            raise too_big
        raw = request.stream.read(limit + 1)  # bounded even without Content-Length
        if len(raw) > limit:
            raise too_big
        return decode_json(raw)

    def check_key() -> None:
        if config.api_key and not _bearer_ok(request.headers.get("Authorization"),
                                             config.api_key):
            raise RequestError(401, "this service needs an API key: send it as "
                                    "'Authorization: Bearer KEY' (MLX_API_KEY)",
                               code="invalid_api_key")

    def embed(openai: bool):
        check_key()
        status, why = state.status()
        if status != "ok":
            code = "model_loading" if status == "loading" else "service_unavailable"
            raise RequestError(503, why or "the model is still loading; retry shortly", code=code)
        # A slot first, before the body is read: a refusal costs nothing.
        ticket = state.admission.enter()
        if ticket is None:
            raise RequestError(429, f"{config.max_concurrent_requests} embedding requests are in "
                                    "flight (MLX_MAX_CONCURRENT_REQUESTS); retry shortly",
                               code="too_many_requests")
        try:
            return run_admitted(ticket, openai)
        finally:
            state.admission.leave(ticket)

    def run_admitted(ticket, openai: bool):
        req = parse_embed_request(read_body(), openai=openai, max_items=config.max_batch_items,
                                  max_dim=state.dim)
        embedder = state.worker.embedder
        # Tokens are reserved on an upper bound first, so that a request that would be refused
        # does not pay for tokenizing; then the reservation shrinks to the real count. A bound
        # above the whole budget is tokenized first: the real count may still fit.
        estimate = embedder.most_tokens(req.texts)
        if estimate <= config.max_inflight_tokens and not state.admission.reserve(ticket, estimate):
            raise_tokens_in_flight()
        rows = embedder.tokenize(req.texts)  # bounded by max_seq_length per text
        tokens = sum(len(r) for r in rows)
        g.texts = len(rows)
        g.note = f" items={len(rows)} tokens={tokens}"
        if tokens > config.max_inflight_tokens:
            raise RequestError(413, f"the request has {tokens} tokens after truncation; at most "
                                    f"{config.max_inflight_tokens} may be in flight "
                                    "(MLX_MAX_INFLIGHT_TOKENS): split it", code="too_many_tokens")
        if ticket.tokens:
            state.admission.settle(ticket, tokens)
        elif not state.admission.reserve(ticket, tokens):
            raise_tokens_in_flight()
        deadline = time.monotonic() + config.request_timeout
        try:
            job = state.worker.submit(rows, deadline=deadline)
        except QueueFull:
            raise RequestError(429, f"the inference queue is full ({config.queue_size} requests, "
                                    "MLX_QUEUE_SIZE); retry shortly", code="queue_full") from None
        except ShuttingDown:
            raise shutting_down() from None
        wait_for(job, deadline)
        if isinstance(job.error, ShuttingDown):
            raise shutting_down()
        if isinstance(job.error, Abandoned):
            raise timed_out()
        if job.error is not None:
            raise RuntimeError(f"inference failed: {job.error}")
        vectors = truncate_normalize(job.result, req.dimensions or state.dim)
        return req, vectors, tokens

    def shutting_down() -> RequestError:
        return RequestError(503, "the service is shutting down", code="shutting_down")

    def timed_out() -> RequestError:
        return RequestError(503, f"no answer from the inference worker within "
                                 f"{config.request_timeout}s", code="timeout")

    def raise_tokens_in_flight():
        raise RequestError(429, f"{config.max_inflight_tokens} tokens are in flight "
                                "(MLX_MAX_INFLIGHT_TOKENS); retry shortly",
                           code="too_many_tokens_in_flight")

    def wait_for(job, deadline: float) -> None:
        """Wait for the worker; a client that hangs up, or a deadline that passes, cancels
        the job, so the worker drops it instead of computing an answer nobody reads."""
        gone = request.environ.get("waitress.client_disconnected")
        while not job.done.wait(WAIT_POLL_S):
            if gone is not None and gone():
                job.cancelled = True
                g.note += " client_gone"
                raise RequestError(499, "the client closed the connection", code="client_closed")
            if time.monotonic() > deadline:
                job.cancelled = True
                raise timed_out()

    @app.get("/ping")
    def ping():
        return jsonify({"message": "pong"})

    @app.get("/health")
    def health():
        status, why = state.status()
        body = {"status": status, "model": state.spec.name, "dimensions": state.dim,
                "max_seq_length": state.spec.max_seq_length,
                "queue_depth": state.worker.queue_depth(),
                "in_flight": state.admission.snapshot(),
                "uptime_s": round(time.time() - state.started, 3)}
        if why:
            body["error"] = why
        if state.worker.load_seconds is not None:
            body["load_seconds"] = round(state.worker.load_seconds, 3)
        return jsonify(body), 200 if status == "ok" else 503

    @app.get("/info")
    def info():
        status, _ = state.status()
        return jsonify({
            "status": status,
            "model": state.spec.name,
            "model_path": str(state.spec.path),
            "dimensions": state.dim,
            "native_dimensions": state.spec.native_dim,
            "max_seq_length": state.spec.max_seq_length,
            "pooling": list(state.spec.pooling),
            "normalized": True,
            "backend": "mlx",
            "device": state.worker.device or "unknown",
            "blas": state.blas,
            "blas_choice": current_choice(),  # which library, and the measurement behind it
            # cpu-fast: mlx_service/cpu_fast.py (exp/erf in numpy, batches split over lanes)
            "forward": getattr(state.worker.embedder, "forward", None),
            "cpu_lanes": getattr(state.worker.embedder, "lanes", None),
            "blas_threads": getattr(state.worker.embedder, "blas_threads", None),
            "platform": f"{sys.platform}-{platform.machine()}",
            "listen": [f"{h}:{config.port}" for h in config.hosts],
            "limits": config.limits(),
            "auth": "bearer" if config.api_key else "none",
            "in_flight": state.admission.snapshot(),
            "dropped_requests": state.worker.dropped,
            "worker": {"queue_depth": state.worker.queue_depth(),
                       "in_pass": state.worker.in_pass,
                       "pass_seconds": (round(time.monotonic() - state.worker.pass_started, 3)
                                        if state.worker.in_pass and state.worker.pass_started
                                        else None)},
            "load_seconds": state.worker.load_seconds,
            "versions": versions(),
        })

    @app.get("/metrics")
    def metrics():
        status, _ = state.status()
        body = state.metrics.render(state.worker.queue_depth(), status == "ok",
                                    {"model": state.spec.name, "dimensions": state.dim,
                                     "blas": state.blas, "device": state.worker.device or ""})
        return Response(body, mimetype="text/plain; version=0.0.4")

    @app.post("/embed")
    def embed_seed():
        req, vectors, tokens = embed(openai=False)
        return vectors_json({"embeddings": vectors, "model": state.spec.name,
                             "dimensions": int(vectors.shape[1]),
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @app.post("/v1/embeddings")
    def embed_openai():
        req, vectors, tokens = embed(openai=True)
        if req.encoding_format == "base64":
            items = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
        else:
            items = list(vectors)
        return vectors_json({"object": "list",
                        "data": [{"object": "embedding", "index": i, "embedding": e}
                                 for i, e in enumerate(items)],
                        "model": state.spec.name,
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    return app


def vectors_json(body: dict) -> Response:
    """A response holding float32 numpy rows: orjson writes each float32 in its shortest
    round-trip form (the same vector, fewer bytes than float64's repr)."""
    if orjson is not None:
        data = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    else:
        data = json.dumps(body, default=lambda v: v.tolist()).encode()
    return Response(data, mimetype="application/json")


class InFlight:
    """WSGI wrapper counting requests being handled, so shutdown can wait for them."""

    def __init__(self, app):
        self.app = app
        self.count = 0
        self._cond = threading.Condition()

    def __call__(self, environ, start_response):
        with self._cond:
            self.count += 1
        try:
            # Our responses are small and buffered: materialize so "done" means done.
            body = self.app(environ, start_response)
            try:
                return [b"".join(body)]
            finally:
                if hasattr(body, "close"):
                    body.close()
        finally:
            with self._cond:
                self.count -= 1
                self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count == 0, timeout)
