#include "delta/sparse.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/error.h"
#include "core/threads.h"

size_t lb_delta_sparse_count_scalar(const float *x, size_t n, float t) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += !(fabsf(x[i]) <= t);
    return k;
}

size_t lb_delta_sparse_gather_scalar(const float *x, size_t n, float t, uint32_t *idx, float *val) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(x[i]) <= t)) {
            idx[k] = (uint32_t)i;
            val[k++] = x[i];
        }
    return k;
}

/* Output arrays of a large delta are mostly page faults on this kind of VM (~2 us per 4 KiB
 * page): ask for transparent huge pages. Still plain malloc-compatible memory (free() works). */
static void *big_alloc(size_t bytes) {
    if (bytes < ((size_t)8 << 20)) return malloc(bytes);
    size_t huge = (size_t)2 << 20, n = (bytes + huge - 1) / huge * huge;
    void *p = aligned_alloc(huge, n);
    if (p) madvise(p, n, MADV_HUGEPAGE);
    return p;
}

/* Large deltas are split across threads: each counts its slice, a prefix sum places the
 * slices, then each gathers straight into its place (two memory-bound passes, in parallel). */
typedef struct sparse_job {
    const float *x;
    size_t n;
    float t;
    int avx2;
    size_t *count, *off;
    uint32_t *idx;
    float *val;
} sparse_job;

static void slice(const sparse_job *j, int ith, int nth, size_t *s, size_t *e) {
    *s = j->n / (size_t)nth * (size_t)ith;
    *e = ith == nth - 1 ? j->n : j->n / (size_t)nth * (size_t)(ith + 1);
}

static void count_job(void *arg, int ith, int nth) {
    sparse_job *j = arg;
    size_t s, e;
    slice(j, ith, nth, &s, &e);
    j->count[ith] = j->avx2 ? lb_delta_sparse_count_avx2(j->x + s, e - s, j->t) : lb_delta_sparse_count_scalar(j->x + s, e - s, j->t);
}

static void gather_job(void *arg, int ith, int nth) {
    sparse_job *j = arg;
    size_t s, e, o = j->off[ith];
    slice(j, ith, nth, &s, &e);
    size_t k = j->avx2 ? lb_delta_sparse_gather_avx2(j->x + s, e - s, j->t, j->idx + o, j->val + o)
                       : lb_delta_sparse_gather_scalar(j->x + s, e - s, j->t, j->idx + o, j->val + o);
    for (size_t i = 0; i < k; i++) j->idx[o + i] += (uint32_t)s;
}

lb_status lb_compress_delta_sparse(const float *delta, size_t n, float threshold, uint32_t **indices,
                                   float **values, size_t *n_kept, double *ratio, lb_error *err) {
    *indices = NULL;
    *values = NULL;
    *n_kept = 0;
    if (!(threshold >= 0)) return lb_fail(err, LB_ERR_ARG, "sparse delta: threshold %g must be >= 0", threshold);
    if ((uint64_t)n > (uint64_t)UINT32_MAX + 1)
        return lb_fail(err, LB_ERR_RANGE, "sparse delta: %zu elements do not fit u32 indices", n);
    if (n && !delta) return lb_fail(err, LB_ERR_ARG, "sparse delta: delta is NULL");
    /* threads pay off past a few MiB; below, thread start-up costs more than the scan */
    lb_pool *pool = n >= ((size_t)1 << 21) ? lb_pool_new(0) : NULL;
    int nth = lb_pool_size(pool);
    size_t count[64], off[64];
    if (nth > 64) nth = 64;
    sparse_job j = {delta, n, threshold, lb_cpu_has_avx2(), count, off, NULL, NULL};
    lb_pool_run_n(pool, count_job, &j, nth);
    size_t k = 0;
    for (int i = 0; i < nth; i++) off[i] = k, k += count[i];
    if (ratio) *ratio = k ? (double)n * sizeof(float) / ((double)k * (sizeof(uint32_t) + sizeof(float))) : HUGE_VAL;
    if (k == 0) {
        lb_pool_free(pool);
        return LB_OK;
    }
    /* +8: the vector gather stores whole lanes past its last kept element */
    j.idx = big_alloc((k + 8) * sizeof *j.idx);
    j.val = big_alloc((k + 8) * sizeof *j.val);
    if (!j.idx || !j.val) {
        free(j.idx);
        free(j.val);
        lb_pool_free(pool);
        return lb_fail(err, LB_ERR_NOMEM, "sparse delta: cannot allocate %zu kept elements", k);
    }
    lb_pool_run_n(pool, gather_job, &j, nth);
    lb_pool_free(pool);
    /* A slice's spare lanes may have landed on the next slice's first entries: rewrite those. */
    for (int i = 1; i < nth; i++) {
        size_t s, e, w = 0;
        slice(&j, i, nth, &s, &e);
        for (size_t p = s; p < e && w < 8 && w < count[i]; p++)
            if (!(fabsf(delta[p]) <= threshold)) {
                j.idx[off[i] + w] = (uint32_t)p;
                j.val[off[i] + w++] = delta[p];
            }
    }
    *indices = j.idx;
    *values = j.val;
    *n_kept = k;
    return LB_OK;
}

