/* lowbit logits: write float32 logits for every position of a sequence of ids. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int parse_ids(const char *s, int32_t **out, size_t *n) {
    size_t cap = 16;
    int32_t *v = malloc(cap * sizeof *v);
    *n = 0;
    while (v && *s) {
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (end == s || errno || x < 0 || x > 0x7fffffff) break;
        if (*n == cap) {
            int32_t *w = realloc(v, (cap *= 2) * sizeof *v);
            if (!w) break;
            v = w;
        }
        v[(*n)++] = (int32_t)x;
        s = end;
        if (*s == ',') s++;
        else if (*s) break;
    }
    if (!v || *s || *n == 0) {
        free(v);
        return 0;
    }
    *out = v;
    return 1;
}

int cmd_logits(int argc, char **argv) {
    const char *model = NULL, *ids_s = NULL, *out = NULL;
    long long threads = 0;
    lb_kv_type kv = LB_KV_F32;
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            puts("usage: lowbit logits -m MODEL --ids 1,2,3 -o FILE [-t THREADS] [--kv-type f32|f16|q8_0|q4_0]\n\n"
                 "Runs the ids through the model and writes float32 logits, one row of n_vocab values per\n"
                 "position (little-endian, row-major), overwriting FILE. Needs no tokenizer.");
            return CLI_OK;
        }
        if (!v) return fprintf(stderr, "lowbit: %s needs a value\n", a), CLI_USAGE;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--ids")) ids_s = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) out = v;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!cli_int(a, v, 1, 512, &threads)) return CLI_USAGE; }
        else if (!strcmp(a, "--kv-type")) {
            if (!cli_kv_type(a, v, &kv)) return CLI_USAGE;
        }
        else return fprintf(stderr, "lowbit: logits: unknown option '%s'\n", a), CLI_USAGE;
    }
    if (!model || !ids_s || !out) return fprintf(stderr, "usage: lowbit logits -m MODEL --ids 1,2,3 -o FILE\n"), CLI_USAGE;
    int32_t *ids;
    size_t n;
    if (!parse_ids(ids_s, &ids, &n)) return fprintf(stderr, "lowbit: --ids: expected comma-separated non-negative integers\n"), CLI_USAGE;

    lb_error err = {0};
    lb_model_params mp = lb_model_default_params();
    mp.n_threads = (int)threads;
    lb_model *m = NULL;
    lb_session *s = NULL;
    float *logits = NULL;
    lb_atomic_file *f = NULL;
    const char *ins[] = {model};
    lb_status st = lb_output_check(out, ins, 1, 0, &err);
    if (st == LB_OK) st = lb_model_load(model, &mp, &m, &err);
    if (st == LB_OK) {
        lb_session_params sp = lb_session_default_params();
        sp.n_ctx = (int)n;
        sp.n_threads = (int)threads;
        sp.kv_type = kv;
        st = lb_session_new(m, &sp, &s, &err);
    }
    size_t nv = m ? (size_t)lb_model_n_vocab(m) : 0;
    if (st == LB_OK && !(logits = malloc(n * nv * sizeof(float)))) st = lb_fail(&err, LB_ERR_NOMEM, "out of memory");
    if (st == LB_OK) st = lb_session_eval(s, ids, n, logits, 1, &err);
    if (st == LB_OK) st = lb_atomic_open(out, &f, &err);
    if (st == LB_OK) st = lb_atomic_write(f, logits, n * nv * sizeof(float), &err); /* x86: little-endian */
    if (st == LB_OK) {
        st = lb_atomic_commit(f, &err);
        f = NULL;
    }
    if (f) lb_atomic_abort(f);
    if (st == LB_OK) fprintf(stderr, "lowbit: wrote %zu x %zu logits to %s\n", n, nv, out);
    free(logits);
    free(ids);
    lb_session_free(s);
    lb_model_free(m);
    return st ? cli_error(&err) : CLI_OK;
}
