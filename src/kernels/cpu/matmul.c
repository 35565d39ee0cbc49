/* matmul driver (validation, thread split, activation preparation), the per-dtype kernel
 * table, and the portable scalar reference kernels for F32/F16/BF16. */
#include "kernels/cpu/matmul.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* Below this many multiply-adds per thread, waking another thread costs more than it saves. */
#define LB_MATMUL_MIN_MACS_PER_THREAD (32 * 1024)

/* ---- scalar reference ------------------------------------------------------------------ */

static inline float load_f32(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4); /* weights may be unaligned */
    return f;
}
static inline float load_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return lb_fp16_to_f32(h);
}
static inline float load_bf16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return lb_bf16_to_f32(h);
}

#define LB_SCALAR_ROWS(NAME, LOAD, SIZE)                                                     \
    static void NAME(const lb_matmul_args *a, int64_t r0, int64_t r1) {                      \
        const float *x = a->x;                                                               \
        for (int64_t r = r0; r < r1; r++) {                                                  \
            const uint8_t *w = a->w + (size_t)r * a->w_row_bytes;                            \
            for (int64_t t = 0; t < a->n_tok; t++) {                                         \
                const float *xt = x + t * a->k;                                              \
                float s = 0;                                                                 \
                for (int64_t i = 0; i < a->k; i++) s += LOAD(w + (size_t)i * SIZE) * xt[i];  \
                a->y[t * a->rows + r] = s;                                                   \
            }                                                                                \
        }                                                                                    \
    }
LB_SCALAR_ROWS(rows_f32_scalar, load_f32, 4)
LB_SCALAR_ROWS(rows_f16_scalar, load_f16, 2)
LB_SCALAR_ROWS(rows_bf16_scalar, load_bf16, 2)

static const lb_matmul_kernel k_f32_scalar = {NULL, NULL, rows_f32_scalar, 1};
static const lb_matmul_kernel k_f16_scalar = {NULL, NULL, rows_f16_scalar, 1};
static const lb_matmul_kernel k_bf16_scalar = {NULL, NULL, rows_bf16_scalar, 1};

/* ---- kernel table ---------------------------------------------------------------------- */

/* The registry is process-wide by design (like lb_dtype_set_to_float): kernels are code, the
 * same for every model. g_level holds what each CPU level would run, filled once; g_kernels
 * what lb_matmul runs (the best level the CPU allows, or a plug-in). */
static const lb_matmul_kernel *g_level[LB_CPU_LEVEL_COUNT][LB_DTYPE_COUNT];
static _Atomic(const lb_matmul_kernel *) g_kernels[LB_DTYPE_COUNT];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

void lb_matmul_register_level(lb_dtype t, int level, const lb_matmul_kernel *k) {
    if ((unsigned)t < LB_DTYPE_COUNT && level >= 0 && level < LB_CPU_LEVEL_COUNT) g_level[level][t] = k;
}

static void install_builtins(void) {
    static const lb_dtype builtin[] = {LB_F32, LB_F16, LB_BF16};
    for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++) {
        lb_matmul_register_level(builtin[i], LB_CPU_SCALAR, lb_matmul_kernel_scalar(builtin[i]));
        if (lb_cpu_has_avx2()) lb_matmul_register_level(builtin[i], LB_CPU_AVX2, lb_matmul_avx2_builtin(builtin[i]));
        if (lb_cpu_level_get() >= LB_CPU_AVX512)
            lb_matmul_register_level(builtin[i], LB_CPU_AVX512, lb_matmul_avx512_builtin(builtin[i]));
    }
    lb_quant_register_matmul();
    int top = (int)lb_cpu_level_get();
    for (int t = 0; t < LB_DTYPE_COUNT; t++)
        for (int l = top; l >= 0; l--)
            if (g_level[l][t]) {
                atomic_store(&g_kernels[t], g_level[l][t]);
                break;
            }
}

void lb_matmul_register(lb_dtype t, const lb_matmul_kernel *k) {
    pthread_once(&g_once, install_builtins); /* so the initialisation cannot overwrite it */
    if ((unsigned)t < LB_DTYPE_COUNT) atomic_store(&g_kernels[t], k);
}

const lb_matmul_kernel *lb_matmul_kernel_get(lb_dtype t) {
    pthread_once(&g_once, install_builtins);
    if ((unsigned)t >= LB_DTYPE_COUNT) return NULL;
    return atomic_load_explicit(&g_kernels[t], memory_order_acquire);
}

