/* Tests for the CPU compute layer: thread pool, matmul (scalar vs double-precision truth,
 * AVX2 vs scalar over odd shapes, unaligned weights, 1-3 threads, plug-in kernels) and the
 * vector ops (AVX2 vs scalar, exp-based ops vs double-precision truth). */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/tensor.h"
#include "core/threads.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/vec.h"
#include "quant/blocks.h"
#include "quant/quant.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float frand(float lo, float hi) { /* xorshift64*, uniform in [lo, hi) */
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    uint64_t r = g_rng * 0x2545f4914f6cdd1dull;
    return lo + (hi - lo) * (float)((r >> 40) / 16777216.0);
}

/* ---- thread pool ----------------------------------------------------------------------- */

typedef struct pool_probe {
    _Atomic long sum;
    _Atomic int seen_bad_nth;
    long per_thread[8];
    int want_nth;
} pool_probe;

static void probe_fn(void *arg, int ith, int nth) {
    pool_probe *p = arg;
    if (nth != p->want_nth || ith < 0 || ith >= nth) atomic_store(&p->seen_bad_nth, 1);
    else p->per_thread[ith]++; /* each slot written by one thread only */
    atomic_fetch_add(&p->sum, ith + 1);
}

static void check_pool_runs(lb_pool *pool, int nth, int runs, const char *what) {
    pool_probe p;
    memset(&p, 0, sizeof p);
    p.want_nth = nth;
    for (int i = 0; i < runs; i++) lb_pool_run_n(pool, probe_fn, &p, nth);
    long want = (long)runs * nth * (nth + 1) / 2;
    CHECK(atomic_load(&p.sum) == want, "%s: sum %ld, want %ld", what, atomic_load(&p.sum), want);
    CHECK(!atomic_load(&p.seen_bad_nth), "%s: fn saw a wrong (ith, nth)", what);
    for (int t = 0; t < nth; t++) CHECK(p.per_thread[t] == runs, "%s: thread %d ran %ld of %d", what, t, p.per_thread[t], runs);
}

static void test_pool(void) {
    for (int n = 1; n <= 3; n++) {
        lb_pool *pool = lb_pool_new(n);
        CHECK(pool && lb_pool_size(pool) == n, "pool of %d", n);
        if (!pool) continue;
        check_pool_runs(pool, n, 20000, "back-to-back runs");
        if (n > 1) check_pool_runs(pool, n - 1, 5000, "runs on fewer threads");
        check_pool_runs(pool, n, 1000, "runs after a partial run");
        /* The sleep path: no spinning, every run wakes the workers through the futex. */
        lb_pool_set_spin_us(pool, 0);
        check_pool_runs(pool, n, 2000, "runs with futex wake-ups");
        lb_pool_set_spin_us(pool, 50);
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL); /* workers fall asleep */
        check_pool_runs(pool, n, 10, "runs after idling");
        void *s = lb_pool_scratch(pool, 1000), *s2 = lb_pool_scratch(pool, 100);
        CHECK(s && ((uintptr_t)s & 63) == 0 && s2 == s, "scratch is 64-byte aligned and reused");
        lb_pool_free(pool);
    }
    lb_pool *all = lb_pool_new(0);
    CHECK(all && lb_pool_size(all) >= 1, "pool of all CPUs");
    if (all) check_pool_runs(all, lb_pool_size(all), 1000, "pool of all CPUs");
    lb_pool_free(all);
    check_pool_runs(NULL, 1, 10, "NULL pool runs inline");
    CHECK(lb_pool_size(NULL) == 1, "NULL pool has size 1");
}

static void test_split(void) {
    const int64_t ns[] = {0, 1, 5, 16, 17, 100, 1000};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (int64_t align = 1; align <= 16; align *= 4)
            for (int nth = 1; nth <= 5; nth++) {
                int64_t next = 0;
                int ok = 1;
                for (int i = 0; i < nth; i++) {
                    int64_t i0, i1;
                    lb_split_range(ns[a], align, i, nth, &i0, &i1);
                    if (i0 != next || i1 < i0 || (i0 % align && i0 != ns[a])) ok = 0;
                    next = i1;
                }
                CHECK(ok && next == ns[a], "split of %lld by %d, align %lld covers the range once",
                      (long long)ns[a], nth, (long long)align);
            }
}

