/* Speculative decoding inside lb_generate. A draft (a smaller model's session, or prompt lookup
 * in the context itself) proposes k tokens; the target runs its pending token and the k drafts
 * in ONE batched call with logits at every position, keeps the longest prefix it agrees with
 * plus its own next token, and rolls the rejected KV positions back (lb_session_truncate).
 * Greedy: a draft is kept when it is the very token plain decoding picks from the same logits,
 * and the engine's logits do not depend on how many tokens a call runs, so the output is
 * identical. Sampling: the standard rejection rule (keep a draft d with probability
 * min(1, p(d)/q(d)), else draw from norm(max(0, p - q))) leaves the output distributed exactly
 * as the target's; for lookup q is one-hot.
 * Adaptive k: verifying k + 1 tokens is not free (on a small model at 2 threads a 17-token pass
 * costs ~3 plain steps: bench/results_spec.md), so k is chosen each step to maximise the
 * expected tokens per unit of time, (1 - a^(k+1)) / (1 - a) / (1 + c k), from the drafts'
 * running acceptance rate a and the measured cost c of one more verified token (both timed as
 * the steps run); when no k beats a plain step, the step is plain, with a rare probe so that a
 * draft that starts to pay is noticed. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/threads.h"
#include "engine/generate.h"
#include "graph/sample.h"

#define SPEC_K_DEFAULT 16
#define SPEC_K_MAX 63   /* k + 1 verified positions fit one chunk of a CPU session (LB_MAX_BATCH) */
#define SPEC_PROBE 32   /* a plain step after this many drafting ones keeps its timing current, and
                         * a 1-token draft after this many plain ones keeps the acceptance current */
#define SPEC_DECAY 0.9  /* weight of the acceptance counts at each drafting step: a window of ~10 */
#define LOOKUP_SPAN 64  /* prompt lookup compares matches up to this many tokens back */
#define SPEC_COST 0.15  /* a verified token's cost in plain steps until measured (bench/results_spec.md) */

typedef struct spec {
    lb_gen *g;
    lb_session *d;      /* the draft model's session, or NULL for lookup */
    lb_sampler *smp;    /* the target's sampler (the caller's random stream) */
    lb_sampler *dsmp;   /* the draft model's, a stream of its own */
    int nv, greedy;
    int kmax;           /* tokens to draft at most */
    int since_plain;    /* drafting steps since the last plain one */
    int idle;           /* plain steps since the last drafting one */
    double t_plain;     /* seconds of a plain step (moving average; 0: none yet) */
    double cost;        /* a drafting step's extra time per drafted token, in plain steps */
    double tried, kept; /* drafts verified (the first rejected one included) and kept, decaying */
    int32_t drafts[SPEC_K_MAX];
    float *rows;        /* [(kmax + 1) x nv] the target's logits of one verification */
    float *q;           /* [kmax x nv] the draft's distributions (sampled mode with a draft model) */
    float *p;           /* [nv] the target's distribution at one position */
    float *dl;          /* [nv] the draft model's next-token logits */
} spec;

/* Softmax probability of id: what --draft-min-p compares in greedy mode. */
static float softmax_prob(const float *x, int n, int32_t id) {
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)x[i] - mx);
    return (float)(exp((double)x[id] - mx) / sum);
}

/* Brings the draft session to hold ctx[0..n) (reusing the prefix it already agrees with) and
 * leaves its logits after ctx[n - 1] in dl. */
static lb_status draft_sync(spec *sp, const int32_t *ctx, int n, lb_error *err) {
    int have = lb_session_n_past(sp->d), c = 0;
    while (c < have && c < n - 1 && sp->d->ids[c] == ctx[c]) c++;
    lb_status st = c < have ? lb_session_truncate(sp->d, c, err) : LB_OK;
    return st ? st : lb_session_eval(sp->d, ctx + c, (size_t)(n - c), sp->dl, 0, err);
}

