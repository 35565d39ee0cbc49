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

/* Horizontal sums of eight vectors, lane k = hsum8(v[k]) bit for bit (same addition order:
 * halves, then lanes two apart, then neighbours), for a third of the shuffles. */
static inline __m256 hsum8x8(const __m256 *v) {
    __m256 s04 = _mm256_add_ps(_mm256_permute2f128_ps(v[0], v[4], 0x20),
                               _mm256_permute2f128_ps(v[0], v[4], 0x31));
    __m256 s15 = _mm256_add_ps(_mm256_permute2f128_ps(v[1], v[5], 0x20),
                               _mm256_permute2f128_ps(v[1], v[5], 0x31));
    __m256 s26 = _mm256_add_ps(_mm256_permute2f128_ps(v[2], v[6], 0x20),
                               _mm256_permute2f128_ps(v[2], v[6], 0x31));
    __m256 s37 = _mm256_add_ps(_mm256_permute2f128_ps(v[3], v[7], 0x20),
                               _mm256_permute2f128_ps(v[3], v[7], 0x31));
    __m256 z0 = _mm256_add_ps(_mm256_shuffle_ps(s04, s15, 0x44), _mm256_shuffle_ps(s04, s15, 0xEE));
    __m256 z1 = _mm256_add_ps(_mm256_shuffle_ps(s26, s37, 0x44), _mm256_shuffle_ps(s26, s37, 0xEE));
    return _mm256_add_ps(_mm256_shuffle_ps(z0, z1, 0x88), _mm256_shuffle_ps(z0, z1, 0xDD));
}

/* One candidate's three accumulators (the element loop of the scan). */
static inline void scan_asym_one(int n, const float *x, const float *w, __m256 vmin, __m256 is,
                                 __m256 hi, __m256 *acc) {
    const __m256 lo = _mm256_setzero_ps();
    __m256 sl = _mm256_setzero_ps(), sll = sl, slx = sl;
    for (int i = 0; i < n; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i), wv = _mm256_loadu_ps(w + i);
        __m256 l = round_clamp(_mm256_mul_ps(is, _mm256_sub_ps(xv, vmin)), lo, hi);
        __m256 wl = _mm256_mul_ps(wv, l);
        sl = _mm256_add_ps(sl, wl);
        sll = _mm256_fmadd_ps(wl, l, sll);
        slx = _mm256_fmadd_ps(wl, xv, slx);
    }
    acc[0] = sl;
    acc[1] = sll;
    acc[2] = slx;
}

/* Candidates in groups of eight (reduced together); xmin per candidate when xmins is set. */
static void scan_asym_groups(int n, const float *x, const float *w, int stride, float xmin,
                             const float *xmins, int nmax, const float *iscale, int ncand,
                             float *sums) {
    const __m256 hi = _mm256_set1_ps((float)nmax);
    int k = 0;
    for (; k + 4 <= ncand; k += 8) { /* four or more left: the group reduction pays */
        int m = ncand - k < 8 ? ncand - k : 8;
        __m256 a[3][8];
        for (int c = 0; c < 8; c++) {
            if (c >= m) {
                a[0][c] = a[1][c] = a[2][c] = _mm256_setzero_ps();
                continue;
            }
            __m256 acc[3];
            scan_asym_one(n, x + (k + c) * stride, w + (k + c) * stride,
                          _mm256_set1_ps(xmins ? xmins[k + c] : xmin),
                          _mm256_set1_ps(iscale[k + c]), hi, acc);
            a[0][c] = acc[0];
            a[1][c] = acc[1];
            a[2][c] = acc[2];
        }
        float r[3][8];
        for (int t = 0; t < 3; t++) _mm256_storeu_ps(r[t], hsum8x8(a[t]));
        for (int c = 0; c < m; c++)
            for (int t = 0; t < 3; t++) sums[3 * (k + c) + t] = r[t][c];
    }
    for (; k < ncand; k++) {
        __m256 acc[3];
        scan_asym_one(n, x + k * stride, w + k * stride, _mm256_set1_ps(xmins ? xmins[k] : xmin),
                      _mm256_set1_ps(iscale[k]), hi, acc);
        for (int t = 0; t < 3; t++) sums[3 * k + t] = hsum8(acc[t]);
    }
}

void lb_qs_scan_asym_avx2(int n, const float *x, const float *w, float xmin, int nmax,
                          const float *iscale, int ncand, float *sums) {
    scan_asym_groups(n, x, w, 0, xmin, NULL, nmax, iscale, ncand, sums);
}

