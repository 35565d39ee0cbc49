/* Sliding-window attention (Mistral's sliding_window): every path that runs attention (one-token
 * decode, prompt chunks, the batched engine, speculative verification) against two independent
 * truths: with one layer, position t under a window W gives what a fresh context fed only tokens
 * t-W+1..t gives (RoPE scores depend only on relative positions); with more layers, a plain
 * forward pass in double precision written here that masks explicitly. A window at least as long
 * as the context gives logits bit-identical to no window. The window travels through HF
 * config.json, GGUF, convert and quantize. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/model.h"
#include "lowbit.h"

static char g_tmp[256];

/* The tiny preset (dim 64, 4 heads, 2 KV heads, head_dim 16, ctx 512) in F32, its weights
 * the same for every layer count and window (one seed). */
static lb_model *synth(int layers, int window) {
    char path[320];
    snprintf(path, sizeof path, "%s/tiny_l%d_w%d.gguf", g_tmp, layers, window);
    lb_synth_opts o = {layers, window};
    lb_error err = {0};
    lb_model *m = NULL;
    if (lb_synth_write_ex("tiny", "f32", NULL, 3, &o, path, NULL, NULL, &err) || lb_model_load(path, NULL, &m, &err)) {
        CHECK(0, "%s", err.msg);
        return NULL;
    }
    return m;
}

#define rel_err check_rel_err

static void ids_of(uint64_t seed, int32_t *ids, int n, int nv) {
    for (int i = 0; i < n; i++) ids[i] = (int32_t)(check_xorshift(&seed) % (uint64_t)(nv - 3)) + 3;
}

/* ---- the reference: a plain forward pass over F32 weights, in double ---------------------- */

static void ref_matvec(const lb_tensor *w, const double *x, double *y) {
    const float *d = w->data;
    for (int64_t r = 0; r < w->ne[1]; r++) {
        double s = 0;
        for (int64_t k = 0; k < w->ne[0]; k++) s += (double)d[r * w->ne[0] + k] * x[k];
        y[r] = s;
    }
}

static void ref_norm(double *o, const double *x, const lb_tensor *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) o[i] = x[i] * r * ((const float *)w->data)[i];
}

/* adjacent pairs (GGUF llama layout), theta^(-2i/hd) */
static void ref_rope(double *x, int n_heads, int hd, int pos, double theta) {
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < hd / 2; i++) {
            double a = pos * pow(theta, -2.0 * i / hd), c = cos(a), s = sin(a);
            double *v = x + h * hd + 2 * i, x0 = v[0], x1 = v[1];
            v[0] = x0 * c - x1 * s;
            v[1] = x0 * s + x1 * c;
        }
}