const lb_matmul_kernel *lb_matmul_kernel_at(lb_dtype t, int level) {
    pthread_once(&g_once, install_builtins);
    if ((unsigned)t >= LB_DTYPE_COUNT || level < 0 || level > (int)lb_cpu_level_get()) return NULL;
    for (int l = level; l >= 0; l--)
        if (g_level[l][t]) return g_level[l][t];
    return NULL;
}

const lb_matmul_kernel *lb_matmul_kernel_scalar(lb_dtype t) {
    switch (t) {
    case LB_F32: return &k_f32_scalar;
    case LB_F16: return &k_f16_scalar;
    case LB_BF16: return &k_bf16_scalar;
    default: return NULL;
    }
}

const lb_matmul_kernel *lb_matmul_kernel_avx2(lb_dtype t) {
    return lb_cpu_has_avx2() ? lb_matmul_avx2_builtin(t) : NULL;
}

/* ---- driver ---------------------------------------------------------------------------- */

typedef struct mm_task {
    const lb_matmul_kernel *kern;
    lb_matmul_args a;
    const float *xf; /* float activations, for the prepare step */
    uint8_t *xq;     /* prepared activations */
    int64_t chunk;   /* rows per work item (multiple of row_align) */
    _Atomic int64_t next; /* next work item to hand out */
} mm_task;

/* Rows are handed out in chunks from a shared counter rather than split evenly up front: a
 * thread that is descheduled or slowed (shared machine, SMT sibling, frequency) then costs
 * only its current chunk, not a whole share that everyone else waits for. */
static void mm_rows_task(void *arg, int ith, int nth) {
    mm_task *t = arg;
    if (nth == 1) {
        t->kern->rows(&t->a, 0, t->a.rows);
        return;
    }
    for (;;) {
        int64_t c = atomic_fetch_add_explicit(&t->next, 1, memory_order_relaxed);
        int64_t r0 = c * t->chunk;
        if (r0 >= t->a.rows) break;
        int64_t r1 = r0 + t->chunk < t->a.rows ? r0 + t->chunk : t->a.rows;
        t->kern->rows(&t->a, r0, r1);
    }
}

/* About 8 chunks per thread: enough to even out, few enough that each is a long stream. */
static int64_t mm_chunk_rows(int64_t rows, int align, int nth) {
    int64_t a = align > 0 ? align : 1;
    int64_t c = (rows + 8 * nth - 1) / (8 * nth);
    c = (c + a - 1) / a * a;
    return c > 0 ? c : a;
}

static void mm_prep_task(void *arg, int ith, int nth) {
    mm_task *t = arg;
    int64_t t0, t1;
    lb_split_range(t->a.n_tok, 1, ith, nth, &t0, &t1);
    for (int64_t i = t0; i < t1; i++)
        t->kern->prepare(t->xf + i * t->a.k, t->a.k, t->xq + (size_t)i * t->a.x_row_bytes);
}

static int choose_threads(lb_pool *pool, int64_t rows, int64_t k, int64_t n_tok, int align) {
    int n = lb_pool_size(pool);
    double macs = (double)rows * (double)k * (double)n_tok;
    double by_work = macs / LB_MATMUL_MIN_MACS_PER_THREAD;
    double by_rows = (double)rows / (align > 0 ? align : 1);
    if (by_work < n) n = by_work < 1 ? 1 : (int)by_work;
    if (by_rows < n) n = by_rows < 1 ? 1 : (int)by_rows;
    return n;
}

/* Checks one product and fills its task (args.x the float input). *nth: its thread count;
 * 0 when there is nothing left to compute (no rows or tokens, or k == 0 and y cleared). */
