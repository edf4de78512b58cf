"""HTTP: the Flask routes, request limits, JSON errors and the per-request log line.

The routes only parse and answer: everything else goes through the inference façade
(mlx_service/engine/inference.py: admit, tokenize, embed, status)."""
from __future__ import annotations

import base64
import hmac
import json
import logging
import platform
import sys
import threading
import time
from importlib import metadata

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from mlx_service.engine.inference import Inference, ServiceStatus
from mlx_service.engine.scoring import Scoring
from mlx_service.errors import RequestError, error_body
from mlx_service.http.rerank_api import register_rerank_routes
from mlx_service.http.served_models import model_list, reranker_info
from mlx_service.http.validation import (check_content_encoding, check_content_type, decode_json,
                                    parse_embed_request)
from mlx_service.kernels.blas import current_choice
from mlx_service.telemetry.metrics import Metrics

try:  # vectors to JSON ~10x faster than json + tolist(), and less time holding the GIL
    import orjson
except ImportError:  # an older service venv: the standard library still answers correctly
    orjson = None

log = logging.getLogger("mlx_service.http")
VERSION = "0.1.0"


def versions() -> dict[str, str]:
    out = {"service": VERSION, "python": platform.python_version()}
    for dist in ("mlx", "mlx-embeddings", "transformers", "tokenizers", "numpy", "flask",
                 "waitress"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


# Error codes of a 503 that says the service is not ready (loading, stopping): counted as
# such in /metrics, not as server errors.
NOT_READY_CODES = ("model_loading", "shutting_down")


def _error(exc: RequestError, allow: list[str] | None = None) -> Response:
    # OpenAI's error shape; every client error carries what was wrong and where.
    resp = jsonify(exc.body())
    resp.status_code = exc.status
    if allow:  # a 405 says which methods the path takes (RFC 9110)
        resp.headers["Allow"] = ", ".join(allow)
    if exc.status in (429, 503):
        resp.headers["Retry-After"] = str(max(1, exc.retry_after))
    if exc.status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="mlx_service"'
    return resp


def _bearer_ok(header: str | None, key: str) -> bool:
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


def create_app(inference: Inference, metrics: Metrics) -> Flask:
    app = Flask("mlx_service")
    app.json.sort_keys = False
    config = inference.config
    spec = inference.spec
    scoring = Scoring(inference)

    @app.before_request
    def _start():
        g.t0 = time.monotonic()
        g.note = ""
        g.texts = 0
        g.not_ready = False  # a 503 because the service is loading or stopping
        g.refusal = None     # the error code of a request refused over a limit
        if request.method == "OPTIONS" and request.routing_exception is None:
            return options_answer()
        return None

    def options_answer() -> Response:
        """OPTIONS in JSON too (Flask's default is an empty text/html answer)."""
        methods = sorted(app.url_map.bind_to_environ(request.environ).allowed_methods(
            request.path))
        resp = jsonify({"path": request.path, "methods": methods})
        resp.headers["Allow"] = ", ".join(methods)
        return resp

    @app.after_request
    def _log(resp):
        seconds = time.monotonic() - getattr(g, "t0", time.monotonic())
        endpoint = request.url_rule.rule if request.url_rule else "other"
        metrics.observe_request(endpoint, resp.status_code, seconds, getattr(g, "texts", 0),
                                not_ready=getattr(g, "not_ready", False),
                                refusal=getattr(g, "refusal", None))
        log.info("%s %s %s %d %.1fms%s", request.remote_addr, request.method, request.path,
                 resp.status_code, seconds * 1000, getattr(g, "note", ""))
        return resp

    @app.errorhandler(RequestError)
    def _client_error(exc: RequestError):
        g.note = f" error={exc.code}"
        g.not_ready = exc.status == 503 and exc.code in NOT_READY_CODES
        g.refusal = exc.code
        return _error(exc)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        allow = sorted(getattr(exc, "valid_methods", None) or []) if exc.code == 405 else None
        return _error(RequestError(exc.code or 400, exc.description or exc.name, code=code),
                      allow)

    def in_flight() -> dict:
        """Admission's counts, with every refusal over a limit (429, 413) in
        refused_requests and by reason: not only the concurrency limit's."""
        refused = metrics.refusals()
        return {**inference.in_flight(), "refused_requests": sum(refused.values()),
                "refused": refused}

    @app.errorhandler(Exception)
    def _server_error(exc: Exception):  # a bug, not the client's fault: say so, keep serving
        log.exception("unhandled error")
        return jsonify(error_body(f"internal error: {exc}", "server_error",
                                  code="internal_error")), 500

    def read_body() -> object:
        check_content_encoding(request.headers.get("Content-Encoding"))
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
        ticket = inference.admit()  # a slot first, before the body is read
        try:
            req = parse_embed_request(read_body(), openai=openai,
                                      max_items=config.max_batch_items, max_dim=inference.dim)
            batch = inference.tokenize(ticket, req.texts, req.prompt_name)
            g.texts = len(batch.rows)
            g.note = f" items={len(batch.rows)} tokens={batch.tokens}"
            vectors = inference.embed(ticket, batch, req.dimensions,
                                      client_gone=request.environ.get(
                                          "waitress.client_disconnected"))
            return req, vectors, batch.tokens
        finally:
            inference.release(ticket)

    @app.get("/ping")
    def ping():
        return jsonify({"message": "pong"})

    @app.get("/health")
    def health():
        status, why = inference.status()
        g.not_ready = status in (ServiceStatus.LOADING, ServiceStatus.STOPPING)
        body = {"status": status, "model": spec.name, "dimensions": inference.dim,
                "max_seq_length": spec.max_seq_length,
                "rerank_model": (inference.rerank_spec.name if inference.rerank_spec
                                 else None),
                "queue_depth": inference.queue_depth(),
                "in_flight": in_flight(),
                "uptime_s": round(time.time() - inference.started, 3)}
        if why:
            body["error"] = why
        if inference.load_seconds is not None:
            body["load_seconds"] = round(inference.load_seconds, 3)
        return jsonify(body), 200 if status == ServiceStatus.OK else 503

    @app.get("/info")
    def info():
        status, _ = inference.status()
        return jsonify({
            "status": status,
            "model": spec.name,
            "model_path": str(spec.path),
            "dimensions": inference.dim,
            "native_dimensions": spec.native_dim,
            "max_seq_length": spec.max_seq_length,
            "pooling": list(spec.pooling),
            # architecture, pooling and its source, prompts, weights, forward path
            "model_info": inference.model_description(),
            "normalized": True,
            "backend": "mlx",
            "device": inference.device or "unknown",
            "blas": inference.blas,
            "blas_choice": current_choice(),  # which library, and the measurement behind it
            # cpu-fast: mlx_service/models/fast_bert.py (exp/erf in numpy, batches split over
            # lanes): forward, cpu_lanes, blas_threads
            **inference.forward(),
            "platform": f"{sys.platform}-{platform.machine()}",
            "listen": [f"{h}:{config.port}" for h in config.hosts],
            "limits": config.limits(),
            "auth": "bearer" if config.api_key else "none",
            # the reranker (kind, activation, max_length, labels), or how ranking is done
            # without one: {"ranked_by": "embedding-cosine", ...}
            "reranker": reranker_info(inference, scoring),
            "in_flight": in_flight(),
            "dropped_requests": inference.dropped,
            "worker": {"queue_depth": inference.queue_depth(),
                       "in_pass": inference.in_pass,
                       "pass_seconds": inference.pass_seconds()},
            "load_seconds": inference.load_seconds,
            "versions": versions(),
        })

    @app.get("/metrics")
    def metrics_text():
        status, _ = inference.status()
        body = metrics.render(inference.queue_depth(), status == ServiceStatus.OK,
                              {"model": spec.name, "dimensions": inference.dim,
                               "blas": inference.blas, "device": inference.device or ""})
        return Response(body, mimetype="text/plain; version=0.0.4")

    @app.get("/v1/models")
    def models():
        """OpenAI's model list: the embedding model and the reranker, when one is served."""
        return jsonify({"object": "list", "data": model_list(inference, scoring)})

    @app.get("/v1/models/<path:model_id>")
    def one_model(model_id: str):
        for item in model_list(inference, scoring):
            if item["id"] == model_id:
                return jsonify(item)
        raise RequestError(404, f"The model '{model_id}' does not exist; this service serves "
                                + ", ".join(m["id"] for m in model_list(inference, scoring)),
                           param="model", code="model_not_found")

    register_rerank_routes(app, inference, scoring, read_body, check_key)

    @app.post("/embed")
    def embed_seed():
        req, vectors, tokens = embed(openai=False)
        return vectors_json({"embeddings": vectors, "model": spec.name,
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
                        "model": spec.name,
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