/* logits[t] for the n tokens of one sequence, attending to positions max(0, t-W+1)..t */
static void ref_logits(const lb_model *m, const int32_t *ids, int n, int window, float *logits) {
    const lb_config *c = &m->cfg;
    int dim = c->dim, hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads, hid = c->hidden_dim, L = c->n_layers;
    int qd = nh * hd, kvd = nkv * hd, nv = c->n_vocab;
    double *K = malloc(sizeof(double) * L * n * kvd), *V = malloc(sizeof(double) * L * n * kvd);
    double *x = malloc(sizeof(double) * dim), *xb = malloc(sizeof(double) * dim), *q = malloc(sizeof(double) * qd);
    double *att = malloc(sizeof(double) * qd), *o = malloc(sizeof(double) * dim), *sc = malloc(sizeof(double) * n);
    double *g = malloc(sizeof(double) * hid), *u = malloc(sizeof(double) * hid), *lg = malloc(sizeof(double) * nv);
    for (int t = 0; t < n; t++) {
        const float *e = (const float *)m->tok_embd->data + (size_t)ids[t] * dim;
        for (int i = 0; i < dim; i++) x[i] = e[i];
        for (int l = 0; l < L; l++) {
            const lb_layer_weights *w = &m->layers[l];
            double *k = K + ((size_t)l * n + t) * kvd, *v = V + ((size_t)l * n + t) * kvd;
            ref_norm(xb, x, w->attn_norm, dim, c->norm_eps);
            ref_matvec(w->wq, xb, q), ref_matvec(w->wk, xb, k), ref_matvec(w->wv, xb, v);
            ref_rope(q, nh, hd, t, c->rope_theta), ref_rope(k, nkv, hd, t, c->rope_theta);
            int lo = window > 0 && t - window + 1 > 0 ? t - window + 1 : 0;
            for (int h = 0; h < nh; h++) {
                int kh = h / (nh / nkv);
                double mx = -INFINITY, sum = 0;
                for (int p = lo; p <= t; p++) {
                    const double *kp = K + ((size_t)l * n + p) * kvd + kh * hd;
                    double s = 0;
                    for (int i = 0; i < hd; i++) s += q[h * hd + i] * kp[i];
                    sc[p] = s / sqrt((double)hd);
                    mx = sc[p] > mx ? sc[p] : mx;
                }
                for (int p = lo; p <= t; p++) sum += sc[p] = exp(sc[p] - mx);
                for (int i = 0; i < hd; i++) {
                    double a = 0;
                    for (int p = lo; p <= t; p++) a += sc[p] / sum * V[((size_t)l * n + p) * kvd + kh * hd + i];
                    att[h * hd + i] = a;
                }
            }
            ref_matvec(w->wo, att, o);
            for (int i = 0; i < dim; i++) x[i] += o[i];
            ref_norm(xb, x, w->ffn_norm, dim, c->norm_eps);
            ref_matvec(w->w_gate, xb, g), ref_matvec(w->w_up, xb, u);
            for (int i = 0; i < hid; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            ref_matvec(w->w_down, g, o);
            for (int i = 0; i < dim; i++) x[i] += o[i];
        }
        ref_norm(xb, x, m->output_norm, dim, c->norm_eps);
        ref_matvec(m->output, xb, lg);
        for (int i = 0; i < nv; i++) logits[(size_t)t * nv + i] = (float)lg[i];
    }
    free(K), free(V), free(x), free(xb), free(q), free(att), free(o), free(sc), free(g), free(u), free(lg);
}

/* ---- runs through the library ----------------------------------------------------------- */

static lb_session *session(lb_model *m, lb_kv_type kv) {
    lb_session_params p = lb_session_default_params();
    p.n_ctx = 128;
    p.n_threads = 2;
    p.kv_type = kv;
    lb_session *s = NULL;
    lb_error err = {0};
    if (lb_session_new(m, &p, &s, &err)) CHECK(0, "%s", err.msg);
    return s;
}

/* all n rows of logits, fed `chunk` tokens per call (1: one-token decode) */
static void run_chunks(lb_model *m, lb_kv_type kv, const int32_t *ids, int n, int chunk, float *out) {
    lb_session *s = session(m, kv);
    lb_error err = {0};
    int nv = lb_model_n_vocab(m);
    for (int t = 0; s && t < n; t += chunk) {
        int k = n - t < chunk ? n - t : chunk;
        if (lb_session_eval(s, ids + t, (size_t)k, out + (size_t)t * nv, 1, &err)) {
            CHECK(0, "%s", err.msg);
            break;
        }
    }
    lb_session_free(s);
}

/* One layer: position t with window W against a fresh context fed tokens t-W+1..t. */
static void test_one_layer(int W) {
    lb_model *m = synth(1, W);
    if (!m) return;
    enum { N = 44 };
    int nv = lb_model_n_vocab(m);
    int32_t ids[N];
    ids_of(11, ids, N, nv);
    float *all = malloc(sizeof(float) * N * nv), *fresh = malloc(sizeof(float) * N * nv);
    run_chunks(m, LB_KV_F32, ids, N, 1, all);
    double worst = 0;
    for (int t = W; t < N; t++) {
        run_chunks(m, LB_KV_F32, ids + t - W + 1, W, W, fresh);
        double e = rel_err(all + (size_t)t * nv, fresh + (size_t)(W - 1) * nv, nv);
        worst = e > worst ? e : worst;
    }
    CHECK(worst < 1e-5, "W %d: relative error %.3g against a fresh context of the window", W, worst);
    printf("one layer, W %d: positions %d..%d equal a fresh context of the window within %.2e\n", W, W, N - 1, worst);
    free(all), free(fresh);
    lb_model_free(m);
}

/* Two layers: decode, prompt chunks (odd sizes crossing blocks and the window) and KV types
 * against the reference. */
static void test_reference(int W) {
    lb_model *m = synth(2, W);
    if (!m) return;
    enum { N = 60 };
    int nv = lb_model_n_vocab(m);
    int32_t ids[N];
    ids_of(5, ids, N, nv);
    float *ref = malloc(sizeof(float) * N * nv), *got = malloc(sizeof(float) * N * nv);
    ref_logits(m, ids, N, W, ref);
    struct { int chunk; lb_kv_type kv; double tol; const char *what; } runs[] = {
        {1, LB_KV_F32, 1e-5, "decode"}, {7, LB_KV_F32, 1e-5, "chunks of 7"}, {N, LB_KV_F32, 1e-5, "one prompt"},
        {5, LB_KV_F16, 3e-3, "chunks of 5, F16 KV"}};
    for (size_t r = 0; r < sizeof runs / sizeof *runs; r++) {
        run_chunks(m, runs[r].kv, ids, N, runs[r].chunk, got);
        double e = rel_err(got, ref, N * nv);
        CHECK(e < runs[r].tol, "W %d %s: relative error %.3g", W, runs[r].what, e);
        printf("two layers, W %d, %s: relative error %.2e against the reference\n", W, runs[r].what, e);
    }
    /* the reference is masked: without the window it differs (the test can fail) */
    float *plain = malloc(sizeof(float) * N * nv);
    ref_logits(m, ids, N, 0, plain);
    CHECK(rel_err(plain, ref, N * nv) > 1e-3, "W %d: the window changes nothing", W);
    free(ref), free(got), free(plain);
    lb_model_free(m);
}

/* Three sequences in one engine, their prompts in chunks and then decoded together (entries of
 * all three in every call), each against its own reference. */
static void test_batched(int W) {
    lb_model *m = synth(2, W);
    if (!m) return;
    enum { NS = 3, N = 48 };
    int nv = lb_model_n_vocab(m), seq[NS], start[NS] = {0, 9, 20}, plen[NS] = {13, 30, 5};
    int32_t ids[NS][N];
    float *ref = malloc(sizeof(float) * NS * N * nv), *lg = malloc(sizeof(float) * 64 * nv);
    lb_engine_params ep = lb_engine_default_params();
    ep.kv_type = LB_KV_F32;
    ep.n_ctx = 64;
    ep.n_kv_tokens = NS * 64;
    ep.n_threads = 2;
    lb_engine *e = NULL;
    lb_error err = {0};
    CHECK(lb_engine_new(m, &ep, &e, &err) == LB_OK, "%s", err.msg);
    for (int s = 0; s < NS; s++) {
        ids_of(100 + s, ids[s], N, nv);
        ref_logits(m, ids[s], N, W, ref + (size_t)s * N * nv);
        if (e) CHECK(lb_engine_seq_new(e, 0, &seq[s], &err) == LB_OK, "%s", err.msg);
    }
    int done[NS] = {0};
    double worst = 0;
    /* step k: sequence s joins at step start[s] with its prompt, then one token a step */
    for (int step = 0; e && step < 64; step++) {
        lb_batch_entry b[64];
        int n = 0, owner[64], at[64];
        for (int s = 0; s < NS; s++) {
            if (step < start[s] || done[s] >= N) continue;
            int k = done[s] ? 1 : plen[s];
            for (int i = 0; i < k; i++, n++) {
                b[n] = (lb_batch_entry){seq[s], done[s] + i, ids[s][done[s] + i], 1};
                owner[n] = s, at[n] = done[s] + i;
            }
            done[s] += k;
        }
        if (!n) continue;
        if (lb_engine_decode(e, b, (size_t)n, lg, &err)) {
            CHECK(0, "%s", err.msg);
            break;
        }
        for (int i = 0; i < n; i++) {
            double r = rel_err(lg + (size_t)i * nv, ref + ((size_t)owner[i] * N + at[i]) * nv, nv);
            worst = r > worst ? r : worst;
        }
    }
    for (int s = 0; s < NS; s++) CHECK(done[s] == N, "sequence %d ran %d of %d positions", s, done[s], N);
    CHECK(worst < 1e-5, "W %d batched: relative error %.3g", W, worst);
    printf("batched engine, W %d, %d sequences: worst relative error %.2e against the reference\n", W, NS, worst);
    lb_engine_free(e);
    free(ref), free(lg);
    lb_model_free(m);
}

/* A window at least as long as the context changes no bit: decode and a chunked prompt. */
static void test_wide_window(void) {
    lb_model *plain = synth(2, 0), *wide = synth(2, 128); /* sessions hold 128 positions */
    if (!plain || !wide) return;
    enum { N = 100 };
    int nv = lb_model_n_vocab(plain);
    int32_t ids[N];
    ids_of(9, ids, N, nv);
    float *a = malloc(sizeof(float) * N * nv), *b = malloc(sizeof(float) * N * nv);
    for (int chunk = 1; chunk <= 9; chunk += 8) {
        run_chunks(plain, LB_KV_F16, ids, N, chunk, a);
        run_chunks(wide, LB_KV_F16, ids, N, chunk, b);
        CHECK(!memcmp(a, b, sizeof(float) * N * nv), "chunks of %d: a window of 128 changed the logits", chunk);
    }
    printf("window 128 >= context 128: logits bit-identical to no window (decode, chunks of 9)\n");
    free(a), free(b);
    lb_model_free(plain);
    lb_model_free(wide);
}

/* Greedy speculative decoding (the model drafting for itself, then prompt lookup) keeps the
 * ids of plain greedy decoding under a window: verification runs the window's mask too. */
static void test_spec(int W) {
    lb_model *m = synth(2, W);
    if (!m) return;
    int32_t prompt[20];
    ids_of(21, prompt, 20, lb_model_n_vocab(m));
    lb_generate_result r[3];
    lb_session *s = session(m, LB_KV_F32), *d = session(m, LB_KV_F32);
    lb_error err = {0};
    for (int i = 0; i < 3 && s && d; i++) {
        lb_generate_params p = lb_generate_default_params();
        p.sampling.temperature = 0;
        p.max_tokens = 40;
        p.prompt_ids = prompt, p.n_prompt_ids = 20;
        p.draft = i == 1 ? d : NULL;
        p.lookup = i == 2 ? 2 : 0;
        p.draft_max = 4;
        memset(&r[i], 0, sizeof r[i]);
        CHECK(lb_generate(s, NULL, &p, &r[i], &err) == LB_OK, "%s", err.msg);
    }
    for (int i = 1; i < 3 && s && d; i++)
        CHECK(r[i].n_ids == r[0].n_ids && !memcmp(r[i].ids, r[0].ids, r[0].n_ids * sizeof(int32_t)),
              "W %d: speculative run %d changed the greedy ids", W, i);
    if (s && d)
        printf("speculative verification, W %d: greedy ids kept (%zu drafted by the model, %zu by lookup)\n", W,
               r[1].n_drafted, r[2].n_drafted);
    for (int i = 0; i < 3 && s && d; i++) lb_generate_result_free(&r[i]);
    lb_session_free(s);
    lb_session_free(d);
    lb_model_free(m);
}

/* ---- the window in model files -------------------------------------------------------------- */

static int window_of(const char *path) {
    lb_model *m = NULL;
    lb_error err = {0};
    if (lb_model_load(path, NULL, &m, &err)) {
        CHECK(0, "%s", err.msg);
        return -1;
    }
    lb_model_info in;
    lb_model_get_info(m, &in);
    lb_model_free(m);
    return in.sliding_window;
}

/* A Mistral HF folder (the synth-llama3-gqa weights under a mistral config.json with
 * sliding_window 16), converted and quantized: every file keeps the window. */
static void test_files(void) {
    char dir[320], p[400], out[400];
    snprintf(dir, sizeof dir, "%s/mistral", g_tmp);
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if (symlink(LB_SHARED_DIR "/models/synth-llama3-gqa/model.safetensors", p)) CHECK(0, "symlink %s", p);
    char *text = NULL;
    size_t len = 0;
    FILE *f = fopen(LB_SHARED_DIR "/models/synth-llama3-gqa/config.json", "rb");
    if (f) {
        text = calloc(1, 1 << 16);
        len = fread(text, 1, (1 << 16) - 1, f);
        fclose(f);
    }
    CHECK(text && len, "config.json of synth-llama3-gqa");
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!j) return;
    cJSON_ReplaceItemInObject(j, "model_type", cJSON_CreateString("mistral"));
    cJSON_AddItemToObject(j, "sliding_window", cJSON_CreateNumber(16));
    char *js = cJSON_Print(j);
    snprintf(p, sizeof p, "%s/config.json", dir);
    f = fopen(p, "wb");
    if (f) fputs(js, f), fclose(f);
    free(js);
    cJSON_Delete(j);
    CHECK(window_of(dir) == 16, "the HF folder's sliding_window");
    lb_error err = {0};
    lb_convert_params cp = lb_convert_default_params();
    cp.no_tokenizer = 1;
    snprintf(out, sizeof out, "%s/mistral.gguf", g_tmp);
    CHECK(lb_convert(dir, out, &cp, NULL, NULL, &err) == LB_OK, "%s", err.msg);
    CHECK(window_of(out) == 16, "convert keeps the window");
    lb_quantize_params qp = lb_quantize_default_params();
    qp.type = "q8_0";
    qp.no_tokenizer = 1;
    snprintf(p, sizeof p, "%s/mistral-q8.gguf", g_tmp);
    CHECK(lb_quantize_file(out, p, &qp, NULL, NULL, &err) == LB_OK, "%s", err.msg);
    CHECK(window_of(p) == 16, "quantize keeps the window");
    snprintf(p, sizeof p, "%s/tiny_l1_w8.gguf", g_tmp);
    CHECK(window_of(p) == 8, "synth --sliding-window 8 is read back");
    printf("sliding_window 16 kept by HF config -> convert -> quantize; synth's window read back\n");
}

int main(void) {
    lb_log_set_level(LB_LOG_ERROR);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/lb_test_swa_%d", (int)getpid());
    mkdir(g_tmp, 0755);
    test_one_layer(8);
    test_one_layer(21);
    test_reference(8);
    test_reference(20); /* block_tokens 16: windows start mid-block */
    test_batched(11);
    test_wide_window();
    test_spec(8);
    test_files();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", g_tmp);
    return test_summary();
}
