/* BPE merging of one piece (bpe_model.c). The work area is per encode call, reused across
 * pieces, so a tokenizer stays read-only while encoding. */
#ifndef LB_TOKENIZER_BPE_MODEL_H
#define LB_TOKENIZER_BPE_MODEL_H
#include "tokenizer/bpe.h"

typedef struct lb_bpe_hent { uint32_t rank; int32_t pos; } lb_bpe_hent;
typedef struct lb_bpe_work {
    int32_t *id, *prev, *next; /* symbols as a linked list; id -1: merged into its left */
    lb_bpe_hent *heap;
    size_t cap, hn;
} lb_bpe_work;

void lb_bpe_work_free(lb_bpe_work *w);
/* Appends the ids of piece s (already in the model's alphabet) to out. */
lb_status lb_bpe_model_encode(const lb_bpe *b, lb_bpe_work *w, const char *s, size_t len, lb_ids *out, lb_error *err);
#endif
