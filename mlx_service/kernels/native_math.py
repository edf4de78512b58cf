"""Native element-wise kernels for the CPU fast path: softmax's exp, GELU's erf, SiLU and
the bf16 GEMM's float32 -> bf16 rounding.

numpy's float32 exp runs at scalar speed on the CPUs we measured (1.5-2.5 ns an element on a
Zen 3, float64 5.6 ns), and GELU built from it (erf by polynomial, ~15 numpy passes) at about
7 ns: 23 % of a MiniLM pass at 256 tokens. mlx_service/kernels/native/fastmath.c has the same three
loops for the compiler to vectorise with glibc's libmvec (its SIMD expf and erff): on the same
machine exp over attention rows 1.2 vs 3.9 ns an element, GELU 1.6 vs 7.2 ns.

It is built at the first start into the service venv (`<venv>/mlx-native/`, about 0.3 s; the
file name is a digest of the source, the flags and the compiler, so an edit or another CPU
builds it again) and loaded with ctypes, which lets go of the GIL during each call, so lanes
run side by side as with numpy. Where it cannot be built or loaded (no C compiler, no libmvec:
macOS, musl, glibc < 2.35) the numpy kernels run and the reason is logged and shown in /info
(`kernels`). MLX_NATIVE_KERNELS=0 keeps the numpy kernels. The start-up self-check
(mlx_service/kernels/precision.py) compares the whole pass, these kernels included, with a
reference.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:  # numpy only for the annotations: the tasks' venv reads compile_flags
    import numpy as np

from mlx_service.kernels.cpu_info import cpu_flags

log = logging.getLogger("mlx_service.native")

SOURCE = Path(__file__).resolve().parent / "native" / "fastmath.c"
BUILD_DIR_NAME = "mlx-native"
BUILD_TIMEOUT_S = 60
BASE_FLAGS = ("-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math", "-shared",
              "-fPIC")
LIBS = ("-lmvec", "-lm")
_F32 = 4  # bytes


def compile_flags(system: str, machine: str, cpu_flags: set[str] | frozenset[str]
                  ) -> list[str] | None:
    """The target flags for this platform, or None where the kernels are not built: only
    Linux has glibc's libmvec, and only there does the CPU fast path run (macOS runs MLX on
    Metal). AVX2 + FMA (x86-64-v3) where the CPU has them, so libmvec's 8-wide variants are
    called; the architecture's baseline elsewhere (SSE2's 4-wide, NEON)."""
    if system != "Linux":
        return None
    if machine.lower() in ("x86_64", "amd64") and {"avx2", "fma"} <= set(cpu_flags):
        return ["-march=x86-64-v3"]
    return []


class BuildError(RuntimeError):
    """The kernels could not be built here; the message says why."""


def _compiler(environ: Mapping[str, str]) -> str:
    cc = environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise BuildError("no C compiler (cc) on PATH")
    return cc


def _file_identity(cc: str) -> str:
    """The compiler as a file (its real path, size and mtime): an upgrade builds again, and a
    start that finds the library built runs no program to learn it."""
    real = os.path.realpath(shutil.which(cc) or cc)
    try:
        st = os.stat(real)
    except OSError as exc:
        raise BuildError(f"{cc} cannot be found ({exc.strerror or exc})") from None
    return f"{real} {st.st_size} {st.st_mtime_ns}"


def build(out_dir: Path, environ: Mapping[str, str] = os.environ, source: Path = SOURCE,
          target_flags: list[str] | None = None, libs: tuple[str, ...] = LIBS) -> Path:
    """The shared library, built once per source, flags and compiler; its path.
    target_flags: None for compile_flags' (this file's kernels), else the caller's."""
    if target_flags is None:
        target_flags = compile_flags(platform.system(), platform.machine(), cpu_flags())
        if target_flags is None:
            raise BuildError(f"not built on {platform.system()} (libmvec is glibc's)")
    cc = _compiler(environ)
    flags = [*BASE_FLAGS, *target_flags]
    key = hashlib.sha256("\n".join([source.read_text(), _file_identity(cc), *flags, *libs])
                         .encode()).hexdigest()[:16]
    target = out_dir / f"{source.stem}-{key}.so"
    if target.exists():
        return target
    tmp = out_dir / f"{target.name}.{os.getpid()}.tmp"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([cc, *flags, "-o", str(tmp), str(source), *libs],
                              capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise BuildError(f"{Path(cc).name} failed: {last}")
        os.replace(tmp, target)  # atomic: another start may build the same file
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildError(f"cannot build in {out_dir} ({exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _ptr(array) -> int:
    if array.dtype.kind != "f" or array.dtype.itemsize != _F32:
        raise ValueError("native kernels take float32")
    return array.ctypes.data


@dataclass
class Kernels:
    """The loaded library's kernels, on numpy arrays (views included: each call says
    the layout it writes through)."""
    lib: ctypes.CDLL
    path: str

    def __post_init__(self):
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        self.lib.exp_rows.argtypes = [ptr, i64, i64, i64, i64, i64, ptr, i64]
        self.lib.gelu_erf.argtypes = [ptr, i64]
        self.lib.silu_mul.argtypes = [ptr, ptr, i64, i64, i64]
        self.lib.round_bf16.argtypes = [ptr, i64, i64, i64, ptr]
        for fn in (self.lib.exp_rows, self.lib.gelu_erf, self.lib.silu_mul, self.lib.round_bf16):
            fn.restype = None

    def exp_rows(self, scores: np.ndarray, length: int, sums: np.ndarray) -> None:
        """scores (H, T, T) C-contiguous: each head's first `length` rows, over their first
        `length` keys, become exp(x - row max); their sums into sums (H, T, 1)[:, :length]."""
        heads, width, _ = scores.shape
        if not scores.flags.c_contiguous or not sums.flags.c_contiguous:
            raise ValueError("exp_rows needs C-contiguous scores and sums")
        self.lib.exp_rows(_ptr(scores), heads, width * width, length, width, length,
                          _ptr(sums), sums.shape[1])

    def gelu(self, x: np.ndarray) -> None:
        """GELU (erf), in place, over a C-contiguous float32 array (or view)."""
        if not x.flags.c_contiguous:
            raise ValueError("gelu needs a C-contiguous array")
        self.lib.gelu_erf(_ptr(x), x.size)

    def round_bf16(self, x: np.ndarray, out: np.ndarray) -> None:
        """(M, K) float32 (rows may be strided, columns contiguous) -> out (M, K) uint16,
        C-contiguous: each value's bf16 bits, rounded to nearest even (gemm.to_bf16_bits)."""
        rows, cols = x.shape
        if x.strides[1] != _F32 or out.dtype.itemsize != 2 or not out.flags.c_contiguous \
                or out.shape != x.shape:
            raise ValueError("round_bf16 needs (M, K) float32 rows and a C-contiguous uint16 out")
        self.lib.round_bf16(_ptr(x), rows, cols, x.strides[0] // _F32, out.ctypes.data)

    def silu_mul(self, gate_up: np.ndarray, inter: int) -> None:
        """(N, 2I) [gate | up], C-contiguous: gate = silu(gate) * up, in place."""
        if not gate_up.flags.c_contiguous or gate_up.shape[1] != 2 * inter:
            raise ValueError("silu_mul needs a C-contiguous (N, 2I) array")
        self.lib.silu_mul(_ptr(gate_up), _ptr(gate_up) + inter * _F32, gate_up.shape[0],
                          inter, 2 * inter)


def build_dir(environ: Mapping[str, str] = os.environ, prefix: str = sys.prefix) -> Path:
    return Path(environ.get("MLX_NATIVE_DIR") or os.path.join(prefix, BUILD_DIR_NAME))


def load(enabled: bool = True, environ: Mapping[str, str] = os.environ
         ) -> tuple[Kernels | None, str]:
    """(the kernels, or None; what /info says about them)."""
    if not enabled:
        return None, "numpy (MLX_NATIVE_KERNELS=0)"
    try:
        path = build(build_dir(environ), environ)
        kernels = Kernels(ctypes.CDLL(str(path)), str(path))
    except (BuildError, OSError, AttributeError) as exc:
        log.info("native kernels unavailable (%s): numpy's run", exc)
        return None, f"numpy (native kernels unavailable: {exc})"
    return kernels, "native (libmvec)"
