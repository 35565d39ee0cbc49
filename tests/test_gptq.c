/* GPTQ error compensation (quant/gptq.h, engine/gptq.c):
 * - the factor: U upper with (U^T U)(H + lambda I) = I, checked by multiplying out;
 * - on a random matrix whose inputs are strongly correlated, every GPTQ-compensated type errs less
 *   on the outputs, sum_t ||(W - Q) a_t||^2 summed over the tokens themselves (not through H),
 *   than the same type quantized row by row with the same importance weights;
 * - lb_gptq_compute on stories260K: diag(H) / tokens equals lb_imatrix_compute's column means
 *   (another accumulation path), q/k/v share one input, and the memory limit refuses naming bytes;
 * - lb_quantize_model with the statistics writes a file that loads, whose compensated matrix is
 *   the row quantizer's output byte for byte and errs less through H than the file without. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/dtype.h"
#include "core/model.h"
#include "io/imatrix.h"
#include "quant/gptq.h"
#include "quant/quant.h"

#define STORIES SHARED("models/stories260K-gguf/stories260K.gguf")

static uint64_t g_rng = 0x9E3779B97F4A7C15ULL;
static float rnd(void) { return check_rnd_pm1(&g_rng); }

static void factor(void) {
    enum { K = 48 };
    double *H = calloc(K * K, sizeof *H), a[K];
    for (int t = 0; t < 200; t++) {
        double f = rnd();
        for (int j = 0; j < K; j++) a[j] = rnd() + 0.7 * f * (j % 3);
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++) H[i * K + j] += a[i] * a[j];
    }
    for (int j = 0; j < K; j++) H[j * K + 5] = H[5 * K + j] = 0; /* a dead input */
    float *U = malloc(K * K * sizeof *U);
    lb_error err = {0};
    CHECK(lb_gptq_factor(H, K, 0.01, U, "test", &err) == LB_OK, "factor: %s", err.msg);
    double mean = 0;
    for (int j = 0; j < K; j++) mean += H[j * K + j];
    mean /= K;
    double worst = 0, lower = 0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) {
            double s = 0; /* (U^T U (H + lambda I))_ij */
            for (int l = 0; l < K; l++) {
                double g = 0;
                for (int r = 0; r < K; r++) g += (double)U[r * K + i] * U[r * K + l];
                double h = H[l * K + j] + (l == j ? (l == 5 ? 1 : 0) + 0.01 * mean : 0);
                s += g * h;
            }
            double d = fabs(s - (i == j));
            worst = d > worst ? d : worst;
            if (j < i) lower += fabs(U[i * K + j]);
        }
    CHECK(worst < 1e-4 && lower == 0, "U^T U (H + lambda I) differs from I by %g; lower part %g", worst, lower);
    free(H), free(U);
}

/* Output error of Q against W over the tokens a (T x K): sum_t sum_r ((W - Q)_r . a_t)^2. */
static double out_err(const float *W, const float *Q, int rows, int K, const float *a, int T) {
    double e = 0;
    for (int t = 0; t < T; t++)
        for (int r = 0; r < rows; r++) {
            double s = 0;
            for (int j = 0; j < K; j++) s += ((double)W[r * K + j] - Q[r * K + j]) * a[t * K + j];
            e += s * s;
        }
    return e;
}

static void correlated(void) {
    static const lb_dtype types[] = {LB_Q4_0, LB_Q5_0, LB_Q8_0, LB_Q2_K, LB_Q3_K, LB_Q4_K, LB_Q6_K, LB_IQ4_NL, LB_IQ4_XS};
    enum { K = 512, ROWS = 24, T = 1024, F = 6 };
    float *a = malloc(sizeof(float) * T * K), *W = malloc(sizeof(float) * ROWS * K), *Q = malloc(sizeof(float) * ROWS * K);
    float *w = malloc(sizeof(float) * K), *U = malloc(sizeof(float) * K * K), im[K], scale[K], v[F][K], scratch[768];
    double *H = calloc((size_t)K * K, sizeof *H);
    uint8_t *y = malloc(lb_dtype_row_size(LB_Q8_0, K) * ROWS);
    for (int j = 0; j < K; j++) scale[j] = 0.3f + 2 * fabsf(rnd());
    for (int f = 0; f < F; f++)
        for (int j = 0; j < K; j++) v[f][j] = rnd();
    for (int t = 0; t < T; t++) { /* a few latent factors shared by every column: strong correlation */
        float fac[F];
        for (int f = 0; f < F; f++) fac[f] = 2 * rnd();
        for (int j = 0; j < K; j++) {
            float s = 0.5f * rnd();
            for (int f = 0; f < F; f++) s += fac[f] * v[f][j];
            a[t * K + j] = scale[j] * s;
        }
    }
    for (int t = 0; t < T; t++)
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++) H[(size_t)i * K + j] += (double)a[t * K + i] * a[t * K + j];
    for (int j = 0; j < K; j++) im[j] = (float)(H[(size_t)j * K + j] / T);
    for (int i = 0; i < ROWS * K; i++) W[i] = (rnd() + rnd() + rnd()) * 0.05f;
    lb_error err = {0};
    CHECK(lb_gptq_factor(H, K, 0.01, U, "test", &err) == LB_OK, "factor: %s", err.msg);
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        lb_dtype ty = types[k];
        size_t rb = lb_dtype_row_size(ty, K);
        lb_quantize(ty, W, y, ROWS, K, im);
        lb_dequantize(ty, y, Q, (int64_t)ROWS * K);
        double plain = out_err(W, Q, ROWS, K, a, T);
        for (int r = 0; r < ROWS; r++) {
            memcpy(w, W + r * K, sizeof(float) * K);
            lb_gptq_quantize_row(ty, U, K, w, y + r * rb, im, scratch);
        }
        lb_dequantize(ty, y, Q, (int64_t)ROWS * K);
        double g = out_err(W, Q, ROWS, K, a, T);
        CHECK(g < 0.8 * plain, "%s: output error with GPTQ %g, plain %g (%.3fx)", lb_dtype_name(ty), g, plain, g / plain);
        if (getenv("LB_TEST_VERBOSE")) printf("%s: GPTQ / plain output error %.3f\n", lb_dtype_name(ty), g / plain);
    }
    CHECK(!lb_gptq_applies(LB_TQ2_0) && !lb_gptq_applies(LB_F16) && lb_gptq_applies(LB_Q4_K), "types GPTQ applies to");
    free(a), free(W), free(Q), free(w), free(U), free(H), free(y);
}

