/* lowbit serve: the engine behind the scheduler. Today one lb_session per slot, evaluated one
 * after another; this is the one file to replace when the batched engine (many sequences in one
 * forward pass, a paged KV cache) lands: sv_engine_eval then becomes a single batched call. */
#include <stdlib.h>

#include "serve.h"

struct sv_engine {
    int n_slots;
    lb_session **slots;
};

lb_status sv_engine_new(lb_model *m, int n_slots, const lb_session_params *sp, sv_engine **out, lb_error *err) {
    *out = NULL;
    sv_engine *e = calloc(1, sizeof *e);
    if (!e || !(e->slots = calloc((size_t)n_slots, sizeof *e->slots))) {
        free(e);
        if (err) *err = (lb_error){LB_ERR_NOMEM, "serve: out of memory for the slots"};
        return LB_ERR_NOMEM;
    }
    e->n_slots = n_slots;
    for (int i = 0; i < n_slots; i++) {
        lb_status st = lb_session_new(m, sp, &e->slots[i], err);
        if (st) {
            sv_engine_free(e);
            return st;
        }
    }
    *out = e;
    return LB_OK;
}

void sv_engine_free(sv_engine *e) {
    if (!e) return;
    for (int i = 0; i < e->n_slots; i++) lb_session_free(e->slots[i]);
    free(e->slots);
    free(e);
}

void sv_engine_reset(sv_engine *e, int slot) { lb_session_reset(e->slots[slot]); }
int sv_engine_n_ctx(const sv_engine *e) { return lb_session_n_ctx(e->slots[0]); }
int sv_engine_n_past(const sv_engine *e, int slot) { return lb_session_n_past(e->slots[slot]); }

size_t sv_engine_kv_bytes(const sv_engine *e) {
    size_t n = 0;
    for (int i = 0; i < e->n_slots; i++) n += lb_session_kv_bytes(e->slots[i]);
    return n;
}

/* Each slot's result depends only on its own ids, so a request gives the same tokens whatever
 * runs beside it (the batched engine must keep that: per-sequence reductions in a fixed order). */
lb_status sv_engine_eval(sv_engine *e, sv_eval *items, int n_items, lb_error *err) {
    lb_status first = LB_OK;
    for (int i = 0; i < n_items; i++) {
        sv_eval *it = &items[i];
        lb_error e1 = {0};
        it->status = lb_session_eval(e->slots[it->slot], it->ids, it->n_ids, it->logits, 0, &e1);
        if (it->status && !first) {
            first = it->status;
            if (err) *err = e1;
        }
    }
    return first;
}
