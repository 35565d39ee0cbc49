/* The paged KV cache (kv_cache.h): a block pool with reference counts and block tables. */
#include "graph/kv_cache.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "mem/arena.h"
#include "quant/blocks.h"

struct lb_kv_cache {
    const lb_backend *be; /* the pool lives where the backend's ops read it */
    void *be_ctx;
    lb_buf pool;
    lb_kv_type type;
    int n_layers, block_tokens;
    size_t head_bytes, row_bytes, block_bytes, n_blocks;
    uint8_t *base;     /* n_blocks * block_bytes, tag "kv" */
    int32_t *refs;     /* [n_blocks] */
    int32_t *free_ids; /* stack of free blocks; the lowest indices on top, so pages stay few */
    size_t n_free;
};

size_t lb_kv_head_bytes(int head_dim, lb_kv_type t) {
    if (t == LB_KV_Q8_0) return head_dim % LB_QK ? 0 : (size_t)head_dim / LB_QK * sizeof(lb_block_q8_0);
    if (t == LB_KV_Q4_0) return head_dim % LB_QK ? 0 : (size_t)head_dim / LB_QK * sizeof(lb_block_q4_0);
    return (size_t)head_dim * (t == LB_KV_F16 ? 2 : 4);
}

size_t lb_kv_block_bytes(const lb_config *c, lb_kv_type t, int block_tokens) {
    return (size_t)2 * c->n_layers * block_tokens * c->n_kv_heads * lb_kv_head_bytes(c->head_dim, t);
}

lb_status lb_kv_cache_new(const lb_backend *be, void *be_ctx, const lb_config *c, lb_kv_type t, int block_tokens, size_t n_blocks,
                          lb_kv_cache **out, lb_error *err) {
    *out = NULL;
    if (block_tokens < 1 || block_tokens > 4096 || n_blocks < 1 || n_blocks > INT32_MAX)
        return lb_fail(err, LB_ERR_ARG, "KV cache: %zu blocks of %d tokens is out of range", n_blocks, block_tokens);
    size_t hb = lb_kv_head_bytes(c->head_dim, t), bb = lb_kv_block_bytes(c, t, block_tokens), total;
    if (!hb) return lb_fail(err, LB_ERR_UNSUPPORTED, "KV cache type %d cannot hold rows of head_dim %d", (int)t, c->head_dim);
    if (!lb_mul_ok(bb, n_blocks, &total))
        return lb_fail(err, LB_ERR_NOMEM, "KV cache: %zu blocks of %zu bytes overflow", n_blocks, bb);
    lb_kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    kv->be = be;
    kv->be_ctx = be_ctx;
    kv->type = t;
    kv->n_layers = c->n_layers;
    kv->block_tokens = block_tokens;
    kv->head_bytes = hb;
    kv->row_bytes = hb * (size_t)c->n_kv_heads;
    kv->block_bytes = bb;
    kv->n_blocks = n_blocks;
    /* not zeroed: attention reads only positions already stored */
    lb_error e2 = {0};
    if (be->alloc(be_ctx, total, "kv", &kv->pool, &e2) == LB_OK) kv->base = kv->pool.data;
    /* bookkeeping (8 bytes a block) is plain heap, so the tracker shows the cache itself */
    kv->refs = calloc(n_blocks, sizeof *kv->refs);
    kv->free_ids = malloc(n_blocks * sizeof *kv->free_ids);
    if (!kv->base || !kv->refs || !kv->free_ids) {
        lb_kv_cache_free(kv);
        return lb_fail(err, LB_ERR_NOMEM, "cannot allocate a KV pool of %zu blocks (%zu bytes)", n_blocks, total);
    }
    for (size_t i = 0; i < n_blocks; i++) kv->free_ids[i] = (int32_t)(n_blocks - 1 - i);
    kv->n_free = n_blocks;
    *out = kv;
    return LB_OK;
}

void lb_kv_cache_free(lb_kv_cache *kv) {
    if (!kv) return;
    if (kv->base) kv->be->free(kv->be_ctx, &kv->pool);
    free(kv->refs);
    free(kv->free_ids);
    free(kv);
}

int lb_kv_block_tokens(const lb_kv_cache *kv) { return kv->block_tokens; }
size_t lb_kv_n_blocks(const lb_kv_cache *kv) { return kv->n_blocks; }
size_t lb_kv_n_free(const lb_kv_cache *kv) { return kv->n_free; }
size_t lb_kv_block_size(const lb_kv_cache *kv) { return kv->block_bytes; }
lb_kv_type lb_kv_type_of(const lb_kv_cache *kv) { return kv->type; }
const void *lb_kv_pool_base(const lb_kv_cache *kv) { return kv->base; }