/* ---- matmul ---------------------------------------------------------------------------- */

static const lb_dtype g_types[] = {LB_F32, LB_F16, LB_BF16};

/* Random weights stored as type at buf + offset; the decoded floats go to wf. */
static void make_weights(lb_dtype type, int64_t n, uint8_t *dst, float *wf) {
    for (int64_t i = 0; i < n; i++) {
        float v = frand(-1, 1);
        if (type == LB_F32) {
            memcpy(dst + 4 * i, &v, 4);
            wf[i] = v;
        } else {
            uint16_t h = type == LB_F16 ? lb_f32_to_fp16(v) : lb_f32_to_bf16(v);
            memcpy(dst + 2 * i, &h, 2);
            wf[i] = type == LB_F16 ? lb_fp16_to_f32(h) : lb_bf16_to_f32(h);
        }
    }
}

/* Float summation in any order stays within a few ulps of sum |w x| for these sizes; one
 * missing or doubled term (about sum/k) is far outside it. */
static double sum_tol(double absum) { return 32 * 1.1920929e-7 * absum + 1e-30; }

typedef struct mm_case {
    lb_dtype type;
    int64_t k, rows, n_tok;
    int offset;
} mm_case;

static int g_mm_fail_reported;

static void check_matmul_case(const mm_case *c, lb_pool **pools) {
    size_t esz = c->type == LB_F32 ? 4 : 2;
    size_t nw = (size_t)(c->rows * c->k);
    uint8_t *wbuf = malloc(nw * esz + 8);
    float *wf = malloc(nw * sizeof(float) + 4), *x = malloc((size_t)(c->n_tok * c->k) * 4 + 4);
    size_t ny = (size_t)(c->n_tok * c->rows);
    float *ys = malloc(ny * 4), *yv = malloc(ny * 4);
    double *truth = malloc(ny * 8), *absum = malloc(ny * 8);
    uint8_t *w = wbuf + c->offset;
    make_weights(c->type, (int64_t)nw, w, wf);
    for (int64_t i = 0; i < c->n_tok * c->k; i++) x[i] = frand(-1, 1);
    for (int64_t t = 0; t < c->n_tok; t++)
        for (int64_t r = 0; r < c->rows; r++) {
            double s = 0, a = 0;
            for (int64_t i = 0; i < c->k; i++) {
                double p = (double)wf[r * c->k + i] * x[t * c->k + i];
                s += p;
                a += fabs(p);
            }
            truth[t * c->rows + r] = s;
            absum[t * c->rows + r] = a;
        }
    lb_error err;
    const char *tn = lb_dtype_name(c->type);
    lb_status st = lb_matmul_with(NULL, lb_matmul_kernel_scalar(c->type), c->type, w, c->rows, c->k, x,
                                  c->n_tok, ys, 1, &err);
    CHECK(st == LB_OK, "scalar matmul %s runs", tn);
    int bad = 0;
    for (size_t i = 0; i < ny; i++) bad += !(fabs(ys[i] - truth[i]) <= sum_tol(absum[i]));
    CHECK(!bad, "scalar %s k=%lld rows=%lld n_tok=%lld off=%d: %d outputs off the double-precision truth",
          tn, (long long)c->k, (long long)c->rows, (long long)c->n_tok, c->offset, bad);
    /* every SIMD level this process may run (LOWBIT_CPU lowers the ceiling), each against scalar */
    for (int lvl = LB_CPU_AVX2; lvl < LB_CPU_LEVEL_COUNT; lvl++) {
    const lb_matmul_kernel *kv = lb_matmul_kernel_at(c->type, lvl);
    if (kv == lb_matmul_kernel_at(c->type, lvl - 1)) continue; /* nothing new at this level */
    for (int p = 0; kv && p < 3; p++) {
        memset(yv, 0xff, ny * 4); /* NaN: rows never written show up */
        st = lb_matmul_with(pools[p], kv, c->type, w, c->rows, c->k, x, c->n_tok, yv, lb_pool_size(pools[p]), &err);
        bad = 0;
        double worst = 0;
        for (size_t i = 0; i < ny; i++) {
            double e = fabs((double)yv[i] - ys[i]);
            if (!(e <= sum_tol(absum[i]))) bad++;
            if (!(e / (absum[i] + 1e-30) <= worst)) worst = e / (absum[i] + 1e-30);
        }
        CHECK(st == LB_OK && !bad, "%s %s k=%lld rows=%lld n_tok=%lld off=%d threads=%d: %d outputs differ "
              "from scalar (worst %.3g of sum|wx|)", lb_cpu_level_name((lb_cpu_level)lvl), tn, (long long)c->k,
              (long long)c->rows, (long long)c->n_tok, c->offset, lb_pool_size(pools[p]), bad, worst);
        if (bad && ++g_mm_fail_reported > 20) exit(test_summary());
    }
    }
    free(wbuf); free(wf); free(x); free(ys); free(yv); free(truth); free(absum);
}

