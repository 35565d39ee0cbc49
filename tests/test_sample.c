/* Sampler: greedy is argmax, sampling frequencies follow the exact filtered softmax, seeds
 * reproduce, and the filters (top-k, top-p, min-p, repetition penalty) keep what they should. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "lowbit.h"

#define NV 8

static lb_sampler *make(lb_sampler_params p) {
    lb_sampler *s = NULL;
    lb_error err;
    CHECK(lb_sampler_new(&p, NV, &s, &err) == LB_OK, "%s", err.msg);
    return s;
}

/* Draws n samples and returns the frequency of each id. */
static void freq(lb_sampler_params p, const float *logits, int n, double *f) {
    lb_sampler *s = make(p);
    memset(f, 0, NV * sizeof *f);
    for (int i = 0; i < n; i++) {
        float l[NV];
        memcpy(l, logits, sizeof l);
        f[lb_sampler_sample(s, l, NULL, 0)] += 1.0 / n;
    }
    lb_sampler_free(s);
}

int main(void) {
    const float logits[NV] = {1.0f, 3.0f, 2.5f, -1.0f, 0.5f, 3.0f, 2.0f, 0.0f};
    lb_sampler_params p = lb_sampler_default_params();

    /* greedy: the first maximum, as argmax picks */
    lb_sampler *s = make(p);
    float l[NV];
    memcpy(l, logits, sizeof l);
    CHECK(lb_sampler_sample(s, l, NULL, 0) == 1, "greedy picks the lowest id among ties");
    lb_sampler_free(s);

    /* temperature 1: frequencies match the softmax within 4 sigma */
    double f[NV], z = 0, pr[NV];
    for (int i = 0; i < NV; i++) z += exp(logits[i]);
    for (int i = 0; i < NV; i++) pr[i] = exp(logits[i]) / z;
    p.temperature = 1.0f;
    p.seed = 42;
    int n = 200000;
    freq(p, logits, n, f);
    for (int i = 0; i < NV; i++)
        CHECK(fabs(f[i] - pr[i]) < 4 * sqrt(pr[i] * (1 - pr[i]) / n) + 1e-9, "id %d: %.4f vs %.4f", i, f[i], pr[i]);

    /* top-k 2 keeps the two best (ids 1 and 5, equal logits): each about half */
    p.top_k = 2;
    freq(p, logits, 20000, f);
    CHECK(fabs(f[1] - 0.5) < 0.03 && fabs(f[5] - 0.5) < 0.03 && f[1] + f[5] > 0.9999, "top-k: %.3f %.3f", f[1], f[5]);
    p.top_k = 0;

    /* top-p: the smallest prefix reaching p. Sorted probs: 1,5 (3.0), 2 (2.5), 6 (2.0), ... */
    double top3 = pr[1] + pr[5] + pr[2];
    p.top_p = (float)(top3 - 0.01); /* needs ids 1, 5 and 2 */
    freq(p, logits, 50000, f);
    CHECK(f[6] == 0 && f[0] == 0 && f[2] > 0, "top-p keeps exactly 1, 5, 2");
    CHECK(fabs(f[2] - pr[2] / top3) < 0.02, "renormalised: %.3f vs %.3f", f[2], pr[2] / top3);
    p.top_p = 1.0f;

    /* min-p: keep ids with p >= 0.5 * p_max: logits within ln 2 of the max (3.0, 3.0, 2.5) */
    p.min_p = 0.5f;
    freq(p, logits, 50000, f);
    CHECK(f[6] == 0 && f[2] > 0 && f[1] > 0 && f[5] > 0, "min-p keeps 1, 5, 2");
    p.min_p = 0;

    /* same seed, same sequence; another seed, another sequence */
    lb_sampler *a = make(p), *b = make(p);
    p.seed = 43;
    lb_sampler *c = make(p);
    int same = 1, differ = 0;
    for (int i = 0; i < 200; i++) {
        float la[NV], lb_[NV], lc[NV];
        memcpy(la, logits, sizeof la), memcpy(lb_, logits, sizeof lb_), memcpy(lc, logits, sizeof lc);
        int x = lb_sampler_sample(a, la, NULL, 0), y = lb_sampler_sample(b, lb_, NULL, 0), w = lb_sampler_sample(c, lc, NULL, 0);
        same &= x == y;
        differ |= x != w;
    }
    CHECK(same && differ, "seeds: same %d differ %d", same, differ);
    lb_sampler_free(a), lb_sampler_free(b), lb_sampler_free(c);

    /* repetition penalty: positive logits divided, negative multiplied, each id once */
    p = lb_sampler_default_params();
    p.repeat_penalty = 2.0f;
    s = make(p);
    memcpy(l, logits, sizeof l);
    int32_t hist[] = {1, 1, 3};
    CHECK(lb_sampler_sample(s, l, hist, 3) == 5, "penalised id 1 loses to id 5");
    CHECK(l[1] == 1.5f && l[3] == -2.0f && l[5] == 3.0f, "penalty values %g %g %g", l[1], l[3], l[5]);
    lb_sampler_free(s);

    /* invalid parameters are refused */
    lb_error err;
    lb_sampler_params bad = lb_sampler_default_params();
    bad.top_p = 0;
    CHECK(lb_sampler_new(&bad, NV, &s, &err) == LB_ERR_ARG);
    bad = lb_sampler_default_params();
    bad.temperature = -1;
    CHECK(lb_sampler_new(&bad, NV, &s, &err) == LB_ERR_ARG);
    return test_summary();
}
