/* lowbit: run and compress large language models in little memory.
 * The whole public C API. Handles are opaque; every fallible call returns lb_status (0 = ok)
 * and, when given an lb_error, fills it with a one-line message naming the file and field. */
#ifndef LOWBIT_H
#define LOWBIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden: only what this header declares with LB_API is
 * exported from liblowbit.so (tests/cli_layers.sh checks with nm -D). */
#if defined(__GNUC__) || defined(__clang__)
#define LB_API __attribute__((visibility("default")))
#else
#define LB_API
#endif

#define LOWBIT_VERSION_MAJOR 0
#define LOWBIT_VERSION_MINOR 1
#define LOWBIT_VERSION_PATCH 0
LB_API const char *lb_version(void);
/* The CPU kernel level in use, detected once: "scalar", "avx2" or "avx512", then the extra
 * features in parentheses, e.g. "avx512 (vnni bf16 avx-vnni)". The environment variable
 * LOWBIT_CPU=scalar|avx2|avx512 lowers it (never above what the CPU has), which the text then
 * says. Writes at most cap bytes into buf and returns buf. */
LB_API const char *lb_cpu_kernels(char *buf, size_t cap);

/* ---- status and errors ---------------------------------------------------------------- */
typedef enum lb_status {
    LB_OK = 0,
    LB_ERR_IO,          /* open/read/write/mmap failed */
    LB_ERR_FORMAT,      /* file contents malformed or truncated */
    LB_ERR_UNSUPPORTED, /* valid but not (yet) handled: architecture, dtype, version */
    LB_ERR_NOMEM,       /* allocation failed or would exceed a limit */
    LB_ERR_ARG,         /* bad argument from the caller */
    LB_ERR_RANGE,       /* index, id or size out of range */
    LB_ERR_BUDGET,      /* does not fit the memory budget */
    LB_ERR_CORRUPT,     /* checksum mismatch */
    LB_ERR_MISMATCH     /* two inputs that must agree do not (e.g. delta and base) */
} lb_status;

LB_API const char *lb_status_name(lb_status s);

/* Filled by fallible calls when non-NULL. msg is a single line. */
typedef struct lb_error {
    lb_status status;
    char msg[512];
} lb_error;

/* Sets err (when non-NULL) to s and the formatted message, and returns s, so a caller can
 * `return lb_fail(err, ...)`; front ends and callbacks fill errors the library's way. */
#if defined(__GNUC__) || defined(__clang__)
LB_API lb_status lb_fail(lb_error *err, lb_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#else
LB_API lb_status lb_fail(lb_error *err, lb_status s, const char *fmt, ...);
#endif

/* Progress of long work (quantize, compress, synth): what is being done, bytes done of total. */
typedef void (*lb_progress_fn)(void *user, const char *what, uint64_t done, uint64_t total);

/* ---- output paths (src/core/outpath.c) ---------------------------------------------------- */
/* Every writer calls this before its work starts: OUT must not be empty, end in '/', or be an
 * existing folder (unless LB_OUT_FOLDER: a folder output such as a patched HF folder); its folder
 * must exist and be writable; and OUT must not be any input (NULL entries are skipped), judged by
 * device and inode, so another name, a hard link or a symlink for an input is refused too; for a
 * folder input, no file directly inside it. */
#define LB_OUT_FOLDER 1
LB_API lb_status lb_output_check(const char *out, const char *const *inputs, size_t n_inputs, int flags, lb_error *err);
/* A whole regular file into a NUL-terminated malloc'ed buffer; one over max_size is refused. */
LB_API lb_status lb_read_file(const char *path, size_t max_size, char **out, size_t *len, lb_error *err);
/* Atomic output: bytes go to a temp file beside path, renamed over it (fsynced) at commit; abort
 * or an interrupted process leaves path as it was. commit and abort free f. */
typedef struct lb_atomic_file lb_atomic_file;
LB_API lb_status lb_atomic_open(const char *path, lb_atomic_file **out, lb_error *err);
LB_API lb_status lb_atomic_write(lb_atomic_file *f, const void *data, size_t n, lb_error *err);
LB_API lb_status lb_atomic_commit(lb_atomic_file *f, lb_error *err);
LB_API void lb_atomic_abort(lb_atomic_file *f);

/* ---- logging ---------------------------------------------------------------------------- */
typedef enum lb_log_level { LB_LOG_ERROR = 0, LB_LOG_WARN, LB_LOG_INFO, LB_LOG_DEBUG } lb_log_level;
LB_API void lb_log_set_level(lb_log_level level);

#include "lowbit/model.h"
#include "lowbit/engine.h"
#include "lowbit/imatrix.h"
#include "lowbit/convert.h"
#include "lowbit/compress.h"
#include "lowbit/delta.h"
#include "lowbit/mem.h"
#include "lowbit/hub.h"

#ifdef __cplusplus
}
#endif
#endif
