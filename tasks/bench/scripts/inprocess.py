"""In-process MLX throughput: the service's own model code, no HTTP. Run in the service venv.

    .venv-mlx/bin/python tasks/bench/scripts/inprocess.py [--blas auto|openblas|mkl|reference] \
        [--model M]

Speaks worker.py's line protocol (beside this file). Each batch goes the way the service's inference thread
takes a request (tokenize, plan_batches into forward passes capped by MLX_MAX_BATCH_TOKENS,
embed each pass, reassemble rows in order), minus HTTP, JSON and the queue: so
"service efficiency" = HTTP / this measures what serving costs, not a different algorithm. It picks the BLAS the same way the service does
(mlx_service.kernels.blas: the chosen library preloaded by a re-exec on Linux; auto reads the same
probe cache), so that "service efficiency" compares HTTP against the very same matmul library.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The repo root (mlx_service) and this folder (worker); nothing from tasks/ (its invoke,
# dotenv and friends are not in the service venv).
sys.path[:0] = [str(HERE.parents[2]), str(HERE)]

from mlx_service.kernels import blas  # noqa: E402
from worker import serve  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blas", default=os.environ.get("MLX_BLAS", "auto"),
                        choices=("auto", *blas.LIBRARIES))
    parser.add_argument("--model", default=os.environ.get("EMBEDDINGS_MODEL"))
    args = parser.parse_args(argv)

    from mlx_service.config import load_config
    # MLX_MAX_BATCH_TOKENS, MLX_CPU_FAST, MLX_CPU_LANES, MLX_PRECISION: as the service reads them
    config = load_config([], os.environ)
    # The same choice and re-exec as the service: LD_PRELOAD is read at exec time.
    try:
        blas.maybe_reexec(args.blas, argv,
                          command=[sys.executable, str(Path(__file__).resolve()), *argv],
                          precision=config.precision)
    except blas.BlasError as exc:
        print(f"inprocess: {exc}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    import mlx.core as mx
    import numpy as np
    from mlx_service.models.embedder import Embedder
    from mlx_service.models.folder import read_spec

    embedder = Embedder(read_spec(args.model), cpu_fast=config.cpu_fast, lanes=config.cpu_lanes,
                        precision=config.precision)
    load_seconds = time.perf_counter() - started

    max_tokens = config.max_batch_tokens
    try:
        from mlx_service.models.batch_plan import plan_batches
    except ImportError:  # a service without a planner: one forward pass per batch
        def plan_batches(lengths, max_tokens):
            return [list(range(len(lengths)))]

    def embed_batch(texts):
        rows = embedder.tokenize(list(texts))
        out = [None] * len(rows)
        for part in plan_batches([len(r) for r in rows], max_tokens):
            vectors = embedder.embed([rows[i] for i in part])
            for k, i in enumerate(part):
                out[i] = vectors[k]
        return np.stack(out)

    info = {
        "engine": "mlx-inprocess",
        "model": embedder.spec.name,
        "blas": blas.blas_in_use(),
        "blas_choice": blas.current_choice(),
        "mlx": getattr(mx, "__version__", "?"),
        "device": str(mx.default_device()),
        "load_seconds": round(load_seconds, 3),
        "max_batch_tokens": max_tokens,
        "forward": getattr(embedder, "forward", "mlx"),
        "cpu_lanes": getattr(embedder, "lanes", 1),
        "precision": getattr(embedder, "precision", "fp32"),
        "layers": _layers(args.model),
    }
    serve(embed_batch, info)
    return 0


def _layers(folder) -> int | None:
    """config.json's num_hidden_layers (the bench reports time per layer)."""
    from mlx_service.models.folder import read_config, read_spec
    try:
        return int(read_config(read_spec(folder).path).get("num_hidden_layers"))
    except (TypeError, ValueError, OSError):
        return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
