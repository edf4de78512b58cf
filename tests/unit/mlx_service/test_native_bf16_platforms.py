"""Where the native bf16 GEMM (mlx_service/kernels/native_bf16.py) is built: one pure
function, a case per CPU kind we meet."""
from __future__ import annotations

import pytest

from mlx_service.kernels.cpu_info import cpu_flags
from mlx_service.kernels.native_bf16 import compile_flags

ZEN3 = "flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 bmi2 sha_ni vaes\n"
ICE_LAKE = "flags\t\t: fpu avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni\n"
ZEN4 = ("flags\t\t: fpu avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16 "
        "avx512_vnni avx512_bitalg\n")
SAPPHIRE_RAPIDS = ("flags\t\t: fpu avx2 fma avx512f avx512bw avx512vl avx512_bf16 amx_bf16 "
                   "amx_tile amx_int8\n")
GRAVITON3 = "Features\t: fp asimd evtstrm aes sha2 crc32 atomics sve bf16 i8mm\n"
WANT = ["-march=x86-64-v4", "-mavx512bf16"]


@pytest.mark.parametrize("system, machine, cpuinfo, want", [
    ("Linux", "x86_64", ZEN3, None),              # no bf16 units: nothing to build
    ("Linux", "x86_64", ICE_LAKE, None),          # AVX-512 without AVX512_BF16
    ("Linux", "x86_64", ZEN4, WANT),              # Zen 4 / Zen 5
    ("Linux", "x86_64", SAPPHIRE_RAPIDS, WANT),   # AMX CPUs have AVX512_BF16 too
    ("Linux", "aarch64", GRAVITON3, None),        # Arm's bf16 is another instruction set
    ("Darwin", "arm64", "", None),                # macOS: MLX on Metal
    ("Windows", "AMD64", ZEN4, None),
])
def test_compile_flags_per_cpu_kind(system, machine, cpuinfo, want):
    assert compile_flags(system, machine, cpu_flags(cpuinfo)) == want
