#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static lb_log_level g_log_level = LB_LOG_WARN; /* the one global: see ARCHITECTURE.md */

const char *lb_version(void) { return "0.1.0"; }

const char *lb_status_name(lb_status s) {
    switch (s) {
    case LB_OK: return "ok";
    case LB_ERR_IO: return "i/o error";
    case LB_ERR_FORMAT: return "malformed file";
    case LB_ERR_UNSUPPORTED: return "unsupported";
    case LB_ERR_NOMEM: return "out of memory";
    case LB_ERR_ARG: return "invalid argument";
    case LB_ERR_RANGE: return "out of range";
    case LB_ERR_BUDGET: return "over memory budget";
    case LB_ERR_CORRUPT: return "corrupt data";
    case LB_ERR_MISMATCH: return "mismatch";
    }
    return "unknown status";
}

lb_status lb_fail(lb_error *err, lb_status s, const char *fmt, ...) {
    if (err) {
        /* format into a copy first: callers may pass err->msg itself as an argument (wrapping a
         * lower-level message), and vsnprintf into its own source is undefined behaviour */
        char buf[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        err->status = s;
        memcpy(err->msg, buf, sizeof buf);
        for (char *p = err->msg; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
    }
    return s;
}

void lb_error_clear(lb_error *err) {
    if (err) {
        err->status = LB_OK;
        err->msg[0] = 0;
    }
}

void lb_log_set_level(lb_log_level level) { g_log_level = level; }

void lb_log(lb_log_level level, const char *fmt, ...) {
    if (level > g_log_level) return;
    static const char *tag[] = {"error", "warning", "info", "debug"};
    fprintf(stderr, "lowbit: %s: ", tag[level]);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
