"""The waitress server around the app: connection limits, timeouts, and JSON for the errors
waitress answers itself (a body over the limit is refused from its Content-Length, before a
byte of it is buffered; a malformed request line or header; a TLS handshake on this plain-HTTP
port).

The connection rules (mlx_service/http/connections.py, shared with the gateway and the registry):
probes never wait for a connection (at `MLX_MAX_CONNECTIONS` a new connection closes the one
idle longest), and a refused request's unread body is read and dropped after the answer (a
lingering close), so the client reads the answer instead of a connection reset.
"""
from __future__ import annotations

import json
import resource
import threading

from waitress import create_server
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer

from mlx_service.config import Config
from mlx_service.errors import error_body
from mlx_service.http.connections import OVERFLOW_CONNECTIONS, handle_connections, idle

_CODES = {400: "bad_request", 413: "request_too_large", 431: "headers_too_large",
          500: "internal_error", 501: "unsupported_transfer_encoding"}


def error_message(code: int, reason: str, detail: str, max_body: int) -> str:
    """The sentence for an error waitress found before the app saw the request."""
    if code == 413:
        return f"request body is larger than {max_body} bytes (MLX_MAX_REQUEST_BYTES)"
    if code == 501:
        return ("Transfer-Encoding is not supported: send the body as is (with Content-Length) "
                "or chunked")
    return f"{reason}: {detail}".strip().rstrip(":")


def render_error(code: int, reason: str, detail: str, max_body: int) -> bytes:
    """waitress's own error answers in the OpenAI error shape."""
    message = error_message(code, reason, detail, max_body)
    return json.dumps(error_body(message, code=_CODES.get(code, "bad_request"))).encode()


def raise_open_files_limit(wanted: int) -> None:
    """Each connection is a file descriptor: macOS starts shells at 256, many Linux at 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass  # keep what we have; connection_limit still bounds waitress


def shed_connections(listeners, server_map: dict) -> threading.Event:
    """Shutdown, from any thread: close the listening sockets (a new client is refused at
    once, instead of sending a body to be answered 503) and every connection with no
    request in progress. Runs in waitress's loop thread, the only one that may touch them."""
    done = threading.Event()

    def in_loop():
        try:
            shed()
        finally:
            done.set()

    def shed():
        for listener in listeners:
            if listener.accepting:
                # Only the listening socket: the server's close() would also close the
                # trigger that the threads still answering use to wake the loop.
                listener.accepting = False
                listener.del_channel()
                listener.socket.close()
        for obj in list(server_map.values()):
            if isinstance(obj, HTTPChannel) and idle(obj):
                obj.handle_close()

    if listeners:
        try:
            listeners[0].trigger.pull_trigger(in_loop)
        except OSError:
            done.set()  # the loop has already closed its trigger: it is ending anyway
    else:
        done.set()
    return done


def channels_idle(server_map: dict) -> bool:
    """No waitress connection has a request in progress or unsent output."""
    return all(idle(obj) for obj in list(server_map.values()) if isinstance(obj, HTTPChannel))


def make_server(app, config: Config, server_map: dict, metrics=None):
    """(server, listeners). Raises OSError when an address cannot be bound. `metrics`: where
    the refusals waitress answers itself (413, a body over the limit) are counted."""
    raise_open_files_limit(config.max_connections + OVERFLOW_CONNECTIONS + 64)
    server = create_server(
        app, map=server_map, listen=config.listen(), threads=config.http_threads,
        ident="mlx_service", clear_untrusted_proxy_headers=True,
        # Refused from Content-Length (or while a chunked body arrives) before buffering;
        # waitress refuses a body of exactly its limit, the app allows one of MLX_MAX_REQUEST_BYTES.
        max_request_body_size=config.max_request_bytes + 1,
        connection_limit=config.max_connections,
        # Idle or half-sent connections are closed after this; checked every few seconds.
        channel_timeout=config.idle_timeout, cleanup_interval=max(1, config.idle_timeout // 3),
        # Keep reading a connection while its request runs: that is how a client that hung
        # up is noticed (waitress.client_disconnected), so its work can be dropped.
        channel_request_lookahead=1,
        # Large bodies arrive in fewer, larger reads: fewer turns of the GIL for the loop.
        recv_bytes=256 * 1024,
        # Bodies (at most max_request_bytes) stay in memory: spooled to temporary files, a
        # flood of them had the loop thread stalled in writes for seconds, probes included.
        inbuf_overflow=config.max_request_bytes + 1,
        # poll(), not select(): no FD_SETSIZE ceiling (1024) under many connections.
        asyncore_use_poll=True)
    listeners = [obj for obj in server_map.values() if isinstance(obj, BaseWSGIServer)]
    def render(code: int, reason: str, detail: str, max_body: int) -> bytes:
        if metrics is not None and code == 413:
            metrics.count_refusal(_CODES[413])
        return render_error(code, reason, detail, max_body)

    for listener in listeners:
        handle_connections(listener, render)
    return server, listeners
