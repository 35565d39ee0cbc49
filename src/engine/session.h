/* One generation stream: a sequence of an engine of its own (lowbit.h: lb_session_*). */
#ifndef LB_ENGINE_SESSION_H
#define LB_ENGINE_SESSION_H
#include "engine/engine.h"

#define LB_MAX_BATCH 64 /* tokens per forward chunk during prompt processing */
/* On the GPU a chunk reads every weight once (and dequantizes quantized ones to F16 for
 * cuBLAS), so prompts go in larger chunks; the scratch is device memory. */
#define LB_MAX_BATCH_GPU 512

struct lb_session {
    lb_model *m;
    lb_engine *e;
    int seq;
    int n_ctx;
    float *logits; /* [n_vocab], tag "logits" */
    int32_t *ids;  /* [n_ctx] the ids at positions 0 .. n_past-1 (repetition penalty), tag "ids" */
    int32_t pending; /* sampled by lb_generate but not run (fed first by a keep call), or -1 */
};

/* Bytes of KV cache per token for this model and cache type (all layers, K and V). */
size_t lb_session_kv_bytes_per_token(const lb_model *m, lb_kv_type t);
/* Bytes lb_session_new allocates besides the KV cache: fixed, plus per_token x n_ctx
 * (attention scores, one row per thread). n_threads as the pool will have it (>= 1). */
void lb_session_scratch_plan(const lb_model *m, int n_threads, size_t *fixed, size_t *per_token);
/* The tracker that counts the session's buffers. */
const lb_mem_tracker *lb_session_mem_tracker(const lb_session *s);
/* The KV pool's memory and size (residency reports). */
const void *lb_session_kv_base(const lb_session *s);

#endif
