"""The waitress server around the app: connection limits, timeouts, and JSON for the errors
waitress answers itself (a body over the limit is refused from its Content-Length, before a
byte of it is buffered; a malformed request line or header)."""
from __future__ import annotations

import json
import resource
import threading

from waitress import create_server
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask

from mlx_service.config import Config

_CODES = {400: "bad_request", 413: "request_too_large", 431: "headers_too_large",
          500: "internal_error", 501: "not_implemented"}


class JsonErrorTask(ErrorTask):
    """waitress's own error answers (plain text) in the OpenAI error shape."""

    def execute(self):
        error = self.request.error
        status = f"{error.code} {error.reason}"
        message = f"{error.reason}: {error.body}".strip().rstrip(":")
        if error.code == 413:
            message += " (MLX_MAX_REQUEST_BYTES)"
        kind = "server_error" if error.code >= 500 else "invalid_request_error"
        body = json.dumps({"error": {"message": message, "type": kind, "param": None,
                                     "code": _CODES.get(error.code, "bad_request")}}).encode()
        self.status = status
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask


def raise_open_files_limit(wanted: int) -> None:
    """Each connection is a file descriptor: macOS starts shells at 256, many Linux at 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass  # keep what we have; connection_limit still bounds waitress


def _idle(channel: HTTPChannel) -> bool:
    return not (channel.requests or channel.request is not None or channel.total_outbufs_len)


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
            if isinstance(obj, HTTPChannel) and _idle(obj):
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
    return all(_idle(obj) for obj in list(server_map.values()) if isinstance(obj, HTTPChannel))


def make_server(app, config: Config, server_map: dict):
    """(server, listeners). Raises OSError when an address cannot be bound."""
    raise_open_files_limit(config.max_connections + 64)
    server = create_server(
        app, map=server_map, listen=config.listen(), threads=config.http_threads,
        ident="mlx_service", clear_untrusted_proxy_headers=True,
        # Refused from Content-Length (or while a chunked body arrives) before buffering.
        max_request_body_size=config.max_request_bytes,
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
        inbuf_overflow=config.max_request_bytes + 1)
    listeners = [obj for obj in server_map.values() if isinstance(obj, BaseWSGIServer)]
    for listener in listeners:
        listener.channel_class = JsonErrorChannel
    return server, listeners
