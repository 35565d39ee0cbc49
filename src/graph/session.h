/* Run state of one generation stream: KV cache, scratch activations, RoPE table, threads. */
#ifndef LB_GRAPH_SESSION_H
#define LB_GRAPH_SESSION_H
#include "core/model.h"
#include "core/threads.h"

#define LB_MAX_BATCH 32 /* tokens per forward chunk during prompt processing */

struct lb_session {
    lb_model *m;
    lb_pool *pool;
    int n_ctx, n_past;
    lb_kv_type kv_type;
    size_t kv_head_bytes; /* one KV head's row of head_dim elements in the cache type */
    void *k_cache, *v_cache; /* [layer][pos][kv_head][kv_head_bytes] */
    float *inv_freq;      /* [head_dim / 2] after rope scaling */
    /* scratch, LB_MAX_BATCH rows each */
    float *x, *xb, *xb2, *q, *k, *v, *att_out, *hb, *hb2, *logits;
    float *att;           /* [n_threads][n_ctx] attention scores */
    float *rope_cs;       /* [LB_MAX_BATCH][head_dim]: cos and sin for the chunk's positions */
    int n_threads;
    size_t scratch_bytes, kv_bytes;
    lb_mem_tracker *mem;  /* every buffer above, tagged "kv", "scratch", "logits", "attention" */
};

/* Bytes of KV cache per token for this model and cache type (all layers, K and V). */
size_t lb_session_kv_bytes_per_token(const lb_model *m, lb_kv_type t);
/* Bytes lb_session_new allocates besides the KV cache: fixed, plus per_token x n_ctx
 * (attention scores, one row per thread). n_threads as the pool will have it (>= 1). */
void lb_session_scratch_plan(const lb_model *m, int n_threads, size_t *fixed, size_t *per_token);
/* The tracker that counts the session's buffers. */
const lb_mem_tracker *lb_session_mem_tracker(const lb_session *s);

#endif
