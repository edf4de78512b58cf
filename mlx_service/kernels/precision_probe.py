"""MLX_PRECISION=auto's measurement: the model's own first layer, its real fast-path Linears
(mlx_service/kernels/gemm.py, as the lanes run them: one BLAS thread), timed in fp32 and in bf16,
interleaved, at a few-token request's rows and a chunk's. Cached per machine, BLAS file,
MLX version and layer shapes in a small JSON file in the venv (as mlx_service/kernels/blas_cache.py
caches the BLAS probe), so it runs at the first start only: about half a second on MiniLM.
precision.decide weighs the figures."""
from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Callable, Mapping

from mlx_service.kernels.blas_cache import (library_file_identity, machine_identity, mlx_version,
                                    read_cache, write_json)
from mlx_service.kernels.precision import Timing

CACHE_NAME = "mlx-precision-probe.json"
CACHE_SCHEMA = 1
PROBE_ROWS = (32, 512)   # a short request's tokens; a lane's share of a chunk of texts
REPEATS = 5              # best of, per precision, interleaved


def cache_path(environ: Mapping[str, str] = os.environ, prefix: str = sys.prefix) -> Path:
    return Path(environ.get("MLX_PRECISION_CACHE") or os.path.join(prefix, CACHE_NAME))


def cache_key(machine: str, library: str, mlx: str, shapes) -> str:
    text = f"{machine}\n{library}\nmlx {mlx}\n{sorted(shapes)}\n{PROBE_ROWS}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def first_layer_linears(kernels, precision: str) -> list:
    """The weight matmuls of the first layer in `precision` (converted now if need be)."""
    from mlx_service.kernels import gemm
    kernels.use(precision)
    return [k for k in kernels.layer_kernels[0] if isinstance(k, gemm.Linear)]


def time_layer(kernels, repeats: int = REPEATS,
               clock: Callable[[], float] = time.perf_counter) -> Timing:
    """fp32 and bf16 milliseconds for one pass of the first layer's Linears at each of
    PROBE_ROWS (summed), best of `repeats`, the two precisions alternating. Leaves the
    kernels on the precision they were on."""
    import mlx.core as mx
    was = kernels.precision
    linears = {p: first_layer_linears(kernels, p) for p in ("fp32", "bf16")}
    kernels.use(was)
    inputs = [mx.random.normal((rows, lin.in_features)) for rows in PROBE_ROWS
              for lin in linears["fp32"]]
    mx.eval(inputs)

    def one_pass(precision: str) -> float:
        started = clock()
        for i, x in enumerate(inputs):
            mx.eval(linears[precision][i % len(linears[precision])](x))
        return clock() - started

    best = {"fp32": float("inf"), "bf16": float("inf")}
    for p in best:  # warm: pages in, packs touched
        one_pass(p)
    for _ in range(repeats):
        for p in best:
            best[p] = min(best[p], one_pass(p))
    return Timing(best["fp32"] * 1e3, best["bf16"] * 1e3)


def layer_shapes(kernels) -> list[tuple[int, int]]:
    return [(lin.in_features, lin.out_features) for lin in first_layer_linears(kernels, "fp32")]


def measured_timing(kernels, threads=None, environ: Mapping[str, str] = os.environ,
                    prefix: str = sys.prefix, library: str = "") -> Timing:
    """The cached Timing for this machine, library and model shapes, else measured now (on
    one BLAS thread: `threads`, fast_bert.BlasThreads) and cached."""
    if kernels.precision != "fp32":
        kernels.use("fp32")
    key = cache_key(machine_identity(), library_file_identity(library), mlx_version(prefix),
                    layer_shapes(kernels))
    path = cache_path(environ, prefix)
    cache = read_cache(path)
    entries = dict(cache.get("entries", {})) if cache.get("schema") == CACHE_SCHEMA else {}
    hit = entries.get(key)
    if isinstance(hit, dict) and hit.get("fp32_ms", 0) > 0 and hit.get("bf16_ms", 0) > 0:
        return Timing(float(hit["fp32_ms"]), float(hit["bf16_ms"]), "cached probe")
    if threads is not None:
        threads.set(1)
    try:
        timing = time_layer(kernels)
    finally:
        if threads is not None:
            threads.restore()
    entries[key] = {"fp32_ms": round(timing.fp32_ms, 3), "bf16_ms": round(timing.bf16_ms, 3),
                    "measured": time.time()}
    write_json(path, {"schema": CACHE_SCHEMA, "entries": entries})
    return timing
