"""The service's settings: command-line flags over environment variables over defaults.

Pure logic (no MLX, no Flask) so it can be unit-tested and so a bad setting is reported
before anything heavy is imported.
"""
from __future__ import annotations

import argparse
import errno
import os
import socket
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence, TypeVar

T = TypeVar("T")

BLAS_MODES = ("auto", "openblas", "mkl", "reference")
PRECISION_MODES = ("auto", "fp32", "bf16")  # MLX_PRECISION, mlx_service/kernels/precision.py

# Limits: (env var, default, minimum). Defaults are sized for a laptop CPU and MiniLM:
# a full batch of 8192 padded tokens is ~32 rows of 256 tokens.
LIMITS = {
    "max_batch_items": ("MLX_MAX_BATCH_ITEMS", 2048, 1),        # texts per request
    "max_request_bytes": ("MLX_MAX_REQUEST_BYTES", 4 * 1024 * 1024, 1024),  # body size
    "queue_size": ("MLX_QUEUE_SIZE", 256, 1),                   # requests waiting for the worker
    "max_batch_tokens": ("MLX_MAX_BATCH_TOKENS", 8192, 1),      # padded tokens per forward pass
    # Admission (429 beyond): embedding requests in flight, and their tokens after truncation.
    # The token default admits the largest valid request (items x max_seq_length) when idle.
    "max_concurrent_requests": ("MLX_MAX_CONCURRENT_REQUESTS", 64, 1),
    "max_inflight_tokens": ("MLX_MAX_INFLIGHT_TOKENS", 2048 * 256, 16),
    # waitress threads: at least max_concurrent_requests + PROBE_THREADS, so that probes and
    # refusals always find a thread while admitted requests wait for the worker. None: unset,
    # derived from the concurrency limit by default_http_threads().
    "http_threads": ("MLX_HTTP_THREADS", None, 1),
    "max_connections": ("MLX_MAX_CONNECTIONS", 512, 8),         # open connections (waitress)
    "idle_timeout": ("MLX_IDLE_TIMEOUT", 30, 1),                # s before an idle connection closes
    "request_timeout": ("MLX_REQUEST_TIMEOUT", 120, 1),         # s a request may wait for the worker
    # SIGTERM to exit, shared with the lifecycle (inv mlx stop waits this long before SIGKILL):
    # the service answers what is queued 503, finishes the pass in progress, and is gone well
    # within it.
    "stop_grace": ("MLX_STOP_GRACE", 10, 2),
    # Rows a forward pass takes from further queued requests: 1 = one request per pass (no
    # coalescing; what `inv bench` compares batching against).
    "coalesce_rows": ("MLX_COALESCE_ROWS", 4096, 1),
    # Under concurrent load, ms the worker may wait for the clients it just answered to send
    # their next request before it starts a pass (never at idle; 0: never). 16 one-text
    # clients on 2 cores: 0 -> 286 texts/s, 20 -> 385 texts/s.
    "batch_wait_ms": ("MLX_BATCH_WAIT_MS", 20, 0),
    # Beside other work, a request is admitted only when all the work in flight can be done
    # within this share of MLX_REQUEST_TIMEOUT at the rate the service measures (429 beyond:
    # mlx_service/engine/admission.py). 0: admit by the limits above alone.
    "admission_time_percent": ("MLX_ADMISSION_TIME_PERCENT", 50, 0),
}
SWITCHES = {"1": True, "on": True, "true": True, "yes": True,
            "0": False, "off": False, "false": False, "no": False}


