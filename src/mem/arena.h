/* Tracked allocation for runtime buffers. Three layers over one lb_mem_tracker (lowbit.h):
 *  - lb_mem_alloc: 64-byte aligned blocks, counted per tag; debug mode records file:line;
 *  - lb_arena: a bump arena (one tracked chunk) with mark/reset, for per-step scratch;
 *  - lb_blockpool: equal-size blocks (paged KV cache) with O(1) alloc/free through a free stack; the
 *    chunk is reserved up front but only pages actually written become resident.
 * Every pointer handed out is 64-byte aligned. None of this is thread-safe. */
#ifndef LB_MEM_ARENA_H
#define LB_MEM_ARENA_H
#include <stddef.h>

#include "lowbit.h"

#define LB_MEM_ALIGN 64

/* NULL when size overflows or memory runs out. tag: a short string ("kv"); NULL: "untagged". */
void *lb_mem_alloc_at(lb_mem_tracker *t, size_t size, const char *tag, const char *file, int line);
void *lb_mem_zalloc_at(lb_mem_tracker *t, size_t size, const char *tag, const char *file, int line);
#define lb_mem_alloc(t, size, tag) lb_mem_alloc_at((t), (size), (tag), __FILE__, __LINE__)
#define lb_mem_zalloc(t, size, tag) lb_mem_zalloc_at((t), (size), (tag), __FILE__, __LINE__)
/* NULL is ignored; a pointer the tracker did not hand out (or a double free) is refused with a
 * warning instead of corrupting the heap. */
void lb_mem_free(lb_mem_tracker *t, void *p);
/* The size requested for p (0 when p is not a live tracked block). */
size_t lb_mem_size(const void *p);

/* ---- bump arena ---- */
typedef struct lb_arena lb_arena;

lb_status lb_arena_new_at(lb_mem_tracker *t, size_t capacity, const char *tag, lb_arena **out,
                          lb_error *err, const char *file, int line);
#define lb_arena_new(t, cap, tag, out, err) lb_arena_new_at((t), (cap), (tag), (out), (err), __FILE__, __LINE__)
void lb_arena_destroy(lb_arena *a);
/* NULL when the arena is full (it never grows: its capacity is part of the memory plan). */
void *lb_arena_alloc(lb_arena *a, size_t size);
size_t lb_arena_mark(const lb_arena *a);
/* Frees everything allocated after mark (a value from lb_arena_mark; 0: everything). */
void lb_arena_reset(lb_arena *a, size_t mark);
size_t lb_arena_used(const lb_arena *a);
size_t lb_arena_peak(const lb_arena *a);
size_t lb_arena_capacity(const lb_arena *a);

/* ---- fixed-size block pool ---- */
typedef struct lb_blockpool lb_blockpool;

lb_status lb_blockpool_new_at(lb_mem_tracker *t, size_t block_size, size_t n_blocks, const char *tag,
                         lb_blockpool **out, lb_error *err, const char *file, int line);
#define lb_blockpool_new(t, bs, n, tag, out, err) lb_blockpool_new_at((t), (bs), (n), (tag), (out), (err), __FILE__, __LINE__)
void lb_blockpool_destroy(lb_blockpool *p);
/* NULL when all blocks are in use. */
void *lb_blockpool_alloc(lb_blockpool *p);
/* LB_ERR_ARG (nothing changes) for a pointer outside the pool, not at a block start, or free. */
lb_status lb_blockpool_free(lb_blockpool *p, void *block, lb_error *err);
/* Block index <-> pointer, for block tables (paged KV): index is in [0, capacity). */
size_t lb_blockpool_index(const lb_blockpool *p, const void *block);
void *lb_blockpool_block(const lb_blockpool *p, size_t index);
size_t lb_blockpool_block_size(const lb_blockpool *p); /* the stride: block_size rounded up to 64 */
size_t lb_blockpool_capacity(const lb_blockpool *p);
size_t lb_blockpool_in_use(const lb_blockpool *p);
size_t lb_blockpool_peak(const lb_blockpool *p);

#endif
