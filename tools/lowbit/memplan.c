/* Memory options shared by run and bench: --mem-budget (plan before allocating), --mem-report,
 * and the pressure guard during generation. */
#include <stdlib.h>
#include <string.h>

#include <sys/resource.h>

#include "cli.h"

int cli_mem_budget(const char *opt, const char *val, uint64_t *out) {
    lb_error err = {0};
    if (!val) return fprintf(stderr, "lowbit: %s needs a value\n", opt), 0;
    if (lb_size_parse(val, out, &err))
        return fprintf(stderr, "lowbit: %s: %s\n", opt, err.msg), 0;
    return 1;
}

int cli_mem_precheck(const char *model, uint64_t budget) {
    uint64_t need = 0;
    lb_error err = {0};
    if (lb_model_load_bytes(model, &need, &err)) return cli_error(&err);
    if (need > budget) {
        char a[32], b[32];
        lb_size_format(need, a, sizeof a);
        lb_size_format(budget, b, sizeof b);
        fprintf(stderr, "lowbit: the model does not fit the memory budget: restoring %s needs %s in memory, over the budget of %s\n",
                model, a, b);
        return CLI_ERR;
    }
    return CLI_OK;
}

int cli_mem_plan(lb_model *m, uint64_t budget, int n_threads, long long *n_ctx, int ctx_strict, lb_kv_type *kv,
                 int kv_forced, int *stream_window) {
    lb_mem_plan_in in;
    lb_model_mem_plan_input(m, n_threads, &in);
    in.budget = budget;
    in.stream_allowed = 1; /* run, bench and memplan pass the window on to the session */
    int train = lb_model_n_ctx_train(m);
    /* without --ctx, ask for what the session would allocate by default and let the plan shrink */
    in.n_ctx_requested = (uint32_t)(*n_ctx ? *n_ctx : train > 0 && train < 4096 ? train : 4096);
    in.ctx_strict = ctx_strict;
    in.kv_forced = !kv_forced       ? -1
                   : *kv == LB_KV_Q4_0 ? LB_MEM_KV_Q4_0
                   : *kv == LB_KV_Q8_0 ? LB_MEM_KV_Q8_0
                   : *kv == LB_KV_F16  ? LB_MEM_KV_F16
                                       : LB_MEM_KV_F32;
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0) in.memlock_limit = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    lb_mem_plan plan;
    lb_error err = {0};
    lb_status st = lb_mem_plan_make(&in, &plan, &err);
    if (st) {
        fprintf(stderr, "lowbit: the model does not fit the memory budget: %s\n", err.msg);
        return CLI_ERR;
    }
    fprintf(stderr, "lowbit: memory %s (KV types available: f32, f16%s)\n", plan.summary,
            in.kv_bytes_per_token[LB_MEM_KV_Q8_0] ? ", q8_0" : "; q8_0 needs head_dim % 32 == 0");
    if (plan.streaming) /* the mode change is the plan's, so it says so */
        fprintf(stderr, "lowbit: note: the weights do not fit --mem-budget with every layer resident: streaming them "
                        "from the file, %u layers at a time (speed follows the disk)\n", plan.stream_window);
    *stream_window = plan.streaming ? (int)plan.stream_window : 0;
    if (plan.lock_weights) { /* within RLIMIT_MEMLOCK: keep the weights resident under pressure */
        if (lb_model_lock_weights(m, &err)) fprintf(stderr, "lowbit: warning: %s; continuing unlocked\n", err.msg);
        else fprintf(stderr, "lowbit: weights locked in memory (RLIMIT_MEMLOCK allows it)\n");
    }
    if (in.repack_bytes) {
        char b[32];
        lb_size_format(in.repack_bytes, b, sizeof b);
        if (!plan.repack) lb_model_set_repack(m, 0);
        fprintf(stderr, plan.repack      ? "lowbit: memory: %s of Q4_0 weights repacked into 8-row groups (heap; their file pages released)\n"
                        : plan.streaming ? "lowbit: note: the weights stream from the file, so %s of Q4_0 weights keep the plain layout\n"
                                         : "lowbit: note: no room in --mem-budget to repack %s of Q4_0 weights; the plain layout is used\n", b);
    }
    *n_ctx = plan.n_ctx;
    lb_kv_type planned = plan.kv_dtype == LB_MEM_KV_Q4_0   ? LB_KV_Q4_0
                         : plan.kv_dtype == LB_MEM_KV_Q8_0 ? LB_KV_Q8_0
                         : plan.kv_dtype == LB_MEM_KV_F16  ? LB_KV_F16
                                                           : LB_KV_F32;
    /* the budget may change the default KV type, but never silently */
    if (planned != *kv)
        fprintf(stderr, "lowbit: note: --mem-budget changes the KV cache from %s to %s (pass --kv-type to choose)\n",
                lb_mem_kv_dtype_name((lb_mem_kv_dtype)*kv) /* same numbering as lb_kv_type */, lb_mem_kv_dtype_name(plan.kv_dtype));
    *kv = planned;
    return CLI_OK;
}

