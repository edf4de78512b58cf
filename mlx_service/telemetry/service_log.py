"""The service's log: written by one thread behind a bounded queue, and never in the way.

Up to MLX_HTTP_THREADS threads log one line per request: they only put the record on a
queue (dropped, and counted, when the queue is full), and one listener thread writes them.
A log that cannot be written never fails or slows a request: the failure is said once, on
stderr, and lines are dropped until the file can be written again (tried every RETRY_S),
instead of a multi-line "--- Logging error ---" for every line.
With MLX_LOG_FILE (detached starts) the file is rotated by size: a long-running service
logs one line per request, forever.
"""
from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys
import time

QUEUE_LINES = 10_000   # records waiting for the writer; beyond, new ones are dropped
RETRY_S = 30.0         # after a failed write, lines are dropped this long before a retry
BACKUPS = 3
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_listener: logging.handlers.QueueListener | None = None  # the writer thread


class LogFileError(Exception):
    """The log file cannot be opened at start: one line, exit 2."""


def say_once(message: str) -> None:
    try:
        print(f"mlx_service: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass  # stderr is gone too: nothing left to tell


class DroppingQueueHandler(logging.handlers.QueueHandler):
    """Never blocks the thread that logs: a full queue drops the line."""
    dropped = 0

    def enqueue(self, record):
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            if not self.dropped:
                say_once(f"the log writer is behind by {QUEUE_LINES} lines; "
                         "lines are dropped until it catches up")
            self.dropped += 1


class SafeRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler that reports a failure once and then drops lines for RETRY_S,
    rather than printing a traceback per line (and growing stderr, often this very file)."""

    failing_since: float | None = None
    dropped = 0
    _failed = False

    def emit(self, record):
        if self.failing_since is not None:
            if time.monotonic() - self.failing_since < RETRY_S:
                self.dropped += 1
                return
        self._failed = False
        super().emit(record)  # calls handleError on any failure, never raises
        if not self._failed and self.failing_since is not None:
            self.failing_since = None
            dropped, self.dropped = self.dropped, 0
            super().emit(logging.makeLogRecord({
                "name": "mlx_service", "levelno": logging.WARNING, "levelname": "WARNING",
                "msg": f"the log can be written again; {dropped} line(s) were dropped"}))

    def handleError(self, record):
        self._failed = True
        self.dropped += 1
        if self.failing_since is None:
            exc = sys.exc_info()[1]
            say_once(f"cannot write the log {self.baseFilename} ({exc}); log lines are "
                     f"dropped until it can be written (tried again every {RETRY_S:g}s)")
        self.failing_since = time.monotonic()
        if self.stream is not None:
            try:
                self.stream.close()
            except OSError:
                pass
            self.stream = None  # reopened on the next try


class Listener(logging.handlers.QueueListener):
    def enqueue_sentinel(self):
        try:  # a full queue: wait for the writer to make room, but not forever
            self.queue.put(self._sentinel, timeout=2)
        except queue.Full:
            pass


class QuietStreamHandler(logging.StreamHandler):
    """stderr that cannot be written (a closed pipe, a full disk behind it): lines are dropped,
    without a traceback per line to the same broken stderr."""
    dropped = 0

    def handleError(self, record):
        self.dropped += 1


def open_writer(log_file: str | None, max_bytes: int) -> logging.Handler:
    if not log_file:
        return QuietStreamHandler(sys.stderr)
    try:
        return SafeRotatingFileHandler(log_file, maxBytes=max_bytes, backupCount=BACKUPS,
                                       encoding="utf-8")
    except OSError as exc:
        raise LogFileError(f"MLX_LOG_FILE={log_file!r} cannot be written: "
                           f"{exc.strerror or exc}") from None


def start_log(level: str, log_file: str | None = None,
              max_bytes: int = 10 * 1024 * 1024) -> None:
    """Route the `logging` module through the queue to the writer. Raises LogFileError."""
    global _listener
    writer = open_writer(log_file, max_bytes)
    writer.setFormatter(logging.Formatter(FORMAT))
    records: queue.Queue = queue.Queue(QUEUE_LINES)
    _listener = Listener(records, writer)
    _listener.start()
    atexit.register(stop_log)  # early exits (bad model, port taken) keep their last lines
    enqueue = DroppingQueueHandler(records)
    enqueue.setFormatter(logging.Formatter("%(message)s"))  # the writer adds time and level
    logging.basicConfig(level=level, handlers=[enqueue])


def stop_log() -> None:
    """Write what is queued, then stop the writer (safe to call twice)."""
    global _listener
    listener, _listener = _listener, None
    if listener is not None:
        listener.stop()