static lb_status mm_setup(mm_task *t, int *nth, lb_pool *pool, const lb_matmul_kernel *kern, lb_dtype type,
                          const void *w, int64_t rows, int64_t k, const float *x, int64_t n_tok, float *y,
                          int n_threads, lb_error *err) {
    *nth = 0;
    if (!kern || !kern->rows)
        return lb_fail(err, LB_ERR_UNSUPPORTED, "matmul: no kernel for weight type %s", lb_dtype_name(type));
    if (rows < 0 || k < 0 || n_tok < 0)
        return lb_fail(err, LB_ERR_ARG, "matmul: negative size (rows %lld, k %lld, n_tok %lld)",
                       (long long)rows, (long long)k, (long long)n_tok);
    if (rows == 0 || n_tok == 0) return LB_OK;
    if (k == 0) { /* empty dot products */
        if (!y) return lb_fail(err, LB_ERR_ARG, "matmul: NULL output");
        memset(y, 0, (size_t)rows * (size_t)n_tok * sizeof *y);
        return LB_OK;
    }
    size_t row_bytes = lb_dtype_row_size(type, k);
    if (!row_bytes || !w || !x || !y)
        return lb_fail(err, LB_ERR_ARG, "matmul: %s row of %lld elements is not whole blocks, or a NULL buffer",
                       lb_dtype_name(type), (long long)k);
    if (type == LB_Q4_0_R8 && rows % 8) /* whole 8-row groups only (quant/repack.h) */
        return lb_fail(err, LB_ERR_ARG, "matmul: %lld rows of %s are not whole groups of 8", (long long)rows,
                       lb_dtype_name(type));
    *nth = n_threads > 0 ? n_threads : choose_threads(pool, rows, k, n_tok, kern->row_align);
    t->kern = kern;
    t->a = (lb_matmul_args){w, row_bytes, k, rows, x, (size_t)k * 4, n_tok, y};
    t->xf = x;
    t->xq = NULL;
    t->chunk = mm_chunk_rows(rows, kern->row_align, *nth);
    atomic_init(&t->next, 0);
    return LB_OK;
}

/* Converts the task's x with its kernel's prepare into the pool's scratch (or *owned without a
 * pool) and points args.x there. */
static lb_status mm_prepare(mm_task *t, int nth, lb_pool *pool, void **owned, lb_error *err) {
    size_t per = (t->kern->prep_row_bytes(t->a.k) + 63) / 64 * 64, total;
    if (!lb_mul_ok(per, (size_t)t->a.n_tok, &total))
        return lb_fail(err, LB_ERR_NOMEM, "matmul: prepared activations overflow");
    t->xq = pool ? lb_pool_scratch(pool, total) : (*owned = aligned_alloc(64, total ? total : 64));
    if (!t->xq) return lb_fail(err, LB_ERR_NOMEM, "matmul: %zu bytes for prepared activations", total);
    t->a.x = t->xq;
    t->a.x_row_bytes = per;
    /* One token: the conversion is tiny, waking threads for it is not worth it. */
    lb_pool_run_n(pool, mm_prep_task, t, t->a.n_tok > 1 ? nth : 1);
    return LB_OK;
}

lb_status lb_matmul_with(lb_pool *pool, const lb_matmul_kernel *kern, lb_dtype type, const void *w,
                         int64_t rows, int64_t k, const float *x, int64_t n_tok, float *y,
                         int n_threads, lb_error *err) {
    mm_task t;
    int nth;
    lb_status st = mm_setup(&t, &nth, pool, kern, type, w, rows, k, x, n_tok, y, n_threads, err);
    if (st || !nth) return st;
    void *owned = NULL;
    if (kern->prepare && (st = mm_prepare(&t, nth, pool, &owned, err))) return st;
    lb_pool_run_n(pool, mm_rows_task, &t, nth);
    free(owned);
    return LB_OK;
}

/* Two kernels whose prepared activations are the same bytes */
static int same_prep(const lb_matmul_kernel *a, const lb_matmul_kernel *b) {
    return a->prepare == b->prepare && a->prep_row_bytes == b->prep_row_bytes;
}

lb_status lb_matmul_shared(lb_pool *pool, const lb_matmul_job *jobs, int n_jobs, int64_t k, const float *x,
                           int64_t n_tok, int *failed, lb_error *err) {
    mm_task t[LB_MATMUL_SHARED_MAX];
    int nth[LB_MATMUL_SHARED_MAX], done[LB_MATMUL_SHARED_MAX] = {0};
    if (failed) *failed = -1;
    if (n_jobs < 0 || n_jobs > LB_MATMUL_SHARED_MAX)
        return lb_fail(err, LB_ERR_ARG, "matmul: %d products share one input (at most %d)", n_jobs,
                       LB_MATMUL_SHARED_MAX);
    for (int i = 0; i < n_jobs; i++) {
        const lb_matmul_job *j = &jobs[i];
        lb_status st = mm_setup(&t[i], &nth[i], pool, j->kern, j->type, j->w, j->rows, k, x, n_tok, j->y, 0, err);
        if (st) {
            if (failed) *failed = i;
            return st;
        }
    }
    /* each format once, in the order the products come; the scratch is reused by the next one */
    for (int i = 0; i < n_jobs; i++) {
        if (!nth[i] || done[i]) continue;
        void *owned = NULL;
        lb_status st = t[i].kern->prepare ? mm_prepare(&t[i], nth[i], pool, &owned, err) : LB_OK;
        if (st) {
            if (failed) *failed = i;
            return st;
        }
        for (int j = i; j < n_jobs; j++) {
            if (!nth[j] || done[j] || (j > i && (!t[i].kern->prepare || !same_prep(t[i].kern, t[j].kern)))) continue;
            t[j].a.x = t[i].a.x;
            t[j].a.x_row_bytes = t[i].a.x_row_bytes;
            lb_pool_run_n(pool, mm_rows_task, &t[j], nth[j]);
            done[j] = 1;
        }
        free(owned);
    }
    return LB_OK;
}

