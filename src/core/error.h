/* Internal error helpers: every fallible function fills an lb_error and returns its status. */
#ifndef LB_CORE_ERROR_H
#define LB_CORE_ERROR_H
#include "lowbit.h"

#if defined(__GNUC__)
#define LB_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LB_PRINTF(a, b)
#endif

/* lb_fail (set err, return its status) is public: lowbit.h. */
void lb_error_clear(lb_error *err);

void lb_log(lb_log_level level, const char *fmt, ...) LB_PRINTF(2, 3);
#define lb_warn(...) lb_log(LB_LOG_WARN, __VA_ARGS__)
#define lb_info(...) lb_log(LB_LOG_INFO, __VA_ARGS__)

/* Overflow-checked size arithmetic: returns 0 on overflow. */
static inline int lb_mul_ok(size_t a, size_t b, size_t *out) { return !__builtin_mul_overflow(a, b, out); }
static inline int lb_add_ok(size_t a, size_t b, size_t *out) { return !__builtin_add_overflow(a, b, out); }

#endif
