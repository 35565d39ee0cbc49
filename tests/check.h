/* Minimal test harness: CHECK counts passes and failures; test_summary() prints the
 * "N passed, N failed" line CI reads and returns the process exit code. */
#ifndef LB_TESTS_CHECK_H
#define LB_TESTS_CHECK_H
#include <stdio.h>

static int g_pass, g_fail;

#define CHECK(cond, ...)                                                            \
    do {                                                                            \
        if (cond) g_pass++;                                                         \
        else {                                                                      \
            g_fail++;                                                               \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);         \
            fprintf(stderr, " " __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                    \
        }                                                                           \
    } while (0)

static inline int test_summary(void) {
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}

#define SHARED(p) LB_SHARED_DIR "/" p
#endif