/* Up to k tokens from the draft model after ctx[0..n); *got says how many. */
static lb_status draft_model(spec *sp, const int32_t *ctx, int n, int k, int *got, lb_error *err) {
    lb_session *d = sp->d;
    float min_p = sp->g->p->draft_min_p;
    if (k > lb_session_n_ctx(d) - n + 1) k = lb_session_n_ctx(d) - n + 1; /* it feeds n + k - 1 */
    *got = 0;
    lb_status st = k > 0 ? draft_sync(sp, ctx, n, err) : LB_OK;
    for (int i = 0; !st && i < k; i++) {
        int32_t t;
        float pr;
        if (sp->greedy) {
            t = lb_sampler_sample(sp->dsmp, sp->dl, d->ids, (size_t)lb_session_n_past(d));
            pr = min_p > 0 ? softmax_prob(sp->dl, sp->nv, t) : 1.0f;
        } else {
            float *q = sp->q + (size_t)i * sp->nv;
            lb_sampler_dist(sp->dsmp, sp->dl, d->ids, (size_t)lb_session_n_past(d), q);
            t = lb_sampler_pick(sp->dsmp, q);
            pr = q[t];
        }
        if (pr < min_p) break;
        sp->drafts[(*got)++] = t;
        if (i + 1 < k) st = lb_session_eval(d, &t, 1, sp->dl, 0, err);
    }
    return st;
}

/* The longest match of the context's end wins: a long match is what predicts a copy (a repeated
 * passage, a loop in the output), and the draft is never longer than the match that backs it,
 * so a chance 1-token match risks one token, not k. */
int lb_lookup_draft(const int32_t *ctx, size_t n, int min_match, int k, int32_t *out) {
    size_t best = 0;
    int len = 0;
    for (size_t j = n > 1 ? n - 1 : 0; j-- > 0;) { /* latest first: it wins ties */
        if (ctx[j] != ctx[n - 1]) continue;
        int l = 1;
        while (l < LOOKUP_SPAN && (size_t)l <= j && ctx[j - l] == ctx[n - 1 - l]) l++;
        if (l > len) len = l, best = j;
    }
    if (len < (min_match > 1 ? min_match : 1)) return 0;
    if (k > len) k = len;
    for (int i = 0; i < k; i++) { /* past the end the match repeats itself: a loop goes on looping */
        size_t from = best + 1 + (size_t)i;
        out[i] = from < n ? ctx[from] : out[from - n];
    }
    return k > 0 ? k : 0;
}

int lb_spec_best_k(double accept, double cost, int k_max) {
    int best = 0;
    double best_v = 1.02, tokens = 1, ak = 1; /* a plain step makes 1 token per unit; a margin for noise */
    for (int k = 1; k <= k_max; k++) {
        ak *= accept;
        tokens += ak; /* expected tokens of a step drafting k: 1 + a + ... + a^k */
        double v = tokens / (1 + cost * k);
        if (v > best_v) best_v = v, best = k;
    }
    return best;
}

/* Sampled mode at verified position i of k: the target's token there; *keep when it is the
 * draft (accepted by the rejection rule). i == k: the token after every draft. */
static int32_t choose(spec *sp, int i, int k, float *row, size_t hist, int *keep) {
    float *p = sp->p;
    lb_sampler_dist(sp->smp, row, sp->g->s->ids, hist, p);
    if (i == k) return lb_sampler_pick(sp->smp, p);
    int32_t d = sp->drafts[i];
    const float *q = sp->d ? sp->q + (size_t)i * sp->nv : NULL; /* NULL: lookup, q one-hot at d */
    double qd = q ? q[d] : 1.0, left = 0;
    if (lb_sampler_uniform(sp->smp) * qd < p[d]) return *keep = 1, d;
    for (int j = 0; j < sp->nv; j++) {
        float r = p[j] - (q ? q[j] : (float)(j == d));
        p[j] = r > 0 ? r : 0;
        left += p[j];
    }
    if (left <= 0) return *keep = 1, d; /* p == q up to rounding: a rejection of measure zero */
    return lb_sampler_pick(sp->smp, p);
}

/* Runs the pending token and k drafts through the target in one call, takes the accepted
 * drafts and the target's own next token, and rolls the target back past the last kept one.
 * Returns 1 when generation ended (r->stop or *st says why), 0 to go on. */
