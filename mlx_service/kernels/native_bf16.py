"""The native bf16 GEMM (mlx_service/kernels/native/bf16gemm.c): VDPBF16PS on the CPU's
AVX512_BF16 units, weights rounded and packed once at load, activations rounded in the same
call, float32 accumulation, the bias added in place.

Why our own: on the AMD EPYCs we met (Zen 4, Zen 5) oneMKL's bf16 GEMM ran at 80-117 GFLOPS
a core, no faster than float32, while the units can do several times that: this one ran
430-510 GFLOPS on one Zen 5 core at the model's shapes. Where oneMKL drives AMX (Sapphire
Rapids and later) its GEMM may be the faster one: MLX_PRECISION's probe times both on the
model's own layer and keeps the faster (precision_probe.py).

Built as native_math builds its kernels (a C compiler, at the first start, into the venv),
only where the CPU reports avx512_bf16 (`compile_flags`, pure: a case per CPU kind in the
unit tests); loaded with ctypes, which lets go of the GIL, so lanes run side by side.
MLX_NATIVE_KERNELS=0 leaves it out with the other native kernels.
"""
from __future__ import annotations

import ctypes
import logging
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    import numpy as np

from mlx_service.kernels.cpu_info import cpu_flags
from mlx_service.kernels.native_math import BuildError, build, build_dir

log = logging.getLogger("mlx_service.native")

SOURCE = Path(__file__).resolve().parent / "native" / "bf16gemm.c"
NAME = "native"   # how precision's reasons and /info name this GEMM
LIBS = ()         # no libmvec: intrinsics only


def compile_flags(system: str, machine: str, flags: set[str] | frozenset[str]
                  ) -> list[str] | None:
    """The target flags for the native bf16 GEMM, or None where it is not built: Linux on
    x86-64 with AVX512_BF16 (Zen 4 and later, Cooper Lake, Sapphire Rapids and later).
    Elsewhere (no bf16 units, Arm, macOS) there is nothing for it to run on."""
    if system != "Linux" or machine.lower() not in ("x86_64", "amd64"):
        return None
    if not {"avx512f", "avx512bw", "avx512vl", "avx512_bf16"} <= set(flags):
        return None
    return ["-march=x86-64-v4", "-mavx512bf16"]


def buildable_here() -> bool:
    """This machine gets the native bf16 GEMM (a C compiler permitting)."""
    return compile_flags(platform.system(), platform.machine(), cpu_flags()) is not None


class NativeBf16Gemm:
    """gemm.Bf16Gemm's interface (prepare once, call per product) on bf16gemm.c."""
    name = NAME
    packs = True
    before_compute = None  # one thread, the caller's: nothing to set per lane

    def __init__(self, lib: ctypes.CDLL, path: str = ""):
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        self.lib, self.path = lib, path
        lib.bf16_pack_size.restype, lib.bf16_pack_size.argtypes = i64, [i64, i64]
        lib.bf16_pack.restype, lib.bf16_pack.argtypes = None, [ptr, i64, i64, ptr]
        lib.bf16_linear.restype = ctypes.c_int
        lib.bf16_linear.argtypes = [ptr, i64, i64, i64, ptr, i64, ptr, ptr, i64]

    def prepare(self, weight: np.ndarray, rows: int = 0) -> np.ndarray:
        """The (N, K) float32 weight rounded to bf16 and packed (uint16); `rows` is
        Bf16Gemm's argument, unused here: the packed form does not depend on it."""
        import numpy as np
        w = np.ascontiguousarray(weight, dtype=np.float32)
        n, k = w.shape
        packed = np.empty(self.lib.bf16_pack_size(n, k) // 2, np.uint16)
        self.lib.bf16_pack(w.ctypes.data, n, k, packed.ctypes.data)
        return packed

    def __call__(self, x: np.ndarray, weight: np.ndarray, n: int,
                 bias: np.ndarray | None) -> np.ndarray:
        """C (M, N) = round(x) (M, K) @ W^T (+ bias), W as `prepare` gave it; x float32
        with contiguous rows (MLX's own buffer: no copy)."""
        import numpy as np
        if x.dtype != np.float32 or x.ndim != 2 or x.strides[1] != 4:
            x = np.ascontiguousarray(x, dtype=np.float32)
        m, k = x.shape
        if weight.dtype != np.uint16 or weight.size * 2 != self.lib.bf16_pack_size(n, k) \
                or (bias is not None and bias.size != n):
            raise ValueError(f"the packed weight is not ({n}, {k}) as prepare made it "
                             "(or the bias is not n long)")
        out = np.empty((m, n), np.float32)
        b = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
        if self.lib.bf16_linear(x.ctypes.data, m, k, x.strides[0] // 4, weight.ctypes.data,
                                n, None if b is None else b.ctypes.data, out.ctypes.data,
                                n) != 0:
            raise MemoryError("the native bf16 GEMM could not allocate its row buffer")
        return out


def load(enabled: bool = True, environ: Mapping[str, str] = os.environ
         ) -> tuple[NativeBf16Gemm | None, str]:
    """(the GEMM, or None; why not)."""
    if not enabled:
        return None, "MLX_NATIVE_KERNELS=0"
    flags = compile_flags(platform.system(), platform.machine(), cpu_flags())
    if flags is None:
        return None, "the CPU has no AVX512_BF16 (or is not x86-64 Linux)"
    try:
        path = build(build_dir(environ), environ, SOURCE, flags, LIBS)
        return NativeBf16Gemm(ctypes.CDLL(str(path)), str(path)), "built"
    except (BuildError, OSError, AttributeError) as exc:
        log.info("native bf16 GEMM unavailable (%s)", exc)
        return None, f"native bf16 GEMM unavailable: {exc}"
