/* AVX2 dot products with quantized activations: codes unpacked to bytes, multiplied with
 * _mm256_maddubs_epi16 (unsigned codes x signed activations, or |w| x sign-adjusted x for
 * signed codes), widened with _mm256_madd_epi16 by the sub-block scales. Only called after
 * lb_cpu_has_avx2(). */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "quant/kq_avx2.h"
#include "quant/quant.h"

#define F16(h) _cvtsh_ss(h)


static inline float hsum_f32(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}


static inline __m256i loadu256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* 16 bytes of nibbles -> 32 bytes: low nibbles first, then high nibbles */
static inline __m256i nibbles32(const uint8_t *p) {
    __m128i t = _mm_loadu_si128((const __m128i *)p), m = _mm_set1_epi8(0xF);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(t, 4), m), _mm_and_si128(t, m));
}

/* 32 bits (little-endian) -> 32 bytes, 0xFF where the bit is set */
static inline __m256i bits32(const uint8_t *p) {
    uint32_t x;
    memcpy(&x, p, 4);
    __m256i v = _mm256_set1_epi32((int)x);
    v = _mm256_shuffle_epi8(v, _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202,
                                                  0x0303030303030303));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

/* signed bytes w . signed bytes x -> 8 int32 partial sums */
static inline __m256i dot_i8(__m256i w, __m256i x) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}


/* ---- activations ---- */

