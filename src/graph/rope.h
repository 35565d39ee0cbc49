#ifndef LB_GRAPH_ROPE_H
#define LB_GRAPH_ROPE_H
#include "core/model.h"

/* Fills head_dim/2 inverse frequencies, applying linear or llama3 scaling from cfg, or, when
 * factors is given (GGUF rope_freqs.weight), dividing the unscaled frequencies by them. */
void lb_rope_inv_freq(const lb_config *c, const float *factors, float *inv_freq);
/* The divisors that turn the unscaled frequencies into the ones cfg describes (scaling and
 * checkpoint-dtype rounding). Returns 0 when they are all 1 and no tensor is needed. */
int lb_rope_freq_factors(const lb_config *c, float *factors);
/* Rotates n_heads consecutive heads of x in place for position pos. */
void lb_rope_apply(float *x, int n_heads, int head_dim, int pos, const float *inv_freq, lb_rope_layout layout);
#endif
