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
- the same connection rules as the host service (mlx_service/server.py): at the connection
  limit a new connection closes the longest-idle one, so a probe never waits in the backlog;
  a refused request's unread body is read and dropped after the answer (a lingering close),
  so the client reads the answer instead of a connection reset.
Works with Debian bookworm's Flask 2.2 / waitress 2.1 and PyPI's Flask 3.1 / waitress 3.0.
"""
from __future__ import annotations

import json
import logging
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Mapping

from flask import Flask, Response, request
from waitress import create_server
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask
from waitress.utilities import BadRequest
from werkzeug.exceptions import HTTPException

ERROR_TYPES = {400: "invalid_request_error", 404: "not_found", 405: "method_not_allowed",
               413: "invalid_request_error", 431: "invalid_request_error",
               501: "invalid_request_error", 502: "upstream_unavailable"}
# Connections beyond the limit, accepted only when none open is idle (all are mid-request).
OVERFLOW_CONNECTIONS = 64
ROOM_BATCH = 16     # idle connections closed at once when the limit is reached
ACCEPT_BATCH = 64   # connections accepted per turn of the loop
# After an error answer, how long and how much of the rest of the request is read and dropped.
LINGER_S = 5.0
LINGER_BYTES = 64 * 1024 * 1024
TLS_HANDSHAKE = 0x16  # first byte of a TLS record carrying a ClientHello


def error_document(code: int, message: str, kind: str | None = None,
                   param: str | None = None) -> dict:
    """OpenAI's error shape; `code` is the HTTP status, as the gateway has always sent it."""
    return {"error": {"message": message, "type": kind or ERROR_TYPES.get(code, "server_error"),
                      "param": param, "code": code}}


def json_error(code: int, message: str, kind: str | None = None, param: str | None = None,
               headers: Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(error_document(code, message, kind, param)), status=code,
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
    return json_error(500, f"internal error: {type(exc).__name__}", "server_error")


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


class JsonErrorTask(ErrorTask):
    """The errors waitress answers before the app sees a request, in the same JSON shape."""

    def execute(self):
        error = self.request.error
        max_body = self.channel.adj.max_request_body_size - 1
        message = error_message(error.code, error.reason, error.body, max_body)
        body = json.dumps(error_document(error.code, message)).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend([("Content-Type", "application/json"),
                                      ("Connection", "close")])
        self.close_on_finish = True  # the rest of a bad request cannot be trusted
        self.channel.linger = True  # the client may still be sending what was refused
        self.content_length = len(body)
        self.write(body)


class JsonChannel(HTTPChannel):
    """JSON errors, a prompt answer to a TLS handshake, and a lingering close after an error
    (the same as mlx_service/server.py's channel: the two images share no code)."""
    error_task_class = JsonErrorTask
    linger = False
    linger_until = None
    lingered = 0
    started = False

    def received(self, data):
        if not self.started and data:
            head = data.lstrip(b"\r\n")
            if head:
                self.started = True
                if not head[:1].isalpha():  # every HTTP method starts with a letter
                    return self._refuse_at_once(head[0])
        return super().received(data)

    def _refuse_at_once(self, first: int) -> bool:
        why = ("this port speaks plain HTTP and the client began a TLS handshake: use http://, "
               "not https://") if first == TLS_HANDSHAKE else "this is not an HTTP request"
        req = self.parser_class(self.adj)
        req.parse_header(b"GET / HTTP/1.0\r\n")
        req.error = BadRequest(why)
        req.completed = True
        with self.requests_lock:
            if self.will_close or self.close_when_flushed:
                return False
            self.requests.append(req)
            if len(self.requests) == 1:
                self.server.add_task(self)
        return True

    def handle_close(self):
        if self.linger and self.linger_until is None and self.connected:
            try:
                self.socket.shutdown(socket.SHUT_WR)  # the answer is complete: FIN after it
            except OSError:
                return self.close_now()
            self.linger_until = time.monotonic() + LINGER_S
            return None
        return self.close_now()

    def close_now(self):
        self.linger_until = None
        self.linger = False
        return HTTPChannel.handle_close(self)

    def readable(self):
        return True if self.linger_until is not None else super().readable()

    def writable(self):
        if self.linger_until is not None:  # only to wake up and close when the time is up
            return time.monotonic() > self.linger_until
        return super().writable()

    def handle_read(self):
        if self.linger_until is None:
            return super().handle_read()
        try:
            data = self.socket.recv(256 * 1024)
        except OSError:
            data = b""
        self.lingered += len(data)
        if not data or self.lingered > LINGER_BYTES:
            self.close_now()
        return None

    def handle_write(self):
        if self.linger_until is None:
            return super().handle_write()
        return self.close_now()


def make_room(server_map: dict, limit: int) -> None:
    """At the limit, close the connections that hold a place for nothing: idle ones first
    (longest idle first), then those still sending a request (slowest first)."""
    channels = [obj for obj in list(server_map.values()) if isinstance(obj, HTTPChannel)]
    if len(channels) < limit:
        return
    # A few places more than needed: the sort is then done once per ROOM_BATCH accepts.
    excess = len(channels) - limit + 1 + min(ROOM_BATCH, max(1, limit // 8))
    spare = sorted((c for c in channels if not (c.requests or c.total_outbufs_len)),
                   key=lambda c: (getattr(c, "linger_until", None) is None,
                                  c.request is not None, c.last_activity))
    for channel in spare[:excess]:
        if isinstance(channel, JsonChannel):
            channel.close_now()
        else:
            channel.handle_close()


class RoomMakingListener:
    """Mixed into waitress's listener: it always accepts (up to the overflow), and makes room
    at the limit, so a probe is never left in the backlog behind idle connections."""

    def readable(self):
        now = time.time()
        if now >= self.next_channel_cleanup:  # waitress's idle-connection sweep, as before
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        return self.accepting and len(self._map) < self.adj.connection_limit + OVERFLOW_CONNECTIONS

    def handle_accept(self):
        # Up to ACCEPT_BATCH connections per turn of the loop (waitress takes one): a burst of
        # connections is through the backlog in a few turns, and a probe behind it with them.
        for _ in range(ACCEPT_BATCH):
            try:
                accepted = self.accept()
                if accepted is None:
                    return
                conn, addr = accepted
                self.set_socket_options(conn)
            except OSError:
                return  # as waitress: a connection gone before it was accepted
            make_room(self._map, self.adj.connection_limit)
            self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)


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
    @app.after_request
    def _log(response: Response) -> Response:
        print(f"{name}: {request.remote_addr} {request.method} {request.full_path.rstrip('?')} "
              f"{response.status_code}", file=sys.stderr, flush=True)
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
    server.channel_class = JsonChannel
    server.__class__ = type(f"RoomMaking{type(server).__name__}",
                            (RoomMakingListener, type(server)), {})
    print(f"{name}: listening on :{port}{detail} (threads {limits.threads}, connection limit "
          f"{limits.connection_limit}, idle timeout {limits.channel_timeout}s, max body "
          f"{limits.max_body} bytes)", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.run()  # returns after SystemExit/KeyboardInterrupt, once waitress has cleaned up
