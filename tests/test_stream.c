/* Layer streaming (src/mem/stream.c): the planner chooses it when the weights do not fit and
 * refuses when not even one unit does; a streamed session gives ids and logits identical to
 * one with every weight resident (the same kernels over the same bytes, so bit for bit); the
 * window restarts where a pass resumes; a restored .lbz is refused by name. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/model.h"
#include "lowbit.h"
#include "mem/stream.h"

#define STORIES SHARED("models/stories260K-gguf/stories260K.gguf")
#define T512 SHARED("models/tinystories-512d") /* BF16 safetensors, tied head, norms converted at load */

static lb_model *load(const char *path) {
    lb_error err = {0};
    lb_model *m = NULL;
    CHECK(lb_model_load(path, NULL, &m, &err) == LB_OK, "%s: %s", path, err.msg);
    return m;
}

/* The plan input at n_ctx tokens of f32 KV, and the bytes beside the window. */
static lb_mem_plan_in plan_input(const lb_model *m, uint32_t n_ctx, uint64_t *base) {
    lb_mem_plan_in in;
    lb_model_mem_plan_input(m, 1, &in);
    in.n_ctx_requested = n_ctx;
    in.ctx_strict = 1;
    in.kv_forced = LB_MEM_KV_F32;
    in.stream_allowed = 1;
    *base = in.stream_fixed_bytes + in.kv_bytes_per_token[LB_MEM_KV_F32] * n_ctx + in.scratch_bytes +
            in.scratch_bytes_per_token * n_ctx + in.overhead_bytes;
    return in;
}

static uint64_t big_unit(const lb_mem_plan_in *in) {
    return in->stream_head_bytes > in->stream_unit_bytes ? in->stream_head_bytes : in->stream_unit_bytes;
}

/* Budgets around the streaming thresholds: a window of exactly two units, one, none. */
static void test_plan(const char *path) {
    lb_model *m = load(path);
    if (!m) return;
    uint64_t base;
    lb_mem_plan_in in = plan_input(m, 128, &base);
    lb_mem_plan p;
    lb_error err = {0};
    CHECK(in.stream_units == (uint32_t)m->cfg.n_layers + 1 && !in.stream_refusal[0], "%s: %s", path, in.stream_refusal);
    CHECK(in.stream_unit_bytes > 0 && in.stream_fixed_bytes < in.weight_bytes);
    in.budget = base + big_unit(&in) + in.stream_unit_bytes; /* two units exactly */
    CHECK(lb_mem_plan_make(&in, &p, &err) == LB_OK, "%s", err.msg);
    CHECK(p.streaming && p.stream_window == 2 && p.total_bytes <= in.budget && p.n_ctx == 128, "%s", p.summary);
    CHECK(strstr(p.summary, "streaming: window 2 layers") != NULL, "%s", p.summary);
    in.budget -= 1; /* one unit only: still streams, without read-ahead */
    CHECK(lb_mem_plan_make(&in, &p, &err) == LB_OK && p.streaming && p.stream_window == 1, "%s", p.summary);
    in.budget = base + big_unit(&in) - 1; /* not even one unit beside KV and scratch */
    CHECK(lb_mem_plan_make(&in, &p, &err) == LB_ERR_BUDGET && !p.streaming, "%s", p.summary);
    CHECK(strstr(err.msg, "streaming needs one unit") != NULL, "%s", err.msg);
    /* every weight fits: no streaming */
    in.budget = base + in.weight_bytes * 2;
    CHECK(lb_mem_plan_make(&in, &p, &err) == LB_OK && !p.streaming && p.stream_window == 0, "%s", p.summary);
    /* a model that cannot stream says why in the refusal */
    in.budget = base + big_unit(&in) + in.stream_unit_bytes;
    snprintf(in.stream_refusal, sizeof in.stream_refusal, "test refusal");
    CHECK(lb_mem_plan_make(&in, &p, &err) == LB_ERR_BUDGET && strstr(err.msg, "cannot stream: test refusal"), "%s", err.msg);
    /* a caller that cannot stream (the server today) never gets such a plan */
    in.stream_refusal[0] = 0;
    in.stream_allowed = 0;
    CHECK(lb_mem_plan_make(&in, &p, &err) == LB_ERR_BUDGET && !strstr(err.msg, "stream"), "%s", err.msg);
    lb_model_free(m);
}

/* Greedy ids and every logit of a prompt and n_gen tokens, with a window of `window` (0: off). */
static int run(lb_model *m, int window, int n_gen, int32_t *ids, float *logits, lb_error *err) {
    lb_session_params sp = lb_session_default_params();
    sp.n_ctx = 128;
    sp.n_threads = 2;
    sp.kv_type = LB_KV_F32;
    sp.stream_window = window;
    lb_session *s = NULL;
    lb_status st = lb_session_new(m, &sp, &s, err);
    int nv = lb_model_n_vocab(m);
    int32_t tok[5] = {1, 403, 407, 261, 378};
    /* the whole prompt at once (one batch), then one token at a time */
    if (!st) st = lb_session_eval(s, tok, 5, logits, 0, err);
    for (int i = 0; i < n_gen && !st; i++) {
        const float *row = logits + (size_t)i * nv;
        int best = 0;
        for (int v = 1; v < nv; v++)
            if (row[v] > row[best]) best = v;
        ids[i] = best;
        if (i + 1 < n_gen) st = lb_session_eval(s, &ids[i], 1, logits + (size_t)(i + 1) * nv, 0, err);
    }
    lb_session_free(s);
    return st == LB_OK;
}