static inline __m256 absv(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

static inline float hmax_f32(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* 32 floats times id, clamped and rounded as the scalar code does, packed to bytes in order */
static inline __m256i quant32(const float *x, __m256 id) {
    const __m256 lo = _mm256_set1_ps(-127), hi = _mm256_set1_ps(127);
    __m256i v[4];
    for (int k = 0; k < 4; k++) {
        __m256 t = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), id);
        t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
        v[k] = _mm256_cvtps_epi32(_mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* max |x|, or NaN when x holds one: maxps keeps whichever operand comes second when one is
 * NaN, so the NaN is tracked apart (as the scalar twin does; see lb_quantize_row_q8_0_scalar) */
static inline float amax_n(const float *x, int n) {
    __m256 m = _mm256_setzero_ps(), nan = m;
    for (int k = 0; k < n; k += 8) {
        __m256 v = _mm256_loadu_ps(x + k);
        m = _mm256_max_ps(m, absv(v));
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    return _mm256_movemask_ps(nan) ? NAN : hmax_f32(m);
}

void lb_quantize_row_q8_0_avx2(const float *x, void *dst, int64_t n) {
    lb_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / LB_QK; i++, x += LB_QK) {
        float amax = amax_n(x, LB_QK);
        if (isnan(amax)) {
            b[i].d = LB_FP16_NAN;
            memset(b[i].qs, 0, sizeof b[i].qs);
            continue;
        }
        b[i].d = lb_f32_to_fp16(amax / 127);
        float d = lb_fp16_to_f32(b[i].d), id = d > 0 ? 1.0f / d : 0;
        _mm256_storeu_si256((__m256i *)b[i].qs, quant32(x, _mm256_set1_ps(id)));
    }
}

void lb_quantize_row_q8_K_avx2(const float *x, void *dst, int64_t n) {
    lb_block_q8_K *b = dst;
    const __m256i one8 = _mm256_set1_epi8(1), one16 = _mm256_set1_epi16(1);
    for (int64_t i = 0; i < n / LB_QK_K; i++, x += LB_QK_K) {
        float amax = amax_n(x, LB_QK_K);
        if (isnan(amax)) {
            memset(&b[i], 0, sizeof b[i]);
            b[i].d = NAN;
            continue;
        }
        float d = amax / 127, id = d > 0 ? 1.0f / d : 0;
        b[i].d = d;
        for (int k = 0; k < 8; k++) {
            __m256i q = quant32(x + 32 * k, _mm256_set1_ps(id));
            _mm256_storeu_si256((__m256i *)(b[i].qs + 32 * k), q);
            __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(one8, q), one16);
            s = _mm256_hadd_epi32(s, s);
            s = _mm256_hadd_epi32(s, s);
            b[i].bsums[2 * k] = (int16_t)_mm256_extract_epi32(s, 0);
            b[i].bsums[2 * k + 1] = (int16_t)_mm256_extract_epi32(s, 4);
        }
    }
}

/* ---- 32-element formats ---- */

float lb_vec_dot_q8_0_q8_avx2(int n, const void *w_row, const void *x_q) {
    const lb_block_q8_0 *w = w_row, *x = x_q;
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / LB_QK; i++) {
        __m256i p = dot_i8(loadu256(w[i].qs), loadu256(x[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(F16(w[i].d) * F16(x[i].d)), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum_f32(acc);
}

/* Four blocks per step into four accumulators (an FMA chain per block was the limit); the
 * eight fp16 scales of a step are converted together. */
/* codes 0..15 as unsigned bytes: sum (q - 8) x = sum q x - 8 sum x, both in int16 pairs
 * (|2 * 15 * 127| and |2 * 8 * 127| fit), which needs fewer steps than signing q - 8 */
static inline __m256i q4_0_dot(const lb_block_q4_0 *w, const lb_block_q8_0 *x) {
    __m256i xv = loadu256(x->qs);
    __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(nibbles32(w->qs), xv),
                                 _mm256_maddubs_epi16(_mm256_set1_epi8(8), xv));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

static inline uint64_t pack4_f16(uint16_t a, uint16_t b, uint16_t c, uint16_t d) {
    return (uint64_t)a | (uint64_t)b << 16 | (uint64_t)c << 32 | (uint64_t)d << 48;
}

float lb_vec_dot_q4_0_q8_avx2(int n, const void *w_row, const void *x_q) {
    const lb_block_q4_0 *w = w_row;
    const lb_block_q8_0 *x = x_q;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    int nb = n / LB_QK, i = 0;
    for (; i + 4 <= nb; i += 4) {
        __m128i h = _mm_set_epi64x((long long)pack4_f16(x[i].d, x[i + 1].d, x[i + 2].d, x[i + 3].d),
                                   (long long)pack4_f16(w[i].d, w[i + 1].d, w[i + 2].d, w[i + 3].d));
        __m256 f = _mm256_cvtph_ps(h);
        __m128 s = _mm_mul_ps(_mm256_castps256_ps128(f), _mm256_extractf128_ps(f, 1));
        __m256 s2 = _mm256_set_m128(s, s);
        __m256 p0 = _mm256_cvtepi32_ps(q4_0_dot(&w[i], &x[i]));
        __m256 p1 = _mm256_cvtepi32_ps(q4_0_dot(&w[i + 1], &x[i + 1]));
        __m256 p2 = _mm256_cvtepi32_ps(q4_0_dot(&w[i + 2], &x[i + 2]));
        __m256 p3 = _mm256_cvtepi32_ps(q4_0_dot(&w[i + 3], &x[i + 3]));
        acc0 = _mm256_fmadd_ps(_mm256_permute_ps(s2, 0x00), p0, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_permute_ps(s2, 0x55), p1, acc1);
        acc2 = _mm256_fmadd_ps(_mm256_permute_ps(s2, 0xAA), p2, acc2);
        acc3 = _mm256_fmadd_ps(_mm256_permute_ps(s2, 0xFF), p3, acc3);
    }
    for (; i < nb; i++)
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(F16(w[i].d) * F16(x[i].d)), _mm256_cvtepi32_ps(q4_0_dot(&w[i], &x[i])),
                               acc0);
    return hsum_f32(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
}

/* x = d q + m: the m term needs the activation block sum */
static inline void dot_qx_1(__m256i q, const lb_block_q8_0 *x, float dw, float m, __m256 *acc) {
    const __m256i one16 = _mm256_set1_epi16(1);
    __m256i xv = loadu256(x->qs);
    __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(q, xv), one16);
    __m256i sx = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), xv), one16);
    float dx = F16(x->d);
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx), _mm256_cvtepi32_ps(p), *acc);
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(m * dx), _mm256_cvtepi32_ps(sx), *acc);
}

float lb_vec_dot_q4_1_q8_avx2(int n, const void *w_row, const void *x_q) {
    const lb_block_q4_1 *w = w_row;
    const lb_block_q8_0 *x = x_q;
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / LB_QK; i++)
        dot_qx_1(nibbles32(w[i].qs), &x[i], F16(w[i].d), F16(w[i].m), &acc);
    return hsum_f32(acc);
}

