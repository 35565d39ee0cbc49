/* Minimal test harness: CHECK counts passes and failures; test_summary() prints the
 * "N passed, N failed" line CI reads and returns the process exit code. */
#ifndef LB_TESTS_CHECK_H
#define LB_TESTS_CHECK_H
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

static int g_pass, g_fail;

/* Test data: xorshift64 on the caller's state (each test keeps its own seed, so its data does
 * not change), and a float uniform in [-1, 1) from the top 24 bits. */
static inline uint64_t check_xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}
static inline float check_rnd_pm1(uint64_t *s) {
    return (float)((check_xorshift(s) >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

/* No format attribute: CHECK appends an empty string so a message is always present, which
 * keeps CHECK(cond) valid ISO C (no empty variadic list) without format warnings. */
static inline void check_report(const char *file, int line, const char *cond, const char *fmt, ...) {
    fprintf(stderr, "FAIL %s:%d: %s: ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

#define CHECK(...) CHECK_(__VA_ARGS__, "")
#define CHECK_(cond, ...)                                                                          \
    do {                                                                                           \
        if (cond) g_pass++;                                                                        \
        else {                                                                                     \
            g_fail++;                                                                              \
            check_report(__FILE__, __LINE__, #cond, __VA_ARGS__);                                  \
        }                                                                                          \
    } while (0)

static inline int test_summary(void) {
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}

/* ||a - b|| / ||b|| over n floats (||a - b|| when b is all zero) */
static inline double check_rel_err(const float *a, const float *b, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? __builtin_sqrt(num / den) : __builtin_sqrt(num);
}

#define SHARED(p) LB_SHARED_DIR "/" p
#endif
