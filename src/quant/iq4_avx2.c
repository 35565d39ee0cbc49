/* AVX2 dot products of IQ4_NL / IQ4_XS rows with Q8_0 / Q8_K activations: the 4-bit codes
 * become their int8 levels by one byte shuffle (the 16-entry table fits a register lane).
 * IQ4_XS keeps the scalar twin's integer sum per super-block and its float steps, so both
 * agree bit for bit; IQ4_NL sums its blocks in vector lanes as Q4_0 does. Only called after
 * lb_cpu_has_avx2(). */
#include <immintrin.h>

#include "quant/kq_avx2.h"
#include "quant/quant.h"

static inline __m256i levels_32(const uint8_t *qs, __m256i table) {
    __m128i t = _mm_loadu_si128((const __m128i *)qs), m = _mm_set1_epi8(0xF);
    __m256i idx = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(t, 4), m), _mm_and_si128(t, m));
    return _mm256_shuffle_epi8(table, idx);
}

static inline __m256i level_table(void) {
    __m128i t = _mm_loadu_si128((const __m128i *)lb_iq4_values);
    return _mm256_set_m128i(t, t);
}

/* signed levels w . signed x as 16 int16 pair sums; |w|, |x| <= 127 cannot saturate */
static inline __m256i pairs_i8(__m256i w, const int8_t *x) {
    __m256i xv = _mm256_loadu_si256((const __m256i *)x);
    return _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(xv, w));
}

static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

float lb_vec_dot_iq4_nl_q8_avx2(int n, const void *w_row, const void *x_q) {
    const lb_block_iq4_nl *w = w_row;
    const lb_block_q8_0 *x = x_q;
    const __m256i table = level_table(), one = _mm256_set1_epi16(1);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    int nb = n / LB_QK, i = 0;
    for (; i + 2 <= nb; i += 2) { /* two chains: one FMA chain per block was the limit */
        __m256i p0 = _mm256_madd_epi16(pairs_i8(levels_32(w[i].qs, table), x[i].qs), one);
        __m256i p1 = _mm256_madd_epi16(pairs_i8(levels_32(w[i + 1].qs, table), x[i + 1].qs), one);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(w[i].d) * _cvtsh_ss(x[i].d)), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(w[i + 1].d) * _cvtsh_ss(x[i + 1].d)), _mm256_cvtepi32_ps(p1),
                               acc1);
    }
    if (i < nb) {
        __m256i p = _mm256_madd_epi16(pairs_i8(levels_32(w[i].qs, table), x[i].qs), one);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(w[i].d) * _cvtsh_ss(x[i].d)), _mm256_cvtepi32_ps(p), acc0);
    }
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

float lb_vec_dot_iq4_xs_q8_avx2(int n, const void *w_row, const void *x_q) {
    const lb_block_iq4_xs *w = w_row;
    const lb_block_q8_K *x = x_q;
    const __m256i table = level_table();
    float sum = 0;
    for (int i = 0; i < n / LB_QK_K; i++) {
        __m256i acc = _mm256_setzero_si256();
        for (int j = 0; j < 8; j++) { /* the sub-scale multiplies in the widening step */
            __m256i p = pairs_i8(levels_32(w[i].qs + 16 * j, table), x[i].qs + 32 * j);
            __m256i sc = _mm256_set1_epi16((short)lb_iq4xs_get_scale(&w[i], j));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, sc));
        }
        sum = kq_add(sum, _cvtsh_ss(w[i].d), 0, x[i].d, hsum_i32(acc), 0);
    }
    return sum;
}
