/* The batched engine's state (lowbit.h: lb_engine_*): sequences over the paged KV cache, the
 * prefix cache, fine-tunes, and the forward pass they share. */
#ifndef LB_ENGINE_ENGINE_H
#define LB_ENGINE_ENGINE_H
#include "graph/forward.h"
#include "graph/kv_cache.h"
#include "lowbit.h"

typedef struct lb_engine_seq {
    int used, ft;       /* ft: 0 base, else fine-tune id */
    lb_kv_seq kv;
    int32_t *tokens;    /* every stored position's token (the prefix cache hashes them) */
    int cap_tokens;
    int n_hashed;       /* leading full blocks already offered to the prefix cache */
    uint64_t hash;      /* chain hash after them */
    int pending;        /* positions in the batch being validated */
} lb_engine_seq;

/* A full block remembered by the hash of its token chain (and the fine-tune it ran with). */
typedef struct lb_prefix_entry {
    uint64_t hash;
    int32_t block;
    uint64_t last_use;
} lb_prefix_entry;

struct lb_engine {
    lb_model *m;
    lb_pool *pool;
    lb_mem_tracker *mem;
    lb_kv_cache *kv;
    const lb_backend *be;
    lb_fwd fwd;
    lb_engine_params p;
    lb_engine_seq *seqs;
    int n_seqs, cap_seqs;
    lb_fwd_tok *toks; /* [max_batch] */
    lb_prefix_entry *cache;
    size_t n_cache, cap_cache;
    uint64_t clock;
    lb_finetune *fts; /* [n_fts]: fine-tune i + 1 */
    int n_fts;
    uint64_t tokens_computed, tokens_reused;
};

/* Fills ft with the corrections of the delta at path (docs/design.md: fine-tunes). */
lb_status lb_finetune_load(lb_model *m, const char *delta_path, lb_finetune *ft, lb_error *err);
void lb_finetune_free(lb_finetune *ft);

#endif
