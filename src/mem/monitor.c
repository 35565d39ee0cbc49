/* Memory monitor: /proc and cgroup files opened once, re-read with one pread each per snapshot.
 * Kernel-side generation dominates the cost (meminfo ~6 us, status ~8 us, smaps_rollup ~25 us
 * here), so the plain snapshot takes the process numbers from statm + getrusage and leaves
 * status and smaps_rollup to the detailed one. */
#include "mem/monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"

enum {
    F_MEMINFO, F_STATM, F_STATUS, F_SMAPS, F_PSI, F_CG_CURRENT, F_CG_PEAK, F_CG_STAT, F_COUNT
};
#define MAX_LIMIT_FILES 8 /* the group's own limit file and its ancestors' */
#define BUF_CAP 16384

typedef struct cb_entry {
    lb_mem_pressure_cb cb;
    void *userdata;
} cb_entry;

struct lb_memmon {
    int fd[F_COUNT];
    int limit_fd[MAX_LIMIT_FILES];
    int n_limit;
    int cg_version;
    int use_rusage; /* real /proc: peak from getrusage; fake root: from status VmHWM */
    uint64_t page_size;
    char cg_path[PATH_MAX];
    lb_mem_pressure level;
    cb_entry *cbs;
    size_t n_cbs, cap_cbs;
    char buf[BUF_CAP];
};

/* ---- file helpers ------------------------------------------------------------------------ */

static int open_at_root(const char *root, const char *path) {
    char full[PATH_MAX];
    int n = snprintf(full, sizeof full, "%s%s", root, path);
    if (n < 0 || (size_t)n >= sizeof full) return -1;
    return open(full, O_RDONLY | O_CLOEXEC);
}

/* Reads the file from offset 0 into m->buf (NUL-terminated). A /proc or cgroup seq_file
 * re-generates its text on every read and one read returns all of it that fits, so per-snapshot
 * reads are a single pread; until_eof loops (for the open-time files and fake trees). */
static ssize_t reread_ex(lb_memmon *m, int fd, int until_eof) {
    size_t n = 0;
    while (n < BUF_CAP - 1) {
        ssize_t r = pread(fd, m->buf + n, BUF_CAP - 1 - n, (off_t)n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        n += (size_t)r;
        if (r == 0 || !until_eof) break;
    }
    m->buf[n] = 0;
    return (ssize_t)n;
}

static ssize_t reread(lb_memmon *m, int fd) { return reread_ex(m, fd, 0); }

/* Small file read once at open time (cgroup membership, mount table). */
static ssize_t read_once(lb_memmon *m, const char *root, const char *path) {
    int fd = open_at_root(root, path);
    if (fd < 0) return -1;
    ssize_t n = reread_ex(m, fd, 1);
    close(fd);
    return n;
}

/* ---- parsing ------------------------------------------------------------------------------- */

static const char *parse_u64(const char *p, uint64_t *out) {
    uint64_t v = 0;
    int any = 0;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p++ - '0');
        v = (v > (UINT64_MAX - d) / 10) ? UINT64_MAX : v * 10 + d;
        any = 1;
    }
    *out = any ? v : 0;
    return any ? p : NULL;
}

/* "12.34" without strtod: locale-independent, and exact where the value is representable. */
static const char *parse_fixed(const char *p, double *out) {
    uint64_t ip, frac = 0, scale = 1;
    const char *q = parse_u64(p, &ip);
    if (!q) return NULL;
    if (*q == '.')
        for (q++; *q >= '0' && *q <= '9'; q++)
            if (scale < 1000000000000ull) frac = frac * 10 + (uint64_t)(*q - '0'), scale *= 10;
    *out = (double)ip + (double)frac / (double)scale;
    return q;
}

typedef struct want {
    const char *key;
    size_t len;
    uint64_t *dst;
} want;
#define WANT(k, d) {k, sizeof k - 1, d}

/* Lines "Key: 123 kB" (sep ':') or "key 123" (sep ' '); kB values become bytes. Returns the
 * number of wanted keys found; stops once all are. */