void lb_qs_scan_asym_offs_avx2(int n, const float *x, const float *w, const float *xmins,
                               int nmax, const float *iscale, int ncand, float *sums) {
    scan_asym_groups(n, x, w, 0, 0, xmins, nmax, iscale, ncand, sums);
}

void lb_qs_scan_asym_blocks_avx2(int n, const float *x, const float *w, const float *xmins,
                                 int nmax, const float *iscale, int nblk, float *sums) {
    scan_asym_groups(n, x, w, n, 0, xmins, nmax, iscale, nblk, sums);
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


/* Least-squares scale and offset of 8 candidates from their sums (sum l, sum l^2, sum l x) and
 * the weighted error of each; +inf where the fit is degenerate (or, with a fixed offset, where
 * the scale would be negative). Shared by the separate pick and the fused search. */
static inline __m256 solve8(__m256 sl, __m256 sll, __m256 slx, __m256 sw, __m256 sx, int free_offset, __m256 *s_out,
                            __m256 *off_out) {
    const __m256 zero = _mm256_setzero_ps(), two = _mm256_set1_ps(2), inf = _mm256_set1_ps(__builtin_inff());
    __m256 det = _mm256_sub_ps(_mm256_mul_ps(sw, sll), _mm256_mul_ps(sl, sl));
    __m256 ok = _mm256_cmp_ps(det, zero, _CMP_GT_OQ);
    __m256 s = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sw, slx), _mm256_mul_ps(sl, sx)), det);
    __m256 off = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sll, sx), _mm256_mul_ps(sl, slx)), det);
    if (!free_offset) {
        __m256 pos = _mm256_cmp_ps(off, zero, _CMP_GT_OQ);
        off = _mm256_blendv_ps(off, zero, pos);
        s = _mm256_blendv_ps(s, _mm256_div_ps(slx, sll), pos);
        ok = _mm256_and_ps(ok, _mm256_cmp_ps(s, zero, _CMP_GE_OQ));
    }
    __m256 e = _mm256_mul_ps(_mm256_mul_ps(s, s), sll);
    e = _mm256_add_ps(e, _mm256_mul_ps(two, _mm256_mul_ps(_mm256_mul_ps(s, off), sl)));
    e = _mm256_add_ps(e, _mm256_mul_ps(_mm256_mul_ps(off, off), sw));
    e = _mm256_sub_ps(e, _mm256_mul_ps(two, _mm256_mul_ps(s, slx)));
    e = _mm256_sub_ps(e, _mm256_mul_ps(two, _mm256_mul_ps(off, sx)));
    *s_out = s;
    *off_out = off;
    return _mm256_blendv_ps(inf, e, ok);
}

/* Same choice as lb_qs_pick_asym, 8 candidates a step (the divisions dominated). */
int lb_qs_pick_asym_avx2(int ncand, const float *sums, float sw_, float sx_, int free_offset,
                         float *s_out, float *off_out) {
    const __m256 sw = _mm256_set1_ps(sw_), sx = _mm256_set1_ps(sx_);
    const __m256i idx3 = _mm256_setr_epi32(0, 3, 6, 9, 12, 15, 18, 21);
    int best = -1;
    float best_e = __builtin_inff();
    for (int k0 = 0; k0 < ncand; k0 += 8) {
        int m = ncand - k0 < 8 ? ncand - k0 : 8;
        float tmp[24];
        for (int i = 0; i < 24; i++) tmp[i] = i < 3 * m ? sums[3 * k0 + i] : 0;
        __m256 sl = _mm256_i32gather_ps(tmp, idx3, 4), sll = _mm256_i32gather_ps(tmp + 1, idx3, 4);
        __m256 slx = _mm256_i32gather_ps(tmp + 2, idx3, 4);
        __m256 s, off, e = solve8(sl, sll, slx, sw, sx, free_offset, &s, &off);
        float ev[8], sv[8], ov[8];
        _mm256_storeu_ps(ev, e);
        _mm256_storeu_ps(sv, s);
        _mm256_storeu_ps(ov, off);
        for (int i = 0; i < m; i++)
            if (ev[i] < best_e) {
                best_e = ev[i];
                best = k0 + i;
                *s_out = sv[i];
                *off_out = ov[i];
            }
    }
    return best;
}

/* lb_qs_scan_asym_avx2 then lb_qs_pick_asym_avx2 without the interleaved sums in between:
 * each group's reduced sums go straight into the pick's arithmetic (same operations, same
 * result). best[3] receives the winner's sums. */
