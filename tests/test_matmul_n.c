/* The reduction order along K of the dense kernels (F32, F16, BF16) never depends on N
 * (ARCHITECTURE.md): at every CPU level available here, each token of an N-token lb_matmul
 * must equal the same token computed alone (N = 1, generation's path) bit for bit, for N
 * around the register tiles (2, 3, 4, 5, 7, 16), odd row counts (tile and thread-chunk
 * remainders) and odd k (SIMD tails, one and several 2048-element k chunks). The scalar level
 * runs too: the independent truth that each level's N = 1 path stays within rounding of.
 * End to end: an F16 model's logits for sequences decoded together equal each decoded alone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/dtype.h"
#include "kernels/cpu/matmul.h"
#include "lowbit.h"

static uint64_t g_rng = 0x9E3779B97F4A7C15ULL;
static float rnd(void) { return check_rnd_pm1(&g_rng); }

/* rows x k weights of type t from wf (F16/BF16 rounded; wf gets the rounded values back). */
static uint8_t *make_weights(lb_dtype t, float *wf, int64_t rows, int64_t k) {
    size_t esz = t == LB_F32 ? 4 : 2, n = (size_t)(rows * k);
    uint8_t *w = malloc(n * esz);
    for (size_t i = 0; i < n; i++) {
        float f = rnd();
        if (t == LB_F32) {
            memcpy(w + 4 * i, &f, 4);
        } else {
            uint16_t h = t == LB_F16 ? lb_f32_to_fp16(f) : lb_f32_to_bf16(f);
            memcpy(w + 2 * i, &h, 2);
            f = t == LB_F16 ? lb_fp16_to_f32(h) : lb_bf16_to_f32(h);
        }
        wf[i] = f;
    }
    return w;
}

/* Worst |batch - scalar| / sum |w x| of the N = 1 results y1 [n_tok][rows] against the scalar twin ys. */
static double worst_vs_scalar(const float *y1, const float *ys, const float *wf, const float *x, int64_t rows,
                              int64_t k, int64_t n_tok) {
    double worst = 0;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < rows; r++) {
            double mag = 1e-30;
            for (int64_t i = 0; i < k; i++) mag += fabs((double)wf[r * k + i] * x[t * k + i]);
            double e = fabs((double)y1[t * rows + r] - ys[t * rows + r]) / mag;
            if (!(e <= worst)) worst = isfinite(e) ? e : INFINITY;
        }
    return worst;
}

