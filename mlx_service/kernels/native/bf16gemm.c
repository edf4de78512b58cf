/* The fast path's bf16 GEMM on AVX512_BF16 units (VDPBF16PS), for CPUs where no library
 * drives them well: C (m, n) = round_bf16(A) (m, k) @ W^T (+ bias), float32 accumulation.
 * mlx_service/kernels/native_bf16.py builds it (only where the CPU has avx512_bf16) and
 * loads it. On a 2-core AMD EPYC Zen 5 it ran 430-510 GFLOPS on one core at the model's
 * shapes, against 114 for OpenBLAS's float32 (Haswell kernels), 226 (its AVX-512 ones) and
 * 80-100 for oneMKL's bf16 GEMM.
 *
 * Layout: the weight is rounded and packed once (bf16_pack): per tile of NR output columns
 * (zero-padded), per pair of k (k zero-padded to even), the tile's NR columns x 2 values:
 * NV vectors of 16 columns, each lane a (k, k+1) pair as VDPBF16PS takes it. A call rounds
 * MC rows of A at a time into a small buffer (to nearest even, as gemm.to_bf16_bits), then
 * runs MR x NR tiles over KC-pair blocks: the weight's micro-panel (NR x KC pairs, 24 KiB)
 * stays in L1 across the block's row tiles, the rows' block in L2. One thread: the service's
 * lanes are the parallelism. */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

#define NV 3              /* vectors of 16 columns per tile */
#define NR (16 * NV)      /* columns per tile */
#define MR 8              /* rows per tile: 8 x 3 accumulators + 3 weight vectors */
#define KCP 128           /* k pairs per block */
#define MC 96             /* rows rounded and reused per block */

static int64_t tiles(int64_t n) { return (n + NR - 1) / NR; }
static int64_t pairs(int64_t k) { return (k + 1) / 2; }

static inline uint16_t round_one(uint32_t u) {
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* Bytes of the packed weight for (n, k). */
int64_t bf16_pack_size(int64_t n, int64_t k) { return tiles(n) * pairs(k) * NR * 2 * 2; }

/* The (n, k) float32 weight (rows contiguous), rounded and packed into out. */
void bf16_pack(const uint32_t *w, int64_t n, int64_t k, uint16_t *out) {
    int64_t kp = pairs(k);
    for (int64_t t = 0; t < tiles(n); t++)
        for (int64_t p = 0; p < kp; p++) {
            uint16_t *o = out + (t * kp + p) * NR * 2;
            for (int64_t j = 0; j < NR; j++) {
                int64_t col = t * NR + j;
                for (int64_t q = 0; q < 2; q++) {
                    int64_t kk = 2 * p + q;
                    o[j * 2 + q] = (col < n && kk < k) ? round_one(w[col * k + kk]) : 0;
                }
            }
        }
}

/* One MR x NR tile (mr rows live) over kps pairs: first block starts from the bias (or 0),
 * later ones add to what C holds. masks: the live columns of each vector. */
static inline __attribute__((always_inline)) void tile(
        int mr, const uint16_t *a, int64_t lda, const uint16_t *b, int64_t kps, float *c,
        int64_t ldc, int first, const __mmask16 *masks, const float *bias) {
    __m512 acc[MR][NV];
    for (int i = 0; i < MR; i++)
        for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kps; p++) {
        __m512bh bv[NV];
        for (int v = 0; v < NV; v++)
            bv[v] = (__m512bh)_mm512_loadu_si512(b + (p * NR + v * 16) * 2);
        for (int i = 0; i < MR; i++) {
            if (i < mr) {
                __m512bh av = (__m512bh)_mm512_set1_epi32(
                    *(const int32_t *)(a + i * lda + 2 * p));
                for (int v = 0; v < NV; v++) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], av, bv[v]);
            }
        }
    }
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < NV; v++) {
            float *cp = c + i * ldc + v * 16;
            __m512 prev = !first ? _mm512_maskz_loadu_ps(masks[v], cp)
                          : bias ? _mm512_maskz_loadu_ps(masks[v], bias + v * 16)
                                 : _mm512_setzero_ps();
            _mm512_mask_storeu_ps(cp, masks[v], _mm512_add_ps(prev, acc[i][v]));
        }
}

/* mr as a constant in each copy, so the accumulators stay in registers. */
static void tile_rows(int mr, const uint16_t *a, int64_t lda, const uint16_t *b, int64_t kps,
                      float *c, int64_t ldc, int first, const __mmask16 *m, const float *bias) {
    switch (mr) {
    case 8: tile(8, a, lda, b, kps, c, ldc, first, m, bias); break;
    case 7: tile(7, a, lda, b, kps, c, ldc, first, m, bias); break;
    case 6: tile(6, a, lda, b, kps, c, ldc, first, m, bias); break;
    case 5: tile(5, a, lda, b, kps, c, ldc, first, m, bias); break;
    case 4: tile(4, a, lda, b, kps, c, ldc, first, m, bias); break;
    case 3: tile(3, a, lda, b, kps, c, ldc, first, m, bias); break;
    case 2: tile(2, a, lda, b, kps, c, ldc, first, m, bias); break;
    default: tile(1, a, lda, b, kps, c, ldc, first, m, bias); break;
    }
}

/* C (m, n), rows ldc apart = x (m, k) float32, rows x_stride apart, rounded to bf16
 * @ the packed weight (+ bias, n floats, or NULL). Returns 0, or -1 when the row buffer
 * cannot be had (C untouched). */
int bf16_linear(const uint32_t *x, int64_t m, int64_t k, int64_t x_stride, const uint16_t *w,
                int64_t n, const float *bias, float *c, int64_t ldc) {
    int64_t kp = pairs(k), lda = 2 * kp, nt = tiles(n);
    uint16_t *a = malloc((size_t)(MC * lda) * sizeof(uint16_t));
    if (!a) return -1;
    for (int64_t m0 = 0; m0 < m; m0 += MC) {
        int64_t mc = m - m0 < MC ? m - m0 : MC;
        for (int64_t r = 0; r < mc; r++) {
            const uint32_t *u = x + (m0 + r) * x_stride;
            uint16_t *o = a + r * lda;
            #pragma omp simd
            for (int64_t i = 0; i < k; i++) o[i] = round_one(u[i]);
            if (lda > k) o[k] = 0;
        }
        for (int64_t k0 = 0; k0 < kp; k0 += KCP) {
            int64_t kps = kp - k0 < KCP ? kp - k0 : KCP;
            for (int64_t t = 0; t < nt; t++) {
                __mmask16 masks[NV];
                for (int v = 0; v < NV; v++) {
                    int64_t left = n - t * NR - v * 16;
                    masks[v] = left >= 16 ? 0xFFFF : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
                }
                const uint16_t *b = w + (t * kp + k0) * NR * 2;
                const float *tb = bias ? bias + t * NR : NULL;
                for (int64_t i = 0; i < mc; i += MR)
                    tile_rows(mc - i < MR ? (int)(mc - i) : MR, a + i * lda + 2 * k0, lda, b,
                              kps, c + (m0 + i) * ldc + t * NR, ldc, k0 == 0, masks, tb);
            }
        }
    }
    free(a);
    return 0;
}
