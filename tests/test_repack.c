/* Q4_0 repacked into 8-row groups (quant/repack.h).
 * - repack then unpack gives back the plain bytes;
 * - the kernel of every CPU level on the repacked layout equals, bit for bit, the plain layout's
 *   scalar kernel (lb_vec_dot_q4_0_q8_scalar: an independent loop over the original blocks) and
 *   the repacked scalar twin, on random odd block counts, row groups and token counts;
 * - a batch gives each token what it gets alone, bit for bit;
 * - lb_repack_model repacks exactly the matrices it may (not the embedding, not 12 rows, not F32),
 *   leaves a heap original and a file mapping readable, and does nothing the second time;
 * - the memory planner leaves room for the repack's transient copy or says plain. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/dtype.h"
#include "core/model.h"
#include "kernels/cpu/matmul.h"
#include "quant/quant.h"
#include "quant/repack.h"

static uint64_t g_rng = 0x9E3779B97F4A7C15ULL;
static float rnd(void) { return check_rnd_pm1(&g_rng); }

static uint8_t *plain_weights(int64_t rows, int64_t k) {
    size_t rb = lb_dtype_row_size(LB_Q4_0, k);
    float *wf = malloc(sizeof(float) * (size_t)k);
    uint8_t *w = malloc(rb * (size_t)rows);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < k; i++) wf[i] = rnd() * (1 + (float)(r % 3));
        lb_quantize_row_q4_0_ref(wf, w + r * rb, k, NULL);
    }
    free(wf);
    return w;
}

static float *acts(int64_t n_tok, int64_t k) {
    float *x = malloc(sizeof(float) * (size_t)(n_tok * k));
    for (int64_t i = 0; i < n_tok * k; i++) x[i] = rnd() * (1 + (float)(i % 7));
    if (n_tok * k > 40) x[37] = 0, x[38] = -1e-8f; /* a near-zero stretch */
    return x;
}

static void round_trip(int64_t rows, int64_t k) {
    size_t n = lb_dtype_row_size(LB_Q4_0, k) * (size_t)rows;
    uint8_t *w = plain_weights(rows, k), *r8 = malloc(n), *back = malloc(n);
    lb_repack_q4_0_x8(w, r8, rows, k);
    lb_unpack_q4_0_x8(r8, back, rows, k);
    CHECK(!memcmp(w, back, n), "rows=%lld k=%lld: unpack(repack(w)) == w", (long long)rows, (long long)k);
    CHECK(rows < 16 || memcmp(w, r8, n), "the layout differs from the plain one");
    free(w), free(r8), free(back);
}

/* level's repacked kernel vs the plain scalar kernel and the repacked scalar twin */
static void check_level(lb_pool *pool, int level, int64_t rows, int64_t k, int64_t n_tok) {
    const lb_matmul_kernel *kl = lb_matmul_kernel_at(LB_Q4_0_R8, level);
    if (!kl) return; /* level above this CPU's (or LOWBIT_CPU's) */
    size_t n = lb_dtype_row_size(LB_Q4_0, k) * (size_t)rows, ny = (size_t)(n_tok * rows);
    uint8_t *w = plain_weights(rows, k), *r8 = malloc(n);
    float *x = acts(n_tok, k), *y = malloc(4 * ny), *yp = malloc(4 * ny), *ys = malloc(4 * ny);
    lb_repack_q4_0_x8(w, r8, rows, k);
    lb_error err;
    CHECK(lb_matmul_with(pool, kl, LB_Q4_0_R8, r8, rows, k, x, n_tok, y, 0, &err) == LB_OK, "%s", err.msg);
    CHECK(lb_matmul_with(pool, lb_matmul_kernel_at(LB_Q4_0, LB_CPU_SCALAR), LB_Q4_0, w, rows, k, x, n_tok, yp, 1,
                         &err) == LB_OK, "%s", err.msg);
    CHECK(lb_matmul_with(pool, lb_matmul_kernel_at(LB_Q4_0_R8, LB_CPU_SCALAR), LB_Q4_0_R8, r8, rows, k, x, n_tok, ys, 1,
                         &err) == LB_OK, "%s", err.msg);
    int differ = 0, twin = 0, bad = 0;
    for (size_t i = 0; i < ny; i++) differ += y[i] != yp[i], twin += ys[i] != yp[i], bad += !isfinite(y[i]);
    CHECK(differ == 0 && twin == 0 && bad == 0,
          "%s rows=%lld k=%lld n_tok=%lld: repacked == plain scalar bit for bit (%d differ, twin %d, %d not finite)",
          lb_cpu_level_name((lb_cpu_level)level), (long long)rows, (long long)k, (long long)n_tok, differ, twin, bad);
    free(w), free(r8), free(x), free(y), free(yp), free(ys);
}

