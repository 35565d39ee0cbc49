/* Prompt-batch rows kernels for Q4_0 and Q8_0: a weight block becomes signed bytes w once, kept
 * as |w| for _mm256_maddubs_epi16, and each of up to four tokens multiplies it by its
 * activations with their signs moved onto x (sign(x, w)). One accumulator per token keeps the
 * FMA chains independent. */
#include <immintrin.h>

#include "quant/blocks.h"
#include "quant/matmul_quant_avx2.h"
#include "quant/quant.h"

#define MAX_NT 4

static inline float hsum_f32(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256i loadu256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* Q4_0 codes q in 0..15 (low nibbles = elements 0..15, high = 16..31) as signed q - 8 */
static inline __m256i q4_0_signed(const lb_block_q4_0 *b) {
    __m128i t = _mm_loadu_si128((const __m128i *)b->qs), m = _mm_set1_epi8(0xF);
    __m256i q = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(t, 4), m), _mm_and_si128(t, m));
    return _mm256_sub_epi8(q, _mm256_set1_epi8(8));
}

/* |w| . sign(x, w) summed into 8 int32, as float; the int16 pair sums fit: |w| <= 128, |x| <= 127 */
static inline __m256 dot_block(__m256i aw, __m256i w, const int8_t *xq) {
    __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(loadu256(xq), w));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* One weight row against NT tokens; NT is a constant at each call so the loops unroll. NACC
 * accumulators per token, block i into accumulator i % NACC (the tail after the last whole group
 * into the first), summed (0 + 1) + (2 + 3): the order of the one-token dot product of the same
 * type (lb_vec_dot_*_avx2), so a token's result does not depend on the batch it is in. */
#define ROW_KERNEL(NAME, WBLOCK, UNPACK, NACC)                                                  \
    static inline __attribute__((always_inline)) void NAME##_step(const WBLOCK *wb, int i,      \
                                                                  const lb_block_q8_0 *const *x, \
                                                                  int NT, __m256 acc[][NACC], int k) { \
        __m256i wv = UNPACK(wb);                                                                \
        __m256i aw = _mm256_sign_epi8(wv, wv);                                                  \
        float dw = _cvtsh_ss(wb->d);                                                            \
        for (int j = 0; j < NT; j++) {                                                          \
            __m256 p = dot_block(aw, wv, x[j][i].qs);                                           \
            acc[j][k] = _mm256_fmadd_ps(_mm256_set1_ps(dw * _cvtsh_ss(x[j][i].d)), p, acc[j][k]); \
        }                                                                                       \
    }                                                                                           \
    static inline __attribute__((always_inline)) void NAME(const WBLOCK *w, int nb,            \
                                                           const lb_block_q8_0 *const *x, int NT, \
                                                           float *out) {                        \
        __m256 acc[MAX_NT][NACC];                                                               \
        for (int j = 0; j < NT; j++)                                                            \
            for (int k = 0; k < NACC; k++) acc[j][k] = _mm256_setzero_ps();                     \
        int i = 0;                                                                              \
        /* constant accumulator indices after unrolling keep acc in registers */                \
        for (; i + NACC <= nb; i += NACC)                                                       \
            for (int k = 0; k < NACC; k++) NAME##_step(&w[i + k], i + k, x, NT, acc, k);        \
        for (; i < nb; i++) NAME##_step(&w[i], i, x, NT, acc, 0);                               \
        for (int j = 0; j < NT; j++) {                                                          \
            __m256 t = acc[j][0];                                                               \
            if (NACC == 4)                                                                      \
                t = _mm256_add_ps(_mm256_add_ps(acc[j][0], acc[j][NACC > 1]),                   \
                                  _mm256_add_ps(acc[j][NACC > 2 ? 2 : 0], acc[j][NACC > 3 ? 3 : 0])); \
            out[j] = hsum_f32(t);                                                               \
        }                                                                                       \
    }

static inline __m256i q8_0_load(const lb_block_q8_0 *b) { return loadu256(b->qs); }
ROW_KERNEL(row_q4_0, lb_block_q4_0, q4_0_signed, 4)
ROW_KERNEL(row_q8_0, lb_block_q8_0, q8_0_load, 1)
#undef ROW_KERNEL

typedef void (*row_fn)(const void *w, int nb, const lb_block_q8_0 *const *x, float *out);

#define ROW_NT(NAME, WBLOCK, NT)                                                                 \
    static void NAME##_##NT(const void *w, int nb, const lb_block_q8_0 *const *x, float *out) { \
        NAME((const WBLOCK *)w, nb, x, NT, out);                                                 \
    }
ROW_NT(row_q4_0, lb_block_q4_0, 1) ROW_NT(row_q4_0, lb_block_q4_0, 2)
ROW_NT(row_q4_0, lb_block_q4_0, 3) ROW_NT(row_q4_0, lb_block_q4_0, 4)
ROW_NT(row_q8_0, lb_block_q8_0, 1) ROW_NT(row_q8_0, lb_block_q8_0, 2)
ROW_NT(row_q8_0, lb_block_q8_0, 3) ROW_NT(row_q8_0, lb_block_q8_0, 4)
#undef ROW_NT

static const row_fn k_q4_0[MAX_NT + 1] = {NULL, row_q4_0_1, row_q4_0_2, row_q4_0_3, row_q4_0_4};
static const row_fn k_q8_0[MAX_NT + 1] = {NULL, row_q8_0_1, row_q8_0_2, row_q8_0_3, row_q8_0_4};

/* rows outer so a weight row stays in L1 while every group of tokens passes over it */
static void rows_batched(const row_fn *fn, lb_vec_dot_fn dot, const lb_matmul_args *a, int64_t r0,
                         int64_t r1) {
    const uint8_t *x = a->x;
    int nb = (int)(a->k / LB_QK);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *w = a->w + (size_t)r * a->w_row_bytes;
        if (a->n_tok == 1) { /* generation: the plain dot product, unchanged */
            a->y[r] = dot((int)a->k, w, x);
            continue;
        }
        for (int64_t t = 0; t < a->n_tok; t += MAX_NT) {
            int nt = a->n_tok - t < MAX_NT ? (int)(a->n_tok - t) : MAX_NT;
            const lb_block_q8_0 *xs[MAX_NT];
            float out[MAX_NT];
            for (int j = 0; j < nt; j++) xs[j] = (const lb_block_q8_0 *)(x + (size_t)(t + j) * a->x_row_bytes);
            fn[nt](w, nb, xs, out);
            for (int j = 0; j < nt; j++) a->y[(t + j) * a->rows + r] = out[j];
        }
    }
}

void lb_matmul_rows_q4_0_avx2(const lb_matmul_args *a, int64_t r0, int64_t r1) {
    rows_batched(k_q4_0, lb_vec_dot_q4_0_q8_avx2, a, r0, r1);
}

void lb_matmul_rows_q8_0_avx2(const lb_matmul_args *a, int64_t r0, int64_t r1) {
    rows_batched(k_q8_0, lb_vec_dot_q8_0_q8_avx2, a, r0, r1);
}
