/* Compressed lossless tensor deltas ("z" encoding, docs/delta.md). A tensor's delta is a run of
 * chunks of LB_ZD_CHUNK elements (the last one shorter). Each element's delta is the difference
 * of the fine-tune's and the base's bit patterns, taken after mapping the patterns to integers
 * that order like the float values (so a small change across zero stays a small number; es = 1:
 * the raw bytes of a quantized tensor, differences taken mod 256), then
 * zigzagged, split into byte planes and each plane coded with zstd. A chunk is
 *   u32 size[es]   per plane: 0 = all zero, es-wide chunk length = stored raw, else a zstd frame
 *   u64 xxh64      of the decoded planes, plane after plane
 *   the plane payloads in plane order
 * so every chunk is checked when decoded and a tensor is decoded without its neighbours. */
#ifndef LB_DELTA_ZDIFF_H
#define LB_DELTA_ZDIFF_H
#include <stddef.h>
#include <stdint.h>

#include "lowbit.h"

#define LB_ZD_CHUNK 8192u

/* Worst-case bytes of one encoded chunk of n elements of es bytes. */
size_t lb_zd_bound(uint32_t es, uint32_t n);

/* Encodes n (<= LB_ZD_CHUNK) elements of base a and fine-tune b (es = 1, 2 or 4) into out (room for
 * lb_zd_bound); returns its length, 0 on a zstd failure. *changed: elements that differ.
 * zc: a ZSTD_CCtx. */
size_t lb_zd_encode(void *zc, int level, const uint8_t *a, const uint8_t *b, uint32_t es, uint32_t n, uint8_t *out,
                    uint64_t *changed);

/* Encoding many chunks at once across threads: lb_zd_span_encode encodes up to LB_ZD_SPAN
 * consecutive chunks (cnt <= LB_ZD_SPAN * LB_ZD_CHUNK elements), each thread with its own
 * ZSTD_CCtx; chunk k's bytes are then at lb_zd_span_chunk. The output is the same as
 * lb_zd_encode chunk after chunk, whatever the thread count. */
#define LB_ZD_SPAN 128u
typedef struct lb_zd_span lb_zd_span;
/* n_threads: 0 = online CPUs. NULL on allocation failure. */
lb_zd_span *lb_zd_span_new(int n_threads, int level);
void lb_zd_span_free(lb_zd_span *z);
/* Returns the chunk count, 0 on a zstd failure. *changed: elements that differ. */
uint32_t lb_zd_span_encode(lb_zd_span *z, const uint8_t *a, const uint8_t *b, uint32_t es, uint64_t cnt, uint64_t *changed);
const uint8_t *lb_zd_span_chunk(const lb_zd_span *z, uint32_t k, size_t *len);

/* Length of the chunk at p (avail bytes left), checking its header: 0 when it is malformed. */
size_t lb_zd_chunk_len(const uint8_t *p, size_t avail, uint32_t es, uint32_t n);

/* Decodes the chunk at p (checked by lb_zd_chunk_len) and applies elements [from, to) of it to
 * dst (dst[0] holds element `from`). LB_ERR_CORRUPT when a plane does not decode or the chunk
 * fails its checksum. */
lb_status lb_zd_apply(const uint8_t *p, uint32_t es, uint32_t n, uint32_t from, uint32_t to, uint8_t *dst,
                      const char *what, lb_error *err);

#endif
