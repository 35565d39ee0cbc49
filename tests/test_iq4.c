/* IQ4_NL and IQ4_XS: known-answer blocks built by hand from the GGUF layout, quantize ->
 * dequantize error against Q4_0 and against the plain absmax scale, importance weighting, the
 * dot products against a double-precision dot of the dequantized values, AVX2 against the
 * scalar twin (IQ4_XS bit for bit), and lb_matmul: a batch equals each token alone bit for bit,
 * every CPU level equals the scalar kernel. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/dtype.h"
#include "kernels/cpu/matmul.h"
#include "quant/quant.h"

static const int k_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static uint64_t g_rng = 0x853C49E6748FEA9BULL;
static float rnd(void) { return check_rnd_pm1(&g_rng); } /* uniform in [-1, 1) */
static float gauss(void) { /* sum of 4 uniforms: bell-shaped like trained weights */
    return (rnd() + rnd() + rnd() + rnd()) * 0.5f;
}

static void kat_nl(void) {
    uint8_t blk[18];
    uint16_t d = lb_f32_to_fp16(0.5f);
    memcpy(blk, &d, 2);
    for (int j = 0; j < 16; j++) blk[2 + j] = (uint8_t)(j | (15 - j) << 4);
    float y[32];
    CHECK(lb_dequantize(LB_IQ4_NL, blk, y, 32) == LB_OK, "dequantize IQ4_NL");
    int bad = 0;
    for (int j = 0; j < 16; j++) bad += y[j] != 0.5f * k_levels[j], bad += y[16 + j] != 0.5f * k_levels[15 - j];
    CHECK(bad == 0, "IQ4_NL known block (%d wrong)", bad);
    CHECK(lb_dtype_row_size(LB_IQ4_NL, 64) == 36 && !strcmp(lb_dtype_name(LB_IQ4_NL), "IQ4_NL"), "IQ4_NL traits");
}

/* bytes: d, scales_h (u16), scales_l[4], qs[128]; sub-scale j = 6 bits - 32 */
static void kat_xs(void) {
    static const int sc[8] = {-32, -1, 0, 5, 31, 17, -20, 9};
    uint8_t blk[136] = {0};
    uint16_t d = lb_f32_to_fp16(0.25f), sh = 0;
    memcpy(blk, &d, 2);
    for (int j = 0; j < 8; j++) {
        int u = sc[j] + 32;
        blk[4 + j / 2] |= (uint8_t)((u & 15) << (j % 2 ? 4 : 0));
        sh |= (uint16_t)((u >> 4) << 2 * j);
    }
    memcpy(blk + 2, &sh, 2);
    for (int i = 0; i < 128; i++) blk[8 + i] = (uint8_t)((i * 7 + 3) % 16 | ((i * 5 + 1) % 16) << 4);
    float y[256];
    CHECK(lb_dequantize(LB_IQ4_XS, blk, y, 256) == LB_OK, "dequantize IQ4_XS");
    int bad = 0;
    for (int j = 0; j < 8; j++)
        for (int l = 0; l < 16; l++) {
            int i = 16 * j + l;
            bad += y[32 * j + l] != 0.25f * sc[j] * k_levels[(i * 7 + 3) % 16];
            bad += y[32 * j + 16 + l] != 0.25f * sc[j] * k_levels[(i * 5 + 1) % 16];
        }
    CHECK(bad == 0, "IQ4_XS known block (%d wrong)", bad);
    CHECK(lb_dtype_row_size(LB_IQ4_XS, 512) == 272 && lb_dtype_from_name("iq4_xs") == LB_IQ4_XS, "IQ4_XS traits");
}

/* sum of squared errors, weighted by wt when given */
static double sq_err(const float *a, const float *b, int64_t n, const float *wt) {
    double e = 0;
    for (int64_t i = 0; i < n; i++) e += (wt ? wt[i] : 1) * ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return e;
}

static double roundtrip(lb_dtype t, const float *x, int64_t n, const float *im, float *y) {
    uint8_t *q = malloc(lb_dtype_row_size(t, n));
    CHECK(lb_quantize(t, x, q, 1, n, im) == lb_dtype_row_size(t, n), "quantize %s", lb_dtype_name(t));
    lb_dequantize(t, q, y, n);
    free(q);
    return sq_err(x, y, n, NULL);
}