PROBE_THREADS = 8
# Fewest waitress threads when MLX_HTTP_THREADS is unset, however low the concurrency limit.
HTTP_THREADS_FLOOR = 32
LOG_MAX_BYTES = 10 * 1024 * 1024  # MLX_LOG_MAX_BYTES: rotate MLX_LOG_FILE above this
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A setting the service cannot start with; the message says which and why."""


def default_http_threads(max_concurrent_requests: int) -> int:
    """MLX_HTTP_THREADS when unset: enough for the admission limit and the probes."""
    return max(HTTP_THREADS_FLOOR, max_concurrent_requests + PROBE_THREADS)


def check_http_threads(http_threads: int, max_concurrent_requests: int) -> None:
    if http_threads < max_concurrent_requests + PROBE_THREADS:
        raise ConfigError(
            f"MLX_HTTP_THREADS={http_threads} must be at least "
            f"MLX_MAX_CONCURRENT_REQUESTS ({max_concurrent_requests}) + "
            f"{PROBE_THREADS}, so that health probes never wait behind embedding work")


@dataclass(frozen=True)
class Config:
    hosts: tuple[str, ...] = ("127.0.0.1",)
    port: int = 8081
    model: str | None = None          # None: the bundled all-MiniLM-L6-v2
    rerank_model: str | None = None   # RERANK_MODEL: a reranker/classifier folder; None: none
    dim: int | None = None            # None: the model's own
    blas: str = "auto"
    max_batch_items: int = LIMITS["max_batch_items"][1]
    max_request_bytes: int = LIMITS["max_request_bytes"][1]
    queue_size: int = LIMITS["queue_size"][1]
    max_batch_tokens: int = LIMITS["max_batch_tokens"][1]
    http_threads: int | None = None   # None: default_http_threads(max_concurrent_requests)
    request_timeout: int = LIMITS["request_timeout"][1]
    max_concurrent_requests: int = LIMITS["max_concurrent_requests"][1]
    max_inflight_tokens: int = LIMITS["max_inflight_tokens"][1]
    max_connections: int = LIMITS["max_connections"][1]
    idle_timeout: int = LIMITS["idle_timeout"][1]
    stop_grace: int = LIMITS["stop_grace"][1]
    coalesce_rows: int = LIMITS["coalesce_rows"][1]
    batch_wait_ms: int = LIMITS["batch_wait_ms"][1]
    admission_time_percent: int = LIMITS["admission_time_percent"][1]
    cpu_fast: bool = True             # MLX_CPU_FAST: models/fast_bert.py where it applies
    cpu_lanes: int = 0                # MLX_CPU_LANES: threads a batch is split over; 0 = cores
    native_kernels: bool = True       # MLX_NATIVE_KERNELS: kernels/native_math.py's exp/GELU
    precision: str = "auto"           # MLX_PRECISION: auto | fp32 | bf16 (kernels/precision.py)
    log_level: str = "INFO"
    log_file: str | None = None       # MLX_LOG_FILE: write (and rotate) the log there, not stderr
    log_max_bytes: int = LOG_MAX_BYTES
    api_key: str | None = None        # MLX_API_KEY: required as a Bearer token on embeddings

    def __post_init__(self):
        # The same rule load_config enforces holds for a Config built directly.
        if self.http_threads is None:
            object.__setattr__(self, "http_threads",
                               default_http_threads(self.max_concurrent_requests))
        check_http_threads(self.http_threads, self.max_concurrent_requests)

    def limits(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in LIMITS}

    def listen(self) -> str:
        """waitress's `listen=`: one `host:port` per address, space separated."""
        return " ".join(f"[{h}]:{self.port}" if ":" in h else f"{h}:{self.port}"
                        for h in self.hosts)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mlx_service",
        description="Host embedding service (MLX). Flags override MLX_HOST, MLX_PORT, "
                    "EMBEDDINGS_MODEL, RERANK_MODEL, EMBEDDINGS_DIM and MLX_BLAS.",
        epilog="python -m mlx_service --check-model [FOLDER] (--check-rerank-model [FOLDER] "
               "for RERANK_MODEL): whether a model folder "
               "(default: EMBEDDINGS_MODEL) can be served, one line per problem (exit 2).")
    p.add_argument("--host", help="address(es) to listen on, comma separated "
                                  "(env MLX_HOST, default 127.0.0.1)")
    p.add_argument("--port", help="port (env MLX_PORT or CORTEX_MLX_PORT, default 8081)")
    p.add_argument("--model", help="local model folder or hub id "
                                   "(env EMBEDDINGS_MODEL, default: bundled all-MiniLM-L6-v2)")
    p.add_argument("--rerank-model",
                   help="local reranker or classifier folder served beside the embedding model "
                        "(env RERANK_MODEL, default: none; /rerank then ranks by the embedding "
                        "model's cosine similarity)")
    p.add_argument("--dim", help="output dimensions, at most the model's "
                                 "(env EMBEDDINGS_DIM, default: the model's)")
    p.add_argument("--blas", choices=BLAS_MODES,
                   help="Linux CPU matmul library (env MLX_BLAS, default auto: the fastest "
                        "found, by a short cached probe)")
    return p


