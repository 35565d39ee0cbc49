/* libFuzzer over the config.json parser: any text must parse or fail cleanly, and an accepted
 * config must be internally consistent. */
#include <stddef.h>
#include <stdint.h>

#include "io/hf_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lb_config c;
    lb_hf_extra x;
    lb_error err;
    if (lb_hf_parse_config_ex((const char *)data, size, "fuzz/config.json", &c, &x, &err) != LB_OK) return 0;
    if (c.dim <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads || c.head_dim <= 0 ||
        c.head_dim % 2 || !(c.norm_eps > 0) || !(c.rope_theta > 0) || c.n_vocab <= 0 || c.n_layers <= 0 ||
        x.bos_id >= c.n_vocab || x.eos_id >= c.n_vocab)
        __builtin_trap();
    return 0;
}
