/* lowbit tokenize: print the ids of a text as a JSON array. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static int ends_with(const char *s, const char *x) {
    size_t a = strlen(s), b = strlen(x);
    return a >= b && !strcmp(s + a - b, x);
}

/* A tokenizer file, a folder with one, or a model that carries one. */
static lb_status open_tokenizer(const char *path, lb_tokenizer **own, lb_model **model, const lb_tokenizer **t,
                                lb_error *err) {
    struct stat st;
    *own = NULL;
    *model = NULL;
    if (ends_with(path, ".json") || ends_with(path, ".model")) {
        lb_status s = lb_tokenizer_open(path, own, err);
        *t = *own;
        return s;
    }
    lb_model_params mp = lb_model_default_params();
    mp.n_threads = 1;
    lb_status s = lb_model_load(path, &mp, model, err);
    if (s == LB_OK) {
        *t = lb_model_tokenizer(*model);
        if (!*t) return lb_fail(err, LB_ERR_FORMAT, "%s: the model has no tokenizer", path);
        return LB_OK;
    }
    /* not a loadable model: a folder of tokenizer files or a llama2.c tokenizer.bin */
    if (stat(path, &st) == 0) {
        lb_error e2 = {0};
        if (lb_tokenizer_open(path, own, &e2) == LB_OK) {
            *t = *own;
            return LB_OK;
        }
    }
    return s;
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL, *text = NULL;
    int special = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            puts("usage: lowbit tokenize -m MODEL_OR_TOKENIZER [--no-special] TEXT\n\n"
                 "Prints the ids of TEXT as a JSON array. MODEL_OR_TOKENIZER is a model (GGUF, llama2.c,\n"
                 "Hugging Face folder) or a tokenizer file (tokenizer.json, tokenizer.model, llama2.c\n"
                 "tokenizer.bin). Special tokens (BOS, ...) are added as the tokenizer itself adds them;\n"
                 "--no-special adds none.");
            return CLI_OK;
        } else if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) {
            if (++i >= argc) return fprintf(stderr, "lowbit: -m needs a value\n"), CLI_USAGE;
            path = argv[i];
        } else if (!strcmp(argv[i], "--no-special")) special = 0;
        else if (!strcmp(argv[i], "--")) { if (i + 1 < argc) text = argv[++i]; }
        else if (argv[i][0] == '-' && argv[i][1]) return fprintf(stderr, "lowbit: tokenize: unknown option '%s'\n", argv[i]), CLI_USAGE;
        else if (!text) text = argv[i];
        else return fprintf(stderr, "lowbit: tokenize: give TEXT as one argument (quote it)\n"), CLI_USAGE;
    }
    if (!path || !text) return fprintf(stderr, "usage: lowbit tokenize -m MODEL_OR_TOKENIZER [--no-special] TEXT\n"), CLI_USAGE;
    lb_error err = {0};
    lb_tokenizer *own;
    lb_model *m;
    const lb_tokenizer *t = NULL;
    if (open_tokenizer(path, &own, &m, &t, &err)) {
        lb_model_free(m);
        return cli_error(&err);
    }
    int32_t *ids;
    size_t n;
    lb_status s = lb_tokenize(t, text, strlen(text), special, &ids, &n, &err);
    if (s == LB_OK) {
        cli_json_ids(stdout, ids, n);
        putchar('\n');
        free(ids);
    }
    lb_tokenizer_free(own);
    lb_model_free(m);
    return s ? cli_error(&err) : CLI_OK;
}
