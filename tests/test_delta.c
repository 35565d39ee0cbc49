/* Deltas: sparse and int8 against plain loops written here from the documented definitions,
 * AVX2 kernels against the scalar ones, exact XOR round trips, index gaps, bad input; then the
 * real pair stories260K-hf / stories260K-ft-dogs (statistics printed, exactness asserted). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/dtype.h"
#include "delta/sparse.h"

static uint64_t g_rng = 12345;
static uint64_t rnd(void) {
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float unif(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0) * 2 - 1; }

/* A delta-like array: mostly small, some zeros and -0.0, a few large values and NaNs. */
static float *make_delta(size_t n, int with_nan) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rnd() % 100;
        x[i] = r < 30 ? 0.0f : r < 33 ? -0.0f : r < 36 ? unif() * 10 : unif() * 0.01f;
        if (with_nan && r == 99) x[i] = NAN;
    }
    return x;
}
static int same_bits(float a, float b) { return memcmp(&a, &b, 4) == 0; }

static void test_sparse(void) {
    size_t sizes[] = {0, 1, 7, 8, 31, 33, 1000, 100003};
    float ths[] = {0.0f, 0.001f, 0.005f, 1.0f, 1e30f};
    lb_error err;
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
        for (size_t ti = 0; ti < sizeof ths / sizeof *ths; ti++) {
            size_t n = sizes[si];
            float t = ths[ti];
            float *x = make_delta(n, 1);
            /* truth: keep |x| > t, and NaN */
            size_t want = 0;
            for (size_t i = 0; i < n; i++) want += isnan(x[i]) || fabsf(x[i]) > t;
            uint32_t *idx;
            float *val;
            size_t k;
            double ratio;
            CHECK(lb_compress_delta_sparse(x, n, t, &idx, &val, &k, &ratio, &err) == LB_OK, "%s", err.msg);
            int ok = k == want;
            for (size_t i = 0, j = 0; ok && i < n; i++)
                if (isnan(x[i]) || fabsf(x[i]) > t) ok = idx[j] == i && same_bits(val[j], x[i]), j++;
            CHECK(ok, "kept elements n=%zu t=%g: %zu vs %zu", n, t, k, want);
            double wr = want ? (double)(n * 4) / (double)(want * 8) : HUGE_VAL;
            CHECK(ratio == wr, "ratio n=%zu t=%g: %g vs %g", n, t, ratio, wr);
            /* scalar and AVX2 kernels agree */
            if (lb_cpu_has_avx2()) {
                uint32_t *i2 = malloc((want + 8) * 4);
                float *v2 = malloc((want + 8) * 4);
                size_t c1 = lb_delta_sparse_count_avx2(x, n, t), g = lb_delta_sparse_gather_avx2(x, n, t, i2, v2);
                CHECK(c1 == want && g == want && (!want || (memcmp(i2, idx, want * 4) == 0 && memcmp(v2, val, want * 4) == 0)),
                      "avx2 == truth n=%zu t=%g", n, t);
                free(i2), free(v2);
            }
            CHECK(lb_delta_sparse_count_scalar(x, n, t) == want, "-");
            /* reconstruction: kept values in place, the rest zero */
            float *out = malloc((n ? n : 1) * 4);
            CHECK(lb_decompress_delta_sparse(idx, val, k, out, n, &err) == LB_OK, "-");
            ok = 1;
            for (size_t i = 0; i < n; i++) {
                int kept = isnan(x[i]) || fabsf(x[i]) > t;
                ok &= kept ? same_bits(out[i], x[i]) : out[i] == 0.0f && !signbit(out[i]);
            }
            CHECK(ok, "reconstruction n=%zu t=%g", n, t);
            if (t == 0.0f) { /* every non-zero element comes back exactly; -0.0 as +0.0 */
                ok = 1;
                for (size_t i = 0; i < n; i++) ok &= isnan(x[i]) ? same_bits(out[i], x[i]) : out[i] == x[i];
                CHECK(ok, "threshold 0 is exact up to the sign of zero (n=%zu)", n);
            }
            if (k) {
                uint32_t saved = idx[k - 1];
                idx[k - 1] = (uint32_t)n;
                CHECK(lb_decompress_delta_sparse(idx, val, k, out, n, &err) == LB_ERR_RANGE, "index n rejected");
                idx[k - 1] = saved;
                CHECK(lb_decompress_delta_sparse(idx, val, k, out, n ? n - 1 : 0, &err) == (saved >= n - 1 ? LB_ERR_RANGE : LB_OK), "-");
            }
            free(idx), free(val), free(out), free(x);
        }
    uint32_t *idx;
    float *val, one = 1.0f;
    size_t k;
    double r;
    CHECK(lb_compress_delta_sparse(&one, 1, -1.0f, &idx, &val, &k, &r, &err) == LB_ERR_ARG, "negative threshold");
    CHECK(lb_compress_delta_sparse(&one, 1, NAN, &idx, &val, &k, &r, &err) == LB_ERR_ARG, "NaN threshold");
    CHECK(lb_compress_delta_sparse(&one, 1, 2.0f, &idx, &val, &k, &r, &err) == LB_OK && k == 0 && !idx && isinf(r),
          "nothing kept: NULL arrays, infinite ratio");
}