static int parse_keys(const char *p, char sep, const want *w, int nw) {
    int found = 0;
    while (*p && found < nw) {
        const char *k = p;
        while (*p && *p != sep && *p != '\n') p++;
        size_t klen = (size_t)(p - k);
        if (*p == sep) {
            for (int i = 0; i < nw; i++) {
                if (w[i].len != klen || memcmp(w[i].key, k, klen)) continue;
                const char *v = p + 1;
                while (*v == ' ' || *v == '\t') v++;
                uint64_t x;
                const char *e = parse_u64(v, &x);
                if (e) {
                    if (e[0] == ' ' && e[1] == 'k' && e[2] == 'B') x = x > UINT64_MAX / 1024 ? UINT64_MAX : x * 1024;
                    *w[i].dst = x;
                    found++;
                }
                break;
            }
        }
        while (*p && *p != '\n') p++;
        if (*p) p++;
    }
    return found;
}

/* cgroup limit files hold a number or "max"; v1 writes "unlimited" as a huge page-aligned
 * number (PAGE_COUNTER_MAX pages), so anything from 2^62 up counts as no limit. */
static uint64_t parse_limit(const char *s) {
    if (!strncmp(s, "max", 3)) return UINT64_MAX;
    uint64_t v;
    if (!parse_u64(s, &v)) return UINT64_MAX;
    return v >= (1ull << 62) ? UINT64_MAX : v;
}

static int parse_psi_line(const char *p, lb_psi_avg *a) {
    static const char *keys[3] = {"avg10=", "avg60=", "avg300="};
    double *dst[3] = {&a->avg10, &a->avg60, &a->avg300};
    for (int i = 0; i < 3; i++) {
        const char *q = strstr(p, keys[i]);
        const char *nl = strchr(p, '\n');
        if (!q || (nl && q > nl) || !parse_fixed(q + strlen(keys[i]), dst[i])) return 0;
    }
    return 1;
}

/* ---- cgroup discovery ---------------------------------------------------------------------- */

/* Undoes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape_octal(char *s) {
    char *o = s;
    for (char *p = s; *p; p++) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '7' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' && p[3] <= '7') {
            *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
            p += 3;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
}

/* The group path of this process in the v2 hierarchy (version 2) or the v1 memory controller. */
static int find_group(lb_memmon *m, const char *root, int version, char *path, size_t cap) {
    if (read_once(m, root, "/proc/self/cgroup") < 0) return 0;
    for (char *line = m->buf; *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c2) {
            *c2 = 0;
            int match = 0;
            if (version == 2) match = !strncmp(line, "0:", 2) && c2 == c1 + 1;
            else
                for (char *sv = NULL, *t = strtok_r(c1 + 1, ",", &sv); t && !match; t = strtok_r(NULL, ",", &sv))
                    match = !strcmp(t, "memory");
            if (match && strlen(c2 + 1) < cap) {
                strcpy(path, c2 + 1);
                return 1;
            }
        }
        if (!nl) break;
        line = nl + 1;
    }
    return 0;
}

/* Mount point and mount root of the hierarchy from mountinfo. */
static int find_mount(lb_memmon *m, const char *root, int version, char *mnt, char *mroot, size_t cap) {
    if (read_once(m, root, "/proc/self/mountinfo") < 0) return 0;
    for (char *line = m->buf; *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        char *f[6] = {0};
        char *save = NULL, *sep = strstr(line, " - ");
        if (sep) {
            *sep = 0;
            char *post = sep + 3;
            int i = 0;
            for (char *t = strtok_r(line, " ", &save); t && i < 6; t = strtok_r(NULL, " ", &save)) f[i++] = t;
            char *fstype = strtok_r(post, " ", &save);
            strtok_r(NULL, " ", &save); /* source */
            char *opts = strtok_r(NULL, " ", &save);
            int match = 0;
            if (fstype && f[4] && version == 2) match = !strcmp(fstype, "cgroup2");
            if (fstype && f[4] && version == 1 && !strcmp(fstype, "cgroup") && opts) {
                char *s2 = NULL;
                for (char *t = strtok_r(opts, ",", &s2); t && !match; t = strtok_r(NULL, ",", &s2))
                    match = !strcmp(t, "memory");
            }
            if (match && strlen(f[4]) < cap && strlen(f[3]) < cap) {
                strcpy(mnt, f[4]);
                strcpy(mroot, f[3]);
                unescape_octal(mnt);
                unescape_octal(mroot);
                return 1;
            }
        }
        if (!nl) break;
        line = nl + 1;
    }
    return 0;
}

static int open_in(const char *root, const char *dir, const char *file) {
    char p[PATH_MAX];
    int n = snprintf(p, sizeof p, "%s/%s", dir, file);
    if (n < 0 || (size_t)n >= sizeof p) return -1;
    return open_at_root(root, p);
}