lb_kv_view lb_kv_view_layer(const lb_kv_cache *kv, int layer) {
    size_t half = (size_t)kv->block_tokens * kv->row_bytes; /* one layer's K (or V) in a block */
    lb_kv_view v = {kv->base, kv->block_bytes, (size_t)2 * layer * half, (size_t)(2 * layer + 1) * half,
                    kv->row_bytes, kv->head_bytes, kv->block_tokens, (int)kv->type};
    return v;
}

int32_t lb_kv_block_alloc(lb_kv_cache *kv) {
    if (!kv->n_free) return -1;
    int32_t b = kv->free_ids[--kv->n_free];
    kv->refs[b] = 1;
    return b;
}

void lb_kv_block_ref(lb_kv_cache *kv, int32_t b) { kv->refs[b]++; }

void lb_kv_block_unref(lb_kv_cache *kv, int32_t b) {
    if (--kv->refs[b] == 0) kv->free_ids[kv->n_free++] = b;
}

int lb_kv_block_refs(const lb_kv_cache *kv, int32_t b) { return kv->refs[b]; }

size_t lb_kv_seq_blocks_needed(const lb_kv_cache *kv, const lb_kv_seq *seq, int n_new) {
    if (n_new <= 0) return 0;
    int bt = kv->block_tokens;
    size_t need = 0;
    int have = seq->n_blocks, want = (seq->n_tokens + n_new + bt - 1) / bt;
    if (want > have) need += (size_t)(want - have);
    /* the block the first new position lands in, if it exists, is partly filled */
    int first = seq->n_tokens / bt;
    if (first < have && kv->refs[seq->blocks[first]] > 1) need++;
    return need;
}

static lb_status grow_table(lb_kv_seq *seq, int n, lb_error *err) {
    if (n <= seq->cap) return LB_OK;
    int cap = seq->cap ? seq->cap : 8;
    while (cap < n) cap *= 2;
    int32_t *p = realloc(seq->blocks, (size_t)cap * sizeof *p);
    if (!p) return lb_fail(err, LB_ERR_NOMEM, "out of memory growing a block table to %d blocks", cap);
    seq->blocks = p;
    seq->cap = cap;
    return LB_OK;
}

lb_status lb_kv_seq_reserve(lb_kv_cache *kv, lb_kv_seq *seq, int n_new, lb_error *err) {
    size_t need = lb_kv_seq_blocks_needed(kv, seq, n_new);
    if (need > kv->n_free)
        return lb_fail(err, LB_ERR_NOMEM,
                       "KV pool exhausted: %zu more blocks needed, %zu of %zu blocks (%d tokens each, %zu tokens) free",
                       need, kv->n_free, kv->n_blocks, kv->block_tokens, kv->n_blocks * (size_t)kv->block_tokens);
    int bt = kv->block_tokens, want = (seq->n_tokens + n_new + bt - 1) / bt;
    lb_status st = grow_table(seq, want, err);
    if (st) return st;
    int first = seq->n_tokens / bt;
    if (first < seq->n_blocks && kv->refs[seq->blocks[first]] > 1) { /* copy-on-write */
        int32_t old = seq->blocks[first], b = lb_kv_block_alloc(kv);
        kv->be->copy(kv->base + (size_t)b * kv->block_bytes, kv->base + (size_t)old * kv->block_bytes, kv->block_bytes);
        lb_kv_block_unref(kv, old);
        seq->blocks[first] = b;
    }
    while (seq->n_blocks < want) seq->blocks[seq->n_blocks++] = lb_kv_block_alloc(kv);
    return LB_OK;
}

lb_status lb_kv_seq_push(lb_kv_cache *kv, lb_kv_seq *seq, int32_t b, lb_error *err) {
    lb_status st = grow_table(seq, seq->n_blocks + 1, err);
    if (st) return st;
    lb_kv_block_ref(kv, b);
    seq->blocks[seq->n_blocks++] = b;
    return LB_OK;
}

lb_status lb_kv_seq_fork(lb_kv_cache *kv, const lb_kv_seq *src, lb_kv_seq *dst, lb_error *err) {
    lb_status st = grow_table(dst, src->n_blocks, err);
    if (st) return st;
    for (int i = 0; i < src->n_blocks; i++) {
        dst->blocks[i] = src->blocks[i];
        lb_kv_block_ref(kv, src->blocks[i]);
    }
    dst->n_blocks = src->n_blocks;
    dst->n_tokens = src->n_tokens;
    return LB_OK;
}

void lb_kv_seq_truncate(lb_kv_cache *kv, lb_kv_seq *seq, int n) {
    int keep = (n + kv->block_tokens - 1) / kv->block_tokens;
    while (seq->n_blocks > keep) lb_kv_block_unref(kv, seq->blocks[--seq->n_blocks]);
    seq->n_tokens = n;
}

void lb_kv_seq_release(lb_kv_cache *kv, lb_kv_seq *seq) {
    for (int i = 0; i < seq->n_blocks; i++) lb_kv_block_unref(kv, seq->blocks[i]);
    free(seq->blocks);
    memset(seq, 0, sizeof *seq);
}
