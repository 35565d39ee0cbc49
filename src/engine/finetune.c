/* Fine-tunes as corrections of the base weights the engine holds once.
 *
 * The delta is read through the existing delta path (lb_model_load with delta_path patches a
 * second load of the base), so changes to the delta file format do not reach this file. Each
 * tensor the delta changes becomes, for matrices, a dense F32 dW = W_ft - W_base (a linear
 * layer then adds dW x for the fine-tune's own tokens) and, for vectors (norms, biases), the
 * fine-tune's own F32 values. The patched model is freed again. lb_engine_finetune_plan reads
 * only the delta's table (which tensors change, their shapes) to say what that costs. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "delta/deltafile.h"
#include "engine/engine.h"
#include "quant/quant.h"
#include "quant/repack.h"

static lb_status to_float(const lb_tensor *t, float *dst, lb_error *err) {
    if (t->type == LB_Q4_0_R8) { /* a base the CPU engine repacked (quant/repack.h): read it as plain Q4_0 */
        void *plain = malloc(t->nbytes ? t->nbytes : 1);
        if (!plain) return lb_fail(err, LB_ERR_NOMEM, "fine-tune: out of memory for tensor %s", t->name);
        lb_unpack_q4_0_x8(t->data, plain, t->ne[1], t->ne[0]);
        lb_dequantize_row_q4_0(plain, dst, lb_tensor_nelements(t));
        free(plain);
        return LB_OK;
    }
    const lb_dtype_traits *tr = lb_dtype_get(t->type);
    if (!tr || !tr->to_float)
        return lb_fail(err, LB_ERR_UNSUPPORTED, "fine-tune: tensor %s has type %s, which cannot be read as floats", t->name,
                       lb_dtype_name(t->type));
    tr->to_float(t->data, dst, lb_tensor_nelements(t));
    return LB_OK;
}

/* The fine-tune leaves this tensor as it is; a base the CPU engine repacked is compared in the
 * file's layout, so unchanged Q4_0 matrices cost no correction. */
static int unchanged(const lb_tensor *b, const lb_tensor *f) {
    if (f->nbytes != b->nbytes) return 0;
    if (f->type == b->type) return !memcmp(f->data, b->data, b->nbytes);
    if (b->type != LB_Q4_0_R8 || f->type != LB_Q4_0) return 0;
    void *plain = malloc(b->nbytes ? b->nbytes : 1);
    if (!plain) return 0; /* then a (zero) correction, still right */
    lb_unpack_q4_0_x8(b->data, plain, b->ne[1], b->ne[0]);
    int same = !memcmp(plain, f->data, b->nbytes);
    free(plain);
    return same;
}

static lb_status one_tensor(const lb_tensor *b, const lb_tensor *f, float **fix, lb_error *err) {
    *fix = NULL;
    int64_t n = lb_tensor_nelements(b);
    if (!f || f->n_dims != b->n_dims || lb_tensor_nelements(f) != n || f->ne[0] != b->ne[0])
        return lb_fail(err, LB_ERR_MISMATCH, "fine-tune: tensor %s differs in shape from the base", b->name);
    if (unchanged(b, f)) return LB_OK;
    float *out = malloc((size_t)n * sizeof *out), *base = NULL;
    if (!out) return lb_fail(err, LB_ERR_NOMEM, "fine-tune: out of memory for tensor %s", b->name);
    lb_status st = to_float(f, out, err);
    if (!st && lb_tensor_nrows(b) > 1) { /* a matrix: keep the difference */
        if (!(base = malloc((size_t)n * sizeof *base))) st = lb_fail(err, LB_ERR_NOMEM, "fine-tune: out of memory");
        if (!st) st = to_float(b, base, err);
        if (!st)
            for (int64_t i = 0; i < n; i++) out[i] -= base[i];
    }
    free(base);
    if (st) {
        free(out);
        return st;
    }
    *fix = out;
    return LB_OK;
}

lb_status lb_finetune_load(lb_model *m, const char *delta_path, lb_finetune *ft, lb_error *err) {
    memset(ft, 0, sizeof *ft);
    if (!delta_path) return lb_fail(err, LB_ERR_ARG, "fine-tune: no delta file given");
    lb_model_params mp = lb_model_default_params();
    mp.delta_path = delta_path;
    mp.n_threads = 1;
    lb_model *tuned = NULL;
    lb_status st = lb_model_load(m->path, &mp, &tuned, err);
    if (st) return st;
    if (!(ft->fix = calloc(m->n_tensors, sizeof *ft->fix))) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    ft->n = m->n_tensors;
    for (size_t i = 0; i < m->n_tensors && !st; i++) {
        const lb_tensor *b = &m->tensors[i];
        if (!b->data) continue;
        st = one_tensor(b, lb_model_find_tensor(tuned, b->name), &ft->fix[i], err);
    }
    lb_model_free(tuned);
    if (st) lb_finetune_free(ft);
    return st;
}

void lb_finetune_free(lb_finetune *ft) {
    for (size_t i = 0; ft->fix && i < ft->n; i++) free(ft->fix[i]);
    free(ft->fix);
    memset(ft, 0, sizeof *ft);
}

lb_status lb_engine_finetune_plan(const lb_model *m, const char *delta_path, const lb_engine_params *p, uint64_t *resident,
                                  uint64_t *load_extra, uint64_t *scratch, lb_error *err) {
    *resident = *load_extra = *scratch = 0;
    if (!m || !delta_path || !p) return lb_fail(err, LB_ERR_ARG, "lb_engine_finetune_plan: NULL argument");
    lb_delta *d = NULL;
    lb_status st = lb_delta_open(delta_path, &d, err);
    if (st) return st;
    uint64_t changed_bytes = 0, largest = 0;
    for (size_t i = 0; i < d->n; i++) {
        const lb_delta_entry *e = &d->e[i];
        if (!e->kept) continue; /* the fine-tune keeps the base's tensor: no correction */
        uint64_t n = 1;
        for (int k = 0; k < e->n_dims; k++) n *= (uint64_t)e->shape[k];
        *resident += n * sizeof(float);
        changed_bytes += e->es ? e->n * e->es : e->n; /* opaque (quantized) entries count bytes */
        if (n * sizeof(float) > largest) largest = n * sizeof(float);
    }
    lb_delta_close(d);
    uint64_t mapped = 0;
    for (size_t i = 0; i < m->n_maps; i++) mapped += m->maps[i].size; /* a .lbz base is restored again */
    *load_extra = mapped + changed_bytes + largest;
    *scratch = lb_fwd_finetune_scratch_plan(m, p->max_batch > 0 ? p->max_batch : 64);
    return LB_OK;
}