/* Opens the group's files for one hierarchy version; 1 when its usage file exists. */
static int open_cgroup(lb_memmon *m, const char *root, int version) {
    char group[PATH_MAX], mnt[PATH_MAX], mroot[PATH_MAX], dir[PATH_MAX];
    if (!find_group(m, root, version, group, sizeof group)) return 0;
    if (!find_mount(m, root, version, mnt, mroot, sizeof mnt)) {
        strcpy(mnt, version == 2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory");
        strcpy(mroot, "/");
    }
    /* the group path is relative to the hierarchy root; the mount may show a subtree of it */
    const char *rel = group;
    size_t rl = strlen(mroot);
    if (strcmp(mroot, "/") && !strncmp(group, mroot, rl) && (group[rl] == '/' || group[rl] == 0)) rel = group + rl;
    else if (strcmp(mroot, "/")) rel = "/"; /* namespaced: the mount already is our group */
    int n = snprintf(dir, sizeof dir, "%s%s", mnt, strcmp(rel, "/") ? rel : "");
    if (n < 0 || (size_t)n >= sizeof dir) return 0;

    const char *cur = version == 2 ? "memory.current" : "memory.usage_in_bytes";
    const char *peak = version == 2 ? "memory.peak" : "memory.max_usage_in_bytes";
    const char *lim = version == 2 ? "memory.max" : "memory.limit_in_bytes";
    int fd = open_in(root, dir, cur);
    if (fd < 0) return 0;
    m->fd[F_CG_CURRENT] = fd;
    m->fd[F_CG_PEAK] = open_in(root, dir, peak);
    m->fd[F_CG_STAT] = open_in(root, dir, "memory.stat");
    /* the effective limit is the smallest along the path up to the hierarchy's mount point */
    char walk[PATH_MAX];
    strcpy(walk, dir);
    size_t mlen = strlen(mnt);
    while (m->n_limit < MAX_LIMIT_FILES) {
        int lfd = open_in(root, walk, lim);
        if (lfd >= 0) m->limit_fd[m->n_limit++] = lfd;
        char *slash = strrchr(walk, '/');
        if (strlen(walk) <= mlen || !slash || (size_t)(slash - walk) < mlen) break;
        *slash = 0;
    }
    m->cg_version = version;
    snprintf(m->cg_path, sizeof m->cg_path, "%s", dir);
    return 1;
}

/* ---- open / close -------------------------------------------------------------------------- */

lb_status lb_memmon_open_root(const char *root, lb_memmon **out, lb_error *err) {
    if (!out) return lb_fail(err, LB_ERR_ARG, "lb_memmon_open: out is NULL");
    *out = NULL;
    if (!root) root = "";
    lb_memmon *m = calloc(1, sizeof *m);
    if (!m) return lb_fail(err, LB_ERR_NOMEM, "lb_memmon_open: out of memory");
    for (int i = 0; i < F_COUNT; i++) m->fd[i] = -1;
    m->use_rusage = root[0] == 0;
    long ps = sysconf(_SC_PAGESIZE);
    m->page_size = ps > 0 ? (uint64_t)ps : 4096;

    static const char *req[2] = {"/proc/meminfo", "/proc/self/statm"};
    for (int i = 0; i < 2; i++) {
        m->fd[i == 0 ? F_MEMINFO : F_STATM] = open_at_root(root, req[i]);
        if (m->fd[i == 0 ? F_MEMINFO : F_STATM] < 0) {
            int e = errno;
            lb_memmon_close(m);
            return lb_fail(err, LB_ERR_IO, "%s%s: %s", root, req[i], strerror(e));
        }
    }
    m->fd[F_STATUS] = open_at_root(root, "/proc/self/status");
    m->fd[F_SMAPS] = open_at_root(root, "/proc/self/smaps_rollup");
    m->fd[F_PSI] = open_at_root(root, "/proc/pressure/memory");
    if (!open_cgroup(m, root, 2) && !open_cgroup(m, root, 1)) m->cg_path[0] = 0;
    *out = m;
    return LB_OK;
}

lb_status lb_memmon_open(lb_memmon **out, lb_error *err) { return lb_memmon_open_root("", out, err); }

void lb_memmon_close(lb_memmon *m) {
    if (!m) return;
    for (int i = 0; i < F_COUNT; i++)
        if (m->fd[i] >= 0) close(m->fd[i]);
    for (int i = 0; i < m->n_limit; i++) close(m->limit_fd[i]);
    free(m->cbs);
    free(m);
}

const char *lb_memmon_cgroup_path(const lb_memmon *m) { return m ? m->cg_path : ""; }

/* ---- snapshot ------------------------------------------------------------------------------ */

static lb_status read_system(lb_memmon *m, lb_mem_snapshot *s, lb_error *err) {
    if (reread(m, m->fd[F_MEMINFO]) < 0) return lb_fail(err, LB_ERR_IO, "/proc/meminfo: %s", strerror(errno));
    want w[] = {WANT("MemTotal", &s->sys_total),   WANT("MemFree", &s->sys_free),
                WANT("MemAvailable", &s->sys_available), WANT("Cached", &s->sys_cached),
                WANT("SwapTotal", &s->sys_swap_total), WANT("SwapFree", &s->sys_swap_free)};
    parse_keys(m->buf, ':', w, 6);
    if (!s->sys_total) return lb_fail(err, LB_ERR_FORMAT, "/proc/meminfo: no MemTotal");
    return LB_OK;
}

static lb_status read_process(lb_memmon *m, lb_mem_snapshot *s, lb_error *err) {
    if (reread(m, m->fd[F_STATM]) < 0) return lb_fail(err, LB_ERR_IO, "/proc/self/statm: %s", strerror(errno));
    uint64_t f[3] = {0}; /* size resident shared, in pages */
    const char *p = m->buf;
    for (int i = 0; i < 3; i++) {
        if (!(p = parse_u64(p, &f[i]))) return lb_fail(err, LB_ERR_FORMAT, "/proc/self/statm: field %d is not a number", i + 1);
        while (*p == ' ') p++;
    }
    s->proc_vm_size = f[0] * m->page_size;
    s->proc_rss = f[1] * m->page_size;
    s->proc_file = f[2] * m->page_size;
    s->proc_anon = f[1] > f[2] ? (f[1] - f[2]) * m->page_size : 0;
    if (m->use_rusage) {
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0 && ru.ru_maxrss > 0) s->proc_peak_rss = (uint64_t)ru.ru_maxrss * 1024;
    }
    return LB_OK;
}

