/* The paged KV cache: one pool of fixed-size blocks shared by every sequence of an engine.
 *
 * A block holds block_tokens positions of every layer, laid out [layer][K, V][token][kv_head]
 * [head row], so one (layer, head) of a block is a strided run the attention kernels read
 * directly. Blocks are reference-counted: a fork shares its parent's blocks, the prefix cache
 * holds a reference to the full blocks it remembers, and a block is written only while its
 * count is 1 (a shared, partly filled block is copied first: copy-on-write). Memory for the
 * pool is reserved once (sized by the budget, not per sequence); a page becomes resident when a
 * block on it is first written, and freed blocks are handed out again first. */
#ifndef LB_GRAPH_KV_CACHE_H
#define LB_GRAPH_KV_CACHE_H
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"
#include "kernels/backend.h"
#include "lowbit.h"

typedef struct lb_kv_cache lb_kv_cache;

/* A sequence's block table: blocks[i] holds positions [i * block_tokens, (i + 1) * block_tokens). */
typedef struct lb_kv_seq {
    int32_t *blocks;
    int n_blocks, cap;
    int n_tokens; /* positions stored */
} lb_kv_seq;

/* Bytes of one KV head's row of head_dim elements; 0 when the type cannot hold it (Q8_0 needs
 * head_dim % 32 == 0). */
size_t lb_kv_head_bytes(int head_dim, lb_kv_type t);
/* Bytes one block takes in the pool (all layers, K and V). */
size_t lb_kv_block_bytes(const lb_config *c, lb_kv_type t, int block_tokens);

/* The pool comes from be->alloc(be_ctx) (device memory for a device backend); a shared block
 * is copied with be->copy. */
lb_status lb_kv_cache_new(const lb_backend *be, void *be_ctx, const lb_config *c, lb_kv_type t, int block_tokens, size_t n_blocks,
                          lb_kv_cache **out, lb_error *err);
void lb_kv_cache_free(lb_kv_cache *kv);

int lb_kv_block_tokens(const lb_kv_cache *kv);
size_t lb_kv_n_blocks(const lb_kv_cache *kv);
size_t lb_kv_n_free(const lb_kv_cache *kv);
size_t lb_kv_block_size(const lb_kv_cache *kv);
lb_kv_type lb_kv_type_of(const lb_kv_cache *kv);
/* The pool's memory (for residency reports). */
const void *lb_kv_pool_base(const lb_kv_cache *kv);
/* What attention reads for layer l. */
lb_kv_view lb_kv_view_layer(const lb_kv_cache *kv, int layer);

/* A fresh block with one reference, or -1 when the pool is exhausted. */
int32_t lb_kv_block_alloc(lb_kv_cache *kv);
void lb_kv_block_ref(lb_kv_cache *kv, int32_t b);
/* Drops one reference; the block returns to the pool at zero. */
void lb_kv_block_unref(lb_kv_cache *kv, int32_t b);
int lb_kv_block_refs(const lb_kv_cache *kv, int32_t b);

/* Fresh blocks that storing n_new more positions in seq takes (new blocks past the table, and
 * a copy of a shared last block that is only partly filled). */
size_t lb_kv_seq_blocks_needed(const lb_kv_cache *kv, const lb_kv_seq *seq, int n_new);
/* Makes room for n_new positions: appends blocks and copies a shared partly filled last block.
 * Fails (LB_ERR_NOMEM naming the pool, seq unchanged) when fewer than
 * lb_kv_seq_blocks_needed blocks are free. Does not change n_tokens. */
lb_status lb_kv_seq_reserve(lb_kv_cache *kv, lb_kv_seq *seq, int n_new, lb_error *err);
/* Appends an existing block (one more reference to it), e.g. from the prefix cache. */
lb_status lb_kv_seq_push(lb_kv_cache *kv, lb_kv_seq *seq, int32_t b, lb_error *err);
/* dst (empty) shares every block of src. */
lb_status lb_kv_seq_fork(lb_kv_cache *kv, const lb_kv_seq *src, lb_kv_seq *dst, lb_error *err);
/* Keeps the first n positions (n <= n_tokens): blocks past them lose this reference; a kept
 * shared block stays intact (the next write copies it). */
void lb_kv_seq_truncate(lb_kv_cache *kv, lb_kv_seq *seq, int n);
/* Drops every block of seq and its table. */
void lb_kv_seq_release(lb_kv_cache *kv, lb_kv_seq *seq);

#endif
