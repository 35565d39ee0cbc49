/* libFuzzer target: SentencePiece tokenizer.model / llama2.c tokenizer.bin parsing, then
 * encoding and decoding a fixed text with whatever vocabulary parsed. The first byte picks
 * the parser so one corpus covers both. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/spm.h"

static void exercise(lb_tokenizer *t) {
    static const char text[] = "  Hello  world! <s> caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80 \xff\xfe end ";
    lb_ids ids = {0};
    lb_error err;
    if (t->ops->encode(t, text, sizeof text - 1, 1, &ids, &err) == LB_OK) {
        char buf[16];
        for (size_t i = 0; i < ids.n; i++) {
            if (ids.v[i] < 0 || ids.v[i] >= t->n_vocab) abort(); /* ids must be in range */
            t->ops->decode_token(t, ids.v[i], i == 0, buf, sizeof buf);
        }
    }
    lb_ids_free(&ids);
    t->ops->free(t->impl);
    free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lb_log_set_level(LB_LOG_ERROR);
    if (size < 1) return 0;
    lb_tokenizer *t = NULL;
    lb_error err;
    lb_status st = data[0] & 1 ? lb_spm_parse_llama2c(data + 1, size - 1, 0, "fuzz.bin", &t, &err)
                               : lb_spm_parse_model(data + 1, size - 1, "fuzz.model", &t, &err);
    if (st == LB_OK) exercise(t);
    return 0;
}
