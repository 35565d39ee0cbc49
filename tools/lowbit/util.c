#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

int cli_error(const lb_error *err) {
    fprintf(stderr, "lowbit: %s\n", err->msg[0] ? err->msg : lb_status_name(err->status));
    return CLI_ERR;
}

int cli_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("lowbit: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_ERR;
}

int cli_int(const char *opt, const char *val, long long lo, long long hi, long long *out) {
    if (!val) return fprintf(stderr, "lowbit: %s needs a value\n", opt), 0;
    char *end;
    errno = 0;
    long long v = strtoll(val, &end, 10);
    if (errno || end == val || *end || v < lo || v > hi)
        return fprintf(stderr, "lowbit: %s: '%s' is not an integer in [%lld, %lld]\n", opt, val, lo, hi), 0;
    *out = v;
    return 1;
}

int cli_default_threads(void) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    return ncpu > 0 ? (int)ncpu : 1;
}

int cli_threads(const char *opt, const char *val, int *threads) {
    long long n;
    if (!cli_int(opt, val, 1, 512, &n)) return 0;
    *threads = (int)n;
    return 1;
}

int cli_in_out_arg(const char *cmd, const char *a, const char **in, const char **out) {
    if (a[0] == '-' && a[1]) return fprintf(stderr, "lowbit: %s: unknown option '%s'\n", cmd, a), CLI_USAGE;
    if (!*in) *in = a;
    else if (!*out) *out = a;
    else return fprintf(stderr, "lowbit: %s: unexpected argument '%s'\n", cmd, a), CLI_USAGE;
    return CLI_OK;
}

int cli_in_out_given(const char *cmd, const char *in, const char *out) {
    if (!in || !out) return fprintf(stderr, "lowbit: %s: IN and OUT are required (see --help)\n", cmd), CLI_USAGE;
    return CLI_OK;
}

int cli_float(const char *opt, const char *val, double *out) {
    if (!val) return fprintf(stderr, "lowbit: %s needs a value\n", opt), 0;
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end || !isfinite(v))
        return fprintf(stderr, "lowbit: %s: '%s' is not a number\n", opt, val), 0;
    *out = v;
    return 1;
}

int cli_float_in(const char *opt, const char *val, double lo, double hi, double *out) {
    double v;
    if (!cli_float(opt, val, &v)) return 0;
    if (v < lo || v > hi) return fprintf(stderr, "lowbit: %s: %s is out of range (allowed: %g to %g)\n", opt, val, lo, hi), 0;
    *out = v;
    return 1;
}

const char *cli_human_bytes(uint64_t n, char *buf, size_t cap) {
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int i = 0;
    while (v >= 1024 && i < 4) v /= 1024, i++;
    if (i == 0) snprintf(buf, cap, "%llu B", (unsigned long long)n);
    else snprintf(buf, cap, "%.2f %s", v, u[i]);
    return buf;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#include <sys/resource.h>

static int utf8_len(const unsigned char *s, size_t n) {
    if (s[0] < 0x80) return 1;
    int len = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
    if (!len || (size_t)len > n) return 0;
    for (int i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (len == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))) return 0;
    if (len == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))) return 0;
    return len;
}

void cli_json_string(FILE *f, const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char ch = s[i];
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch), i++;
        else if (ch == '\n') fputs("\\n", f), i++;
        else if (ch == '\t') fputs("\\t", f), i++;
        else if (ch == '\r') fputs("\\r", f), i++;
        else if (ch < 0x20 || ch == 0x7f) fprintf(f, "\\u%04x", ch), i++;
        else {
            int len = utf8_len(s + i, n - i);
            if (!len) fputs("\\ufffd", f), i++;
            else fwrite(s + i, 1, (size_t)len, f), i += (size_t)len;
        }
    }
    fputc('"', f);
}

void cli_json_ids(FILE *f, const int32_t *ids, size_t n) {
    fputc('[', f);
    for (size_t i = 0; i < n; i++) fprintf(f, "%s%d", i ? ", " : "", ids[i]);
    fputc(']', f);
}

uint64_t cli_peak_rss(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_maxrss * 1024;
}

int cli_kv_type(const char *opt, const char *val, lb_kv_type *out) {
    static const struct { const char *name; lb_kv_type t; } k[] = {
        {"f32", LB_KV_F32}, {"f16", LB_KV_F16}, {"q8_0", LB_KV_Q8_0}, {"q4_0", LB_KV_Q4_0}};
    for (size_t i = 0; val && i < sizeof k / sizeof *k; i++)
        if (!strcmp(val, k[i].name)) return *out = k[i].t, 1;
    fprintf(stderr, "lowbit: %s must be f32, f16, q8_0 or q4_0%s%s%s\n", opt, val ? " (got '" : "", val ? val : "", val ? "')" : "");
    return 0;
}

int cli_device(const char *opt, const char *val, lb_device *out) {
    if (val && !strcmp(val, "cpu")) *out = LB_DEVICE_CPU;
    else if (val && !strcmp(val, "cuda")) *out = LB_DEVICE_CUDA;
    else return fprintf(stderr, "lowbit: %s must be cpu or cuda\n", opt), 0;
    return 1;
}

char *cli_read_text(const char *path) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return cli_fail("%s: %s", path, strerror(errno)), NULL;
    size_t n = 0, cap = 4096;
    char *s = malloc(cap);
    for (size_t got; s && (got = fread(s + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (cap - n - 1 == 0) {
            char *t = cap < ((size_t)1 << 30) ? realloc(s, cap * 2) : NULL;
            if (!t) { free(s); s = NULL; break; }
            s = t;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    if (f != stdin) fclose(f);
    if (!s || bad) {
        free(s);
        return cli_fail("%s: %s", path, s ? "read error" : "out of memory (prompt files are read whole, at most 1 GiB)"), NULL;
    }
    const char *nul = memchr(s, 0, n);
    if (nul) {
        size_t at = (size_t)(nul - s);
        free(s);
        return cli_fail("%s: holds a NUL byte at offset %zu; a prompt file is text", path, at), NULL;
    }
    s[n] = 0;
    return s;
}
