/* lowbit imatrix: per-column activation statistics of a model's matrices over a calibration text,
 * written in llama.cpp's imatrix format for `quantize --imatrix` (either tool's). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* A bar of chunks (the byte bar does not fit a count); a final line when stderr is no terminal. */
void cli_chunk_bar(void *user, const char *what, uint64_t done, uint64_t total) {
    double *t0 = user, now = cli_now(), el = now - *t0;
    double eta = done ? el / (double)done * (double)(total - done) : 0;
    if (!isatty(2)) {
        if (done >= total) fprintf(stderr, "lowbit: %llu %s in %.1f s\n", (unsigned long long)total, what, el);
        return;
    }
    char bar[31];
    int fill = total ? (int)(30 * done / total) : 0;
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r[%s] %s %llu / %llu  %.1f s  ETA %.0f s ", bar, what, (unsigned long long)done,
            (unsigned long long)total, el, eta);
    if (done >= total) fputc('\n', stderr);
}

static void usage(FILE *f) {
    fputs("usage: lowbit imatrix -m MODEL -f TEXT -o FILE [--chunks N] [-c CTX] [-t THREADS] [--tokenizer FILE]\n", f);
}

int cmd_imatrix(int argc, char **argv) {
    const char *model = NULL, *text_path = NULL, *out = NULL, *tok = NULL;
    long long ctx = 512, chunks = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            puts("\nTokenizes TEXT (with BOS), runs MODEL over it in non-overlapping chunks of CTX tokens\n"
                 "(default 512; BOS in place of each chunk's first token, a fresh context per chunk) and\n"
                 "collects, for every matrix of the blocks (blk.N.*.weight), the mean square of each input\n"
                 "column's activation: the importance matrix `lowbit quantize --imatrix FILE` weights the\n"
                 "rounding error with. --chunks N stops after N chunks (default: all). FILE is llama.cpp's\n"
                 "imatrix .dat format: llama-quantize reads lowbit's files, and lowbit reads llama-imatrix's.");
            return CLI_OK;
        }
        if (!v) return fprintf(stderr, "lowbit: %s needs a value\n", a), CLI_USAGE;
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) text_path = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) out = v;
        else if (!strcmp(a, "--tokenizer")) tok = v;
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { if (!cli_int(a, v, 2, 1 << 20, &ctx)) return CLI_USAGE; }
        else if (!strcmp(a, "--chunks")) { if (!cli_int(a, v, 1, 1 << 30, &chunks)) return CLI_USAGE; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!cli_int(a, v, 1, 512, &threads)) return CLI_USAGE; }
        else return fprintf(stderr, "lowbit: imatrix: unknown option '%s'\n", a), CLI_USAGE;
    }
    if (!model || !text_path || !out) return usage(stderr), CLI_USAGE;

    lb_error err = {0};
    lb_model *m = NULL;
    lb_imatrix *im = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    const char *ins[] = {model, text_path, tok};
    lb_status s = lb_output_check(out, ins, 3, 0, &err); /* before the work, not after */
    if (!s) s = cli_text_ids(model, tok, (int)threads, text_path, &m, &ids, &n, &err);
    if (!s) {
        lb_imatrix_params p = lb_imatrix_default_params();
        p.n_ctx = (int)ctx;
        p.n_chunks = (int)chunks;
        p.n_threads = (int)threads;
        p.dataset = text_path;
        double t0 = cli_now();
        s = lb_imatrix_compute(m, ids, n, lb_tokenizer_bos(lb_model_tokenizer(m)), &p, cli_chunk_bar, &t0, &im, &err);
    }
    if (!s) s = lb_imatrix_save(im, out, &err);
    if (!s)
        fprintf(stderr, "lowbit: wrote %s: %zu matrices, %d chunks of %lld tokens\n", out, lb_imatrix_n_entries(im),
                lb_imatrix_n_chunks(im), ctx);
    lb_imatrix_free(im);
    free(ids);
    lb_model_free(m);
    return s ? cli_error(&err) : CLI_OK;
}
