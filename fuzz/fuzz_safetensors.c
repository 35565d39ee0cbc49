/* libFuzzer over the safetensors parser: any input must parse or fail cleanly, and every
 * tensor the parser accepts must lie inside the input. */
#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lb_safetensors *st;
    lb_error err;
    if (lb_safetensors_parse(data, size, "fuzz.safetensors", &st, &err) != LB_OK) return 0;
    unsigned sum = 0;
    for (size_t i = 0; i < lb_safetensors_count(st); i++) {
        const lb_st_tensor *t = lb_safetensors_info(st, i);
        const uint8_t *p = t->data;
        if (t->nbytes) sum += p[0] + p[t->nbytes - 1]; /* ASan flags anything outside */
        lb_tensor lt;
        if (lb_safetensors_get(st, i, &lt, &err) == LB_OK && lb_safetensors_find(st, t->name) < 0) __builtin_trap();
    }
    for (size_t i = 0; i < lb_safetensors_n_meta(st); i++)
        if (!lb_safetensors_meta_get(st, lb_safetensors_meta_key(st, i))) __builtin_trap();
    lb_safetensors_close(st);
    return (int)(sum & 0);
}
