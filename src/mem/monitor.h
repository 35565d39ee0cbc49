/* Memory monitor internals: the public API is in lowbit.h ("memory (src/mem)"). */
#ifndef LB_MEM_MONITOR_H
#define LB_MEM_MONITOR_H
#include "lowbit.h"

/* Opens the monitor with every path prefixed by root ("" or NULL: the real /proc and /sys).
 * Tests build a fake tree (proc/meminfo, proc/self/..., sys/fs/cgroup/...) to reach the cgroup
 * v2 and v1 code paths on any host. Under a root, peak RSS comes from proc/self/status VmHWM
 * instead of getrusage(). */
lb_status lb_memmon_open_root(const char *root, lb_memmon **out, lb_error *err);

/* Runs the level-change logic of lb_memmon_poll on a given snapshot (tests, replays). */
lb_mem_pressure lb_memmon_feed(lb_memmon *m, const lb_mem_snapshot *s);

#endif
