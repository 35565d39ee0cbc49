/* lb_mem_guard: the engine's use of the pressure callbacks (the policy: lowbit.h, "memory guard"). */
#include "lowbit.h"

#include <stdlib.h>

#include "core/error.h"
#include "mem/monitor.h"

struct lb_mem_guard {
    lb_memmon *mon;
    unsigned every, count;
    unsigned long polls;
    lb_mem_pressure level;
    int warned, poll_failed;
    char reason[128];
};

static void on_change(lb_mem_pressure old_level, lb_mem_pressure new_level, const lb_mem_snapshot *s, void *user) {
    (void)old_level;
    lb_mem_guard *g = user;
    g->level = new_level;
    lb_mem_pressure_reason(s, g->reason, sizeof g->reason);
}

lb_status lb_mem_guard_open(const char *root, unsigned every, lb_mem_guard **out, lb_error *err) {
    if (!out) return lb_fail(err, LB_ERR_ARG, "lb_mem_guard_open: out is NULL");
    *out = NULL;
    lb_mem_guard *g = calloc(1, sizeof *g);
    if (!g) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    g->every = every ? every : 8;
    lb_status st = root && *root ? lb_memmon_open_root(root, &g->mon, err) : lb_memmon_open(&g->mon, err);
    if (!st) st = lb_memmon_on_pressure(g->mon, on_change, g, err);
    if (st) {
        lb_mem_guard_close(g);
        return st;
    }
    *out = g;
    return LB_OK;
}

void lb_mem_guard_close(lb_mem_guard *g) {
    if (!g) return;
    lb_memmon_close(g->mon);
    free(g);
}

lb_mem_guard_action lb_mem_guard_step(lb_mem_guard *g) {
    if (!g || g->count++ % g->every) return LB_MEM_GUARD_CONTINUE;
    lb_error err;
    g->polls++;
    if (lb_memmon_poll(g->mon, NULL, &err)) {
        if (!g->poll_failed) lb_warn("memory guard: %s", err.msg);
        g->poll_failed = 1;
        return LB_MEM_GUARD_CONTINUE;
    }
    if (g->level >= LB_MEM_PRESSURE_CRITICAL) return LB_MEM_GUARD_STOP;
    if (g->level >= LB_MEM_PRESSURE_HIGH && !g->warned) {
        g->warned = 1;
        return LB_MEM_GUARD_WARN;
    }
    return LB_MEM_GUARD_CONTINUE;
}

lb_mem_pressure lb_mem_guard_level(const lb_mem_guard *g) { return g ? g->level : LB_MEM_PRESSURE_NONE; }
const char *lb_mem_guard_reason(const lb_mem_guard *g) { return g && g->reason[0] ? g->reason : "no pressure"; }
unsigned long lb_mem_guard_polls(const lb_mem_guard *g) { return g ? g->polls : 0; }
