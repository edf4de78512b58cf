"""`python -m mlx_service`: settings, BLAS re-exec, HTTP up first, model loaded behind it.

The HTTP server starts before the model loads so /health can say "loading" (503) at once;
the inference thread loads the model and then serves. SIGTERM/SIGINT: stop accepting,
let in-flight requests finish and their answers go out, stop the worker, exit 0.
"""
from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time

from mlx_service.config import ConfigError, load_config, model_settings
from mlx_service.kernels.blas import BlasError, blas_in_use, maybe_reexec
from mlx_service.telemetry.service_log import LogFileError, start_log, stop_log

log = logging.getLogger("mlx_service")
# Of MLX_STOP_GRACE (the lifecycle's wait before SIGKILL), what the drain leaves for the rest
# of the exit: the answers' last bytes, the log, the process itself.
EXIT_MARGIN_S = 1.5
SWITCH_INTERVAL_S = 0.001
EXIT_FLUSH_S = 0.5  # of EXIT_MARGIN_S, the most exporting spans and logs may take at exit


def _fail(message: str, code: int = 2) -> int:
    print(f"mlx_service: error: {message}", file=sys.stderr, flush=True)
    return code


def check_model(argv: list[str]) -> int:
    """`python -m mlx_service --check-model [FOLDER]`: every reason the folder (default:
    EMBEDDINGS_MODEL, else the bundled model) cannot be served, one line each; exit 2 if
    any. Reads JSON and safetensors headers only: no MLX, no network."""
    from pathlib import Path

    from mlx_service.models.folder import ModelError, folder_problems, looks_like_path, read_spec

    target = argv[0] if argv else model_settings(os.environ)[0]
    if len(argv) > 1:
        return _fail("--check-model takes one model folder")
    if target and not Path(target).expanduser().exists() and not looks_like_path(target):
        print(f"{target}: a hub id; it is checked when the service fetches it")
        return 0
    try:
        folder = read_spec(None).path if not target else Path(target).expanduser().resolve()
    except ModelError as exc:
        return _fail(str(exc))
    problems = folder_problems(folder)
    for problem in problems:
        print(f"{folder}: {problem}")
    if problems:
        return 2
    spec = read_spec(str(folder))
    print(f"{folder}: ok ({describe_spec(spec)})")
    return 0


def check_rerank_model(argv: list[str]) -> int:
    """`python -m mlx_service --check-rerank-model [FOLDER]`: whether a reranker or classifier
    folder (default: RERANK_MODEL) can be served, one line per problem (exit 2 if any). An
    embedding model there is refused in one sentence naming EMBEDDINGS_MODEL."""
    from pathlib import Path

    from mlx_service.models.folder import looks_like_path
    from mlx_service.models.scorer_folder import read_scorer_spec, scorer_problems

    target = argv[0] if argv else model_settings(os.environ)[1]
    if len(argv) > 1:
        return _fail("--check-rerank-model takes one model folder")
    if not target:
        print("RERANK_MODEL is unset: no reranker (rerank routes rank by the embedding "
              "model's cosine similarity)")
        return 0
    if not Path(target).expanduser().exists() and not looks_like_path(target):
        print(f"{target}: a hub id; it is checked when the service fetches it")
        return 0
    folder = Path(target).expanduser().resolve()
    problems = scorer_problems(folder)
    for problem in problems:
        print(f"{folder}: {problem}")
    if problems:
        return 2
    print(f"{folder}: ok ({read_scorer_spec(str(folder)).describe()})")
    return 0


