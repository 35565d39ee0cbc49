#include "graph/act_quant.h"

#include <math.h>
#include <stddef.h>

void lb_act_quant_int8_rows(float *x, int n_tok, int n) {
    for (int t = 0; t < n_tok; t++) {
        float *r = x + (size_t)t * n, amax = 0.0f;
        for (int i = 0; i < n; i++) amax = fabsf(r[i]) > amax ? fabsf(r[i]) : amax;
        if (!(amax > 0.0f)) continue;
        float s = amax / 127.0f, inv = 1.0f / s;
        for (int i = 0; i < n; i++) r[i] = roundf(r[i] * inv) * s;
    }
}
