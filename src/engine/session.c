/* The single-sequence API as a thin layer over the engine: one engine, one sequence, a pool of
 * exactly n_ctx positions. */
#include "engine/session.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "mem/arena.h"

lb_session_params lb_session_default_params(void) {
    /* F16 KV as llama.cpp: half the memory of F32, logits within ~1e-3, the same greedy ids on
     * the reference models; reference comparisons ask for LB_KV_F32 */
    lb_session_params p = {0, 0, LB_KV_F16, LB_DEVICE_CPU, 0};
    return p;
}

lb_status lb_cuda_device(char *name, size_t cap, size_t *total_bytes, lb_error *err) {
    return lb_cuda_device_info(name, cap, total_bytes, err);
}

size_t lb_session_kv_bytes_per_token(const lb_model *m, lb_kv_type t) {
    const lb_config *c = &m->cfg;
    return (size_t)2 * c->n_layers * c->n_kv_heads * lb_kv_head_bytes(c->head_dim, t);
}

void lb_session_scratch_plan(const lb_model *m, int n_threads, size_t *fixed, size_t *per_token) {
    lb_fwd_scratch_plan(m, n_threads, LB_MAX_BATCH, fixed, per_token);
    *fixed += (size_t)m->cfg.n_vocab * sizeof(float); /* the session's logits */
    *per_token += sizeof(int32_t);                     /* the ids it holds */
}

/* The largest block size up to 16 that divides n_ctx, so the pool holds exactly n_ctx positions
 * (and the memory planner's per-token arithmetic stays exact). */
static int block_for(int n_ctx) {
    int bt = 16;
    while (n_ctx % bt) bt--;
    return bt;
}

lb_status lb_session_new(lb_model *m, const lb_session_params *p, lb_session **out, lb_error *err) {
    lb_session_params d = lb_session_default_params();
    if (!p) p = &d;
    *out = NULL;
    int n_ctx = p->n_ctx;
    if (n_ctx <= 0) n_ctx = m->cfg.ctx_train > 0 && m->cfg.ctx_train < 4096 ? m->cfg.ctx_train : 4096;
    if (n_ctx > (1 << 24)) return lb_fail(err, LB_ERR_ARG, "context of %d tokens is too large", n_ctx);
    lb_engine_params ep = lb_engine_default_params();
    ep.n_threads = p->n_threads;
    ep.kv_type = p->kv_type;
    ep.n_ctx = ep.n_kv_tokens = n_ctx;
    ep.max_batch = p->device == LB_DEVICE_CUDA ? LB_MAX_BATCH_GPU : LB_MAX_BATCH;
    ep.block_tokens = block_for(n_ctx);
    ep.prefix_cache = 0;
    ep.device = p->device;
    ep.stream_window = p->stream_window;
    lb_session *s = calloc(1, sizeof *s);
    if (!s) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    s->m = m;
    s->n_ctx = n_ctx;
    s->pending = -1;
    lb_status st = lb_engine_new(m, &ep, &s->e, err);
    if (!st) st = lb_engine_seq_new(s->e, 0, &s->seq, err);
    if (!st && !(s->logits = lb_mem_alloc(s->e->mem, (size_t)m->cfg.n_vocab * sizeof(float), "logits")))
        st = lb_fail(err, LB_ERR_NOMEM, "cannot allocate the logits buffer");
    if (!st && !(s->ids = lb_mem_alloc(s->e->mem, (size_t)n_ctx * sizeof(int32_t), "ids")))
        st = lb_fail(err, LB_ERR_NOMEM, "cannot allocate the ids of a context of %d tokens", n_ctx);
    if (st) {
        lb_session_free(s);
        return st;
    }
    *out = s;
    return LB_OK;
}

void lb_session_free(lb_session *s) {
    if (!s) return;
    if (s->e) lb_mem_free(s->e->mem, s->logits);
    if (s->e) lb_mem_free(s->e->mem, s->ids);
    lb_engine_free(s->e); /* in debug mode the tracker reports anything never freed */
    free(s);
}

void lb_session_reset(lb_session *s) {
    lb_engine_seq_free(s->e, s->seq, NULL);
    lb_engine_seq_new(s->e, 0, &s->seq, NULL); /* the freed slot: cannot fail */
    s->pending = -1;
}

lb_status lb_session_truncate(lb_session *s, int n, lb_error *err) {
    s->pending = -1;
    return lb_engine_seq_truncate(s->e, s->seq, n, err);
}

int lb_session_n_past(const lb_session *s) { return lb_engine_seq_len(s->e, s->seq); }
int lb_session_n_ctx(const lb_session *s) { return s->n_ctx; }
int lb_session_n_threads(const lb_session *s) { return lb_engine_n_threads(s->e); }
size_t lb_session_kv_bytes(const lb_session *s) { return lb_kv_n_blocks(s->e->kv) * lb_kv_block_size(s->e->kv); }
size_t lb_session_scratch_bytes(const lb_session *s) {
    return s->e->fwd.scratch_bytes + (size_t)s->m->cfg.n_vocab * sizeof(float) + (size_t)s->n_ctx * sizeof(int32_t);
}
const lb_mem_tracker *lb_session_mem_tracker(const lb_session *s) { return s->e->mem; }
lb_kv_type lb_session_kv_type(const lb_session *s) { return lb_kv_type_of(s->e->kv); }
const void *lb_session_kv_base(const lb_session *s) { return lb_kv_pool_base(s->e->kv); }

lb_status lb_session_eval(lb_session *s, const int32_t *ids, size_t n_ids, float *logits, int all_logits,
                          lb_error *err) {
    if (n_ids == 0) return lb_fail(err, LB_ERR_ARG, "no tokens to evaluate");
    int n_past = lb_session_n_past(s);
    if ((size_t)n_past + n_ids > (size_t)s->n_ctx)
        return lb_fail(err, LB_ERR_RANGE, "context is full: %d + %zu tokens exceed the context of %d", n_past, n_ids,
                       s->n_ctx);
    size_t nv = (size_t)s->m->cfg.n_vocab;
    lb_batch_entry b[LB_MAX_BATCH_GPU];
    size_t chunk = (size_t)s->e->p.max_batch;
    for (size_t i = 0; i < n_ids; i += chunk) {
        int n = n_ids - i < chunk ? (int)(n_ids - i) : (int)chunk;
        int last = i + n == n_ids;
        for (int t = 0; t < n; t++)
            b[t] = (lb_batch_entry){s->seq, n_past + (int)i + t, ids[i + t],
                                    logits && (all_logits || (last && t == n - 1))};
        float *rows = all_logits && logits ? logits + i * nv : s->logits;
        lb_status st = lb_engine_decode(s->e, b, (size_t)n, rows, err);
        if (st) return st;
        memcpy(s->ids + n_past + i, ids + i, (size_t)n * sizeof(int32_t));
    }
    if (logits && !all_logits) memcpy(logits, s->logits, nv * sizeof(float));
    return LB_OK;
}
