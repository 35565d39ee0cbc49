/* The op table the forward pass calls: every step of a transformer block that touches
 * activations or weights goes through one of these function pointers, so another backend (CUDA)
 * fills its own table and the graph code does not change.
 *
 * Buffers say where they live (lb_buf.loc); a backend's ops take pointers into buffers of its
 * own location. The CPU backend's buffers are host memory counted by a tracker; the model's
 * weights (lb_tensor) are host memory too, and a device backend would upload them once.
 *
 * Every op works over n_tok rows (tokens of the batch, of any sequences): matrix products read
 * each weight row once for all of them. The reduction along K of one token's row never depends
 * on the other tokens, except where a kernel says otherwise (docs/design.md lists them). */
#ifndef LB_KERNELS_BACKEND_H
#define LB_KERNELS_BACKEND_H
#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"
#include "core/threads.h"
#include "lowbit.h"

typedef enum lb_buf_loc { LB_BUF_HOST = 0, LB_BUF_DEVICE = 1 } lb_buf_loc;

typedef struct lb_buf {
    void *data;
    size_t bytes;
    lb_buf_loc loc;
} lb_buf;

/* The paged KV cache as attention reads it: block b holds block_tokens positions of every
 * layer; layer l's K rows of block b start at base + b * block_bytes + k_off, one position's
 * row (all KV heads) row_bytes after the previous, each head head_bytes into the row. */
typedef struct lb_kv_view {
    uint8_t *base;
    size_t block_bytes, k_off, v_off, row_bytes, head_bytes;
    int block_tokens;
    int kv_type; /* LB_KV_F32 / F16 / Q8_0 */
} lb_kv_view;

/* One attention call over the n_tok tokens of a batch: token t is at position pos[t] of the
 * sequence whose block table is blocks[t], and attends to positions lb_attn_first(pos[t],
 * window)..pos[t]: all of them, or the last `window` with a sliding window. */
typedef struct lb_attn_batch {
    int n_tok, n_heads, n_kv_heads, head_dim;
    const float *q; /* [n_tok][n_heads * head_dim] */
    float *out;     /* [n_tok][n_heads * head_dim] */
    const int32_t *pos;
    const int32_t *const *blocks;
    lb_kv_view kv;  /* with k_off / v_off of the layer */
    float *att;     /* scores scratch: [n_threads][att_stride] floats */
    size_t att_stride; /* >= the longest sequence */
    float *tmp;     /* [n_threads][head_dim]: one block's share of the values */
    int window;     /* 0: none; W: only the last W positions (Mistral's sliding window) */
} lb_attn_batch;

/* The first position a query at pos attends to under a sliding window of w (0: none). */
static inline int lb_attn_first(int pos, int w) { return w > 0 && pos >= w ? pos - w + 1 : 0; }

typedef struct lb_backend {
    const char *name;
    lb_buf_loc loc;
    /* buffers of this backend's location; tag names them in the memory report */
    lb_status (*alloc)(void *ctx, size_t bytes, const char *tag, lb_buf *out, lb_error *err);
    void (*free)(void *ctx, lb_buf *b);
    /* y[t] = W x[t] for n_tok rows. per_token_act: BitNet's ternary layers quantize each input row
     * to int8 with its own absmax scale (the model's own arithmetic). Products that share
     * their input (q/k/v, gate/up) go to matmul_shared where the backend has it. */
    lb_status (*matmul)(lb_pool *pool, const lb_tensor *w, int per_token_act, const float *x, int n_tok, float *y,
                        lb_error *err);
    /* the same on raw row-major weights (e.g. a fine-tune's dense F32 correction) */
    lb_status (*matmul_raw)(lb_pool *pool, lb_dtype type, const void *w, int64_t rows, int64_t k, const float *x,
                            int n_tok, float *y, lb_error *err);
    /* out[t] = rmsnorm(x[t]) * w (w NULL: no weight), n values per row; out may equal x */
    void (*rmsnorm)(float *out, const float *x, const float *w, int n_tok, int n, float eps);
    /* rotates the n_heads heads of each row by that row's cos/sin table cs[t] (head_dim values:
     * head_dim/2 cosines then head_dim/2 sines); layout: LB_ROPE_NORM pairs or LB_ROPE_NEOX halves */
    void (*rope)(float *x, int n_tok, int n_heads, int head_dim, size_t row_stride, const float *cs, int layout);
    /* stores row t of k and v (kv_dim floats each) at the cache slot slot[t] (block * block_tokens
     * + offset, within the view whose k_off / v_off select the layer) in the cache's element type */
    void (*kv_store)(const lb_kv_view *kv, const float *k, const float *v, int n_tok, int kv_dim, const int32_t *blk,
                     const int32_t *off);
    /* softmax(q K^T / sqrt(hd)) V through the block tables */
    void (*attention)(lb_pool *pool, const lb_attn_batch *a);
    /* gate = act(gate) * up: act 0 SiLU, 1 relu^2 */
    void (*glu)(float *gate, const float *up, size_t n, int act);
    /* y += x, y *= a over n values */
    void (*add)(float *y, const float *x, size_t n);
    void (*scale)(float *y, float a, size_t n);
    /* row r of an embedding table (any dtype) as floats */
    lb_status (*embed)(const lb_tensor *t, int64_t r, float *out, lb_error *err);
    /* n bytes from src to dst, both of this backend's location */
    void (*copy)(void *dst, const void *src, size_t n);
    /* drops the backend's copies of host data (uploaded weights) before that data is freed;
     * NULL where ops read host memory directly */
    void (*forget)(void);
    /* ys[i] = ws[i] x[t] for n_w (<= 8) weights reading the same x (q/k/v, gate/up; all with
     * ne[0] columns alike), as n_w matmul calls would give them bit for bit, per_token_act
     * likewise. A backend that quantizes activations does it once per distinct format for all of
     * them (docs/design.md). NULL: the graph makes the n_w matmul calls. */
    lb_status (*matmul_shared)(lb_pool *pool, int n_w, const lb_tensor *const *ws, int per_token_act, const float *x,
                               int n_tok, float *const *ys, lb_error *err);
} lb_backend;

/* The CPU backend: the kernels of src/kernels/cpu and src/quant. ctx for alloc/free is an
 * lb_mem_tracker. */
const lb_backend *lb_backend_cpu(void);

/* The CUDA backend (src/kernels/cuda, built with -DLOWBIT_CUDA=ON): LB_ERR_UNSUPPORTED naming
 * the reason when the build has no CUDA or no device is present. Its alloc/free ignore ctx. */
lb_status lb_backend_cuda(const lb_backend **out, lb_error *err);
/* The device's name and memory (LB_ERR_UNSUPPORTED without CUDA). */
lb_status lb_cuda_device_info(char *name, size_t cap, size_t *total_bytes, lb_error *err);

#endif
