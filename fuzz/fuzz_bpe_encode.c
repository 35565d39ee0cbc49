/* libFuzzer: arbitrary bytes (invalid UTF-8 included) through the gpt2 tokenizer.json.
 * Byte-level BPE must give every input back unchanged: decode(encode(x)) == x, with special
 * tokens written in the text rendered back as text. The tokenizer comes from
 * $LB_SHARED_DIR/tokenizers/gpt2 (default: ../shared beside the source tree). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/bpe.h"
#include "shared_path.h"

__attribute__((weak)) lb_status lb_spm_load_model(const char *p, lb_tokenizer **o, lb_error *e) {
    return lb_fail(e, LB_ERR_UNSUPPORTED, "%s: no SentencePiece in this build", p);
}
__attribute__((weak)) lb_status lb_spm_load_llama2c(const char *p, int32_t n, lb_tokenizer **o, lb_error *e) {
    return lb_fail(e, LB_ERR_UNSUPPORTED, "%s: no SentencePiece in this build", p);
}

static lb_tokenizer *g_tok; /* loaded once: the harness is one process */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char path[1024];
    fuzz_shared_path(path, sizeof path, "tokenizers/gpt2/tokenizer.json");
    lb_error err;
    if (lb_bpe_load_json(path, &g_tok, &err)) {
        fprintf(stderr, "fuzz_bpe_encode: %s (set LB_SHARED_DIR)\n", err.msg);
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    lb_ids ids = {0};
    lb_error err;
    if (g_tok->ops->encode(g_tok, (const char *)data, size, 1, &ids, &err) != LB_OK) __builtin_trap();
    char *out = malloc(size + 1);
    size_t n = 0;
    for (size_t i = 0; i < ids.n; i++) {
        size_t k = lb_bpe_decode_token_ex(g_tok, ids.v[i], i == 0, 1, NULL, 0);
        if (n + k > size) __builtin_trap(); /* more text than went in */
        n += lb_bpe_decode_token_ex(g_tok, ids.v[i], i == 0, 1, out + n, k);
    }
    if (n != size || (size && memcmp(out, data, size) != 0)) __builtin_trap();
    free(out);
    lb_ids_free(&ids);
    return 0;
}
