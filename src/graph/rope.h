#ifndef LB_GRAPH_ROPE_H
#define LB_GRAPH_ROPE_H
#include "core/model.h"

/* Fills head_dim/2 inverse frequencies, applying linear or llama3 scaling from cfg, or, when
 * factors is given (GGUF rope_freqs.weight), dividing the unscaled frequencies by them. */
void lb_rope_inv_freq(const lb_config *c, const float *factors, float *inv_freq);
/* The divisors that turn the unscaled frequencies into the ones cfg describes (scaling and
 * checkpoint-dtype rounding). Returns 0 when they are all 1 and no tensor is needed. */
int lb_rope_freq_factors(const lb_config *c, float *factors);
/* cos and sin of every frequency at position pos: cs[0..half) cos, cs[half..2 half) sin. Computed
 * once per position and shared by every layer's q and k. */
void lb_rope_table(const float *inv_freq, int half, int pos, float *cs);
/* Rotates n_heads consecutive heads of x in place with a table from lb_rope_table. */
void lb_rope_apply(float *x, int n_heads, int head_dim, const float *cs, lb_rope_layout layout);
#endif
