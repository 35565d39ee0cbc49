/* Options of lowbit run, shared by the single-sequence path (run.c) and --parallel (run_parallel.c). */
#ifndef LB_CLI_RUN_H
#define LB_CLI_RUN_H
#include "lowbit.h"

typedef struct run_opts {
    const char *model, *prompt, *tokenizer, *system, *delta, *file, *draft;
    long long n_predict, n_ctx, threads, parallel, draft_max, lookup;
    double draft_min_p;
    lb_sampler_params sp;
    lb_kv_type kv;
    lb_device device;
    int json, chat, kv_given, mem_report, no_repack;
    uint64_t mem_budget;
} run_opts;

/* lowbit run --parallel N -f PROMPTS: every line of o->prompt is one prompt. */
int cli_run_parallel(const run_opts *o);
/* Reads path ("-" is stdin) whole into a malloc'ed NUL-terminated string; NULL after saying why. */
char *cli_read_text(const char *path);
#endif