static int verify(spec *sp, int k, lb_status *st, lb_error *err) {
    lb_gen *g = sp->g;
    lb_session *s = g->s;
    int n0 = lb_session_n_past(s);
    int32_t batch[SPEC_K_MAX + 1];
    batch[0] = s->pending;
    memcpy(batch + 1, sp->drafts, (size_t)k * sizeof *batch);
    if ((*st = lb_session_eval(s, batch, (size_t)k + 1, sp->rows, 1, err))) return 1;
    s->pending = -1;
    for (int i = 0;; i++) {
        float *row = sp->rows + (size_t)i * sp->nv;
        size_t hist = (size_t)n0 + 1 + i; /* the ids plain decoding would have seen here */
        int keep = 0;
        int32_t id;
        if (sp->greedy) {
            id = lb_sampler_sample(sp->smp, row, s->ids, hist);
            keep = i < k && id == sp->drafts[i];
        } else {
            id = choose(sp, i, k, row, hist, &keep);
        }
        g->r->n_accepted += (size_t)keep;
        int done = lb_gen_take(g, id, st, err);
        if (done || !keep) { /* positions n0 .. n0 + i hold the tokens kept; id is pending */
            lb_status t = lb_session_truncate(s, n0 + 1 + i, err);
            s->pending = id;
            if (t) *st = t, done = 1;
            return done;
        }
    }
}

/* Tokens to draft in this step (0: a plain step), within room. */
static int next_k(spec *sp, int room) {
    if (sp->t_plain == 0 || sp->since_plain >= SPEC_PROBE) return 0;
    int cap = sp->kmax < room ? sp->kmax : room;
    int k = lb_spec_best_k(sp->kept / sp->tried, sp->cost, cap);
    if (k == 0 && cap > 0 && sp->idle >= SPEC_PROBE) k = 1; /* a probe: does drafting pay again? */
    return k;
}

static double average(double old, double x) { return old > 0 ? 0.75 * old + 0.25 * x : x; }

/* After a step that drafted k tokens and kept `kept` of them in dt seconds (drafting included):
 * a plain step updates the time of a plain step, a drafting one the cost of a drafted token in
 * plain steps and the acceptance counts. */
static void adapt(spec *sp, int k, int kept, double dt) {
    if (k == 0) {
        sp->t_plain = average(sp->t_plain, dt);
        sp->since_plain = 0;
        sp->idle++;
        return;
    }
    sp->since_plain++;
    sp->idle = 0;
    /* one more token in a batched pass never costs a whole plain step: a slower sample is the
     * machine's noise (another process took the cores), not the cost. Sampling keeps the fixed
     * cost: there k decides which random draws the rejection rule takes, and a seed must repeat. */
    double c = (dt / sp->t_plain - 1) / k;
    if (sp->greedy) sp->cost = average(sp->cost, c < 0.01 ? 0.01 : c > 1 ? 1 : c);
    sp->tried = SPEC_DECAY * sp->tried + kept + (kept < k);
    sp->kept = SPEC_DECAY * sp->kept + kept;
}

static lb_status spec_init(spec *sp, lb_gen *g, lb_sampler *smp, lb_error *err) {
    const lb_generate_params *p = g->p;
    memset(sp, 0, sizeof *sp);
    sp->g = g;
    sp->d = p->draft;
    sp->smp = smp;
    sp->nv = lb_model_n_vocab(g->s->m);
    sp->greedy = lb_sampler_greedy(smp);
    sp->kmax = p->draft_max ? p->draft_max : SPEC_K_DEFAULT;
    sp->tried = 2, sp->kept = 1; /* no evidence yet: even odds */
    sp->cost = SPEC_COST;         /* greedy: replaced by the measured cost after the first drafting step */
    size_t nv = (size_t)sp->nv;
    sp->rows = malloc((size_t)(sp->kmax + 1) * nv * sizeof(float));
    sp->p = malloc(nv * sizeof(float));
    sp->dl = malloc(nv * sizeof(float));
    if (sp->d && !sp->greedy) sp->q = malloc((size_t)sp->kmax * nv * sizeof(float));
    if (!sp->rows || !sp->p || !sp->dl || (sp->d && !sp->greedy && !sp->q))
        return lb_fail(err, LB_ERR_NOMEM, "out of memory for speculative decoding (%d drafts of %zu logits)", sp->kmax, nv);
    lb_sampler_params dp = lb_sampler_get_params(smp);
    dp.seed ^= 0x5bd1e9955bd1e995ull; /* the draft's stream, apart from the target's */
    return sp->d ? lb_sampler_new(&dp, sp->nv, &sp->dsmp, err) : LB_OK;
}

