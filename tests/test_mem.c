/* Memory module: monitor fields against /proc and cgroup files read here independently, fake
 * /proc trees for cgroup v2/v1/none, pressure levels, tracked allocator / arena / pool against
 * shadow models, size parsing and the budget planner against brute force. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "mem/arena.h"
#include "mem/budget.h"
#include "mem/monitor.h"

#define MiB (1024ull * 1024)
#define GiB (1024ull * MiB)

/* ---- independent readers ------------------------------------------------------------------ */

/* Value of "Key: N kB" in a /proc file, in bytes; -1 when missing. */
static long long proc_kb(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[512];
    long long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            v = atoll(line + kl + 1) * 1024;
            break;
        }
    fclose(f);
    return v;
}

static int read_text(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
    return 1;
}

static long long llabs_diff(uint64_t a, uint64_t b) { return a > b ? (long long)(a - b) : (long long)(b - a); }

/* ---- real monitor ---------------------------------------------------------------------------- */

static void test_real_monitor(void) {
    lb_error err;
    lb_memmon *m;
    CHECK(lb_memmon_open(&m, &err) == LB_OK, "%s", err.msg);
    if (!m) return;
    lb_mem_snapshot s;
    CHECK(lb_memmon_snapshot(m, &s, &err) == LB_OK, "%s", err.msg);
    long long total = proc_kb("/proc/meminfo", "MemTotal"), avail = proc_kb("/proc/meminfo", "MemAvailable");
    CHECK(total > 0 && s.sys_total == (uint64_t)total, "MemTotal %llu vs %lld", (unsigned long long)s.sys_total, total);
    CHECK(llabs_diff(s.sys_available, (uint64_t)avail) < (long long)(256 * MiB), "MemAvailable %llu vs %lld",
          (unsigned long long)s.sys_available, avail);
    CHECK(s.sys_swap_total == (uint64_t)proc_kb("/proc/meminfo", "SwapTotal"));
    CHECK(s.sys_free <= s.sys_total && s.sys_available <= s.sys_total);
    CHECK(s.proc_rss == s.proc_anon + s.proc_file && s.proc_vm_size >= s.proc_rss);
    CHECK(s.proc_peak_rss >= s.proc_rss);
    CHECK(s.time_ns > 0 && !s.detailed_present);

    /* touching 64 MiB grows RSS (and anonymous RSS) by about 64 MiB */
    size_t big = 64 * MiB;
    lb_mem_snapshot before, after, detail;
    lb_memmon_snapshot(m, &before, &err);
    /* mmap and volatile stores: a compiler may drop a malloc+memset+free whose result is unused */
    void *mp = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(mp != MAP_FAILED);
    if (mp != MAP_FAILED) {
        volatile char *buf = mp;
        for (size_t off = 0; off < big; off += 4096) buf[off] = 0x5a;
        lb_memmon_snapshot(m, &after, &err);
        long long vmrss = proc_kb("/proc/self/status", "VmRSS");
        long long grow = (long long)after.proc_rss - (long long)before.proc_rss;
        long long grow_anon = (long long)after.proc_anon - (long long)before.proc_anon;
        /* up to 64 + 8 MiB: under ASan the stores also touch the 1/8-size shadow of the buffer */
        CHECK(grow > (long long)(60 * MiB) && grow <= (long long)(76 * MiB), "rss grew by %lld", grow);
        CHECK(grow_anon > (long long)(60 * MiB) && grow_anon <= (long long)(76 * MiB), "anon grew by %lld", grow_anon);
        CHECK(llabs_diff(after.proc_rss, (uint64_t)vmrss) < (long long)(4 * MiB), "rss %llu vs VmRSS %lld",
              (unsigned long long)after.proc_rss, vmrss);
        CHECK(after.proc_peak_rss >= after.proc_rss);
        CHECK(lb_memmon_snapshot_detailed(m, &detail, &err) == LB_OK && detail.detailed_present);
        long long hwm = proc_kb("/proc/self/status", "VmHWM");
        CHECK(llabs_diff(detail.proc_hwm, (uint64_t)hwm) < (long long)(4 * MiB), "VmHWM %llu vs %lld",
              (unsigned long long)detail.proc_hwm, hwm);
        CHECK(detail.proc_pss > 60 * MiB && detail.proc_pss_anon > 60 * MiB, "pss %llu",
              (unsigned long long)detail.proc_pss);
        CHECK(detail.proc_peak_rss >= detail.proc_hwm);
        munmap(mp, big);
    }

    /* cgroup: find the group the simple way and compare with files read directly */
    char cg[8192], dir[PATH_MAX] = "", file[PATH_MAX + 64], txt[4096];
    int version = 0;
    if (read_text("/proc/self/cgroup", cg, sizeof cg)) {
        char *l2 = strstr(cg, "0::"), *l1 = strstr(cg, ":memory:");
        static const char *v2mounts[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
        for (int i = 0; l2 && i < 2 && !version; i++) {
            char p[2048];
            sscanf(l2 + 3, "%2000[^\n]", p);
            snprintf(dir, sizeof dir, "%s%s", v2mounts[i], strcmp(p, "/") ? p : "");
            snprintf(file, sizeof file, "%s/memory.current", dir);
            if (access(file, R_OK) == 0) version = 2;
        }
        if (!version && l1) {
            char p[2048];
            sscanf(l1 + 8, "%2000[^\n]", p);
            snprintf(dir, sizeof dir, "/sys/fs/cgroup/memory%s", strcmp(p, "/") ? p : "");
            snprintf(file, sizeof file, "%s/memory.usage_in_bytes", dir);
            if (access(file, R_OK) == 0) version = 1;
        }
    }
    lb_memmon_snapshot_detailed(m, &s, &err);
    if (version) {
        CHECK(s.cgroup_present && s.cgroup_version == version, "present %d version %d vs %d", s.cgroup_present,
              s.cgroup_version, version);
        CHECK(!strcmp(lb_memmon_cgroup_path(m), dir), "path %s vs %s", lb_memmon_cgroup_path(m), dir);
        snprintf(file, sizeof file, "%s/%s", dir, version == 2 ? "memory.current" : "memory.usage_in_bytes");
        read_text(file, txt, sizeof txt);
        CHECK(llabs_diff(s.cgroup_usage, strtoull(txt, NULL, 10)) < (long long)(32 * MiB), "usage %llu vs %s",
              (unsigned long long)s.cgroup_usage, txt);
        /* the limit: smallest along the path; "max" or v1's huge number mean none */
        uint64_t lim = UINT64_MAX;
        char walk[PATH_MAX];
        snprintf(walk, sizeof walk, "%s", dir);
        for (;;) {
            snprintf(file, sizeof file, "%s/%s", walk, version == 2 ? "memory.max" : "memory.limit_in_bytes");
            if (read_text(file, txt, sizeof txt) && strncmp(txt, "max", 3)) {
                unsigned long long v = strtoull(txt, NULL, 10);
                if (v < (1ull << 62) && v < lim) lim = v;
            }
            char *sl = strrchr(walk, '/');
            if (!sl || sl == walk || strlen(walk) <= strlen("/sys/fs/cgroup/memory")) break;
            *sl = 0;
        }
        CHECK(s.cgroup_limit == lim, "limit %llu vs %llu", (unsigned long long)s.cgroup_limit, (unsigned long long)lim);
        CHECK(s.cgroup_stat_present, "detailed snapshots read memory.stat");
        snprintf(file, sizeof file, "%s/memory.stat", dir);
        if (read_text(file, txt, sizeof txt)) {
            const char *key = version == 2 ? "\nanon " : "\ntotal_rss ";
            char *k = strstr(txt, key);
            if (!k && version == 2 && !strncmp(txt, "anon ", 5)) k = txt - 1;
            CHECK(k && llabs_diff(s.cgroup_anon, strtoull(k + strlen(key), NULL, 10)) < (long long)(32 * MiB),
                  "cgroup anon %llu", (unsigned long long)s.cgroup_anon);
        }
    } else {
        CHECK(!s.cgroup_present, "no memory cgroup found here, monitor says %s", lb_memmon_cgroup_path(m));
    }

    /* PSI against the file */
    if (read_text("/proc/pressure/memory", txt, sizeof txt)) {
        double a10, a60, a300;
        CHECK(sscanf(txt, "some avg10=%lf avg60=%lf avg300=%lf", &a10, &a60, &a300) == 3);
        CHECK(s.psi_present && s.psi_some.avg300 >= a300 - 1.0 && s.psi_some.avg300 <= a300 + 1.0, "psi %f vs %f",
              s.psi_some.avg300, a300);
    }

    lb_mem_pressure lvl = LB_MEM_PRESSURE_CRITICAL;
    CHECK(lb_memmon_poll(m, &lvl, &err) == LB_OK);
    lb_memmon_snapshot(m, &s, &err);
    CHECK(lvl == lb_mem_pressure_level(&s) || lvl + 1 == lb_mem_pressure_level(&s) ||
          lvl == lb_mem_pressure_level(&s) + 1);
    lb_memmon_close(m);
    CHECK(lb_memmon_snapshot(NULL, &s, &err) == LB_ERR_ARG);
}

/* ---- fake /proc trees ---------------------------------------------------------------------- */

static void put(const char *root, const char *rel, const char *text) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s%s", root, rel);
    for (char *s = p + strlen(root) + 1; *s; s++) /* mkdir -p the parents */
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void rm_rf(const char *root) {
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
}

static void fake_proc(const char *root) {
    put(root, "/proc/meminfo",
        "MemTotal:        1000000 kB\nMemFree:          300000 kB\nMemAvailable:     400000 kB\n"
        "Buffers:            1000 kB\nCached:           123456 kB\nSwapCached:            0 kB\n"
        "SwapTotal:        2048 kB\nSwapFree:         1024 kB\n");
    long ps = sysconf(_SC_PAGESIZE);
    (void)ps;
    put(root, "/proc/self/statm", "5000 3000 1000 10 0 2000 0\n");
    put(root, "/proc/self/status", "Name:\tx\nVmHWM:\t   20000 kB\nVmRSS:\t   12000 kB\nRssShmem:\t     100 kB\n"
                                   "VmSwap:\t      7 kB\n");
}

static void test_fake_trees(void) {
    char root[] = "/tmp/lb_test_mem_XXXXXX";
    if (!mkdtemp(root)) {
        CHECK(0, "mkdtemp");
        return;
    }
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    lb_error err;
    lb_memmon *m = NULL;
    lb_mem_snapshot s;

    /* no meminfo: the one file a monitor cannot do without */
    CHECK(lb_memmon_open_root(root, &m, &err) == LB_ERR_IO && strstr(err.msg, "meminfo"), "%s", err.msg);

    /* cgroup v2, mounted at a path with a space, a tighter limit on the parent, PSI absent */
    fake_proc(root);
    put(root, "/proc/self/cgroup", "0::/user.slice/app\n");
    put(root, "/proc/self/mountinfo",
        "22 1 0:21 / / rw - ext4 /dev/sda rw\n"
        "30 22 0:26 / /sys/fs/cg\\040two rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n");
    const char *g = "/sys/fs/cg two/user.slice/app";
    char p[256];
    snprintf(p, sizeof p, "%s/memory.current", g), put(root, p, "734003200\n");
    snprintf(p, sizeof p, "%s/memory.max", g), put(root, p, "max\n");
    snprintf(p, sizeof p, "%s/memory.peak", g), put(root, p, "900000000\n");
    snprintf(p, sizeof p, "%s/memory.stat", g),
        put(root, p, "anon 500000000\nfile 200000000\nkernel 1000\nactive_file 150000000\ninactive_file 50000000\n");
    put(root, "/sys/fs/cg two/user.slice/memory.max", "1073741824\n");
    CHECK(lb_memmon_open_root(root, &m, &err) == LB_OK, "%s", err.msg);
    if (m) {
        CHECK(lb_memmon_snapshot(m, &s, &err) == LB_OK, "%s", err.msg);
        CHECK(s.sys_total == 1000000 * 1024ull && s.sys_free == 300000 * 1024ull && s.sys_available == 400000 * 1024ull);
        CHECK(s.sys_cached == 123456 * 1024ull && s.sys_swap_total == 2048 * 1024ull && s.sys_swap_free == 1024 * 1024ull);
        CHECK(s.proc_vm_size == 5000 * page && s.proc_rss == 3000 * page && s.proc_file == 1000 * page &&
              s.proc_anon == 2000 * page);
        CHECK(s.proc_peak_rss == 20000 * 1024ull, "peak from VmHWM under a fake root: %llu",
              (unsigned long long)s.proc_peak_rss);
        CHECK(!strcmp(lb_memmon_cgroup_path(m), "/sys/fs/cg two/user.slice/app"), "%s", lb_memmon_cgroup_path(m));
        CHECK(s.cgroup_present && s.cgroup_version == 2);
        CHECK(s.cgroup_limit == 1073741824ull, "parent limit applies: %llu", (unsigned long long)s.cgroup_limit);
        CHECK(s.cgroup_usage == 734003200ull && s.cgroup_peak_present && s.cgroup_peak == 900000000ull);
        CHECK(s.cgroup_stat_present && s.cgroup_anon == 500000000ull && s.cgroup_file == 200000000ull &&
              s.cgroup_inactive_file == 50000000ull);
        CHECK(!s.psi_present);
        /* available 40% of total, working set (734 - 50) MB of 1 GiB = 63.7%: both under LOW */
        CHECK(lb_mem_pressure_level(&s) == LB_MEM_PRESSURE_NONE, "got %d", lb_mem_pressure_level(&s));
        CHECK(lb_memmon_snapshot_detailed(m, &s, &err) == LB_OK && s.proc_shmem == 100 * 1024 && s.proc_swap == 7 * 1024);
        lb_memmon_close(m);
    }

    /* the same tree with PSI and no mountinfo entry: falls back to /sys/fs/cgroup */
    put(root, "/proc/pressure/memory", "some avg10=12.50 avg60=3.25 avg300=0.75 total=123\n"
                                       "full avg10=0.40 avg60=0.20 avg300=0.10 total=45\n");
    put(root, "/proc/self/mountinfo", "22 1 0:21 / / rw - ext4 /dev/sda rw\n");
    put(root, "/sys/fs/cgroup/user.slice/app/memory.current", "1000\n");
    CHECK(lb_memmon_open_root(root, &m, &err) == LB_OK);
    if (m) {
        CHECK(lb_memmon_snapshot(m, &s, &err) == LB_OK);
        CHECK(s.cgroup_present && s.cgroup_usage == 1000 && s.cgroup_limit == UINT64_MAX && !s.cgroup_peak_present);
        CHECK(!s.cgroup_stat_present, "memory.stat is skipped without a limit");
        CHECK(s.psi_present && s.psi_some.avg10 == 12.5 && s.psi_some.avg60 == 3.25 && s.psi_some.avg300 == 0.75);
        CHECK(s.psi_full.avg10 > 0.399 && s.psi_full.avg10 < 0.401 && s.psi_full.avg300 > 0.099);
        lb_memmon_close(m);
    }

    /* cgroup v1 memory controller (hybrid host), limit from hierarchical_memory_limit */
    put(root, "/proc/self/cgroup", "5:cpu,cpuacct:/x\n4:memory:/jobs/42\n0::/\n");
    put(root, "/proc/self/mountinfo", "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n");
    put(root, "/sys/fs/cgroup/memory/jobs/42/memory.usage_in_bytes", "4096000\n");
    put(root, "/sys/fs/cgroup/memory/jobs/42/memory.limit_in_bytes", "9223372036854771712\n");
    put(root, "/sys/fs/cgroup/memory/jobs/42/memory.max_usage_in_bytes", "8192000\n");
    put(root, "/sys/fs/cgroup/memory/jobs/42/memory.stat",
        "cache 1\nrss 2\nhierarchical_memory_limit 5000000\ntotal_cache 3000000\ntotal_rss 1000000\n"
        "total_inactive_file 2000000\n");
    CHECK(lb_memmon_open_root(root, &m, &err) == LB_OK);
    if (m) {
        CHECK(lb_memmon_snapshot_detailed(m, &s, &err) == LB_OK);
        CHECK(s.cgroup_present && s.cgroup_version == 1 && s.cgroup_usage == 4096000 && s.cgroup_peak == 8192000);
        CHECK(s.cgroup_anon == 1000000 && s.cgroup_file == 3000000 && s.cgroup_inactive_file == 2000000);
        CHECK(s.cgroup_limit == 5000000, "hierarchical limit: %llu", (unsigned long long)s.cgroup_limit);
        CHECK(!strcmp(lb_memmon_cgroup_path(m), "/sys/fs/cgroup/memory/jobs/42"));
        lb_memmon_close(m);
    }

    /* no cgroup files and no PSI: flags off, no error */
    rm_rf(root);
    mkdir(root, 0755);
    fake_proc(root);
    put(root, "/proc/self/cgroup", "0::/\n");
    CHECK(lb_memmon_open_root(root, &m, &err) == LB_OK);
    if (m) {
        CHECK(lb_memmon_snapshot(m, &s, &err) == LB_OK);
        CHECK(!s.cgroup_present && !s.psi_present && !strcmp(lb_memmon_cgroup_path(m), ""));
        lb_memmon_close(m);
    }
    /* garbage statm is a clear error, not a crash */
    put(root, "/proc/self/statm", "garbage\n");
    CHECK(lb_memmon_open_root(root, &m, &err) == LB_OK);
    if (m) {
        CHECK(lb_memmon_snapshot(m, &s, &err) == LB_ERR_FORMAT && strstr(err.msg, "statm"), "%s", err.msg);
        lb_memmon_close(m);
    }
    rm_rf(root);
}

/* ---- pressure levels ---------------------------------------------------------------------- */

static lb_mem_snapshot synth(uint64_t total, uint64_t avail) {
    lb_mem_snapshot s;
    memset(&s, 0, sizeof s);
    s.sys_total = total;
    s.sys_available = avail;
    return s;
}

typedef struct cb_log {
    int n;
    lb_mem_pressure old_l[8], new_l[8];
} cb_log;

static void record(lb_mem_pressure o, lb_mem_pressure n, const lb_mem_snapshot *s, void *ud) {
    cb_log *l = ud;
    (void)s;
    if (l->n < 8) l->old_l[l->n] = o, l->new_l[l->n] = n;
    l->n++;
}

static void test_pressure(void) {
    char why[128];
    lb_mem_snapshot s = synth(1000, 500);
    CHECK(lb_mem_pressure_level(&s) == LB_MEM_PRESSURE_NONE);
    s = synth(1000, 200); CHECK(lb_mem_pressure_level(&s) == LB_MEM_PRESSURE_LOW);
    s = synth(1000, 100); CHECK(lb_mem_pressure_level(&s) == LB_MEM_PRESSURE_MEDIUM);
    s = synth(1000, 50); CHECK(lb_mem_pressure_level(&s) == LB_MEM_PRESSURE_HIGH);
    s = synth(1000, 20); CHECK(lb_mem_pressure_level(&s) == LB_MEM_PRESSURE_CRITICAL);
    CHECK(strstr(lb_mem_pressure_reason(&s, why, sizeof why), "available memory 2.0%"), "%s", why);
    s = synth(1000, 250); CHECK(lb_mem_pressure_level(&s) == LB_MEM_PRESSURE_NONE, "25%% is the LOW boundary");

    /* cgroup: working set = usage - inactive file */
    s = synth(1000, 900);
    s.cgroup_present = 1, s.cgroup_limit = 1000, s.cgroup_usage = 800;
    CHECK(lb_mem_pressure_level(&s) == LB_MEM_PRESSURE_LOW);
    s.cgroup_usage = 990;
    CHECK(lb_mem_pressure_level(&s) == LB_MEM_PRESSURE_CRITICAL);
    CHECK(strstr(lb_mem_pressure_reason(&s, why, sizeof why), "cgroup"), "%s", why);
    s.cgroup_stat_present = 1, s.cgroup_inactive_file = 300;
    CHECK(lb_mem_pressure_level(&s) == LB_MEM_PRESSURE_NONE, "690/1000 is below 75%%");
    s.cgroup_inactive_file = 60;
    CHECK(lb_mem_pressure_level(&s) == LB_MEM_PRESSURE_HIGH, "930/1000");
    s.cgroup_inactive_file = 5000; /* more inactive than usage: no underflow */
    CHECK(lb_mem_pressure_level(&s) == LB_MEM_PRESSURE_NONE);
    s.cgroup_limit = UINT64_MAX, s.cgroup_stat_present = 0;
    CHECK(lb_mem_pressure_level(&s) == LB_MEM_PRESSURE_NONE, "no limit, no cgroup pressure");

    /* PSI */
    s = synth(1000, 900);
    s.psi_present = 1;
    s.psi_some.avg10 = 5;
    CHECK(lb_mem_pressure_level(&s) == LB_MEM_PRESSURE_LOW);
    s.psi_full.avg10 = 6;
    CHECK(lb_mem_pressure_level(&s) == LB_MEM_PRESSURE_HIGH);
    CHECK(strstr(lb_mem_pressure_reason(&s, why, sizeof why), "full"), "%s", why);
    s.psi_some.avg10 = 60;
    CHECK(lb_mem_pressure_level(&s) == LB_MEM_PRESSURE_CRITICAL);
    s.psi_present = 0;
    CHECK(lb_mem_pressure_level(&s) == LB_MEM_PRESSURE_NONE, "absent PSI is ignored");
    CHECK(!strcmp(lb_mem_pressure_name(LB_MEM_PRESSURE_HIGH), "high"));
    CHECK(lb_mem_pressure_level(NULL) == LB_MEM_PRESSURE_NONE);

    /* callbacks fire on changes only, with old and new levels, for every registered callback */
    lb_memmon *m;
    lb_error err;
    if (lb_memmon_open(&m, &err) != LB_OK) {
        CHECK(0, "%s", err.msg);
        return;
    }
    cb_log a = {0}, b = {0};
    CHECK(lb_memmon_on_pressure(m, record, &a, &err) == LB_OK);
    CHECK(lb_memmon_on_pressure(m, record, &b, &err) == LB_OK);
    CHECK(lb_memmon_on_pressure(m, NULL, &b, &err) == LB_ERR_ARG);
    uint64_t seq[] = {900, 200, 210, 50, 50, 900};
    lb_mem_pressure want_new[] = {LB_MEM_PRESSURE_LOW, LB_MEM_PRESSURE_HIGH, LB_MEM_PRESSURE_NONE};
    lb_mem_pressure want_old[] = {LB_MEM_PRESSURE_NONE, LB_MEM_PRESSURE_LOW, LB_MEM_PRESSURE_HIGH};
    for (int i = 0; i < 6; i++) {
        s = synth(1000, seq[i]);
        lb_memmon_feed(m, &s);
    }
    CHECK(a.n == 3 && b.n == 3, "%d %d calls", a.n, b.n);
    for (int i = 0; i < 3 && i < a.n; i++)
        CHECK(a.new_l[i] == want_new[i] && a.old_l[i] == want_old[i] && b.new_l[i] == want_new[i], "call %d", i);
    lb_memmon_close(m);
}

/* ---- tracker, arena, pool ----------------------------------------------------------------- */

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_tracker(void) {
    lb_error err;
    lb_mem_tracker *t;
    CHECK(lb_mem_tracker_new(0, &t, &err) == LB_OK);
    static const char *tags[3] = {"kv", "scratch", "logits"};
    enum { N = 256 };
    void *ptr[N] = {0};
    size_t sz[N];
    int tg[N];
    uint64_t live = 0, peak = 0, n_allocs = 0, tag_live[3] = {0}, tag_peak[3] = {0};
    int bad_align = 0, bad_content = 0, bad_stats = 0;
    for (int op = 0; op < 20000; op++) {
        int i = (int)(rnd() % N);
        if (!ptr[i]) {
            sz[i] = (size_t)(rnd() % 5000);
            tg[i] = (int)(rnd() % 3);
            ptr[i] = lb_mem_alloc(t, sz[i], tags[tg[i]]);
            if (!ptr[i]) continue;
            if ((uintptr_t)ptr[i] % 64) bad_align++;
            memset(ptr[i], i & 0xff, sz[i]);
            live += sz[i], n_allocs++, tag_live[tg[i]] += sz[i];
            if (live > peak) peak = live;
            if (tag_live[tg[i]] > tag_peak[tg[i]]) tag_peak[tg[i]] = tag_live[tg[i]];
        } else {
            for (size_t k = 0; k < sz[i]; k++)
                if (((unsigned char *)ptr[i])[k] != (i & 0xff)) {
                    bad_content++;
                    break;
                }
            if (lb_mem_size(ptr[i]) != sz[i]) bad_content++;
            lb_mem_free(t, ptr[i]);
            ptr[i] = NULL;
            live -= sz[i], tag_live[tg[i]] -= sz[i];
        }
        lb_mem_stats st;
        lb_mem_tracker_stats(t, &st);
        if (st.live_bytes != live || st.peak_bytes != peak || st.n_allocs != n_allocs) bad_stats++;
    }
    CHECK(bad_align == 0 && bad_content == 0 && bad_stats == 0, "align %d content %d stats %d", bad_align,
          bad_content, bad_stats);
    lb_mem_stats st;
    lb_mem_tracker_stats(t, &st);
    CHECK(st.n_tags == 3);
    for (int k = 0; k < 3; k++) {
        int j = -1;
        for (int x = 0; x < st.n_tags; x++)
            if (!strcmp(st.tags[x].name, tags[k])) j = x;
        CHECK(j >= 0 && st.tags[j].live_bytes == tag_live[k] && st.tags[j].peak_bytes == tag_peak[k], "tag %s", tags[k]);
    }
    char report[256];
    size_t live_n = 0;
    for (int i = 0; i < N; i++) live_n += ptr[i] != NULL;
    CHECK(lb_mem_tracker_leaks(t, report, sizeof report) == live_n && (live_n == 0 || strstr(report, "LOWBIT_DEBUG_ALLOC")),
          "%s", report);
    for (int i = 0; i < N; i++) lb_mem_free(t, ptr[i]);
    lb_mem_tracker_stats(t, &st);
    CHECK(st.live_bytes == 0 && st.n_live == 0 && st.n_frees == st.n_allocs);
    CHECK(lb_mem_alloc(t, SIZE_MAX - 10, "x") == NULL, "overflowing size");
    /* more tags than slots fold into "other" */
    void *many[40];
    for (int i = 0; i < 40; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        many[i] = lb_mem_alloc(t, 10, name);
    }
    lb_mem_tracker_stats(t, &st);
    CHECK(st.n_tags == LB_MEM_MAX_TAGS && !strcmp(st.tags[LB_MEM_MAX_TAGS - 1].name, "other") &&
          st.tags[LB_MEM_MAX_TAGS - 1].live_bytes == 10 * (40 - (LB_MEM_MAX_TAGS - 1 - 3)));
    for (int i = 0; i < 40; i++) lb_mem_free(t, many[i]);
    lb_mem_tracker_free(t);

    /* debug mode: leak report names the unfreed sites, a double free is refused */
    CHECK(lb_mem_tracker_new(LB_MEM_TRACK_DEBUG, &t, &err) == LB_OK);
    int l1 = __LINE__ + 1;
    void *a = lb_mem_alloc(t, 100, "kv");
    int l2 = __LINE__ + 1;
    void *b = lb_mem_alloc(t, 200, "scratch");
    int l3 = __LINE__ + 1;
    void *c = lb_mem_alloc(t, 300, "logits");
    lb_mem_free(t, b);
    lb_log_set_level(LB_LOG_ERROR); /* the refusal warns; keep the test output clean */
    lb_mem_free(t, b);             /* refused; counters unchanged */
    lb_log_set_level(LB_LOG_WARN);
    lb_mem_tracker_stats(t, &st);
    CHECK(st.n_live == 2 && st.live_bytes == 400 && st.n_frees == 1);
    char big[1024], site[64];
    CHECK(lb_mem_tracker_leaks(t, big, sizeof big) == 2);
    snprintf(site, sizeof site, "kv 100 bytes at %s:%d", __FILE__, l1);
    CHECK(strstr(big, site), "'%s' not in report:\n%s", site, big);
    snprintf(site, sizeof site, "logits 300 bytes at %s:%d", __FILE__, l3);
    CHECK(strstr(big, site), "'%s' not in report:\n%s", site, big);
    snprintf(site, sizeof site, "%s:%d", __FILE__, l2);
    CHECK(!strstr(big, site), "freed site listed:\n%s", big);
    CHECK(lb_mem_tracker_leaks(t, big, 10) == 2 && strlen(big) == 9, "truncated report");
    lb_mem_free(t, a);
    lb_mem_free(t, c);
    CHECK(lb_mem_tracker_leaks(t, big, sizeof big) == 0 && big[0] == 0);
    lb_mem_tracker_free(t);

    /* the environment variable turns debug mode on */
    setenv("LOWBIT_DEBUG_ALLOC", "1", 1);
    CHECK(lb_mem_tracker_new(0, &t, &err) == LB_OK);
    unsetenv("LOWBIT_DEBUG_ALLOC");
    a = lb_mem_alloc(t, 64, "kv");
    CHECK(lb_mem_tracker_leaks(t, big, sizeof big) == 1 && strstr(big, __FILE__), "%s", big);
    lb_mem_free(t, a);
    lb_mem_tracker_free(t);
}

static void test_arena(void) {
    lb_error err;
    lb_mem_tracker *t;
    lb_mem_tracker_new(0, &t, &err);
    lb_arena *a;
    CHECK(lb_arena_new(t, 0, "scratch", &a, &err) == LB_ERR_ARG);
    CHECK(lb_arena_new(t, 10000, "scratch", &a, &err) == LB_OK);
    lb_mem_stats st;
    lb_mem_tracker_stats(t, &st);
    CHECK(st.live_bytes == lb_arena_capacity(a) && lb_arena_capacity(a) == 10048 && st.n_tags == 1 &&
          !strcmp(st.tags[0].name, "scratch"));
    char *p1 = lb_arena_alloc(a, 100), *p2 = lb_arena_alloc(a, 1);
    CHECK(p1 && p2 && (uintptr_t)p1 % 64 == 0 && (uintptr_t)p2 % 64 == 0 && p2 == p1 + 128);
    size_t mark = lb_arena_mark(a);
    char *p3 = lb_arena_alloc(a, 5000);
    CHECK(p3 == p2 + 64 && lb_arena_used(a) == 128 + 64 + 5056);
    memset(p3, 1, 5000);
    CHECK(lb_arena_alloc(a, 6000) == NULL, "over capacity");
    lb_arena_reset(a, mark);
    CHECK(lb_arena_used(a) == mark && lb_arena_peak(a) == 128 + 64 + 5056);
    CHECK(lb_arena_alloc(a, 10) == p3, "reset reuses the space");
    lb_arena_reset(a, 0);
    CHECK(lb_arena_alloc(a, 10048) == p1 && lb_arena_alloc(a, 0) == NULL, "exactly full");
    CHECK(lb_arena_alloc(a, SIZE_MAX) == NULL);
    lb_arena_destroy(a);
    lb_mem_tracker_stats(t, &st);
    CHECK(st.live_bytes == 0);
    lb_mem_tracker_free(t);
}

static void test_pool(void) {
    lb_error err;
    lb_mem_tracker *t;
    lb_mem_tracker_new(0, &t, &err);
    lb_blockpool *p;
    CHECK(lb_blockpool_new(t, 0, 10, "kv", &p, &err) == LB_ERR_ARG);
    CHECK(lb_blockpool_new(t, SIZE_MAX / 4, SIZE_MAX / 4, "kv", &p, &err) == LB_ERR_NOMEM, "%s", err.msg);
    enum { NB = 100 };
    CHECK(lb_blockpool_new(t, 100, NB, "kv", &p, &err) == LB_OK);
    CHECK(lb_blockpool_block_size(p) == 128 && lb_blockpool_capacity(p) == NB);
    /* shadow: which indices are live; each live block holds its index as a pattern */
    int live[NB] = {0}, n_live = 0, peak = 0, bad = 0;
    for (int op = 0; op < 20000; op++) {
        if (rnd() % 2) {
            unsigned char *b = lb_blockpool_alloc(p);
            if (n_live == NB) {
                if (b) bad++;
                continue;
            }
            size_t i = lb_blockpool_index(p, b);
            if (!b || i >= NB || live[i] || (uintptr_t)b % 64 || lb_blockpool_block(p, i) != b) {
                bad++;
                continue;
            }
            memset(b, (int)i, 100);
            live[i] = 1;
            if (++n_live > peak) peak = n_live;
        } else if (n_live) {
            size_t i = (size_t)(rnd() % NB);
            while (!live[i]) i = (i + 1) % NB;
            unsigned char *b = lb_blockpool_block(p, i);
            for (int k = 0; k < 100; k++)
                if (b[k] != (unsigned char)i) {
                    bad++;
                    break;
                }
            if (lb_blockpool_free(p, b, &err) != LB_OK) bad++;
            live[i] = 0;
            n_live--;
        }
        if (lb_blockpool_in_use(p) != (size_t)n_live) bad++;
    }
    CHECK(bad == 0, "%d mismatches against the shadow model", bad);
    CHECK(lb_blockpool_peak(p) == (size_t)peak);
    /* exhaust, then refuse */
    while (lb_blockpool_in_use(p) < NB) CHECK(lb_blockpool_alloc(p) != NULL);
    CHECK(lb_blockpool_alloc(p) == NULL);
    char *b0 = lb_blockpool_block(p, 0);
    CHECK(lb_blockpool_free(p, b0, &err) == LB_OK);
    CHECK(lb_blockpool_free(p, b0, &err) == LB_ERR_ARG && strstr(err.msg, "already free"), "%s", err.msg);
    CHECK(lb_blockpool_free(p, b0 + 64, &err) == LB_ERR_ARG, "inside a block");
    char other[8];
    CHECK(lb_blockpool_free(p, other, &err) == LB_ERR_ARG && lb_blockpool_index(p, other) == SIZE_MAX);
    CHECK(lb_blockpool_free(p, b0 + 128 * NB, &err) == LB_ERR_ARG, "one past the end");
    CHECK(lb_blockpool_alloc(p) == b0 && lb_blockpool_in_use(p) == NB);
    lb_mem_stats st;
    lb_mem_tracker_stats(t, &st);
    CHECK(st.live_bytes >= 128 * NB && st.tags[0].live_bytes == st.live_bytes);
    lb_blockpool_destroy(p);
    lb_mem_tracker_stats(t, &st);
    CHECK(st.live_bytes == 0 && st.n_live == 0);
    lb_mem_tracker_free(t);
}

/* ---- sizes ---------------------------------------------------------------------------------- */

static void test_sizes(void) {
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {{"6G", 6 * GiB},        {"6GiB", 6 * GiB},      {"6gb", 6 * GiB},          {"512M", 512 * MiB},
                {"1.5G", 3 * GiB / 2},  {"100000", 100000},     {"1K", 1024},              {"0.5k", 512},
                {"2T", 2048 * GiB},     {"1P", 1ull << 50},     {" 8 G ", 8 * GiB},        {"1b", 1},
                {"7B", 7},              {"1.25MiB", 1310720},   {".5G", GiB / 2},          {"3.999999999999999999999G", 4294967295ull}};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        uint64_t v = 0;
        lb_error err = {0};
        lb_status st = lb_size_parse(good[i].s, &v, &err);
        CHECK(st == LB_OK && v == good[i].v, "'%s' -> %d %llu (%s)", good[i].s, st, (unsigned long long)v, err.msg);
    }
    static const struct {
        const char *s, *why;
    } bad[] = {{"", "empty"},      {"   ", "empty"},     {"abc", "not a number"}, {"6X", "unit"},
               {"6GG", "after"},   {"6Gi", "after"},    {"-1G", "negative"},     {"0", "zero"},
               {"0.0G", "zero"},   {"0.0001K", "zero"}, {"2P", "1 PiB"},         {"1025T", "1 PiB"},
               {"1.5", "whole"},   {"G", "not a number"}, {".", "not a number"}, {"99999999999999999999999999G", "1 PiB"},
               {"1e9", "unit"},    {"inf", "not a number"}, {"nan", "not a number"}, {"+5G", "not a number"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint64_t v = 12345;
        lb_error err = {0};
        lb_status st = lb_size_parse(bad[i].s, &v, &err);
        CHECK(st != LB_OK && v == 12345 && strstr(err.msg, bad[i].why) && strstr(err.msg, "size '"),
              "'%s' -> %d '%s'", bad[i].s, st, err.msg);
    }
    uint64_t v;
    CHECK(lb_size_parse(NULL, &v, NULL) == LB_ERR_ARG);
    char b[32];
    CHECK(!strcmp(lb_size_format(0, b, sizeof b), "0 B"));
    CHECK(!strcmp(lb_size_format(1023, b, sizeof b), "1023 B"));
    CHECK(!strcmp(lb_size_format(1024, b, sizeof b), "1.00 KiB"));
    CHECK(!strcmp(lb_size_format(3 * GiB / 2, b, sizeof b), "1.50 GiB"));
    CHECK(!strcmp(lb_size_format(1ull << 50, b, sizeof b), "1.00 PiB"));
    /* format -> parse round trip within the 2-decimal rounding */
    int bad_rt = 0;
    for (int i = 0; i < 2000; i++) {
        uint64_t x = (rnd() % (1ull << 48)) + 1, y;
        if (x < 1024) continue;
        if (lb_size_parse(lb_size_format(x, b, sizeof b), &y, NULL) != LB_OK || llabs_diff(x, y) > (long long)(x / 150))
            bad_rt++;
    }
    CHECK(bad_rt == 0, "%d round trips off", bad_rt);
}

/* ---- planner -------------------------------------------------------------------------------- */

static lb_mem_plan_in plan_7b(uint64_t budget) {
    lb_mem_plan_in in;
    memset(&in, 0, sizeof in);
    in.budget = budget;
    in.weight_bytes = (uint64_t)(3.56 * GiB);
    in.kv_bytes_per_token[LB_MEM_KV_F32] = 1024 * 1024; /* 32 layers x 2 x 4096 x 4 bytes */
    in.kv_bytes_per_token[LB_MEM_KV_F16] = 512 * 1024;
    in.kv_bytes_per_token[LB_MEM_KV_Q8_0] = 512 * 1024 / 32 * 17; /* 34 bytes per 32 values */
    in.scratch_bytes = (uint64_t)(0.1 * GiB);
    in.n_ctx_requested = 4096;
    in.n_ctx_train = 4096;
    in.kv_forced = -1;
    return in;
}

static uint64_t total_of(const lb_mem_plan_in *in, uint32_t n, int kv) {
    return in->weight_bytes + in->kv_bytes_per_token[kv] * n + in->scratch_bytes + in->scratch_bytes_per_token * n +
           in->overhead_bytes;
}

static void test_planner(void) {
    lb_mem_plan out;
    lb_error err = {0};

    lb_mem_plan_in in = plan_7b(6 * GiB);
    CHECK(lb_mem_plan_make(&in, &out, &err) == LB_OK, "%s", err.msg);
    CHECK(out.n_ctx == 4096 && out.kv_dtype == LB_MEM_KV_F16 && !out.shrunk && !out.kv_fallback);
    CHECK(out.kv_bytes == 2 * GiB && out.total_bytes == total_of(&in, 4096, LB_MEM_KV_F16) && out.total_bytes <= 6 * GiB);
    CHECK(strstr(out.summary, "4096 tokens, f16") && strstr(out.summary, "<= budget 6.00 GiB"), "%s", out.summary);
    CHECK(!out.lock_weights);
    in.memlock_limit = 4 * GiB;
    lb_mem_plan_make(&in, &out, &err);
    CHECK(out.lock_weights);
    in.memlock_limit = 1 * GiB;
    lb_mem_plan_make(&in, &out, &err);
    CHECK(!out.lock_weights);

    /* F16 does not fit, Q8_0 does at the full context */
    in = plan_7b(5 * GiB);
    CHECK(lb_mem_plan_make(&in, &out, &err) == LB_OK);
    CHECK(out.n_ctx == 4096 && out.kv_dtype == LB_MEM_KV_Q8_0 && out.kv_fallback && !out.shrunk);
    CHECK(total_of(&in, 4096, LB_MEM_KV_F16) > 5 * GiB && out.total_bytes == total_of(&in, 4096, LB_MEM_KV_Q8_0));
    CHECK(strstr(out.summary, "f16 KV would need 5.66 GiB"), "%s", out.summary);

    /* neither fits at 4096: shrink with Q8_0 to the largest multiple of 256 that fits */
    in = plan_7b(4 * GiB);
    in.n_ctx_align = 256;
    in.scratch_bytes_per_token = 4096;
    CHECK(lb_mem_plan_make(&in, &out, &err) == LB_OK, "%s", err.msg);
    uint32_t best = 0;
    for (uint32_t n = 4096; n >= 256; n -= 256)
        if (total_of(&in, n, LB_MEM_KV_Q8_0) <= 4 * GiB) {
            best = n;
            break;
        }
    CHECK(best > 0 && out.n_ctx == best && out.shrunk && out.kv_dtype == LB_MEM_KV_Q8_0, "%u vs %u", out.n_ctx, best);
    CHECK(out.total_bytes == total_of(&in, best, LB_MEM_KV_Q8_0) && out.total_bytes <= in.budget);
    CHECK(strstr(out.summary, "context shrunk from 4096"), "%s", out.summary);
    in.n_ctx_align = 0; /* exact: the next token would not fit */
    lb_mem_plan_make(&in, &out, &err);
    CHECK(total_of(&in, out.n_ctx, LB_MEM_KV_Q8_0) <= in.budget && total_of(&in, out.n_ctx + 1, LB_MEM_KV_Q8_0) > in.budget);

    /* --ctx given (strict): refuse with the breakdown of the issue, and say what would fit */
    in = plan_7b(4 * GiB);
    in.ctx_strict = 1;
    CHECK(lb_mem_plan_make(&in, &out, &err) == LB_ERR_BUDGET);
    CHECK(strstr(err.msg, "weights 3.56 GiB + KV cache (4096 tokens, f16) 2.00 GiB + scratch 0.10 GiB = 5.66 GiB > "
                          "budget 4.00 GiB"), "%s", err.msg);
    CHECK(strstr(err.msg, "with q8_0 KV 4.72 GiB") && strstr(err.msg, "tokens fit (q8_0 KV)"), "%s", err.msg);
    CHECK(!strcmp(out.summary, err.msg));

    /* weights alone exceed the budget */
    in = plan_7b(3 * GiB);
    in.overhead_bytes = 50 * MiB;
    CHECK(lb_mem_plan_make(&in, &out, &err) == LB_ERR_BUDGET && strstr(err.msg, "no room") &&
          strstr(err.msg, "runtime 0.05 GiB"), "%s", err.msg);
    /* only a handful of tokens fit: fewer than the minimum */
    in = plan_7b(0);
    in.budget = in.weight_bytes + in.scratch_bytes + 10 * in.kv_bytes_per_token[LB_MEM_KV_Q8_0];
    CHECK(lb_mem_plan_make(&in, &out, &err) == LB_ERR_BUDGET && strstr(err.msg, "only 10 tokens"), "%s", err.msg);
    in.n_ctx_min = 8;
    CHECK(lb_mem_plan_make(&in, &out, &err) == LB_OK && out.n_ctx == 10);

    /* forced KV type, bad requests */
    in = plan_7b(8 * GiB);
    in.kv_forced = LB_MEM_KV_F32;
    CHECK(lb_mem_plan_make(&in, &out, &err) == LB_OK && out.kv_dtype == LB_MEM_KV_F32 && out.kv_bytes == 4 * GiB);
    in.kv_forced = 7;
    CHECK(lb_mem_plan_make(&in, &out, &err) == LB_ERR_ARG);
    in = plan_7b(8 * GiB);
    in.n_ctx_requested = 8192;
    CHECK(lb_mem_plan_make(&in, &out, &err) == LB_ERR_RANGE && strstr(err.msg, "trained context 4096"), "%s", err.msg);
    in = plan_7b(0);
    CHECK(lb_mem_plan_make(&in, &out, &err) == LB_ERR_ARG && strstr(err.msg, "zero"));
    in = plan_7b(8 * GiB);
    in.n_ctx_requested = 0; /* the trained context */
    CHECK(lb_mem_plan_make(&in, &out, &err) == LB_OK && out.n_ctx == 4096);
    in.n_ctx_train = 0;
    CHECK(lb_mem_plan_make(&in, &out, &err) == LB_ERR_ARG);
    in = plan_7b(8 * GiB);
    memset(in.kv_bytes_per_token, 0, sizeof in.kv_bytes_per_token);
    CHECK(lb_mem_plan_make(&in, &out, &err) == LB_ERR_ARG);
    /* absurd sizes saturate instead of wrapping around into a "fit" */
    in = plan_7b(1ull << 50);
    in.kv_bytes_per_token[LB_MEM_KV_F16] = UINT64_MAX / 2;
    in.kv_bytes_per_token[LB_MEM_KV_Q8_0] = UINT64_MAX / 3;
    in.ctx_strict = 1;
    CHECK(lb_mem_plan_make(&in, &out, &err) == LB_ERR_BUDGET, "%s", err.msg);
    CHECK(lb_mem_plan_make(NULL, &out, &err) == LB_ERR_ARG);
}

int main(void) {
    test_real_monitor();
    test_fake_trees();
    test_pressure();
    test_tracker();
    test_arena();
    test_pool();
    test_sizes();
    test_planner();
    return test_summary();
}
