/* Batched prompt processing through lb_engine, shared by run --parallel and bench --parallel. */
#ifndef LB_CLI_ENGINE_UTIL_H
#define LB_CLI_ENGINE_UTIL_H
#include "lowbit.h"

/* Runs ids[i][start[i] ..] of the n sequences seqs[i] through e, sequences side by side in
 * decode calls of at most max_batch entries (one weight pass serves several prompts). When
 * logits is not NULL, row i (n_vocab floats) receives the logits of sequence i's last id. */
lb_status cli_engine_prefill(lb_engine *e, const int *seqs, int32_t *const *ids, const size_t *n_ids,
                             const size_t *start, int n, int max_batch, int n_vocab, float *logits, lb_error *err);
#endif