static void test_same_output(const char *path, int window) {
    lb_model *m = load(path);
    if (!m) return;
    enum { N = 12 };
    int nv = lb_model_n_vocab(m);
    float *a = calloc((size_t)N * nv, sizeof *a), *b = calloc((size_t)N * nv, sizeof *b);
    int32_t ia[N], ib[N];
    lb_error err = {0};
    CHECK(a && b && run(m, 0, N, ia, a, &err), "%s", err.msg);
    CHECK(a && b && run(m, window, N, ib, b, &err), "%s: window %d: %s", path, window, err.msg);
    CHECK(!memcmp(ia, ib, sizeof ia), "%s: window %d: ids differ", path, window);
    CHECK(a && b && !memcmp(a, b, (size_t)N * nv * sizeof *a), "%s: window %d: logits differ", path, window);
    free(a);
    free(b);
    lb_model_free(m);
}

/* The stream itself: units in order, a pass that stops early (resync), a unit out of range. */
static void test_window(void) {
    lb_model *m = load(STORIES);
    if (!m) return;
    lb_stream *s = NULL;
    lb_error err = {0};
    int L = m->cfg.n_layers;
    CHECK(lb_stream_new(m, 3, &s, &err) == LB_OK, "%s", err.msg);
    if (!s) {
        lb_model_free(m);
        return;
    }
    CHECK(lb_stream_window(s) == 3 && lb_stream_window_bytes(s) > 0);
    volatile float sum = 0;
    for (int pass = 0; pass < 3; pass++)
        for (int u = 0; u <= L; u++) {
            if (pass == 1 && u == 2) break; /* a pass that failed at layer 2 */
            CHECK(lb_stream_acquire(s, u, &err) == LB_OK, "pass %d unit %d: %s", pass, u, err.msg);
            const lb_tensor *t = u < L ? m->layers[u].wq : m->output;
            sum += ((const float *)t->data)[t->nbytes / sizeof(float) - 1]; /* readable after acquire */
            lb_stream_release(s, u);
        }
    (void)sum; /* the reads must happen; their value is not used */
    CHECK(lb_stream_acquire(s, 4, &err) == LB_OK, "a jump restarts the window: %s", err.msg);
    lb_stream_release(s, 4);
    CHECK(lb_stream_acquire(s, L + 1, &err) == LB_ERR_ARG);
    lb_stream_free(s);
    /* a window larger than the model is all of it */
    CHECK(lb_stream_new(m, 1000, &s, &err) == LB_OK && lb_stream_window(s) == L + 1, "%s", err.msg);
    lb_stream_free(s);
    lb_model_free(m);
}

/* Weights restored from a .lbz live in a heap buffer: streaming is refused, naming the file. */
static void test_lbz_refused(void) {
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char out[512];
    snprintf(out, sizeof out, "%s/test_stream_%d.lbz", dir, (int)getpid());
    lb_error err = {0};
    lb_lbz_options o = lb_lbz_default_options();
    o.n_threads = 1;
    lb_model_regions *rg = NULL;
    size_t n_reg = 0;
    lb_status st = lb_model_regions_open(STORIES, &rg, &err);
    if (!st) {
        o.header_len = lb_model_regions_header_len(rg);
        const lb_lbz_region *reg = lb_model_regions_get(rg, &n_reg);
        st = lb_lbz_compress(STORIES, out, reg, n_reg, &o, NULL, NULL, &err);
    }
    lb_model_regions_free(rg);
    if (st) {
        CHECK(0, "compress: %s", err.msg);
        return;
    }
    lb_model *m = load(out);
    if (m) {
        uint64_t u, h, f;
        uint32_t n;
        char why[256];
        CHECK(lb_stream_sizes(m, 64, &u, &h, &f, &n, why, sizeof why) == 1 && strstr(why, ".lbz"), "%s", why);
        lb_stream *s = NULL;
        CHECK(lb_stream_new(m, 2, &s, &err) == LB_ERR_UNSUPPORTED && strstr(err.msg, "restored"), "%s", err.msg);
        lb_session_params sp = lb_session_default_params();
        sp.stream_window = 2;
        lb_session *ss = NULL;
        CHECK(lb_session_new(m, &sp, &ss, &err) != LB_OK && strstr(err.msg, "cannot stream"), "%s", err.msg);
        lb_model_free(m);
    }
    remove(out);
}

/* CUDA is refused by name before anything else */
static void test_cuda_refused(void) {
    lb_model *m = load(STORIES);
    if (!m) return;
    lb_session_params sp = lb_session_default_params();
    sp.stream_window = 2;
    sp.device = LB_DEVICE_CUDA;
    lb_session *s = NULL;
    lb_error err = {0};
    CHECK(lb_session_new(m, &sp, &s, &err) == LB_ERR_UNSUPPORTED && strstr(err.msg, "--device cuda"), "%s", err.msg);
    lb_model_free(m);
}

int main(void) {
    test_plan(STORIES);
    test_plan(T512);
    test_same_output(STORIES, 1);
    test_same_output(STORIES, 2);
    test_same_output(T512, 2);
    test_same_output(T512, 4);
    test_window();
    test_lbz_refused();
    test_cuda_refused();
    return test_summary();
}
