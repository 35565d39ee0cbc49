/* Rolling a sequence back (lb_session_truncate, lb_engine_seq_truncate), as speculative decoding
 * does with rejected drafts. Truth: a fresh run of only the kept tokens, run in the same chunks
 * (so any difference comes from the rollback, not from kernels rounding differently for another
 * number of tokens): its logits must be bitwise the same. Forked and prefix-cached blocks must
 * stay intact, and bad positions fail without changing anything. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "lowbit.h"

#define STORIES SHARED("models/stories260K-gguf/stories260K.gguf")
#define N_IDS 69 /* the first reference prompt and its greedy continuation */
#define BT 16    /* KV block of the engines here (and of a session of 256 positions) */

static lb_model *g_m;
static int g_nv;
static int32_t g_ids[N_IDS];

/* Deterministic tokens unlike the reference text. */
static void junk(int32_t *out, int n, int salt) {
    for (int i = 0; i < n; i++) out[i] = 3 + (i * 37 + salt * 11) % (g_nv - 3);
}

static lb_engine *f32_engine(int prefix_cache) {
    lb_engine_params p = lb_engine_default_params();
    p.kv_type = LB_KV_F32;
    p.n_threads = 1;
    p.n_ctx = p.n_kv_tokens = 512;
    p.block_tokens = BT;
    p.prefix_cache = prefix_cache;
    lb_engine *e = NULL;
    lb_error err = {0};
    CHECK(lb_engine_new(g_m, &p, &e, &err) == LB_OK, "%s", err.msg);
    return e;
}

/* Decodes ids[from..to) of seq in calls of 64 (as lb_session_eval); every position's logits
 * into out. */
static lb_status decode(lb_engine *e, int seq, const int32_t *ids, int from, int to, float *out) {
    lb_batch_entry b[64];
    for (int at = from; at < to; at += 64) {
        int n = to - at < 64 ? to - at : 64;
        for (int i = 0; i < n; i++) b[i] = (lb_batch_entry){seq, at + i, ids[at + i], out != NULL};
        lb_error err = {0};
        lb_status st = lb_engine_decode(e, b, (size_t)n, out ? out + (size_t)(at - from) * g_nv : NULL, &err);
        CHECK(st == LB_OK, "decode %d..%d: %s", at, at + n, err.msg);
        if (st) return st;
    }
    return LB_OK;
}

/* Logits of ids[cut..N_IDS) from a fresh sequence fed ids[0..cut), then the rest. */
static float *fresh(int cut) {
    lb_engine *e = f32_engine(0);
    float *out = malloc((size_t)(N_IDS - cut) * g_nv * sizeof *out);
    int seq;
    lb_error err = {0};
    if (e && out && !lb_engine_seq_new(e, 0, &seq, &err) && !decode(e, seq, g_ids, 0, cut, NULL))
        decode(e, seq, g_ids, cut, N_IDS, out);
    lb_engine_free(e);
    return out;
}

static int same(const float *a, const float *b, int rows) {
    return !memcmp(a, b, (size_t)rows * g_nv * sizeof *a);
}

/* Session: feed kept tokens and junk past them, roll back, go on: logits as if never fed. */
static void test_session(void) {
    int cuts[] = {0, 1, 15, 16, 17, 40};
    lb_session_params sp = lb_session_default_params();
    sp.kv_type = LB_KV_F32;
    sp.n_threads = 1;
    sp.n_ctx = 256;
    lb_error err = {0};
    float *lg = malloc((size_t)N_IDS * g_nv * sizeof *lg);
    for (size_t c = 0; c < sizeof cuts / sizeof *cuts; c++) {
        int cut = cuts[c];
        lb_session *s = NULL;
        CHECK(lb_session_new(g_m, &sp, &s, &err) == LB_OK, "%s", err.msg);
        if (!s) continue;
        int32_t j[40];
        junk(j, 23, cut);
        if (cut) CHECK(lb_session_eval(s, g_ids, (size_t)cut, NULL, 0, &err) == LB_OK, "%s", err.msg);
        CHECK(lb_session_eval(s, j, 23, lg, 1, &err) == LB_OK, "%s", err.msg); /* crosses blocks */
        CHECK(lb_session_truncate(s, cut, &err) == LB_OK && lb_session_n_past(s) == cut, "cut %d: %s", cut, err.msg);
        CHECK(lb_session_eval(s, g_ids + cut, (size_t)(N_IDS - cut), lg, 1, &err) == LB_OK, "%s", err.msg);
        float *ref = fresh(cut);
        CHECK(ref && same(lg, ref, N_IDS - cut), "cut %d: logits after a rollback differ from a fresh run", cut);
        free(ref);
        lb_session_free(s);
    }
    free(lg);
}

/* A fork shares its parent's blocks: rolling the fork back into a shared, partly filled block
 * and writing other tokens there must copy it, leaving the parent's positions intact. */
