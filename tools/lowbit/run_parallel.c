/* lowbit run --parallel N -f PROMPTS: one prompt per line, generated together through one
 * lb_engine (each decode step runs one token of every live sequence in one weight pass), the
 * outputs printed in prompt order once all are done. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine_util.h"
#include "run.h"

typedef struct par_seq {
    int seq, done;
    int32_t *ids;   /* the prompt */
    size_t n_ids, start;
    lb_sampler *smp;
    int32_t *hist;  /* prompt then generated ids, for the repetition penalty */
    size_t n_hist;
    char *text;
    size_t text_len;
} par_seq;

static int append_piece(const lb_tokenizer *t, par_seq *p, int32_t id) {
    size_t n = lb_token_piece(t, id, NULL, 0);
    char *s = realloc(p->text, p->text_len + n + 1);
    if (!s) return 0;
    p->text = s;
    lb_token_piece(t, id, s + p->text_len, n + 1);
    p->text_len += n;
    s[p->text_len] = 0;
    return 1;
}

/* Splits text into its non-empty lines (in place); returns their count, *lines malloc'ed. */
static int split_lines(char *text, char ***lines) {
    int n = 0, cap = 16;
    char **v = malloc((size_t)cap * sizeof *v);
    for (char *s = text; v && *s;) {
        char *e = s + strcspn(s, "\n");
        int more = *e != 0;
        *e = 0;
        if (e > s && e[-1] == '\r') e[-1] = 0;
        if (*s) {
            if (n == cap) {
                char **w = realloc(v, (size_t)(cap *= 2) * sizeof *v);
                if (!w) { free(v); return -1; }
                v = w;
            }
            v[n++] = s;
        }
        s = more ? e + 1 : e;
    }
    *lines = v;
    return v ? n : -1;
}

/* With --chat each line is the user's message of a conversation of its own. */
static lb_status tokenize_all(const run_opts *o, const lb_tokenizer *tok, const char *style, char **lines,
                              par_seq *ps, int n, int base, lb_error *err) {
    for (int i = 0; i < n; i++) {
        char *text = lines[i];
        lb_chat_message msgs[2] = {{"system", o->system}, {"user", lines[i]}};
        int sys = o->system != NULL;
        if (o->chat && lb_chat_format(style, msgs + !sys, 1 + (size_t)sys, &text, err)) return err->status;
        lb_status st = lb_tokenize(tok, text, strlen(text), 1, &ps[i].ids, &ps[i].n_ids, err);
        if (o->chat) free(text);
        if (st) return st;
        if (!ps[i].n_ids) return lb_fail(err, LB_ERR_ARG, "%s: prompt %d encodes to no tokens", o->file, base + i + 1);
    }
    return LB_OK;
}

/* Samples each live sequence's next id from its logits row; 0 when all are done. */
static int sample_all(par_seq *ps, int n, float *logits, int nv, const lb_tokenizer *tok, long long n_predict,
                      int n_ctx, lb_engine *e, lb_batch_entry *b, int *nb) {
    *nb = 0;
    for (int i = 0; i < n; i++) {
        par_seq *p = &ps[i];
        if (p->done) continue;
        int32_t id = lb_sampler_sample(p->smp, logits + (size_t)i * nv, p->hist, p->n_hist);
        if (lb_token_is_eog(tok, id) || !append_piece(tok, p, id)) { p->done = 1; continue; }
        p->hist[p->n_hist++] = id;
        int len = lb_engine_seq_len(e, p->seq);
        if ((long long)(p->n_hist - p->n_ids) >= n_predict || len >= n_ctx) { p->done = 1; continue; }
        b[(*nb)++] = (lb_batch_entry){.seq = p->seq, .pos = len, .token = id, .logits = 1};
    }
    return *nb > 0;
}

