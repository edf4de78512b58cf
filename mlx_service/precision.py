"""Which precision the fast path's matmuls run in (MLX_PRECISION=auto|fp32|bf16), and why.

bf16 pays only where the CPU has bf16 units (AMX-BF16, AVX512_BF16) and a library drives them
(oneMKL's cblas_gemm_bf16bf16f32; OpenBLAS as Debian and numpy ship it exports none): there
oneMKL's bf16 GEMM measured 1.6-4x its float32 one on the model's shapes (DESIGN.md). `auto`
takes it only when both are there and the start-up self-check passes; elsewhere fp32, with
the reason in the log and /info.

The self-check embeds a fixed probe set on the serving path and on a reference path (numpy's
own bundled BLAS, float32) and needs min cos >= CHECK_MIN_COS: it catches a bf16 path that
loses too much and a preloaded BLAS that computes wrong.

`decide` is pure: the hardware and library facts come in as arguments.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from mlx_service.cpu_info import cpu_flags

MODES = ("auto", "fp32", "bf16")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo's names for the bf16 units
CHECK_MIN_COS = 0.9999
# Fixed probes: mixed lengths, punctuation, digits, non-ASCII words (pads, masks, positions);
# short, since they run twice at every start (about 0.15 s on MiniLM, 2 shared Zen 3 cores).
PROBE_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Embeddings map text to vectors; similar meanings land close together.",
    "A short one.",
    "Numbers like 3.14159 and 2026 appear in prose, as do names such as Zürich and São Paulo; "
    "this row is the longest, so the others carry padding.",
)


@dataclass(frozen=True)
class Choice:
    precision: str          # fp32 | bf16 | bf16-emulated: what the fast path's Linears use
    reason: str             # one sentence for the log and /info
    check: bool = True      # run the self-check before serving


def cpu_bf16_units(cpuinfo: str | None = None) -> tuple[str, ...]:
    """The bf16 unit flags this CPU reports (empty: none, or not Linux)."""
    flags = cpu_flags(cpuinfo)
    return tuple(f for f in BF16_FLAGS if f in flags)


def decide(mode: str, fast_path: bool, units: Iterable[str], library: bool) -> Choice:
    """mode: MLX_PRECISION; fast_path: a fast forward runs this model (the MLX layers have no
    bf16 path); units: cpu_bf16_units(); library: oneMKL's bf16 GEMM is loaded."""
    units = tuple(units)
    if not fast_path:
        return Choice("fp32", f"{mode}: fp32, this model's forward pass has no bf16 path "
                      "(MLX layers, or not a CPU)", check=False)
    if mode == "fp32":
        return Choice("fp32", "fp32: MLX_PRECISION=fp32")
    if mode == "bf16":
        if units and library:
            return Choice("bf16", f"bf16: MLX_PRECISION=bf16, {'/'.join(units)} with oneMKL")
        missing = ("no bf16 units (AMX-BF16, AVX512_BF16)" if not units else
                   "no bf16 GEMM loaded (`inv mlx install --blas mkl`)")
        return Choice("bf16-emulated", f"bf16 emulated: MLX_PRECISION=bf16 but {missing}: "
                      "operands rounded to bf16 on the float32 GEMM (bf16's accuracy, not "
                      "its speed)")
    if not units:
        return Choice("fp32", "auto: fp32, this CPU has no bf16 units (AMX-BF16, AVX512_BF16)")
    if not library:
        return Choice("fp32", f"auto: fp32, the CPU has {'/'.join(units)} but no bf16 GEMM "
                      "is loaded: `inv mlx install --blas mkl` adds oneMKL's")
    return Choice("bf16", f"auto: bf16, {'/'.join(units)} with oneMKL's bf16 GEMM")


def wants_onemkl(precision_mode: str, units: Iterable[str], mkl_found: bool) -> str | None:
    """MLX_BLAS=auto's reason to take oneMKL without comparing float32 speed: the CPU has bf16
    units, oneMKL is installed and MLX_PRECISION allows bf16 (OpenBLAS has no bf16 GEMM, so
    picking it on float32 speed alone would rule bf16 out). None: let the probe decide."""
    units = tuple(units)
    if not (units and mkl_found) or precision_mode.strip().lower() == "fp32":
        return None
    return (f"auto: mkl for its bf16 GEMM (this CPU has {'/'.join(units)}, "
            f"MLX_PRECISION={precision_mode.strip().lower() or 'auto'})")


def min_cosine(a, b) -> float:
    """Smallest row-wise cosine between two (rows, dim) arrays."""
    import numpy as np
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float((num / np.maximum(den, 1e-30)).min())


def self_check(choice: Choice, embed: Callable[[str], object]) -> tuple[Choice, float]:
    """Runs the probes with `embed(precision)` on the chosen path and on `reference`; a
    failure falls back to fp32 (checked in turn) and says so. Returns (final, min cos)."""
    want = embed("reference")
    try:
        cos = min_cosine(embed(choice.precision), want)
    except Exception as exc:  # a bf16 GEMM that refuses (bad library): fp32 serves instead
        if choice.precision == "fp32":
            raise
        fp32_cos = min_cosine(embed("fp32"), want)
        return Choice("fp32", f"fp32: {choice.precision} failed the self-check "
                      f"({type(exc).__name__}: {exc}); fp32 min cos {fp32_cos:.6f}"), fp32_cos
    if cos >= CHECK_MIN_COS:
        return Choice(choice.precision, f"{choice.reason}; self-check min cos {cos:.6f}"), cos
    if choice.precision == "fp32":
        return Choice("fp32", f"{choice.reason}; SELF-CHECK FAILED: min cos {cos:.6f} < "
                      f"{CHECK_MIN_COS} against numpy's BLAS: the preloaded BLAS computes "
                      "wrong (try MLX_BLAS=reference)"), cos
    fp32_cos = min_cosine(embed("fp32"), want)
    verdict = ("" if fp32_cos >= CHECK_MIN_COS else
               f"; fp32 FAILED too (min cos {fp32_cos:.6f}): the BLAS computes wrong")
    return Choice("fp32", f"fp32: {choice.precision} failed the self-check (min cos {cos:.6f}"
                  f" < {CHECK_MIN_COS}){verdict}"), fp32_cos
