/* lowbit perplexity: perplexity of a model over a text, and KL divergence from a base model. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Windows done, on a terminal only: the byte-oriented bar does not fit a count of windows. */
static void progress(void *user, const char *what, uint64_t done, uint64_t total) {
    (void)user;
    if (!isatty(2)) return;
    fprintf(stderr, "\rlowbit: %s %llu / %llu", what, (unsigned long long)done, (unsigned long long)total);
    if (done >= total) fputc('\n', stderr);
}

int cmd_perplexity(int argc, char **argv) {
    const char *model = NULL, *text_path = NULL, *base_path = NULL, *tok = NULL;
    long long ctx = 128, threads = 0;
    lb_kv_type kv = LB_KV_F32;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            puts("usage: lowbit perplexity -m MODEL -f TEXT [-c CTX] [--kl-base BASE_MODEL] [--json] [-t THREADS]\n"
                 "                         [--tokenizer FILE] [--kv-type f32|f16|q8_0|q4_0]\n\n"
                 "Tokenizes TEXT (with BOS), cuts it into non-overlapping windows of CTX tokens (default 128),\n"
                 "puts BOS in place of each window's first token and scores the second half of each window:\n"
                 "ppl = exp(mean negative log-likelihood of the next token). With --kl-base, BASE_MODEL runs on\n"
                 "the same windows: kl = mean KL(base || model) of the next-token distributions over the scored\n"
                 "positions, top1 = share of them where both models rank the same token first.\n"
                 "--kv-type: MODEL's KV cache (default f32, so scores compare weights alone; the base's is f32).\n"
                 "--json prints {\"ppl\": ..., \"kl\": ..., \"top1\": ...} (kl and top1 null without --kl-base).");
            return CLI_OK;
        }
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!v) return fprintf(stderr, "lowbit: %s needs a value\n", a), CLI_USAGE;
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) text_path = v;
        else if (!strcmp(a, "--kl-base")) base_path = v;
        else if (!strcmp(a, "--tokenizer")) tok = v;
        else if (!strcmp(a, "--kv-type")) { if (!cli_kv_type(a, v, &kv)) return CLI_USAGE; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { if (!cli_int(a, v, 4, 1 << 20, &ctx)) return CLI_USAGE; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!cli_int(a, v, 1, 512, &threads)) return CLI_USAGE; }
        else return fprintf(stderr, "lowbit: perplexity: unknown option '%s'\n", a), CLI_USAGE;
    }
    if (!model || !text_path) return fprintf(stderr, "usage: lowbit perplexity -m MODEL -f TEXT (see --help)\n"), CLI_USAGE;

    lb_error err = {0};
    lb_model *m = NULL, *base = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    lb_ppl_result r;
    lb_status s = cli_text_ids(model, tok, (int)threads, text_path, &m, &ids, &n, &err);
    const lb_tokenizer *t = m ? lb_model_tokenizer(m) : NULL;
    if (!s && base_path) s = cli_load_model(base_path, tok, (int)threads, &base, &err);
    if (!s) s = lb_perplexity(m, base, ids, n, lb_tokenizer_bos(t), (int)ctx, kv, (int)threads, progress, NULL, &r, &err);
    if (!s) {
        if (json) {
            printf("{\"ppl\": %.10g, \"nll\": %.10g, ", r.ppl, r.nll);
            if (r.has_base) printf("\"kl\": %.10g, \"top1\": %.10g, ", r.kl, r.top1);
            else printf("\"kl\": null, \"top1\": null, ");
            printf("\"ctx\": %lld, \"n_windows\": %zu, \"n_scored\": %zu, \"n_tokens\": %zu}\n", ctx, r.n_windows, r.n_scored, n);
        } else {
            printf("perplexity %.4f  (mean NLL %.6f nats; %zu windows of %lld tokens, %zu scored of %zu tokens)\n", r.ppl,
                   r.nll, r.n_windows, ctx, r.n_scored, n);
            if (r.has_base) printf("KL(base || model) %.6g nats, same top token %.2f%%\n", r.kl, r.top1 * 100);
        }
    }
    free(ids);
    lb_model_free(m);
    lb_model_free(base);
    return s ? cli_error(&err) : CLI_OK;
}
