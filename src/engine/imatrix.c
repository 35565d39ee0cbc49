/* lb_imatrix_compute: a session runs the calibration chunks while the forward pass's matmul hook
 * (lb_fwd.on_matmul) adds each block matrix's input columns, squared, into double sums.
 *
 * ncall counts the chunks a matrix took part in, as llama-imatrix counts its calls when a chunk
 * is one batch (its default): values = mean square x ncall then mean the same in both tools, and
 * merging files weights each by its chunks. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "engine/calib.h"
#include "io/imatrix.h"

typedef struct acc {
    double *sum; /* [ne0], allocated at the matrix's first call */
    int64_t rows; /* activation rows added */
    int32_t ncall;
    int in_chunk; /* seen in the current chunk */
} acc;

typedef struct collector {
    const lb_model *m;
    acc *a; /* per model tensor */
    int nomem;
} collector;

/* Block matrices and the output head (llama-imatrix's --process-output), a tied embedding too:
 * the head's rounding error goes straight into the logits (on tinystories-512d at Q2_K, a head
 * kept F16 halves the KL), and its columns meet the final norm's output, whose mean squares
 * range over 0.5-3.3x their mean there. The looked-up rows of a tied tensor get the same column
 * weights, which they do not need; the head's gain outweighs that (held-out KL: Q2_K -1.4%,
 * Q4_K -3.2%, IQ4_XS +4.5%; bench/quant.md). */
static int wanted(const lb_model *m, const lb_tensor *w) { return !strncmp(w->name, "blk.", 4) || w == m->output; }

static void on_matmul(void *user, const lb_tensor *w, const float *x, int n_tok) {
    collector *c = user;
    size_t i = (size_t)(w - c->m->tensors);
    if (w < c->m->tensors || i >= c->m->n_tensors || !wanted(c->m, w)) return;
    acc *a = &c->a[i];
    int64_t k = w->ne[0];
    if (!a->sum && !(a->sum = calloc((size_t)k, sizeof *a->sum))) {
        c->nomem = 1;
        return;
    }
    for (int t = 0; t < n_tok; t++) {
        const float *r = x + (size_t)t * (size_t)k;
        for (int64_t j = 0; j < k; j++) a->sum[j] += (double)r[j] * r[j];
    }
    a->rows += n_tok;
    a->in_chunk = 1;
}

lb_imatrix_params lb_imatrix_default_params(void) {
    lb_imatrix_params p = {512, 0, 0, NULL};
    return p;
}

/* The collected sums as entries: value = mean square x ncall, in model tensor order. */
static lb_status finish(const collector *c, const lb_imatrix_params *p, int chunks, lb_imatrix **out, lb_error *err) {
    lb_imatrix *im;
    lb_status s = lb_imatrix_new(&im, err);
    float *v = NULL;
    for (size_t i = 0; i < c->m->n_tensors && !s; i++) {
        const acc *a = &c->a[i];
        if (!a->sum || a->rows == 0) continue;
        int64_t k = c->m->tensors[i].ne[0];
        float *nv = realloc(v, (size_t)k * sizeof *v);
        if (!nv) {
            s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
            break;
        }
        v = nv;
        for (int64_t j = 0; j < k; j++) v[j] = (float)(a->sum[j] / (double)a->rows * a->ncall);
        s = lb_imatrix_add(im, c->m->tensors[i].name, a->ncall, (int32_t)k, v, err);
    }
    free(v);
    if (!s && im->n == 0) s = lb_fail(err, LB_ERR_ARG, "the model has no block matrices to collect statistics for");
    if (!s && p->dataset) {
        size_t len = strlen(p->dataset);
        char *d = malloc(len + 1);
        if (!d) s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
        else {
            memcpy(d, p->dataset, len + 1);
            free(im->dataset);
            im->dataset = d;
        }
    }
    if (s) {
        lb_imatrix_free(im);
        return s;
    }
    im->n_chunks = chunks;
    *out = im;
    return LB_OK;
}

/* after a chunk: the matrices it used count one call each */
static lb_status chunk_done(void *user, lb_error *err) {
    collector *c = user;
    for (size_t i = 0; i < c->m->n_tensors; i++) {
        c->a[i].ncall += c->a[i].in_chunk;
        c->a[i].in_chunk = 0;
    }
    return c->nomem ? lb_fail(err, LB_ERR_NOMEM, "out of memory for the activation sums") : LB_OK;
}

lb_status lb_imatrix_compute(lb_model *m, const int32_t *ids, size_t n_ids, int32_t bos_id,
                             const lb_imatrix_params *p, lb_progress_fn progress, void *user, lb_imatrix **out,
                             lb_error *err) {
    lb_imatrix_params d = lb_imatrix_default_params();
    if (!p) p = &d;
    *out = NULL;
    collector c = {m, NULL, 0};
    lb_calib cal = {p->n_ctx, p->n_chunks, p->n_threads, on_matmul, chunk_done, &c, NULL};
    int n_ctx;
    size_t n;
    lb_status st = lb_calib_chunks(&cal, n_ids, &n_ctx, &n, err);
    if (st) return st;
    if (!(c.a = calloc(m->n_tensors ? m->n_tensors : 1, sizeof(acc)))) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    st = lb_calib_run(m, &cal, ids, bos_id, n_ctx, n, progress, user, err);
    if (!st) st = finish(&c, p, (int)n, out, err);
    for (size_t i = 0; i < m->n_tensors; i++) free(c.a[i].sum);
    free(c.a);
    return st;
}
