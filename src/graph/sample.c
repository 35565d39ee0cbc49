/* Token sampling: greedy, temperature, top-k, top-p, min-p, repetition penalty. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "graph/sample.h"

typedef struct cand {
    float logit;
    int32_t id;
} cand;

struct lb_sampler {
    lb_sampler_params p;
    int n_vocab;
    uint64_t rng;
    cand *cand; /* candidates, best first */
    float *prob;
};

lb_sampler_params lb_sampler_default_params(void) {
    lb_sampler_params p = {0.0f, 0, 1.0f, 0.0f, 1.0f, 64, 0};
    return p;
}

lb_status lb_sampler_new(const lb_sampler_params *p, int n_vocab, lb_sampler **out, lb_error *err) {
    if (n_vocab <= 0) return lb_fail(err, LB_ERR_ARG, "sampler: empty vocabulary");
    if (p->temperature < 0 || p->top_k < 0 || p->top_p <= 0 || p->top_p > 1 || p->min_p < 0 || p->min_p > 1 ||
        p->repeat_penalty <= 0 || p->repeat_last_n < 0)
        return lb_fail(err, LB_ERR_ARG,
                       "sampler: invalid parameters (temperature >= 0, top-k >= 0, 0 < top-p <= 1, 0 <= min-p <= 1, repeat penalty > 0)");
    lb_sampler *s = calloc(1, sizeof *s);
    if (!s) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->rng = p->seed ^ 0x9e3779b97f4a7c15ull;
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->prob = malloc((size_t)n_vocab * sizeof *s->prob);
    if (!s->cand || !s->prob) {
        lb_sampler_free(s);
        return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    *out = s;
    return LB_OK;
}

void lb_sampler_free(lb_sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s->prob);
    free(s);
}

/* splitmix64: small, fast, and the same sequence on every platform for a given seed */
static double next_uniform(lb_sampler *s) {
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static int by_logit_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id - y->id;
}

/* The k best candidates in s->cand, best first. Insertion keeps small k cheap on a 128k
 * vocabulary; k == n sorts everything. */
static int select_top(lb_sampler *s, const float *logits, int k) {
    int n = s->n_vocab;
    if (k <= 0 || k > n) k = n;
    if (k == n) {
        for (int i = 0; i < n; i++) s->cand[i] = (cand){logits[i], i};
        qsort(s->cand, (size_t)n, sizeof *s->cand, by_logit_desc);
        return n;
    }
    int cnt = 0;
    for (int i = 0; i < n; i++) {
        if (cnt == k && logits[i] <= s->cand[k - 1].logit) continue;
        int j = cnt < k ? cnt++ : k - 1;
        while (j > 0 && s->cand[j - 1].logit < logits[i]) s->cand[j] = s->cand[j - 1], j--;
        s->cand[j] = (cand){logits[i], i};
    }
    return k;
}

/* Applies the penalty and the filters: greedy returns the argmax id; otherwise the k
 * candidates s->cand[0..k) with unnormalised weights s->prob (*sum their total), -1 returned. */
static int32_t prepare(lb_sampler *s, float *logits, const int32_t *history, size_t n_history, int *kk, double *sum_out) {
    const lb_sampler_params *p = &s->p;
    if (p->repeat_penalty != 1.0f && history) {
        size_t from = n_history > (size_t)p->repeat_last_n ? n_history - (size_t)p->repeat_last_n : 0;
        for (size_t i = from; i < n_history; i++) {
            int32_t id = history[i];
            if (id < 0 || id >= s->n_vocab) continue;
            int seen = 0; /* penalise each id once, as the usual implementations do */
            for (size_t j = from; j < i; j++) seen |= history[j] == id;
            if (seen) continue;
            logits[id] = logits[id] > 0 ? logits[id] / p->repeat_penalty : logits[id] * p->repeat_penalty;
        }
    }
    if (p->temperature <= 0.0f) { /* greedy; ties go to the lowest id, as argmax does */
        int32_t best = 0;
        for (int i = 1; i < s->n_vocab; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    int k = select_top(s, logits, p->top_k);
    float maxl = s->cand[0].logit;
    double sum = 0;
    for (int i = 0; i < k; i++) {
        s->prob[i] = expf((s->cand[i].logit - maxl) / p->temperature);
        sum += s->prob[i];
    }
    /* min-p: drop candidates below min_p times the best probability */
    if (p->min_p > 0) {
        int keep = 1;
        while (keep < k && s->prob[keep] >= p->min_p * s->prob[0]) keep++;
        for (int i = keep; i < k; i++) sum -= s->prob[i];
        k = keep;
    }
    /* top-p: the smallest prefix whose mass reaches top_p */
    if (p->top_p < 1.0f) {
        double acc = 0;
        int keep = k;
        for (int i = 0; i < k; i++) {
            acc += s->prob[i];
            if (acc >= p->top_p * sum) {
                keep = i + 1;
                break;
            }
        }
        sum = 0;
        for (int i = 0; i < keep; i++) sum += s->prob[i];
        k = keep;
    }
    *kk = k;
    *sum_out = sum;
    return -1;
}

int32_t lb_sampler_sample(lb_sampler *s, float *logits, const int32_t *history, size_t n_history) {
    int k;
    double sum;
    int32_t best = prepare(s, logits, history, n_history, &k, &sum);
    if (best >= 0) return best;
    double r = next_uniform(s) * sum, acc = 0;
    for (int i = 0; i < k; i++) {
        acc += s->prob[i];
        if (r < acc) return s->cand[i].id;
    }
    return s->cand[k - 1].id;
}

void lb_sampler_dist(lb_sampler *s, float *logits, const int32_t *history, size_t n_history, float *dist) {
    int k;
    double sum;
    int32_t best = prepare(s, logits, history, n_history, &k, &sum);
    memset(dist, 0, (size_t)s->n_vocab * sizeof *dist);
    if (best >= 0) {
        dist[best] = 1.0f;
        return;
    }
    for (int i = 0; i < k; i++) dist[s->cand[i].id] = (float)(s->prob[i] / sum);
}

int lb_sampler_greedy(const lb_sampler *s) { return s->p.temperature <= 0.0f; }

lb_sampler_params lb_sampler_get_params(const lb_sampler *s) { return s->p; }

double lb_sampler_uniform(lb_sampler *s) { return next_uniform(s); }

int32_t lb_sampler_pick(lb_sampler *s, const float *dist) {
    double sum = 0, acc = 0;
    int32_t last = 0;
    for (int i = 0; i < s->n_vocab; i++) sum += dist[i];
    double r = next_uniform(s) * sum;
    for (int i = 0; i < s->n_vocab; i++) {
        if (dist[i] <= 0) continue;
        acc += dist[i];
        last = i;
        if (r < acc) return i;
    }
    return last;
}
