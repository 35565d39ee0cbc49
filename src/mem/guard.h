/* Memory guard for generation loops: polls the monitor every few tokens and says what to do.
 * The reaction (documented for `lowbit run`):
 *   HIGH      warn once; the KV cache is preallocated, so generation itself adds no heap, but
 *             its pages become resident as the context fills;
 *   CRITICAL  stop generating now: the kernel is about to reclaim hot pages (our mmapped
 *             weights) or OOM-kill, and a stopped run is better than a thrashing machine. */
#ifndef LB_MEM_GUARD_H
#define LB_MEM_GUARD_H
#include "lowbit.h"

typedef enum lb_mem_guard_action {
    LB_MEM_GUARD_CONTINUE = 0,
    LB_MEM_GUARD_WARN, /* first time the level reached HIGH */
    LB_MEM_GUARD_STOP  /* CRITICAL */
} lb_mem_guard_action;

typedef struct lb_mem_guard lb_mem_guard;

/* root: NULL or "" for the real /proc and /sys, else a fake tree (lb_memmon_open_root).
 * every: poll once per this many steps (0: 8); the first step polls. */
lb_status lb_mem_guard_open(const char *root, unsigned every, lb_mem_guard **out, lb_error *err);
void lb_mem_guard_close(lb_mem_guard *g);
/* One call per generated token. A failed snapshot counts as no pressure (logged once). */
lb_mem_guard_action lb_mem_guard_step(lb_mem_guard *g);
/* Level and the signal that set it at the last change ("available memory 2.1% of total"). */
lb_mem_pressure lb_mem_guard_level(const lb_mem_guard *g);
const char *lb_mem_guard_reason(const lb_mem_guard *g);
unsigned long lb_mem_guard_polls(const lb_mem_guard *g);

#endif