static void check_case(lb_pool *pool, lb_dtype t, int level, int64_t rows, int64_t k, int64_t n_tok) {
    const lb_matmul_kernel *kl = lb_matmul_kernel_at(t, level), *ks = lb_matmul_kernel_scalar(t);
    if (!kl) return; /* level above this CPU's (or LOWBIT_CPU's) */
    float *wf = malloc(sizeof(float) * (size_t)(rows * k)), *x = malloc(sizeof(float) * (size_t)(n_tok * k));
    size_t ny = sizeof(float) * (size_t)(n_tok * rows);
    float *y = malloc(ny), *y1 = malloc(ny), *ys = malloc(ny);
    uint8_t *w = make_weights(t, wf, rows, k);
    for (int64_t i = 0; i < n_tok * k; i++) x[i] = rnd() * (1 + (float)(i % 5));
    lb_error err;
    CHECK(lb_matmul_with(pool, kl, t, w, rows, k, x, n_tok, y, 0, &err) == LB_OK, "batch: %s", err.msg);
    for (int64_t i = 0; i < n_tok; i++)
        CHECK(lb_matmul_with(pool, kl, t, w, rows, k, x + i * k, 1, y1 + i * rows, 0, &err) == LB_OK, "alone: %s",
              err.msg);
    CHECK(lb_matmul_with(pool, ks, t, w, rows, k, x, n_tok, ys, 1, &err) == LB_OK, "scalar: %s", err.msg);
    int differ = 0;
    for (int64_t i = 0; i < n_tok * rows; i++) differ += memcmp(&y[i], &y1[i], sizeof(float)) != 0;
    const char *lv = lb_cpu_level_name((lb_cpu_level)level);
    CHECK(differ == 0, "%s %s rows=%lld k=%lld n=%lld: %d of the batch's values differ from the token alone",
          lb_dtype_name(t), lv, (long long)rows, (long long)k, (long long)n_tok, differ);
    double worst = worst_vs_scalar(y1, ys, wf, x, rows, k, n_tok);
    CHECK(worst <= 1e-6, "%s %s rows=%lld k=%lld n=%lld: alone equals the scalar twin (worst rel %.2g)",
          lb_dtype_name(t), lv, (long long)rows, (long long)k, (long long)n_tok, worst);
    free(wf), free(x), free(y), free(y1), free(ys), free(w);
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* tinystories-512d written as F16 (what lowbit quantize -t f16 runs); NS sequences greedy-decoded
 * together (N = NS per step) must give the logits of each decoded alone (N = 1) bit for bit,
 * through the default (F16) KV cache. */
static void test_f16_model(void) {
    char dir[] = "/tmp/lowbit-matmul-n-XXXXXX", path[64];
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp failed");
        return;
    }
    snprintf(path, sizeof path, "%s/f16.gguf", dir);
    lb_quantize_params qp = lb_quantize_default_params();
    qp.type = "f16";
    qp.pure = 1;
    lb_error err = {0};
    lb_model *m = NULL;
    CHECK(lb_quantize_file(SHARED("models/tinystories-512d"), path, &qp, NULL, NULL, &err) == LB_OK, "%s", err.msg);
    if (lb_model_load(path, NULL, &m, &err)) {
        CHECK(0, "%s", err.msg);
        unlink(path), rmdir(dir);
        return;
    }
    enum { NS = 4, STEPS = 6 };
    int nv = lb_model_n_vocab(m), seq[NS], len[NS], next[NS];
    lb_engine_params ep = lb_engine_default_params();
    ep.n_ctx = 64;
    ep.n_kv_tokens = NS * 64;
    lb_engine *e = NULL;
    CHECK(lb_engine_new(m, &ep, &e, &err) == LB_OK, "%s", err.msg);
    float *lg = malloc((size_t)NS * nv * sizeof *lg), *ref = malloc((size_t)nv * sizeof *ref);
    int32_t ids[NS][16];
    for (int s = 0; e && s < NS; s++) {
        len[s] = 3 + 3 * s;
        lb_batch_entry b[16];
        for (int i = 0; i < len[s]; i++) ids[s][i] = 1 + (i * 53 + s * 17) % (nv - 1);
        for (int i = 0; i < len[s]; i++) b[i] = (lb_batch_entry){0, i, ids[s][i], i == len[s] - 1};
        CHECK(lb_engine_seq_new(e, 0, &seq[s], &err) == LB_OK, "%s", err.msg);
        for (int i = 0; i < len[s]; i++) b[i].seq = seq[s];
        CHECK(lb_engine_decode(e, b, (size_t)len[s], lg, &err) == LB_OK, "%s", err.msg);
        next[s] = argmax(lg, nv);
    }
    for (int k = 0; e && k < STEPS; k++) {
        lb_batch_entry b[NS];
        for (int s = 0; s < NS; s++) b[s] = (lb_batch_entry){seq[s], len[s] + k, next[s], 1};
        CHECK(lb_engine_decode(e, b, NS, lg, &err) == LB_OK, "%s", err.msg);
        for (int s = 0; s < NS; s++) next[s] = argmax(lg + (size_t)s * nv, nv);
    }
    for (int s = 0; e && s < NS; s++) {
        lb_session_params sp = lb_session_default_params();
        sp.n_ctx = 64;
        lb_session *ss = NULL;
        CHECK(lb_session_new(m, &sp, &ss, &err) == LB_OK, "%s", err.msg);
        CHECK(lb_session_eval(ss, ids[s], (size_t)len[s], ref, 0, &err) == LB_OK, "%s", err.msg);
        for (int k = 0; k < STEPS; k++) {
            int id = argmax(ref, nv);
            CHECK(lb_session_eval(ss, &id, 1, ref, 0, &err) == LB_OK, "%s", err.msg);
        }
        int differ = 0;
        for (int i = 0; i < nv; i++) differ += memcmp(&lg[(size_t)s * nv + i], &ref[i], sizeof *ref) != 0;
        CHECK(differ == 0, "F16 model, sequence %d: %d of %d logits differ from the sequence alone", s, differ, nv);
        lb_session_free(ss);
    }
    free(lg), free(ref);
    lb_engine_free(e);
    lb_model_free(m);
    unlink(path), rmdir(dir);
}

int main(void) {
    static const lb_dtype types[] = {LB_F32, LB_F16, LB_BF16};
    /* tails only, then several k chunks (1024 at AVX2, 2048 at AVX-512) with odd tails; 67 tokens
     * are more than one token block (64) */
    static const int64_t ks[] = {5, 37, 2048 + 13, 4096 + 9, 6144 + 31};
    static const int64_t rows[] = {37, 13, 67};
    static const int64_t ns[] = {2, 3, 4, 5, 7, 16, 67};
    lb_pool *pool = lb_pool_new(2);
    for (int ti = 0; ti < 3; ti++)
        for (int level = LB_CPU_SCALAR; level < LB_CPU_LEVEL_COUNT; level++)
            for (int ki = 0; ki < 5; ki++)
                for (int ni = 0; ni < 7; ni++) check_case(pool, types[ti], level, rows[(ki + ni) % 3], ks[ki], ns[ni]);
    lb_pool_free(pool);
    test_f16_model();
    return test_summary();
}
