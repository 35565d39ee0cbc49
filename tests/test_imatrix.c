/* Importance matrices: the .dat layout against bytes built by hand (llama.cpp's field order), a
 * write / read round trip, truncated and hostile files refused with messages naming the field,
 * the statistics lb_imatrix_compute collects against a direct computation of block 0's attention
 * input on stories260K, and every searchable type quantized with an imatrix erring less in the
 * importance-weighted norm than without. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/dtype.h"
#include "core/model.h"
#include "io/imatrix.h"
#include "quant/quant.h"

#define SHARED(p) LB_SHARED_DIR "/" p
#define STORIES SHARED("models/stories260K-gguf/stories260K.gguf")

static uint64_t g_rng = 0x2545F4914F6CDD1DULL;
static float rnd(void) { return check_rnd_pm1(&g_rng); }

typedef struct bytes {
    uint8_t b[4096];
    size_t n;
} bytes;
static void put_i32(bytes *o, int32_t v) {
    memcpy(o->b + o->n, &v, 4); /* the test machines are little-endian, as the format */
    o->n += 4;
}
static void put_str(bytes *o, const char *s) {
    put_i32(o, (int32_t)strlen(s));
    memcpy(o->b + o->n, s, strlen(s));
    o->n += strlen(s);
}
static void put_f32(bytes *o, float f) {
    memcpy(o->b + o->n, &f, 4);
    o->n += 4;
}

/* two entries, then the trailer: the layout llama-imatrix writes */
static bytes sample(void) {
    bytes o = {{0}, 0};
    put_i32(&o, 2);
    put_str(&o, "blk.0.attn_q.weight");
    put_i32(&o, 3);
    put_i32(&o, 4);
    for (int i = 0; i < 4; i++) put_f32(&o, 1.5f * (float)(i + 1));
    put_str(&o, "blk.0.ffn_down.weight");
    put_i32(&o, 1);
    put_i32(&o, 2);
    put_f32(&o, 0.25f);
    put_f32(&o, 0);
    put_i32(&o, 7);
    put_str(&o, "calib.txt");
    return o;
}

static void layout(void) {
    bytes o = sample();
    lb_imatrix *im = NULL;
    lb_error err = {0};
    CHECK(lb_imatrix_parse(o.b, o.n, "sample", &im, &err) == LB_OK, "parse: %s", err.msg);
    if (!im) return;
    int nval = 0, ncall = 0;
    const float *v = lb_imatrix_values(im, 0, &nval, &ncall);
    CHECK(lb_imatrix_n_entries(im) == 2 && nval == 4 && ncall == 3 && v[3] == 6.0f, "entry 0");
    CHECK(!strcmp(lb_imatrix_name(im, 1), "blk.0.ffn_down.weight") && lb_imatrix_find(im, "blk.0.ffn_down.weight") == 1,
          "entry 1 by name");
    CHECK(lb_imatrix_find(im, "output.weight") == -1, "absent name");
    CHECK(lb_imatrix_n_chunks(im) == 7 && !strcmp(lb_imatrix_dataset(im), "calib.txt"), "trailer");

    /* round trip: the written file is the same bytes */
    char path[] = "/tmp/lb_test_imatrix_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    CHECK(lb_imatrix_save(im, path, &err) == LB_OK, "save: %s", err.msg);
    char *buf = NULL;
    size_t len = 0;
    CHECK(lb_read_file(path, 1 << 20, &buf, &len, &err) == LB_OK && len == o.n && !memcmp(buf, o.b, o.n),
          "saved bytes equal the hand-built file (%zu vs %zu)", len, o.n);
    lb_imatrix *back = NULL;
    CHECK(lb_imatrix_load(path, &back, &err) == LB_OK && lb_imatrix_n_entries(back) == 2, "reload: %s", err.msg);
    free(buf);
    lb_imatrix_free(back);
    unlink(path);
    lb_imatrix_free(im);

    /* a file of before the trailer existed: entries only */
    bytes old = sample();
    old.n -= 4 + 4 + 9;
    CHECK(lb_imatrix_parse(old.b, old.n, "old", &im, &err) == LB_OK && lb_imatrix_n_chunks(im) == 0 &&
              !strcmp(lb_imatrix_dataset(im), ""), "no trailer: %s", err.msg);
    lb_imatrix_free(im);
}

