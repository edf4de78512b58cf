"""Where one forward pass of the CPU fast path spends its time, stage by stage (one lane).

    .venv-mlx/bin/python tasks/bench/scripts/profile_stages.py [--rows 4] [--tokens 256]

Runs mlx_service/cpu_fast.py's CpuBertForward step by step, forcing evaluation after each
stage (MLX is lazy: a sampling profiler charges a matmul to whichever line evaluates it,
which is how an earlier profile blamed exp and erf for time the matmuls took). One lane, one
BLAS thread, as each lane runs when a batch is split over the cores. Prints ms per pass and
the share of each stage, and the matmuls' GFLOPS.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from mlx_service import blas  # noqa: E402

MATMULS = ("qkv matmul", "scores matmul", "weights x V matmul", "attention output matmul",
           "intermediate matmul", "output matmul")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one lane's BLAS
    blas.maybe_reexec("auto", argv, command=[sys.executable, str(Path(__file__).resolve()), *argv])

    import mlx.core as mx
    import numpy as np
    from mlx_service import cpu_fast as fast
    from mlx_service.models.embedder import Embedder
    from mlx_service.models.folder import read_spec

    forward = Embedder(read_spec(None), cpu_fast=True, lanes=1)._fast
    if forward is None:
        print("the CPU fast path does not apply here (GPU, or not a BERT model)")
        return 1
    rows, width = args.rows, args.tokens
    ids = np.random.default_rng(0).integers(1000, 20000, size=(rows, width)).astype(np.int32)
    totals: dict[str, float] = {}

    def stage(name: str, started: float, *arrays) -> float:
        mx.eval(*arrays)
        now = time.perf_counter()
        totals[name] = totals.get(name, 0.0) + now - started
        return now

    def one_pass() -> None:
        t = time.perf_counter()
        x = forward.model.embeddings(mx.array(ids))
        t = stage("embeddings", t, x)
        for layer, heads, head_dim, wqkv, bqkv in forward.layers:
            hidden = heads * head_dim
            qkv = mx.addmm(bqkv, x.reshape(rows * width, hidden), wqkv)
            t = stage("qkv matmul", t, qkv)
            qkv = mx.contiguous(qkv.reshape(rows, width, 3, heads, head_dim)
                                .transpose(2, 0, 3, 1, 4))
            t = stage("qkv to heads (copy)", t, qkv)
            scores = qkv[0] @ qkv[1].transpose(0, 1, 3, 2)
            t = stage("scores matmul", t, scores)
            sums = fast.exp_rows_(fast._writable(scores), None)
            t = stage("softmax exp (numpy)", t)
            ctx = scores @ qkv[2]
            t = stage("weights x V matmul", t, ctx)
            ctx = (ctx * mx.array(np.reciprocal(sums))).transpose(0, 2, 1, 3).reshape(
                rows, width, hidden)
            t = stage("softmax division, heads back", t, ctx)
            dense = layer.attention.output.dense(ctx)
            t = stage("attention output matmul", t, dense)
            attended = layer.attention.output.LayerNorm(dense + x)
            t = stage("layer norms", t, attended)
            inner = layer.intermediate.dense(attended)
            t = stage("intermediate matmul", t, inner)
            fast.gelu_erf_(fast._writable(inner))
            t = stage("GELU erf (numpy)", t)
            out = layer.output.dense(inner)
            t = stage("output matmul", t, out)
            x = layer.output.LayerNorm(out + attended)
            t = stage("layer norms", t, x)

    one_pass()
    totals.clear()
    started = time.perf_counter()
    for _ in range(args.repeats):
        one_pass()
    per_pass = (time.perf_counter() - started) / args.repeats
    layers = len(forward.layers)
    h, f = hidden_size(forward), intermediate(forward)
    # per token and layer: q, k, v, output projections; the feed-forward pair; attention
    flops = layers * rows * width * (8 * h * h + 4 * h * f + 4 * width * h)
    print(f"{rows} rows x {width} tokens, one lane, BLAS: {blas.blas_in_use()}: "
          f"{per_pass * 1e3:.0f} ms per pass")
    for name, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        share = seconds / args.repeats / per_pass
        print(f"  {name:30s} {seconds / args.repeats * 1e3:7.1f} ms  {100 * share:5.1f} %")
    matmul_s = sum(totals.get(n, 0.0) for n in MATMULS) / args.repeats
    print(f"  matmuls together: {100 * matmul_s / per_pass:.1f} %, {flops / matmul_s / 1e9:.0f} GFLOPS")
    return 0


def hidden_size(forward) -> int:
    _, heads, head_dim, _, _ = forward.layers[0]
    return heads * head_dim


def intermediate(forward) -> int:
    return int(forward.layers[0][0].intermediate.dense.weight.shape[0])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