static inline __m256i q5_codes(const uint8_t *qs, const uint8_t *qh) {
    __m256i hb = _mm256_and_si256(bits32(qh), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(nibbles32(qs), hb);
}

float lb_vec_dot_q5_0_q8_avx2(int n, const void *w_row, const void *x_q) {
    const lb_block_q5_0 *w = w_row;
    const lb_block_q8_0 *x = x_q;
    __m256 acc = _mm256_setzero_ps();
    const __m256i sixteen = _mm256_set1_epi8(16);
    for (int i = 0; i < n / LB_QK; i++) {
        __m256i q = _mm256_sub_epi8(q5_codes(w[i].qs, w[i].qh), sixteen);
        __m256i p = dot_i8(q, loadu256(x[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(F16(w[i].d) * F16(x[i].d)), _mm256_cvtepi32_ps(p), acc);
    }
    return hsum_f32(acc);
}

float lb_vec_dot_q5_1_q8_avx2(int n, const void *w_row, const void *x_q) {
    const lb_block_q5_1 *w = w_row;
    const lb_block_q8_0 *x = x_q;
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / LB_QK; i++)
        dot_qx_1(q5_codes(w[i].qs, w[i].qh), &x[i], F16(w[i].d), F16(w[i].m), &acc);
    return hsum_f32(acc);
}

/* ---- 256-element formats: exact integer sums per super-block ---- */

static inline __m256i crumbs(__m256i v, int s) { /* 2-bit field s of each byte */
    const __m256i m3 = _mm256_set1_epi8(3);
    switch (s) {
    case 0: return _mm256_and_si256(v, m3);
    case 1: return _mm256_and_si256(_mm256_srli_epi16(v, 2), m3);
    case 2: return _mm256_and_si256(_mm256_srli_epi16(v, 4), m3);
    default: return _mm256_and_si256(_mm256_srli_epi16(v, 6), m3);
    }
}

float lb_vec_dot_q2_K_q8_avx2(int n, const void *w_row, const void *x_q) {
    const lb_block_q2_K *w = w_row;
    const lb_block_q8_K *x = x_q;
    float sum = 0;
    for (int i = 0; i < n / LB_QK_K; i++) {
        __m256i acc = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i qv = loadu256(w[i].qs + 32 * h);
            for (int s = 0; s < 4; s++) {
                int j = 8 * h + 2 * s;
                __m256i p = dot_u8_scaled(crumbs(qv, s), loadu256(x[i].qs + 128 * h + 32 * s),
                                          w[i].scales[j] & 0xF, w[i].scales[j + 1] & 0xF);
                acc = _mm256_add_epi32(acc, p);
            }
        }
        int msum = 0;
        for (int j = 0; j < 16; j++) msum += (w[i].scales[j] >> 4) * x[i].bsums[j];
        sum = kq_add(sum, lb_fp16_to_f32(w[i].d), lb_fp16_to_f32(w[i].dmin), x[i].d,
                               hsum_i32(acc), msum);
    }
    return sum;
}

float lb_vec_dot_q3_K_q8_avx2(int n, const void *w_row, const void *x_q) {
    const lb_block_q3_K *w = w_row;
    const lb_block_q8_K *x = x_q;
    float sum = 0;
    for (int i = 0; i < n / LB_QK_K; i++) {
        int sc[16], bias = 0;
        for (int j = 0; j < 16; j++) {
            sc[j] = lb_q3k_get_scale(j, w[i].scales);
            bias += sc[j] * x[i].bsums[j];
        }
        __m256i hm = loadu256(w[i].hmask), acc = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i qv = loadu256(w[i].qs + 32 * h);
            for (int s = 0; s < 4; s++) {
                __m256i bit = _mm256_set1_epi8((char)(1 << (4 * h + s)));
                __m256i hb = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit),
                                              _mm256_set1_epi8(4));
                __m256i q = _mm256_or_si256(crumbs(qv, s), hb);
                int j = 8 * h + 2 * s;
                acc = _mm256_add_epi32(acc, dot_u8_scaled(q, loadu256(x[i].qs + 128 * h + 32 * s),
                                                          sc[j], sc[j + 1]));
            }
        }
        sum = kq_add(sum, lb_fp16_to_f32(w[i].d), 0, x[i].d, hsum_i32(acc) - 4 * bias, 0);
    }
    return sum;
}



