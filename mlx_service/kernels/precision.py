"""Which precision the fast path's matmuls run in (MLX_PRECISION=auto|fp32|bf16), and why.

bf16 can pay only where the CPU has bf16 units (AMX-BF16, AVX512_BF16) and a GEMM drives
them: oneMKL's cblas_gemm_bf16bf16f32, or our own on AVX512_BF16 (native_bf16.py; OpenBLAS as
Debian and numpy ship it exports none). Where both are loaded the probe times both.
Whether it does is measured, as MLX_BLAS=auto measures the libraries: `auto` times the model's
own first layer, its real fast-path Linears in fp32 and in bf16
(mlx_service/kernels/precision_probe.py, cached per machine), and takes bf16 only where it was
BF16_MARGIN faster and the start-up self-check passes; elsewhere fp32. The reason, with both
figures, is in the log and /info.
(On a 2-core AMD EPYC Zen 5 oneMKL's bf16 GEMM ran 80-100 GFLOPS a core, slower than
OpenBLAS's float32, and the native one 430-510: docs/speed-bf16.md.) `auto` keeps bf16 only
where the self-check leaves headroom (AUTO_BF16_MIN_COS), and never for a scorer's scores.

The self-check embeds a fixed probe set on the serving path and on a reference path (numpy's
own bundled BLAS, float32) and needs min cos >= CHECK_MIN_COS: it catches a bf16 path that
loses too much and a preloaded BLAS that computes wrong.

`decide` is pure: the hardware and library facts and the timings come in as arguments.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from mlx_service.kernels.cpu_info import cpu_flags

MODES = ("auto", "fp32", "bf16")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo's names for the bf16 units
CHECK_MIN_COS = 0.9999
# What `auto` asks of bf16 on the self-check: headroom over the 0.9999 parity every served
# vector must keep, since the probes are four short texts (a tiny or unusual model whose
# bf16 rounding lands near the bound serves fp32 instead).
AUTO_BF16_MIN_COS = 0.99995
# bf16 must measure this much faster than fp32 to be taken: a near tie goes to fp32, which
# rounds nothing (and the probe's noise on a shared machine is about this size).
BF16_MARGIN = 1.15
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
    measure: bool = False   # time fp32 against bf16 (precision_probe) and decide again


@dataclass(frozen=True)
class Timing:
    """The model's first layer's weight matmuls, fp32 and bf16, as the fast path runs them."""
    fp32_ms: float
    bf16_ms: float
    source: str = "measured now"   # or "cached probe"
    bf16_gemm: str = ""            # the fastest bf16 GEMM's name ("": not named)
    others: tuple[tuple[str, float], ...] = ()  # the other bf16 GEMMs' ms, for the reason

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.bf16_ms if self.bf16_ms > 0 else 0.0

    def describe(self) -> str:
        others = "".join(f", {name}'s bf16 {ms:.2f} ms" for name, ms in self.others)
        return (f"the model's layer measured {self.bf16_ms:.2f} ms bf16 vs {self.fp32_ms:.2f} "
                f"ms fp32 ({self.speedup:.2f}x, {BF16_MARGIN}x needed; {self.source}{others})")


def bf16_pays(fp32: float, bf16: float, faster_is_larger: bool = False) -> bool:
    """bf16's figure beats fp32's by BF16_MARGIN: times (smaller wins) or rates (GFLOPS)."""
    if fp32 <= 0 or bf16 <= 0:
        return False
    return (bf16 / fp32 if faster_is_larger else fp32 / bf16) >= BF16_MARGIN


def cpu_bf16_units(cpuinfo: str | None = None) -> tuple[str, ...]:
    """The bf16 unit flags this CPU reports (empty: none, or not Linux)."""
    flags = cpu_flags(cpuinfo)
    return tuple(f for f in BF16_FLAGS if f in flags)


def gemm_phrase(library: bool | str) -> str:
    """How a reason names the bf16 GEMM: True (unnamed) is oneMKL's, as before there were two."""
    name = "oneMKL" if library is True else str(library)
    return "oneMKL's bf16 GEMM" if name == "oneMKL" else f"the {name} bf16 GEMM"


