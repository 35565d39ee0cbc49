/* AVX2 + FMA + F16C vector ops. Tails use masked loads/stores (float) or scalar code (half). */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/vec.h"
#include "kernels/cpu/attn_impl.h"

#define LB_AI static inline __attribute__((always_inline))

/* Lanes [0, n) set, n in 0..8. */
LB_AI __m256i tail_mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

LB_AI float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

LB_AI double hsum_double(__m256 v) {
    __m256d d = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(d), _mm256_extractf128_pd(d, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

LB_AI float half1(uint16_t h) { return _cvtsh_ss(h); }
LB_AI __m256 load_half8(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p)); }

/* exp(x) for float lanes: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so n*hi is
 * exact), exp(r) by its degree-7 Taylor polynomial (truncation < 1e-8 relative), times 2^n
 * built in the exponent bits. Max relative error a few 1e-7. Below -87.33 (where expf becomes
 * subnormal) it returns 0; inputs are clamped at 88 above. NaN stays NaN, as in expf: maxps and
 * minps return their second operand when one is NaN, so x comes second (the clamp the other
 * way round made exp(NaN) = 1e-38 and a softmax over NaN scores finite). */
LB_AI __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33f), hi = _mm256_set1_ps(88.0f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(hi, _mm256_max_ps(lo, x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

static float dot_avx2(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    if (i < n) {
        __m256i m = tail_mask(n - i);
        s1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), s1);
    }
    return hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
}

static void axpy_avx2(float *y, float a, const float *x, int64_t n) {
    __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    if (i < n) {
        __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(y + i, m, _mm256_fmadd_ps(av, _mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m)));
    }
}

static float dot_f16_avx2(const uint16_t *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(load_half8(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(load_half8(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(load_half8(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(load_half8(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(load_half8(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += half1(a[i]) * b[i];
    return s;
}

static void axpy_f16_avx2(float *y, float a, const uint16_t *x, int64_t n) {
    __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, load_half8(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * half1(x[i]);
}

static void rmsnorm_avx2(float *out, const float *x, const float *w, int64_t n, float eps) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        s0 = _mm256_fmadd_ps(a, a, s0);
        s1 = _mm256_fmadd_ps(b, b, s1);
    }
    double ss = hsum_double(s0) + hsum_double(s1);
    for (; i < n; i++) ss += (double)x[i] * x[i];
    float s = (float)(1.0 / sqrt(ss / (double)(n > 0 ? n : 1) + eps));
    __m256 sv = _mm256_set1_ps(s);
    i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), sv);
        _mm256_storeu_ps(out + i, w ? _mm256_mul_ps(v, _mm256_loadu_ps(w + i)) : v);
    }
    for (; i < n; i++) out[i] = w ? (x[i] * s) * w[i] : x[i] * s;
}

static void softmax_avx2(float *x, int64_t n) {
    if (n <= 0) return;
    __m256 mv = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(x + i));
    float m[8], mx = -INFINITY;
    _mm256_storeu_ps(m, mv);
    for (int j = 0; j < 8; j++) mx = m[j] > mx ? m[j] : mx;
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    mv = _mm256_set1_ps(mx);
    __m256 sum = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
        _mm256_storeu_ps(x + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (i < n) {
        __m256i msk = tail_mask(n - i);
        __m256 e = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, msk), mv)), _mm256_castsi256_ps(msk));
        _mm256_maskstore_ps(x + i, msk, e);
        sum = _mm256_add_ps(sum, e);
    }
    __m256 inv = _mm256_set1_ps((float)(1.0 / hsum_double(sum)));
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    if (i < n) {
        __m256i msk = tail_mask(n - i);
        _mm256_maskstore_ps(x + i, msk, _mm256_mul_ps(_mm256_maskload_ps(x + i, msk), inv));
    }
}

LB_AI __m256 silu_mul8(__m256 g, __m256 u) {
    __m256 d = _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(_mm256_sub_ps(_mm256_setzero_ps(), g)));
    return _mm256_mul_ps(_mm256_div_ps(g, d), u);
}

static void silu_mul_avx2(float *g, const float *up, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(g + i, silu_mul8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(up + i)));
    if (i < n) {
        __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(g + i, m, silu_mul8(_mm256_maskload_ps(g + i, m), _mm256_maskload_ps(up + i, m)));
    }
}

LB_AI __m256 relu2_mul8(__m256 g, __m256 u) {
    __m256 r = _mm256_max_ps(_mm256_setzero_ps(), g); /* g second: relu(NaN) is NaN, as in the scalar twin */
    return _mm256_mul_ps(_mm256_mul_ps(r, r), u);
}

