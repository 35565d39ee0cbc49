/* lb_gptq_compute: a session runs the calibration chunks (as lb_imatrix_compute does) while the
 * forward pass's matmul hook adds a a^T of every distinct matmul input into a double matrix.
 * Inputs are told apart by name (quant/gptq.h: q/k/v share one, gate/up one); only the first
 * tensor of an input adds, the others read the same activations. The sums run on the session's
 * pool (the hook is called before the matmul, while the pool is idle), rows of H split between
 * threads; only the upper triangle is summed, mirrored at the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/threads.h"
#include "engine/calib.h"
#include "quant/gptq.h"

typedef struct gcollector {
    const lb_model *m;
    lb_gptq *g;
    int *in_of;   /* per model tensor: input index, -1 */
    int *leader;  /* per input: the tensor that adds its activations */
    lb_pool *pool;
    /* the current call */
    const float *x;
    int n_tok;
    lb_gptq_in *cur;
} gcollector;

static int wanted(const lb_model *m, const lb_tensor *w) {
    return w->n_dims >= 2 && (!strncmp(w->name, "blk.", 4) || w == m->output);
}

static void add_job(void *arg, int ith, int nth) {
    gcollector *c = arg;
    lb_gptq_in *in = c->cur;
    int64_t k = in->k;
    for (int64_t i = ith; i < k; i += nth) { /* interleaved rows: the triangle's work balances */
        double *h = in->H + (size_t)i * (size_t)k;
        int t = 0;
        for (; t + 4 <= c->n_tok; t += 4) {
            const float *x0 = c->x + (size_t)t * (size_t)k + i;
            const float *xs[4] = {x0, x0 + k, x0 + 2 * k, x0 + 3 * k};
            double a[4] = {xs[0][0], xs[1][0], xs[2][0], xs[3][0]};
            lb_gptq_acc4(h + i, a, xs, k - i);
        }
        for (; t < c->n_tok; t++) {
            const float *x0 = c->x + (size_t)t * (size_t)k;
            double a0 = x0[i];
            for (int64_t j = i; j < k; j++) h[j] += a0 * (double)x0[j];
        }
    }
}

static void on_matmul(void *user, const lb_tensor *w, const float *x, int n_tok) {
    gcollector *c = user;
    size_t i = (size_t)(w - c->m->tensors);
    if (w < c->m->tensors || i >= c->m->n_tensors || c->in_of[i] < 0) return;
    int idx = c->in_of[i];
    if (c->leader[idx] != (int)i) return;
    c->cur = &c->g->in[idx];
    c->x = x;
    c->n_tok = n_tok;
    lb_pool_run(c->pool, add_job, c);
    c->cur->n_tok += n_tok;
}

lb_gptq_params lb_gptq_default_params(void) {
    lb_gptq_params p = {512, 0, 0, 0};
    return p;
}

void lb_gptq_free(lb_gptq *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n; i++) free(g->in[i].key), free(g->in[i].H);
    free(g->in);
    free(g);
}

size_t lb_gptq_n_inputs(const lb_gptq *g) { return g ? g->n : 0; }

const double *lb_gptq_input(const lb_gptq *g, size_t i, const char **key, int64_t *k, int64_t *n_tok) {
    if (!g || i >= g->n) return NULL;
    if (key) *key = g->in[i].key;
    if (k) *k = g->in[i].k;
    if (n_tok) *n_tok = g->in[i].n_tok;
    return g->in[i].H;
}