void cli_mem_report(const lb_model *m, const lb_session *s) {
    lb_mem_report r;
    lb_error err = {0};
    if (lb_model_mem_report(m, s, &r, &err)) {
        cli_error(&err);
        return;
    }
    char a[32], b[32], c[32], d[32], e[32];
#define H(n, buf) lb_size_format((n), buf, sizeof buf)
    fprintf(stderr, "memory report\n  weights     %s (%llu bytes) in %llu tensors:", H(r.weight_bytes, a),
            (unsigned long long)r.weight_bytes, (unsigned long long)r.n_tensors);
    for (int i = 0; i < r.n_dtypes; i++)
        fprintf(stderr, "%s %s %s (%u)", i ? "," : "", r.by_dtype[i].dtype, H(r.by_dtype[i].bytes, a), r.by_dtype[i].n_tensors);
    if (r.restored_bytes)
        fprintf(stderr, "\n              %s restored from the .lbz into memory (%s buffer), %s converted at load (%u buffers)\n",
                H(r.restored_weight_bytes, a), H(r.restored_bytes, b), H(r.owned_weight_bytes - r.restored_weight_bytes, c),
                r.n_owned);
    else
        fprintf(stderr, "\n              %s used in place from the mapped file, %s converted at load (%u buffers, %s)\n",
                H(r.mapped_weight_bytes, a), H(r.owned_weight_bytes, b), r.n_owned, H(r.owned_bytes, c));
    if (r.repacked_weight_bytes)
        fprintf(stderr, "              %s of them Q4_0 repacked into 8-row groups on the heap (Q4_0_R8), their file pages released\n",
                H(r.repacked_weight_bytes, a));
    if (!r.mapped_bytes && r.restored_bytes)
        fprintf(stderr, "  mapped      none (the model was restored into memory)\n");
    else if (r.mapped_resident_known)
        fprintf(stderr, "  mapped      %s of %s resident now\n", H(r.mapped_resident_bytes, a), H(r.mapped_bytes, b));
    else
        fprintf(stderr, "  mapped      %s (residency unknown: mincore failed)\n", H(r.mapped_bytes, a));
    fprintf(stderr, "  tokenizer   %s (estimate)\n", H(r.tokenizer_bytes, a));
    char kern[96];
    fprintf(stderr, "  kernels     %s\n", lb_cpu_kernels(kern, sizeof kern));
    if (r.has_session) {
        fprintf(stderr, "  KV cache    %s (%llu bytes) allocated (%d tokens x %llu bytes, %s), %s used (%d tokens), %s resident\n",
                H(r.kv_bytes, a), (unsigned long long)r.kv_bytes, r.n_ctx, (unsigned long long)r.kv_bytes_per_token,
                r.kv_type, H(r.kv_used_bytes, c), r.n_past, H(r.kv_resident_bytes, d));
        fprintf(stderr, "  scratch     %s activations + %s logits + %s attention scores (%d threads)\n",
                H(r.scratch_bytes, a), H(r.logits_bytes, b), H(r.attention_bytes, c), r.n_threads);
        fprintf(stderr, "  tracked     %s live, %s peak in %llu allocations\n", H(r.runtime.live_bytes, a),
                H(r.runtime.peak_bytes, b), (unsigned long long)r.runtime.n_allocs);
    }
    if (r.stream_window)
        fprintf(stderr, "  streaming   window %d layers, %s + %s fixed resident at most (weights read from the file layer by layer)\n",
                r.stream_window, H(r.stream_window_bytes, a), H(r.stream_fixed_bytes, b));
    fprintf(stderr, "  runtime     %s (estimate: process before the model %s + lowbit code %s + %d thread stacks %s + heap %s)\n",
            H(r.process.total, a), H(r.process.baseline, b), H(r.process.code, c), r.has_session ? r.n_threads : 1,
            H(r.process.stacks, d), H(r.process.heap, e));
    fprintf(stderr, "  total       %s (%s + tokenizer%s + runtime)\n", H(r.total_bytes, a),
            r.stream_window ? "streamed window and fixed weights" : "weights", r.has_session ? " + KV cache + scratch" : "");
    fprintf(stderr, "  process     RSS %s now, peak %s; anonymous beyond converted weights and KV: %s\n", H(r.proc_rss, a),
            H(r.proc_peak_rss, b), H(r.overhead_bytes, c));
#undef H
}

