"""The BLAS probe's own process: `python -m mlx_service.kernels.blas_probe` prints one JSON
line with the GEMM figures of the BLAS it runs on (mlx_service/kernels/blas.py starts one per
library, each with that library preloaded)."""
from __future__ import annotations

import json
import math
import sys
import time
from typing import Callable, Sequence

from mlx_service.kernels.blas import (NATIVE_BF16_FLAG, PROBE_BUDGET_S, PROBE_SHAPES,
                                      blas_in_use, blas_kernels, loaded_libraries)


def probe_gemms(shapes: Sequence[tuple[int, int, int]] = PROBE_SHAPES,
                budget_s: float = PROBE_BUDGET_S, native_bf16: bool = False) -> dict:
    """GFLOPS of this process's BLAS on each shape (one BLAS thread, as a lane runs); with
    native_bf16, the native bf16 GEMM's too (it does not depend on the BLAS: one probe of
    the several gives it, blas.probe_library says which).

    A first multiply on a slice of the rows tells how fast the library is; a fast one is then
    timed on the full shape (best of a few), a slow one (MLX's reference) keeps the estimate,
    so no library takes more than about budget_s.
    """
    import mlx.core as mx

    check_product(mx)
    per_shape = budget_s / len(shapes)
    figures = {}
    for m, k, n in shapes:
        b = mx.random.normal((k, n))
        small = mx.random.normal((max(1, m // 8), k))
        mx.eval(b, small)
        mx.eval(small @ b)  # warm: page in, thread pools up
        t = _timed(lambda: mx.eval(small @ b))
        rows, best = small.shape[0], t
        if t * 8 * 3 < per_shape:
            a = mx.random.normal((m, k))
            mx.eval(a)
            rows = m
            best = min(_timed(lambda: mx.eval(a @ b)) for _ in range(3))
        figures[f"{m}x{k}x{n}"] = 2.0 * rows * k * n / best / 1e9
    result = {"gflops": round(_mean(figures), 1),
              "shapes": {s: round(v, 1) for s, v in figures.items()}}
    infos = loaded_libraries()
    result["library"] = blas_in_use(infos=infos)
    kernels = blas_kernels(infos=infos)
    if kernels:  # OpenBLAS's core type: a forced older one halves its speed on some CPUs
        result["kernels"] = kernels
    bf16 = probe_bf16(shapes)
    if bf16:
        result.update(bf16_gflops=round(_mean(bf16), 1),
                      bf16_shapes={s: round(v, 1) for s, v in bf16.items()})
    native = probe_bf16(shapes, native=True) if native_bf16 else {}
    if native:
        result["native_bf16_gflops"] = round(_mean(native), 1)
    return result


def probe_bf16(shapes: Sequence[tuple[int, int, int]] = PROBE_SHAPES, native: bool = False,
               ) -> dict[str, float]:
    """GFLOPS of the fast path's bf16 Linear (mlx_service/kernels/gemm.py: packed weight, native
    rounding, bias, the copy back into MLX) on each shape, where this BLAS has a bf16 GEMM
    (oneMKL), or with native=True on the native one (native_bf16.py, where the CPU has
    AVX512_BF16); {} where there is none. What MLX_BLAS=auto weighs oneMKL's bf16 against
    float32 and the native bf16 with."""
    import mlx.core as mx

    from mlx_service.kernels import gemm, native_bf16, native_math

    if native:
        library = native_bf16.load(True)[0]
    else:
        library = gemm.bf16_gemm_function(native_math.load(True)[0])
    if library is None:
        return {}
    figures = {}
    for m, k, n in shapes:
        w, bias, x = mx.random.normal((n, k)), mx.zeros((n,)), mx.random.normal((m, k))
        mx.eval(w, bias, x)
        linear = gemm.Linear(w, bias, "bf16", library)
        mx.eval(linear(x))  # warm
        best = min(_timed(lambda: mx.eval(linear(x))) for _ in range(3))
        figures[f"{m}x{k}x{n}"] = 2.0 * m * k * n / best / 1e9
    return figures


def _mean(figures: dict[str, float]) -> float:
    """Geometric mean: each shape counts alike, whatever its size."""
    return math.exp(sum(math.log(v) for v in figures.values()) / len(figures))


def check_product(mx) -> None:
    """Raise when this BLAS multiplies wrong (a preload that loads but computes garbage, or
    a library that is not the one its name says): a figure from it must not win the choice."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((96, 384)).astype(np.float32)
    b = rng.standard_normal((384, 160)).astype(np.float32)
    got = np.array(mx.array(a) @ mx.array(b), dtype=np.float64)
    want = a.astype(np.float64) @ b.astype(np.float64)
    error = float(np.abs(got - want).max() / np.abs(want).max())
    if not error < 1e-4:
        raise RuntimeError(f"the BLAS computes wrong: relative error {error:.2e}")


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return max(time.perf_counter() - t0, 1e-9)


if __name__ == "__main__":
    print(json.dumps(probe_gemms(native_bf16=NATIVE_BF16_FLAG in sys.argv[1:])))