def describe_spec(spec) -> str:
    """One line on what the folder holds, for the log and --check-model."""
    prompts = ", ".join(spec.prompts.names()) or "none"
    default = f", default {spec.prompts.default_name}" if spec.prompts.default_name else ""
    return (f"{spec.architecture}, pooling {'+'.join(spec.pooling)} from "
            f"{spec.pooling_source}, prompts {prompts}{default}, max_seq_length "
            f"{spec.max_seq_length}, {spec.native_dim} dimensions, {spec.describe_weights()}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--check-model"]:
        return check_model(argv[1:])
    if argv[:1] == ["--check-rerank-model"]:
        return check_rerank_model(argv[1:])
    try:
        config = load_config(argv, os.environ)
    except ConfigError as exc:
        return _fail(str(exc))
    from mlx_service.models.folder import ModelError, check_dim, read_spec
    try:
        # A folder that cannot be served is refused now, before BLAS, HTTP or MLX: exit 2
        # and one sentence, never a service that answers 503 forever.
        spec = read_spec(config.model)
        dim = check_dim(spec, config.dim)  # too large a dimension: refuse before serving
        rerank_spec = None
        if config.rerank_model:  # a reranker or classifier beside it (same rule: exit 2)
            from mlx_service.models.scorer_folder import read_scorer_spec
            rerank_spec = read_scorer_spec(config.rerank_model)
    except ModelError as exc:
        return _fail(str(exc))
    try:
        # returns only when no re-exec is needed
        maybe_reexec(config.blas, argv, precision=config.precision)
    except BlasError as exc:
        return _fail(str(exc))

    # Many HTTP threads and one inference thread share the GIL: with Python's default 5 ms
    # switch interval, each time the inference thread comes back from native code it may wait
    # 5 ms per busy thread, and so does a health probe. 1 ms keeps both moving under a flood.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:  # one writer thread behind a bounded queue (mlx_service/telemetry/service_log.py)
        start_log(config.log_level, config.log_file, config.log_max_bytes)
    except LogFileError as exc:
        return _fail(str(exc))
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "queue depth" noise

    from mlx_service.models.embedder import Embedder
    log.info("model %s: %s", spec.name, describe_spec(spec))
    if rerank_spec is not None:
        log.info("reranker %s: %s", rerank_spec.name, rerank_spec.describe())
    if spec.local and (rerank_spec is None or rerank_spec.local):
        # Everything is on disk: make sure nothing reaches for a model hub at run time.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    from mlx_service.engine.inference import Inference
    from mlx_service.engine.model_runner import ModelRunner
    from mlx_service.engine.worker import Worker, WorkerState
    from mlx_service.http.app import InFlight, create_app
    from mlx_service.http.server import channels_idle, make_server, shed_connections
    from mlx_service.telemetry.metrics import Metrics

    metrics = Metrics()

    def load_scorer():
        """The reranker, on the inference thread too (MLX streams are per thread)."""
        from mlx_service.models.scorer import Scorer
        t0 = time.monotonic()
        scorer = Scorer(rerank_spec, cpu_fast=config.cpu_fast, lanes=config.cpu_lanes,
                        native_kernels=config.native_kernels, precision=config.precision)
        scorer.score(scorer.tokenize_pairs("warm up", ["warm up"]))  # first pass allocates
        log.info("reranker %s loaded in %.2fs (%s, %d label(s), activation %s, max_length %d)",
                 rerank_spec.name, time.monotonic() - t0, rerank_spec.kind,
                 rerank_spec.num_labels, rerank_spec.activation, rerank_spec.max_length)
        return scorer

    def load():
        t0 = time.monotonic()
        embedder = Embedder(spec, cpu_fast=config.cpu_fast, lanes=config.cpu_lanes,
                            precision=config.precision, native_kernels=config.native_kernels)
        embedder.embed(embedder.tokenize(["warm up"]))  # first pass allocates; keep it off a request
        scorer = load_scorer() if rerank_spec is not None else None
        # What loading made lives as long as the process: out of the collector's sight, so a
        # full collection under load does not walk it while holding the GIL.
        gc.collect()
        gc.freeze()
        log.info("model %s loaded in %.2fs (pooling %s from %s, max_seq_length %d, weights "
                 "%s, forward %s on %s, %d lane(s))", spec.name, time.monotonic() - t0,
                 "+".join(spec.pooling), spec.pooling_source, spec.max_seq_length,
                 embedder.dtype, embedder.forward, embedder.layers, embedder.lanes)
        return ModelRunner(embedder, scorer)

    worker = Worker(load, config.queue_size, config.max_batch_tokens, metrics,
                    coalesce_rows=config.coalesce_rows, batch_wait_ms=config.batch_wait_ms)
    inference = Inference(config=config, spec=spec, dim=dim, worker=worker,
                          blas=blas_in_use(), rerank_spec=rerank_spec)
    flask_app = create_app(inference, metrics)
    # Process RSS/CPU on /metrics; spans and log export where OTEL_* asks
    # (mlx_service/telemetry/otlp.py).
    from mlx_service.telemetry.tracing import install as install_telemetry
    install_telemetry(flask_app, metrics)
    app = InFlight(flask_app)
    server_map: dict = {}
    try:
        server, listeners = make_server(app, config, server_map, metrics)
    except OSError as exc:
        return _fail(f"cannot listen on {config.listen()}: {exc}", 1)
    urls = ", ".join(f"http://{h if ':' not in h else f'[{h}]'}:{p}"
                     for h, p in ((l.effective_host, l.effective_port) for l in listeners))
    log.info("listening on %s (model %s, %d dimensions, blas %s); loading the model",
             urls, spec.name, dim, inference.blas)

    drained = threading.Event()
    loop_ended = threading.Event()
    interrupted = threading.Event()

    def drain():
        # Queued requests are answered 503 now; the pass in progress finishes, no other starts.
        worker.drain()
        shed = shed_connections(listeners, server_map)
        # Only admitted embedding work is waited for: probes and refusals are instant, and
        # clients that keep sending on open connections would never let "no request" happen.
        budget = max(0.5, config.stop_grace - EXIT_MARGIN_S)
        deadline = time.monotonic() + budget
        while not inference.admission.wait_empty(0.1):
            shed.wait(1)
            shed = shed_connections(listeners, server_map)  # keep-alive clients between requests
            if time.monotonic() > deadline:
                log.warning("shutdown: %d request(s) still running after %.1fs; exiting anyway",
                            inference.admission.requests, budget)
                _exit_now()
        shed.wait(1)  # no shedding left in the loop: a KeyboardInterrupt there would be lost
        app.wait_idle(0.2)
        deadline = time.monotonic() + EXIT_MARGIN_S / 2
        while not channels_idle(server_map) and time.monotonic() < deadline:
            time.sleep(0.02)  # answers written by the app still have to reach the socket
        drained.set()
        signal.raise_signal(signal.SIGINT)  # wakes the main loop: waitress exits run()

    def on_signal(signum, frame):
        if loop_ended.is_set() or interrupted.is_set():
            return  # waitress is cleaning up: let it
        if drained.is_set():
            interrupted.set()
            raise KeyboardInterrupt  # makes waitress's run() return, after its own cleanup
        if inference.draining:
            if signum == signal.SIGINT:
                log.info("second interrupt: exiting now")
                _exit_now()
            return
        log.info("received %s: finishing in-flight requests, then exiting",
                 signal.Signals(signum).name)
        inference.draining = True
        threading.Thread(target=drain, name="drain", daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def announce():
        worker.ready.wait()
        if worker.state == WorkerState.READY:
            log.info("ready: %s serving %d dimensions on %s (device %s, blas %s, load %.2fs)",
                     spec.name, dim, urls, worker.device, inference.blas, worker.load_seconds)
        elif worker.state == WorkerState.ERROR:
            # A model that cannot load never will: end now (exit 2, one sentence) rather
            # than answer 503 forever.
            log.error("not ready: %s; exiting", worker.error)
            print(f"mlx_service: error: {worker.error}", file=sys.stderr, flush=True)
            _exit_now(2)

    worker.start()
    threading.Thread(target=announce, name="announce", daemon=True).start()
    try:
        server.run()  # returns on the KeyboardInterrupt raised above, after its own cleanup
    finally:
        loop_ended.set()

    if worker.state == WorkerState.LOADING:
        log.info("stopped while the model was loading")  # the loader cannot be interrupted
    else:
        worker.join(EXIT_MARGIN_S / 2)  # drained: ends after its pass, or is left to exit
        log.info("stopped")
    _exit_now()


def _exit_now(code: int = 0) -> None:
    """Skip interpreter teardown: MLX's native threads abort the process ("terminate called
    without an active exception") when destroyed at exit, and waitress would wait 5 s more
    for threads whose answers nobody reads any more."""
    stop_log()  # drains the queue: the last lines are written before we exit
    from mlx_service.telemetry.tracing import flush as flush_telemetry
    flush_telemetry(EXIT_FLUSH_S)  # the last spans and log records, if a collector takes them
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
