"""The compute under the models' fast forward passes, as text-embeddings-inference's
`backends`: which BLAS runs the matmuls, in which precision, and the element-wise kernels.

- `blas`: the BLAS chosen by measurement and swapped in by a re-exec (`blas_probe` its GEMM
  probe, a process of its own; `blas_cache` the per-machine cache of its figures);
- `gemm`: the fast path's matmuls in fp32 or bf16;
- `precision`: MLX_PRECISION and its self-check (`precision_probe`: auto's measurement);
- `native_math`: exp, GELU, SiLU and bf16 rounding in C (`native/fastmath.c`);
- `native_bf16`: the bf16 GEMM on AVX512_BF16 units in C (`native/bf16gemm.c`);
- `cpu_info`: what the CPU offers (/proc/cpuinfo).
"""
