/* SentencePiece BPE encode speed: the sampled TinyStories corpus (35 KB) with the Llama 2
 * 32k vocabulary and with tok512. Prints MB/s and tokens/s (median of 9 runs). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "tokenizer/spm.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void bench(const char *model, const char *text, size_t len) {
    lb_tokenizer *t = NULL;
    lb_error err;
    double t0 = now();
    if (lb_spm_load_model(model, &t, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    double load = now() - t0, times[9];
    size_t n_ids = 0;
    for (int r = 0; r < 9; r++) {
        lb_ids ids = {0};
        t0 = now();
        t->ops->encode(t, text, len, 0, &ids, &err);
        times[r] = now() - t0;
        n_ids = ids.n;
        lb_ids_free(&ids);
    }
    qsort(times, 9, sizeof *times, cmp);
    printf("| %s | %d | %.2f ms | %zu bytes -> %zu ids | %.1f MB/s | %.0f tok/s |\n", model, t->n_vocab, load * 1e3, len,
           n_ids, len / times[4] / 1e6, n_ids / times[4]);
    t->ops->free(t->impl);
    free(t);
}

int main(void) {
    FILE *f = fopen(LB_SHARED_DIR "/corpus/tinystories-sampled.txt", "rb");
    if (!f) return 1;
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof text, f);
    fclose(f);
    printf("| model | vocab | load | input | encode | encode |\n|---|---|---|---|---|---|\n");
    bench(LB_SHARED_DIR "/models/llama2-tokenizer-32k/tokenizer.model", text, len);
    bench(LB_SHARED_DIR "/models/stories260K-hf/tokenizer.model", text, len);
    return 0;
}
