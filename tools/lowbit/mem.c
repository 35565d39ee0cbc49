/* lowbit mem: system, cgroup, pressure and process memory, as a table or JSON, once or watched. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static volatile sig_atomic_t g_stop; /* set by SIGINT/SIGTERM while watching */

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static void usage(FILE *f) {
    fputs("usage: lowbit mem [--json] [--watch SECONDS] [--count N] [--detailed]\n\n"
          "Shows system memory (/proc/meminfo), the cgroup limit and usage, memory pressure (PSI)\n"
          "and this process's memory, with the pressure level lowbit reacts to.\n\n"
          "  --json             one JSON object per snapshot (numbers in bytes, percents for PSI)\n"
          "  --watch SECONDS    repeat every SECONDS (fractions allowed) until interrupted\n"
          "  --count N          stop after N snapshots (with or without --watch; default interval 1 s)\n"
          "  --detailed         add /proc/self/status and smaps_rollup (PSS, shmem, swap, locked)\n",
          f);
}

/* ---- table ------------------------------------------------------------------------------- */

static const char *hb(uint64_t n, char *buf) { return cli_human_bytes(n, buf, 32); }

static void row(const char *name, uint64_t v) {
    char b[32];
    printf("  %-16s %12s\n", name, hb(v, b));
}

static void row_pct(const char *name, uint64_t v, uint64_t of) {
    char b[32];
    printf("  %-16s %12s  (%.1f%%)\n", name, hb(v, b), of ? 100.0 * (double)v / (double)of : 0.0);
}

/* A number both printers show: JSON key, table label, value, and (when not 0) the total the
 * table shows it as a percent of. */
typedef struct mem_field {
    const char *key, *label;
    uint64_t v, pct_of;
} mem_field;

#define N_SYSTEM 6
#define N_PROCESS 14

static void system_fields(const lb_mem_snapshot *s, mem_field f[N_SYSTEM]) {
    const mem_field all[N_SYSTEM] = {
        {"total", "total", s->sys_total, 0},           {"available", "available", s->sys_available, s->sys_total},
        {"free", "free", s->sys_free, 0},              {"cached", "cached", s->sys_cached, 0},
        {"swap_total", "swap total", s->sys_swap_total, 0}, {"swap_free", "swap free", s->sys_swap_free, 0}};
    memcpy(f, all, sizeof all);
}

/* The process numbers, the detailed ones only when read; returns how many. */
static int process_fields(const lb_mem_snapshot *s, mem_field f[N_PROCESS]) {
    const mem_field all[N_PROCESS] = {
        {"rss", "rss", s->proc_rss, 0},
        {"anon", "anon", s->proc_anon, 0},
        {"file", "file+shmem", s->proc_file, 0},
        {"peak_rss", "peak rss", s->proc_peak_rss, 0},
        {"vm_size", "vm size", s->proc_vm_size, 0},
        {"shmem", "shmem", s->proc_shmem, 0}, /* detailed from here on */
        {"swap", "swap", s->proc_swap, 0},
        {"hwm", "hwm (VmHWM)", s->proc_hwm, 0},
        {"pss", "pss", s->proc_pss, 0},
        {"pss_anon", "pss anon", s->proc_pss_anon, 0},
        {"pss_file", "pss file", s->proc_pss_file, 0},
        {"pss_shmem", "pss shmem", s->proc_pss_shmem, 0},
        {"private_dirty", "private dirty", s->proc_private_dirty, 0},
        {"locked", "locked", s->proc_locked, 0}};
    memcpy(f, all, sizeof all);
    return s->detailed_present ? N_PROCESS : 5;
}

static void rows(const mem_field *f, int n) {
    for (int i = 0; i < n; i++) {
        if (f[i].pct_of) row_pct(f[i].label, f[i].v, f[i].pct_of);
        else row(f[i].label, f[i].v);
    }
}

static void print_table(const lb_memmon *m, const lb_mem_snapshot *s) {
    char why[128];
    mem_field f[N_PROCESS];
    puts("system");
    system_fields(s, f);
    rows(f, N_SYSTEM);
    if (s->cgroup_present) {
        printf("cgroup v%d (%s)\n", s->cgroup_version, lb_memmon_cgroup_path(m));
        if (s->cgroup_limit == UINT64_MAX) printf("  %-16s %12s\n", "limit", "none");
        else row("limit", s->cgroup_limit);
        if (s->cgroup_limit == UINT64_MAX) row("usage", s->cgroup_usage);
        else row_pct("usage", s->cgroup_usage, s->cgroup_limit);
        if (s->cgroup_peak_present) row("peak", s->cgroup_peak);
        if (s->cgroup_stat_present) {
            row("anon", s->cgroup_anon);
            row("file", s->cgroup_file);
            row("inactive file", s->cgroup_inactive_file);
        }
    } else {
        puts("cgroup: not in a memory-limited cgroup");
    }
    if (s->psi_present) {
        puts("pressure (PSI, % of time stalled)");
        printf("  %-16s %6.2f %6.2f %6.2f   (avg10 avg60 avg300)\n", "some", s->psi_some.avg10, s->psi_some.avg60,
               s->psi_some.avg300);
        printf("  %-16s %6.2f %6.2f %6.2f\n", "full", s->psi_full.avg10, s->psi_full.avg60, s->psi_full.avg300);
    } else {
        puts("pressure: PSI not available");
    }
    printf("  %-16s %12s  (%s)\n", "level", lb_mem_pressure_name(lb_mem_pressure_level(s)),
           lb_mem_pressure_reason(s, why, sizeof why));
    puts("process");
    rows(f, process_fields(s, f));
}

