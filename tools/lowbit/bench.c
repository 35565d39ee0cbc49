/* lowbit bench: prompt-processing and generation speed (median of repetitions), peak RSS. */
#include <stdlib.h>
#include <string.h>

#include "bench_parallel.h"
#include "cli.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Bytes of weights one decoded token reads: every tensor but the embedding table, of which it
 * reads one row (a tied table is read whole as the output matrix, so it counts). */
static uint64_t token_bytes(const lb_model *m) {
    lb_model_info mi;
    lb_model_get_info(m, &mi);
    uint64_t b = mi.weight_bytes;
    for (size_t i = 0; i < mi.n_tensors && !mi.tied_embeddings; i++) {
        lb_tensor_info ti;
        if (lb_model_tensor_info(m, i, &ti, NULL)) continue;
        if (ti.name && (strstr(ti.name, "token_embd") || strstr(ti.name, "embed_tokens") || strstr(ti.name, "tok_embeddings")) &&
            ti.nbytes <= b)
            b -= ti.nbytes;
    }
    return b;
}

int cmd_bench(int argc, char **argv) {
    const char *model = NULL;
    long long threads = 0, n_prompt = 128, n_gen = 64, reps = 5, n_ctx = 0;
    uint64_t budget = 0;
    int json = 0, kv_given = 0;
    lb_kv_type kv = LB_KV_F32;
    lb_device device = LB_DEVICE_CPU;
    int no_repack = 0;
    bench_par par = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            puts("usage: lowbit bench -m MODEL [-t THREADS] [-p 128] [-n 64] [-r 5] [--kv-type f32|f16|q8_0|q4_0] [-c CTX]\n"
                 "                   [--mem-budget SIZE] [--device cpu|cuda] [--no-repack] [--json]\n\n"
                 "Measures prompt processing (-p tokens in one batch; -p 0 skips it) and generation (-n tokens,\n"
                 "one at a time, from an empty context after BOS), reporting the median tokens/s of -r\n"
                 "repetitions, the peak RSS and the CPU kernel level (LOWBIT_CPU=scalar|avx2 forces a lower one).\n"
                 "--json prints {\"pp_tok_s\", \"tg_tok_s\", \"tg_gb_s\", \"peak_rss_bytes\", \"threads\", \"kernels\", \"device\"};\n"
                 "tg_gb_s is the model's weight bytes one token reads (all but the embedding table) x tg_tok_s.\n"
                 "-c allocates a context of CTX tokens (default: what -p and -n need; at most the trained\n"
                 "context). --mem-budget plans the KV type within SIZE (6G = 6 GiB), streams weights larger than SIZE\n"
                 "from the file layer by layer, and refuses when not even one layer fits.\n"
                 "--no-repack keeps Q4_0 matrices in the file's layout instead of 8-row groups (LOWBIT_REPACK=0).\n\n"
                 "--parallel 1,4,8,16,32: for each count N, N sequences through the batched engine, as\n"
                 "llama-batched-bench: N different -p token prompts processed side by side, then -n decode steps\n"
                 "of one token per sequence. Prints a table of aggregate prompt and generation tok/s and the\n"
                 "generation tok/s of each sequence (--json: a list of {\"parallel\", \"pp_tok_s\", \"tg_tok_s\",\n"
                 "\"tg_tok_s_per_seq\", \"threads\", \"kernels\"}). -p must be at least 1 there.");
            return CLI_OK;
        }
        if (!strcmp(a, "--json")) { json = 1; continue; }
        if (!strcmp(a, "--no-repack")) { no_repack = 1; continue; }
        if (!v) return fprintf(stderr, "lowbit: %s needs a value\n", a), CLI_USAGE;
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!cli_int(a, v, 1, 512, &threads)) return CLI_USAGE; }
        else if (!strcmp(a, "-p")) { if (!cli_int(a, v, 0, 1 << 20, &n_prompt)) return CLI_USAGE; }
        else if (!strcmp(a, "-n")) { if (!cli_int(a, v, 0, 1 << 20, &n_gen)) return CLI_USAGE; }
        else if (!strcmp(a, "-r") || !strcmp(a, "--reps")) { if (!cli_int(a, v, 1, 1000, &reps)) return CLI_USAGE; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { if (!cli_int(a, v, 1, 1 << 24, &n_ctx)) return CLI_USAGE; }
        else if (!strcmp(a, "--parallel")) { if (!(par.n_list = cli_parallel_list(v, par.list, 32))) return CLI_USAGE; }
        else if (!strcmp(a, "--mem-budget")) { if (!cli_mem_budget(a, v, &budget)) return CLI_USAGE; }
        else if (!strcmp(a, "--device")) { if (!cli_device(a, v, &device)) return CLI_USAGE; }
        else if (!strcmp(a, "--kv-type")) {
            if (!cli_kv_type(a, v, &kv)) return CLI_USAGE;
            kv_given = 1;
        } else return fprintf(stderr, "lowbit: bench: unknown option '%s'\n", a), CLI_USAGE;
    }
    if (!model) return fprintf(stderr, "usage: lowbit bench -m MODEL (see --help)\n"), CLI_USAGE;

    lb_error err = {0};
    lb_model_params mp = lb_model_default_params();
    mp.n_threads = (int)threads;
    lb_model *m;
    if (budget && cli_mem_precheck(model, budget)) return CLI_ERR;
    if (no_repack) setenv("LOWBIT_REPACK", "0", 1); /* --parallel loads the model again */
    if (lb_model_load(model, &mp, &m, &err)) return cli_error(&err);
    int nv = lb_model_n_vocab(m);
    const lb_tokenizer *tok = lb_model_tokenizer(m);
    int32_t bos = 1;
    if (tok) { /* BOS as the tokenizer adds it; id 1 (the Llama convention) otherwise */
        int32_t *ids;
        size_t n;
        if (lb_tokenize(tok, "", 0, 1, &ids, &n, &err) == LB_OK) {
            if (n > 0) bos = ids[0];
            free(ids);
        }
    }
    if (bos >= nv) bos = 0;
    if (par.n_list) {
        par.model = model, par.n_prompt = n_prompt, par.n_gen = n_gen, par.reps = (int)reps, par.threads = (int)threads;
        par.kv = kv, par.json = json, par.max_batch = 256;
        for (int i = 0; i < par.n_list; i++)
            if (par.list[i] > par.max_batch) par.max_batch = par.list[i];
        int rc = n_prompt < 1 ? cli_fail("bench --parallel needs -p of at least 1 token") : cli_bench_parallel(m, &par, bos, &err);
        lb_model_free(m);
        return rc;
    }
    lb_session_params sp = lb_session_default_params();
    sp.n_threads = (int)threads;
    sp.kv_type = kv;
    long long need = (n_prompt > n_gen + 1 ? n_prompt : n_gen + 1);
    int tr = lb_model_n_ctx_train(m);
    const char *why = n_ctx && n_ctx < need ? "is smaller than -p/-n need" : NULL;
    if (!n_ctx) n_ctx = need;
    if (!why && tr > 0 && n_ctx > tr) why = "is larger than the model's trained context";
    if (why) {
        lb_model_free(m);
        return cli_fail("context of %lld tokens %s (%lld needed, %d trained)", n_ctx, why, need, tr);
    }
    /* the context is fixed by -p/-n or -c: the plan may choose the KV type, never shrink it */
    if (budget && cli_mem_plan(m, budget, (int)threads, &n_ctx, 1, &kv, kv_given, &sp.stream_window)) {
        lb_model_free(m);
        return CLI_ERR;
    }
    sp.kv_type = kv;
    sp.n_ctx = (int)n_ctx;
    sp.device = device;
    lb_session *s = NULL;
    float *logits = malloc((size_t)nv * sizeof(float));
    int32_t *prompt = malloc((size_t)(n_prompt + 1) * sizeof(int32_t));
    double *pp = calloc((size_t)reps, sizeof(double)), *tg = calloc((size_t)reps, sizeof(double));
    lb_status st = (!logits || !prompt || !pp || !tg) ? lb_fail(&err, LB_ERR_NOMEM, "out of memory")
                                                     : lb_session_new(m, &sp, &s, &err);
    /* a fixed pseudo-random prompt: the speed of a batch does not depend on which ids it holds */
    uint64_t x = 88172645463325252ull;
    for (long long i = 0; i < n_prompt; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        prompt[i] = (int32_t)(x % (uint64_t)nv);
    }
    if (n_prompt) prompt[0] = bos;
    for (long long r = -1; st == LB_OK && r < reps; r++) { /* r = -1 warms caches and page tables */
        if (n_prompt) {
            lb_session_reset(s);
            double t0 = cli_now();
            st = lb_session_eval(s, prompt, (size_t)n_prompt, logits, 0, &err);
            if (r >= 0) pp[r] = n_prompt / (cli_now() - t0);
        }
        if (st || !n_gen) continue;
        lb_session_reset(s);
        int32_t id = bos;
        st = lb_session_eval(s, &id, 1, logits, 0, &err);
        double t0 = cli_now();
        for (long long i = 0; st == LB_OK && i < n_gen; i++) {
            int32_t best = 0; /* greedy, inline: sampling cost is not what is measured */
            for (int k = 1; k < nv; k++)
                if (logits[k] > logits[best]) best = k;
            st = lb_session_eval(s, &best, 1, logits, 0, &err);
        }
        if (r >= 0) tg[r] = n_gen / (cli_now() - t0);
    }
    if (st == LB_OK) {
        double pp_m = n_prompt ? median(pp, (int)reps) : 0, tg_m = n_gen ? median(tg, (int)reps) : 0;
        uint64_t rss = cli_peak_rss();
        char kern[96], dev[128] = "cpu";
        lb_cpu_kernels(kern, sizeof kern);
        if (device == LB_DEVICE_CUDA) {
            char name[96] = "?";
            size_t total = 0;
            lb_cuda_device(name, sizeof name, &total, NULL);
            snprintf(dev, sizeof dev, "cuda (%s, %.1f GiB)", name, total / 1073741824.0);
        }
        double gbs = n_gen ? tg_m * (double)token_bytes(m) / 1e9 : 0;
        if (json) {
            printf("{\"pp_tok_s\": ");
            if (n_prompt) printf("%.2f", pp_m); else printf("null");
            printf(", \"tg_tok_s\": ");
            if (n_gen) printf("%.2f", tg_m); else printf("null");
            printf(", \"tg_gb_s\": %.2f, \"peak_rss_bytes\": %llu, \"threads\": %d, \"kernels\": \"%s\", \"device\": \"%s\"}\n",
                   gbs, (unsigned long long)rss, lb_session_n_threads(s), kern, dev);
        } else {
            char b[32];
            printf("model:      %s\nthreads:    %d\nkernels:    %s\ndevice:     %s\n", model, lb_session_n_threads(s), kern, dev);
            if (n_prompt) printf("prompt:     %.2f tok/s (%lld tokens, median of %lld)\n", pp_m, n_prompt, reps);
            if (n_gen) printf("generation: %.2f tok/s (%lld tokens, median of %lld), weights read at %.1f GB/s\n", tg_m, n_gen, reps, gbs);
            printf("peak RSS:   %s\n", cli_human_bytes(rss, b, sizeof b));
        }
    }
    free(logits);
    free(prompt);
    free(pp);
    free(tg);
    lb_session_free(s);
    lb_model_free(m);
    return st ? cli_error(&err) : CLI_OK;
}