static void test_matmul_shapes(lb_pool **pools) {
    const int64_t ks[] = {1, 7, 31, 64, 65, 172, 1000, 4097};
    const int64_t rows[] = {1, 3, 17, 172};
    const int64_t toks[] = {1, 2, 5, 9, 33};
    int idx = 0;
    for (size_t d = 0; d < 3; d++)
        for (size_t a = 0; a < 8; a++)
            for (size_t b = 0; b < 4; b++)
                for (size_t c = 0; c < 5; c++, idx++) {
                    /* Every (type, k) meets all four byte offsets across its shapes. */
                    mm_case mc = {g_types[d], ks[a], rows[b], toks[c], idx % 4};
                    check_matmul_case(&mc, pools);
                }
    /* Past one k chunk and one token block of the prompt kernel, on a modest row count. */
    for (size_t d = 0; d < 3; d++) {
        mm_case mc = {g_types[d], 2056, 20, 70, 3};
        check_matmul_case(&mc, pools);
    }
}

static void test_matmul_api(lb_pool *pool) {
    float w[12], x[8], y[6];
    for (int i = 0; i < 12; i++) w[i] = (float)(i + 1);
    for (int i = 0; i < 8; i++) x[i] = (float)(i % 3) - 1;
    lb_tensor t = {"blk.0.ffn_up.weight", LB_F32, 2, {4, 3, 1, 1}, w, sizeof w};
    lb_error err;
    CHECK(lb_matmul(pool, &t, x, 2, y, &err) == LB_OK, "matmul on a tensor");
    int ok = 1;
    for (int tk = 0; tk < 2; tk++)
        for (int r = 0; r < 3; r++) {
            float s = 0;
            for (int i = 0; i < 4; i++) s += w[r * 4 + i] * x[tk * 4 + i];
            if (y[tk * 3 + r] != s) ok = 0; /* small integers: exact in any order */
        }
    CHECK(ok, "matmul on a tensor gives the exact small-integer products");
    t.nbytes = sizeof w - 4;
    CHECK(lb_matmul(pool, &t, x, 2, y, &err) == LB_ERR_ARG && strstr(err.msg, "blk.0.ffn_up.weight"),
          "short tensor data is refused naming the tensor: %s", err.msg);
    t.nbytes = sizeof w;
    t.type = LB_Q4_0;
    t.ne[0] = 32;
    CHECK(lb_matmul(pool, &t, x, 1, y, &err) != LB_OK, "unregistered or short Q4_0 is refused: %s", err.msg);
    CHECK(lb_matmul_kernel_get(LB_I16) == NULL, "no kernel for I16"); CHECK(lb_matmul_kernel_get(LB_Q4_0) != NULL, "block formats are registered");
    float yz[3] = {1, 1, 1};
    CHECK(lb_matmul_raw(pool, LB_F32, w, 3, 0, x, 1, yz, &err) == LB_OK && yz[0] == 0 && yz[2] == 0,
          "k = 0 gives zeros");
}

/* A plug-in kernel through the public registration path: I8 weights, activations prepared
 * as doubles (a stand-in for a quantized format's int8 blocks). */
