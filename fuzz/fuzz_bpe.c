/* libFuzzer: the input is a tokenizer.json. When it loads, encode a fixed text and the input
 * itself, and decode every id, so the whole pipeline the file describes gets exercised.
 * Seeds: fuzz/seeds_bpe/. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizer/bpe.h"

__attribute__((weak)) lb_status lb_spm_load_model(const char *p, lb_tokenizer **o, lb_error *e) {
    return lb_fail(e, LB_ERR_UNSUPPORTED, "%s: no SentencePiece in this build", p);
}
__attribute__((weak)) lb_status lb_spm_load_llama2c(const char *p, int32_t n, lb_tokenizer **o, lb_error *e) {
    return lb_fail(e, LB_ERR_UNSUPPORTED, "%s: no SentencePiece in this build", p);
}

static void run(const lb_tokenizer *t, const char *s, size_t n) {
    lb_ids ids = {0};
    lb_error err;
    for (int special = 0; special < 2; special++) {
        ids.n = 0;
        if (t->ops->encode(t, s, n, special, &ids, &err) != LB_OK) continue;
        char buf[64];
        for (size_t i = 0; i < ids.n; i++) {
            if (ids.v[i] < 0 || ids.v[i] >= t->n_vocab) __builtin_trap();
            size_t k = lb_bpe_decode_token_ex(t, ids.v[i], i == 0, special, buf, sizeof buf);
            (void)k;
        }
    }
    lb_ids_free(&ids);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    lb_tokenizer *t = NULL;
    lb_error err;
    lb_log_set_level(LB_LOG_ERROR);
    if (lb_bpe_parse_json((const char *)data, size, "fuzz.json", &t, &err) != LB_OK) {
        if (!strstr(err.msg, "fuzz.json") && err.status != LB_ERR_NOMEM) __builtin_trap(); /* errors name the file */
        return 0;
    }
    static const char text[] = "Hello world, it's 2024!  \t\n<s> caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd \xff\xfe end</s>";
    run(t, text, sizeof text - 1);
    run(t, (const char *)data, size < 256 ? size : 256);
    lb_tokenizer_free(t);
    return 0;
}
