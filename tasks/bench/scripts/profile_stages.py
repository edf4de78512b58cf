"""Where one forward pass of the CPU fast path spends its time, by kind of work (one lane).

    [MLX_BLAS=openblas|mkl] .venv-mlx/bin/python tasks/bench/scripts/profile_stages.py
        [--model FOLDER] [--rows 4] [--tokens 256] [--precision fp32|bf16]

Any architecture the fast path runs (BERT, XLM-R, ModernBERT, Qwen3:
mlx_service/models/fast_*.py). The weight matmuls (mlx_service/kernels/gemm.py's Linear) and the
element-wise kernels (native or numpy: `kernels` in the first line) are timed by wrapping
them, with evaluation forced before and after each (MLX is lazy: a sampling profiler
charges a matmul to whichever line evaluates it, which is how an earlier profile blamed
exp and erf for time the matmuls took). The attention step (its two matmuls) and BERT's
LayerNorms are timed the same way; a stage's time excludes the stages timed inside it (the
attention's exp). The rest of the pass (RoPE, residual adds, transposes and copies,
embeddings, pooling) is what remains. One lane, one BLAS thread, as each lane runs when a
batch is split over the cores. Prints ms per pass and per layer, each kind's share, and the
weight matmuls' GFLOPS.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from mlx_service.kernels import blas  # noqa: E402

LINEAR = "weight matmuls (gemm.Linear)"
EXP = "softmax exp"
ACT = "GELU / SiLU gate"
ATTENTION = "attention matmuls (q k^T, weights v)"
NORM = "LayerNorm (MLX)"
# (module, function name, stage): the element-wise kernels, wherever a forward pass looks them up
KERNELS = (("mlx_service.models.fast_bert", "exp_rows_", EXP),
           ("mlx_service.models.fast_bert", "exp_real_rows_", EXP),
           ("mlx_service.models.fast_bert", "gelu_real_rows_", ACT),
           ("mlx_service.models.fast_qwen3", "exp_real_rows_", EXP),
           ("mlx_service.models.fast_qwen3", "swiglu_rows_", ACT),
           ("mlx_service.models.fast_modernbert", "exp_real_rows_", EXP),
           ("mlx_service.models.fast_modernbert", "gelu_real_rows_", ACT),
           ("mlx_service.models.fast_bert", "attend", ATTENTION),
           ("mlx_service.models.fast_gemma3", "attend", ATTENTION),
           ("mlx_service.models.fast_modernbert", "attend", ATTENTION))


def instrument(mx, totals: dict, flops: list) -> None:
    import importlib

    from mlx_service.kernels import gemm

    inner = [0.0]  # seconds spent in stages timed inside the running one

    def timed(stage, fn, count_flops=False):
        def wrapper(*args, **kwargs):
            pending = [a for a in args if isinstance(a, mx.array)]
            if pending:  # work queued before this call is not this stage's
                mx.eval(pending)
            outer, inner[0] = inner[0], 0.0
            started = time.perf_counter()
            out = fn(*args, **kwargs)
            if isinstance(out, mx.array):
                mx.eval(out)
            spent = time.perf_counter() - started
            totals[stage] = totals.get(stage, 0.0) + spent - inner[0]
            inner[0] = outer + spent
            if count_flops:
                x = args[1]
                flops[0] += 2 * x.shape[0] * x.shape[1] * out.shape[1]
            return out
        return wrapper

    gemm.Linear.__call__ = timed(LINEAR, gemm.Linear.__call__, count_flops=True)
    import mlx.nn as nn
    nn.LayerNorm.__call__ = timed(NORM, nn.LayerNorm.__call__)
    for module_name, name, stage in KERNELS:
        module = importlib.import_module(module_name)
        setattr(module, name, timed(stage, getattr(module, name)))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("EMBEDDINGS_MODEL"))
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"))
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one lane's BLAS
    os.environ.setdefault("MKL_NUM_THREADS", "1")       # (oneMKL's too: its bf16 GEMM)
    blas.maybe_reexec(os.environ.get("MLX_BLAS", "auto"), argv,
                      command=[sys.executable, str(Path(__file__).resolve()), *argv],
                      precision=args.precision)

    import mlx.core as mx
    import numpy as np

    from mlx_service.models.embedder import Embedder
    from mlx_service.models.folder import read_config, read_spec

    spec = read_spec(args.model)
    embedder = Embedder(spec, cpu_fast=True, lanes=1, precision=args.precision)
    if embedder.forward != "cpu-fast":
        print("the CPU fast path does not apply to this model here (GPU, quantized, or an "
              "architecture without one)")
        return 1
    rows, width = args.rows, args.tokens
    ids = np.random.default_rng(0).integers(5, 2000, size=(rows, width)).astype(np.int32)
    mask = np.ones((rows, width), np.int32)
    totals: dict[str, float] = {}
    flops = [0]
    instrument(mx, totals, flops)

    def one_pass() -> None:
        mx.eval(embedder.hidden_states(ids, mask))

    one_pass()
    totals.clear()
    flops[0] = 0
    started = time.perf_counter()
    for _ in range(args.repeats):
        one_pass()
    per_pass = (time.perf_counter() - started) / args.repeats
    layers = int(read_config(spec.path).get("num_hidden_layers") or 1)
    print(f"{spec.name}: {rows} rows x {width} tokens, one lane, BLAS: {blas.blas_in_use()}, "
          f"precision {embedder.precision}, kernels {embedder.kernels}: "
          f"{per_pass * 1e3:.0f} ms per pass, "
          f"{per_pass * 1e3 / layers:.1f} ms per layer ({layers} layers)")
    rest = per_pass - sum(totals.values()) / args.repeats
    for name, seconds in sorted([*((k, v / args.repeats) for k, v in totals.items()),
                                 ("the rest: RoPE, residuals, copies, embeddings", rest)],
                                key=lambda kv: -kv[1]):
        print(f"  {name:50s} {seconds * 1e3:7.1f} ms  {100 * seconds / per_pass:5.1f} %")
    linear_s = totals.get(LINEAR, 0.0)
    if linear_s:
        print(f"  weight matmuls: {flops[0] / linear_s / 1e9:.0f} GFLOPS")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