static size_t i8_prep_bytes(int64_t k) { return (size_t)k * sizeof(double) + 8; }
static void i8_prepare(const float *x, int64_t k, void *dst) {
    double *d = dst;
    for (int64_t i = 0; i < k; i++) d[i] = 2.0 * x[i];
    memcpy(d + k, "prepared", 8);
}
static _Atomic int g_i8_misaligned;
static void i8_rows(const lb_matmul_args *a, int64_t r0, int64_t r1) {
    for (int64_t t = 0; t < a->n_tok; t++) {
        const double *xq = (const double *)(const void *)((const uint8_t *)a->x + (size_t)t * a->x_row_bytes);
        if (((uintptr_t)xq & 63) || memcmp(xq + a->k, "prepared", 8)) atomic_store(&g_i8_misaligned, 1);
        for (int64_t r = r0; r < r1; r++) {
            double s = 0;
            for (int64_t i = 0; i < a->k; i++) s += (int8_t)a->w[(size_t)r * a->w_row_bytes + (size_t)i] * xq[i];
            a->y[t * a->rows + r] = (float)(s * 0.5);
        }
    }
}

static void test_matmul_plugin(lb_pool **pools) {
    static const lb_matmul_kernel k = {i8_prep_bytes, i8_prepare, i8_rows, 1};
    lb_matmul_register(LB_I8, &k);
    CHECK(lb_matmul_kernel_get(LB_I8) == &k, "registered kernel is returned");
    enum { K = 37, R = 29, T = 6 };
    int8_t w[R * K];
    float x[T * K], y[T * R];
    for (int i = 0; i < R * K; i++) w[i] = (int8_t)(frand(-100, 100));
    for (int i = 0; i < T * K; i++) x[i] = (float)(int)frand(-50, 50);
    lb_tensor t = {"i8", LB_I8, 2, {K, R, 1, 1}, w, sizeof w};
    for (int p = -1; p < 3; p++) {
        lb_pool *pool = p < 0 ? NULL : pools[p];
        for (int nt = 1; nt <= T; nt += T - 1) {
            memset(y, 0, sizeof y);
            lb_error err;
            lb_status st = lb_matmul(pool, &t, x, nt, y, &err);
            int ok = 1;
            for (int tk = 0; tk < nt; tk++)
                for (int r = 0; r < R; r++) {
                    long s = 0;
                    for (int i = 0; i < K; i++) s += (long)w[r * K + i] * (long)x[tk * K + i];
                    if (y[tk * R + r] != (float)s) ok = 0; /* integers: exact */
                }
            CHECK(st == LB_OK && ok, "plug-in kernel with prepared activations, %d threads, %d tokens",
                  lb_pool_size(pool), nt);
        }
    }
    CHECK(!atomic_load(&g_i8_misaligned), "prepared rows are 64-byte aligned and prepared once each");
    lb_matmul_register(LB_I8, NULL);
    CHECK(lb_matmul_kernel_get(LB_I8) == NULL, "unregistering works");
}

/* ---- vector ops ------------------------------------------------------------------------ */

static const int64_t g_ns[] = {0, 1, 7, 31, 64, 65, 172, 1000, 4097};
#define NN (sizeof g_ns / sizeof g_ns[0])

static int close_rel(double a, double b, double rel, double abs_tol) {
    return fabs(a - b) <= rel * fabs(b) + abs_tol;
}