lb_mem_guard *cli_mem_guard_open(void) {
    lb_mem_guard *g = NULL;
    lb_error err = {0};
    /* LOWBIT_MEMMON_ROOT: read /proc and /sys under this directory (tests fake pressure with it) */
    if (lb_mem_guard_open(getenv("LOWBIT_MEMMON_ROOT"), 8, &g, &err))
        fprintf(stderr, "lowbit: memory guard off: %s\n", err.msg);
    return g;
}

/* lowbit memplan: the plan `lowbit run --mem-budget` would make, without running anything. */
int cmd_memplan(int argc, char **argv) {
    const char *model = NULL;
    uint64_t budget = 0;
    long long n_ctx = 0, threads = 0;
    lb_kv_type kv = LB_KV_F16;
    int kv_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            puts("usage: lowbit memplan -m MODEL --mem-budget SIZE [--ctx N] [--kv-type f32|f16|q8_0|q4_0] [-t N]\n\n"
                 "Prints the memory plan lowbit run would make under SIZE (6G = 6 GiB): context, KV cache type,\n"
                 "and whether the weights stay resident or stream from the file layer by layer (and through how\n"
                 "many layers at once), or why nothing fits (exit 1). Loads nothing but the model's mapping.");
            return CLI_OK;
        }
        if (!v) return fprintf(stderr, "lowbit: memplan: %s needs a value\n", a), CLI_USAGE;
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--mem-budget")) { if (!cli_mem_budget(a, v, &budget)) return CLI_USAGE; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { if (!cli_int(a, v, 1, 1 << 24, &n_ctx)) return CLI_USAGE; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!cli_int(a, v, 1, 512, &threads)) return CLI_USAGE; }
        else if (!strcmp(a, "--kv-type")) {
            if (!cli_kv_type(a, v, &kv)) return CLI_USAGE;
            kv_given = 1;
        } else return fprintf(stderr, "lowbit: memplan: unknown option '%s'\n", a), CLI_USAGE;
    }
    if (!model || !budget) return fprintf(stderr, "usage: lowbit memplan -m MODEL --mem-budget SIZE (see --help)\n"), CLI_USAGE;
    if (cli_mem_precheck(model, budget)) return CLI_ERR;
    lb_error err = {0};
    lb_model *m;
    if (lb_model_load(model, NULL, &m, &err)) return cli_error(&err);
    int window = 0, rc = cli_mem_plan(m, budget, (int)threads, &n_ctx, n_ctx > 0, &kv, kv_given, &window);
    if (!rc && window) printf("streaming: window %d layers; context %lld tokens, %s KV\n", window, n_ctx,
                             lb_mem_kv_dtype_name((lb_mem_kv_dtype)kv));
    else if (!rc) printf("resident: context %lld tokens, %s KV\n", n_ctx, lb_mem_kv_dtype_name((lb_mem_kv_dtype)kv));
    lb_model_free(m);
    return rc;
}
