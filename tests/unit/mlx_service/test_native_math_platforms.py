"""Where the native exp/GELU kernels are built, and for which CPU: one pure function, a case
per platform (mlx_service/kernels/native_math.py)."""
from __future__ import annotations

import pytest

from mlx_service.kernels.cpu_info import cpu_flags
from mlx_service.kernels.native_math import compile_flags

ZEN3 = "flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx avx2 bmi2\n"
OLD_XEON = "flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx\n"
GRAVITON = "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n"


@pytest.mark.parametrize("system, machine, cpuinfo, want", [
    ("Linux", "x86_64", ZEN3, ["-march=x86-64-v3"]),   # AVX2 + FMA: libmvec's 8-wide calls
    ("Linux", "x86_64", OLD_XEON, []),                  # no AVX2: the SSE2 baseline
    ("Linux", "aarch64", GRAVITON, []),                 # NEON baseline
    ("Darwin", "arm64", "", None),                      # macOS: MLX on Metal, no libmvec
    ("Windows", "AMD64", ZEN3, None),
])
def test_compile_flags_per_platform(system, machine, cpuinfo, want):
    assert compile_flags(system, machine, cpu_flags(cpuinfo)) == want


def test_cpu_flags_reads_x86_and_arm_lines():
    assert {"avx2", "fma"} <= cpu_flags(ZEN3)
    assert "asimd" in cpu_flags(GRAVITON)
    assert cpu_flags("processor\t: 0\n") == frozenset()