static void test_fork(void) {
    lb_engine *e = f32_engine(0);
    if (!e) return;
    lb_error err = {0};
    int a, b;
    float *la = malloc((size_t)N_IDS * g_nv * sizeof *la), *lb = malloc((size_t)N_IDS * g_nv * sizeof *lb);
    int32_t j[64];
    memcpy(j, g_ids, sizeof g_ids[0] * 35);
    junk(j + 35, 20, 7);
    CHECK(lb_engine_seq_new(e, 0, &a, &err) == LB_OK, "%s", err.msg);
    decode(e, a, g_ids, 0, 40, NULL);
    CHECK(lb_engine_seq_fork(e, a, &b, &err) == LB_OK, "%s", err.msg);
    CHECK(lb_engine_seq_truncate(e, b, 35, &err) == LB_OK && lb_engine_seq_len(e, b) == 35, "%s", err.msg);
    CHECK(lb_engine_seq_len(e, a) == 40, "the parent lost positions");
    decode(e, b, j, 35, 55, NULL);                   /* other tokens where the parent has ids */
    decode(e, a, g_ids, 40, N_IDS, la);              /* the parent goes on as if alone */
    CHECK(lb_engine_seq_truncate(e, b, 35, &err) == LB_OK, "%s", err.msg);
    decode(e, b, g_ids, 35, N_IDS, lb);
    float *r40 = fresh(40), *r35 = fresh(35);
    CHECK(r40 && same(la, r40, N_IDS - 40), "the parent's logits changed after its fork was rolled back and rewritten");
    CHECK(r35 && same(lb, r35, N_IDS - 35), "the fork's logits after its rollback differ from a fresh run");
    free(r40), free(r35), free(la), free(lb);
    lb_engine_free(e);
}

/* Prefix cache: blocks it holds stay intact, and the chain hash is rebuilt over what is kept,
 * so the blocks written after a rollback are found under the ids they hold. */
static void test_prefix_cache(void) {
    int cuts[] = {16, 20};
    for (int c = 0; c < 2; c++) {
        lb_engine *e = f32_engine(1);
        if (!e) return;
        lb_error err = {0};
        int a, s2;
        int32_t j[64];
        memcpy(j, g_ids, sizeof g_ids[0] * (size_t)cuts[c]);
        junk(j + cuts[c], 40 - cuts[c], c);
        CHECK(lb_engine_seq_new(e, 0, &a, &err) == LB_OK, "%s", err.msg);
        decode(e, a, j, 0, 40, NULL); /* caches 2 blocks, the second partly junk */
        CHECK(lb_engine_seq_truncate(e, a, cuts[c], &err) == LB_OK, "%s", err.msg);
        decode(e, a, g_ids, cuts[c], 48, NULL);
        size_t r = 0;
        CHECK(lb_engine_seq_new(e, 0, &s2, &err) == LB_OK, "%s", err.msg);
        CHECK(lb_engine_seq_reuse_prefix(e, s2, g_ids, N_IDS, &r, &err) == LB_OK && r == 48,
              "cut %d: %zu positions reused, want 48 (%s)", cuts[c], r, err.msg);
        float *lg = malloc((size_t)N_IDS * g_nv * sizeof *lg), *ref = fresh(48);
        if (r == 48) decode(e, s2, g_ids, 48, N_IDS, lg);
        CHECK(r == 48 && ref && same(lg, ref, N_IDS - 48), "cut %d: logits over reused blocks differ", cuts[c]);
        free(lg), free(ref);
        lb_engine_free(e);
    }
}

static void test_bad(void) {
    lb_engine *e = f32_engine(0);
    if (!e) return;
    lb_error err = {0};
    int a;
    CHECK(lb_engine_seq_new(e, 0, &a, &err) == LB_OK, "%s", err.msg);
    decode(e, a, g_ids, 0, 20, NULL);
    CHECK(lb_engine_seq_truncate(e, a, 21, &err) == LB_ERR_RANGE && strstr(err.msg, "holds 20 positions"), "%s", err.msg);
    CHECK(lb_engine_seq_truncate(e, a, -1, &err) == LB_ERR_RANGE, "%s", err.msg);
    CHECK(lb_engine_seq_truncate(e, a + 5, 0, &err) == LB_ERR_ARG && strstr(err.msg, "unknown sequence"), "%s", err.msg);
    CHECK(lb_engine_seq_len(e, a) == 20, "a failed truncate changed the sequence");
    CHECK(lb_engine_seq_truncate(e, a, 20, &err) == LB_OK && lb_engine_seq_len(e, a) == 20, "%s", err.msg);
    lb_engine_free(e);
    lb_session *s = NULL;
    CHECK(lb_session_new(g_m, NULL, &s, &err) == LB_OK, "%s", err.msg);
    CHECK(s && lb_session_truncate(s, 1, &err) == LB_ERR_RANGE && lb_session_n_past(s) == 0, "%s", err.msg);
    lb_session_free(s);
}

int main(void) {
    lb_error err = {0};
    if (lb_model_load(STORIES, NULL, &g_m, &err)) {
        CHECK(0, "%s", err.msg);
        return test_summary();
    }
    g_nv = lb_model_n_vocab(g_m);
    int32_t *ids = NULL;
    size_t n = 0;
    const char *text = "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
                       "park. One day, she saw a big, red ball. She wanted to play with it, but it was too high. Lily's mom "
                       "said that they would get it down together.";
    CHECK(lb_tokenize(lb_model_tokenizer(g_m), text, strlen(text), 1, &ids, &n, &err) == LB_OK && n >= N_IDS,
          "%zu ids %s", n, err.msg);
    if (n >= N_IDS) {
        memcpy(g_ids, ids, sizeof g_ids);
        test_session();
        test_fork();
        test_prefix_cache();
        test_bad();
    }
    free(ids);
    lb_model_free(g_m);
    return test_summary();
}