lb_status lb_spec_loop(lb_gen *g, lb_sampler *smp, lb_error *err) {
    lb_session *s = g->s;
    spec sp;
    lb_status st = spec_init(&sp, g, smp, err);
    while (!st && !lb_gen_must_stop(g)) {
        int n0 = lb_session_n_past(s), got = 0;
        double t0 = lb_clock_seconds(); /* drafting included: it is what a step costs */
        int room = s->n_ctx - n0 - 1, left = g->p->max_tokens - (int)g->r->n_ids - 1;
        s->ids[n0] = s->pending; /* the context to draft from: what s holds and its pending token */
        int k = next_k(&sp, room < left ? room : left);
        if (k && sp.d) st = draft_model(&sp, s->ids, n0 + 1, k, &got, err);
        else if (k) got = lb_lookup_draft(s->ids, (size_t)n0 + 1, g->p->lookup, k, sp.drafts);
        if (st) break;
        g->r->n_drafted += (size_t)got;
        size_t kept0 = g->r->n_accepted;
        if (verify(&sp, got, &st, err)) break;
        adapt(&sp, got, (int)(g->r->n_accepted - kept0), lb_clock_seconds() - t0);
    }
    lb_sampler_free(sp.dsmp);
    free(sp.rows);
    free(sp.q);
    free(sp.p);
    free(sp.dl);
    return st;
}

/* The same bytes for (nearly) every token: a draft that tokenizes differently would be verified
 * in vain. Converters write special tokens (such as <unk>) differently, so 1% may differ. */
lb_status lb_draft_check_vocab(const lb_model *t, const lb_model *d, lb_error *err) {
    int nv = lb_model_n_vocab(t);
    if (lb_model_n_vocab(d) != nv)
        return lb_fail(err, LB_ERR_ARG, "the draft model's vocabulary has %d tokens, the target's %d: a draft must "
                       "share the target's vocabulary", lb_model_n_vocab(d), nv);
    const lb_tokenizer *a = lb_model_tokenizer(t), *b = lb_model_tokenizer(d);
    if (!a || !b) return LB_OK;
    int n = lb_tokenizer_n_vocab(a), n_diff = 0, first = -1;
    if (lb_tokenizer_n_vocab(b) != n)
        return lb_fail(err, LB_ERR_ARG, "the draft's tokenizer has %d tokens, the target's %d: a draft must share the "
                       "target's vocabulary", lb_tokenizer_n_vocab(b), n);
    for (int id = 0; id < n; id++) {
        char x[256], y[256];
        size_t na = lb_token_piece(a, id, x, sizeof x), nb = lb_token_piece(b, id, y, sizeof y);
        if (na != nb || memcmp(x, y, na < sizeof x ? na : sizeof x)) first = first < 0 ? id : first, n_diff++;
    }
    if (n_diff > n / 100 + 1)
        return lb_fail(err, LB_ERR_ARG, "%d of the draft's %d tokens differ from the target's (the first: id %d): a "
                       "draft must share the target's vocabulary", n_diff, n, first);
    return LB_OK;
}

lb_status lb_spec_check(const lb_session *s, const lb_generate_params *p, lb_error *err) {
    if (p->lookup < 0 || p->lookup > LOOKUP_SPAN)
        return lb_fail(err, LB_ERR_ARG, "lookup is %d; it must be 0 (off) to %d", p->lookup, LOOKUP_SPAN);
    if (p->draft_max < 0 || p->draft_max > SPEC_K_MAX)
        return lb_fail(err, LB_ERR_ARG, "draft_max is %d; it must be 0 (default %d) to %d", p->draft_max, SPEC_K_DEFAULT,
                       SPEC_K_MAX);
    if (!(p->draft_min_p >= 0 && p->draft_min_p <= 1))
        return lb_fail(err, LB_ERR_ARG, "draft_min_p is %g; it must be 0 to 1", (double)p->draft_min_p);
    if (!p->draft) return LB_OK;
    if (p->lookup) return lb_fail(err, LB_ERR_ARG, "give a draft session or lookup, not both");
    if (p->draft == s) return lb_fail(err, LB_ERR_ARG, "the draft session is the target session itself");
    return lb_draft_check_vocab(s->m, p->draft->m, err);
}
