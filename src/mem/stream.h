/* Weights streamed from the mapped file layer by layer, for models larger than the memory
 * budget. The weights stay where the loader mapped them (zero-copy); what streaming changes is
 * which of their pages are resident: a prefetch thread faults the next units of the window in
 * (MADV_WILLNEED, then MADV_POPULATE_READ) while the current one computes, and a unit the
 * forward pass is done with is dropped from the process (MADV_DONTNEED) and from the page cache
 * (POSIX_FADV_DONTNEED), so the resident weights stay within window units and the machine's
 * page cache is not filled with a model that will not fit anyway.
 * Units: 0 .. n_layers - 1 are the layers (every blk.N.* tensor), n_layers is the head
 * (output.weight, or token_embd.weight when tied). Everything else (norms, the untied token
 * embedding, of which only the rows looked up become resident) is the fixed part. */
#ifndef LB_MEM_STREAM_H
#define LB_MEM_STREAM_H
#include "core/model.h"

typedef struct lb_stream lb_stream;

/* The sizes the planner needs (page-rounded): the largest layer, the head, the fixed part
 * (tensors converted at load, the rows of max_batch token lookups), the number of units.
 * Returns 0 when the model can stream; else 1 with why[] saying what prevents it (a restored
 * .lbz, no layers). */
int lb_stream_sizes(const lb_model *m, int max_batch, uint64_t *unit_max, uint64_t *head, uint64_t *fixed, uint32_t *n_units, char *why, size_t cap);

/* window: units resident at once (>= 1; 1 leaves no room to read ahead). Opens the mapped files
 * again (for posix_fadvise) and starts the prefetch thread. */
lb_status lb_stream_new(const lb_model *m, int window, lb_stream **out, lb_error *err);
void lb_stream_free(lb_stream *s);
int lb_stream_window(const lb_stream *s);
uint64_t lb_stream_window_bytes(const lb_stream *s); /* the most window consecutive units hold */
/* Waits until unit u is resident (its prefetch finished) and lets the prefetcher read ahead.
 * Units are expected in order 0, 1, ..., n_units - 1, 0, ...; another unit (a pass that stopped
 * on an error) restarts the window there. An error of the prefetcher is returned here. */
lb_status lb_stream_acquire(lb_stream *s, int u, lb_error *err);
/* The forward pass is done with unit u: its pages leave the process and the page cache. */
void lb_stream_release(lb_stream *s, int u);
/* Waits until the prefetcher has filled its window (or failed): a memory report taken after a
 * pass then sees the peak the window reaches, not a moment of it half read. */
void lb_stream_settle(lb_stream *s);
/* Drops the pages of one tensor outside the units (the token embedding after a lookup). */
void lb_stream_drop_tensor(lb_stream *s, const lb_tensor *t);

#endif