lb_status lb_matmul_raw(lb_pool *pool, lb_dtype type, const void *w, int64_t rows, int64_t k,
                        const float *x, int64_t n_tok, float *y, lb_error *err) {
    return lb_matmul_with(pool, lb_matmul_kernel_get(type), type, w, rows, k, x, n_tok, y, 0, err);
}

/* A weight tensor lb_matmul can read: dimensions, whole rows of its type, the data present */
static lb_status tensor_check(const lb_tensor *w, lb_error *err) {
    if (!w || w->n_dims < 1)
        return lb_fail(err, LB_ERR_ARG, "matmul: weight %s has no dimensions", w && w->name ? w->name : "(null)");
    int64_t k = w->ne[0], rows = lb_tensor_nrows(w);
    size_t row_bytes = lb_dtype_row_size(w->type, k), need;
    if (!row_bytes || !lb_mul_ok(row_bytes, (size_t)rows, &need) || need > w->nbytes || !w->data)
        return lb_fail(err, LB_ERR_ARG, "matmul: weight %s (%s, %lld x %lld) has %zu data bytes",
                       w->name ? w->name : "(unnamed)", lb_dtype_name(w->type), (long long)rows,
                       (long long)k, w->data ? w->nbytes : 0);
    return LB_OK;
}

/* names the tensor in the message of a failed product */
static lb_status named(const lb_tensor *w, lb_status s, lb_error *err) {
    if (s && err && w->name) {
        char msg[sizeof err->msg];
        memcpy(msg, err->msg, sizeof msg);
        lb_fail(err, s, "%s: %s", w->name, msg);
    }
    return s;
}

lb_status lb_matmul(lb_pool *pool, const lb_tensor *w, const float *x, int64_t n_tok, float *y,
                    lb_error *err) {
    lb_status s = tensor_check(w, err);
    if (s) return s;
    return named(w, lb_matmul_raw(pool, w->type, w->data, lb_tensor_nrows(w), w->ne[0], x, n_tok, y, err), err);
}

lb_status lb_matmul_tensors(lb_pool *pool, int n, const lb_tensor *const *ws, const lb_matmul_kernel *const *kern,
                            const float *x, int64_t n_tok, float *const *ys, lb_error *err) {
    lb_matmul_job jobs[LB_MATMUL_SHARED_MAX];
    if (n < 1 || n > LB_MATMUL_SHARED_MAX)
        return lb_fail(err, LB_ERR_ARG, "matmul: %d products share one input (1 to %d)", n, LB_MATMUL_SHARED_MAX);
    for (int i = 0; i < n; i++) {
        const lb_tensor *w = ws[i];
        lb_status s = tensor_check(w, err);
        if (s) return s;
        if (w->ne[0] != ws[0]->ne[0])
            return lb_fail(err, LB_ERR_ARG, "matmul: %s reads %lld values and %s %lld: they cannot share an input",
                           w->name ? w->name : "(unnamed)", (long long)w->ne[0],
                           ws[0]->name ? ws[0]->name : "(unnamed)", (long long)ws[0]->ne[0]);
        jobs[i] = (lb_matmul_job){kern && kern[i] ? kern[i] : lb_matmul_kernel_get(w->type), w->type, w->data,
                                  lb_tensor_nrows(w), ys[i]};
    }
    int failed = -1;
    lb_status s = lb_matmul_shared(pool, jobs, n, ws[0]->ne[0], x, n_tok, &failed, err);
    return failed >= 0 ? named(ws[failed], s, err) : s;
}