static void test_int8(void) {
    size_t sizes[] = {0, 1, 5, 64, 65, 1000, 100003};
    size_t blocks[] = {1, 7, 32, 64, 100, 4096};
    lb_error err;
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
        for (size_t bi = 0; bi < sizeof blocks / sizeof *blocks; bi++) {
            size_t n = sizes[si], B = blocks[bi], nb = (n + B - 1) / B;
            float *x = make_delta(n, 0);
            if (n > 200) memset(x + 64, 0, 100 * sizeof *x); /* an all-zero block or two */
            int8_t *q = malloc(n + 1), *qt = malloc(n + 1);
            float *s = malloc((nb + 1) * 4), *st = malloc((nb + 1) * 4), *out = malloc((n + 1) * 4);
            CHECK(lb_compress_delta_int8(x, n, B, q, s, &err) == LB_OK, "%s", err.msg);
            /* the definition, written plainly */
            for (size_t b = 0; b < nb; b++) {
                float amax = 0;
                for (size_t i = b * B; i < n && i < (b + 1) * B; i++) amax = fmaxf(amax, fabsf(x[i]));
                st[b] = amax / 127.0f;
                float inv = st[b] != 0 ? 1.0f / st[b] : 0;
                for (size_t i = b * B; i < n && i < (b + 1) * B; i++) {
                    float v = rintf(x[i] * inv);
                    qt[i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
                }
            }
            CHECK((!n || memcmp(q, qt, n) == 0) && (!nb || memcmp(s, st, nb * 4) == 0), "int8 == definition n=%zu block=%zu", n, B);
            if (lb_cpu_has_avx2()) {
                int8_t *q2 = malloc(n + 1);
                float *s2 = malloc((nb + 1) * 4), *o2 = malloc((n + 1) * 4);
                CHECK(lb_delta_int8_quant_scalar(x, n, B, q2, s2) == SIZE_MAX && (!n || memcmp(q2, qt, n) == 0), "scalar kernel");
                CHECK(lb_delta_int8_quant_avx2(x, n, B, q2, s2) == SIZE_MAX && (!n || memcmp(q2, qt, n) == 0), "avx2 kernel");
                lb_delta_int8_dequant_scalar(q, s, n, B, out);
                lb_delta_int8_dequant_avx2(q, s, n, B, o2);
                CHECK(!n || memcmp(out, o2, n * 4) == 0, "dequant avx2 == scalar");
                free(q2), free(s2), free(o2);
            }
            CHECK(lb_decompress_delta_int8(q, s, n, B, out, &err) == LB_OK, "-");
            int ok = 1;
            for (size_t i = 0; i < n; i++) {
                float sc = s[i / B];
                ok &= out[i] == (float)q[i] * sc && fabsf(out[i] - x[i]) <= sc * 0.5f * 1.0001f + 1e-30f;
            }
            CHECK(ok, "int8 error within half a step n=%zu block=%zu", n, B);
            free(x), free(q), free(qt), free(s), free(st), free(out);
        }
    float bad[70] = {0};
    int8_t q[70];
    float s[2];
    bad[66] = INFINITY;
    CHECK(lb_compress_delta_int8(bad, 70, 64, q, s, &err) == LB_ERR_ARG && strstr(err.msg, "block 1"), "inf rejected: %s", err.msg);
    bad[66] = NAN;
    CHECK(lb_compress_delta_int8(bad, 70, 64, q, s, &err) == LB_ERR_ARG, "NaN rejected");
    CHECK(lb_compress_delta_int8(bad, 70, 0, q, s, &err) == LB_ERR_ARG, "block 0 rejected");
}

static void test_xor_and_gaps(void) {
    lb_error err;
    size_t n = 10007;
    uint32_t *a = malloc(n * 4), *b = malloc(n * 4), *x = malloc(n * 4), *r = malloc(n * 4);
    for (size_t i = 0; i < n; i++) {
        a[i] = (uint32_t)rnd();
        b[i] = rnd() % 3 ? a[i] : rnd() % 2 ? a[i] ^ 0x80000000u : (uint32_t)rnd(); /* sign-only flips too */
    }
    for (size_t es = 2; es <= 4; es += 2) {
        size_t ne = n * 4 / es;
        CHECK(lb_delta_xor(a, b, x, ne, es, &err) == LB_OK, "-");
        int ok = 1;
        for (size_t i = 0; i < n; i++) ok &= x[i] == (a[i] ^ b[i]);
        CHECK(ok, "xor of bit patterns (elem %zu)", es);
        CHECK(lb_delta_xor(a, x, r, ne, es, &err) == LB_OK && memcmp(r, b, n * 4) == 0, "base ^ xor == fine-tune (elem %zu)", es);
        uint32_t *idx;
        void *vals;
        size_t k;
        CHECK(lb_delta_sparse_bits(x, ne, es, &idx, &vals, &k, &err) == LB_OK, "-");
        size_t want = 0;
        for (size_t i = 0; i < ne; i++) {
            uint32_t v = 0;
            memcpy(&v, (char *)x + i * es, es);
            want += v != 0;
        }
        /* rebuild the fine-tune from the base and the non-zero patterns */
        memcpy(r, a, n * 4);
        for (size_t j = 0; j < k; j++)
            for (size_t c = 0; c < es; c++) ((unsigned char *)r)[idx[j] * es + c] ^= ((unsigned char *)vals)[j * es + c];
        CHECK(k == want && memcmp(r, b, n * 4) == 0, "sparse bits rebuild exactly (elem %zu, %zu of %zu kept)", es, k, ne);
        free(idx), free(vals);
    }
    CHECK(lb_delta_xor(a, b, x, n, 3, &err) == LB_ERR_ARG, "elem size 3");
    CHECK(lb_delta_xor(a, a, x, n, 4, &err) == LB_OK && x[0] == 0 && x[n - 1] == 0, "xor with itself is zero");
    /* index gaps */
    uint32_t idx[6] = {0, 1, 5, 6, 100, 4000000000u}, g[6], back[6];
    CHECK(lb_delta_indices_encode(idx, 6, g, &err) == LB_OK && g[0] == 0 && g[1] == 0 && g[2] == 3 && g[4] == 93, "-");
    CHECK(lb_delta_indices_decode(g, 6, 4000000001ull, back, &err) == LB_OK && memcmp(back, idx, sizeof idx) == 0, "gaps round trip");
    CHECK(lb_delta_indices_decode(g, 6, 4000000000ull, back, &err) == LB_ERR_RANGE, "last index out of range");
    memcpy(back, g, sizeof g);
    CHECK(lb_delta_indices_decode(back, 6, 1ull << 40, back, &err) == LB_OK && memcmp(back, idx, sizeof idx) == 0, "in place");
    uint32_t huge[3] = {UINT32_MAX, UINT32_MAX, UINT32_MAX};
    CHECK(lb_delta_indices_decode(huge, 3, 1ull << 40, back, &err) == LB_ERR_RANGE, "gaps overflowing u32");
    uint32_t dup[2] = {5, 5};
    CHECK(lb_delta_indices_encode(dup, 2, g, &err) == LB_ERR_ARG, "repeated index");
    free(a), free(b), free(x), free(r);
}

/* The data section of a safetensors file (everything after 8 + header length bytes). */
static float *load_st(const char *p, size_t *n) {
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    unsigned char h8[8];
    uint64_t hl = 0;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (fread(h8, 1, 8, f) != 8) return fclose(f), NULL;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | h8[i];
    if (hl > (uint64_t)sz - 8) return fclose(f), NULL;
    size_t bytes = (size_t)((uint64_t)sz - 8 - hl);
    float *d = malloc(bytes);
    fseek(f, (long)(8 + hl), SEEK_SET);
    size_t got = fread(d, 1, bytes, f);
    fclose(f);
    *n = got / 4;
    return d;
}

static void test_real_pair(void) {
    size_t nb = 0, nf = 0;
    float *base = load_st(SHARED("models/stories260K-hf/model.safetensors"), &nb);
    float *ft = load_st(SHARED("models/stories260K-ft-dogs/model.safetensors"), &nf);
    CHECK(base && ft && nb == nf && nb > 0, "both data sections read (%zu, %zu floats)", nb, nf);
    if (!base || !ft || nb != nf) return;
    size_t n = nb, differ = 0;
    for (size_t i = 0; i < n; i++) differ += !same_bits(base[i], ft[i]);
    float *d = malloc(n * 4), *rec = malloc(n * 4);
    for (size_t i = 0; i < n; i++) d[i] = ft[i] - base[i];
    printf("stories260K base vs ft-dogs: %zu of %zu elements differ (%.2f%%)\n", differ, n, 100.0 * differ / n);
    lb_error err;
    float ths[] = {0.0f, 1e-5f, 1e-4f, 1e-3f, 1e-2f};
    for (size_t t = 0; t < sizeof ths / sizeof *ths; t++) {
        uint32_t *idx;
        float *val;
        size_t k;
        double ratio;
        CHECK(lb_compress_delta_sparse(d, n, ths[t], &idx, &val, &k, &ratio, &err) == LB_OK, "-");
        CHECK(lb_decompress_delta_sparse(idx, val, k, rec, n, &err) == LB_OK, "-");
        size_t wrong = 0;
        double maxerr = 0;
        for (size_t i = 0; i < n; i++) {
            float v = base[i] + rec[i];
            wrong += !same_bits(v, ft[i]);
            double e = fabs((double)v - ft[i]);
            if (e > maxerr) maxerr = e;
        }
        printf("  threshold %-7g kept %7zu (%.2f%%), ratio %7.2f, base+delta != fine-tune for %zu (max |err| %.3g)\n",
               ths[t], k, 100.0 * k / n, ratio, wrong, maxerr);
        free(idx), free(val);
    }
    /* lossless: XOR of the bit patterns */
    uint32_t *x = malloc(n * 4), *r = malloc(n * 4), *idx;
    void *vals;
    size_t k;
    CHECK(lb_delta_xor(base, ft, x, n, 4, &err) == LB_OK, "-");
    CHECK(lb_delta_sparse_bits(x, n, 4, &idx, &vals, &k, &err) == LB_OK && k == differ, "non-zero xor patterns == differing elements");
    memcpy(r, base, n * 4);
    for (size_t j = 0; j < k; j++) r[idx[j]] ^= ((uint32_t *)vals)[j];
    CHECK(memcmp(r, ft, n * 4) == 0, "lossless xor delta rebuilds the fine-tune bit for bit");
    printf("  lossless xor: %zu non-zero patterns, ratio %.2f (u32 index + u32 pattern)\n", k, k ? (double)n / (2.0 * k) : 0);
    free(idx), free(vals), free(x), free(r), free(d), free(rec), free(base), free(ft);
}

/* Past 2M elements the work is split across threads: the result must equal the plain loop
 * exactly, including at the slice boundaries. */
static void test_sparse_threaded(void) {
    size_t n = (3u << 20) + 17;
    float *x = malloc(n * sizeof *x);
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.01f;
    }
    float t = 0.003f;
    uint32_t *idx;
    float *val;
    size_t k;
    double ratio;
    lb_error err;
    CHECK(lb_compress_delta_sparse(x, n, t, &idx, &val, &k, &ratio, &err) == LB_OK, "%s", err.msg);
    size_t want = 0, bad = 0;
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(x[i]) <= t)) {
            if (want >= k || idx[want] != i || val[want] != x[i]) bad++;
            want++;
        }
    CHECK(k == want && bad == 0, "threaded sparse: %zu kept, %zu expected, %zu wrong", k, want, bad);
    free(idx);
    free(val);
    free(x);
}

int main(void) {
    test_sparse();
    test_sparse_threaded();
    test_int8();
    test_xor_and_gaps();
    test_real_pair();
    return test_summary();
}
