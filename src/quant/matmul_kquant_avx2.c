/* Prompt-batch kernels for Q4_K and Q6_K at AVX2: one weight row x up to KT tokens. Each
 * super-block's codes and scales are unpacked once for the KT tokens instead of once per token.
 * The integers of a super-block (isum, msum, bias) are exact in any order and the float steps
 * are the one-token kernels' own (kq_accum / kq_add, one super-block after another), so a
 * token's result is bitwise what lb_vec_dot_q{4,6}_K_q8_avx2 gives it alone. */
#include <immintrin.h>

#include "quant/blocks.h"
#include "quant/kq_avx2.h"
#include "quant/matmul_quant_avx2.h"
#include "quant/quant.h"

#define KT 4
#define AI static inline __attribute__((always_inline))

static inline __m256i loadu256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

AI void tile_q4_K(const lb_block_q4_K *w, const lb_block_q8_K *const *x, int nb, int nt, float *out) {
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m128 sum[KT];
    for (int t = 0; t < nt; t++) sum[t] = _mm_setzero_ps();
    for (int i = 0; i < nb; i++) {
        __m128i sc128, mn;
        k4_unpack(w[i].scales, &sc128, &mn);
        __m256i sc = _mm256_broadcastsi128_si256(sc128), acc[KT];
        for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i b = loadu256(w[i].qs + 32 * c);
            __m256i lo = _mm256_and_si256(b, m4), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
            __m256i slo = bcast16(sc, 2 * c), shi = bcast16(sc, 2 * c + 1);
            for (int t = 0; t < nt; t++) {
                const int8_t *xq = x[t][i].qs + 64 * c;
                __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, loadu256(xq)), slo);
                __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, loadu256(xq + 32)), shi);
                acc[t] = _mm256_add_epi32(acc[t], _mm256_add_epi32(plo, phi));
            }
        }
        float d = _cvtsh_ss(w[i].d), dmin = _cvtsh_ss(w[i].dmin);
        for (int t = 0; t < nt; t++)
            sum[t] = kq_accum(sum[t], d, dmin, x[t][i].d, hsum_i32(acc[t]), k4_msum(mn, x[t][i].bsums));
    }
    for (int t = 0; t < nt; t++) out[t] = _mm_cvtss_f32(sum[t]);
}

AI void tile_q6_K(const lb_block_q6_K *w, const lb_block_q8_K *const *x, int nb, int nt, float *out) {
    float sum[KT] = {0};
    for (int i = 0; i < nb; i++) {
        /* bias = sum scales[j] bsums[j]: the 32 offset of the codes, per token */
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w[i].scales)), acc[KT];
        for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q[4];
            q6_codes(&w[i], h, q);
            for (int g = 0; g < 4; g++) {
                int j = 8 * h + 2 * g;
                __m256i sv = _mm256_set_m128i(_mm_set1_epi16(w[i].scales[j + 1]), _mm_set1_epi16(w[i].scales[j]));
                for (int t = 0; t < nt; t++) {
                    __m256i p = _mm256_maddubs_epi16(q[g], loadu256(x[t][i].qs + 128 * h + 32 * g));
                    acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(p, sv));
                }
            }
        }
        float d = lb_fp16_to_f32(w[i].d);
        for (int t = 0; t < nt; t++) {
            int bias = hsum_i32(_mm256_madd_epi16(sc16, loadu256(x[t][i].bsums)));
            sum[t] = kq_add(sum[t], d, 0, x[t][i].d, hsum_i32(acc[t]) - 32 * bias, 0);
        }
    }
    for (int t = 0; t < nt; t++) out[t] = sum[t];
}

typedef void (*ktile_fn)(const void *w, const lb_block_q8_K *const *x, int nb, float *out);

#define SHAPE(NAME, WBLOCK, NT)                                                                      \
    static void NAME##_##NT(const void *w, const lb_block_q8_K *const *x, int nb, float *out) {    \
        NAME((const WBLOCK *)w, x, nb, NT, out);                                                   \
    }
#define SHAPES(NAME, WBLOCK)                                                                         \
    SHAPE(NAME, WBLOCK, 1) SHAPE(NAME, WBLOCK, 2) SHAPE(NAME, WBLOCK, 3) SHAPE(NAME, WBLOCK, 4)    \
    static const ktile_fn NAME##_shapes[KT] = {NAME##_1, NAME##_2, NAME##_3, NAME##_4};
SHAPES(tile_q4_K, lb_block_q4_K)
SHAPES(tile_q6_K, lb_block_q6_K)
#undef SHAPES
#undef SHAPE

/* rows outer so a weight row stays in L1 while every group of tokens passes over it */
static void rows_ktiled(const ktile_fn *shapes, lb_vec_dot_fn dot, const lb_matmul_args *a, int64_t r0,
                        int64_t r1) {
    const uint8_t *x = a->x;
    int nb = (int)(a->k / LB_QK_K);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *w = a->w + (size_t)r * a->w_row_bytes;
        if (a->n_tok == 1) { /* generation: the plain dot product */
            a->y[r] = dot((int)a->k, w, x);
            continue;
        }
        for (int64_t t = 0; t < a->n_tok; t += KT) {
            int nt = a->n_tok - t < KT ? (int)(a->n_tok - t) : KT;
            const lb_block_q8_K *xs[KT];
            float out[KT];
            for (int j = 0; j < nt; j++) xs[j] = (const lb_block_q8_K *)(x + (size_t)(t + j) * a->x_row_bytes);
            shapes[nt - 1](w, xs, nb, out);
            for (int j = 0; j < nt; j++) a->y[(t + j) * a->rows + r] = out[j];
        }
    }
}

void lb_matmul_rows_q4_K_avx2(const lb_matmul_args *a, int64_t r0, int64_t r1) {
    rows_ktiled(tile_q4_K_shapes, lb_vec_dot_q4_K_q8_avx2, a, r0, r1);
}

void lb_matmul_rows_q6_K_avx2(const lb_matmul_args *a, int64_t r0, int64_t r1) {
    rows_ktiled(tile_q6_K_shapes, lb_vec_dot_q6_K_q8_avx2, a, r0, r1);
}