/* The inputs of m (keys, columns) into g, each tensor's input index into in_of; no H yet. */
static lb_status plan_inputs(const lb_model *m, lb_gptq *g, int *in_of, int *leader, uint64_t *bytes, lb_error *err) {
    *bytes = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const lb_tensor *t = &m->tensors[i];
        in_of[i] = -1;
        if (!wanted(m, t)) continue;
        char key[256];
        lb_gptq_key(t->name, key, sizeof key);
        size_t j = 0;
        while (j < g->n && strcmp(g->in[j].key, key)) j++;
        if (j < g->n) {
            if (g->in[j].k != t->ne[0])
                return lb_fail(err, LB_ERR_FORMAT, "GPTQ: tensor %s reads %lld inputs but shares %s's input of %lld", t->name,
                               (long long)t->ne[0], g->in[j].key, (long long)g->in[j].k);
            in_of[i] = (int)j;
            continue;
        }
        if (g->n == g->cap) {
            size_t nc = g->cap ? 2 * g->cap : 16;
            lb_gptq_in *ni = realloc(g->in, nc * sizeof *ni);
            if (!ni) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
            g->in = ni, g->cap = nc;
        }
        lb_gptq_in *in = &g->in[g->n];
        memset(in, 0, sizeof *in);
        in->k = t->ne[0];
        if (!(in->key = strdup(key))) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
        leader[g->n] = (int)i;
        in_of[i] = (int)g->n++;
        *bytes += 8ull * (uint64_t)in->k * (uint64_t)in->k;
    }
    return LB_OK;
}

uint64_t lb_gptq_bytes_needed(const lb_model *m) {
    lb_gptq g = {0};
    int *in_of = malloc((m->n_tensors + 1) * sizeof *in_of), *leader = malloc((m->n_tensors + 1) * sizeof *leader);
    uint64_t bytes = 0;
    if (in_of && leader) plan_inputs(m, &g, in_of, leader, &bytes, NULL);
    for (size_t i = 0; i < g.n; i++) free(g.in[i].key);
    free(g.in), free(in_of), free(leader);
    return bytes;
}

lb_status lb_gptq_compute(lb_model *m, const int32_t *ids, size_t n_ids, int32_t bos_id, const lb_gptq_params *p,
                          lb_progress_fn progress, void *user, lb_gptq **out, lb_error *err) {
    lb_gptq_params d = lb_gptq_default_params();
    if (!p) p = &d;
    *out = NULL;
    gcollector c = {.m = m};
    lb_calib cal = {p->n_ctx, p->n_chunks, p->n_threads, on_matmul, NULL, &c, &c.pool};
    int n_ctx;
    size_t n;
    lb_status st = lb_calib_chunks(&cal, n_ids, &n_ctx, &n, err);
    if (st) return st;
    uint64_t limit = p->max_bytes ? p->max_bytes : 4ull << 30, bytes = 0;
    lb_gptq *g = c.g = calloc(1, sizeof *g);
    c.in_of = malloc((m->n_tensors + 1) * sizeof *c.in_of);
    c.leader = malloc((m->n_tensors + 1) * sizeof *c.leader);
    st = !g || !c.in_of || !c.leader ? lb_fail(err, LB_ERR_NOMEM, "out of memory") : LB_OK;
    if (!st) st = plan_inputs(m, g, c.in_of, c.leader, &bytes, err);
    if (!st && g->n == 0) st = lb_fail(err, LB_ERR_ARG, "the model has no block matrices to collect statistics for");
    if (!st && bytes > limit)
        st = lb_fail(err, LB_ERR_NOMEM, "GPTQ needs %llu bytes (%.1f MiB) for the second moments of %zu matmul inputs, "
                     "beyond the limit of %llu bytes", (unsigned long long)bytes, (double)bytes / 1048576.0, g->n,
                     (unsigned long long)limit);
    for (size_t i = 0; i < g->n && !st; i++)
        if (!(g->in[i].H = calloc((size_t)(g->in[i].k * g->in[i].k), sizeof(double))))
            st = lb_fail(err, LB_ERR_NOMEM, "out of memory for GPTQ's %llu bytes of second moments", (unsigned long long)bytes);
    if (!st) st = lb_calib_run(m, &cal, ids, bos_id, n_ctx, n, progress, user, err);
    for (size_t i = 0; !st && i < g->n; i++) { /* mirror the upper triangle */
        int64_t kk = g->in[i].k;
        double *H = g->in[i].H;
        for (int64_t a = 0; a < kk; a++)
            for (int64_t b = 0; b < a; b++) H[(size_t)a * (size_t)kk + (size_t)b] = H[(size_t)b * (size_t)kk + (size_t)a];
    }
    if (!st) g->n_chunks = (int)n;
    free(c.in_of), free(c.leader);
    if (st) {
        lb_gptq_free(g);
        return st;
    }
    *out = g;
    return LB_OK;
}
