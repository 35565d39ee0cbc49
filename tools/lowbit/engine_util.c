/* Batched prompt processing through lb_engine (see engine_util.h). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine_util.h"

lb_status cli_engine_prefill(lb_engine *e, const int *seqs, int32_t *const *ids, const size_t *n_ids,
                             const size_t *start, int n, int max_batch, int n_vocab, float *logits, lb_error *err) {
    lb_batch_entry *b = malloc((size_t)max_batch * sizeof *b);
    int *owner = malloc((size_t)max_batch * sizeof *owner); /* sequence index of each logits row */
    int rows_cap = n < max_batch ? n : max_batch;
    float *rows = logits ? malloc((size_t)rows_cap * (size_t)n_vocab * sizeof(float)) : NULL;
    lb_status st = (!b || !owner || (logits && !rows)) ? lb_fail(err, LB_ERR_NOMEM, "out of memory") : LB_OK;
    int i = 0;
    size_t at = n > 0 ? start[0] : 0;
    while (!st && i < n) {
        int nb = 0, nr = 0;
        /* fill one batch: each sequence's entries are consecutive positions */
        while (i < n && nb < max_batch) {
            if (at >= n_ids[i]) {
                if (++i < n) at = start[i];
                continue;
            }
            int last = at + 1 == n_ids[i];
            b[nb] = (lb_batch_entry){.seq = seqs[i], .pos = (int32_t)at, .token = ids[i][at], .logits = logits && last};
            if (b[nb].logits) owner[nr++] = i;
            nb++;
            at++;
        }
        if (nb == 0) break;
        st = lb_engine_decode(e, b, (size_t)nb, rows, err);
        for (int r = 0; !st && r < nr; r++)
            memcpy(logits + (size_t)owner[r] * n_vocab, rows + (size_t)r * n_vocab, (size_t)n_vocab * sizeof(float));
    }
    free(b);
    free(owner);
    free(rows);
    return st;
}
