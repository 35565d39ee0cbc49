/* AVX2 kernels for sparse and int8 deltas; results identical to the scalar references. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "delta/sparse.h"

static inline __m256 absps(__m256 v) { return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff))); }
/* kept lanes: !(|x| <= t), true for NaN */
static inline int keep_mask(const float *p, __m256 t) {
    return _mm256_movemask_ps(_mm256_cmp_ps(absps(_mm256_loadu_ps(p)), t, _CMP_NLE_UQ));
}

size_t lb_delta_sparse_count_avx2(const float *x, size_t n, float t) {
    __m256 vt = _mm256_set1_ps(t);
    size_t k = 0, i = 0;
    for (; i + 32 <= n; i += 32) {
        unsigned m = (unsigned)keep_mask(x + i, vt) | (unsigned)keep_mask(x + i + 8, vt) << 8 |
                     (unsigned)keep_mask(x + i + 16, vt) << 16 | (unsigned)keep_mask(x + i + 24, vt) << 24;
        k += (size_t)__builtin_popcount(m);
    }
    return k + lb_delta_sparse_count_scalar(x + i, n - i, t);
}

size_t lb_delta_sparse_gather_avx2(const float *x, size_t n, float t, uint32_t *idx, float *val) {
    uint32_t lut[256][8]; /* lane indices of the set bits of each 8-bit mask, packed left */
    for (int m = 0; m < 256; m++) {
        int c = 0;
        for (int b = 0; b < 8; b++)
            if (m >> b & 1) lut[m][c++] = (uint32_t)b;
        for (; c < 8; c++) lut[m][c] = 0;
    }
    __m256 vt = _mm256_set1_ps(t);
    size_t k = 0, i = 0;
    for (; i + 32 <= n; i += 32) {
        unsigned m4 = (unsigned)keep_mask(x + i, vt) | (unsigned)keep_mask(x + i + 8, vt) << 8 |
                      (unsigned)keep_mask(x + i + 16, vt) << 16 | (unsigned)keep_mask(x + i + 24, vt) << 24;
        if (!m4) continue;
        for (int j = 0; j < 4; j++) {
            unsigned m = (m4 >> (8 * j)) & 0xff;
            if (!m) continue;
            __m256i perm = _mm256_loadu_si256((const __m256i *)(const void *)lut[m]);
            size_t base = i + 8 * (size_t)j;
            __m256 v = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + base), perm);
            __m256i ix = _mm256_add_epi32(perm, _mm256_set1_epi32((int)(uint32_t)base));
            _mm256_storeu_ps(val + k, v);
            _mm256_storeu_si256((__m256i *)(void *)(idx + k), ix);
            k += (size_t)__builtin_popcount(m);
        }
    }
    for (; i < n; i++)
        if (!(fabsf(x[i]) <= t)) {
            idx[k] = (uint32_t)i;
            val[k++] = x[i];
        }
    return k;
}

/* q for 32 values at p: round-half-even(x * inv) clamped to [-127, 127]. */
static inline void quant32(const float *p, __m256 inv, int8_t *q) {
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p), inv));
    __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p + 8), inv));
    __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p + 16), inv));
    __m256i d = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p + 24), inv));
    a = _mm256_min_epi32(_mm256_max_epi32(a, lo), hi);
    b = _mm256_min_epi32(_mm256_max_epi32(b, lo), hi);
    c = _mm256_min_epi32(_mm256_max_epi32(c, lo), hi);
    d = _mm256_min_epi32(_mm256_max_epi32(d, lo), hi);
    __m256i r = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    r = _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)(void *)q, r);
}

size_t lb_delta_int8_quant_avx2(const float *x, size_t n, size_t block, int8_t *q, float *scales) {
    const __m256i absm = _mm256_set1_epi32(0x7fffffff);
    for (size_t b = 0, i0 = 0; i0 < n; b++, i0 += block) {
        size_t m = n - i0 < block ? n - i0 : block, i = 0;
        const float *p = x + i0;
        __m256i vmax = _mm256_setzero_si256();
        for (; i + 8 <= m; i += 8)
            vmax = _mm256_max_epu32(vmax, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(const void *)(p + i)), absm));
        uint32_t lanes[8], amax = 0;
        _mm256_storeu_si256((__m256i *)(void *)lanes, vmax);
        for (int l = 0; l < 8; l++)
            if (lanes[l] > amax) amax = lanes[l];
        amax = lb_delta_absbits_max(p + i, m - i, amax);
        if (amax >= 0x7f800000u) return b;
        float inv;
        scales[b] = lb_delta_int8_scale(amax, &inv);
        __m256 vinv = _mm256_set1_ps(inv);
        for (i = 0; i + 32 <= m; i += 32) quant32(p + i, vinv, q + i0 + i);
        lb_delta_int8_round(p + i, m - i, inv, q + i0 + i);
    }
    return SIZE_MAX;
}

void lb_delta_int8_dequant_avx2(const int8_t *q, const float *scales, size_t n, size_t block, float *out) {
    for (size_t b = 0, i0 = 0; i0 < n; b++, i0 += block) {
        size_t m = n - i0 < block ? n - i0 : block, i = 0;
        __m256 s = _mm256_set1_ps(scales[b]);
        for (; i + 8 <= m; i += 8) {
            __m128i v8 = _mm_loadl_epi64((const __m128i *)(const void *)(q + i0 + i));
            _mm256_storeu_ps(out + i0 + i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v8)), s));
        }
        for (; i < m; i++) out[i0 + i] = (float)q[i0 + i] * scales[b];
    }
}