static void test_vec_ops(const lb_vec_ops *s, const lb_vec_ops *v) {
    enum { M = 4097 + 16 };
    float *a = malloc(M * 4), *b = malloc(M * 4), *y1 = malloc(M * 4), *y2 = malloc(M * 4), *w = malloc(M * 4);
    uint16_t *h = malloc(M * 2), *h2 = malloc(M * 2);
    for (size_t ni = 0; ni < NN; ni++) {
        int64_t n = g_ns[ni];
        int off = (int)(ni % 3) + 1; /* unaligned float and half pointers */
        float *pa = a + off, *pb = b + off, *p1 = y1 + off, *p2 = y2 + off, *pw = w + off;
        uint16_t *ph = h + off;
        double absum = 0;
        for (int64_t i = 0; i < n; i++) {
            pa[i] = frand(-2, 2);
            pb[i] = frand(-2, 2);
            pw[i] = frand(0.5f, 1.5f);
            ph[i] = lb_f32_to_fp16(frand(-2, 2));
            absum += fabs((double)pa[i] * pb[i]);
        }
        double absum_h = 0;
        for (int64_t i = 0; i < n; i++) absum_h += fabs((double)lb_fp16_to_f32(ph[i]) * pb[i]);
        CHECK(fabs(v->dot(pa, pb, n) - s->dot(pa, pb, n)) <= sum_tol(absum), "dot n=%lld", (long long)n);
        CHECK(fabs(v->dot_f16(ph, pb, n) - s->dot_f16(ph, pb, n)) <= sum_tol(absum_h), "dot_f16 n=%lld", (long long)n);

        int bad = 0;
        memcpy(p1, pb, (size_t)n * 4);
        memcpy(p2, pb, (size_t)n * 4);
        s->axpy(p1, 0.7f, pa, n);
        v->axpy(p2, 0.7f, pa, n);
        for (int64_t i = 0; i < n; i++) bad += !close_rel(p2[i], p1[i], 0, 4e-7 * (fabs(pb[i]) + fabs(pa[i])));
        CHECK(!bad && p2[n] == y2[off + n], "axpy n=%lld (and nothing past n written)", (long long)n);

        memcpy(p1, pb, (size_t)n * 4);
        memcpy(p2, pb, (size_t)n * 4);
        s->axpy_f16(p1, -1.3f, ph, n);
        v->axpy_f16(p2, -1.3f, ph, n);
        bad = 0;
        for (int64_t i = 0; i < n; i++) bad += !close_rel(p2[i], p1[i], 0, 8e-7 * (fabs(pb[i]) + 2));
        CHECK(!bad, "axpy_f16 n=%lld", (long long)n);

        if (n > 0) {
            s->rmsnorm(p1, pa, pw, n, 1e-5f);
            v->rmsnorm(p2, pa, pw, n, 1e-5f);
            bad = 0;
            for (int64_t i = 0; i < n; i++) bad += !close_rel(p2[i], p1[i], 1e-6, 1e-30);
            CHECK(!bad, "rmsnorm n=%lld", (long long)n);
            memcpy(p2, pa, (size_t)n * 4);
            v->rmsnorm(p2, p2, NULL, n, 1e-6f);
            double ss = 0;
            for (int64_t i = 0; i < n; i++) ss += (double)pa[i] * pa[i];
            double sc = 1 / sqrt(ss / n + 1e-6);
            bad = 0;
            for (int64_t i = 0; i < n; i++) bad += !close_rel(p2[i], pa[i] * sc, 1e-6, 1e-30);
            CHECK(!bad, "rmsnorm in place without weight vs double truth n=%lld", (long long)n);

            for (int range = 0; range < 2; range++) {
                float lo = range ? -120 : -8, hi = range ? 0 : 8;
                for (int64_t i = 0; i < n; i++) p1[i] = frand(lo, hi);
                memcpy(p2, p1, (size_t)n * 4);
                float mx = -INFINITY;
                double sum = 0;
                /* x - max is rounded to float in any float32 softmax (PyTorch's too): the truth
                 * takes that rounding as given and computes the rest in double. */
                for (int64_t i = 0; i < n; i++) mx = p1[i] > mx ? p1[i] : mx;
                for (int64_t i = 0; i < n; i++) sum += exp((double)(float)(p1[i] - mx));
                double *truth = malloc((size_t)n * 8);
                for (int64_t i = 0; i < n; i++) truth[i] = exp((double)(float)(p1[i] - mx)) / sum;
                v->softmax(p2, n);
                s->softmax(p1, n);
                int bad_s = 0, bad_v = 0;
                for (int64_t i = 0; i < n; i++) {
                    bad_s += !close_rel(p1[i], truth[i], 1e-6, 1e-37);
                    bad_v += !close_rel(p2[i], truth[i], 1e-6, 1e-37);
                }
                CHECK(!bad_s && !bad_v && p2[n] == y2[off + n], "softmax n=%lld range %d vs double truth: "
                      "%d scalar, %d avx2 off", (long long)n, range, bad_s, bad_v);
                free(truth);
            }
        }

        for (int64_t i = 0; i < n; i++) p1[i] = frand(-85, 85);
        memcpy(p2, p1, (size_t)n * 4);
        bad = 0;
        v->silu_mul(p2, pb, n);
        for (int64_t i = 0; i < n; i++) {
            double g = p1[i], t = g / (1 + exp(-g)) * pb[i];
            bad += !close_rel(p2[i], t, 1e-6, 1e-37);
        }
        s->silu_mul(p1, pb, n);
        CHECK(!bad, "silu_mul avx2 vs double truth over [-85, 85], n=%lld", (long long)n);
        bad = 0;
        for (int64_t i = 0; i < n; i++) bad += !close_rel(p2[i], p1[i], 2e-6, 1e-37);
        CHECK(!bad, "silu_mul avx2 vs scalar n=%lld", (long long)n);

        memcpy(p1, pa, (size_t)n * 4);
        memcpy(p2, pa, (size_t)n * 4);
        s->relu2_mul(p1, pb, n);
        v->relu2_mul(p2, pb, n);
        CHECK(!memcmp(p1, p2, (size_t)n * 4), "relu2_mul exact n=%lld", (long long)n);
        memcpy(p1, pa, (size_t)n * 4);
        memcpy(p2, pa, (size_t)n * 4);
        s->add(p1, pb, n);
        v->add(p2, pb, n);
        CHECK(!memcmp(p1, p2, (size_t)n * 4), "add exact n=%lld", (long long)n);
        s->scale(p1, 0.37f, n);
        v->scale(p2, 0.37f, n);
        CHECK(!memcmp(p1, p2, (size_t)n * 4), "scale exact n=%lld", (long long)n);
        uint16_t *q = h2 + off;
        s->to_f16(ph, pa, n);
        v->to_f16(q, pa, n);
        CHECK(!memcmp(ph, q, (size_t)n * 2), "to_f16 exact n=%lld", (long long)n);
    }
    /* Rounding of halfway cases and out-of-range values in the f16 conversion. */
    float special[] = {65504.0f, 65520.0f, 1e9f, -1e9f, 5.96e-8f, 2.98e-8f, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048,
                       -0.0f, 6.1e-5f, 1e-10f, 3.0e-8f};
    uint16_t o1[12], o2[12];
    s->to_f16(o1, special, 12);
    v->to_f16(o2, special, 12);
    CHECK(!memcmp(o1, o2, sizeof o1), "to_f16 special values agree");
    free(a); free(b); free(y1); free(y2); free(w); free(h); free(h2);
}

