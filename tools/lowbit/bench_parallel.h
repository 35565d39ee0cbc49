/* lowbit bench --parallel (bench_parallel.c). */
#ifndef LB_CLI_BENCH_PARALLEL_H
#define LB_CLI_BENCH_PARALLEL_H
#include "lowbit.h"

typedef struct bench_par {
    const char *model;
    long long n_prompt, n_gen;
    int reps, threads, max_batch, json, n_list;
    lb_kv_type kv;
    int list[32];
} bench_par;
int cli_parallel_list(const char *s, int *out, int cap);
/* Prints the table (or JSON list) for every count of b->list; a CLI exit code. */
int cli_bench_parallel(lb_model *m, const bench_par *b, int32_t bos, lb_error *err);
#endif