/* lb_matmul over n_tok tokens == each token alone, through the dispatcher */
static void check_batch(lb_pool *pool, int64_t rows, int64_t k, int64_t n_tok) {
    size_t n = lb_dtype_row_size(LB_Q4_0, k) * (size_t)rows;
    uint8_t *w = plain_weights(rows, k), *r8 = malloc(n);
    float *x = acts(n_tok, k), *y = malloc(sizeof(float) * (size_t)(n_tok * rows)), *y1 = malloc(sizeof(float) * (size_t)rows);
    lb_repack_q4_0_x8(w, r8, rows, k);
    lb_error err;
    CHECK(lb_matmul_raw(pool, LB_Q4_0_R8, r8, rows, k, x, n_tok, y, &err) == LB_OK, "%s", err.msg);
    int differ = 0;
    for (int64_t t = 0; t < n_tok; t++) {
        CHECK(lb_matmul_raw(pool, LB_Q4_0_R8, r8, rows, k, x + t * k, 1, y1, &err) == LB_OK, "%s", err.msg);
        for (int64_t r = 0; r < rows; r++) differ += y[t * rows + r] != y1[r];
    }
    CHECK(differ == 0, "rows=%lld k=%lld n_tok=%lld: batch == alone (%d differ)", (long long)rows, (long long)k,
          (long long)n_tok, differ);
    free(w), free(r8), free(x), free(y), free(y1);
}

static void check_bad_rows(void) {
    uint8_t w[18 * 12] = {0};
    float x[32] = {0}, y[12];
    lb_error err;
    CHECK(lb_matmul_raw(NULL, LB_Q4_0_R8, w, 12, 32, x, 1, y, &err) == LB_ERR_ARG && strstr(err.msg, "groups of 8"),
          "12 rows of Q4_0_R8 refused: %s", err.msg);
}

static lb_tensor *add(lb_model *m, const char *name, lb_dtype type, int64_t k, int64_t rows, const void *data) {
    int64_t ne[2] = {k, rows};
    lb_error err;
    size_t nb = lb_dtype_row_size(type, k) * (size_t)rows;
    CHECK(lb_model_add_tensor(m, name, type, 2, ne, data, nb, &err) == LB_OK, "%s", err.msg);
    return &m->tensors[m->n_tensors - 1];
}

/* y of tensor t (plain or repacked) for x, through the dispatcher */
static void product(const lb_tensor *t, const float *x, float *y) {
    lb_error err;
    CHECK(lb_matmul(NULL, t, x, 1, y, &err) == LB_OK, "%s", err.msg);
}

