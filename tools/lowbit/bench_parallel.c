/* lowbit bench --parallel 1,4,8: N sequences decoding together through one lb_engine, as
 * llama.cpp's llama-batched-bench measures it: each of N sequences gets its own -p token prompt
 * (processed side by side in batches), then -n decode steps of one token per sequence. */
#include <stdlib.h>
#include <string.h>

#include "bench_parallel.h"
#include "cli.h"
#include "engine_util.h"

/* Parses "1,4,8" into at most cap counts in 1..4096; the count, or 0 after saying why. */
int cli_parallel_list(const char *s, int *out, int cap) {
    int n = 0;
    for (const char *p = s; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 4096 || (*end && *end != ',') || n == cap) {
            fprintf(stderr, "lowbit: --parallel '%s': give up to %d counts in 1..4096, like 1,4,8,16,32\n", s, cap);
            return 0;
        }
        out[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (!n) fprintf(stderr, "lowbit: --parallel needs a count\n");
    return n;
}

/* A pseudo-random prompt per sequence (different ones, so no prefix is shared) after BOS. */
static void fill_prompts(int32_t **ids, int n, long long len, int nv, int32_t bos) {
    uint64_t x = 88172645463325252ull;
    for (int s = 0; s < n; s++)
        for (long long i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            ids[s][i] = i ? (int32_t)(x % (uint64_t)nv) : bos;
        }
}

/* One repetition: fresh sequences, prompts, then the decode steps; times in seconds. */
static lb_status one_rep(lb_engine *e, const bench_par *b, int n, int32_t **ids, float *logits, int nv, double *t_pp,
                         double *t_tg, lb_error *err) {
    int *seqs = malloc((size_t)n * sizeof *seqs);
    size_t *lens = malloc((size_t)n * sizeof *lens), *starts = calloc((size_t)n, sizeof *starts);
    lb_batch_entry *batch = malloc((size_t)n * sizeof *batch);
    lb_status st = (!seqs || !lens || !starts || !batch) ? lb_fail(err, LB_ERR_NOMEM, "out of memory") : LB_OK;
    int made = 0;
    for (; !st && made < n; made++) {
        st = lb_engine_seq_new(e, 0, &seqs[made], err);
        lens[made] = (size_t)b->n_prompt;
        if (st) break;
    }
    double t0 = cli_now();
    if (!st && b->n_prompt) st = cli_engine_prefill(e, seqs, ids, lens, starts, n, b->max_batch, nv, logits, err);
    double t1 = cli_now();
    for (long long step = 0; !st && step < b->n_gen; step++) {
        for (int s = 0; s < n; s++) { /* greedy, inline: sampling cost is not what is measured */
            const float *l = logits + (size_t)s * nv;
            int32_t best = 0;
            for (int k = 1; k < nv; k++)
                if (l[k] > l[best]) best = k;
            batch[s] = (lb_batch_entry){.seq = seqs[s], .pos = (int32_t)(b->n_prompt + step), .token = best, .logits = 1};
        }
        st = lb_engine_decode(e, batch, (size_t)n, logits, err);
    }
    *t_pp = t1 - t0;
    *t_tg = cli_now() - t1;
    for (int s = 0; s < made; s++) lb_engine_seq_free(e, seqs[s], NULL);
    free(seqs), free(lens), free(starts), free(batch);
    return st;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Medians of reps timings for n sequences; aggregate tok/s out. */
static lb_status bench_n(lb_model *m, const bench_par *b, int n, int nv, int32_t bos, double *pp, double *tg,
                         int *threads, lb_error *err) {
    lb_engine_params ep = lb_engine_default_params();
    ep.n_threads = b->threads;
    ep.kv_type = b->kv;
    ep.n_ctx = (int)(b->n_prompt + b->n_gen + 1);
    ep.n_kv_tokens = n * (ep.n_ctx + 16);
    ep.max_batch = b->max_batch;
    ep.prefix_cache = 0; /* every repetition computes its prompts */
    lb_engine *e = NULL;
    int32_t **ids = calloc((size_t)n, sizeof *ids);
    float *logits = malloc((size_t)n * nv * sizeof(float));
    double *tp = calloc((size_t)b->reps, sizeof *tp), *tt = calloc((size_t)b->reps, sizeof *tt);
    lb_status st = (!ids || !logits || !tp || !tt) ? lb_fail(err, LB_ERR_NOMEM, "out of memory") : LB_OK;
    for (int s = 0; !st && s < n; s++)
        if (!(ids[s] = malloc((size_t)(b->n_prompt + 1) * sizeof(int32_t)))) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    if (!st) fill_prompts(ids, n, b->n_prompt, nv, bos);
    if (!st) st = lb_engine_new(m, &ep, &e, err);
    for (int r = -1; !st && r < b->reps; r++) { /* r = -1 warms caches and page tables */
        double a, c;
        st = one_rep(e, b, n, ids, logits, nv, &a, &c, err);
        if (r >= 0) tp[r] = a, tt[r] = c;
    }
    if (!st) {
        qsort(tp, (size_t)b->reps, sizeof *tp, cmp_double);
        qsort(tt, (size_t)b->reps, sizeof *tt, cmp_double);
        double mp = tp[b->reps / 2], mt = tt[b->reps / 2];
        *pp = b->n_prompt && mp > 0 ? (double)n * b->n_prompt / mp : 0;
        *tg = b->n_gen && mt > 0 ? (double)n * b->n_gen / mt : 0;
        *threads = lb_engine_n_threads(e);
    }
    for (int s = 0; ids && s < n; s++) free(ids[s]);
    free(ids), free(logits), free(tp), free(tt);
    lb_engine_free(e);
    return st;
}

int cli_bench_parallel(lb_model *m, const bench_par *b, int32_t bos, lb_error *err) {
    int nv = lb_model_n_vocab(m), threads = 0;
    char kern[96];
    lb_cpu_kernels(kern, sizeof kern);
    if (b->json) printf("[");
    else printf("model:   %s\nkernels: %s\nprompt %lld, generation %lld tokens per sequence; medians of %d\n\n"
                "| parallel | prompt tok/s (all) | generation tok/s (all) | generation tok/s (per sequence) |\n"
                "|---|---|---|---|\n", b->model, kern, b->n_prompt, b->n_gen, b->reps);
    for (int i = 0; i < b->n_list; i++) {
        double pp = 0, tg = 0;
        lb_status st = bench_n(m, b, b->list[i], nv, bos, &pp, &tg, &threads, err);
        if (st) return cli_error(err);
        int n = b->list[i];
        if (b->json)
            printf("%s{\"parallel\": %d, \"pp_tok_s\": %.2f, \"tg_tok_s\": %.2f, \"tg_tok_s_per_seq\": %.2f, \"threads\": %d, "
                   "\"kernels\": \"%s\"}", i ? ", " : "", n, pp, tg, tg / n, threads, kern);
        else printf("| %d | %.2f | %.2f | %.2f |\n", n, pp, tg, tg / n);
        fflush(stdout);
    }
    if (b->json) printf("]\n");
    else printf("\nthreads: %d\n", threads);
    return CLI_OK;
}
