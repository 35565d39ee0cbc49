/* AVX2 candidate scans for the scale search: 8 elements a step, L kept in float. */
#include <immintrin.h>

#include "quant/k_search.h"

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* max(v, lo) first so a NaN becomes lo, as the scalar clamp does */
static inline __m256 round_clamp(__m256 v, __m256 lo, __m256 hi) {
    v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

void lb_qs_scan_asym_avx2(int n, const float *x, const float *w, float xmin, int nmax,
                          const float *iscale, int ncand, float *sums) {
    const __m256 lo = _mm256_setzero_ps(), hi = _mm256_set1_ps((float)nmax);
    const __m256 vmin = _mm256_set1_ps(xmin);
    for (int k = 0; k < ncand; k++) {
        __m256 is = _mm256_set1_ps(iscale[k]);
        __m256 sl = _mm256_setzero_ps(), sll = sl, slx = sl;
        for (int i = 0; i < n; i += 8) {
            __m256 xv = _mm256_loadu_ps(x + i), wv = _mm256_loadu_ps(w + i);
            __m256 l = round_clamp(_mm256_mul_ps(is, _mm256_sub_ps(xv, vmin)), lo, hi);
            __m256 wl = _mm256_mul_ps(wv, l);
            sl = _mm256_add_ps(sl, wl);
            sll = _mm256_fmadd_ps(wl, l, sll);
            slx = _mm256_fmadd_ps(wl, xv, slx);
        }
        sums[3 * k] = hsum8(sl);
        sums[3 * k + 1] = hsum8(sll);
        sums[3 * k + 2] = hsum8(slx);
    }
}

void lb_qs_scan_sym_avx2(int n, const float *x, const float *w, int lo_, int hi_,
                         const float *iscale, int ncand, float *sums) {
    const __m256 lo = _mm256_set1_ps((float)lo_), hi = _mm256_set1_ps((float)hi_);
    for (int k = 0; k < ncand; k++) {
        __m256 is = _mm256_set1_ps(iscale[k]);
        __m256 sll = _mm256_setzero_ps(), slx = sll;
        for (int i = 0; i < n; i += 8) {
            __m256 xv = _mm256_loadu_ps(x + i), wv = _mm256_loadu_ps(w + i);
            __m256 l = round_clamp(_mm256_mul_ps(is, xv), lo, hi);
            __m256 wl = _mm256_mul_ps(wv, l);
            sll = _mm256_fmadd_ps(wl, l, sll);
            slx = _mm256_fmadd_ps(wl, xv, slx);
        }
        sums[2 * k] = hsum8(slx);
        sums[2 * k + 1] = hsum8(sll);
    }
}
