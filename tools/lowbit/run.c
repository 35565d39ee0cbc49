/* lowbit run: generate text from a prompt (or chat) and stream it to stdout. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "run.h"

static void usage(FILE *f) {
    fputs("usage: lowbit run -m MODEL -p PROMPT [options]\n\n"
          "Generates a continuation of PROMPT and streams it (without the prompt) to stdout;\n"
          "load time, speed and memory go to stderr.\n\n"
          "  -m, --model PATH      GGUF file, llama2.c checkpoint or Hugging Face folder\n"
          "  -p, --prompt TEXT     the prompt (with --chat: the user's message; omit to chat on stdin);\n"
          "                        Linux passes at most 128 KiB in one argument: longer prompts need -f\n"
          "  -f, --file FILE       read the prompt from FILE (- for stdin; one trailing newline dropped;\n"
          "                        any length, up to 1 GiB)\n"
          "      --parallel N      with -f: one prompt per line (empty lines skipped), generated N at a\n"
          "                        time through the batched engine (a finished prompt's slot takes the\n"
          "                        next one at once); outputs in prompt order, each after\n"
          "                        a line '--- K: PROMPT' (with --json: one object per prompt, with index)\n"
          "  -n, --n-predict N     tokens to generate at most (default 256); stops early at EOS\n"
          "  -c, --ctx N           context length (default: the model's, at most 4096)\n"
          "      --temp T          temperature (default 0: greedy)\n"
          "      --top-k K         keep the K most likely tokens (default 0: off)\n"
          "      --top-p P         nucleus sampling (default 1: off)\n"
          "      --min-p P         drop tokens below P x the best probability (default 0: off)\n"
          "      --repeat-penalty R  penalise recent tokens (default 1: off)\n"
          "      --seed S          sampling seed (default 0)\n"
          "  -t, --threads N       threads (default: all cores)\n"
          "      --kv-type f32|f16|q8_0|q4_0 KV cache element type (default f16; q4_0: 0.28x of f16)\n"
          "      --device cpu|cuda where the model runs (default cpu; cuda needs a CUDA build)\n"
          "      --tokenizer PATH  tokenizer file (llama2.c models, or to override)\n"
          "      --delta PATH      apply a delta (lowbit delta create) to the model while loading\n"
          "      --draft MODEL     speculative decoding: MODEL (same vocabulary, smaller or quantized\n"
          "                        harder) drafts tokens that the model verifies in one batched pass;\n"
          "                        the output is the same as without it (greedy: token for token)\n"
          "      --draft-max K     tokens drafted per step at most (default 16, up to 63; fewer while\n"
          "                        drafts fail)\n"
          "      --draft-min-p P   stop drafting at a token the draft gives probability below P (default 0)\n"
          "      --lookup N        speculative decoding without a draft model: draft the tokens that\n"
          "                        followed the longest earlier match (at least N tokens) of the end of\n"
          "                        the context, prompt and output (prompt lookup; fast when the output\n"
          "                        copies the input or repeats itself)\n"
          "      --chat            format the prompt with the model's chat template\n"
          "      --system TEXT     system message for --chat\n"
          "      --json            print only {\"prompt_ids\", \"ids\", \"text\"} to stdout at the end\n"
          "      --mem-budget SIZE plan context and KV type to fit SIZE (6G = 6 GiB) before allocating;\n"
          "                        refuse (exit 1) when the model cannot fit. Without --ctx the context\n"
          "                        may shrink; weights larger than SIZE stream from the file layer by\n"
          "                        layer (GGUF, CPU); generation stops early if memory pressure turns critical\n"
          "      --mem-report      print the memory report (weights, KV cache, scratch) at the end\n"
          "      --no-repack       keep Q4_0 matrices in the file's layout (by default the CPU repacks\n"
          "                        them into 8-row groups where AVX2 is the level; LOWBIT_REPACK=0|1)\n"
          "  -h, --help            this help\n", f);
}


static int parse(int argc, char **argv, run_opts *o) {
    o->n_predict = 256;
    o->kv = LB_KV_F16; /* as llama.cpp: half the memory of f32, logits within ~1e-3 */
    o->sp = lb_sampler_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d;
        long long n;
