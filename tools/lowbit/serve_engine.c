/* lowbit serve: the engine behind the scheduler, on the library's batched engine. Each busy slot
 * is one engine sequence (on the base or one of the deltas); sv_engine_eval turns every slot's
 * ids of this step into one batch and runs ONE lb_engine_decode, so each weight matrix is read
 * once per step whatever the number of streams. All slots share one paged KV pool; a new
 * request first attaches the cached blocks of its prompt's prefix (a shared system prompt is
 * computed once). Only the scheduler thread calls these functions. */
#include <stdlib.h>
#include <string.h>

#include "serve.h"

struct sv_engine {
    lb_engine *eng;
    int n_slots, n_vocab, max_batch;
    int *seq;              /* per slot: its engine sequence, -1 when none */
    lb_batch_entry *batch; /* max_batch entries */
    float *logits;         /* n_slots x rows_per_slot rows: the rows a step asks for */
};

static lb_status nomem(lb_error *err) {
    if (err) *err = (lb_error){LB_ERR_NOMEM, "serve: out of memory for the engine"};
    return LB_ERR_NOMEM;
}

lb_status sv_engine_new(lb_model *m, int n_slots, int rows_per_slot, const lb_engine_params *ep, sv_engine **out,
                        lb_error *err) {
    *out = NULL;
    sv_engine *e = calloc(1, sizeof *e);
    if (!e) return nomem(err);
    e->n_slots = n_slots;
    e->n_vocab = lb_model_n_vocab(m);
    e->max_batch = ep->max_batch;
    e->seq = malloc((size_t)n_slots * sizeof *e->seq);
    e->batch = malloc((size_t)ep->max_batch * sizeof *e->batch);
    e->logits = malloc((size_t)n_slots * (size_t)rows_per_slot * (size_t)e->n_vocab * sizeof *e->logits);
    if (!e->seq || !e->batch || !e->logits) {
        sv_engine_free(e);
        return nomem(err);
    }
    for (int i = 0; i < n_slots; i++) e->seq[i] = -1;
    lb_status st = lb_engine_new(m, ep, &e->eng, err);
    if (st) {
        sv_engine_free(e);
        return st;
    }
    *out = e;
    return LB_OK;
}

void sv_engine_free(sv_engine *e) {
    if (!e) return;
    if (e->eng)
        for (int i = 0; i < e->n_slots; i++) sv_engine_end(e, i);
    lb_engine_free(e->eng);
    free(e->seq);
    free(e->batch);
    free(e->logits);
    free(e);
}

lb_status sv_engine_add_delta(sv_engine *e, const char *path, int *ft, lb_error *err) {
    return lb_engine_add_finetune(e->eng, path, ft, err);
}

lb_status sv_engine_begin(sv_engine *e, int slot, int ft, const int32_t *prompt, size_t n_prompt, size_t *reused,
                          lb_error *err) {
    *reused = 0;
    sv_engine_end(e, slot);
    lb_status st = lb_engine_seq_new(e->eng, ft, &e->seq[slot], err);
    if (st) {
        e->seq[slot] = -1;
        return st;
    }
    /* the cache is only an optimisation: a failure here leaves an empty sequence, still usable */
    lb_error ignored = {0};
    if (lb_engine_seq_reuse_prefix(e->eng, e->seq[slot], prompt, n_prompt, reused, &ignored)) {
        *reused = 0;
        sv_engine_end(e, slot);
        return lb_engine_seq_new(e->eng, ft, &e->seq[slot], err);
    }
    return LB_OK;
}

void sv_engine_end(sv_engine *e, int slot) {
    if (e->seq[slot] < 0) return;
    lb_engine_seq_free(e->eng, e->seq[slot], NULL);
    e->seq[slot] = -1;
}

int sv_engine_n_ctx(const sv_engine *e) {
    lb_engine_stats st;
    lb_engine_get_stats(e->eng, &st);
    return st.n_ctx;
}

lb_status sv_engine_truncate(sv_engine *e, int slot, int n, lb_error *err) {
    return lb_engine_seq_truncate(e->eng, e->seq[slot], n, err);
}

int sv_engine_n_past(const sv_engine *e, int slot) {
    return e->seq[slot] < 0 ? 0 : lb_engine_seq_len(e->eng, e->seq[slot]);
}

void sv_engine_stats(const sv_engine *e, lb_engine_stats *out) { lb_engine_get_stats(e->eng, out); }

/* One decode call for every item. A sequence's result does not depend on the others in the
 * batch (the engine's reductions are per token), so a request gives the same tokens alone or
 * beside 31 others. The engine checks the whole batch before changing anything, so a failure
 * (none is expected: the scheduler admits within the pool) fails every item of the step. */
lb_status sv_engine_eval(sv_engine *e, sv_eval *items, int n_items, lb_error *err) {
    size_t n = 0;
    for (int i = 0; i < n_items; i++) {
        sv_eval *it = &items[i];
        int pos = sv_engine_n_past(e, it->slot);
        for (size_t k = 0; k < it->n_ids && n < (size_t)e->max_batch; k++)
            e->batch[n++] = (lb_batch_entry){e->seq[it->slot], pos + (int32_t)k, it->ids[k],
                                             it->logits && (it->all_rows || k + 1 == it->n_ids)};
    }
    lb_status st = n ? lb_engine_decode(e->eng, e->batch, n, e->logits, err) : LB_OK;
    const float *row = e->logits;
    for (int i = 0; i < n_items; i++) {
        items[i].status = st;
        if (!st && items[i].logits) {
            size_t rows = items[i].all_rows ? items[i].n_ids : 1;
            memcpy(items[i].logits, row, rows * (size_t)e->n_vocab * sizeof *row);
            row += rows * (size_t)e->n_vocab;
        }
    }
    return st;
}