/* every prefix of a valid file but the entries-only one fails, naming an offset */
static void truncated(void) {
    bytes o = sample();
    size_t old_end = o.n - (4 + 4 + 9);
    int bad = 0, unnamed = 0;
    for (size_t n = 0; n < o.n; n++) {
        lb_imatrix *im = NULL;
        lb_error err = {0};
        lb_status s = lb_imatrix_parse(o.b, n, "cut", &im, &err);
        if (n == old_end) {
            bad += s != LB_OK;
        } else {
            bad += s != LB_ERR_FORMAT || im != NULL;
            unnamed += !strstr(err.msg, "cut:") || !strstr(err.msg, "offset");
        }
        lb_imatrix_free(im);
    }
    CHECK(bad == 0 && unnamed == 0, "truncations: %d wrong results, %d messages without file and offset", bad, unnamed);
}

static void expect_refused(const bytes *o, const char *what, const char *needle) {
    lb_imatrix *im = NULL;
    lb_error err = {0};
    lb_status s = lb_imatrix_parse(o->b, o->n, "bad", &im, &err);
    CHECK(s == LB_ERR_FORMAT && !im && strstr(err.msg, needle), "%s: status %d, message '%s'", what, (int)s, err.msg);
    lb_imatrix_free(im);
}

static void hostile(void) {
    bytes o = sample();
    int32_t v;
    bytes h = o;
    v = 0x7fffffff; /* a huge entry count: refused before any allocation */
    memcpy(h.b, &v, 4);
    expect_refused(&h, "huge entry count", "entry count");
    h = o;
    v = -1;
    memcpy(h.b, &v, 4);
    expect_refused(&h, "negative entry count", "entry count");
    h = o;
    v = 1 << 30; /* name length */
    memcpy(h.b + 4, &v, 4);
    expect_refused(&h, "huge name", "name length");
    h = o;
    v = 0x7fffffff; /* nval of entry 0 */
    memcpy(h.b + 4 + 4 + 19 + 4, &v, 4);
    expect_refused(&h, "huge nval", "values");
    h = o;
    v = 0; /* ncall of entry 0 */
    memcpy(h.b + 4 + 4 + 19, &v, 4);
    expect_refused(&h, "zero ncall", "ncall");
    h = o;
    float nan = NAN;
    memcpy(h.b + 4 + 4 + 19 + 8, &nan, 4);
    expect_refused(&h, "NaN value", "value 0");
    h = o;
    float neg = -1;
    memcpy(h.b + 4 + 4 + 19 + 8 + 4, &neg, 4);
    expect_refused(&h, "negative value", "value 1");
    h = o;
    memcpy(h.b + 4 + 4 + 19 + 8 + 16 + 4, "blk.0.attn_q.weight", 19); /* entry 1 renamed to entry 0's name... */
    h.b[4 + 4 + 19 + 8 + 16] = 19;                                   /* ...of its length */
    memmove(h.b + 4 + 4 + 19 + 8 + 16 + 4 + 19, o.b + 4 + 4 + 19 + 8 + 16 + 4 + 21, o.n - (4 + 4 + 19 + 8 + 16 + 4 + 21));
    h.n = o.n - 2;
    expect_refused(&h, "duplicate name", "twice");
    h = o;
    h.b[h.n++] = 0;
    expect_refused(&h, "trailing byte", "after the end");
}

/* block 0's q/k/v read rmsnorm(embedding) * attn_norm: their entries must be that, squared and
 * averaged over every token of every chunk, with ncall = the chunks */