static void check_model(void) {
    const int64_t k = 96, rows = 24;
    size_t n = lb_dtype_row_size(LB_Q4_0, k) * (size_t)rows;
    uint8_t *heap = plain_weights(rows, k), *copy = malloc(n), *small = plain_weights(12, k), *emb = plain_weights(16, k);
    memcpy(copy, heap, n);
    char path[] = "/tmp/lowbit_test_repack_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, copy, n) == (ssize_t)n, "temp file");
    close(fd);
    lb_model *m = lb_model_new();
    lb_error err;
    const lb_mapfile *map = NULL;
    CHECK(lb_model_add_map(m, path, &map, &err) == LB_OK, "%s", err.msg);
    float f32[32 * 8] = {0};
    add(m, "blk.0.heap.weight", LB_Q4_0, k, rows, heap);
    add(m, "blk.0.mapped.weight", LB_Q4_0, k, rows, map->data);
    add(m, "blk.0.small.weight", LB_Q4_0, k, 12, small);
    add(m, "blk.0.f32.weight", LB_F32, 32, 8, f32);
    m->tok_embd = add(m, "token_embd.weight", LB_Q4_0, k, 16, emb);
    size_t peak = 0;
    CHECK(lb_repack_model_bytes(m, &peak) == 2 * n && peak == n, "two matrices to repack");
    float *x = acts(1, k), want[24], got[24];
    /* the truth: the plain layout's scalar kernel */
    CHECK(lb_matmul_with(NULL, lb_matmul_kernel_at(LB_Q4_0, LB_CPU_SCALAR), LB_Q4_0, heap, rows, k, x, 1, want, 1,
                         &err) == LB_OK, "%s", err.msg);
    int cnt = -1;
    size_t bytes = 0;
    CHECK(lb_repack_model(m, &cnt, &bytes, &err) == LB_OK && cnt == 2 && bytes == 2 * n, "repacked %d, %zu bytes", cnt,
          bytes);
    CHECK(m->tensors[0].type == LB_Q4_0_R8 && m->tensors[1].type == LB_Q4_0_R8, "the 24-row matrices repacked");
    CHECK(m->tensors[2].type == LB_Q4_0 && m->tensors[3].type == LB_F32 && m->tok_embd->type == LB_Q4_0,
          "12 rows, F32 and the embedding kept");
    CHECK(!memcmp(heap, copy, n) && !memcmp(map->data, copy, n), "the originals still read the same");
    CHECK(lb_repack_model_has(m), "the model says it holds repacked weights");
    for (int i = 0; i < 2; i++) {
        product(&m->tensors[i], x, got);
        CHECK(!memcmp(want, got, sizeof want), "tensor %d: repacked product == plain", i);
    }
    CHECK(lb_repack_model(m, &cnt, NULL, &err) == LB_OK && cnt == 0, "second pass: nothing to do (%d)", cnt);
    lb_model_free(m);
    unlink(path);
    free(heap), free(copy), free(small), free(emb), free(x);
}

/* the planner repacks only when the budget also holds the largest matrix twice */
static void check_plan(void) {
    lb_mem_plan_in in = {0};
    in.weight_bytes = 1000, in.kv_bytes_per_token[LB_MEM_KV_F16] = 10, in.n_ctx_requested = 100, in.n_ctx_train = 100;
    in.kv_forced = -1, in.repack_bytes = 600, in.repack_peak_bytes = 50;
    lb_mem_plan p;
    lb_error err;
    in.budget = 2050;
    CHECK(lb_mem_plan_make(&in, &p, &err) == LB_OK && p.repack == 1, "room for the copy: repack (%s)", p.summary);
    in.budget = 2049;
    CHECK(lb_mem_plan_make(&in, &p, &err) == LB_OK && p.repack == 0, "no room: plain layout (%s)", p.summary);
    in.repack_bytes = in.repack_peak_bytes = 0, in.budget = 1 << 20;
    CHECK(lb_mem_plan_make(&in, &p, &err) == LB_OK && p.repack == 0, "nothing to repack");
}

int main(void) {
    static const int64_t ks[] = {32, 96, 160, 224, 4096 + 96}; /* 1, 3, 5, 7, 131 blocks */
    static const int64_t nts[] = {1, 2, 3, 4, 5, 9, 67};
    static const int64_t rs[] = {8, 24, 40};
    for (int ri = 0; ri < 3; ri++) round_trip(rs[ri], 160);
    lb_pool *pool = lb_pool_new(2);
    for (int level = LB_CPU_SCALAR; level < LB_CPU_LEVEL_COUNT; level++)
        for (int ki = 0; ki < 5; ki++)
            for (int ni = 0; ni < 7; ni++) check_level(pool, level, rs[(ki + ni) % 3], ks[ki], nts[ni]);
    for (int ni = 1; ni < 7; ni++) check_batch(pool, 40, 224, nts[ni]);
    check_bad_rows();
    check_model();
    check_plan();
    lb_pool_free(pool);
    return test_summary();
}
