/* Parallel chunk pipeline: n_threads workers process items 0..n-1 (claimed in order, at most
 * 2*n_threads in flight), and the calling thread consumes the results strictly in order (to
 * write a file sequentially). Each worker owns a codec context and a scratch buffer, so nothing
 * is allocated per item. The first failing item in order stops the run; its error is returned. */
#ifndef LB_COMPRESS_PIPELINE_H
#define LB_COMPRESS_PIPELINE_H
#include <stddef.h>
#include <stdint.h>

#include "compress/codec.h"
#include "lowbit.h"

typedef struct lb_pipe_worker {
    lb_codec_ctx *codec;
    uint8_t *scratch;
    size_t scratch_cap;
} lb_pipe_worker;

typedef struct lb_pipe_slot {
    uint8_t *buf; /* slot_cap bytes for the worker's output */
    size_t cap, len;
    lb_status st;
    lb_error err;
    int done;
} lb_pipe_slot;

typedef lb_status (*lb_pipe_work_fn)(void *ctx, lb_pipe_worker *w, size_t i, lb_pipe_slot *s,
                                     lb_error *err);
/* Called on the calling thread, in item order; may be NULL. */
typedef lb_status (*lb_pipe_emit_fn)(void *ctx, size_t i, lb_pipe_slot *s, lb_error *err);

lb_status lb_pipe_worker_init(lb_pipe_worker *w, size_t scratch_cap, lb_error *err);
void lb_pipe_worker_free(lb_pipe_worker *w);

lb_status lb_pipe_run(size_t n_items, int n_threads, size_t slot_cap, size_t scratch_cap,
                      lb_pipe_work_fn work, lb_pipe_emit_fn emit, void *ctx, lb_error *err);

#endif
