/* The 8-row interleaved Q4_0 layout (repack.h): the repack and its inverse, the activation
 * preparation, the scalar twin of the AVX2 and AVX-512 kernels, and the load-time pass over a
 * model. */
#include "quant/repack.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/error.h"
#include "quant/quant.h"

#define F16(h) lb_fp16_to_f32(h)

/* plain row block (g * 8 + r, b) <-> interleaved block b of group g, row r */
static void move_block(lb_block_q4_0 *plain, lb_block_q4_0x8 *x8, int r, int to_x8) {
    for (int c = 0; c < 4; c++) {
        if (to_x8) memcpy(&x8->qs[c][4 * r], &plain->qs[4 * c], 4);
        else memcpy(&plain->qs[4 * c], &x8->qs[c][4 * r], 4);
    }
    if (to_x8) x8->d[r] = plain->d;
    else plain->d = x8->d[r];
}

static void convert(void *plain, void *x8, int64_t rows, int64_t k, int to_x8) {
    int64_t nb = k / LB_QK;
    lb_block_q4_0 *p = plain;
    lb_block_q4_0x8 *q = x8;
    for (int64_t g = 0; g < rows / LB_R8; g++)
        for (int64_t b = 0; b < nb; b++)
            for (int r = 0; r < LB_R8; r++) move_block(&p[(g * LB_R8 + r) * nb + b], &q[g * nb + b], r, to_x8);
}

void lb_repack_q4_0_x8(const void *src, void *dst, int64_t rows, int64_t k) { convert((void *)src, dst, rows, k, 1); }
void lb_unpack_q4_0_x8(const void *src, void *dst, int64_t rows, int64_t k) { convert(dst, (void *)src, rows, k, 0); }

/* ---- activations ---- */

size_t lb_repack_prep_size(int64_t k) {
    int64_t nb = k / LB_QK;
    return ((size_t)nb * sizeof(lb_block_q8_0) + 3) / 4 * 4 + (size_t)nb * sizeof(int32_t);
}

/* 8 sum x of each quantized block, after the blocks */
static void fill_sums(void *dst, int64_t k) {
    int64_t nb = k / LB_QK;
    const lb_block_q8_0 *b = dst;
    int32_t *s = (int32_t *)(void *)((uint8_t *)dst + ((size_t)nb * sizeof *b + 3) / 4 * 4);
    for (int64_t i = 0; i < nb; i++) {
        int32_t t = 0;
        for (int j = 0; j < LB_QK; j++) t += b[i].qs[j];
        s[i] = 8 * t;
    }
}

void lb_repack_prep_scalar(const float *x, int64_t k, void *dst) {
    lb_quantize_row_q8_0_scalar(x, dst, k);
    fill_sums(dst, k);
}

void lb_repack_prep_avx2(const float *x, int64_t k, void *dst) {
    lb_quantize_row_q8_0_avx2(x, dst, k);
    fill_sums(dst, k);
}

/* ---- scalar twin ---- */

static float row_dot(const lb_block_q4_0x8 *w, int r, const lb_block_q8_0 *x, const int32_t *m8, int64_t nb) {
    float sum = 0;
    for (int64_t b = 0; b < nb; b++) {
        int s = -m8[b];
        for (int c = 0; c < 4; c++)
            for (int j = 0; j < 4; j++) {
                int q = w[b].qs[c][4 * r + j];
                s += (q & 0xF) * x[b].qs[4 * c + j] + (q >> 4) * x[b].qs[16 + 4 * c + j];
            }
        float d = F16(w[b].d[r]) * F16(x[b].d);
        sum += d * (float)s;
    }
    return sum;
}

void lb_matmul_rows_q4_0x8_scalar(const lb_matmul_args *a, int64_t r0, int64_t r1) {
    int64_t nb = a->k / LB_QK;
    for (int64_t g = r0; g < r1; g += LB_R8) {
        const lb_block_q4_0x8 *w = (const lb_block_q4_0x8 *)(const void *)(a->w + (size_t)g * a->w_row_bytes);
        for (int64_t t = 0; t < a->n_tok; t++) {
            const uint8_t *xt = (const uint8_t *)a->x + (size_t)t * a->x_row_bytes;
            const int32_t *m8 = lb_repack_prep_sums(xt, nb);
            for (int r = 0; r < LB_R8; r++)
                a->y[t * a->rows + g + r] = row_dot(w, r, (const lb_block_q8_0 *)(const void *)xt, m8, nb);
        }
    }
}

/* ---- the load-time pass ---- */

int lb_repack_enabled(void) {
    const char *e = getenv("LOWBIT_REPACK");
    if (e && *e) return strcmp(e, "0") != 0;
    return lb_cpu_level_get() >= LB_CPU_AVX2;
}

static int repackable(const lb_model *m, const lb_tensor *t) {
    return t->type == LB_Q4_0 && t->n_dims == 2 && t->ne[1] % LB_R8 == 0 && t->ne[0] % LB_QK == 0 && t->data &&
           t != m->tok_embd && t->nbytes == lb_dtype_row_size(LB_Q4_0, t->ne[0]) * (size_t)t->ne[1];
}

size_t lb_repack_model_bytes(const lb_model *m, size_t *peak) {
    size_t n = 0, big = 0;
    for (size_t i = 0; i < m->n_tensors; i++)
        if (repackable(m, &m->tensors[i])) {
            n += m->tensors[i].nbytes;
            if (m->tensors[i].nbytes > big) big = m->tensors[i].nbytes;
        }
    if (peak) *peak = big;
    return n;
}

int lb_repack_model_has(const lb_model *m) {
    for (size_t i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].type == LB_Q4_0_R8) return 1;
    return 0;
}

/* The whole pages of [p, p + n) inside a file mapping (never a heap buffer, whose contents
 * MADV_DONTNEED would zero) go back to the page cache: the repacked copy replaces them. */
static void release_mapped(const lb_model *m, const void *p, size_t n) {
    uintptr_t a = (uintptr_t)p, e = a + n, pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < m->n_maps; i++) {
        const lb_mapfile *f = &m->maps[i];
        uintptr_t fa = (uintptr_t)f->data, fe = fa + f->size;
        if (f->heap || a < fa || e > fe) continue;
        uintptr_t s0 = (a + pg - 1) / pg * pg, e0 = e / pg * pg;
        if (e0 > s0) madvise((void *)s0, e0 - s0, MADV_DONTNEED);
        return;
    }
}

lb_status lb_repack_model(lb_model *m, int *n, size_t *bytes, lb_error *err) {
    int cnt = 0;
    size_t total = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        lb_tensor *t = &m->tensors[i];
        if (!repackable(m, t)) continue;
        void *dst = lb_model_alloc(m, t->nbytes, "Q4_0 repacked into 8-row groups");
        if (!dst) return lb_fail(err, LB_ERR_NOMEM, "repack: %zu bytes for %s", t->nbytes, t->name);
        lb_repack_q4_0_x8(t->data, dst, t->ne[1], t->ne[0]);
        release_mapped(m, t->data, t->nbytes);
        t->data = dst;
        t->type = LB_Q4_0_R8;
        cnt++;
        total += t->nbytes;
    }
    if (n) *n = cnt;
    if (bytes) *bytes = total;
    return LB_OK;
}
