"""waitress's connections as every server of the stack handles them: the host service
(mlx_service/http/server.py) and the containers' services (compose/pyserve/httpserve.py, whose
images copy this file in: it imports nothing but waitress and the standard library, and works
with Debian bookworm's waitress 2.1 as with PyPI's 3.0).

- Probes never wait for a connection: at the connection limit a new connection closes the ones
  that hold a place for nothing (idle longest first) instead of waiting in the backlog until
  an idle timeout frees a place, and a burst of connections is accepted in a few turns.
- waitress's own error answers (a body over the limit, bad chunking, a malformed request) are
  JSON, rendered by the server that uses this module.
- A TLS handshake (or any bytes that cannot begin an HTTP request) is answered 400 at once.
- After an error answer the unread rest of the request is read and dropped for a while (a
  lingering close), so the client reads the answer instead of a connection reset.
"""
from __future__ import annotations

import socket
import time
from typing import Callable

from waitress.channel import HTTPChannel
from waitress.task import ErrorTask
from waitress.utilities import BadRequest

# Connections beyond the limit, accepted only when none open is idle (all are mid-request).
OVERFLOW_CONNECTIONS = 64
ROOM_BATCH = 16     # idle connections closed at once when the limit is reached
ACCEPT_BATCH = 64   # connections accepted per turn of the loop
# After an error answer, how long and how much of the rest of the request is read and dropped.
LINGER_S = 5.0
LINGER_BYTES = 64 * 1024 * 1024
TLS_HANDSHAKE = 0x16  # first byte of a TLS record carrying a ClientHello

# (status code, reason, waitress's detail, the body limit in bytes) -> the JSON body to send
RenderError = Callable[[int, str, str, int], bytes]


class JsonErrorTask(ErrorTask):
    """The errors waitress answers before the app sees a request, rendered by the server."""

    render: RenderError

    def execute(self):
        error = self.request.error
        max_body = self.channel.adj.max_request_body_size - 1
        body = self.render(error.code, error.reason, error.body, max_body)
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend([("Content-Type", "application/json"),
                                      ("Connection", "close")])
        self.close_on_finish = True  # the rest of a bad request cannot be trusted
        self.channel.linger = True  # the client may still be sending what was refused
        self.content_length = len(body)
        self.write(body)


class LingeringChannel(HTTPChannel):
    """JSON errors, a prompt answer to a TLS handshake, and a lingering close after an error."""

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
        why = ("this port speaks plain HTTP and the client began a TLS handshake: use http://, "
               "not https://") if first == TLS_HANDSHAKE else "this is not an HTTP request"
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


def channel_class(render: RenderError) -> type[LingeringChannel]:
    """The channel class of a server whose error bodies `render` writes."""
    task = type("JsonErrorTask", (JsonErrorTask,), {"render": staticmethod(render)})
    return type("JsonErrorChannel", (LingeringChannel,), {"error_task_class": task})


def idle(channel: HTTPChannel) -> bool:
    return not (channel.requests or channel.request is not None or channel.total_outbufs_len)


def evictable(channel: HTTPChannel) -> bool:
    """No request being served and no answer being sent: idle, lingering, or half-sent."""
    return not (channel.requests or channel.total_outbufs_len)


def make_room(server_map: dict, limit: int) -> None:
    """At the limit, close the connections that hold a place for nothing: lingering ones
    first, then idle ones (longest idle first), then those still sending a request."""
    channels = [obj for obj in list(server_map.values()) if isinstance(obj, HTTPChannel)]
    if len(channels) < limit:
        return
    # A few places more than needed: the sort is then done once per ROOM_BATCH accepts.
    excess = len(channels) - limit + 1 + min(ROOM_BATCH, max(1, limit // 8))
    spare = sorted((c for c in channels if evictable(c)),
                   key=lambda c: (getattr(c, "linger_until", None) is None,
                                  c.request is not None, c.last_activity))
    for channel in spare[:excess]:
        if isinstance(channel, LingeringChannel):
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


def handle_connections(listener, render: RenderError) -> None:
    """Give a waitress listener these rules, its error bodies written by `render`."""
    listener.channel_class = channel_class(render)
    listener.__class__ = type(f"RoomMaking{type(listener).__name__}",
                              (RoomMakingListener, type(listener)), {})
