/* AVX2/FMA twins of GPTQ's inner loops (quant/gptq.h; the scalar ones are in gptq.c). Call only
 * when lb_cpu_has_avx2() says so. */
#include <immintrin.h>

#include "quant/gptq.h"

double lb_gptq_dot_d_avx2(const double *a, const double *b, int64_t n) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 = _mm256_fmadd_pd(_mm256_loadu_pd(a + i), _mm256_loadu_pd(b + i), s0);
        s1 = _mm256_fmadd_pd(_mm256_loadu_pd(a + i + 4), _mm256_loadu_pd(b + i + 4), s1);
    }
    s0 = _mm256_add_pd(s0, s1);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s0), _mm256_extractf128_pd(s0, 1));
    double s = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

void lb_gptq_axpy_d_avx2(double *y, double a, const double *x, int64_t n) {
    __m256d va = _mm256_set1_pd(a);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) _mm256_storeu_pd(y + i, _mm256_fmadd_pd(va, _mm256_loadu_pd(x + i), _mm256_loadu_pd(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

void lb_gptq_axpy_f_avx2(float *y, float a, const float *x, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

void lb_gptq_acc4_avx2(double *h, const double *a, const float *const *x, int64_t n) {
    __m256d a0 = _mm256_set1_pd(a[0]), a1 = _mm256_set1_pd(a[1]), a2 = _mm256_set1_pd(a[2]), a3 = _mm256_set1_pd(a[3]);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d s = _mm256_loadu_pd(h + i);
        s = _mm256_fmadd_pd(a0, _mm256_cvtps_pd(_mm_loadu_ps(x[0] + i)), s);
        s = _mm256_fmadd_pd(a1, _mm256_cvtps_pd(_mm_loadu_ps(x[1] + i)), s);
        s = _mm256_fmadd_pd(a2, _mm256_cvtps_pd(_mm_loadu_ps(x[2] + i)), s);
        s = _mm256_fmadd_pd(a3, _mm256_cvtps_pd(_mm_loadu_ps(x[3] + i)), s);
        _mm256_storeu_pd(h + i, s);
    }
    for (; i < n; i++) h[i] += a[0] * x[0][i] + a[1] * x[1][i] + a[2] * x[2][i] + a[3] * x[3][i];
}
