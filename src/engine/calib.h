/* The calibration pass shared by lb_imatrix_compute and lb_gptq_compute: the model run over a
 * text in chunks while the forward pass's matmul hook (lb_fwd.on_matmul) sees every input. */
#ifndef LB_ENGINE_CALIB_H
#define LB_ENGINE_CALIB_H
#include "core/model.h"
#include "core/tensor.h"
#include "core/threads.h"
#include "lowbit.h"

typedef struct lb_calib {
    int n_ctx;     /* tokens a chunk (0: 512) */
    int n_chunks;  /* at most this many chunks (0: every whole chunk of the text) */
    int n_threads;
    void (*on_matmul)(void *user, const lb_tensor *w, const float *x, int n_tok);
    /* after each chunk that ran without error, before progress (NULL: none); an error stops
     * the pass */
    lb_status (*chunk_done)(void *user, lb_error *err);
    void *user;    /* both callbacks' */
    lb_pool **pool; /* non-NULL: set to the session's pool before the first chunk (the hook runs
                     * while it is idle) */
} lb_calib;

/* The chunks the pass will run for n_ids tokens (c->n_ctx and c->n_chunks as above), or an
 * error naming the text's length when not even one fits; fills *n_ctx too. */
lb_status lb_calib_chunks(const lb_calib *c, size_t n_ids, int *n_ctx, size_t *n, lb_error *err);

/* n chunks of n_ctx tokens of ids (graph/windows.h: BOS in place of each chunk's first token), a
 * fresh F32 KV cache per chunk (the exact model's activations), every token's logits asked for
 * 64 at a time so the head's input reaches the hook too. */
lb_status lb_calib_run(lb_model *m, const lb_calib *c, const int32_t *ids, int32_t bos_id, int n_ctx, size_t n,
                       lb_progress_fn progress, void *user, lb_error *err);
#endif
