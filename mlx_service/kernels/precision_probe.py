"""MLX_PRECISION=auto's measurement: the model's own first layer, its real fast-path Linears
(mlx_service/kernels/gemm.py, as the lanes run them: one BLAS thread), timed in fp32 and in bf16
on each bf16 GEMM the process has (oneMKL's, the native one), interleaved, at a few-token
request's rows and a chunk's. Cached per machine, BLAS file, bf16 GEMMs, MLX version and
layer shapes in a small JSON file in the venv (as mlx_service/kernels/blas_cache.py
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
CACHE_SCHEMA = 2  # 2: each bf16 GEMM's figure
PROBE_ROWS = (32, 512)   # a short request's tokens; a lane's share of a chunk of texts
REPEATS = 5              # best of, per precision, interleaved


def cache_path(environ: Mapping[str, str] = os.environ, prefix: str = sys.prefix) -> Path:
    return Path(environ.get("MLX_PRECISION_CACHE") or os.path.join(prefix, CACHE_NAME))


def cache_key(machine: str, library: str, mlx: str, shapes) -> str:
    text = f"{machine}\n{library}\nmlx {mlx}\n{sorted(shapes)}\n{PROBE_ROWS}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def first_layer_linears(kernels, precision: str, bf16_gemm=None) -> list:
    """The weight matmuls of the first layer in `precision`: fp32's as the kernels keep them
    (converted now if need be); bf16's made for this call on `bf16_gemm` (the first layer
    only: each GEMM timed packs one layer, not the model)."""
    from mlx_service.kernels import gemm
    if precision == "fp32":
        kernels.use(precision)
        layer = kernels.layer_kernels[0]
    else:
        layer = kernels.one_layer(precision, bf16_gemm)
    return [k for k in layer if isinstance(k, gemm.Linear)]


def time_layer(kernels, repeats: int = REPEATS,
               clock: Callable[[], float] = time.perf_counter,
               gemms: Mapping[str, object] | None = None) -> Timing:
    """fp32 and bf16 milliseconds for one pass of the first layer's Linears at each of
    PROBE_ROWS (summed), best of `repeats`, the paths alternating. bf16 on each of `gemms`
    (name -> GEMM; default the kernels' own): the fastest is the Timing's bf16, the others
    are named in it. Leaves the kernels on the precision they were on."""
    import mlx.core as mx
    was = kernels.precision
    gemms = dict(gemms) if gemms else {getattr(kernels.bf16_gemm, "name", "bf16"):
                                       kernels.bf16_gemm}
    linears = {"fp32": first_layer_linears(kernels, "fp32")}
    for name, fn in gemms.items():
        linears[name] = first_layer_linears(kernels, "bf16", fn)
    kernels.use(was)
    inputs = [mx.random.normal((rows, lin.in_features)) for rows in PROBE_ROWS
              for lin in linears["fp32"]]
    mx.eval(inputs)

    def one_pass(path: str) -> float:
        started = clock()
        for i, x in enumerate(inputs):
            mx.eval(linears[path][i % len(linears[path])](x))
        return clock() - started

    best = {path: float("inf") for path in linears}
    for path in best:  # warm: pages in, packs touched
        one_pass(path)
    for _ in range(repeats):
        for path in best:
            best[path] = min(best[path], one_pass(path))
    return timing_from({path: ms * 1e3 for path, ms in best.items()})


def timing_from(ms: Mapping[str, float], source: str = "measured now") -> Timing:
    """{"fp32": ms, <bf16 GEMM name>: ms, ...} -> the Timing of the fastest bf16 GEMM."""
    bf16 = sorted((v, k) for k, v in ms.items() if k != "fp32")
    (fastest_ms, fastest), rest = bf16[0], bf16[1:]
    return Timing(ms["fp32"], fastest_ms, source, fastest,
                  tuple((name, v) for v, name in rest))


def layer_shapes(kernels) -> list[tuple[int, int]]:
    return [(lin.in_features, lin.out_features) for lin in first_layer_linears(kernels, "fp32")]


def measured_timing(kernels, threads=None, environ: Mapping[str, str] = os.environ,
                    prefix: str = sys.prefix, library: str = "",
                    gemms: Mapping[str, object] | None = None) -> Timing:
    """The cached Timing for this machine, library, bf16 GEMMs and model shapes, else
    measured now (on one BLAS thread: `threads`, fast_bert.BlasThreads) and cached."""
    if kernels.precision != "fp32":
        kernels.use("fp32")
    names = sorted(gemms) if gemms else []
    files = [getattr(g, "path", "") for g in (gemms or {}).values()]
    key = cache_key(machine_identity(), "\n".join([library_file_identity(library), *names,
                                                   *files]),
                    mlx_version(prefix), layer_shapes(kernels))
    path = cache_path(environ, prefix)
    cache = read_cache(path)
    entries = dict(cache.get("entries", {})) if cache.get("schema") == CACHE_SCHEMA else {}
    hit = entries.get(key)
    if isinstance(hit, dict) and isinstance(hit.get("ms"), dict) and len(hit["ms"]) > 1 \
            and "fp32" in hit["ms"] and all(isinstance(v, (int, float)) and v > 0 for v in hit["ms"].values()):
        return timing_from({k: float(v) for k, v in hit["ms"].items()}, "cached probe")
    if threads is not None:
        threads.set(1)
    try:
        timing = time_layer(kernels, gemms=gemms)
    finally:
        if threads is not None:
            threads.restore()
    figures = {"fp32": timing.fp32_ms, timing.bf16_gemm: timing.bf16_ms, **dict(timing.others)}
    entries[key] = {"ms": {k: round(v, 3) for k, v in figures.items()}, "measured": time.time()}
    write_json(path, {"schema": CACHE_SCHEMA, "entries": entries})
    return timing