/* A NaN in the input stays NaN at every level (issue 11): the AVX2 exp clamped NaN to -87.33,
 * so a softmax over NaN attention scores came out finite where the scalar one was NaN. The
 * truth is IEEE arithmetic: expf(NaN), NaN / x and NaN * NaN are NaN. */
static void test_vec_nan(const lb_vec_ops *ops, const char *name) {
    static const int64_t ns[] = {1, 7, 8, 9, 33};
    float x[40], up[40];
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        int64_t n = ns[k], at = n / 2;
        int bad = 0;
        for (int64_t i = 0; i < n; i++) x[i] = frand(-4, 4);
        x[at] = NAN;
        ops->softmax(x, n);
        for (int64_t i = 0; i < n; i++) bad += !isnan(x[i]);
        CHECK(!bad, "%s softmax n=%lld with a NaN at %lld: %d of its outputs are not NaN", name, (long long)n,
              (long long)at, bad);
        for (int fn = 0; fn < 2; fn++) {
            for (int64_t i = 0; i < n; i++) x[i] = frand(-4, 4), up[i] = frand(0.5f, 1.5f);
            x[at] = NAN;
            if (fn) ops->relu2_mul(x, up, n);
            else ops->silu_mul(x, up, n);
            bad = 0;
            for (int64_t i = 0; i < n; i++) bad += isnan(x[i]) != (i == at);
            CHECK(!bad, "%s %s n=%lld: NaN at %lld only", name, fn ? "relu2_mul" : "silu_mul", (long long)n, (long long)at);
        }
    }
}

/* Attention over a cache: both tables against a double-precision definition, F32, F16 and
 * Q8_0 caches (the truth from the stored halves / dequantized blocks), head sizes 8
 * (stories260K) to 72 (Q8_0: the multiples of 32), strides wider than the head. */
