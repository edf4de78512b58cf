"""HTTP: the Flask routes, request limits, JSON errors and the per-request log line."""
from __future__ import annotations

import base64
import logging
import platform
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from mlx_service.config import Config
from mlx_service.metrics import Metrics
from mlx_service.model import ModelSpec, truncate_normalize
from mlx_service.validation import (RequestError, check_content_type, decode_json,
                                    parse_embed_request)
from mlx_service.worker import QueueFull, Worker

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
    started: float = field(default_factory=time.time)
    draining: bool = False

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
    return resp


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

    def embed(openai: bool):
        status, why = state.status()
        if status != "ok":
            code = "model_loading" if status == "loading" else "service_unavailable"
            raise RequestError(503, why or "the model is still loading; retry shortly", code=code)
        req = parse_embed_request(read_body(), openai=openai, max_items=config.max_batch_items,
                                  max_dim=state.dim)
        embedder = state.worker.embedder
        rows = embedder.tokenize(req.texts)
        tokens = sum(len(r) for r in rows)
        g.texts = len(rows)
        g.note = f" items={len(rows)} tokens={tokens}"
        try:
            job = state.worker.submit(rows)
        except QueueFull:
            raise RequestError(429, f"the inference queue is full ({config.queue_size} requests, "
                                    "MLX_QUEUE_SIZE); retry shortly", code="queue_full") from None
        if not job.done.wait(config.request_timeout):
            job.cancelled = True
            raise RequestError(503, f"no answer from the inference worker within "
                                    f"{config.request_timeout}s", code="timeout")
        if job.error is not None:
            raise RuntimeError(f"inference failed: {job.error}")
        vectors = truncate_normalize(job.result, req.dimensions or state.dim)
        return req, vectors, tokens

    @app.get("/ping")
    def ping():
        return jsonify({"message": "pong"})

    @app.get("/health")
    def health():
        status, why = state.status()
        body = {"status": status, "model": state.spec.name, "dimensions": state.dim,
                "max_seq_length": state.spec.max_seq_length,
                "queue_depth": state.worker.queue_depth(),
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
            # cpu-fast: mlx_service/cpu_fast.py (exp/erf in numpy, batches split over lanes)
            "forward": getattr(state.worker.embedder, "forward", None),
            "cpu_lanes": getattr(state.worker.embedder, "lanes", None),
            "blas_threads": getattr(state.worker.embedder, "blas_threads", None),
            "platform": f"{sys.platform}-{platform.machine()}",
            "listen": [f"{h}:{config.port}" for h in config.hosts],
            "limits": config.limits(),
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
        return jsonify({"embeddings": vectors.tolist(), "model": state.spec.name,
                        "dimensions": int(vectors.shape[1]),
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    @app.post("/v1/embeddings")
    def embed_openai():
        req, vectors, tokens = embed(openai=True)
        if req.encoding_format == "base64":
            items = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
        else:
            items = vectors.tolist()
        return jsonify({"object": "list",
                        "data": [{"object": "embedding", "index": i, "embedding": e}
                                 for i, e in enumerate(items)],
                        "model": state.spec.name,
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    return app


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
