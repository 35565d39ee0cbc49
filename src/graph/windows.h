/* Token windows of a text, cut as perplexity and importance-matrix tools customarily cut them:
 * non-overlapping windows of n_ctx tokens, each with BOS in place of its first token, so every
 * window starts as a document does. Shared by lb_perplexity and lb_imatrix_compute. */
#ifndef LB_GRAPH_WINDOWS_H
#define LB_GRAPH_WINDOWS_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Window k of ids into w (n_ctx ids); bos_id < 0 keeps the text's own first token. */
static inline void lb_window_ids(const int32_t *ids, size_t k, int n_ctx, int32_t bos_id, int32_t *w) {
    memcpy(w, ids + k * (size_t)n_ctx, (size_t)n_ctx * sizeof *w);
    if (bos_id >= 0) w[0] = bos_id;
}
#endif