#define VAL() (i++, v)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return -1; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!(o->model = VAL())) goto missing; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { if (!(o->prompt = VAL())) goto missing; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { if (!(o->file = VAL())) goto missing; }
        else if (!strcmp(a, "--parallel")) { if (!cli_int(a, VAL(), 1, 4096, &o->parallel)) return CLI_USAGE; }
        else if (!strcmp(a, "--tokenizer")) { if (!(o->tokenizer = VAL())) goto missing; }
        else if (!strcmp(a, "--delta")) { if (!(o->delta = VAL())) goto missing; }
        else if (!strcmp(a, "--draft")) { if (!(o->draft = VAL())) goto missing; }
        else if (!strcmp(a, "--draft-max")) { if (!cli_int(a, VAL(), 1, 63, &o->draft_max)) return CLI_USAGE; }
        else if (!strcmp(a, "--draft-min-p")) { if (!cli_float_in(a, VAL(), 0, 1, &o->draft_min_p)) return CLI_USAGE; }
        else if (!strcmp(a, "--lookup")) { if (!cli_int(a, VAL(), 1, 64, &o->lookup)) return CLI_USAGE; }
        else if (!strcmp(a, "--system")) { if (!(o->system = VAL())) goto missing; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { if (!cli_int(a, VAL(), 0, 1 << 24, &o->n_predict)) return CLI_USAGE; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { if (!cli_int(a, VAL(), 1, 1 << 24, &o->n_ctx)) return CLI_USAGE; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!cli_int(a, VAL(), 1, 512, &o->threads)) return CLI_USAGE; }
        else if (!strcmp(a, "--temp")) { if (!cli_float_in(a, VAL(), 0, 100, &d)) return CLI_USAGE; o->sp.temperature = (float)d; }
        else if (!strcmp(a, "--top-k")) { if (!cli_int(a, VAL(), 0, 1 << 30, &n)) return CLI_USAGE; o->sp.top_k = (int)n; }
        else if (!strcmp(a, "--top-p")) { if (!cli_float(a, VAL(), &d)) return CLI_USAGE; if (d <= 0 || d > 1) return fprintf(stderr, "lowbit: --top-p: %s is out of range (allowed: above 0, up to 1)\n", v), CLI_USAGE; o->sp.top_p = (float)d; }
        else if (!strcmp(a, "--min-p")) { if (!cli_float_in(a, VAL(), 0, 1, &d)) return CLI_USAGE; o->sp.min_p = (float)d; }
        else if (!strcmp(a, "--repeat-penalty")) { if (!cli_float(a, VAL(), &d)) return CLI_USAGE; if (d <= 0 || d > 100) return fprintf(stderr, "lowbit: --repeat-penalty: %s is out of range (allowed: above 0, up to 100)\n", v), CLI_USAGE; o->sp.repeat_penalty = (float)d; }
        else if (!strcmp(a, "--seed")) { if (!cli_int(a, VAL(), 0, 0x7fffffffffffffffLL, &n)) return CLI_USAGE; o->sp.seed = (uint64_t)n; }
        else if (!strcmp(a, "--kv-type")) {
            if (!VAL()) goto missing;
            if (!cli_kv_type(a, v, &o->kv)) return CLI_USAGE;
            o->kv_given = 1;
        }
        else if (!strcmp(a, "--mem-budget")) { if (!cli_mem_budget(a, VAL(), &o->mem_budget)) return CLI_USAGE; }
        else if (!strcmp(a, "--mem-report")) o->mem_report = 1;
        else if (!strcmp(a, "--no-repack")) o->no_repack = 1;
        else if (!strcmp(a, "--device")) { if (!cli_device(a, VAL(), &o->device)) return CLI_USAGE; }
        else if (!strcmp(a, "--json")) o->json = 1;
        else if (!strcmp(a, "--chat")) o->chat = 1;
        else return fprintf(stderr, "lowbit: run: unknown option '%s' (see lowbit run --help)\n", a), CLI_USAGE;
        continue;
    missing:
        fprintf(stderr, "lowbit: %s needs a value\n", a);
        return CLI_USAGE;
#undef VAL
    }
    if (!o->model) return fprintf(stderr, "lowbit: run: -m MODEL is required (see lowbit run --help)\n"), CLI_USAGE;
    if (o->file && o->prompt) return fprintf(stderr, "lowbit: run: give -p or -f, not both\n"), CLI_USAGE;
    if (o->parallel && !o->file) return fprintf(stderr, "lowbit: run: --parallel needs -f PROMPTS (one prompt a line)\n"), CLI_USAGE;
    if (o->draft && o->lookup) return fprintf(stderr, "lowbit: run: give --draft or --lookup, not both\n"), CLI_USAGE;
    if (o->parallel && (o->draft || o->lookup))
        return fprintf(stderr, "lowbit: run: --draft and --lookup work on one prompt, not with --parallel\n"), CLI_USAGE;
    if (o->file && !(o->prompt = cli_read_text(o->file))) return CLI_ERR;
    if (o->file && !o->parallel) { /* as llama.cpp's -f: the file's last newline ends the file, not the prompt */
        size_t n = strlen(o->prompt);
        if (n && o->prompt[n - 1] == '\n') ((char *)o->prompt)[n - 1] = 0;
    }
    if (!o->prompt && !o->chat) return fprintf(stderr, "lowbit: run: -p PROMPT is required (see lowbit run --help)\n"), CLI_USAGE;
    return 0;
}

