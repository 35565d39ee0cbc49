/* Pressure level from a snapshot: the worst of available memory, the cgroup working set and
 * PSI. Thresholds are documented in lowbit.h next to lb_mem_pressure. */
#include <stdio.h>

#include "lowbit.h"

typedef struct signal {
    lb_mem_pressure level;
    const char *fmt; /* formatted only when a reason is asked for: the level is on hot paths */
    double value;
} signal;

/* Level for a value against ascending thresholds t[0..3] for LOW..CRITICAL (t < 0: unused). */
static lb_mem_pressure rank_above(double v, const double t[4]) {
    lb_mem_pressure l = LB_MEM_PRESSURE_NONE;
    for (int i = 0; i < 4; i++)
        if (t[i] >= 0 && v > t[i]) l = (lb_mem_pressure)(i + 1);
    return l;
}

static void consider(signal *best, lb_mem_pressure l, const char *fmt, double v) {
    if (l <= best->level) return;
    best->level = l;
    best->fmt = fmt;
    best->value = v;
}

static signal evaluate(const lb_mem_snapshot *s) {
    signal best = {LB_MEM_PRESSURE_NONE, NULL, 0};
    if (s->sys_total) {
        /* used share of RAM: available < 25/15/8/3 % of total */
        static const double used[4] = {75, 85, 92, 97};
        double avail = 100.0 * (double)s->sys_available / (double)s->sys_total;
        consider(&best, rank_above(100.0 - avail, used), "available memory %.1f%% of total", avail);
    }
    if (s->cgroup_present && s->cgroup_limit != UINT64_MAX && s->cgroup_limit > 0) {
        /* inactive file cache is what the kernel reclaims first, so it is not pressure */
        uint64_t ws = s->cgroup_usage;
        if (s->cgroup_stat_present) ws -= s->cgroup_inactive_file < ws ? s->cgroup_inactive_file : ws;
        static const double t[4] = {75, 85, 92, 97};
        double pct = 100.0 * (double)ws / (double)s->cgroup_limit;
        consider(&best, rank_above(pct, t), "cgroup working set %.1f%% of its limit", pct);
    }
    if (s->psi_present) {
        static const double some[4] = {1, 10, 25, 50}, full[4] = {-1, 1, 5, 20};
        consider(&best, rank_above(s->psi_some.avg10, some), "PSI some avg10 %.2f%%", s->psi_some.avg10);
        consider(&best, rank_above(s->psi_full.avg10, full), "PSI full avg10 %.2f%%", s->psi_full.avg10);
    }
    return best;
}

lb_mem_pressure lb_mem_pressure_level(const lb_mem_snapshot *s) {
    return s ? evaluate(s).level : LB_MEM_PRESSURE_NONE;
}

const char *lb_mem_pressure_reason(const lb_mem_snapshot *s, char *buf, size_t cap) {
    if (!buf || !cap) return buf;
    if (!s) {
        snprintf(buf, cap, "no snapshot");
        return buf;
    }
    signal b = evaluate(s);
    if (b.fmt) snprintf(buf, cap, b.fmt, b.value);
    else snprintf(buf, cap, "no pressure");
    return buf;
}

const char *lb_mem_pressure_name(lb_mem_pressure p) {
    switch (p) {
    case LB_MEM_PRESSURE_NONE: return "none";
    case LB_MEM_PRESSURE_LOW: return "low";
    case LB_MEM_PRESSURE_MEDIUM: return "medium";
    case LB_MEM_PRESSURE_HIGH: return "high";
    case LB_MEM_PRESSURE_CRITICAL: return "critical";
    }
    return "unknown";
}