def decide(mode: str, fast_path: bool, units: Iterable[str], library: bool | str,
           timing: Timing | None = None, not_kept: str | None = None,
           scores: bool = False) -> Choice:
    """mode: MLX_PRECISION; fast_path: a fast forward runs this model (the MLX layers have no
    bf16 path); units: cpu_bf16_units(); library: a bf16 GEMM is loaded (its name: "oneMKL",
    "native"; the timing's winner where there was one); timing: the probe's figures (auto
    with units and library asks for them: Choice.measure); not_kept: why MLX_BLAS=auto left
    an installed oneMKL unloaded (its bf16 GEMM measured too slow); scores: the model is a
    scorer (reranker, classifier), whose outputs are numbers compared as such."""
    units = tuple(units)
    if timing is not None and timing.bf16_gemm:
        library = timing.bf16_gemm
    if not fast_path:
        return Choice("fp32", f"{mode}: fp32, this model's forward pass has no bf16 path "
                      "(MLX layers, or not a CPU)", check=False)
    if mode == "fp32":
        return Choice("fp32", "fp32: MLX_PRECISION=fp32")
    if mode == "bf16":
        if units and library:
            return Choice("bf16", f"bf16: MLX_PRECISION=bf16, {'/'.join(units)} with "
                          f"{gemm_phrase(library)}")
        missing = ("no bf16 units (AMX-BF16, AVX512_BF16)" if not units else
                   "no bf16 GEMM loaded (`inv mlx install --blas mkl`)")
        return Choice("bf16-emulated", f"bf16 emulated: MLX_PRECISION=bf16 but {missing}: "
                      "operands rounded to bf16 on the float32 GEMM (bf16's accuracy, not "
                      "its speed)")
    if not units:
        return Choice("fp32", "auto: fp32, this CPU has no bf16 units (AMX-BF16, AVX512_BF16)")
    if scores:  # measured on the tiny rerankers: bf16 moved raw scores by 0.004-0.02
        return Choice("fp32", "auto: fp32, a scorer's scores must equal the reference's and "
                      "bf16 rounding moves them (about 1e-2): MLX_PRECISION=bf16 takes it")
    if not library and not_kept:
        return Choice("fp32", f"auto: fp32, the CPU has {'/'.join(units)} but the BLAS probe "
                      f"did not keep oneMKL for bf16: {not_kept}")
    if not library:
        return Choice("fp32", f"auto: fp32, the CPU has {'/'.join(units)} but no bf16 GEMM "
                      "is loaded: `inv mlx install --blas mkl` adds oneMKL's")
    if timing is None:
        return Choice("fp32", "auto: not measured yet", measure=True)
    if bf16_pays(timing.fp32_ms, timing.bf16_ms):
        return Choice("bf16", f"auto: bf16, {'/'.join(units)} with {gemm_phrase(library)}: "
                      f"{timing.describe()}")
    return Choice("fp32", f"auto: fp32, bf16 did not pay on this CPU ({'/'.join(units)}, "
                  f"{gemm_phrase(library)}): {timing.describe()}")


def wants_onemkl(precision_mode: str, units: Iterable[str], mkl_found: bool) -> str | None:
    """MLX_BLAS=auto's reason to weigh oneMKL's bf16 GEMM, not only its float32 one: the CPU
    has bf16 units, oneMKL is installed and MLX_PRECISION allows bf16 (OpenBLAS has no bf16
    GEMM, so picking on float32 speed alone would rule bf16 out). blas.decide keeps oneMKL
    for it only where its probe's bf16 figure beat the fastest float32 library's by
    BF16_MARGIN. None: float32 speed alone decides."""
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
    auto_bf16 = choice.precision == "bf16" and choice.reason.startswith("auto: ")
    try:
        cos = min_cosine(embed(choice.precision), want)
    except Exception as exc:  # a bf16 GEMM that refuses (bad library): fp32 serves instead
        if choice.precision == "fp32":
            raise
        fp32_cos = min_cosine(embed("fp32"), want)
        return Choice("fp32", f"fp32: {choice.precision} failed the self-check "
                      f"({type(exc).__name__}: {exc}); fp32 min cos {fp32_cos:.6f}"), fp32_cos
    if auto_bf16 and cos < AUTO_BF16_MIN_COS:  # too little parity, or no headroom
        fp32_cos = min_cosine(embed("fp32"), want)
        verdict = ("" if fp32_cos >= CHECK_MIN_COS else
                   " FAILED too: the BLAS computes wrong (try MLX_BLAS=reference)")
        return Choice("fp32", f"auto: fp32, bf16 measured faster but kept only min cos "
                      f"{cos:.6f} on the self-check, under the {AUTO_BF16_MIN_COS} auto asks "
                      f"({choice.reason.removeprefix('auto: bf16, ')}); self-check min cos "
                      f"{fp32_cos:.6f}{verdict}"), fp32_cos
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
