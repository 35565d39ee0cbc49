/* Shared helpers for the lowbit subcommands: one file per subcommand, each a cmd_<name>(). */
#ifndef LB_CLI_H
#define LB_CLI_H
#include <stdint.h>
#include <stdio.h>
#include "lowbit.h"

typedef int (*lb_cmd_fn)(int argc, char **argv);

/* Exit codes: 0 ok, 1 error (bad input, failed work), 2 usage error. */
#define CLI_OK 0
#define CLI_ERR 1
#define CLI_USAGE 2

/* Prints "lowbit: <msg>" on stderr and returns CLI_ERR. */
int cli_error(const lb_error *err);
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parses an integer / float option value or prints a usage error naming the option. */
int cli_int(const char *opt, const char *val, long long lo, long long hi, long long *out);
int cli_float(const char *opt, const char *val, double *out);
/* cli_float within [lo, hi]; out of range prints the option, the value and the allowed range. */
int cli_float_in(const char *opt, const char *val, double lo, double hi, double *out);
/* Default thread count: the online cores (1 when unknown). */
int cli_default_threads(void);
/* "-t/--threads N" (1..512, the thread pool's cap) into *threads: 1, or 0 after printing a usage error. */
int cli_threads(const char *opt, const char *val, int *threads);
/* Commands taking IN OUT: arg a (not a known option) becomes *in, then *out. CLI_OK, or CLI_USAGE
 * after printing that cmd does not know the option or the extra argument. */
int cli_in_out_arg(const char *cmd, const char *a, const char **in, const char **out);
/* CLI_OK when both IN and OUT were given, else CLI_USAGE after saying so. */
int cli_in_out_given(const char *cmd, const char *in, const char *out);
/* Formats bytes in binary units into buf ("1.23 GiB"). */
const char *cli_human_bytes(uint64_t n, char *buf, size_t cap);
double cli_now(void); /* monotonic seconds */



/* Writes s as a JSON string literal; invalid UTF-8 becomes U+FFFD so output is always valid. */
void cli_json_string(FILE *f, const char *s, size_t n);
void cli_json_ids(FILE *f, const int32_t *ids, size_t n);
/* Peak resident set size of this process in bytes. */
uint64_t cli_peak_rss(void);
/* Progress bar for lb_progress_fn callbacks: pass a zeroed state as user. */
typedef struct cli_progress_state {
    double t0, last;
    int ended;
    const char *label; /* final line when stderr is not a terminal, e.g. "wrote" */
} cli_progress_state;
void cli_progress(void *user, const char *what, uint64_t done, uint64_t total);

/* lb_model_load with a tokenizer override (NULL: the model's own) and a thread count (text_ids.c). */
lb_status cli_load_model(const char *path, const char *tok, int threads, lb_model **m, lb_error *err);
/* Loads model, then tokenizes the text file at text_path (with BOS) with its tokenizer; *m is set
 * (to free) whenever the load succeeded, even when tokenizing failed. */
/* A progress bar of chunks (imatrix.c); user: a double holding the start time (cli_now). */
void cli_chunk_bar(void *user, const char *what, uint64_t done, uint64_t total);
lb_status cli_text_ids(const char *model, const char *tok, int threads, const char *text_path, lb_model **m,
                       int32_t **ids, size_t *n, lb_error *err);

/* lb_hub_resolve with a progress bar on stderr (pull.c); base NULL: the defaults. */
int cli_hub_resolve(const char *ref, const lb_hub_params *base, char **path);

/* --kv-type f32|f16|q8_0|q4_0 into *out: 1, or 0 after printing what is allowed. */
int cli_kv_type(const char *opt, const char *val, lb_kv_type *out);
/* --device cpu|cuda: 0 after printing why. */
int cli_device(const char *opt, const char *val, lb_device *out);

/* Memory options (memplan.c). A --mem-budget value (lb_size_parse): 0 after printing why. */
int cli_mem_budget(const char *opt, const char *val, uint64_t *out);
/* Plans the context and KV type within budget and prints the plan on stderr. *n_ctx: the
 * requested context (0: the default) in, the planned one out; ctx_strict when the user gave
 * --ctx; kv_forced when the user gave --kv-type (*kv); *stream_window: the layers to stream
 * through when the weights do not fit (0: they do). CLI_OK, or CLI_ERR after printing why the
 * model does not fit. */
/* Before loading under --mem-budget: a .lbz restore larger than the budget is refused without
 * allocating it (CLI_ERR with a message), CLI_OK otherwise. */
int cli_mem_precheck(const char *model, uint64_t budget);
int cli_mem_plan(lb_model *m, uint64_t budget, int n_threads, long long *n_ctx, int ctx_strict, lb_kv_type *kv,
                 int kv_forced, int *stream_window);
/* The memory report of m (and s, may be NULL) on stderr. */
void cli_mem_report(const lb_model *m, const lb_session *s);
/* Pressure guard for generation (NULL, with a note, when the monitor cannot open). */
lb_mem_guard *cli_mem_guard_open(void);
#endif
