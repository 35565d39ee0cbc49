/* Perplexity and KL divergence over a token stream, scored as perplexity tools customarily do:
 * non-overlapping windows of n_ctx tokens, BOS in place of each window's first token, and only
 * the second half of each window scored so every scored token has at least n_ctx/2 of context. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/model.h"
#include "graph/windows.h"

/* log-softmax of x into out (double for the sums); returns the argmax. */
static int log_softmax(const float *x, int n, double *out) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    double mx = x[best], sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)x[i] - mx);
    double lse = mx + log(sum);
    for (int i = 0; i < n; i++) out[i] = (double)x[i] - lse;
    return best;
}

typedef struct ppl_run {
    lb_model *m;
    lb_session *s;
    float *logits;
} ppl_run;

static lb_status run_open(ppl_run *r, lb_model *m, int n_ctx, lb_kv_type kv, int n_threads, lb_error *err) {
    lb_session_params sp = lb_session_default_params();
    sp.n_ctx = n_ctx;
    sp.n_threads = n_threads;
    sp.kv_type = kv;
    r->m = m;
    lb_status s = lb_session_new(m, &sp, &r->s, err);
    if (s) return s;
    if (!(r->logits = malloc((size_t)n_ctx * (size_t)m->cfg.n_vocab * sizeof(float))))
        return lb_fail(err, LB_ERR_NOMEM, "out of memory for %d x %d logits", n_ctx, m->cfg.n_vocab);
    return LB_OK;
}

static lb_status run_eval(ppl_run *r, const int32_t *w, int n, lb_error *err) {
    lb_session_reset(r->s);
    return lb_session_eval(r->s, w, (size_t)n, r->logits, 1, err);
}

lb_status lb_perplexity(lb_model *m, lb_model *base, const int32_t *ids, size_t n_ids, int32_t bos_id, int n_ctx,
                        lb_kv_type kv_type, int n_threads, lb_progress_fn progress, void *user, lb_ppl_result *out, lb_error *err) {
    memset(out, 0, sizeof *out);
    if (n_ctx < 4) return lb_fail(err, LB_ERR_ARG, "context of %d tokens is too small for perplexity (at least 4)", n_ctx);
    size_t n_win = n_ids / (size_t)n_ctx;
    if (n_win == 0)
        return lb_fail(err, LB_ERR_ARG, "the text has %zu tokens, fewer than one window of %d", n_ids, n_ctx);
    int nv = m->cfg.n_vocab;
    if (base && base->cfg.n_vocab != nv)
        return lb_fail(err, LB_ERR_MISMATCH, "the base model has %d tokens in its vocabulary, the model %d", base->cfg.n_vocab, nv);
    ppl_run rm = {0}, rb = {0};
    int32_t *w = malloc((size_t)n_ctx * sizeof *w);
    double *lp = malloc((size_t)nv * sizeof *lp), *lq = malloc((size_t)nv * sizeof *lq);
    lb_status s = !w || !lp || !lq ? lb_fail(err, LB_ERR_NOMEM, "out of memory") : LB_OK;
    if (!s) s = run_open(&rm, m, n_ctx, kv_type, n_threads, err);
    if (!s && base) s = run_open(&rb, base, n_ctx, LB_KV_F32, n_threads, err); /* the truth: an exact cache */
    double nll = 0, kl = 0;
    size_t scored = 0, agree = 0;
    int first = n_ctx / 2;
    for (size_t k = 0; k < n_win && !s; k++) {
        lb_window_ids(ids, k, n_ctx, bos_id, w);
        if ((s = run_eval(&rm, w, n_ctx, err))) break;
        if (base && (s = run_eval(&rb, w, n_ctx, err))) break;
        for (int j = first; j < n_ctx - 1; j++) {
            int am = log_softmax(rm.logits + (size_t)j * nv, nv, lq);
            nll -= lq[w[j + 1]];
            if (base) {
                int ab = log_softmax(rb.logits + (size_t)j * nv, nv, lp);
                double d = 0;
                for (int i = 0; i < nv; i++) d += exp(lp[i]) * (lp[i] - lq[i]);
                kl += d;
                agree += ab == am;
            }
            scored++;
        }
        if (progress) progress(user, "windows", k + 1, n_win);
    }
    if (!s) {
        out->n_windows = n_win;
        out->n_scored = scored;
        out->nll = nll / (double)scored;
        out->ppl = exp(out->nll);
        out->has_base = base != NULL;
        if (base) out->kl = kl / (double)scored, out->top1 = (double)agree / (double)scored;
    }
    lb_session_free(rm.s);
    lb_session_free(rb.s);
    free(rm.logits);
    free(rb.logits);
    free(w);
    free(lp);
    free(lq);
    return s;
}
