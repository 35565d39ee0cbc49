/* libFuzzer target: lb_gguf_parse on arbitrary bytes, then every accessor over what it
 * accepted (values, array elements, formatting, tensor data), so a bad check anywhere in the
 * parser shows up as an out-of-bounds read under ASan. */
#include <stdint.h>
#include <string.h>

#include "io/gguf.h"

static void walk_arr(const lb_gguf_arr *a, uint64_t *sink) {
    size_t n = a->n < 64 ? a->n : 64;
    for (size_t i = 0; i < n; i++) {
        int64_t iv;
        double fv;
        const char *s;
        size_t len;
        lb_gguf_arr sub;
        if (lb_gguf_arr_int(a, i, &iv, NULL) == LB_OK) *sink += (uint64_t)iv;
        if (lb_gguf_arr_float(a, i, &fv, NULL) == LB_OK) *sink += (uint64_t)(fv == fv);
        if (lb_gguf_arr_str(a, i, &s, &len, NULL) == LB_OK && len) *sink += (uint8_t)s[len - 1];
        if (lb_gguf_arr_arr(a, i, &sub, NULL) == LB_OK) walk_arr(&sub, sink);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lb_log_set_level(LB_LOG_ERROR);
    lb_gguf *g;
    lb_error err;
    if (lb_gguf_parse(data, size, "fuzz.gguf", &g, &err) != LB_OK) return 0;
    uint64_t sink = 0;
    char line[256];
    for (size_t i = 0; i < lb_gguf_kv_count(g); i++) {
        const char *key = lb_gguf_kv_key(g, i);
        int64_t iv;
        double fv;
        const char *s;
        size_t len;
        lb_gguf_arr a;
        if (lb_gguf_get_int(g, key, &iv, NULL) == LB_OK) sink += (uint64_t)iv;
        if (lb_gguf_get_float(g, key, &fv, NULL) == LB_OK) sink += (uint64_t)(fv == fv);
        if (lb_gguf_get_str(g, key, &s, &len, NULL) == LB_OK && len) sink += (uint8_t)s[len - 1];
        if (lb_gguf_kv_arr(g, i, &a, NULL) == LB_OK) walk_arr(&a, &sink);
        lb_gguf_kv_format(g, i, line, sizeof line);
        sink += strlen(line);
    }
    for (size_t i = 0; i < lb_gguf_tensor_count(g); i++) {
        const lb_tensor *t = lb_gguf_tensor(g, i);
        if (lb_gguf_find_tensor(g, t->name) != t) __builtin_trap();
        if (t->nbytes) sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
    }
    lb_gguf_close(g);
    return (int)(sink & 0); /* keep the reads */
}