float lb_vec_dot_q4_K_q8_avx2(int n, const void *w_row, const void *x_q) {
    const lb_block_q4_K *w = w_row;
    const lb_block_q8_K *x = x_q;
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m128 sum = _mm_setzero_ps();
    for (int i = 0; i < n / LB_QK_K; i++) {
        int msum;
        __m256i sc = _mm256_broadcastsi128_si256(k4_scales(w[i].scales, x[i].bsums, &msum));
        const int8_t *xq = x[i].qs;
        __m256i acc0 = _mm256_setzero_si256(), acc1 = acc0;
        for (int c = 0; c < 4; c++) {
            __m256i b = loadu256(w[i].qs + 32 * c);
            __m256i lo = _mm256_and_si256(b, m4), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
            __m256i plo = _mm256_maddubs_epi16(lo, loadu256(xq + 64 * c));
            __m256i phi = _mm256_maddubs_epi16(hi, loadu256(xq + 64 * c + 32));
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(plo, bcast16(sc, 2 * c)));
            acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(phi, bcast16(sc, 2 * c + 1)));
        }
        sum = kq_accum(sum, F16(w[i].d), F16(w[i].dmin), x[i].d, hsum_i32(_mm256_add_epi32(acc0, acc1)), msum);
    }
    return _mm_cvtss_f32(sum);
}

float lb_vec_dot_q5_K_q8_avx2(int n, const void *w_row, const void *x_q) {
    const lb_block_q5_K *w = w_row;
    const lb_block_q8_K *x = x_q;
    const __m256i m4 = _mm256_set1_epi8(0xF), b5 = _mm256_set1_epi8(0x10);
    __m128 sum = _mm_setzero_ps();
    for (int i = 0; i < n / LB_QK_K; i++) {
        int msum;
        __m256i sc = _mm256_broadcastsi128_si256(k4_scales(w[i].scales, x[i].bsums, &msum));
        const int8_t *xq = x[i].qs;
        __m256i acc0 = _mm256_setzero_si256(), acc1 = acc0, qh = loadu256(w[i].qh);
        for (int c = 0; c < 4; c++) {
            __m256i b = loadu256(w[i].qs + 32 * c);
            /* bit 2c of qh moved to bit 4, then bit 2c + 1 */
            __m256i hl = _mm256_and_si256(_mm256_slli_epi16(qh, 4), b5);
            __m256i hh = _mm256_and_si256(_mm256_slli_epi16(qh, 3), b5);
            qh = _mm256_srli_epi16(qh, 2);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(b, m4), hl);
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b, 4), m4), hh);
            __m256i plo = _mm256_maddubs_epi16(lo, loadu256(xq + 64 * c));
            __m256i phi = _mm256_maddubs_epi16(hi, loadu256(xq + 64 * c + 32));
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(plo, bcast16(sc, 2 * c)));
            acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(phi, bcast16(sc, 2 * c + 1)));
        }
        sum = kq_accum(sum, F16(w[i].d), F16(w[i].dmin), x[i].d, hsum_i32(_mm256_add_epi32(acc0, acc1)), msum);
    }
    return _mm_cvtss_f32(sum);
}

float lb_vec_dot_q6_K_q8_avx2(int n, const void *w_row, const void *x_q) {
    const lb_block_q6_K *w = w_row;
    const lb_block_q8_K *x = x_q;
    float sum = 0;
    for (int i = 0; i < n / LB_QK_K; i++) {
        int bias = 0;
        for (int j = 0; j < 16; j++) bias += w[i].scales[j] * x[i].bsums[j];
        __m256i acc = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q[4];
            q6_codes(&w[i], h, q);
            for (int g = 0; g < 4; g++) {
                int j = 8 * h + 2 * g;
                acc = _mm256_add_epi32(acc, dot_u8_scaled(q[g], loadu256(x[i].qs + 128 * h + 32 * g),
                                                          w[i].scales[j], w[i].scales[j + 1]));
            }
        }
        sum = kq_add(sum, lb_fp16_to_f32(w[i].d), 0, x[i].d, hsum_i32(acc) - 32 * bias, 0);
    }
    return sum;
}

static inline int bsum_total(const int16_t *b) {
    return hsum_i32(_mm256_madd_epi16(loadu256(b), _mm256_set1_epi16(1)));
}

/* trits t in 0..2 times x as unsigned x signed products; the -1 offset is the block's
 * activation sum, taken off the same integer total */