/* ---- JSON -------------------------------------------------------------------------------- */

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void jnum(const char *key, uint64_t v, int present, int last) {
    if (present) printf("\"%s\":%llu%s", key, (unsigned long long)v, last ? "" : ",");
    else printf("\"%s\":null%s", key, last ? "" : ",");
}

static void jpsi(const char *key, const lb_psi_avg *a, int present, int last) {
    if (present) printf("\"%s\":{\"avg10\":%.2f,\"avg60\":%.2f,\"avg300\":%.2f}", key, a->avg10, a->avg60, a->avg300);
    else printf("\"%s\":null", key);
    fputs(last ? "" : ",", stdout);
}

/* The fields as "key":value pairs, comma-separated. */
static void jfields(const mem_field *f, int n) {
    for (int i = 0; i < n; i++) jnum(f[i].key, f[i].v, 1, i + 1 == n);
}

static void print_json(const lb_memmon *m, const lb_mem_snapshot *s) {
    char why[128];
    mem_field f[N_PROCESS];
    printf("{\"time_ns\":%llu,", (unsigned long long)s->time_ns);
    printf("\"system\":{");
    system_fields(s, f);
    jfields(f, N_SYSTEM);
    int cg = s->cgroup_present, st = cg && s->cgroup_stat_present;
    printf("},\"cgroup\":{\"present\":%s,", cg ? "true" : "false");
    if (cg) printf("\"version\":%d,\"path\":", s->cgroup_version), json_str(lb_memmon_cgroup_path(m)), putchar(',');
    else printf("\"version\":null,\"path\":null,");
    jnum("limit", s->cgroup_limit, cg && s->cgroup_limit != UINT64_MAX, 0);
    jnum("usage", s->cgroup_usage, cg, 0);
    jnum("peak", s->cgroup_peak, cg && s->cgroup_peak_present, 0);
    jnum("anon", s->cgroup_anon, st, 0);
    jnum("file", s->cgroup_file, st, 0);
    jnum("inactive_file", s->cgroup_inactive_file, st, 1);
    printf("},\"pressure\":{\"present\":%s,", s->psi_present ? "true" : "false");
    jpsi("some", &s->psi_some, s->psi_present, 0);
    jpsi("full", &s->psi_full, s->psi_present, 1);
    printf("},\"level\":\"%s\",\"level_reason\":", lb_mem_pressure_name(lb_mem_pressure_level(s)));
    json_str(lb_mem_pressure_reason(s, why, sizeof why));
    printf(",\"process\":{");
    jfields(f, process_fields(s, f));
    puts("}}");
}

/* ---- main -------------------------------------------------------------------------------- */

/* Sleeps up to sec seconds; returns early when a stop signal arrives. */
static void pause_for(double sec) {
    struct timespec ts = {(time_t)sec, (long)((sec - (double)(time_t)sec) * 1e9)};
    while (!g_stop && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int cmd_mem(int argc, char **argv) {
    int json = 0, detailed = 0, watch = 0;
    double interval = 1.0;
    long long count = 1;
    int count_set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq = strchr(a, '=');
        size_t alen = eq ? (size_t)(eq - a) : strlen(a);
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
#define IS(opt) (alen == strlen(opt) && !strncmp(a, opt, alen))
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return CLI_OK;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--detailed")) {
            detailed = 1;
        } else if (IS("--watch")) {
            if (!cli_float("--watch", val, &interval)) return CLI_USAGE;
            if (!(interval > 0 && interval <= 86400)) {
                fprintf(stderr, "lowbit: --watch: '%s' must be more than 0 and at most 86400 seconds\n", val);
                return CLI_USAGE;
            }
            watch = 1;
            if (!eq) i++;
        } else if (IS("--count")) {
            if (!cli_int("--count", val, 1, 1000000000, &count)) return CLI_USAGE;
            count_set = 1;
            if (!eq) i++;
        } else {
            fprintf(stderr, "lowbit: mem: unknown option '%s'\n", a);
            usage(stderr);
            return CLI_USAGE;
        }
#undef IS
    }
    if (watch && !count_set) count = -1; /* until interrupted */

    lb_error err = {0};
    lb_memmon *m;
    if (lb_memmon_open(&m, &err)) return cli_error(&err);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: the signal must cut the sleep short */
    sigemptyset(&sa.sa_mask);
    if (watch || count > 1) {
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }
    int rc = CLI_OK;
    for (long long n = 0; (count < 0 || n < count) && !g_stop; n++) {
        if (n) pause_for(interval);
        if (g_stop) break;
        lb_mem_snapshot s;
        lb_status st = detailed ? lb_memmon_snapshot_detailed(m, &s, &err) : lb_memmon_snapshot(m, &s, &err);
        if (st) {
            rc = cli_error(&err);
            break;
        }
        if (json) print_json(m, &s);
        else {
            if (n) putchar('\n');
            print_table(m, &s);
        }
        fflush(stdout);
    }
    lb_memmon_close(m);
    return rc;
}