static void relu2_mul_avx2(float *g, const float *up, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(g + i, relu2_mul8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(up + i)));
    if (i < n) {
        __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(g + i, m, relu2_mul8(_mm256_maskload_ps(g + i, m), _mm256_maskload_ps(up + i, m)));
    }
}

static void add_avx2(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(y + i, m, _mm256_add_ps(_mm256_maskload_ps(y + i, m), _mm256_maskload_ps(x + i, m)));
    }
}

static void scale_avx2(float *y, float a, int64_t n) {
    __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), av));
    if (i < n) {
        __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(y + i, m, _mm256_mul_ps(_mm256_maskload_ps(y + i, m), av));
    }
}

static void to_f16_avx2(uint16_t *dst, const float *src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

/* 8 int8 of a Q8_0 block as floats. */
LB_AI __m256 load_q8x8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p)));
}

static float dot_q8_0_avx2(const lb_block_q8_0 *b, const float *q, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t j = 0; j < nb; j++, q += LB_QK) {
        __m256 t = _mm256_mul_ps(load_q8x8(b[j].qs), _mm256_loadu_ps(q));
        t = _mm256_fmadd_ps(load_q8x8(b[j].qs + 8), _mm256_loadu_ps(q + 8), t);
        t = _mm256_fmadd_ps(load_q8x8(b[j].qs + 16), _mm256_loadu_ps(q + 16), t);
        t = _mm256_fmadd_ps(load_q8x8(b[j].qs + 24), _mm256_loadu_ps(q + 24), t);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half1(b[j].d)), t, acc);
    }
    return hsum(acc);
}

static void axpy_q8_0_avx2(float *y, float a, const lb_block_q8_0 *b, int64_t nb) {
    for (int64_t j = 0; j < nb; j++, y += LB_QK) {
        __m256 ad = _mm256_set1_ps(a * half1(b[j].d));
        for (int i = 0; i < LB_QK; i += 8)
            _mm256_storeu_ps(y + i, _mm256_fmadd_ps(ad, load_q8x8(b[j].qs + i), _mm256_loadu_ps(y + i)));
    }
}

/* A Q4_0 block's 32 codes - 8 as four vectors of 8 floats: elements 0-7, 8-15 (low nibbles),
 * 16-23, 24-31 (high nibbles). */
LB_AI void load_q4x32(const uint8_t *qs, __m256 v[4]) {
    __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)qs), m = _mm_set1_epi8(15), e = _mm_set1_epi8(8);
    __m128i lo = _mm_sub_epi8(_mm_and_si128(raw, m), e), hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), m), e);
    v[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
    v[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
    v[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
    v[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
}

static float dot_q4_0_avx2(const lb_block_q4_0 *b, const float *q, int64_t nb) {
    __m256 acc = _mm256_setzero_ps(), v[4];
    for (int64_t j = 0; j < nb; j++, q += LB_QK) {
        load_q4x32(b[j].qs, v);
        __m256 t = _mm256_mul_ps(v[0], _mm256_loadu_ps(q));
        t = _mm256_fmadd_ps(v[1], _mm256_loadu_ps(q + 8), t);
        t = _mm256_fmadd_ps(v[2], _mm256_loadu_ps(q + 16), t);
        t = _mm256_fmadd_ps(v[3], _mm256_loadu_ps(q + 24), t);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(half1(b[j].d)), t, acc);
    }
    return hsum(acc);
}

static void axpy_q4_0_avx2(float *y, float a, const lb_block_q4_0 *b, int64_t nb) {
    __m256 v[4];
    for (int64_t j = 0; j < nb; j++, y += LB_QK) {
        __m256 ad = _mm256_set1_ps(a * half1(b[j].d));
        load_q4x32(b[j].qs, v);
        for (int i = 0; i < 4; i++) _mm256_storeu_ps(y + 8 * i, _mm256_fmadd_ps(ad, v[i], _mm256_loadu_ps(y + 8 * i)));
    }
}

LB_ATTN_FNS(avx2, dot_avx2, dot_f16_avx2, dot_q8_0_avx2, dot_q4_0_avx2, axpy_avx2, axpy_f16_avx2, axpy_q8_0_avx2,
            axpy_q4_0_avx2)

static const lb_vec_ops g_avx2 = {dot_avx2,     axpy_avx2,     dot_f16_avx2,  axpy_f16_avx2,
                                  rmsnorm_avx2, softmax_avx2,  silu_mul_avx2, relu2_mul_avx2,
                                  add_avx2,     scale_avx2,    to_f16_avx2,   attn_scores_avx2,
                                  attn_values_avx2};

const lb_vec_ops *lb_vec_avx2_table(void) { return &g_avx2; }