/* Decodes until every sequence stops; logits rows are indexed by prompt. */
static lb_status generate_all(lb_engine *e, par_seq *ps, int n, float *logits, float *rows, int nv,
                              const lb_tokenizer *tok, const run_opts *o, int n_ctx, lb_mem_guard *guard,
                              size_t *n_gen, lb_error *err) {
    lb_batch_entry *b = malloc((size_t)n * sizeof *b);
    if (!b) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    int nb;
    lb_status st = LB_OK;
    while (!st && o->n_predict > 0 && sample_all(ps, n, logits, nv, tok, o->n_predict, n_ctx, e, b, &nb)) {
        if (guard && lb_mem_guard_step(guard) == LB_MEM_GUARD_STOP) {
            fprintf(stderr, "lowbit: memory pressure critical (%s); stopping generation early\n", lb_mem_guard_reason(guard));
            break;
        }
        st = lb_engine_decode(e, b, (size_t)nb, rows, err);
        for (int r = 0, i = 0; !st && r < nb; r++) {
            while (ps[i].seq != b[r].seq) i++;
            memcpy(logits + (size_t)i * nv, rows + (size_t)r * nv, (size_t)nv * sizeof(float));
        }
        *n_gen += (size_t)nb;
    }
    free(b);
    return st;
}

static void print_results(const run_opts *o, char **lines, par_seq *ps, int n, int base) {
    for (int i = 0; i < n; i++) {
        par_seq *p = &ps[i];
        if (o->json) {
            printf("{\"index\": %d, \"prompt_ids\": ", base + i + 1);
            cli_json_ids(stdout, p->ids, p->n_ids);
            fputs(", \"ids\": ", stdout);
            cli_json_ids(stdout, p->hist + p->n_ids, p->n_hist - p->n_ids);
            fputs(", \"text\": ", stdout);
            cli_json_string(stdout, p->text ? p->text : "", p->text_len);
            fputs("}\n", stdout);
        } else {
            printf("--- %d: %s\n%s\n", base + i + 1, lines[i], p->text ? p->text : "");
        }
    }
    fflush(stdout);
}

