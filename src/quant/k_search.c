#include "quant/k_search.h"

#include <math.h>
#include <string.h>

void lb_qs_weights(int n, const float *x, const float *imatrix, float *w) {
    float ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float s2 = ss / (float)n;
    for (int i = 0; i < n; i++) w[i] = __builtin_sqrtf(s2 + x[i] * x[i]); /* >= 0: no errno path */
    if (imatrix)
        for (int i = 0; i < n; i++) w[i] *= imatrix[i] > 0 ? imatrix[i] : 0;
    /* an all-zero weight vector (dead columns) falls back to plain error */
    float sw = 0;
    for (int i = 0; i < n; i++) sw += w[i];
    if (!(sw > 0))
        for (int i = 0; i < n; i++) w[i] = 1;
}

void lb_qs_scan_asym(int n, const float *x, const float *w, float xmin, int nmax,
                     const float *iscale, int ncand, float *sums) {
    for (int k = 0; k < ncand; k++) {
        float sl = 0, sll = 0, slx = 0;
        for (int i = 0; i < n; i++) {
            float l = (float)lb_qs_round_clamp(iscale[k] * (x[i] - xmin), 0, nmax);
            float wl = w[i] * l;
            sl += wl;
            sll += wl * l;
            slx += wl * x[i];
        }
        sums[3 * k] = sl;
        sums[3 * k + 1] = sll;
        sums[3 * k + 2] = slx;
    }
}

void lb_qs_scan_sym(int n, const float *x, const float *w, int lo, int hi, const float *iscale,
                    int ncand, float *sums) {
    for (int k = 0; k < ncand; k++) {
        float slx = 0, sll = 0;
        for (int i = 0; i < n; i++) {
            float l = (float)lb_qs_round_clamp(iscale[k] * x[i], lo, hi);
            float wl = w[i] * l;
            slx += wl * x[i];
            sll += wl * l;
        }
        sums[2 * k] = slx;
        sums[2 * k + 1] = sll;
    }
}

/* Weighted least squares of x on (L, 1): returns 0 when degenerate. */
static int fit_line(float sw, float sx, float sl, float sll, float slx, int free_offset,
                    float *s, float *off) {
    float det = sw * sll - sl * sl;
    if (det > 0) {
        *s = (sw * slx - sl * sx) / det;
        *off = (sll * sx - sl * slx) / det;
    } else {
        *s = 0;
        *off = sw > 0 ? sx / sw : 0;
    }
    if (!free_offset && *off > 0) { /* min must be subtracted: pin it at 0 */
        *off = 0;
        *s = sll > 0 ? slx / sll : 0;
    }
    if (!free_offset && *s < 0) return 0;
    return isfinite(*s) && isfinite(*off);
}

/* Error without the constant sum w x^2. */
static float line_err(float s, float off, float sw, float sx, float sl, float sll, float slx) {
    return s * s * sll + 2 * s * off * sl + off * off * sw - 2 * s * slx - 2 * off * sx;
}

int lb_qs_pick_asym(int ncand, const float *sums, float sw, float sx, int free_offset, float *s_out,
                    float *off_out) {
    int best = -1;
    float best_e = INFINITY;
    for (int k = 0; k < ncand; k++) {
        float sl = sums[3 * k], sll = sums[3 * k + 1], slx = sums[3 * k + 2];
        float det = sw * sll - sl * sl;
        if (!(det > 0)) continue;
        float s = (sw * slx - sl * sx) / det, off = (sll * sx - sl * slx) / det;
        if (!free_offset && off > 0) {
            off = 0;
            s = slx / sll;
        }
        if (!free_offset && s < 0) continue;
        float e = line_err(s, off, sw, sx, sl, sll, slx);
        if (e < best_e) {
            best_e = e;
            best = k;
            *s_out = s;
            *off_out = off;
        }
    }
    return best;
}

float lb_qs_fit_asym(int n, const float *x, const float *w, int nmax, int free_offset, int simd,
                     uint8_t *L, float *off_out) {
    float sw, sx;
    return lb_qs_fit_asym_sums(n, x, w, nmax, free_offset, simd, L, off_out, &sw, &sx);
}