lb_status lb_decompress_delta_sparse(const uint32_t *indices, const float *values, size_t n_kept, float *out,
                                     size_t n, lb_error *err) {
    for (size_t i = 0; i < n_kept; i++)
        if (indices[i] >= n)
            return lb_fail(err, LB_ERR_RANGE, "sparse delta: index %u (entry %zu) >= %zu elements", indices[i], i, n);
    memset(out, 0, n * sizeof *out);
    for (size_t i = 0; i < n_kept; i++) out[indices[i]] = values[i];
    return LB_OK;
}

lb_status lb_delta_indices_encode(const uint32_t *idx, size_t n, uint32_t *gaps, lb_error *err) {
    uint32_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cur = idx[i];
        if (i && cur <= prev)
            return lb_fail(err, LB_ERR_ARG, "delta indices: entry %zu (%u) not above the previous (%u)", i, cur, prev);
        gaps[i] = i ? cur - prev - 1 : cur;
        prev = cur;
    }
    return LB_OK;
}

lb_status lb_delta_indices_decode(const uint32_t *gaps, size_t n, uint64_t limit, uint32_t *idx, lb_error *err) {
    uint64_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        cur = i ? cur + 1 + (uint64_t)gaps[i] : gaps[i];
        if (cur >= limit || cur > UINT32_MAX)
            return lb_fail(err, LB_ERR_RANGE, "delta indices: entry %zu decodes to %llu, not below %llu", i,
                           (unsigned long long)cur, (unsigned long long)limit);
        idx[i] = (uint32_t)cur;
    }
    return LB_OK;
}

lb_status lb_delta_xor(const void *a, const void *b, void *out, size_t n, size_t elem_size, lb_error *err) {
    if (elem_size != 2 && elem_size != 4) return lb_fail(err, LB_ERR_ARG, "xor delta: elem_size %zu is not 2 or 4", elem_size);
    size_t bytes;
    if (!lb_mul_ok(n, elem_size, &bytes)) return lb_fail(err, LB_ERR_RANGE, "xor delta: %zu elements overflow", n);
    const uint8_t *pa = a, *pb = b;
    uint8_t *po = out;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) { /* memcpy keeps it alias- and alignment-safe */
        uint64_t x, y;
        memcpy(&x, pa + i, 8);
        memcpy(&y, pb + i, 8);
        x ^= y;
        memcpy(po + i, &x, 8);
    }
    for (; i < bytes; i++) po[i] = pa[i] ^ pb[i];
    return LB_OK;
}

lb_status lb_delta_sparse_bits(const void *x, size_t n, size_t elem_size, uint32_t **indices, void **values,
                               size_t *n_kept, lb_error *err) {
    *indices = NULL;
    *values = NULL;
    *n_kept = 0;
    if (elem_size != 2 && elem_size != 4) return lb_fail(err, LB_ERR_ARG, "sparse bits: elem_size %zu is not 2 or 4", elem_size);
    if ((uint64_t)n > (uint64_t)UINT32_MAX + 1) return lb_fail(err, LB_ERR_RANGE, "sparse bits: %zu elements do not fit u32 indices", n);
    const uint8_t *p = x;
    size_t k = 0;
    if (elem_size == 4) {
        for (size_t i = 0; i < n; i++) {
            uint32_t v;
            memcpy(&v, p + 4 * i, 4);
            k += v != 0;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            k += v != 0;
        }
    }
    if (!k) return LB_OK;
    uint32_t *idx = malloc(k * sizeof *idx);
    uint8_t *val = malloc(k * elem_size);
    if (!idx || !val) {
        free(idx);
        free(val);
        return lb_fail(err, LB_ERR_NOMEM, "sparse bits: cannot allocate %zu kept elements", k);
    }
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *e = p + i * elem_size;
        int nz = elem_size == 4 ? (e[0] | e[1] | e[2] | e[3]) != 0 : (e[0] | e[1]) != 0;
        if (nz) {
            idx[j] = (uint32_t)i;
            memcpy(val + j * elem_size, e, elem_size);
            j++;
        }
    }
    *indices = idx;
    *values = val;
    *n_kept = k;
    return LB_OK;
}
