/* Encode / decode speed of the tokenizer.json BPE tokenizers on 100 KB of text
 * (../shared/corpus/tinystories-sampled.txt repeated). Usage: bench_tokenize [FILE] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/mapfile.h"
#include "tokenizer/tokenizer.h"

/* tokenizer.c refers to the SentencePiece loaders (another branch until merged). */
__attribute__((weak)) lb_status lb_spm_load_model(const char *p, lb_tokenizer **o, lb_error *e) {
    return lb_fail(e, LB_ERR_UNSUPPORTED, "%s: no SentencePiece in this build", p);
}
__attribute__((weak)) lb_status lb_spm_load_llama2c(const char *p, int32_t n, lb_tokenizer **o, lb_error *e) {
    return lb_fail(e, LB_ERR_UNSUPPORTED, "%s: no SentencePiece in this build", p);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *corpus = argc > 1 ? argv[1] : LB_SHARED_DIR "/corpus/tinystories-sampled.txt";
    static const char *names[] = {"gpt2", "smollm2-135m", "mistral-7b-v0.1"};
    char *src;
    size_t src_len;
    lb_error err;
    if (lb_read_file(corpus, 1 << 26, &src, &src_len, &err) || src_len == 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    size_t len = 100 * 1000;
    char *text = malloc(len);
    for (size_t i = 0; i < len; i++) text[i] = src[i % src_len];
    printf("| tokenizer | load ms | encode ms (100 KB) | MB/s | tokens | decode ms |\n|---|---|---|---|---|---|\n");
    for (int k = 0; k < 3; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/tokenizers/%s/tokenizer.json", LB_SHARED_DIR, names[k]);
        lb_tokenizer *t;
        double t0 = now();
        if (lb_tokenizer_open(path, &t, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        double load = now() - t0, enc[5], dec[5];
        int32_t *ids = NULL;
        size_t n_ids = 0;
        for (int r = 0; r < 5; r++) {
            free(ids);
            t0 = now();
            if (lb_tokenize(t, text, len, 0, &ids, &n_ids, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            enc[r] = now() - t0;
            char *back;
            size_t bl;
            t0 = now();
            lb_detokenize(t, ids, n_ids, &back, &bl, &err);
            dec[r] = now() - t0;
            free(back);
        }
        qsort(enc, 5, sizeof *enc, cmp_d);
        qsort(dec, 5, sizeof *dec, cmp_d);
        printf("| %s | %.0f | %.1f | %.1f | %zu | %.2f |\n", names[k], load * 1e3, enc[2] * 1e3, len / enc[2] / 1e6, n_ids,
               dec[2] * 1e3);
        free(ids);
        lb_tokenizer_free(t);
    }
    free(text);
    free(src);
    return 0;
}
