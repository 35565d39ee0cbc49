/* AVX2 helpers shared by the one-token K-quant dot products (vec_dot_avx2.c) and the prompt
 * tiles (matmul_kquant_avx2.c), so both compute the same integers and round the same floats.
 * Only for files compiled with -mavx2 -mfma -mf16c. */
#ifndef LB_QUANT_KQ_AVX2_H
#define LB_QUANT_KQ_AVX2_H
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "quant/blocks.h"

static inline int hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* acc + (d dx isum - dmin dx msum), rounded step by step exactly as lb_kq_block_sum and the
 * scalar loop do. The scalar-single intrinsics are builtins the compiler does not fuse into
 * FMAs, so this inlines without changing a bit. */
static inline __m128 kq_accum(__m128 acc, float d, float dmin, float dx, int isum, int msum) {
    __m128 vdx = _mm_set_ss(dx);
    __m128 a = _mm_mul_ss(_mm_mul_ss(_mm_set_ss(d), vdx), _mm_cvtsi32_ss(vdx, isum));
    __m128 b = _mm_mul_ss(_mm_mul_ss(_mm_set_ss(dmin), vdx), _mm_cvtsi32_ss(vdx, msum));
    return _mm_add_ss(acc, _mm_sub_ss(a, b));
}

/* same with dmin = 0: d dx isum - 0 dx 0 equals d dx isum (also for -0) */
static inline __m128 kq_accum0(__m128 acc, float d, float dx, int isum) {
    __m128 vdx = _mm_set_ss(dx);
    return _mm_add_ss(acc, _mm_mul_ss(_mm_mul_ss(_mm_set_ss(d), vdx), _mm_cvtsi32_ss(vdx, isum)));
}

static inline float kq_add(float sum, float d, float dmin, float dx, int isum, int msum) {
    return _mm_cvtss_f32(kq_accum(_mm_set_ss(sum), d, dmin, dx, isum, msum));
}

/* unsigned codes q . signed x, each half of 16 weighted by its own scale */
static inline __m256i dot_u8_scaled(__m256i q, __m256i x, int s_lo, int s_hi) {
    __m256i sc = _mm256_set_m128i(_mm_set1_epi16((short)s_hi), _mm_set1_epi16((short)s_lo));
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), sc);
}

/* The 8 six-bit scales and mins of Q4_K/Q5_K from their 12 bytes (layout in
 * lb_kq_get_scale_min), unpacked with word operations to int16 lanes. */
static inline void k4_unpack(const uint8_t *s, __m128i *sc, __m128i *mn) {
    uint32_t a, b, c;
    memcpy(&a, s, 4);
    memcpy(&b, s + 4, 4);
    memcpy(&c, s + 8, 4);
    const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
    uint32_t sc_hi = (c & m4) | ((a >> 6) & m2) << 4, mn_hi = ((c >> 4) & m4) | ((b >> 6) & m2) << 4;
    *sc = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)sc_hi, (int)(a & m6)));
    *mn = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)mn_hi, (int)(b & m6)));
}

/* the mins weighted by the activation sums of their 32 elements (an exact integer) */
static inline int k4_msum(__m128i mn, const int16_t *bsums) {
    __m128i bs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)bsums),
                                _mm_loadu_si128((const __m128i *)(bsums + 8))); /* |pair| <= 4064 */
    __m128i p = _mm_madd_epi16(mn, bs);
    p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0x4E));
    p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0xB1));
    return _mm_cvtsi128_si32(p);
}

/* the scales, and the weighted mins in *msum */
static inline __m128i k4_scales(const uint8_t *s, const int16_t *bsums, int *msum) {
    __m128i sc, mn;
    k4_unpack(s, &sc, &mn);
    *msum = k4_msum(mn, bsums);
    return sc;
}

/* int16 lane j of v broadcast to all 16 lanes */
static inline __m256i bcast16(__m256i v, int j) {
    return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(0x0101 * 2 * j + 0x0100)));
}

/* the 6-bit codes of 128-half h of a Q6_K block (layout in blocks.h), groups of 32 in q[0..3] */
static inline void q6_codes(const lb_block_q6_K *b, int h, __m256i q[4]) {
    const __m256i m4 = _mm256_set1_epi8(0xF), m30 = _mm256_set1_epi8(0x30);
    __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
    __m256i l0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
    __m256i l1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
    q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
    q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m30));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                           _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
}

#endif
