"""Serving the stack's small Python services (model gateway, MCP registry) with Flask on waitress.

What the hand-rolled http.server versions lacked, in one place for both:
- bounded bodies: waitress refuses a body over the limit (Content-Length or chunked) before it
  reads it, and Flask's MAX_CONTENT_LENGTH backs that up;
- timeouts: an idle or half-sent connection is closed after `channel_timeout` seconds, and a
  connection limit well above what a development stack sees, so slow clients cannot lock others
  out; requests are served by a fixed pool of threads, not a thread per connection;
- one error shape, OpenAI's `{"error": {"message", "type", "param", "code"}}`, for the app's
  errors and for the ones waitress answers itself (bad Content-Length, bad chunking, too large),
  OPTIONS included, and a TLS handshake on this plain-HTTP port answered at once;
- the host service's own connection rules (connections.py: its mlx_service/http/connections.py,
  copied in by the Dockerfile): at the connection limit a new connection closes the
  longest-idle one, so a probe never waits in the backlog; a refused request's unread body is
  read and dropped after the answer (a lingering close), so the client reads the answer
  instead of a connection reset.
Works with Debian bookworm's Flask 2.2 / waitress 2.1 and PyPI's Flask 3.1 / waitress 3.0.
"""
from __future__ import annotations

import json
import logging
import signal
import sys
import time
from dataclasses import dataclass
from typing import Mapping

from flask import Flask, Response, g, request
from waitress import create_server
from werkzeug.exceptions import HTTPException

# The host service's mlx_service/http/connections.py, which the image copies in beside this file.
from connections import handle_connections

# The `code` of each status the servers answer themselves: a string, as the host service
# sends it (mlx_service/http/validation.py: snake case of the reason), never the bare number.
ERROR_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
               413: "request_too_large", 429: "rate_limit_exceeded",
               431: "request_header_fields_too_large", 500: "internal_error",
               501: "not_implemented", 502: "upstream_unavailable",
               503: "service_unavailable"}


def error_document(status: int, message: str, code: str | None = None,
                   param: str | None = None) -> dict:
    """OpenAI's error shape, as the host service writes it: `type` is invalid_request_error
    for the client's mistakes (4xx, and 501: a Transfer-Encoding the client chose) and
    server_error for ours (5xx); `code` a string."""
    kind = "server_error" if status >= 500 and status != 501 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param,
                      "code": code or ERROR_CODES.get(status, f"http_{status}")}}


def json_error(status: int, message: str, code: str | None = None, param: str | None = None,
               headers: Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(error_document(status, message, code, param)), status=status,
                    mimetype="application/json", headers=dict(headers or {}))


def _http_error(exc: HTTPException) -> Response:
    """Flask's own errors (404, 405, 413, ...) in the JSON shape, with a sentence of our own."""
    code = exc.code or 500
    if code == 404:
        message = f"no route {request.method} {request.path}"
    elif code == 405:
        allowed = sorted(set(exc.valid_methods or ()) - {"HEAD", "OPTIONS"})
        message = f"{request.method} is not allowed on {request.path} (use {', '.join(allowed)})"
    elif code == 413:
        message = f"the request body exceeds {request.max_content_length} bytes"
    else:
        message = exc.description or exc.name
    headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
    return json_error(code, message, headers=headers)


def _unexpected(exc: Exception) -> Response:
    logging.getLogger("httpserve").exception("unexpected error on %s %s", request.method,
                                             request.path)
    return json_error(500, f"internal error: {type(exc).__name__}")


def _options() -> Response | None:
    """OPTIONS in JSON too (Flask's default is an empty text/html answer)."""
    if request.method != "OPTIONS" or request.routing_exception is not None:
        return None
    from flask import current_app
    methods = sorted(current_app.url_map.bind_to_environ(request.environ).allowed_methods(
        request.path))
    return Response(json.dumps({"path": request.path, "methods": methods}), status=200,
                    mimetype="application/json", headers={"Allow": ", ".join(methods)})


def install_json_errors(app: Flask, max_body: int) -> None:
    app.config["MAX_CONTENT_LENGTH"] = max_body
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    app.before_request(_options)


def error_message(code: int, reason: str, detail: str, max_body: int) -> str:
    """The sentence for an error waitress found before the app saw the request."""
    if code == 413:
        return f"the request body exceeds {max_body} bytes"
    if code == 501:
        return ("Transfer-Encoding is not supported: send the body as is (with Content-Length) "
                "or chunked")
    return f"{reason}: {detail}"


def render_error(code: int, reason: str, detail: str, max_body: int) -> bytes:
    """The errors waitress answers before the app sees a request, in the same JSON shape."""
    return json.dumps(error_document(code, error_message(code, reason, detail, max_body))).encode()


@dataclass(frozen=True)
class Limits:
    """The server's bounds; each is an environment setting `<PREFIX>_<NAME>`."""

    max_body: int
    threads: int = 8
    connection_limit: int = 1000
    channel_timeout: int = 30  # seconds a connection may sit idle or half-sent

    @classmethod
    def from_env(cls, prefix: str, env: Mapping[str, str], max_body: int,
                 threads: int | None = None) -> "Limits":
        def number(name: str, default: int) -> int:
            raw = env.get(f"{prefix}_{name}", "").strip()
            if not raw:
                return default
            if not raw.isdigit() or int(raw) < 1:
                raise SystemExit(f"{prefix}_{name}={raw!r} is not a positive whole number.")
            return int(raw)
        return cls(max_body=number("MAX_BODY", max_body),
                   threads=number("THREADS", threads or cls.threads),
                   connection_limit=number("CONNECTION_LIMIT", cls.connection_limit),
                   channel_timeout=number("CHANNEL_TIMEOUT", cls.channel_timeout))


def log_requests(app: Flask, name: str) -> None:
    """One access line per request, as the host service writes them ("http" logger): a log
    record, so that where OTEL_* exports logs it reaches Loki with the request's trace id
    (the span is still current here), and stderr (`docker logs`) shows it as before."""
    access = logging.getLogger("http")

    @app.before_request
    def _stamp() -> None:
        g.access_t0 = time.monotonic()

    @app.after_request
    def _log(response: Response) -> Response:
        seconds = time.monotonic() - getattr(g, "access_t0", time.monotonic())
        access.info("%s %s %s %d %.1fms", request.remote_addr, request.method,
                    request.full_path.rstrip("?"), response.status_code, seconds * 1000)
        return response


def serve(app: Flask, name: str, port: int, limits: Limits, detail: str = "") -> None:
    """Serve until SIGTERM/SIGINT. PID 1 in its container: without a handler SIGTERM is ignored
    and `stop` waits its full grace period."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"{name}: %(name)s %(levelname)s %(message)s")
    server = create_server(
        app, host="0.0.0.0", port=port, ident=name, threads=limits.threads,
        connection_limit=limits.connection_limit, channel_timeout=limits.channel_timeout,
        # Idle connections are looked at this often: a fraction of the timeout, so it holds.
        cleanup_interval=max(1, limits.channel_timeout // 2),
        # waitress refuses a body of exactly its limit: +1 lets max_body bytes through.
        max_request_body_size=limits.max_body + 1, expose_tracebacks=False,
        asyncore_use_poll=True)  # poll(), not select(): no FD_SETSIZE (1024) ceiling
    handle_connections(server, render_error)
    print(f"{name}: listening on :{port}{detail} (threads {limits.threads}, connection limit "
          f"{limits.connection_limit}, idle timeout {limits.channel_timeout}s, max body "
          f"{limits.max_body} bytes)", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.run()  # returns after SystemExit/KeyboardInterrupt, once waitress has cleaned up
