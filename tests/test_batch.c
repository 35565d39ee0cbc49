/* The batched engine: sequences decoded together equal each run alone; forks share blocks; the
 * prefix cache computes a shared prefix once; fine-tunes per sequence; bad use fails cleanly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <unistd.h>

#include "check.h"
#include "lowbit.h"

#define STORIES SHARED("models/stories260K-gguf/stories260K.gguf")

/* An F32 KV cache: these tests measure batch independence to 1e-5, and an F16 cache (the
 * default) rounds every K and V to 11 bits, magnifying the last-bit differences of the
 * one-token kernels (docs/design.md) to 1e-5 .. 1e-4. */
static lb_engine_params f32_engine(void) {
    lb_engine_params p = lb_engine_default_params();
    p.kv_type = LB_KV_F32;
    return p;
}

#define rel_err check_rel_err

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* 8 sequences of different prompt lengths, greedy-decoded together for 12 steps, against each
 * decoded alone through an lb_session, both with a KV cache of kv. tol: the relative logit error
 * allowed (0: bitwise, where every kernel on the path sums a token alike at any batch size). */
static void test_batched_kv(const char *path, lb_kv_type kv, double tol) {
    lb_error err = {0};
    lb_model *m = NULL;
    if (lb_model_load(path, NULL, &m, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    int nv = lb_model_n_vocab(m);
    enum { NS = 8, STEPS = 12 };
    lb_engine_params ep = f32_engine();
    ep.kv_type = kv;
    ep.n_ctx = 128;
    ep.n_kv_tokens = 8 * 128;
    lb_engine *e = NULL;
    CHECK(lb_engine_new(m, &ep, &e, &err) == LB_OK, "%s", err.msg);
    float *lg = malloc((size_t)64 * nv * sizeof *lg), *ref = malloc((size_t)nv * sizeof *ref);
    int seq[NS], len[NS], next[NS];
    int32_t ids_all[NS][64];
    for (int s = 0; s < NS; s++) {
        len[s] = 3 + 2 * s;
        for (int i = 0; i < len[s]; i++) ids_all[s][i] = 1 + (i * 37 + s * 11) % (nv - 1);
        CHECK(lb_engine_seq_new(e, 0, &seq[s], &err) == LB_OK, "%s", err.msg);
        lb_batch_entry b[64];
        for (int i = 0; i < len[s]; i++) b[i] = (lb_batch_entry){seq[s], i, ids_all[s][i], i == len[s] - 1};
        CHECK(lb_engine_decode(e, b, (size_t)len[s], lg, &err) == LB_OK, "%s", err.msg);
        next[s] = argmax(lg, nv);
    }
    /* together */
    int got[NS][STEPS];
    for (int k = 0; k < STEPS; k++) {
        lb_batch_entry b[NS];
        for (int s = 0; s < NS; s++) b[s] = (lb_batch_entry){seq[s], len[s] + k, next[s], 1};
        CHECK(lb_engine_decode(e, b, NS, lg, &err) == LB_OK, "%s", err.msg);
        for (int s = 0; s < NS; s++) got[s][k] = next[s], next[s] = argmax(lg + (size_t)s * nv, nv);
    }
    /* alone, checking the logits of the last step */
    lb_engine_stats st;
    lb_engine_get_stats(e, &st);
    CHECK(st.n_seqs == NS && st.tokens_computed > 0);
    for (int s = 0; s < NS; s++) {
        lb_session_params sp = lb_session_default_params();
        sp.n_ctx = 128;
        sp.kv_type = kv;
        lb_session *ss = NULL;
        CHECK(lb_session_new(m, &sp, &ss, &err) == LB_OK, "%s", err.msg);
        CHECK(lb_session_eval(ss, ids_all[s], (size_t)len[s], ref, 0, &err) == LB_OK, "%s", err.msg);
        int id = argmax(ref, nv), same = 1;
        for (int k = 0; k < STEPS; k++) {
            same &= id == got[s][k];
            CHECK(lb_session_eval(ss, &id, 1, ref, 0, &err) == LB_OK, "%s", err.msg);
            id = argmax(ref, nv);
        }
        CHECK(same && id == next[s], "%s: sequence %d: greedy ids differ from the run alone", path, s);
        double r = rel_err(lg + (size_t)s * nv, ref, nv);
        CHECK(tol ? r < tol : r == 0, "%s (KV type %d): sequence %d: logits %.3g relative from the run alone", path, (int)kv,
              s, r);
        lb_session_free(ss);
    }
    free(lg);
    free(ref);
    lb_engine_free(e);
    lb_model_free(m);
}

static void test_batched_equals_alone(const char *path) { test_batched_kv(path, LB_KV_F32, 1e-5); }

/* A fork shares its parent's blocks; both continue as a fresh run of the same tokens would. */
static void test_fork_and_prefix(void) {
    lb_error err = {0};
    lb_model *m = NULL;
    if (lb_model_load(STORIES, NULL, &m, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    int nv = lb_model_n_vocab(m);
    lb_engine_params ep = f32_engine();
    ep.n_ctx = 1024;
    ep.n_kv_tokens = 512 + 32 * 256;
    ep.max_batch = 64;
    lb_engine *e = NULL;
    CHECK(lb_engine_new(m, &ep, &e, &err) == LB_OK, "%s", err.msg);
    float *lg = malloc((size_t)64 * nv * sizeof *lg);
    int32_t prefix[513];
    for (int i = 0; i < 513; i++) prefix[i] = 1 + (i * 13) % (nv - 1);
    /* the system prompt once, in chunks of 64 */
    int root;
    CHECK(lb_engine_seq_new(e, 0, &root, &err) == LB_OK, "%s", err.msg);
    for (int i = 0; i < 512; i += 64) {
        lb_batch_entry b[64];
        for (int t = 0; t < 64; t++) b[t] = (lb_batch_entry){root, i + t, prefix[i + t], 0};
        CHECK(lb_engine_decode(e, b, 64, NULL, &err) == LB_OK, "%s", err.msg);
    }
    /* 32 sequences reuse it through the cache, then each adds 256 of its own tokens */
    int seq[32];
    size_t reused_total = 0;
    for (int s = 0; s < 32; s++) {
        size_t r = 0;
        CHECK(lb_engine_seq_new(e, 0, &seq[s], &err) == LB_OK, "%s", err.msg);
        CHECK(lb_engine_seq_reuse_prefix(e, seq[s], prefix, 513, &r, &err) == LB_OK && r == 512, "%zu %s", r, err.msg);
        reused_total += r;
    }
    CHECK(lb_engine_seq_free(e, root, &err) == LB_OK);
    for (int k = 0; k < 256; k += 8) {
        lb_batch_entry b[64];
        int n;
        /* 8 positions for each of 8 sequences per call, 4 calls per step of 8 positions */
        for (int g = 0; g < 4; g++) {
            n = 0;
            for (int s = g * 8; s < g * 8 + 8; s++)
                for (int j = 0; j < 8; j++) b[n++] = (lb_batch_entry){seq[s], 512 + k + j, 1 + (s * 7 + k + j) % (nv - 1), 0};
            CHECK(lb_engine_decode(e, b, (size_t)n, NULL, &err) == LB_OK, "%s", err.msg);
        }
    }
    lb_engine_stats st;
    lb_engine_get_stats(e, &st);
    size_t want_blocks = (512 + 32 * 256) / 16;
    CHECK(st.blocks_in_use == want_blocks, "blocks in use %zu, want %zu", st.blocks_in_use, want_blocks);
    CHECK(st.bytes_in_use == want_blocks * st.block_bytes);
    CHECK(st.tokens_reused == 32 * 512 && reused_total == 32 * 512, "reused %llu", (unsigned long long)st.tokens_reused);
    CHECK(st.tokens_computed == 512 + 32 * 256, "computed %llu", (unsigned long long)st.tokens_computed);
    /* the pool is full now: one more position fails naming the pool, and changes nothing */
    lb_batch_entry one = {seq[0], 512 + 256, 5, 1};
    CHECK(lb_engine_decode(e, &one, 1, lg, &err) == LB_ERR_NOMEM && strstr(err.msg, "KV pool exhausted") &&
              strstr(err.msg, "8704 tokens"),
          "%s", err.msg);
    CHECK(lb_engine_seq_len(e, seq[0]) == 512 + 256);
    /* a fork of a sequence whose last block is full, and of one partly filled (copy-on-write) */
    lb_engine_seq_free(e, seq[31], &err);
    lb_engine_seq_free(e, seq[30], &err);
    int f;
    CHECK(lb_engine_seq_fork(e, seq[0], &f, &err) == LB_OK && lb_engine_seq_len(e, f) == 768, "%s", err.msg);
    lb_batch_entry a = {f, 768, 7, 1};
    CHECK(lb_engine_decode(e, &a, 1, lg, &err) == LB_OK, "%s", err.msg);
    float *l1 = malloc((size_t)nv * sizeof *l1);
    memcpy(l1, lg, (size_t)nv * sizeof *l1);
    int g2;
    CHECK(lb_engine_seq_fork(e, f, &g2, &err) == LB_OK);
    lb_batch_entry c2[2] = {{f, 769, 9, 1}, {g2, 769, 9, 1}};
    CHECK(lb_engine_decode(e, c2, 2, lg, &err) == LB_OK, "%s", err.msg);
    CHECK(!memcmp(lg, lg + nv, (size_t)nv * sizeof *lg), "the fork and its parent differ on the same token");
    free(l1);
    free(lg);
    lb_engine_free(e);
    lb_model_free(m);
}


/* Reference prompts and greedy ids of a greedy.json (case i). */
static int load_ref(const char *path, int i, int32_t *prompt, int *np, int32_t *greedy, int *ng) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf), *c = cJSON_GetArrayItem(j, i);
    if (!c) {
        cJSON_Delete(j);
        return 0;
    }
    cJSON *p = cJSON_GetObjectItem(c, "prompt_ids"), *g = cJSON_GetObjectItem(c, "greedy_ids");
    *np = cJSON_GetArraySize(p);
    *ng = cJSON_GetArraySize(g);
    for (int k = 0; k < *np && k < 256; k++) prompt[k] = cJSON_GetArrayItem(p, k)->valueint;
    for (int k = 0; k < *ng && k < 256; k++) greedy[k] = cJSON_GetArrayItem(g, k)->valueint;
    cJSON_Delete(j);
    return 1;
}

/* Writes the ft-dogs delta of stories260K-hf to a temporary file (the name in path). */
static int make_dogs_delta(char *path, size_t cap) {
    lb_error err = {0};
    snprintf(path, cap, "/tmp/lowbit_test_batch_%d.delta", (int)getpid());
    lb_delta_options o = lb_delta_default_options();
    o.int8 = 0;
    o.threshold = 0;
    lb_status st = lb_delta_create(SHARED("models/stories260K-hf"), SHARED("models/stories260K-ft-dogs"), path, &o, NULL, &err);
    CHECK(st == LB_OK, "%s", err.msg);
    return st == LB_OK;
}

/* stories260K-hf with the ft-dogs delta on half of 8 sequences: each gives the greedy ids of its
 * own reference (base or fine-tune), decoded together in one batch per step. */
static void test_finetunes(void) {
    lb_error err = {0};
    char delta[256];
    make_dogs_delta(delta, sizeof delta);
    lb_model *m = NULL;
    if (lb_model_load(SHARED("models/stories260K-hf"), NULL, &m, &err)) {
        CHECK(0, "%s", err.msg);
        unlink(delta);
        return;
    }
    int nv = lb_model_n_vocab(m);
    lb_engine_params ep = f32_engine();
    ep.n_ctx = 256;
    ep.n_kv_tokens = 8 * 256;
    ep.max_batch = 64;
    lb_engine *e = NULL;
    CHECK(lb_engine_new(m, &ep, &e, &err) == LB_OK, "%s", err.msg);
    int ft = 0;
    CHECK(lb_engine_add_finetune(e, delta, &ft, &err) == LB_OK && ft == 1, "%s", err.msg);
    unlink(delta);
    static int32_t prompt[8][256], want[8][256];
    int np[8], ng[8], seq[8], next[8], ok[8];
    float *lg = malloc((size_t)64 * nv * sizeof *lg);
    for (int s = 0; s < 8; s++) {
        const char *ref = s % 2 ? SHARED("reference/stories260K-ft-dogs/greedy.json") : SHARED("reference/stories260K/greedy.json");
        CHECK(load_ref(ref, (s / 2) % 2, prompt[s], &np[s], want[s], &ng[s]), "%s", ref);
        if (ng[s] > 48) ng[s] = 48;
        CHECK(lb_engine_seq_new(e, s % 2 ? ft : 0, &seq[s], &err) == LB_OK, "%s", err.msg);
        lb_batch_entry b[64];
        for (int i = 0; i < np[s] && i < 64; i++) b[i] = (lb_batch_entry){seq[s], i, prompt[s][i], i == np[s] - 1};
        CHECK(lb_engine_decode(e, b, (size_t)np[s], lg, &err) == LB_OK, "%s", err.msg);
        next[s] = argmax(lg, nv);
        ok[s] = 1;
    }
    for (int k = 0; k < 48; k++) {
        lb_batch_entry b[8];
        int n = 0, idx[8];
        for (int s = 0; s < 8; s++)
            if (k < ng[s]) {
                ok[s] &= next[s] == want[s][k];
                idx[n] = s;
                b[n++] = (lb_batch_entry){seq[s], np[s] + k, next[s], 1};
            }
        if (!n) break;
        CHECK(lb_engine_decode(e, b, (size_t)n, lg, &err) == LB_OK, "%s", err.msg);
        for (int i = 0; i < n; i++) next[idx[i]] = argmax(lg + (size_t)i * nv, nv);
    }
    for (int s = 0; s < 8; s++) CHECK(ok[s], "sequence %d (%s) left its reference's greedy ids", s, s % 2 ? "ft-dogs" : "base");
    free(lg);
    lb_engine_free(e);
    lb_model_free(m);
}

/* Runs ids alone through a fresh engine holding only that sequence (with fine-tune ft from
 * delta, or the base): greedy continuation of n_gen ids into out, last logits into last. */
static void run_alone(lb_model *m, const char *delta, int ft, const int32_t *ids, int n, int n_gen, int32_t *out,
                      float *last) {
    lb_error err = {0};
    lb_engine_params ep = f32_engine();
    ep.n_ctx = 128;
    lb_engine *e = NULL;
    int f = 0, s = 0, nv = lb_model_n_vocab(m);
    CHECK(lb_engine_new(m, &ep, &e, &err) == LB_OK, "%s", err.msg);
    if (ft) CHECK(lb_engine_add_finetune(e, delta, &f, &err) == LB_OK, "%s", err.msg);
    CHECK(lb_engine_seq_new(e, f, &s, &err) == LB_OK, "%s", err.msg);
    lb_batch_entry b[64];
    for (int i = 0; i < n; i++) b[i] = (lb_batch_entry){s, i, ids[i], i == n - 1};
    CHECK(lb_engine_decode(e, b, (size_t)n, last, &err) == LB_OK, "%s", err.msg);
    for (int k = 0; k < n_gen; k++) {
        out[k] = argmax(last, nv);
        lb_batch_entry one = {s, n + k, out[k], 1};
        CHECK(lb_engine_decode(e, &one, 1, last, &err) == LB_OK, "%s", err.msg);
    }
    lb_engine_free(e);
}

/* 8 sequences in one engine: 4 roots (2 base, 2 with the ft-dogs delta) of different prompt
 * lengths, each forked after its prompt with a different next token for the fork, then all 8
 * greedy-decoded together. Each must equal its whole token history run alone. */
static void test_forks_and_deltas(void) {
    lb_error err = {0};
    char delta[256];
    if (!make_dogs_delta(delta, sizeof delta)) return;
    lb_model *m = NULL;
    if (lb_model_load(SHARED("models/stories260K-hf"), NULL, &m, &err)) {
        CHECK(0, "%s", err.msg);
        unlink(delta);
        return;
    }
    enum { NS = 8, STEPS = 10 };
    int nv = lb_model_n_vocab(m), ft = 0, seq[NS], len[NS], next[NS];
    lb_engine_params ep = f32_engine();
    ep.n_ctx = 128;
    ep.n_kv_tokens = NS * 128;
    lb_engine *e = NULL;
    CHECK(lb_engine_new(m, &ep, &e, &err) == LB_OK, "%s", err.msg);
    CHECK(lb_engine_add_finetune(e, delta, &ft, &err) == LB_OK, "%s", err.msg);
    static int32_t hist[NS][64];
    float *lg = malloc((size_t)NS * nv * sizeof *lg), *ref = malloc((size_t)nv * sizeof *ref);
    for (int r = 0; r < 4; r++) {
        int s = 2 * r, f = 2 * r + 1;
        len[s] = 5 + 6 * r;
        for (int i = 0; i < len[s]; i++) hist[s][i] = 1 + (i * 29 + r * 7) % (nv - 1);
        CHECK(lb_engine_seq_new(e, r % 2 ? ft : 0, &seq[s], &err) == LB_OK, "%s", err.msg);
        lb_batch_entry b[64];
        for (int i = 0; i < len[s]; i++) b[i] = (lb_batch_entry){seq[s], i, hist[s][i], i == len[s] - 1};
        CHECK(lb_engine_decode(e, b, (size_t)len[s], lg, &err) == LB_OK, "%s", err.msg);
        next[s] = argmax(lg, nv);
        CHECK(lb_engine_seq_fork(e, seq[s], &seq[f], &err) == LB_OK, "%s", err.msg);
        memcpy(hist[f], hist[s], (size_t)len[s] * sizeof(int32_t));
        len[f] = len[s];
        next[f] = (next[s] + 1 + r) % nv; /* the fork takes another path from here */
    }
    for (int k = 0; k < STEPS; k++) {
        lb_batch_entry b[NS];
        for (int s = 0; s < NS; s++) {
            hist[s][len[s]] = next[s];
            b[s] = (lb_batch_entry){seq[s], len[s]++, next[s], 1};
        }
        CHECK(lb_engine_decode(e, b, NS, lg, &err) == LB_OK, "%s", err.msg);
        for (int s = 0; s < NS; s++) next[s] = argmax(lg + (size_t)s * nv, nv);
    }
    for (int s = 0; s < NS; s++) { /* alone: the history without its last STEPS - 1 ids, regrown greedily */
        int32_t out[STEPS];
        int r = s / 2, keep = len[s] - (STEPS - 1);
        run_alone(m, delta, r % 2, hist[s], keep, STEPS - 1, out, ref);
        int same = argmax(ref, nv) == next[s];
        for (int k = 0; k < STEPS - 1; k++) same &= out[k] == hist[s][keep + k];
        CHECK(same, "sequence %d (%s, %s): greedy ids differ from the run alone", s, r % 2 ? "ft-dogs" : "base",
              s % 2 ? "fork" : "root");
        double d = rel_err(lg + (size_t)s * nv, ref, nv);
        CHECK(d < 1e-5, "sequence %d: logits %.3g relative from the run alone", s, d);
    }
    lb_engine_stats st;
    lb_engine_get_stats(e, &st);
    CHECK(st.n_seqs == NS && st.n_finetunes == 1, "%d sequences, %d fine-tunes", st.n_seqs, st.n_finetunes);
    unlink(delta);
    free(lg);
    free(ref);
    lb_engine_free(e);
    lb_model_free(m);
}

static void test_bad_use(void) {
    lb_error err = {0};
    lb_model *m = NULL;
    if (lb_model_load(STORIES, NULL, &m, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    int nv = lb_model_n_vocab(m);
    lb_engine_params ep = f32_engine();
    ep.n_ctx = 64;
    ep.n_kv_tokens = 32;
    ep.max_batch = 8;
    lb_engine *e = NULL;
    CHECK(lb_engine_new(m, &ep, &e, &err) == LB_OK, "%s", err.msg);
    float *lg = malloc((size_t)16 * nv * sizeof *lg);
    int s;
    CHECK(lb_engine_seq_new(e, 0, &s, &err) == LB_OK);
    lb_batch_entry b[9];
    for (int i = 0; i < 9; i++) b[i] = (lb_batch_entry){s, i, 1 + i, 0};
    CHECK(lb_engine_decode(e, b, 9, NULL, &err) == LB_ERR_ARG && strstr(err.msg, "scratch of 8"), "%s", err.msg);
    lb_batch_entry u = {s + 5, 0, 1, 0};
    CHECK(lb_engine_decode(e, &u, 1, NULL, &err) == LB_ERR_ARG && strstr(err.msg, "unknown sequence"), "%s", err.msg);
    lb_batch_entry gap = {s, 3, 1, 0};
    CHECK(lb_engine_decode(e, &gap, 1, NULL, &err) == LB_ERR_RANGE && strstr(err.msg, "next position is 0"), "%s", err.msg);
    lb_batch_entry badid = {s, 0, nv, 0};
    CHECK(lb_engine_decode(e, &badid, 1, NULL, &err) == LB_ERR_RANGE && strstr(err.msg, "vocabulary"), "%s", err.msg);
    lb_batch_entry nolog = {s, 0, 1, 1};
    CHECK(lb_engine_decode(e, &nolog, 1, NULL, &err) == LB_ERR_ARG, "%s", err.msg);
    CHECK(lb_engine_decode(e, b, 0, NULL, &err) == LB_ERR_ARG);
    CHECK(lb_engine_seq_len(e, s) == 0, "failed calls changed the sequence");
    CHECK(lb_engine_seq_new(e, 3, &s, &err) == LB_ERR_ARG && strstr(err.msg, "fine-tune"), "%s", err.msg);
    CHECK(lb_engine_seq_free(e, 99, &err) == LB_ERR_ARG);
    int f;
    CHECK(lb_engine_seq_fork(e, 99, &f, &err) == LB_ERR_ARG);
    /* pool of 32 tokens (2 blocks): 24 in one sequence hold both; another fails and nothing changes */
    int s2;
    CHECK(lb_engine_seq_new(e, 0, &s2, &err) == LB_OK);
    for (int i = 0; i < 24; i += 8) {
        for (int t = 0; t < 8; t++) b[t] = (lb_batch_entry){s, i + t, 1 + t, t == 7};
        CHECK(lb_engine_decode(e, b, 8, lg, &err) == LB_OK, "%s", err.msg);
    }
    lb_engine_stats st;
    lb_engine_get_stats(e, &st);
    CHECK(st.n_blocks == 2 && st.blocks_in_use == 2, "%zu %zu", st.n_blocks, st.blocks_in_use);
    lb_batch_entry two[2] = {{s, 24, 1, 0}, {s2, 0, 1, 0}};
    CHECK(lb_engine_decode(e, two, 2, NULL, &err) == LB_ERR_NOMEM && strstr(err.msg, "KV pool exhausted") &&
              strstr(err.msg, "32 tokens"),
          "%s", err.msg);
    CHECK(lb_engine_seq_len(e, s2) == 0 && lb_engine_seq_len(e, s) == 24);
    lb_batch_entry ok = {s, 24, 1, 0};
    CHECK(lb_engine_decode(e, &ok, 1, NULL, &err) == LB_OK, "%s", err.msg);
    free(lg);
    lb_engine_free(e);
    lb_model_free(m);
}

typedef struct type_count {
    const char *want;
    int n;
} type_count;

static void count_type(void *user, const char *name, const char *type, const char *note) {
    type_count *c = user;
    c->n += !strcasecmp(type, c->want);
}

/* The quantized block formats through the engine: lb_quantize_file (what lowbit quantize runs)
 * writes tinystories-512d (rows of 512 and 1536, so every K-quant block fits) in each type into
 * a temporary folder, and the batched run must equal each sequence alone there too. */
static void test_quantized(void) {
    static const char *const types[] = {"q8_0", "q4_0", "q4_K", "tq2_0"};
    char dir[] = "/tmp/lowbit-batch-XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp failed");
        return;
    }
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        char out[96];
        snprintf(out, sizeof out, "%s/%s.gguf", dir, types[i]);
        lb_quantize_params qp = lb_quantize_default_params();
        type_count c = {types[i], 0};
        qp.type = types[i];
        qp.pure = 1;
        qp.on_tensor = count_type;
        qp.on_tensor_user = &c;
        lb_error err = {0};
        CHECK(lb_quantize_file(SHARED("models/tinystories-512d"), out, &qp, NULL, NULL, &err) == LB_OK, "%s: %s",
              types[i], err.msg);
        CHECK(c.n >= 6 * 7, "%s: only %d matrices written in the type", types[i], c.n); /* 7 per layer */
        test_batched_equals_alone(out);
        /* Q8_0 weights are summed alike at any batch size, so quantized caches (whose rounding
         * would magnify any last-bit difference) must give bitwise the run alone */
        if (!strcmp(types[i], "q8_0")) test_batched_kv(out, LB_KV_Q8_0, 0), test_batched_kv(out, LB_KV_Q4_0, 0);
        unlink(out);
    }
    rmdir(dir);
}

int main(void) {
    test_batched_equals_alone(STORIES);
    test_batched_equals_alone(SHARED("models/synth-llama3-gqa"));
    test_batched_equals_alone(SHARED("models/synth-qwen2-bias"));
    test_batched_equals_alone(SHARED("models/synth-bitnet"));
    test_quantized();
    test_fork_and_prefix();
    test_finetunes();
    test_forks_and_deltas();
    test_bad_use();
    return test_summary();
}