static void statistics(void) {
    lb_model *m = NULL;
    lb_error err = {0};
    if (lb_model_load(STORIES, NULL, &m, &err)) {
        CHECK(0, "load %s: %s", STORIES, err.msg);
        return;
    }
    const lb_config *c = &m->cfg;
    enum { CTX = 32, CHUNKS = 3 };
    int32_t ids[CTX * CHUNKS + 5];
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) ids[i] = (int32_t)(check_xorshift(&g_rng) % (uint64_t)c->n_vocab);
    lb_imatrix_params p = lb_imatrix_default_params();
    p.n_ctx = CTX;
    p.n_threads = 1;
    p.dataset = "random ids";
    lb_imatrix *im = NULL;
    CHECK(lb_imatrix_compute(m, ids, sizeof ids / sizeof *ids, 1, &p, NULL, NULL, &im, &err) == LB_OK, "compute: %s",
          err.msg);
    if (!im) {
        lb_model_free(m);
        return;
    }
    CHECK(lb_imatrix_n_entries(im) == (size_t)c->n_layers * 7 + 1, "%zu entries for %d layers and the head",
          lb_imatrix_n_entries(im), c->n_layers);
    CHECK(lb_imatrix_n_chunks(im) == CHUNKS && !strcmp(lb_imatrix_dataset(im), "random ids"), "chunks, dataset");
    int sizes_ok = 1;
    for (size_t i = 0; i < lb_imatrix_n_entries(im); i++) {
        const lb_tensor *t = lb_model_find_tensor(m, lb_imatrix_name(im, i));
        int nval = 0, ncall = 0;
        lb_imatrix_values(im, i, &nval, &ncall);
        sizes_ok &= t && nval == t->ne[0] && ncall == CHUNKS && (!strncmp(t->name, "blk.", 4) || t == m->output);
    }
    CHECK(sizes_ok, "every entry is a block matrix or the head with one value per input column and ncall = chunks");

    int d = c->dim;
    double *want = calloc((size_t)d, sizeof *want);
    float *e = malloc((size_t)d * sizeof *e), *g = malloc((size_t)d * sizeof *g);
    lb_dtype_get(m->layers[0].attn_norm->type)->to_float(m->layers[0].attn_norm->data, g, d);
    const lb_dtype_traits *et = lb_dtype_get(m->tok_embd->type);
    size_t row = lb_dtype_row_size(m->tok_embd->type, d);
    for (int k = 0; k < CHUNKS; k++)
        for (int t = 0; t < CTX; t++) {
            int32_t id = t == 0 ? 1 : ids[k * CTX + t]; /* BOS in place of each chunk's first id */
            et->to_float((const uint8_t *)m->tok_embd->data + (size_t)id * row, e, d);
            double ss = 0;
            for (int j = 0; j < d; j++) ss += (double)e[j] * e[j];
            double r = 1.0 / sqrt(ss / d + c->norm_eps);
            for (int j = 0; j < d; j++) {
                double x = e[j] * r * g[j];
                want[j] += x * x / (CTX * CHUNKS);
            }
        }
    const char *names[] = {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"};
    for (int q = 0; q < 3; q++) {
        long i = lb_imatrix_find(im, names[q]);
        int nval = 0, ncall = 0;
        const float *v = i >= 0 ? lb_imatrix_values(im, (size_t)i, &nval, &ncall) : NULL;
        double worst = 0;
        for (int j = 0; v && j < d; j++) {
            double r = fabs(v[j] / ncall - want[j]) / (want[j] + 1e-12);
            worst = r > worst ? r : worst;
        }
        CHECK(v && worst < 1e-4, "%s: worst relative difference %g from the direct computation", names[q], worst);
    }
    /* too short a text: a clear error */
    lb_imatrix *none = NULL;
    p.n_ctx = 256;
    CHECK(lb_imatrix_compute(m, ids, 100, 1, &p, NULL, NULL, &none, &err) == LB_ERR_ARG && !none &&
              strstr(err.msg, "fewer than one chunk"), "short text: %s", err.msg);
    free(want), free(e), free(g);
    lb_imatrix_free(im);
    lb_model_free(m);
}

/* sum_j im_j (x_j - q_j)^2 over many rows: the search with the importance must not err more in
 * the norm it minimises (a skewed importance, as ffn_down inputs have, makes the gap visible). */
static void weighted_error(void) {
    static const lb_dtype types[] = {LB_Q8_0, LB_Q4_0, LB_Q4_1, LB_Q5_0, LB_Q5_1, LB_Q2_K, LB_Q3_K,
                                     LB_Q4_K, LB_Q5_K, LB_Q6_K, LB_IQ4_NL, LB_IQ4_XS};
    enum { N = 1024, ROWS = 32 };
    float *x = malloc(sizeof(float) * N * ROWS), *y = malloc(sizeof(float) * N * ROWS), im[N];
    uint8_t *q = malloc((size_t)N * ROWS * 2);
    for (int i = 0; i < N; i++) im[i] = expf(2.5f * (rnd() + rnd())); /* spans about e^-5 .. e^5 */
    for (int i = 0; i < N * ROWS; i++) x[i] = (rnd() + rnd() + rnd()) * 0.05f;
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        double e[2] = {0, 0};
        for (int with = 0; with < 2; with++) {
            lb_quantize(types[k], x, q, ROWS, N, with ? im : NULL);
            lb_dequantize(types[k], q, y, (int64_t)N * ROWS);
            for (int i = 0; i < N * ROWS; i++) e[with] += im[i % N] * (double)(x[i] - y[i]) * (x[i] - y[i]);
        }
        CHECK(e[1] < e[0] * 0.97, "%s: weighted error with the imatrix %g, without %g", lb_dtype_name(types[k]), e[1], e[0]);
    }
    free(x), free(y), free(q);
}

int main(void) {
    layout();
    truncated();
    hostile();
    statistics();
    weighted_error();
    return test_summary();
}
