/* Per-token int8 activation quantization of BitLinear inputs (BitNet b1.58). */
#ifndef LB_GRAPH_ACT_QUANT_H
#define LB_GRAPH_ACT_QUANT_H
/* Each of the n_tok rows of n values becomes round(x * 127 / absmax) * absmax / 127 (round half
 * away from zero, as the ak42 reference runtime does); all-zero rows stay zero. */
void lb_act_quant_int8_rows(float *x, int n_tok, int n);
#endif
