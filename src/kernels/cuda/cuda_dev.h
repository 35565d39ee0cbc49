/* Internal to the CUDA backend: its one device context, the registry of device buffers, the
 * cache of uploaded host data and the staging buffers. */
#ifndef LB_KERNELS_CUDA_DEV_H
#define LB_KERNELS_CUDA_DEV_H
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_kernels.h"

enum { LB_CU_SCRATCH_SCORES, LB_CU_SCRATCH_ACT, LB_CU_SCRATCH_Y, LB_CU_SCRATCH_HALF, LB_CU_SCRATCH_WHALF, LB_CU_SCRATCH_N };

/* An uploaded host range: a vector of floats (kind 0) or a weight matrix in a device format. */
typedef struct lb_cu_up {
    const void *host;
    size_t bytes;
    int kind, type; /* type: LB_CU_* */
    int64_t rows, k;
    void *q;        /* values (or the whole vector) */
    uint16_t *d;    /* block scales of Q8_0 / Q4_0 */
} lb_cu_up;

typedef struct lb_cu_state {
    int ready;
    cudaStream_t stream;
    cublasHandle_t blas;
    cudaError_t err;
    int blas_err;
    struct { void *p; size_t n; } *reg; /* device buffers of cu_alloc */
    size_t n_reg, cap_reg;
    lb_cu_up *up;                       /* open addressing on the host pointer */
    size_t n_up, cap_up;
    size_t up_bytes;                    /* device bytes the uploads hold */
    void *scratch[LB_CU_SCRATCH_N];
    size_t scratch_n[LB_CU_SCRATCH_N];
    void *host_tmp;
    size_t host_tmp_n;
    void *pin_out; /* pinned landing buffer of results read back (logits) */
    size_t pin_out_n;
    void *ring_host, *ring_dev; /* staging ring (cuda_mem.c) */
    size_t ring_n, ring_off;
    /* the last few small tables staged (offsets in the ring): every layer of a step stages the
     * same RoPE table, KV slots and block tables, which are copied once and then reused */
    struct { size_t off, bytes; uint64_t gen; } memo[4];
    int memo_next;
    uint64_t ring_gen; /* counts the ring's restarts at offset 0: older memos are overwritten */
    /* q/k/v and gate/up read the same input: its Q8_0 copy is reused while no op has written
     * device memory since (epoch counts the writing ops) */
    uint64_t epoch, aq_epoch;
    const float *aq_x;
    int aq_n;
    int64_t aq_k;
} lb_cu_state;

extern lb_cu_state lb_cu_g;

void lb_cu_check(cudaError_t e);
lb_status lb_cu_status(lb_error *err);
int lb_cu_reg_add(void *p, size_t n);
void lb_cu_reg_del(void *p);
int lb_cu_is_dev(const void *p);
/* pinned host memory for a result copied back (NULL: none could be had; copy to the caller's
 * memory directly then) */
void *lb_cu_pinned_out(size_t bytes);
/* p itself when it is device memory, else its uploaded copy (made now the first time) */
const float *lb_cu_const(const float *p, size_t bytes);
/* the cache entry for host data (NULL: none), and a new one */
lb_cu_up *lb_cu_up_find(const void *host);
lb_cu_up *lb_cu_up_insert(const void *host);
/* a device copy of bytes of host data for the ops launched next (asynchronous; host may reuse its buffer) */
const void *lb_cu_stage(const void *host, size_t bytes);
/* the same straight into device memory dst (one copy instead of two); 0 when launched */
int lb_cu_stage_to(void *dst, const void *host, size_t bytes);
void *lb_cu_scratch(int which, size_t bytes);
/* the same, but a failed allocation is no error (NULL, the backend's state untouched) */
void *lb_cu_scratch_try(int which, size_t bytes);
void *lb_cu_host_tmp(size_t bytes);
void lb_cu_forget(void);

/* ---- the step's graph (cuda_graph.c) ----------------------------------------------------- */

/* One launch as the step records it: everything it reads. Filled from a zeroed record (memset:
 * lists are compared and hashed byte for byte, padding included). */
enum { LB_CU_OP_NORM, LB_CU_OP_ROPE, LB_CU_OP_KV_STORE, LB_CU_OP_ATTN, LB_CU_OP_GLU, LB_CU_OP_ADD, LB_CU_OP_SCALE,
       LB_CU_OP_COPY, LB_CU_OP_QUANT_ACT, LB_CU_OP_MV, LB_CU_OP_ATTN_PREFILL };
typedef struct lb_cu_rec {
    int op;
    int i[8];        /* sizes and flags, per op as lb_cu_launch reads them */
    float f;         /* eps, scale factor */
    size_t z;        /* element or byte count, row stride */
    const void *p[6]; /* device pointers */
    lb_cu_kv kv;
} lb_cu_rec;

typedef struct lb_cu_graph_stats {
    uint64_t captures, replays, eager, flushes; /* graphs made, graph launches, steps op by op, flushes */
} lb_cu_graph_stats;

/* the record launched now, or appended to the step being recorded */
void lb_cu_submit(const lb_cu_rec *r);
void lb_cu_launch(const lb_cu_rec *r);
/* the forward pass's first op: starts recording when no step is open (and graphs are on) */
void lb_cu_step_begin(void);
/* before the output reaches host memory: launches the step (graph or op by op) */
void lb_cu_step_end(void);
/* launches what was recorded; the rest of the step runs op by op */
void lb_cu_flush(void);
int lb_cu_recording(void);
/* the last record of the step (NULL: none, or not recording), and a change to it (fusions) */
const lb_cu_rec *lb_cu_last_rec(void);
void lb_cu_replace_last(const lb_cu_rec *r);
/* host's bytes into the step's parameter arena: the device address, NULL when not recording or full */
const void *lb_cu_arena_put(const void *host, size_t bytes);
void lb_cu_graph_forget(void);
/* LOWBIT_CUDA_PROFILE (cuda_prof.c): 0 off, 1 step times, 2 per-op times */
int lb_cu_prof_mode(void);
void lb_cu_prof_step_begin(void);
void lb_cu_prof_launch(int before);
int lb_cu_prof_ops(const lb_cu_rec *list, size_t n);
/* ops outside a recorded step: mark before, done after (slot from mark; -1: not profiling) */
enum { LB_CU_PROF_GEMM = 100, LB_CU_PROF_DEQUANT, LB_CU_PROF_ACT_HALF, LB_CU_PROF_READBACK };
int lb_cu_prof_mark(void);
void lb_cu_prof_done(int slot, int op, int type, int rows, int k, int ntok);
void lb_cu_prof_eager(const lb_cu_rec *r);
lb_cu_graph_stats lb_cu_graph_get_stats(void);

lb_status lb_cu_matmul(lb_pool *pool, const lb_tensor *w, int per_token_act, const float *x, int n_tok, float *y,
                       lb_error *err);
lb_status lb_cu_matmul_raw(lb_pool *pool, lb_dtype type, const void *w, int64_t rows, int64_t k, const float *x,
                           int n_tok, float *y, lb_error *err);
#endif