float lb_vec_dot_tq2_0_q8_avx2(int n, const void *w_row, const void *x_q) {
    const lb_block_tq2_0 *w = w_row;
    const lb_block_q8_K *x = x_q;
    const __m256i one16 = _mm256_set1_epi16(1), m3 = _mm256_set1_epi8(3);
    __m128 sum = _mm_setzero_ps();
    for (int i = 0; i < n / LB_QK_K; i++) {
        const int8_t *xq = x[i].qs;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0; /* 4 products of <= 2*127*2 per lane each */
        for (int h = 0; h < 2; h++) {
            __m256i qv = loadu256(w[i].qs + 32 * h);
            const int8_t *xh = xq + 128 * h;
            a0 = _mm256_add_epi16(a0, _mm256_maddubs_epi16(_mm256_and_si256(qv, m3), loadu256(xh)));
            a1 = _mm256_add_epi16(a1, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(qv, 2), m3),
                                                           loadu256(xh + 32)));
            a0 = _mm256_add_epi16(a0, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(qv, 4), m3),
                                                           loadu256(xh + 64)));
            a1 = _mm256_add_epi16(a1, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(qv, 6), m3),
                                                           loadu256(xh + 96)));
        }
        __m256i s32 = _mm256_madd_epi16(_mm256_add_epi16(a0, a1), one16);
        s32 = _mm256_sub_epi32(s32, _mm256_madd_epi16(loadu256(x[i].bsums), one16));
        sum = kq_accum0(sum, F16(w[i].d), x[i].d, hsum_i32(s32));
    }
    return _mm_cvtss_f32(sum);
}

/* bytes times per-128-lane multipliers, modulo 256 */
static inline __m256i mul_bytes(__m256i v, __m256i p16) {
    const __m256i lo = _mm256_set1_epi16(0x00FF);
    __m256i even = _mm256_and_si256(_mm256_mullo_epi16(_mm256_and_si256(v, lo), p16), lo);
    __m256i odd = _mm256_mullo_epi16(_mm256_andnot_si256(lo, v), p16); /* low byte stays 0 */
    return _mm256_or_si256(even, odd);
}

/* top trit of each byte: floor(3 v / 256) = (v > 85) + (v > 170) */
static inline __m256i top_trit(__m256i v) {
    const __m256i one = _mm256_set1_epi8(1);
    __m256i a = _mm256_min_epu8(_mm256_subs_epu8(v, _mm256_set1_epi8(85)), one);
    __m256i b = _mm256_min_epu8(_mm256_subs_epu8(v, _mm256_set1_epi8((char)170)), one);
    return _mm256_add_epi8(a, b);
}

static inline __m256i pow3_pair(int a, int b) {
    return _mm256_set_m128i(_mm_set1_epi16((short)b), _mm_set1_epi16((short)a));
}

float lb_vec_dot_tq1_0_q8_avx2(int n, const void *w_row, const void *x_q) {
    const lb_block_tq1_0 *w = w_row;
    const lb_block_q8_K *x = x_q;
    static const int pow3[6] = {1, 3, 9, 27, 81, 243};
    const __m256i one16 = _mm256_set1_epi16(1);
    float sum = 0;
    for (int i = 0; i < n / LB_QK_K; i++) {
        const int8_t *xq = x[i].qs;
        __m256i acc16 = _mm256_setzero_si256(); /* 8 products of <= 2*127*2 per lane */
        __m256i q0 = loadu256(w[i].qs);
        for (int t = 0; t < 5; t++) {
            __m256i tr = top_trit(mul_bytes(q0, _mm256_set1_epi16((short)pow3[t])));
            acc16 = _mm256_add_epi16(acc16, _mm256_maddubs_epi16(tr, loadu256(xq + 32 * t)));
        }
        /* qs[32..47]: trits t and t + 1 side by side cover 32 consecutive elements */
        __m128i q1h = _mm_loadu_si128((const __m128i *)(w[i].qs + 32));
        __m256i q1 = _mm256_set_m128i(q1h, q1h);
        for (int t = 0; t < 4; t += 2) {
            __m256i tr = top_trit(mul_bytes(q1, pow3_pair(pow3[t], pow3[t + 1])));
            acc16 = _mm256_add_epi16(acc16, _mm256_maddubs_epi16(tr, loadu256(xq + 160 + 16 * t)));
        }
        /* trit 4 of qs[32..47] (elements 224..239) beside the 16 trits of qh (240..255) */
        uint8_t tail[16];
        for (int k = 0; k < 16; k++) tail[k] = (uint8_t)(w[i].qh[k & 3] * pow3[k >> 2]);
        __m256i q2 = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)tail), q1h);
        __m256i tr = top_trit(mul_bytes(q2, pow3_pair(81, 1)));
        acc16 = _mm256_add_epi16(acc16, _mm256_maddubs_epi16(tr, loadu256(xq + 224)));
        int isum = hsum_i32(_mm256_madd_epi16(acc16, one16)) - bsum_total(x[i].bsums);
        sum = kq_add(sum, lb_fp16_to_f32(w[i].d), 0, x[i].d, isum, 0);
    }
    return sum;
}
