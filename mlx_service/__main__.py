"""`python -m mlx_service`: settings, BLAS re-exec, HTTP up first, model loaded behind it.

The HTTP server starts before the model loads so /health can say "loading" (503) at once;
the inference thread loads the model and then serves. SIGTERM/SIGINT: stop accepting,
let in-flight requests finish and their answers go out, stop the worker, exit 0.
"""
from __future__ import annotations

import atexit
import logging
import logging.handlers
import os
import queue
import signal
import sys
import threading
import time

from mlx_service.blas import BlasError, blas_in_use, maybe_reexec
from mlx_service.config import ConfigError, load_config

log = logging.getLogger("mlx_service")
SHUTDOWN_GRACE_S = 60  # longest we wait for in-flight requests on SIGTERM


def _fail(message: str, code: int = 2) -> int:
    print(f"mlx_service: error: {message}", file=sys.stderr, flush=True)
    return code


def _channels_idle(server_map) -> bool:
    """No waitress connection has a request in progress or unsent output."""
    from waitress.channel import HTTPChannel
    for obj in list(server_map.values()):
        if isinstance(obj, HTTPChannel) and (obj.requests or obj.request is not None
                                             or obj.total_outbufs_len):
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        config = load_config(argv, os.environ)
    except ConfigError as exc:
        return _fail(str(exc))
    try:
        maybe_reexec(config.blas, argv)  # returns only when no re-exec is needed
    except BlasError as exc:
        return _fail(str(exc))

    _log_through_a_queue(config.log_level, config.log_file, config.log_max_bytes)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "queue depth" noise

    from mlx_service.model import Embedder, ModelError, check_dim, read_spec
    try:
        spec = read_spec(config.model)
        dim = check_dim(spec, config.dim)  # too large a dimension: refuse before serving
    except ModelError as exc:
        return _fail(str(exc))
    if spec.local:
        # Everything is on disk: make sure nothing reaches for a model hub at run time.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    from waitress import create_server
    from waitress.server import BaseWSGIServer

    from mlx_service.app import InFlight, ServiceState, create_app
    from mlx_service.metrics import Metrics
    from mlx_service.worker import Worker

    metrics = Metrics()

    def load():
        t0 = time.monotonic()
        embedder = Embedder(spec, cpu_fast=config.cpu_fast, lanes=config.cpu_lanes)
        embedder.embed(embedder.tokenize(["warm up"]))  # first pass allocates; keep it off a request
        log.info("model %s loaded in %.2fs (pooling %s, max_seq_length %d, forward %s, "
                 "%d lane(s))", spec.name, time.monotonic() - t0, "+".join(spec.pooling),
                 spec.max_seq_length, embedder.forward, embedder.lanes)
        return embedder

    worker = Worker(load, config.queue_size, config.max_batch_tokens, metrics,
                    coalesce_rows=config.coalesce_rows, batch_wait_ms=config.batch_wait_ms)
    state = ServiceState(config=config, spec=spec, dim=dim, worker=worker, metrics=metrics,
                         blas=blas_in_use())
    app = InFlight(create_app(state))
    server_map: dict = {}
    try:
        server = create_server(app, map=server_map, listen=config.listen(),
                               threads=config.http_threads, ident="mlx_service",
                               # Above our own limit, so that our JSON 413 answers first.
                               max_request_body_size=max(64 << 20, 4 * config.max_request_bytes),
                               clear_untrusted_proxy_headers=True)
    except OSError as exc:
        return _fail(f"cannot listen on {config.listen()}: {exc}", 1)
    listeners = [obj for obj in server_map.values() if isinstance(obj, BaseWSGIServer)]
    urls = ", ".join(f"http://{h if ':' not in h else f'[{h}]'}:{p}"
                     for h, p in ((l.effective_host, l.effective_port) for l in listeners))
    log.info("listening on %s (model %s, %d dimensions, blas %s); loading the model",
             urls, spec.name, dim, state.blas)

    drained = threading.Event()

    def drain():
        for listener in listeners:
            listener.accepting = False  # the loop stops polling them: no new connections
        if not app.wait_idle(SHUTDOWN_GRACE_S):
            log.warning("shutdown: %d request(s) still running after %ss; stopping anyway",
                        app.count, SHUTDOWN_GRACE_S)
        deadline = time.monotonic() + 5
        while not _channels_idle(server_map) and time.monotonic() < deadline:
            time.sleep(0.02)  # answers written by the app still have to reach the socket
        drained.set()
        signal.raise_signal(signal.SIGINT)  # wakes the main loop: waitress exits run()

    def on_signal(signum, frame):
        if drained.is_set():
            raise KeyboardInterrupt  # makes waitress's run() return, after its own cleanup
        if state.draining:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now
            return
        log.info("received %s: finishing in-flight requests, then exiting",
                 signal.Signals(signum).name)
        state.draining = True
        threading.Thread(target=drain, name="drain", daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def announce():
        worker.ready.wait()
        if worker.state == "ready":
            log.info("ready: %s serving %d dimensions on %s (device %s, blas %s, load %.2fs)",
                     spec.name, dim, urls, worker.device, state.blas, worker.load_seconds)
        else:
            log.error("not ready: %s; /health answers 503", worker.error)

    worker.start()
    threading.Thread(target=announce, name="announce", daemon=True).start()
    server.run()  # returns on the KeyboardInterrupt raised above, after waitress's own cleanup

    if worker.state == "loading":
        log.info("stopped while the model was loading")  # the loader cannot be interrupted
    else:
        worker.stop()
        log.info("stopped")
    # Skip interpreter teardown: MLX's native threads abort the process ("terminate called
    # without an active exception") when destroyed at exit; all work is done by now.
    _LISTENER.stop()  # drains the queue: the last lines are written before we exit
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


_LISTENER: logging.handlers.QueueListener | None = None


def _log_through_a_queue(level, log_file: str | None = None,
                         max_bytes: int = 10 * 1024 * 1024) -> None:
    """One line per request from up to MLX_HTTP_THREADS threads: they only enqueue records, and
    one listener thread writes them, so no request waits on the log's lock or on stderr.
    With MLX_LOG_FILE (detached starts), the writer rotates that file by size: a long-running
    service logs one line per request, forever."""
    global _LISTENER
    records: queue.SimpleQueue = queue.SimpleQueue()
    if log_file:
        writer: logging.Handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=max_bytes, backupCount=3, encoding="utf-8")
    else:
        writer = logging.StreamHandler(sys.stderr)
    writer.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _LISTENER = logging.handlers.QueueListener(records, writer)
    _LISTENER.start()
    atexit.register(_LISTENER.stop)  # early exits (bad model, port taken) keep their last lines
    enqueue = logging.handlers.QueueHandler(records)
    enqueue.setFormatter(logging.Formatter("%(message)s"))  # the writer adds time and level
    logging.basicConfig(level=level, handlers=[enqueue])


if __name__ == "__main__":
    sys.exit(main())