def _int(name: str, raw: str, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"{minimum}-{maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{name}={value} is out of range ({bound})")
    return value


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    return value if value not in (None, "") else None


def model_settings(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(EMBEDDINGS_MODEL, RERANK_MODEL) as set, None when unset or empty: read here only, for
    the service and its --check-model / --check-rerank-model alike."""
    return _env(environ, "EMBEDDINGS_MODEL"), _env(environ, "RERANK_MODEL")


def parse_hosts(raw: str, name: str = "MLX_HOST") -> tuple[str, ...]:
    hosts = tuple(h.strip().strip("[]") for h in raw.split(",") if h.strip())
    if not hosts:
        raise ConfigError(f"{name}={raw!r} names no address")
    for host in hosts:
        check_listen_host(name, raw, host)
    return tuple(dict.fromkeys(hosts))  # drop duplicates, keep order


def check_listen_host(name: str, raw: str, host: str) -> None:
    """A name the service cannot listen on is the user's to fix, said before anything starts
    (waitress would fail later with a resolver traceback)."""
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP,
                                   flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{name}={raw!r}: {host!r} is not an address to listen on "
                          f"({reason})") from None
    # A name that resolves to another machine's address (8.8.8.8, a LAN peer) fails only at
    # bind time: tried here on port 0, so it is a setting to fix (exit 2), said by verify too.
    refusals = [_bind_refusal(family, sockaddr) for family, _, _, _, sockaddr in found]
    if refusals and all(refusals):
        raise ConfigError(f"{name}={raw!r}: {host!r} is not an address of this machine "
                          f"({refusals[0]}): use 127.0.0.1, 0.0.0.0 or one of its own "
                          "addresses")


def _bind_refusal(family: int, sockaddr: tuple) -> str | None:
    """Why binding a socket to this address on port 0 fails as not ours, else None (any
    other failure, e.g. no IPv6 at all, is left to the real bind)."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((sockaddr[0], 0, *sockaddr[2:]))
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            return exc.strerror or str(exc)
    return None


def check_log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"MLX_LOG_LEVEL={raw!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


def check_log_file(raw: str) -> str:
    """MLX_LOG_FILE must be a file the service can append to (or create)."""
    path = os.path.expanduser(raw)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        problem = "it is a folder"
    elif not os.path.isdir(folder):
        problem = f"its folder {folder} does not exist"
    elif os.path.exists(path) and not os.access(path, os.W_OK):
        problem = "it is not writable"
    elif not os.path.exists(path) and not os.access(folder, os.W_OK):
        problem = f"its folder {folder} is not writable"
    else:
        return path
    raise ConfigError(f"MLX_LOG_FILE={raw!r} cannot be written: {problem}")


def parse_log_max_bytes(environ: Mapping[str, str]) -> int:
    """MLX_LOG_MAX_BYTES, read the one way for the service and for the tasks that rotate its
    log (tasks/host/launch.py): a whole number >= 1, or the default when unset."""
    raw = _env(environ, "MLX_LOG_MAX_BYTES")
    return _int("MLX_LOG_MAX_BYTES", raw, 1) if raw is not None else LOG_MAX_BYTES


class _Problems:
    """Every setting the service refuses, not only the first: a user fixes them in one go."""

    def __init__(self):
        self.found: list[str] = []

    def read(self, reader: Callable[[], T], fallback: T) -> T:
        try:
            return reader()
        except ConfigError as exc:
            self.found.append(str(exc))
            return fallback

    def raise_any(self) -> None:
        if self.found:
            raise ConfigError("; ".join(self.found))


def _choice(name: str, raw: str, allowed: Sequence[str]) -> str:
    if raw not in allowed:
        raise ConfigError(f"{name}={raw!r} is not one of {', '.join(allowed)}")
    return raw


def load_config(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Config:
    """Flags > env > defaults. Raises ConfigError naming every bad setting (or SystemExit from
    argparse for bad flags)."""
    args = build_parser().parse_args(list(argv) if argv is not None else [])
    problems = _Problems()

    host_raw = args.host or _env(environ, "MLX_HOST") or "127.0.0.1"
    hosts = problems.read(lambda: parse_hosts(host_raw, "--host" if args.host else "MLX_HOST"),
                          ("127.0.0.1",))
    port_name, port_raw = "--port", args.port
    if port_raw is None:
        # MLX_PORT wins over the seed's CORTEX_MLX_PORT (same rule as tasks/core/settings.py).
        for name in ("MLX_PORT", "CORTEX_MLX_PORT"):
            if _env(environ, name) is not None:
                port_name, port_raw = name, environ[name]
                break
    port = (problems.read(lambda: _int(port_name, port_raw, 0, 65535), 8081)
            if port_raw is not None else 8081)

    dim_name, dim_raw = ("--dim", args.dim) if args.dim is not None else \
        ("EMBEDDINGS_DIM", _env(environ, "EMBEDDINGS_DIM"))
    dim = problems.read(lambda: _int(dim_name, dim_raw, 1), None) if dim_raw is not None else None

    blas = (args.blas or _env(environ, "MLX_BLAS") or "auto").lower()
    blas = problems.read(lambda: _choice("MLX_BLAS", blas, BLAS_MODES), "auto")

    limits = {}
    for attr, (env_name, default, minimum) in LIMITS.items():
        raw = _env(environ, env_name)
        limits[attr] = (problems.read(lambda: _int(env_name, raw, minimum), default)
                        if raw is not None else default)
    if limits["max_batch_tokens"] < 16:
        problems.found.append("MLX_MAX_BATCH_TOKENS must be at least 16")
    if limits["http_threads"] is not None:  # unset: Config derives it
        problems.read(lambda: check_http_threads(limits["http_threads"],
                                                 limits["max_concurrent_requests"]), None)

    fast_raw = (_env(environ, "MLX_CPU_FAST") or "1").strip().lower()
    if fast_raw not in SWITCHES:
        problems.found.append(f"MLX_CPU_FAST={fast_raw!r} is not one of 1, 0, on, off")
        fast_raw = "1"
    native_raw = (_env(environ, "MLX_NATIVE_KERNELS") or "1").strip().lower()
    if native_raw not in SWITCHES:
        problems.found.append(f"MLX_NATIVE_KERNELS={native_raw!r} is not one of 1, 0, on, off")
        native_raw = "1"
    lanes_raw = _env(environ, "MLX_CPU_LANES")
    lanes = (problems.read(lambda: _int("MLX_CPU_LANES", lanes_raw, 0, 64), 0)
             if lanes_raw is not None else 0)
    precision = (_env(environ, "MLX_PRECISION") or "auto").strip().lower()
    precision = problems.read(lambda: _choice("MLX_PRECISION", precision, PRECISION_MODES),
                              "auto")

    level = problems.read(lambda: check_log_level(_env(environ, "MLX_LOG_LEVEL") or "INFO"),
                          "INFO")
    log_file = _env(environ, "MLX_LOG_FILE")
    log_file = problems.read(lambda: check_log_file(log_file), None) if log_file else None
    log_max_bytes = problems.read(lambda: parse_log_max_bytes(environ), LOG_MAX_BYTES)
    problems.raise_any()
    return Config(hosts=hosts, port=port,
                  model=args.model or model_settings(environ)[0], dim=dim, blas=blas,
                  rerank_model=args.rerank_model or model_settings(environ)[1],
                  cpu_fast=SWITCHES[fast_raw], cpu_lanes=lanes, precision=precision,
                  native_kernels=SWITCHES[native_raw],
                  log_level=level, log_file=log_file, log_max_bytes=log_max_bytes,
                  api_key=_env(environ, "MLX_API_KEY"), **limits)
