/* Writes a "fine-tune" of a GGUF model for delta benchmarks: a copy in which a fraction of the
 * elements of every F32/F16/BF16 tensor is nudged by a few ulps (sparse random perturbation),
 * streamed tensor by tensor. With a relative sigma, each chosen element becomes
 * w * (1 + sigma * g), g standard normal, rounded to the tensor's type: the multiplicative drift
 * of a full fine-tune (published Llama chat/base pairs move weights by about 1e-3 to 1e-2 of
 * their value), rather than fixed ulps.
 * usage: bench_perturb IN.gguf OUT.gguf [fraction, default 0.02] [seed] [sigma] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "io/gguf.h"

typedef struct ctx {
    double frac, sigma;
    uint64_t rng;
    uint8_t *buf;
    const lb_gguf *g;
} ctx;

static uint64_t next(ctx *c) {
    c->rng ^= c->rng << 13, c->rng ^= c->rng >> 7, c->rng ^= c->rng << 17;
    return c->rng;
}

/* A standard normal (Box-Muller on two uniforms). */
static double gauss(ctx *c) {
    double u = ((double)(next(c) >> 11) + 0.5) / 9007199254740992.0, v = (double)(next(c) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static lb_status fill(void *user, const lb_tensor *t, lb_gguf_sink *sink, lb_error *err) {
    ctx *c = user;
    const uint8_t *src = lb_gguf_find_tensor(c->g, t->name)->data;
    size_t es = t->type == LB_F32 ? 4 : (t->type == LB_F16 || t->type == LB_BF16) ? 2 : 0, step = 1 << 22;
    uint64_t thr = (uint64_t)(c->frac * 18446744073709551615.0);
    for (size_t off = 0; off < t->nbytes; off += step) {
        size_t m = t->nbytes - off < step ? t->nbytes - off : step;
        memcpy(c->buf, src + off, m);
        for (size_t i = 0; es && i + es <= m; i += es) {
            if (next(c) >= thr) continue;
            if (c->sigma > 0) {
                float w = lb_load_float(t->type, c->buf + i);
                lb_store_float(t->type, c->buf + i, (float)(w * (1.0 + c->sigma * gauss(c))));
            } else if (es == 2) {
                uint16_t v;
                memcpy(&v, c->buf + i, 2);
                v = (uint16_t)(v + (next(c) & 1 ? 1 : -1) * (int)(1 + (next(c) & 3)));
                memcpy(c->buf + i, &v, 2);
            } else {
                uint32_t v;
                memcpy(&v, c->buf + i, 4);
                v += (uint32_t)((next(c) & 1 ? 1 : -1) * (int)(1 + (next(c) & 0xffff)));
                memcpy(c->buf + i, &v, 4);
            }
        }
        lb_status s = lb_gguf_sink_write(sink, c->buf, m, err);
        if (s) return s;
    }
    return LB_OK;
}

int main(int argc, char **argv) {
    if (argc < 3) return fprintf(stderr, "usage: bench_perturb IN.gguf OUT.gguf [fraction] [seed] [sigma]\n"), 2;
    ctx c = {argc > 3 ? atof(argv[3]) : 0.02, argc > 5 ? atof(argv[5]) : 0, argc > 4 ? strtoull(argv[4], NULL, 10) | 1 : 12345,
             malloc(1 << 22), NULL};
    lb_gguf *g;
    lb_error err;
    if (lb_gguf_open(argv[1], &g, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    c.g = g;
    lb_gguf_writer *w = lb_gguf_writer_new();
    lb_status s = LB_OK;
    for (size_t i = 0; i < lb_gguf_kv_count(g) && !s; i++) s = lb_gguf_copy_kv(w, g, i, &err);
    for (size_t i = 0; i < lb_gguf_tensor_count(g) && !s; i++) {
        const lb_tensor *t = lb_gguf_tensor(g, i);
        s = lb_gguf_add_tensor_lazy(w, t->name, t->type, t->n_dims, t->ne, fill, &c, &err);
    }
    if (!s) s = lb_gguf_write(w, argv[2], &err);
    if (s) fprintf(stderr, "%s\n", err.msg);
    lb_gguf_writer_free(w);
    lb_gguf_close(g);
    free(c.buf);
    return s ? 1 : 0;
}