static void keys(void) {
    char k[64];
    lb_gptq_key("blk.3.attn_k.weight", k, sizeof k);
    CHECK(!strcmp(k, "blk.3.attn_qkv"), "%s", k);
    lb_gptq_key("blk.12.ffn_up.weight", k, sizeof k);
    CHECK(!strcmp(k, "blk.12.ffn_gate_up"), "%s", k);
    lb_gptq_key("blk.0.ffn_down.weight", k, sizeof k);
    CHECK(!strcmp(k, "blk.0.ffn_down.weight"), "%s", k);
    lb_gptq_key("output.weight", k, sizeof k);
    CHECK(!strcmp(k, "output.weight"), "%s", k);
}

/* d^T H d summed over the rows of the file's matrix name, d = source - file. */
static double h_err(const lb_model *src, const lb_model *q, const char *name, const lb_gptq_in *gp) {
    const lb_tensor *a = lb_model_find_tensor(src, name), *b = lb_model_find_tensor(q, name);
    int64_t K = a->ne[0], rows = lb_tensor_nrows(a);
    float *x = malloc(sizeof(float) * K), *z = malloc(sizeof(float) * K);
    double e = 0;
    for (int64_t r = 0; r < rows; r++) {
        lb_dtype_get(a->type)->to_float((const uint8_t *)a->data + r * lb_dtype_row_size(a->type, K), x, K);
        lb_dtype_get(b->type)->to_float((const uint8_t *)b->data + r * lb_dtype_row_size(b->type, K), z, K);
        for (int64_t i = 0; i < K; i++) x[i] -= z[i];
        for (int64_t i = 0; i < K; i++)
            for (int64_t j = 0; j < K; j++) e += x[i] * gp->H[i * K + j] * x[j];
    }
    free(x), free(z);
    return e;
}

