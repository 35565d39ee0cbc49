/* The batched forward pass: one pass over the tokens of any number of sequences, each at its
 * own position with its own block table and fine-tune. Every op goes through the backend
 * table (kernels/backend.h); each matmul runs once over all tokens of the batch. */
#ifndef LB_GRAPH_FORWARD_H
#define LB_GRAPH_FORWARD_H
#include "core/model.h"
#include "core/threads.h"
#include "graph/kv_cache.h"
#include "kernels/backend.h"
#include "mem/stream.h"

/* A fine-tune as corrections of the base: fix[i] for model tensor i is NULL (unchanged) or, for
 * a matrix, the dense F32 dW = W_ft - W_base of the same shape; for a 1-D tensor (norms,
 * biases) the fine-tune's own F32 values. */
typedef struct lb_finetune {
    float **fix;
    size_t n;
} lb_finetune;

/* One token of a batch. The engine fills blk/off (where its K and V go) after reserving. */
typedef struct lb_fwd_tok {
    int32_t token, pos;
    const int32_t *blocks;  /* the sequence's block table */
    int32_t blk, off;       /* cache slot: blocks[pos / bt], pos % bt */
    const lb_finetune *ft;  /* NULL: the base model */
    int logits;             /* wants a row of logits */
} lb_fwd_tok;

/* Run state: scratch for max_batch tokens, attention scores for sequences of up to max_seq. */
typedef struct lb_fwd {
    lb_model *m;
    const lb_backend *be;
    void *be_ctx; /* the engine's memory tracker: the CPU backend's and the host tables' allocation context */
    lb_pool *pool;
    lb_kv_cache *kv;
    int max_batch, max_seq, n_threads;
    lb_buf x, xb, xb2, q, k, v, att_out, hb, hb2, att, inv_freq, rope_cs, idx;
    lb_buf dx, dy; /* fine-tune corrections: gathered rows, allocated at the first delta */
    size_t att_stride, scratch_bytes;
    /* views into idx, per batch token */
    int32_t *pos, *blk, *off;
    const int32_t **blocks;
    const lb_finetune **ft;
    float *att_tmp;
    lb_stream *stream; /* non-NULL: each layer's weights are acquired before it runs, released after */
    /* non-NULL: sees the input of every matmul (n_tok rows of w->ne[0] host floats) before it
     * runs, as the matmul reads it; importance matrices collect their statistics here */
    void (*on_matmul)(void *user, const lb_tensor *w, const float *x, int n_tok);
    void *on_matmul_user;
} lb_fwd;

/* Bytes lb_fwd_init allocates: fixed + per_seq_token x max_seq (n_threads >= 1). */
void lb_fwd_scratch_plan(const lb_model *m, int n_threads, int max_batch, size_t *fixed, size_t *per_seq_token);
/* The fine-tune corrections' gather buffers (lb_fwd_enable_finetunes), once for all fine-tunes. */
size_t lb_fwd_finetune_scratch_plan(const lb_model *m, int max_batch);
lb_status lb_fwd_init(lb_fwd *f, lb_model *m, const lb_backend *be, void *be_ctx, lb_pool *pool, lb_kv_cache *kv,
                      int max_batch, int max_seq, lb_error *err);
void lb_fwd_free(lb_fwd *f);
/* Allocates the correction scratch (once a fine-tune is attached). */
lb_status lb_fwd_enable_finetunes(lb_fwd *f, lb_error *err);
/* Runs n <= max_batch tokens (token ids checked), storing their K and V; logits receives one
 * row of n_vocab floats per token with .logits set, in batch order. */
lb_status lb_fwd_run(lb_fwd *f, const lb_fwd_tok *toks, int n, float *logits, lb_error *err);

#endif