static void test_attn(const lb_vec_ops *ops, const char *name) {
    int hds[] = {8, 16, 24, 32, 64, 72, 128};
    for (size_t hi = 0; hi < sizeof hds / sizeof *hds; hi++) {
        int hd = hds[hi], n_pos = 37, stride = hd * 3 + 5;
        int nbq = hd / LB_QK, qstride = (3 * nbq + 1) * (int)sizeof(lb_block_q8_0); /* bytes, room for either block */
        float q[128], a[37], s[37], out[128];
        float *k = malloc((size_t)n_pos * stride * sizeof *k), *v = malloc((size_t)n_pos * stride * sizeof *v);
        uint16_t *kh = malloc((size_t)n_pos * stride * 2), *vh = malloc((size_t)n_pos * stride * 2);
        char *kq = malloc((size_t)n_pos * qstride + 1), *vq = malloc((size_t)n_pos * qstride + 1);
        float *kd = malloc((size_t)n_pos * hd * sizeof *kd), *vd = malloc((size_t)n_pos * hd * sizeof *vd);
        for (int i = 0; i < n_pos * stride; i++) {
            k[i] = frand(-1, 1), v[i] = frand(-1, 1);
            kh[i] = lb_f32_to_fp16(k[i]), vh[i] = lb_f32_to_fp16(v[i]);
        }
        for (int i = 0; i < hd; i++) q[i] = frand(-1, 1);
        for (int p = 0; p < n_pos; p++) a[p] = frand(0, 1);
        for (int kt = 0; kt < 4; kt++) {
            int quant = kt == LB_ATTN_Q8_0 || kt == LB_ATTN_Q4_0;
            if (quant && hd % LB_QK) continue;
            for (int p = 0; quant && p < n_pos; p++) { /* quantized rows: the first hd values of each F32 row */
                char *kr = kq + (size_t)p * qstride, *vr = vq + (size_t)p * qstride;
                if (kt == LB_ATTN_Q8_0) {
                    lb_quantize_row_q8_0_scalar(k + p * stride, kr, hd), lb_quantize_row_q8_0_scalar(v + p * stride, vr, hd);
                    lb_dequantize_row_q8_0(kr, kd + p * hd, hd), lb_dequantize_row_q8_0(vr, vd + p * hd, hd);
                } else {
                    lb_kv_quantize_q4_0(k + p * stride, kr, hd), lb_kv_quantize_q4_0(v + p * stride, vr, hd);
                    lb_dequantize_row_q4_0(kr, kd + p * hd, hd), lb_dequantize_row_q4_0(vr, vd + p * hd, hd);
                }
            }
            const void *kc = quant ? (const void *)kq : kt == LB_ATTN_F16 ? (const void *)kh : k;
            const void *vc = quant ? (const void *)vq : kt == LB_ATTN_F16 ? (const void *)vh : v;
            size_t bstride = quant ? (size_t)qstride : (size_t)stride * (kt == LB_ATTN_F16 ? 2 : 4);
#define KV_AT(f, h, dq, p, i) \
    (quant ? (double)(dq)[(p) * hd + (i)] : kt == LB_ATTN_F16 ? lb_fp16_to_f32((h)[(p) * stride + (i)]) : (f)[(p) * stride + (i)])
            ops->attn_scores(s, q, kc, kt, bstride, n_pos, hd, 0.5f);
            ops->attn_values(out, a, vc, kt, bstride, n_pos, hd);
            double worst = 0;
            for (int p = 0; p < n_pos; p++) {
                double d = 0;
                for (int i = 0; i < hd; i++) d += (double)q[i] * KV_AT(k, kh, kd, p, i);
                worst = fmax(worst, fabs(s[p] - 0.5 * d));
            }
            for (int i = 0; i < hd; i++) {
                double d = 0;
                for (int p = 0; p < n_pos; p++) d += (double)a[p] * KV_AT(v, vh, vd, p, i);
                worst = fmax(worst, fabs(out[i] - d));
            }
#undef KV_AT
            CHECK(worst < 1e-4, "%s attention hd %d kv type %d: error %g", name, hd, kt, worst);
        }
        free(k), free(v), free(kh), free(vh), free(kq), free(vq), free(kd), free(vd);
    }
}

/* The Q4_0 KV quantizer: a known block (the largest magnitude becomes code 0 = -8 d, exactly),
 * every element within half a step of its value, zeros to zero. */
