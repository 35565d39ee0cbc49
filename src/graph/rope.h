#ifndef LB_GRAPH_ROPE_H
#define LB_GRAPH_ROPE_H
#include "core/model.h"

/* Fills head_dim/2 inverse frequencies, applying linear or llama3 scaling from cfg. */
void lb_rope_inv_freq(const lb_config *c, float *inv_freq);
/* Rotates n_heads consecutive heads of x in place for position pos. */
void lb_rope_apply(float *x, int n_heads, int head_dim, int pos, const float *inv_freq, lb_rope_layout layout);
#endif