/* The naive IQ4_NL choice: the largest value on the -127 level, every value to its nearest. */
static double naive_nl_err(const float *x, int64_t n) {
    double e = 0;
    for (int64_t b = 0; b < n / 32; b++) {
        float max = 0;
        for (int j = 0; j < 32; j++) if (fabsf(x[32 * b + j]) > fabsf(max)) max = x[32 * b + j];
        float d = lb_fp16_to_f32(lb_f32_to_fp16(max / -127.0f));
        for (int j = 0; j < 32; j++) {
            float v = x[32 * b + j], best = INFINITY;
            for (int l = 0; l < 16; l++) best = fminf(best, fabsf(v - d * k_levels[l]));
            e += (double)best * best;
        }
    }
    return e;
}

static void test_roundtrip(void) {
    enum { N = 256 * 64 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *im = malloc(N * sizeof *im);
    double ss = 0;
    for (int i = 0; i < N; i++) x[i] = gauss() * (1 + (i / 256) % 5), ss += (double)x[i] * x[i];
    double e_nl = roundtrip(LB_IQ4_NL, x, N, NULL, y), e_xs = roundtrip(LB_IQ4_XS, x, N, NULL, y);
    double e_q4 = roundtrip(LB_Q4_0, x, N, NULL, y), e_naive = naive_nl_err(x, N);
    CHECK(e_nl < e_q4 && e_xs < e_q4, "IQ4 beat Q4_0 on bell-shaped data (rel %.4f %.4f vs %.4f)", sqrt(e_nl / ss),
          sqrt(e_xs / ss), sqrt(e_q4 / ss));
    CHECK(e_nl < e_naive && sqrt(e_nl / ss) < 0.12 && sqrt(e_xs / ss) < 0.12,
          "IQ4 search beats the absmax scale (rel %.4f vs %.4f), bounded", sqrt(e_nl / ss), sqrt(e_naive / ss));
    /* importance on every 4th column: those columns err less than without it */
    for (int i = 0; i < N; i++) im[i] = i % 4 ? 0.01f : 10.0f;
    for (int t = 0; t < 2; t++) {
        lb_dtype ty = t ? LB_IQ4_XS : LB_IQ4_NL;
        roundtrip(ty, x, N, NULL, y);
        double plain = sq_err(x, y, N, im);
        roundtrip(ty, x, N, im, y);
        double weighted = sq_err(x, y, N, im);
        CHECK(weighted < 0.9 * plain, "%s imatrix lowers the weighted error (%.4g vs %.4g)", lb_dtype_name(ty), weighted,
              plain);
    }
    /* zeros stay zeros; a row length off the block size is refused before any write */
    memset(x, 0, 512 * sizeof *x);
    roundtrip(LB_IQ4_XS, x, 512, NULL, y);
    CHECK(sq_err(x, y, 512, NULL) == 0, "IQ4_XS zero row");
    uint8_t q[272] = {0};
    lb_error err;
    CHECK(lb_quantize_checked(LB_IQ4_XS, x, q, 1, 288, NULL, NULL, &err) == LB_ERR_ARG && strstr(err.msg, "IQ4_XS"),
          "IQ4_XS row of 288 refused: %s", err.msg);
    free(x), free(y), free(im);
}

static void random_rows(lb_dtype t, float *wf, uint8_t *w, int64_t rows, int64_t k) {
    for (int64_t i = 0; i < rows * k; i++) wf[i] = gauss();
    lb_quantize(t, wf, w, rows, k, NULL);
}

/* dot of the dequantized weights and activations in double: the integer kernels must match it */
static void test_dots(void) {
    static const int64_t ks[] = {256, 768, 256 * 7, 256 * 17};
    for (int t = 0; t < 2; t++)
        for (int ki = 0; ki < 4; ki++) {
            lb_dtype ty = t ? LB_IQ4_XS : LB_IQ4_NL;
            const lb_quant_ops *o = lb_quant_get_ops(ty);
            int64_t k = ks[ki] + (t ? 0 : 32); /* odd block counts for IQ4_NL */
            float *wf = malloc(k * sizeof *wf), *x = malloc(k * sizeof *x), *wd = malloc(k * sizeof *wd),
                  *xd = malloc(k * sizeof *xd);
            uint8_t *w = malloc(lb_dtype_row_size(ty, k)), *xq = malloc(lb_quant_act_size(ty, k));
            random_rows(ty, wf, w, 1, k);
            for (int64_t i = 0; i < k; i++) x[i] = rnd() * (1 + (float)(i % 3));
            o->quantize_act(x, xq, k);
            lb_dequantize(ty, w, wd, k);
            lb_dequantize(o->act_type, xq, xd, k);
            double ref = 0, mag = 0;
            for (int64_t i = 0; i < k; i++) ref += (double)wd[i] * xd[i], mag += fabs((double)wd[i] * xd[i]);
            float s = o->vec_dot_scalar((int)k, w, xq), v = o->vec_dot((int)k, w, xq);
            CHECK(fabs(s - ref) <= 1e-5 * mag, "%s k=%lld scalar dot %g vs %g", lb_dtype_name(ty), (long long)k, s, ref);
            if (t) CHECK(v == s, "IQ4_XS k=%lld dispatched dot bit-identical (%g vs %g)", (long long)k, v, s);
            else CHECK(fabs(v - s) <= 1e-6 * mag, "IQ4_NL k=%lld dispatched dot %g vs %g", (long long)k, v, s);
            free(wf), free(x), free(wd), free(xd), free(w), free(xq);
        }
}

static void test_matmul(lb_pool *pool, lb_dtype ty, int64_t rows, int64_t k, int64_t n_tok) {
    size_t rb = lb_dtype_row_size(ty, k);
    float *wf = malloc(sizeof(float) * rows * k), *x = malloc(sizeof(float) * n_tok * k);
    float *y = malloc(sizeof(float) * n_tok * rows), *y1 = malloc(sizeof(float) * rows), *ys = malloc(sizeof(float) * n_tok * rows);
    uint8_t *w = malloc(rb * rows);
    random_rows(ty, wf, w, rows, k);
    for (int64_t i = 0; i < n_tok * k; i++) x[i] = rnd() * (1 + (float)(i % 7));
    lb_error err;
    CHECK(lb_matmul_raw(pool, ty, w, rows, k, x, n_tok, y, &err) == LB_OK, "batch: %s", err.msg);
    const lb_matmul_kernel *ks = lb_matmul_kernel_at(ty, LB_CPU_SCALAR);
    CHECK(ks && lb_matmul_with(pool, ks, ty, w, rows, k, x, n_tok, ys, 1, &err) == LB_OK, "scalar: %s", err.msg);
    int differ = 0, far = 0;
    for (int64_t t = 0; t < n_tok; t++) {
        lb_matmul_raw(pool, ty, w, rows, k, x + t * k, 1, y1, &err);
        for (int64_t r = 0; r < rows; r++) {
            double mag = 0;
            for (int64_t i = 0; i < k; i++) mag += fabs((double)wf[r * k + i] * x[t * k + i]);
            differ += y[t * rows + r] != y1[r];
            far += !(fabs((double)y[t * rows + r] - ys[t * rows + r]) <= 1e-6 * mag);
            if (ty == LB_IQ4_XS) far += y[t * rows + r] != ys[t * rows + r];
        }
    }
    CHECK(differ == 0, "%s rows=%lld k=%lld n_tok=%lld: batch == alone (%d differ)", lb_dtype_name(ty), (long long)rows,
          (long long)k, (long long)n_tok, differ);
    CHECK(far == 0, "%s rows=%lld k=%lld n_tok=%lld: %s level equals scalar (%d off)", lb_dtype_name(ty), (long long)rows,
          (long long)k, (long long)n_tok, lb_cpu_level_name(lb_cpu_level_get()), far);
    free(wf), free(x), free(y), free(y1), free(ys), free(w);
}

int main(void) {
    kat_nl();
    kat_xs();
    test_roundtrip();
    test_dots();
    lb_pool *pool = lb_pool_new(2);
    static const int64_t nts[] = {1, 2, 3, 5, 9, 33};
    for (int ni = 0; ni < 6; ni++) {
        test_matmul(pool, LB_IQ4_NL, ni % 2 ? 37 : 13, 32 * 7 + 256 * (ni % 3), nts[ni]);
        test_matmul(pool, LB_IQ4_XS, ni % 2 ? 37 : 13, 256 * (1 + 2 * (ni % 3)), nts[ni]);
    }
    lb_pool_free(pool);
    return test_summary();
}