static void read_status(lb_memmon *m, lb_mem_snapshot *s) {
    if (m->fd[F_STATUS] < 0 || reread(m, m->fd[F_STATUS]) < 0) return;
    want w[] = {WANT("VmHWM", &s->proc_hwm), WANT("RssShmem", &s->proc_shmem), WANT("VmSwap", &s->proc_swap)};
    parse_keys(m->buf, ':', w, 3);
    if (!m->use_rusage) s->proc_peak_rss = s->proc_hwm;
}

static void read_psi(lb_memmon *m, lb_mem_snapshot *s) {
    if (m->fd[F_PSI] < 0 || reread(m, m->fd[F_PSI]) < 0) return;
    const char *some = strstr(m->buf, "some "), *full = strstr(m->buf, "full ");
    s->psi_present = some && parse_psi_line(some, &s->psi_some);
    /* "full" is absent on kernels before 5.13 for the cpu file; treat it as zero if missing */
    if (s->psi_present && full && !parse_psi_line(full, &s->psi_full)) memset(&s->psi_full, 0, sizeof s->psi_full);
}

static uint64_t read_number(lb_memmon *m, int fd, int *ok) {
    *ok = fd >= 0 && reread(m, fd) > 0;
    return *ok ? parse_limit(m->buf) : 0;
}

static void read_cgroup(lb_memmon *m, lb_mem_snapshot *s, int detailed) {
    if (m->fd[F_CG_CURRENT] < 0) return;
    int ok;
    uint64_t usage = read_number(m, m->fd[F_CG_CURRENT], &ok);
    if (!ok) return;
    s->cgroup_present = 1;
    s->cgroup_version = m->cg_version;
    s->cgroup_usage = usage == UINT64_MAX ? 0 : usage;
    s->cgroup_limit = UINT64_MAX;
    for (int i = 0; i < m->n_limit; i++) {
        uint64_t l = read_number(m, m->limit_fd[i], &ok);
        if (ok && l < s->cgroup_limit) s->cgroup_limit = l;
    }
    uint64_t peak = read_number(m, m->fd[F_CG_PEAK], &ok);
    s->cgroup_peak_present = ok && peak != UINT64_MAX;
    s->cgroup_peak = s->cgroup_peak_present ? peak : 0;
    if (m->fd[F_CG_STAT] < 0 || (!detailed && s->cgroup_limit == UINT64_MAX)) return;
    if (reread(m, m->fd[F_CG_STAT]) <= 0) return;
    if (m->cg_version == 2) {
        want w[] = {WANT("anon", &s->cgroup_anon), WANT("file", &s->cgroup_file),
                    WANT("inactive_file", &s->cgroup_inactive_file)};
        s->cgroup_stat_present = parse_keys(m->buf, ' ', w, 3) > 0;
    } else {
        uint64_t hier = UINT64_MAX;
        want w[] = {WANT("total_rss", &s->cgroup_anon), WANT("total_cache", &s->cgroup_file),
                    WANT("total_inactive_file", &s->cgroup_inactive_file),
                    WANT("hierarchical_memory_limit", &hier)};
        s->cgroup_stat_present = parse_keys(m->buf, ' ', w, 4) > 0;
        if (hier < (1ull << 62) && hier < s->cgroup_limit) s->cgroup_limit = hier;
    }
}

