/* The calibration pass of lowbit imatrix and quantize --gptq (engine/calib.h). */
#include "engine/calib.h"

#include <stdint.h>
#include <stdlib.h>

#include "core/error.h"
#include "engine/session.h"
#include "graph/windows.h"

/* Tokens per evaluation, so the logits buffer stays small for large vocabularies (64 x 128k
 * floats: 32 MB). */
#define HEAD_PIECE 64

lb_status lb_calib_chunks(const lb_calib *c, size_t n_ids, int *n_ctx, size_t *n, lb_error *err) {
    int ctx = c->n_ctx > 0 ? c->n_ctx : 512;
    if (ctx < 2 || ctx > (1 << 20)) return lb_fail(err, LB_ERR_ARG, "a chunk of %d tokens is outside 2..%d", ctx, 1 << 20);
    size_t k = n_ids / (size_t)ctx;
    if (k == 0)
        return lb_fail(err, LB_ERR_ARG, "the calibration text has %zu tokens, fewer than one chunk of %d (lower -c)",
                       n_ids, ctx);
    if (c->n_chunks > 0 && (size_t)c->n_chunks < k) k = (size_t)c->n_chunks;
    if (k > INT32_MAX) k = INT32_MAX; /* the files count chunks in int32 */
    *n_ctx = ctx, *n = k;
    return LB_OK;
}

lb_status lb_calib_run(lb_model *m, const lb_calib *c, const int32_t *ids, int32_t bos_id, int n_ctx, size_t n,
                       lb_progress_fn progress, void *user, lb_error *err) {
    int32_t *w = malloc((size_t)n_ctx * sizeof *w);
    float *logits = malloc(HEAD_PIECE * (size_t)m->cfg.n_vocab * sizeof *logits);
    lb_session *s = NULL;
    lb_session_params sp = lb_session_default_params();
    sp.n_ctx = n_ctx;
    sp.n_threads = c->n_threads;
    sp.kv_type = LB_KV_F32; /* the activations of the exact model */
    lb_status st = !w || !logits ? lb_fail(err, LB_ERR_NOMEM, "out of memory") : LB_OK;
    if (!st) st = lb_session_new(m, &sp, &s, err);
    if (!st) {
        if (c->pool) *c->pool = s->e->pool;
        s->e->fwd.on_matmul = c->on_matmul;
        s->e->fwd.on_matmul_user = c->user;
    }
    for (size_t k = 0; k < n && !st; k++) {
        lb_window_ids(ids, k, n_ctx, bos_id, w);
        lb_session_reset(s);
        /* the head runs only for tokens whose logits are asked for: all of them, in pieces */
        for (size_t t = 0; t < (size_t)n_ctx && !st; t += HEAD_PIECE) {
            size_t len = (size_t)n_ctx - t < HEAD_PIECE ? (size_t)n_ctx - t : HEAD_PIECE;
            st = lb_session_eval(s, w + t, len, logits, 1, err);
        }
        if (!st && c->chunk_done) st = c->chunk_done(c->user, err);
        if (!st && progress) progress(user, "chunks", k + 1, n);
    }
    lb_session_free(s);
    free(w);
    free(logits);
    return st;
}
