/* Bump arena and fixed-size block pool, each one tracked chunk (see arena.h). */
#include "mem/arena.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static size_t align_up(size_t n) { return (n + (LB_MEM_ALIGN - 1)) & ~(size_t)(LB_MEM_ALIGN - 1); }

/* ---- bump arena ---------------------------------------------------------------------------- */

struct lb_arena {
    lb_mem_tracker *t;
    char *base;
    size_t cap, used, peak;
};

lb_status lb_arena_new_at(lb_mem_tracker *t, size_t capacity, const char *tag, lb_arena **out,
                          lb_error *err, const char *file, int line) {
    if (!out) return lb_fail(err, LB_ERR_ARG, "lb_arena_new: out is NULL");
    *out = NULL;
    if (!t || !capacity) return lb_fail(err, LB_ERR_ARG, "lb_arena_new: needs a tracker and a capacity > 0");
    if (capacity > SIZE_MAX - 4 * LB_MEM_ALIGN)
        return lb_fail(err, LB_ERR_NOMEM, "lb_arena_new: capacity %zu too large", capacity);
    lb_arena *a = calloc(1, sizeof *a);
    if (!a) return lb_fail(err, LB_ERR_NOMEM, "lb_arena_new: out of memory");
    a->t = t;
    a->cap = align_up(capacity);
    a->base = lb_mem_alloc_at(t, a->cap, tag, file, line);
    if (!a->base) {
        free(a);
        return lb_fail(err, LB_ERR_NOMEM, "lb_arena_new: cannot allocate %zu bytes for '%s'", capacity,
                       tag ? tag : "untagged");
    }
    *out = a;
    return LB_OK;
}

void lb_arena_destroy(lb_arena *a) {
    if (!a) return;
    lb_mem_free(a->t, a->base);
    free(a);
}

void *lb_arena_alloc(lb_arena *a, size_t size) {
    /* used stays a multiple of the alignment, so the next block starts aligned */
    if (!a || a->used == a->cap || size > a->cap - a->used) return NULL;
    void *p = a->base + a->used;
    size_t adv = align_up(size ? size : 1);
    a->used = adv > a->cap - a->used ? a->cap : a->used + adv;
    if (a->used > a->peak) a->peak = a->used;
    return p;
}

size_t lb_arena_mark(const lb_arena *a) { return a ? a->used : 0; }

void lb_arena_reset(lb_arena *a, size_t mark) {
    if (a && mark <= a->used) a->used = mark;
}

size_t lb_arena_used(const lb_arena *a) { return a ? a->used : 0; }
size_t lb_arena_peak(const lb_arena *a) { return a ? a->peak : 0; }
size_t lb_arena_capacity(const lb_arena *a) { return a ? a->cap : 0; }

/* ---- block pool ---------------------------------------------------------------------------- */

struct lb_blockpool {
    lb_mem_tracker *t;
    char *base;
    size_t stride, n, next; /* blocks [next, n) have never been handed out */
    size_t n_free, in_use, peak;
    size_t *free_stack; /* indices of freed blocks: O(1) push/pop without touching block memory */
    uint64_t *used_bits; /* catches double and foreign frees */
};

lb_status lb_blockpool_new_at(lb_mem_tracker *t, size_t block_size, size_t n_blocks, const char *tag,
                         lb_blockpool **out, lb_error *err, const char *file, int line) {
    if (!out) return lb_fail(err, LB_ERR_ARG, "lb_blockpool_new: out is NULL");
    *out = NULL;
    if (!t || !block_size || !n_blocks)
        return lb_fail(err, LB_ERR_ARG, "lb_blockpool_new: needs a tracker, block size > 0 and blocks > 0");
    size_t stride, bytes, book;
    if (block_size > SIZE_MAX / 2 || !lb_mul_ok(stride = align_up(block_size), n_blocks, &bytes) ||
        bytes > SIZE_MAX - 4 * LB_MEM_ALIGN || !lb_mul_ok(n_blocks, sizeof(size_t) + 1, &book))
        return lb_fail(err, LB_ERR_NOMEM, "lb_blockpool_new: %zu blocks of %zu bytes overflow", n_blocks, block_size);
    lb_blockpool *p = calloc(1, sizeof *p);
    if (!p) return lb_fail(err, LB_ERR_NOMEM, "lb_blockpool_new: out of memory");
    p->t = t;
    p->stride = stride;
    p->n = n_blocks;
    p->base = lb_mem_alloc_at(t, bytes, tag, file, line);
    p->free_stack = lb_mem_alloc_at(t, n_blocks * sizeof(size_t), tag, file, line);
    p->used_bits = lb_mem_zalloc_at(t, (n_blocks + 63) / 64 * sizeof(uint64_t), tag, file, line);
    if (!p->base || !p->free_stack || !p->used_bits) {
        lb_blockpool_destroy(p);
        return lb_fail(err, LB_ERR_NOMEM, "lb_blockpool_new: cannot allocate %zu blocks of %zu bytes for '%s'",
                       n_blocks, block_size, tag ? tag : "untagged");
    }
    *out = p;
    return LB_OK;
}

void lb_blockpool_destroy(lb_blockpool *p) {
    if (!p) return;
    lb_mem_free(p->t, p->base);
    lb_mem_free(p->t, p->free_stack);
    lb_mem_free(p->t, p->used_bits);
    free(p);
}

void *lb_blockpool_alloc(lb_blockpool *p) {
    if (!p) return NULL;
    size_t i;
    if (p->n_free) i = p->free_stack[--p->n_free];
    else if (p->next < p->n) i = p->next++;
    else return NULL;
    p->used_bits[i >> 6] |= 1ull << (i & 63);
    if (++p->in_use > p->peak) p->peak = p->in_use;
    return p->base + i * p->stride;
}

size_t lb_blockpool_index(const lb_blockpool *p, const void *block) {
    if (!p || !block) return SIZE_MAX;
    uintptr_t b = (uintptr_t)block, lo = (uintptr_t)p->base;
    if (b < lo) return SIZE_MAX;
    size_t off = (size_t)(b - lo);
    if (off % p->stride || off / p->stride >= p->n) return SIZE_MAX;
    return off / p->stride;
}

lb_status lb_blockpool_free(lb_blockpool *p, void *block, lb_error *err) {
    if (!p || !block) return lb_fail(err, LB_ERR_ARG, "lb_blockpool_free: NULL pool or block");
    size_t i = lb_blockpool_index(p, block);
    if (i == SIZE_MAX) return lb_fail(err, LB_ERR_ARG, "lb_blockpool_free: %p is not a block of this pool", block);
    uint64_t bit = 1ull << (i & 63);
    if (!(p->used_bits[i >> 6] & bit)) return lb_fail(err, LB_ERR_ARG, "lb_blockpool_free: block %zu is already free", i);
    p->used_bits[i >> 6] &= ~bit;
    p->free_stack[p->n_free++] = i;
    p->in_use--;
    return LB_OK;
}

void *lb_blockpool_block(const lb_blockpool *p, size_t index) {
    return p && index < p->n ? p->base + index * p->stride : NULL;
}
size_t lb_blockpool_block_size(const lb_blockpool *p) { return p ? p->stride : 0; }
size_t lb_blockpool_capacity(const lb_blockpool *p) { return p ? p->n : 0; }
size_t lb_blockpool_in_use(const lb_blockpool *p) { return p ? p->in_use : 0; }
size_t lb_blockpool_peak(const lb_blockpool *p) { return p ? p->peak : 0; }
