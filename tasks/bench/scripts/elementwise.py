"""Where should the CPU fast path's element-wise work run? numpy (today) vs MLX, plain or fused.

    .venv-mlx/bin/python tasks/bench/scripts/elementwise.py [--rows 2048] [--repeats 7]

Times, on one core (as each lane runs), the erf GELU over the FFN's (rows, 1536) activations
and the softmax exp over (8, 12, 256, 256)-sized attention scores, in every way at hand
(and the residual add + LayerNorm over (rows, 384), which stays in MLX today):
numpy in place (mlx_service.models.fast_bert), MLX's own ops, and the same ops fused by mx.compile.
Prints one JSON line; the median of the repeats, milliseconds, and each way's worst error.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

# The repo root: mlx_service, and tasks.bench.stats (standard library only, as this venv needs).
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tasks.bench.stats import median  # noqa: E402


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(median(times), 2)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    import mlx.core as mx
    import numpy as np

    from mlx_service.models import fast_bert

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((args.rows, 1536)) * 2).astype(np.float32)
    xm = mx.array(x)
    mx.eval(xm)
    sqrt1_2 = 1 / math.sqrt(2)
    exact = x.astype(np.float64) * 0.5 * (1 + np.vectorize(math.erf)(x.astype(np.float64) * sqrt1_2))

    def mlx_gelu(v):
        return v * 0.5 * (1 + mx.erf(v * sqrt1_2))

    def mlx_gelu_as(v):  # A&S 7.1.26 with mx.exp, as fast_bert does in numpy
        a = mx.abs(v)
        t = 1 / (1 + fast_bert._P * sqrt1_2 * a)
        poly = t * (fast_bert._A[0] + t * (fast_bert._A[1] + t * (fast_bert._A[2] + t * (
            fast_bert._A[3] + t * fast_bert._A[4]))))
        return mx.maximum(v, 0) - a * 0.5 * poly * mx.exp(-0.5 * v * v)

    fused_gelu, fused_gelu_as = mx.compile(mlx_gelu), mx.compile(mlx_gelu_as)
    ways = {
        "numpy in place (today)": lambda: fast_bert.gelu_erf_(x.copy()),
        "mlx ops (erf)": lambda: mx.eval(mlx_gelu(xm)),
        "mx.compile (erf)": lambda: mx.eval(fused_gelu(xm)),
        "mx.compile (A&S with exp)": lambda: mx.eval(fused_gelu_as(xm)),
    }
    copy_ms = timed(lambda: x.copy(), args.repeats)
    gelu = {}
    for name, fn in ways.items():
        out = np.asarray(fn() if name.startswith("numpy") else
                         {"mlx ops (erf)": mlx_gelu, "mx.compile (erf)": fused_gelu,
                          "mx.compile (A&S with exp)": fused_gelu_as}[name](xm))
        gelu[name] = {"ms": timed(fn, args.repeats),
                      "max_error": float(np.abs(out - exact).max())}
    gelu["numpy in place (today)"]["ms"] = round(gelu["numpy in place (today)"]["ms"] - copy_ms, 2)

    scores = (rng.standard_normal((8, 12, 256, 256)) * 4).astype(np.float32)
    sm = mx.array(scores)
    mx.eval(sm)

    def mlx_exp_rows(s):
        e = mx.exp(s - mx.max(s, axis=-1, keepdims=True))
        return e, mx.sum(e, axis=-1, keepdims=True)

    fused_exp = mx.compile(mlx_exp_rows)
    s_copy_ms = timed(lambda: scores.copy(), args.repeats)
    softmax = {
        "numpy in place (today)": round(timed(lambda: fast_bert.exp_rows_(scores.copy(), None),
                                              args.repeats) - s_copy_ms, 2),
        "mlx ops": timed(lambda: mx.eval(*mlx_exp_rows(sm)), args.repeats),
        "mx.compile": timed(lambda: mx.eval(*fused_exp(sm)), args.repeats),
        "mx.softmax (precise)": timed(lambda: mx.eval(mx.softmax(sm, axis=-1, precise=True)),
                                      args.repeats),
    }
    # LayerNorm (with the residual add before it), as BertSelfOutput/BertOutput run it in MLX.
    h = mx.array(rng.standard_normal((args.rows, 384)).astype(np.float32))
    r = mx.array(rng.standard_normal((args.rows, 384)).astype(np.float32))
    w, b = mx.ones((384,)), mx.zeros((384,))
    mx.eval(h, r, w, b)
    hn, rn, wn, bn = (np.asarray(a) for a in (h, r, w, b))

    def numpy_layer_norm():
        y = hn + rn
        y -= y.mean(-1, keepdims=True)
        y /= np.sqrt((y * y).mean(-1, keepdims=True) + np.float32(1e-12))
        return y * wn + bn

    layer_norm = {
        "mx.fast.layer_norm (today)": timed(
            lambda: mx.eval(mx.fast.layer_norm(h + r, w, b, 1e-12)), args.repeats),
        "numpy": timed(numpy_layer_norm, args.repeats),
    }
    print(json.dumps({"gelu_rows": args.rows, "gelu": gelu, "softmax_exp_ms": softmax,
                      "layer_norm_ms": layer_norm}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
