"""The waitress server around the app: connection limits, timeouts, and JSON for the errors
waitress answers itself (a body over the limit is refused from its Content-Length, before a
byte of it is buffered; a malformed request line or header; a TLS handshake on this plain-HTTP
port).

Probes never wait for a connection: when `MLX_MAX_CONNECTIONS` are open, a new connection
closes the one idle longest (no request in progress) instead of waiting in the backlog until
an idle timeout frees a place. A refused request's unread body is read and dropped after the
answer (a lingering close), so the client reads the answer instead of a connection reset.
"""
from __future__ import annotations

import json
import resource
import socket
import threading
import time

from waitress import create_server
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import BadRequest

from mlx_service.config import Config
from mlx_service.validation import error_body

_CODES = {400: "bad_request", 413: "request_too_large", 431: "headers_too_large",
          500: "internal_error", 501: "unsupported_transfer_encoding"}
# Connections beyond the limit, accepted only when none open is idle (all are mid-request).
OVERFLOW_CONNECTIONS = 64
ROOM_BATCH = 16     # idle connections closed at once when the limit is reached
ACCEPT_BATCH = 64   # connections accepted per turn of the loop
# After an error answer, how long and how much of the rest of the request is read and dropped.
LINGER_S = 5.0
LINGER_BYTES = 64 * 1024 * 1024
TLS_HANDSHAKE = 0x16  # first byte of a TLS record carrying a ClientHello


def error_message(code: int, reason: str, detail: str, max_body: int) -> str:
    """The sentence for an error waitress found before the app saw the request."""
    if code == 413:
        return f"request body is larger than {max_body} bytes (MLX_MAX_REQUEST_BYTES)"
    if code == 501:
        return ("Transfer-Encoding is not supported: send the body as is (with Content-Length) "
                "or chunked")
    return f"{reason}: {detail}".strip().rstrip(":")


class JsonErrorTask(ErrorTask):
    """waitress's own error answers (plain text) in the OpenAI error shape."""

    def execute(self):
        error = self.request.error
        status = f"{error.code} {error.reason}"
        max_body = self.channel.adj.max_request_body_size - 1
        message = error_message(error.code, error.reason, error.body, max_body)
        body = json.dumps(error_body(message, code=_CODES.get(error.code, "bad_request"))).encode()
        self.status = status
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.channel.linger = True  # the client may still be sending what was refused
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask
    linger = False              # close by lingering: the answer out, the input drained
    linger_until: float | None = None
    lingered = 0
    started = False             # the connection's first bytes have been looked at

    # --- a TLS handshake (or other non-HTTP bytes) is answered at once ----------------------
    def received(self, data):
        if not self.started and data:
            head = data.lstrip(b"\r\n")
            if head:
                self.started = True
                if not head[:1].isalpha():  # every HTTP method starts with a letter
                    return self._refuse_at_once(head[0])
        return super().received(data)

    def _refuse_at_once(self, first: int) -> bool:
        if first == TLS_HANDSHAKE:
            why = ("this port speaks plain HTTP and the client began a TLS handshake: "
                   "use http://, not https://")
        else:
            why = "this is not an HTTP request"
        request = self.parser_class(self.adj)
        request.parse_header(b"GET / HTTP/1.0\r\n")
        request.error = BadRequest(why)
        request.completed = True
        with self.requests_lock:
            if self.will_close or self.close_when_flushed:
                return False
            self.requests.append(request)
            if len(self.requests) == 1:
                self.server.add_task(self)
        return True

    # --- lingering close ------------------------------------------------------------------
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
        return self.close_now()  # writable() says so only once the time is up


def idle(channel: HTTPChannel) -> bool:
    return not (channel.requests or channel.request is not None or channel.total_outbufs_len)


def evictable(channel: HTTPChannel) -> bool:
    """No request being served and no answer being sent: idle, lingering, or half-sent."""
    return not (channel.requests or channel.total_outbufs_len)


def make_room(server_map: dict, limit: int) -> None:
    """At the limit, close the connections that hold a place for nothing: idle ones first
    (longest idle first), then those still sending a request (slowest first)."""
    channels = [obj for obj in list(server_map.values()) if isinstance(obj, HTTPChannel)]
    if len(channels) < limit:
        return
    # A few places more than needed: the sort is then done once per ROOM_BATCH accepts.
    excess = len(channels) - limit + 1 + min(ROOM_BATCH, max(1, limit // 8))
    spare = sorted((c for c in channels if evictable(c)),
                   key=lambda c: (c.linger_until is None if isinstance(c, JsonErrorChannel)
                                  else True, c.request is not None, c.last_activity))
    for channel in spare[:excess]:
        if isinstance(channel, JsonErrorChannel):
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


def make_room_on_accept(listener: BaseWSGIServer) -> None:
    listener.__class__ = type(f"RoomMaking{type(listener).__name__}",
                              (RoomMakingListener, type(listener)), {})


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


def make_server(app, config: Config, server_map: dict):
    """(server, listeners). Raises OSError when an address cannot be bound."""
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
    for listener in listeners:
        listener.channel_class = JsonErrorChannel
        make_room_on_accept(listener)
    return server, listeners