/* Totals over the turns of a run, and what --json prints of the last one. */
typedef struct run_totals {
    size_t n_prompt_tok, n_gen_tok, n_drafted, n_accepted;
    double t_prompt, t_gen;
    lb_generate_result last;
} run_totals;

static int stream_piece(void *user, int32_t id, const char *text, size_t len) {
    (void)user, (void)id;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static void print_notice(void *user, const char *msg) {
    (void)user;
    fprintf(stderr, "\nlowbit: %s\n", msg);
}

/* One turn through lb_generate (keep: after the earlier turns of a chat). */
static lb_status turn(lb_session *s, lb_generate_params *gp, const char *text, int keep, int stream, run_totals *t,
                      lb_error *err) {
    gp->keep = keep;
    gp->on_token = stream ? stream_piece : NULL;
    lb_generate_result_free(&t->last);
    lb_status st = lb_generate(s, text, gp, &t->last, err);
    if (st) return st;
    t->n_prompt_tok += t->last.n_prompt_ids;
    t->n_gen_tok += t->last.n_ids;
    t->t_prompt += t->last.prompt_seconds;
    t->t_gen += t->last.gen_seconds;
    t->n_drafted += t->last.n_drafted;
    t->n_accepted += t->last.n_accepted;
    return LB_OK;
}

/* Interactive chat on stdin: one turn per line, the session keeping the conversation. */
static lb_status chat_stdin(lb_session *s, lb_generate_params *gp, const char *model, const char *style,
                            run_totals *t, lb_error *err) {
    char line[8192];
    int first = 1;
    fprintf(stderr, "lowbit: chatting with %s (%s template); end with Ctrl-D\n> ", model, style);
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        lb_status st = turn(s, gp, line, !first, 1, t, err);
        if (st) return st;
        first = 0;
        fputs("\n> ", stderr);
    }
    return LB_OK;
}

/* --draft: the draft model and a session of it with the target's context and threads. */
static lb_status open_draft(const run_opts *o, const lb_session_params *sp, lb_model **dm, lb_session **ds,
                            lb_error *err) {
    lb_model_params mp = lb_model_default_params();
    mp.n_threads = (int)o->threads;
    lb_status st = lb_model_load(o->draft, &mp, dm, err);
    if (!st) st = lb_session_new(*dm, sp, ds, err);
    return st;
}

/* Decimals of a tok/s figure: a streamed 7B model makes 0.1 tok/s, where one decimal says nothing. */
static int rate_digits(double tok_s) { return tok_s < 10 ? 3 : 1; }

