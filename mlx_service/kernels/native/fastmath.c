/* Softmax's exp and GELU's erf for the CPU fast path (mlx_service/kernels/native_math.py builds and
 * loads this). numpy's float32 exp and erf-by-polynomial run at scalar speed on the CPUs we
 * measured; here the loops are vectorised by the compiler with glibc's libmvec (its SIMD
 * expf and erff), the library the system already has. No -ffast-math: -inf (a hidden key)
 * must still give exp 0. */
#include <math.h>
#include <stdint.h>

#pragma omp declare simd notinbranch
float expf(float);
#pragma omp declare simd notinbranch
float erff(float);

/* For each of `heads` blocks (`head_stride` floats apart) and each of its first `rows` rows
 * (`row_stride` apart): x = exp(x - max) over the row's first `length` values, in place, and
 * the row's sum into sums[head * sums_stride + row]. */
void exp_rows(float *s, int64_t heads, int64_t head_stride, int64_t rows, int64_t row_stride,
              int64_t length, float *sums, int64_t sums_stride) {
    for (int64_t h = 0; h < heads; h++) {
        for (int64_t r = 0; r < rows; r++) {
            float *row = s + h * head_stride + r * row_stride;
            float m = -INFINITY;
            #pragma omp simd reduction(max:m)
            for (int64_t i = 0; i < length; i++) m = row[i] > m ? row[i] : m;
            float total = 0.0f;
            #pragma omp simd reduction(+:total)
            for (int64_t i = 0; i < length; i++) {
                float e = expf(row[i] - m);
                row[i] = e;
                total += e;
            }
            sums[h * sums_stride + r] = total;
        }
    }
}

/* x = x * Phi(x) = x/2 (1 + erf(x / sqrt 2)), the exact GELU, in place over n floats. */
void gelu_erf(float *x, int64_t n) {
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

/* gate = silu(gate) * up over `rows` rows of `inter` values, gate and up `stride` apart per
 * row (one (rows, 2*inter) buffer: [gate | up]). */
void silu_mul(float *gate, const float *up, int64_t rows, int64_t inter, int64_t stride) {
    for (int64_t r = 0; r < rows; r++) {
        float *g = gate + r * stride;
        const float *u = up + r * stride;
        #pragma omp simd
        for (int64_t i = 0; i < inter; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    }
}

/* float32 -> bf16 (its top 16 bits, rounded to nearest even) over `rows` rows of `cols`
 * values (float32 read as their bits), `stride` apart: the bf16 GEMM's activations in one pass (numpy takes five,
 * with uint32 temporaries). Finite inputs, as activations are (NaN is not kept quiet). */
void round_bf16(const uint32_t *x, int64_t rows, int64_t cols, int64_t stride, uint16_t *out) {
    for (int64_t r = 0; r < rows; r++) {
        const uint32_t *u = x + r * stride;
        uint16_t *o = out + r * cols;
        #pragma omp simd
        for (int64_t i = 0; i < cols; i++) o[i] = (uint16_t)((u[i] + 0x7FFFu + ((u[i] >> 16) & 1u)) >> 16);
    }
}