static void read_smaps(lb_memmon *m, lb_mem_snapshot *s) {
    if (m->fd[F_SMAPS] < 0 || reread(m, m->fd[F_SMAPS]) < 0) return;
    want w[] = {WANT("Pss", &s->proc_pss),           WANT("Pss_Anon", &s->proc_pss_anon),
                WANT("Pss_File", &s->proc_pss_file), WANT("Pss_Shmem", &s->proc_pss_shmem),
                WANT("Private_Dirty", &s->proc_private_dirty), WANT("Locked", &s->proc_locked)};
    parse_keys(m->buf, ':', w, 6);
}

static lb_status snapshot(lb_memmon *m, lb_mem_snapshot *out, int detailed, lb_error *err) {
    if (!m || !out) return lb_fail(err, LB_ERR_ARG, "lb_memmon_snapshot: NULL argument");
    memset(out, 0, sizeof *out);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    out->time_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    lb_status st = read_system(m, out, err);
    if (st) return st;
    if ((st = read_process(m, out, err))) return st;
    read_psi(m, out);
    read_cgroup(m, out, detailed);
    if (detailed || !m->use_rusage) read_status(m, out);
    /* statm and status are read moments apart: keep peak >= everything seen */
    if (out->proc_peak_rss < out->proc_rss) out->proc_peak_rss = out->proc_rss;
    if (out->proc_peak_rss < out->proc_hwm) out->proc_peak_rss = out->proc_hwm;
    if (detailed) {
        read_smaps(m, out);
        out->detailed_present = 1;
    }
    return LB_OK;
}

lb_status lb_memmon_snapshot(lb_memmon *m, lb_mem_snapshot *out, lb_error *err) { return snapshot(m, out, 0, err); }

lb_status lb_memmon_snapshot_detailed(lb_memmon *m, lb_mem_snapshot *out, lb_error *err) {
    return snapshot(m, out, 1, err);
}

/* ---- pressure callbacks -------------------------------------------------------------------- */

lb_status lb_memmon_on_pressure(lb_memmon *m, lb_mem_pressure_cb cb, void *userdata, lb_error *err) {
    if (!m || !cb) return lb_fail(err, LB_ERR_ARG, "lb_memmon_on_pressure: NULL monitor or callback");
    if (m->n_cbs == m->cap_cbs) {
        size_t cap = m->cap_cbs ? m->cap_cbs * 2 : 4;
        cb_entry *n = realloc(m->cbs, cap * sizeof *n);
        if (!n) return lb_fail(err, LB_ERR_NOMEM, "lb_memmon_on_pressure: out of memory");
        m->cbs = n;
        m->cap_cbs = cap;
    }
    m->cbs[m->n_cbs++] = (cb_entry){cb, userdata};
    return LB_OK;
}

lb_mem_pressure lb_memmon_feed(lb_memmon *m, const lb_mem_snapshot *s) {
    lb_mem_pressure now = lb_mem_pressure_level(s), old = m->level;
    if (now != old) {
        m->level = now;
        for (size_t i = 0; i < m->n_cbs; i++) m->cbs[i].cb(old, now, s, m->cbs[i].userdata);
    }
    return now;
}

lb_status lb_memmon_poll(lb_memmon *m, lb_mem_pressure *level, lb_error *err) {
    lb_mem_snapshot s;
    lb_status st = lb_memmon_snapshot(m, &s, err);
    if (st) return st;
    lb_mem_pressure l = lb_memmon_feed(m, &s);
    if (level) *level = l;
    return LB_OK;
}