float lb_qs_fit_asym_sums(int n, const float *x, const float *w, int nmax, int free_offset,
                          int simd, uint8_t *L, float *off_out, float *sw_out, float *sx_out) {
    float mn = x[0], mx = x[0], sw = 0, sx = 0;
    if (simd) lb_qs_minmax_avx2(n, x, &mn, &mx);
    else
        for (int i = 0; i < n; i++) {
            mn = x[i] < mn ? x[i] : mn;
            mx = x[i] > mx ? x[i] : mx;
        }
    for (int i = 0; i < n; i++) { /* in order: callers reuse these sums */
        sw += w[i];
        sx += w[i] * x[i];
    }
    *sw_out = sw;
    *sx_out = sx;
    if (!free_offset && mn > 0) mn = 0;
    if (!(mx > mn)) { /* constant block */
        for (int i = 0; i < n; i++) L[i] = 0;
        *off_out = mn;
        return 0;
    }
    /* candidates: the min-max scale and a fan of scales around it */
    float isc[LB_QS_MAX_CAND], sums[3 * LB_QS_MAX_CAND];
    int nc = 0;
    for (int k = -6; k <= 10; k++) isc[nc++] = ((float)nmax + 0.1f * (float)k) / (mx - mn);
    float best_s = (mx - mn) / (float)nmax, best_off = mn, best_e = INFINITY;
    float s0, off0, b[3];
    int pick;
    if (simd) {
        pick = lb_qs_search_asym_avx2(n, x, w, mn, nmax, isc, nc, sw, sx, free_offset, &s0, &off0, b);
    } else {
        lb_qs_scan_asym(n, x, w, mn, nmax, isc, nc, sums);
        pick = lb_qs_pick_asym(nc, sums, sw, sx, free_offset, &s0, &off0);
        if (pick >= 0) memcpy(b, sums + 3 * pick, sizeof b);
    }
    if (pick >= 0) {
        best_s = s0;
        best_off = off0;
        best_e = line_err(s0, off0, sw, sx, b[0], b[1], b[2]);
    }
    /* alternate: round with the fitted line, refit, while the error drops */
    for (int it = 0; it < 2 && best_s > 0; it++) {
        float is = 1.0f / best_s, r[3];
        if (simd) lb_qs_scan_asym_avx2(n, x, w, best_off, nmax, &is, 1, r);
        else lb_qs_scan_asym(n, x, w, best_off, nmax, &is, 1, r);
        float sl = r[0], sll = r[1], slx = r[2], s, off;
        if (!fit_line(sw, sx, sl, sll, slx, free_offset, &s, &off)) break;
        float e = line_err(s, off, sw, sx, sl, sll, slx);
        if (!(e < best_e * (1 - 1e-6f) - 1e-30f)) break;
        best_e = e;
        best_s = s;
        best_off = off;
    }
    float is = best_s > 0 ? 1.0f / best_s : 0;
    if (simd) lb_qs_round_asym_avx2(n, x, best_off, is, nmax, L);
    else
        for (int i = 0; i < n; i++) L[i] = (uint8_t)lb_qs_round_clamp((x[i] - best_off) * is, 0, nmax);
    *off_out = best_off;
    return best_s;
}

float lb_qs_fit_sym(int n, const float *x, const float *w, int lo, int hi, int simd, int8_t *L) {
    float amax = 0, xm = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            xm = x[i];
        }
    if (!(amax > 0)) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0;
    }
    /* two fans: the largest value on the long side (lo) or on the short side (hi) */
    float isc[LB_QS_MAX_CAND], sums[2 * LB_QS_MAX_CAND];
    int nc = 0;
    for (int k = -6; k <= 8; k++) isc[nc++] = ((float)hi + 0.1f * (float)k) / xm;
    if (lo < 0)
        for (int k = -6; k <= 8; k++) isc[nc++] = -((float)-lo + 0.1f * (float)k) / xm;
    if (simd) lb_qs_scan_sym_avx2(n, x, w, lo, hi, isc, nc, sums);
    else lb_qs_scan_sym(n, x, w, lo, hi, isc, nc, sums);

    float best_s = xm / (float)hi, best_score = -1;
    for (int k = 0; k < nc; k++) {
        float slx = sums[2 * k], sll = sums[2 * k + 1];
        if (!(sll > 0)) continue;
        float score = slx * slx / sll; /* error drop of the optimal scale for this rounding */
        if (score > best_score) {
            best_score = score;
            best_s = slx / sll;
        }
    }
    for (int it = 0; it < 4 && best_s != 0; it++) {
        float is = 1.0f / best_s, r[2];
        if (simd) lb_qs_scan_sym_avx2(n, x, w, lo, hi, &is, 1, r);
        else lb_qs_scan_sym(n, x, w, lo, hi, &is, 1, r);
        float slx = r[0], sll = r[1];
        if (!(sll > 0)) break;
        float score = slx * slx / sll;
        if (!(score > best_score * (1 + 1e-6f))) break;
        best_score = score;
        best_s = slx / sll;
    }
    float is = best_s != 0 ? 1.0f / best_s : 0;
    for (int i = 0; i < n; i++) L[i] = (int8_t)lb_qs_round_clamp(x[i] * is, lo, hi);
    return best_s;
}