/* One prompt (or an interactive chat) through one session. */
static int run_single(run_opts o) {
    lb_error err = {0};
    lb_model_params mp = lb_model_default_params();
    mp.tokenizer_path = o.tokenizer;
    mp.delta_path = o.delta;
    mp.n_threads = (int)o.threads;
    double t0 = cli_now();
    lb_model *m;
    if (o.mem_budget && cli_mem_precheck(o.model, o.mem_budget)) return CLI_ERR;
    if (lb_model_load(o.model, &mp, &m, &err)) return cli_error(&err);
    if (o.no_repack) lb_model_set_repack(m, 0);
    double t_load = cli_now() - t0;
    if (!lb_model_tokenizer(m)) {
        lb_model_free(m);
        return cli_fail("%s: the model has no tokenizer; give one with --tokenizer", o.model);
    }
    const char *style = o.chat ? lb_chat_template_style(lb_model_chat_template(m)) : NULL;
    if (o.chat && !style) {
        lb_model_free(m);
        return cli_fail("%s: %s; --chat needs a ChatML, Llama 3, Llama 2 or Mistral template", o.model,
                        lb_model_chat_template(m) ? "the model's chat template is not one lowbit knows" : "the model has no chat template");
    }
    int tr = lb_model_n_ctx_train(m);
    if (o.n_ctx && tr > 0 && o.n_ctx > tr) {
        lb_model_free(m);
        return cli_fail("--ctx %lld is larger than the model's trained context of %d tokens", o.n_ctx, tr);
    }
    int ctx_strict = o.n_ctx > 0, stream_window = 0;
    if (o.mem_budget && cli_mem_plan(m, o.mem_budget, (int)o.threads, &o.n_ctx, ctx_strict, &o.kv, o.kv_given, &stream_window)) {
        lb_model_free(m);
        return CLI_ERR;
    }

    lb_session_params sp = lb_session_default_params();
    sp.n_ctx = (int)o.n_ctx;
    sp.n_threads = (int)o.threads;
    sp.kv_type = o.kv;
    sp.device = o.device;
    sp.stream_window = stream_window;
    lb_session *s = NULL;
    lb_generate_params gp = lb_generate_default_params();
    gp.max_tokens = (int)o.n_predict;
    gp.chat = o.chat;
    gp.system = o.system;
    gp.on_notice = print_notice;
    gp.guard = cli_mem_guard_open();
    run_totals t = {0};
    /* one sampler for every turn of a chat, so its random state carries on */
    gp.lookup = (int)o.lookup;
    gp.draft_max = (int)o.draft_max;
    gp.draft_min_p = (float)o.draft_min_p;
    lb_model *dm = NULL;
    lb_status st = lb_session_new(m, &sp, &s, &err);
    if (!st && o.draft) {
        sp.n_ctx = lb_session_n_ctx(s);
        sp.stream_window = 0; /* the window was planned for the target */
        st = open_draft(&o, &sp, &dm, &gp.draft, &err);
    }
    if (!st) st = lb_sampler_new(&o.sp, lb_model_n_vocab(m), &gp.sampler, &err);
    if (!st && (!o.chat || o.prompt)) {
        st = turn(s, &gp, o.prompt, 0, !o.json, &t, &err);
        if (!st && !o.json) fputc('\n', stdout);
        fflush(stdout); /* the continuation ends before the stats on stderr, even through a pipe */
    } else if (!st) {
        st = chat_stdin(s, &gp, o.model, style, &t, &err);
    }
    if (!st && o.json) {
        fputs("{\"prompt_ids\": ", stdout);
        cli_json_ids(stdout, t.last.prompt_ids, t.last.n_prompt_ids);
        fputs(", \"ids\": ", stdout);
        cli_json_ids(stdout, t.last.ids, t.last.n_ids);
        fputs(", \"text\": ", stdout);
        cli_json_string(stdout, t.last.text ? t.last.text : "", t.last.text_len);
        fputs("}\n", stdout);
        fflush(stdout);
    }
    if (!st) {
        char b1[32], b2[32];
        double pp = t.t_prompt > 0 ? t.n_prompt_tok / t.t_prompt : 0, tg = t.t_gen > 0 ? t.n_gen_tok / t.t_gen : 0;
        fprintf(stderr,
                "lowbit: load %.1f ms | prompt %zu tok, %.*f tok/s | generated %zu tok, %.*f tok/s | "
                "KV cache %s | peak RSS %s | %d threads\n",
                t_load * 1e3, t.n_prompt_tok, rate_digits(pp), pp, t.n_gen_tok, rate_digits(tg), tg, cli_human_bytes(lb_session_kv_bytes(s), b1, sizeof b1),
                cli_human_bytes(cli_peak_rss(), b2, sizeof b2), lb_session_n_threads(s));
        if (o.draft || o.lookup)
            fprintf(stderr, "lowbit: speculative (%s): drafted %zu tok, accepted %zu (%.1f%%)\n",
                    o.draft ? "draft model" : "lookup", t.n_drafted, t.n_accepted,
                    t.n_drafted ? 100.0 * t.n_accepted / t.n_drafted : 0.0);
        if (o.mem_report) cli_mem_report(m, s);
    }
    lb_generate_result_free(&t.last);
    lb_mem_guard_close(gp.guard);
    lb_sampler_free(gp.sampler);
    lb_session_free(gp.draft);
    lb_model_free(dm);
    lb_session_free(s);
    lb_model_free(m);
    return st ? cli_error(&err) : CLI_OK;
}

int cmd_run(int argc, char **argv) {
    run_opts o = {0};
    int rc = parse(argc, argv, &o);
    if (!rc) rc = o.parallel ? cli_run_parallel(&o) : run_single(o);
    if (o.file) free((char *)o.prompt);
    return rc < 0 ? CLI_OK : rc;
}