static void test_kv_q4_0(void) {
    float x[64], y[64];
    for (int i = 0; i < 64; i++) x[i] = frand(-2, 2);
    x[5] = -3.0f; /* block 0's largest magnitude, negative: d = 3/8 */
    x[40] = 2.5f; /* block 1's, positive: d = -2.5/8 */
    lb_block_q4_0 b[2];
    lb_kv_quantize_q4_0(x, b, 64);
    lb_dequantize_row_q4_0(b, y, 64);
    CHECK(lb_fp16_to_f32(b[0].d) == lb_fp16_to_f32(lb_f32_to_fp16(0.375f)) && (b[0].qs[5] & 15) == 0,
          "q4_0 KV: block 0 scale %g code %d", lb_fp16_to_f32(b[0].d), b[0].qs[5] & 15);
    CHECK((b[1].qs[8] & 15) == 0 && y[40] == 2.5f, "q4_0 KV: block 1 max code %d value %g", b[1].qs[8] & 15, y[40]);
    double worst = 0;
    for (int i = 0; i < 64; i++) worst = fmax(worst, fabs(x[i] - y[i]) / fabs(lb_fp16_to_f32(b[i / 32].d)));
    CHECK(worst <= 0.5 + 1e-3, "q4_0 KV: worst error %g steps", worst);
    float z[32] = {0};
    lb_kv_quantize_q4_0(z, b, 32);
    lb_dequantize_row_q4_0(b, y, 32);
    int zeros = 1;
    for (int i = 0; i < 32; i++) zeros &= y[i] == 0;
    CHECK(zeros, "q4_0 KV: a zero block stays zero");
}

/* The level module: one level in use, never above the CPU's, and exactly LOWBIT_CPU when that
 * names a lower one (CTest runs this binary again under LOWBIT_CPU=avx2 and =scalar). */
static void test_cpu_level(void) {
    const lb_cpu_info *in = lb_cpu_info_get();
    char desc[96];
    lb_cpu_describe(desc, sizeof desc);
    printf("cpu kernels: %s\n", desc);
    CHECK(in->level <= in->hw && in->level == lb_cpu_level_get(), "level %d within the CPU's %d", in->level, in->hw);
    const char *e = getenv("LOWBIT_CPU");
    int want = in->hw;
    for (int l = 0; e && l < LB_CPU_LEVEL_COUNT; l++)
        if (!strcmp(e, lb_cpu_level_name((lb_cpu_level)l)) && l < (int)in->hw) want = l;
    CHECK((int)in->level == want && in->forced == (want < (int)in->hw), "LOWBIT_CPU=%s gives level %s",
          e ? e : "(unset)", lb_cpu_level_name(in->level));
    CHECK(!strncmp(desc, lb_cpu_level_name(in->level), strlen(lb_cpu_level_name(in->level))), "description names the level");
    CHECK(lb_cpu_has_avx2() == (in->level >= LB_CPU_AVX2), "avx2 check follows the level");
    CHECK(!lb_cpu_has_avx512_vnni() || in->level == LB_CPU_AVX512, "avx512 kernels only at the avx512 level");
    CHECK(!lb_matmul_kernel_at(LB_F32, (int)in->level + 1), "no kernel above the level in use");
    CHECK(lb_matmul_kernel_get(LB_Q4_0) == lb_matmul_kernel_at(LB_Q4_0, (int)in->level) &&
          lb_matmul_kernel_get(LB_F16) == lb_matmul_kernel_at(LB_F16, (int)in->level), "matmul runs the level's kernels");
}

int main(void) {
    test_split();
    test_pool();
    lb_pool *pools[3] = {lb_pool_new(1), lb_pool_new(2), lb_pool_new(3)};
    CHECK(pools[0] && pools[1] && pools[2], "pools for the matmul tests");
    if (!pools[0] || !pools[1] || !pools[2]) return test_summary();
    test_cpu_level();
    if (!lb_matmul_kernel_avx2(LB_F32)) printf("note: AVX2 level not in use; AVX2 kernels untested\n");
    test_matmul_shapes(pools);
    test_matmul_api(pools[1]);
    test_matmul_plugin(pools);
    const lb_vec_ops *v = lb_vec_ops_avx2();
    test_vec_ops(lb_vec_ops_scalar(), v ? v : lb_vec_ops_scalar());
    CHECK(lb_vec_ops_get() == (v ? v : lb_vec_ops_scalar()), "dispatch picks AVX2 when available");
    test_kv_q4_0();
    test_attn(lb_vec_ops_scalar(), "scalar");
    if (v) test_attn(v, "avx2");
    test_vec_nan(lb_vec_ops_scalar(), "scalar");
    if (v) test_vec_nan(v, "avx2");
    for (int i = 0; i < 3; i++) lb_pool_free(pools[i]);
    return test_summary();
}