/* One wave of at most --parallel prompts (lines[0..n), numbered from base + 1). */
static lb_status run_engine(const run_opts *o, lb_model *m, char **lines, par_seq *ps, int n, int base, lb_error *err) {
    const lb_tokenizer *tok = lb_model_tokenizer(m);
    int nv = lb_model_n_vocab(m), tr = lb_model_n_ctx_train(m);
    const char *style = o->chat ? lb_chat_template_style(lb_model_chat_template(m)) : NULL;
    if (o->chat && !style) return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: --chat needs a chat template lowbit knows", o->model);
    lb_status st = tokenize_all(o, tok, style, lines, ps, n, base, err);
    size_t longest = 0, pool = 0;
    for (int i = 0; !st && i < n; i++) {
        size_t need = ps[i].n_ids + (size_t)o->n_predict;
        if (need > longest) longest = need;
        pool += need + 16; /* a partly filled last block per sequence */
    }
    if (st) return st;
    lb_engine_params ep = lb_engine_default_params();
    ep.n_threads = (int)o->threads;
    ep.kv_type = o->kv;
    ep.n_ctx = o->n_ctx ? (int)o->n_ctx : (int)(tr > 0 && longest > (size_t)tr ? (size_t)tr : longest);
    ep.n_kv_tokens = pool > (1u << 26) ? 1 << 26 : (int)pool;
    ep.max_batch = n > 64 ? n : 64;
    lb_engine *e = NULL;
    float *logits = malloc((size_t)n * nv * sizeof(float)), *rows = malloc((size_t)n * nv * sizeof(float));
    int *seqs = malloc((size_t)n * sizeof *seqs);
    int32_t **ids = malloc((size_t)n * sizeof *ids);
    size_t *lens = malloc((size_t)n * sizeof *lens), *starts = malloc((size_t)n * sizeof *starts), n_gen = 0;
    if (!logits || !rows || !seqs || !ids || !lens || !starts) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    if (!st) st = lb_engine_new(m, &ep, &e, err);
    for (int i = 0; !st && i < n; i++) {
        par_seq *p = &ps[i];
        if (p->n_ids >= (size_t)ep.n_ctx)
            st = lb_fail(err, LB_ERR_RANGE, "%s: prompt %d has %zu tokens; the context holds %d", o->file, base + i + 1, p->n_ids, ep.n_ctx);
        if (!st) st = lb_engine_seq_new(e, 0, &p->seq, err);
        /* a prompt starting like an earlier one (a shared system line) reuses its blocks */
        if (!st) st = lb_engine_seq_reuse_prefix(e, p->seq, p->ids, p->n_ids, &p->start, err);
        if (!st) st = lb_sampler_new(&o->sp, nv, &p->smp, err);
        if (!st && !(p->hist = malloc((p->n_ids + (size_t)o->n_predict + 1) * sizeof(int32_t))))
            st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
        if (st) break;
        memcpy(p->hist, p->ids, p->n_ids * sizeof(int32_t));
        p->n_hist = p->n_ids;
        seqs[i] = p->seq, ids[i] = p->ids, lens[i] = p->n_ids, starts[i] = p->start;
    }
    double t0 = cli_now(), t1 = t0;
    lb_mem_guard *guard = st ? NULL : cli_mem_guard_open();
    if (!st) st = cli_engine_prefill(e, seqs, ids, lens, starts, n, ep.max_batch, nv, logits, err);
    t1 = cli_now();
    if (!st) st = generate_all(e, ps, n, logits, rows, nv, tok, o, ep.n_ctx, guard, &n_gen, err);
    if (!st) {
        print_results(o, lines, ps, n, base);
        lb_engine_stats es;
        lb_engine_get_stats(e, &es);
        double tg = cli_now() - t1;
        fprintf(stderr, "lowbit: %d prompts | prompt %llu tok computed, %llu reused, %.1f tok/s | generated %zu tok, %.1f tok/s "
                "in all | %d threads\n", n, (unsigned long long)es.tokens_computed - n_gen,
                (unsigned long long)es.tokens_reused, t1 > t0 ? (es.tokens_computed - n_gen) / (t1 - t0) : 0, n_gen,
                tg > 0 ? n_gen / tg : 0, lb_engine_n_threads(e));
    }
    lb_mem_guard_close(guard);
    lb_engine_free(e);
    free(logits), free(rows), free(seqs), free(ids), free(lens), free(starts);
    return st;
}

int cli_run_parallel(const run_opts *o) {
    char **lines = NULL;
    char *text = (char *)o->prompt;
    int n = split_lines(text, &lines);
    if (n < 0) return cli_fail("out of memory");
    if (n == 0) {
        free(lines);
        return cli_fail("%s: no prompts (one a line; empty lines are skipped)", o->file);
    }
    lb_error err = {0};
    lb_model_params mp = lb_model_default_params();
    mp.tokenizer_path = o->tokenizer;
    mp.delta_path = o->delta;
    mp.n_threads = (int)o->threads;
    lb_model *m = NULL;
    par_seq *ps = calloc((size_t)n, sizeof *ps);
    lb_status st = ps ? lb_model_load(o->model, &mp, &m, &err) : lb_fail(&err, LB_ERR_NOMEM, "out of memory");
    if (!st && !lb_model_tokenizer(m)) st = lb_fail(&err, LB_ERR_ARG, "%s: the model has no tokenizer; give one with --tokenizer", o->model);
    for (int k = 0; !st && k < n; k += (int)o->parallel) {
        int w = n - k < o->parallel ? n - k : (int)o->parallel;
        st = run_engine(o, m, lines + k, ps + k, w, k, &err);
    }
    for (int i = 0; ps && i < n; i++) {
        free(ps[i].ids);
        free(ps[i].hist);
        free(ps[i].text);
        lb_sampler_free(ps[i].smp);
    }
    free(ps);
    free(lines);
    lb_model_free(m);
    return st ? cli_error(&err) : CLI_OK;
}