static void model(void) {
    lb_model *m = NULL;
    lb_error err = {0};
    if (lb_model_load(STORIES, NULL, &m, &err)) {
        CHECK(0, "load %s: %s", STORIES, err.msg);
        return;
    }
    enum { CTX = 32, CHUNKS = 4 };
    int32_t ids[CTX * CHUNKS];
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) ids[i] = (int32_t)(check_xorshift(&g_rng) % (uint64_t)m->cfg.n_vocab);
    lb_gptq_params p = lb_gptq_default_params();
    p.n_ctx = CTX;
    p.n_threads = 2;
    lb_gptq *g = NULL;
    CHECK(lb_gptq_compute(m, ids, CTX * CHUNKS, 1, &p, NULL, NULL, &g, &err) == LB_OK, "compute: %s", err.msg);
    lb_imatrix_params ip = lb_imatrix_default_params();
    ip.n_ctx = CTX;
    ip.n_threads = 1;
    lb_imatrix *im = NULL;
    CHECK(lb_imatrix_compute(m, ids, CTX * CHUNKS, 1, &ip, NULL, NULL, &im, &err) == LB_OK, "imatrix: %s", err.msg);
    if (!g || !im) goto done;
    /* 5 layers: qkv, attn_output, gate_up, ffn_down each, and the (tied) head */
    CHECK(lb_gptq_n_inputs(g) == 5 * 4 + 1, "%zu inputs", lb_gptq_n_inputs(g));
    CHECK(lb_gptq_get(g, "blk.2.attn_q.weight") == lb_gptq_get(g, "blk.2.attn_v.weight") &&
          lb_gptq_get(g, "blk.2.ffn_gate.weight") == lb_gptq_get(g, "blk.2.ffn_up.weight") &&
          lb_gptq_get(g, "blk.2.ffn_up.weight") != lb_gptq_get(g, "blk.2.ffn_down.weight"), "shared inputs");
    double worst = 0;
    for (size_t e = 0; e < lb_imatrix_n_entries(im); e++) {
        const lb_gptq_in *gp = lb_gptq_get(g, lb_imatrix_name(im, e));
        int nval, ncall;
        const float *v = lb_imatrix_values(im, e, &nval, &ncall);
        if (!gp || gp->k != nval || gp->n_tok != CTX * CHUNKS) {
            CHECK(0, "input of %s missing or sized wrong", lb_imatrix_name(im, e));
            continue;
        }
        for (int j = 0; j < nval; j++) {
            double want = v[j] / ncall, got = gp->H[(size_t)j * gp->k + j] / (double)gp->n_tok;
            double d = fabs(got - want) / (fabs(want) + 1e-12);
            worst = d > worst ? d : worst;
        }
        for (int64_t i = 0; i < gp->k; i++) /* symmetric */
            for (int64_t j = 0; j < i; j++)
                if (gp->H[i * gp->k + j] != gp->H[j * gp->k + i]) worst = 1;
    }
    CHECK(worst < 1e-5, "diag(H) / tokens against the imatrix: worst relative difference %g", worst);

    lb_gptq *none = NULL;
    p.max_bytes = 100000;
    CHECK(lb_gptq_compute(m, ids, CTX * CHUNKS, 1, &p, NULL, NULL, &none, &err) == LB_ERR_NOMEM && !none &&
          strstr(err.msg, "bytes") && strstr(err.msg, "limit"), "limit: %s", err.msg);
    CHECK(lb_gptq_bytes_needed(m) > 100000, "bytes needed %llu", (unsigned long long)lb_gptq_bytes_needed(m));

    char path[2][64];
    lb_model *q[2] = {NULL, NULL};
    for (int with = 0; with < 2; with++) {
        snprintf(path[with], sizeof path[with], "/tmp/lb_test_gptq_%d_%d.gguf", (int)getpid(), with);
        lb_quantize_params qp = lb_quantize_default_params();
        qp.type = "q4_0";
        qp.pure = 1;
        qp.gptq = with ? g : NULL;
        qp.n_threads = 2;
        CHECK(lb_quantize_model(m, path[with], &qp, NULL, NULL, &err) == LB_OK, "quantize: %s", err.msg);
        CHECK(lb_model_load(path[with], NULL, &q[with], &err) == LB_OK, "load %s: %s", path[with], err.msg);
    }
    if (!q[0] || !q[1]) goto files;
    static const char *names[] = {"blk.0.attn_output.weight", "blk.1.ffn_gate.weight", "blk.4.attn_output.weight"};
    for (int n = 0; n < 3; n++) {
        const lb_gptq_in *gp = lb_gptq_get(g, names[n]);
        double e0 = h_err(m, q[0], names[n], gp), e1 = h_err(m, q[1], names[n], gp);
        CHECK(e1 < 0.9 * e0, "%s: H-weighted error with GPTQ %g, without %g", names[n], e1, e0);
    }
    { /* the file holds exactly what the row quantizer gives for the same factor and weights */
        const lb_tensor *a = lb_model_find_tensor(m, names[0]), *b = lb_model_find_tensor(q[1], names[0]);
        const lb_gptq_in *gp = lb_gptq_get(g, names[0]);
        int64_t K = a->ne[0], rows = lb_tensor_nrows(a);
        size_t rb = lb_dtype_row_size(LB_Q4_0, K);
        float *U = malloc(sizeof(float) * K * K), *w = malloc(sizeof(float) * K), *wt = malloc(sizeof(float) * K);
        uint8_t *y = malloc(rb);
        float scratch[768];
        for (int64_t i = 0; i < K; i++) wt[i] = (float)(gp->H[i * K + i] / (double)gp->n_tok);
        CHECK(lb_gptq_factor(gp->H, K, 0.01, U, names[0], &err) == LB_OK, "factor");
        int same = b->type == LB_Q4_0;
        for (int64_t r = 0; r < rows && same; r++) {
            memcpy(w, (const float *)a->data + r * K, sizeof(float) * K);
            lb_gptq_quantize_row(LB_Q4_0, U, K, w, y, wt, scratch);
            same = !memcmp(y, (const uint8_t *)b->data + r * rb, rb);
        }
        CHECK(same, "%s in the file differs from the GPTQ row quantizer", names[0]);
        free(U), free(w), free(wt), free(y);
    }
files:
    for (int with = 0; with < 2; with++) {
        lb_model_free(q[with]);
        unlink(path[with]);
    }
done:
    lb_gptq_free(g);
    lb_imatrix_free(im);
    lb_model_free(m);
}

int main(void) {
    factor();
    keys();
    correlated();
    model();
    return test_summary();
}
