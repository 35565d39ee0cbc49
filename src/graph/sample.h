/* What speculative decoding needs of a sampler besides lb_sampler_sample (lowbit.h): the
 * distribution it would draw from, and draws from its own random stream. */
#ifndef LB_GRAPH_SAMPLE_H
#define LB_GRAPH_SAMPLE_H
#include "lowbit.h"

/* dist[n_vocab]: the probabilities lb_sampler_sample would draw with on these logits (one-hot
 * for greedy). logits are modified, as by lb_sampler_sample. */
void lb_sampler_dist(lb_sampler *s, float *logits, const int32_t *history, size_t n_history, float *dist);
int lb_sampler_greedy(const lb_sampler *s);
lb_sampler_params lb_sampler_get_params(const lb_sampler *s);
/* Uniform in [0, 1) from the sampler's stream. */
double lb_sampler_uniform(lb_sampler *s);
/* An id drawn from dist (non-negative weights, any positive total). */
int32_t lb_sampler_pick(lb_sampler *s, const float *dist);

#endif