int lb_qs_search_asym_avx2(int n, const float *x, const float *w, float xmin, int nmax,
                           const float *iscale, int ncand, float sw_, float sx_, int free_offset,
                           float *s_out, float *off_out, float *best) {
    const __m256 hi = _mm256_set1_ps((float)nmax), vmin = _mm256_set1_ps(xmin);
    const __m256 sw = _mm256_set1_ps(sw_), sx = _mm256_set1_ps(sx_), zero = _mm256_setzero_ps();
    int bi = -1;
    float best_e = __builtin_inff();
    for (int k0 = 0; k0 < ncand; k0 += 8) {
        int m = ncand - k0 < 8 ? ncand - k0 : 8;
        __m256 a[3][8];
        for (int c = 0; c < 8; c++) {
            if (c >= m) {
                a[0][c] = a[1][c] = a[2][c] = zero;
                continue;
            }
            __m256 acc[3];
            scan_asym_one(n, x, w, vmin, _mm256_set1_ps(iscale[k0 + c]), hi, acc);
            a[0][c] = acc[0];
            a[1][c] = acc[1];
            a[2][c] = acc[2];
        }
        __m256 sl = hsum8x8(a[0]), sll = hsum8x8(a[1]), slx = hsum8x8(a[2]);
        __m256 s, off, e = solve8(sl, sll, slx, sw, sx, free_offset, &s, &off);
        float ev[8], sv[8], ov[8], r[3][8];
        _mm256_storeu_ps(ev, e);
        _mm256_storeu_ps(sv, s);
        _mm256_storeu_ps(ov, off);
        _mm256_storeu_ps(r[0], sl);
        _mm256_storeu_ps(r[1], sll);
        _mm256_storeu_ps(r[2], slx);
        for (int i = 0; i < m; i++)
            if (ev[i] < best_e) {
                best_e = ev[i];
                bi = k0 + i;
                *s_out = sv[i];
                *off_out = ov[i];
                best[0] = r[0][i];
                best[1] = r[1][i];
                best[2] = r[2][i];
            }
    }
    return bi;
}

/* L = clamp(round((x - off) * is), 0, nmax), as the scalar lb_qs_round_clamp; n % 8 == 0. */
void lb_qs_round_asym_avx2(int n, const float *x, float off, float is, int nmax, uint8_t *L) {
    const __m256 lo = _mm256_setzero_ps(), hi = _mm256_set1_ps((float)nmax);
    const __m256 vo = _mm256_set1_ps(off), vi = _mm256_set1_ps(is);
    for (int i = 0; i < n; i += 8) {
        __m256 v = round_clamp(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vo), vi), lo, hi);
        __m256i qi = _mm256_cvtps_epi32(v);
        __m128i p = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
        _mm_storel_epi64((__m128i *)(L + i), _mm_packus_epi16(p, p));
    }
}

/* min and max of x, n % 8 == 0 */
void lb_qs_minmax_avx2(int n, const float *x, float *mn, float *mx) {
    __m256 a = _mm256_loadu_ps(x), b = a;
    for (int i = 8; i < n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        a = _mm256_min_ps(a, v);
        b = _mm256_max_ps(b, v);
    }
    float av[8], bv[8];
    _mm256_storeu_ps(av, a);
    _mm256_storeu_ps(bv, b);
    *mn = av[0];
    *mx = bv[0];
    for (int i = 1; i < 8; i++) {
        *mn = av[i] < *mn ? av[i] : *mn;
        *mx = bv[i] > *mx ? bv[i] : *mx;
    }
}

void lb_qs_weights_avx2(int n, const float *x, const float *imatrix, float *w) {
    __m256 ss = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        ss = _mm256_fmadd_ps(v, v, ss);
    }
    __m256 s2 = _mm256_set1_ps(hsum8(ss) / (float)n), sw = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 wv = _mm256_sqrt_ps(_mm256_fmadd_ps(v, v, s2));
        if (imatrix) wv = _mm256_mul_ps(wv, _mm256_max_ps(_mm256_loadu_ps(imatrix + i), _mm256_setzero_ps()));
        sw = _mm256_add_ps(sw, wv);
        _mm256_storeu_ps(w + i, wv);
    }
    if (!(hsum8(sw) > 0)) /* dead columns: plain error */
        for (int i = 0; i < n; i++) w[i] = 1;
}
