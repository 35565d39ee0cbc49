/* The grouped AVX2 scale-search paths (eight candidates reduced together, fused scan + pick,
 * vector rounding and min/max) must give exactly what the one-candidate-at-a-time paths give:
 * the quantizers' output is meant to be bit-identical to the unbatched search. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "quant/k_search.h"
#include "quant/quant.h"

static uint32_t rng = 12345;
static float rnd(void) { /* uniform in [-1, 1) */
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / 8388608.0f - 1.0f;
}

static void fill(int n, float *x, float *w) {
    for (int i = 0; i < n; i++) {
        x[i] = rnd() * (1 + 3 * (rnd() > 0.9f)); /* a few outliers */
        w[i] = 0.5f + fabsf(rnd());
    }
}

static void test_grouped_scans(int n) {
    float x[256], w[256], isc[21], xm[21], a[63], b[63];
    int bad = 0;
    for (int rep = 0; rep < 300; rep++) {
        fill(8 * n, x, w);
        for (int k = 0; k < 21; k++) {
            isc[k] = (15 + 0.1f * (float)(k - 10)) / 2.5f;
            xm[k] = -1.2f + 0.05f * (float)k * rnd(); /* not the minimum: clamping both sides */
        }
        int nc = 1 + rep % 21;
        lb_qs_scan_asym_avx2(n, x, w, xm[0], 15, isc, nc, a);
        for (int k = 0; k < nc; k++) lb_qs_scan_asym_avx2(n, x, w, xm[0], 15, &isc[k], 1, b + 3 * k);
        bad += memcmp(a, b, sizeof(float) * 3 * (size_t)nc) != 0;
        lb_qs_scan_asym_offs_avx2(n, x, w, xm, 15, isc, nc, a);
        for (int k = 0; k < nc; k++) lb_qs_scan_asym_avx2(n, x, w, xm[k], 15, &isc[k], 1, b + 3 * k);
        bad += memcmp(a, b, sizeof(float) * 3 * (size_t)nc) != 0;
        int nb = 1 + rep % 8;
        lb_qs_scan_asym_blocks_avx2(n, x, w, xm, 15, isc, nb, a);
        for (int k = 0; k < nb; k++)
            lb_qs_scan_asym_avx2(n, x + k * n, w + k * n, xm[k], 15, &isc[k], 1, b + 3 * k);
        bad += memcmp(a, b, sizeof(float) * 3 * (size_t)nb) != 0;
    }
    CHECK(bad == 0, "n=%d: %d grouped scans differ from one-candidate scans", n, bad);
}

static void test_fused_search(void) {
    float x[32], w[32], isc[21], sums[63];
    int bad = 0;
    for (int rep = 0; rep < 500; rep++) {
        fill(32, x, w);
        float mn, mx, sw = 0, sx = 0;
        lb_qs_minmax_avx2(32, x, &mn, &mx);
        for (int i = 0; i < 32; i++) sw += w[i], sx += w[i] * x[i];
        int nc = 1 + rep % 21, fo = rep & 1;
        for (int k = 0; k < nc; k++) isc[k] = (15 + 0.1f * (float)(k - 10)) / (mx - mn);
        float s1 = 0, o1 = 0, s2 = 0, o2 = 0, best[3] = {0};
        lb_qs_scan_asym_avx2(32, x, w, mn, 15, isc, nc, sums);
        int p1 = lb_qs_pick_asym_avx2(nc, sums, sw, sx, fo, &s1, &o1);
        int p2 = lb_qs_search_asym_avx2(32, x, w, mn, 15, isc, nc, sw, sx, fo, &s2, &o2, best);
        bad += p1 != p2 || s1 != s2 || o1 != o2;
        if (p1 >= 0 && p1 == p2) bad += memcmp(best, sums + 3 * p1, sizeof best) != 0;
    }
    CHECK(bad == 0, "%d fused searches differ from scan + pick", bad);
}

static void test_round_minmax(void) {
    float x[64], w[64];
    uint8_t a[64], b[64];
    int bad = 0;
    for (int rep = 0; rep < 300; rep++) {
        fill(64, x, w);
        if (rep % 7 == 0) x[rep % 64] = NAN; /* NaN codes to 0 in both */
        float off = -0.8f * fabsf(rnd()), is = 4 + 8 * fabsf(rnd());
        lb_qs_round_asym_avx2(64, x, off, is, 15, a);
        for (int i = 0; i < 64; i++) b[i] = (uint8_t)lb_qs_round_clamp((x[i] - off) * is, 0, 15);
        bad += memcmp(a, b, 64) != 0;
        if (rep % 7 == 0) continue;
        float mn, mx, smn = x[0], smx = x[0];
        lb_qs_minmax_avx2(64, x, &mn, &mx);
        for (int i = 0; i < 64; i++) smn = fminf(smn, x[i]), smx = fmaxf(smx, x[i]);
        bad += mn != smn || mx != smx;
    }
    CHECK(bad == 0, "%d vector roundings or min/max differ from scalar", bad);
}

int main(void) {
    if (lb_cpu_has_avx2()) {
        test_grouped_scans(32);
        test_grouped_scans(16);
        test_fused_search();
        test_round_minmax();
    }
    return test_summary();
}
