/* The CUDA backend against the CPU backend (the independent truth): every op on random data,
 * then whole models (stories260K, synth models in F16 / Q8_0 / Q4_0): logits within 1e-3
 * relative (quantized models: no further from the F32-dequantized truth than the CPU's, see
 * errs_ok), 64 greedy ids equal, a batch of sequences equal to each run alone on the GPU, the
 * decode step's CUDA graph (with its fused launches) bitwise equal to the op-by-op path.
 * Built only with -DLOWBIT_CUDA=ON and run only where a GPU is (CTest label cuda). */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/dtype.h"
#include "core/threads.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_dev.h"
#include "lowbit.h"
#include "quant/quant.h"

static const lb_backend *g_cpu, *g_gpu;
static lb_pool *g_pool;
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static float frand(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (float)((g_rng >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1;
}
static void fill(float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] = frand() * s;
}

/* the error's L2 norm over the reference's */
static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void *dev_of(const void *h, size_t bytes) {
    lb_buf b;
    lb_error err = {0};
    if (g_gpu->alloc(NULL, bytes, "test", &b, &err)) return NULL;
    if (h) cudaMemcpy(b.data, h, bytes, cudaMemcpyHostToDevice);
    return b.data;
}
static void dev_free(void *p) {
    lb_buf b = {p, 0, LB_BUF_DEVICE};
    g_gpu->free(NULL, &b);
}
static void to_host(void *h, const void *d, size_t bytes) {
    cudaDeviceSynchronize();
    cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost);
}

/* ---- matmul over every uploaded format and batch sizes of each path --------------------- */

static size_t encode(lb_dtype t, const float *w, int64_t rows, int64_t k, void *out) {
    if (t == LB_F32) return memcpy(out, w, (size_t)(rows * k) * 4), (size_t)(rows * k) * 4;
    if (t == LB_F16 || t == LB_BF16) {
        uint16_t *h = out;
        for (int64_t i = 0; i < rows * k; i++) h[i] = t == LB_F16 ? lb_f32_to_fp16(w[i]) : lb_f32_to_bf16(w[i]);
        return (size_t)(rows * k) * 2;
    }
    return lb_quantize(t, w, out, rows, k, NULL);
}

/* Types uploaded in their own format add the CPU's int8 block products (or float products);
 * the others are dequantized to F16 at upload and multiply float activations where the CPU
 * quantizes them to Q8_K, so they agree only to that rounding. */
static void test_matmul(lb_dtype t, const char *name, int64_t rows, int64_t k) {
    int native = t == LB_F32 || t == LB_F16 || t == LB_BF16 || t == LB_Q8_0 || t == LB_Q4_0;
    double tol = native ? 1e-3 : 1e-2;
    static const int toks[] = {1, 2, 5, 8, 13, 40};
    float *wf = malloc((size_t)(rows * k) * 4), *x = malloc((size_t)(40 * k) * 4);
    float *y0 = malloc((size_t)(40 * rows) * 4), *y1 = malloc((size_t)(40 * rows) * 4);
    void *wq = malloc((size_t)(rows * k) * 4 + 4096);
    fill(wf, (size_t)(rows * k), 1);
    fill(x, (size_t)(40 * k), 1);
    size_t nb = encode(t, wf, rows, k, wq);
    CHECK(nb > 0, "%s: cannot encode", name);
    lb_tensor w = {name, t, 2, {k, rows, 1, 1}, wq, nb};
    float *dx = dev_of(x, (size_t)(40 * k) * 4), *dy = dev_of(NULL, (size_t)(40 * rows) * 4);
    lb_error err = {0};
    for (size_t i = 0; i < sizeof toks / sizeof *toks; i++) {
        int n = toks[i];
        CHECK(g_cpu->matmul(g_pool, &w, 0, x, n, y0, &err) == LB_OK, "%s", err.msg);
        CHECK(g_gpu->matmul(NULL, &w, 0, dx, n, dy, &err) == LB_OK, "%s", err.msg);
        to_host(y1, dy, (size_t)(n * rows) * 4);
        double r = rel_err(y1, y0, (size_t)(n * rows));
        CHECK(r < tol, "matmul %s %lldx%lld, %d tokens: %.3g relative", name, (long long)rows, (long long)k, n, r);
        /* into host memory: the logits path */
        CHECK(g_gpu->matmul(NULL, &w, 0, dx, n, y1, &err) == LB_OK, "%s", err.msg);
        r = rel_err(y1, y0, (size_t)(n * rows));
        CHECK(r < tol, "matmul %s to host, %d tokens: %.3g relative", name, n, r);
    }
    g_gpu->forget(); /* wq is freed below and its address may come back with other contents */
    dev_free(dx);
    dev_free(dy);
    free(wf), free(x), free(y0), free(y1), free(wq);
}

/* A token's row of the product is the same bits in a launch of 1 token and in launches of 2..8
 * (ARCHITECTURE.md: batched == single on one backend): the register kernels split K by the
 * shape alone. Shapes where 1, 2, 4 and 8 warps share a row, and rows left over in a block. */
static void test_mv_bits(lb_dtype t, const char *name, int64_t rows, int64_t k) {
    enum { NT = 8 };
    float *wf = malloc((size_t)(rows * k) * 4), *x = malloc((size_t)(NT * k) * 4);
    float *one = malloc((size_t)(NT * rows) * 4), *many = malloc((size_t)(NT * rows) * 4);
    void *wq = malloc((size_t)(rows * k) * 4 + 4096);
    fill(wf, (size_t)(rows * k), 1);
    fill(x, (size_t)(NT * k), 1);
    size_t nb = encode(t, wf, rows, k, wq);
    lb_tensor w = {name, t, 2, {k, rows, 1, 1}, wq, nb};
    float *dx = dev_of(x, (size_t)(NT * k) * 4), *dy = dev_of(NULL, (size_t)(NT * rows) * 4);
    lb_error err = {0};
    for (int i = 0; i < NT; i++) {
        CHECK(g_gpu->matmul(NULL, &w, 0, dx + (size_t)i * k, 1, dy + (size_t)i * rows, &err) == LB_OK, "%s", err.msg);
    }
    to_host(one, dy, (size_t)(NT * rows) * 4);
    for (int n = 2; n <= NT; n++) {
        CHECK(g_gpu->matmul(NULL, &w, 0, dx, n, dy, &err) == LB_OK, "%s", err.msg);
        to_host(many, dy, (size_t)(n * rows) * 4);
        size_t diff = 0;
        for (size_t i = 0; i < (size_t)(n * rows); i++) diff += memcmp(&one[i], &many[i], 4) != 0;
        CHECK(diff == 0, "matmul %s %lldx%lld: %zu of %lld values of a %d-token launch differ from 1-token launches", name,
              (long long)rows, (long long)k, diff, (long long)(n * rows), n);
    }
    g_gpu->forget();
    dev_free(dx);
    dev_free(dy);
    free(wf), free(x), free(one), free(many), free(wq);
}

/* ---- element-wise and per-row ops ------------------------------------------------------ */

static void test_rows(void) {
    enum { T = 5, N = 320, HD = 64, NH = 5 };
    float x[T * N], w[N], cs[T * HD], a[T * N], b[T * N];
    float *dx = dev_of(NULL, sizeof x), *dy = dev_of(NULL, sizeof x);
    fill(x, T * N, 3), fill(w, N, 1), fill(cs, T * HD, 1);
    for (int wt = 0; wt < 2; wt++) {
        g_cpu->rmsnorm(a, x, wt ? w : NULL, T, N, 1e-5f);
        cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice);
        g_gpu->rmsnorm(dy, dx, wt ? w : NULL, T, N, 1e-5f);
        to_host(b, dy, sizeof b);
        CHECK(rel_err(b, a, T * N) < 1e-5, "rmsnorm (weights %d)", wt);
    }
    for (int layout = 0; layout < 2; layout++) {
        memcpy(a, x, sizeof x);
        g_cpu->rope(a, T, NH, HD, N, cs, layout);
        cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice);
        g_gpu->rope(dx, T, NH, HD, N, cs, layout);
        to_host(b, dx, sizeof b);
        CHECK(rel_err(b, a, T * N) < 1e-6, "rope layout %d", layout);
    }
    for (int act = 0; act < 2; act++) {
        memcpy(a, x, sizeof x);
        g_cpu->glu(a, w, N, act);
        cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice);
        cudaMemcpy(dy, w, sizeof w, cudaMemcpyHostToDevice);
        g_gpu->glu(dx, dy, N, act);
        to_host(b, dx, N * 4);
        CHECK(rel_err(b, a, N) < 1e-5, "glu act %d", act);
    }
    memcpy(a, x, sizeof x);
    g_cpu->add(a, w, N); /* w from host memory, as a bias is */
    g_cpu->scale(a, 0.37f, N);
    cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice);
    g_gpu->add(dx, w, N);
    g_gpu->scale(dx, 0.37f, N);
    g_gpu->copy(dy, dx, N * 4);
    to_host(b, dy, N * 4);
    CHECK(rel_err(b, a, N) < 1e-6, "add, scale, copy");
    g_gpu->forget(); /* w lives on this stack frame */
    dev_free(dx);
    dev_free(dy);
}

/* ---- KV store and attention through scattered block tables ------------------------------ */

static size_t head_bytes(int hd, int kvt) { return kvt == LB_KV_Q8_0 ? (size_t)hd / 32 * 34 : (size_t)hd * (kvt == LB_KV_F16 ? 2 : 4); }

static void test_attention(int kvt) {
    enum { NT = 3, NH = 8, NKV = 2, HD = 64, BT = 16, NB = 24, MAXP = 100 };
    int kv_dim = NKV * HD;
    size_t hb = head_bytes(HD, kvt), rb = hb * NKV, half = rb * BT, bb = 2 * half * 2; /* 2 layers */
    uint8_t *hpool = calloc(NB, bb);
    uint8_t *dpool = dev_of(hpool, NB * bb);
    int32_t tables[NT][NB];
    for (int t = 0; t < NT; t++) /* disjoint tables of scattered blocks */
        for (int i = 0; i < NB / NT; i++) tables[t][i] = (i * NT + t * 5 + 1) % NB;
    int len[NT] = {1, 37, MAXP};
    lb_kv_view hv = {hpool, bb, 2 * half, 3 * half, rb, hb, BT, kvt}, dv = hv; /* layer 1 */
    dv.base = dpool;
    float *k = malloc((size_t)MAXP * kv_dim * 4), *v = malloc((size_t)MAXP * kv_dim * 4);
    float *dk = dev_of(NULL, (size_t)MAXP * kv_dim * 4), *dvv = dev_of(NULL, (size_t)MAXP * kv_dim * 4);
    int32_t blk[MAXP], off[MAXP];
    for (int t = 0; t < NT; t++) { /* each sequence's positions stored in one call */
        fill(k, (size_t)len[t] * kv_dim, 1), fill(v, (size_t)len[t] * kv_dim, 1);
        for (int p = 0; p < len[t]; p++) blk[p] = tables[t][p / BT], off[p] = p % BT;
        g_cpu->kv_store(&hv, k, v, len[t], kv_dim, blk, off);
        cudaMemcpy(dk, k, (size_t)len[t] * kv_dim * 4, cudaMemcpyHostToDevice);
        cudaMemcpy(dvv, v, (size_t)len[t] * kv_dim * 4, cudaMemcpyHostToDevice);
        g_gpu->kv_store(&dv, dk, dvv, len[t], kv_dim, blk, off);
    }
    uint8_t *back = malloc(NB * bb);
    to_host(back, dpool, NB * bb);
    /* F32 / F16 stores round the same way; a Q8_0 value may differ by one step where the CPU's
     * SIMD scale lands an ulp away, so those count mismatching bytes */
    size_t diff = 0;
    for (size_t i = 0; i < (size_t)NB * bb; i++) diff += back[i] != hpool[i];
    size_t written = (size_t)(len[0] + len[1] + len[2]) * 2 * rb;
    CHECK(kvt == LB_KV_Q8_0 ? diff * 200 < written : diff == 0, "kv_store type %d: %zu of %zu bytes differ from the CPU's",
          kvt, diff, written);
    /* attention reads the same cache on both sides */
    cudaMemcpy(dpool, hpool, NB * bb, cudaMemcpyHostToDevice);
    float q[NT * NH * HD], o0[NT * NH * HD], o1[NT * NH * HD], att[MAXP], tmp[HD];
    fill(q, sizeof q / 4, 2);
    int32_t pos[NT];
    const int32_t *bl[NT];
    for (int t = 0; t < NT; t++) pos[t] = len[t] - 1, bl[t] = tables[t];
    float *dq = dev_of(q, sizeof q), *dout = dev_of(NULL, sizeof o1);
    double r = 0;
    for (int win = 0; win <= 23; win += 23) { /* no window; a sliding window starting mid-block */
        lb_attn_batch a = {NT, NH, NKV, HD, q, o0, pos, bl, hv, att, MAXP, tmp, win};
        g_cpu->attention(g_pool, &a);
        lb_attn_batch b = {NT, NH, NKV, HD, dq, dout, pos, bl, dv, NULL, MAXP, NULL, win};
        g_gpu->attention(NULL, &b);
        to_host(o1, dout, sizeof o1);
        r = rel_err(o1, o0, sizeof o0 / 4);
        CHECK(r < 1e-4, "attention kv type %d window %d: %.3g relative", kvt, win, r);
    }
    /* a prompt chunk: consecutive positions of one sequence take the tiled kernel (with
     * LOWBIT_CUDA_ATTN=1, which main sets); 60 queries (two tiles of 32, the second partial) at
     * positions 40..99 over the third table, whose blocks each query's copy holds up to its own */
    enum { NQ = 60, P0 = MAXP - NQ };
    float *pq = malloc((size_t)NQ * NH * HD * 4), *p0 = malloc((size_t)NQ * NH * HD * 4), *p1 = malloc((size_t)NQ * NH * HD * 4);
    int32_t ppos[NQ];
    const int32_t *pbl[NQ];
    fill(pq, (size_t)NQ * NH * HD, 2);
    for (int t = 0; t < NQ; t++) ppos[t] = P0 + t, pbl[t] = tables[2];
    float *dpq = dev_of(pq, (size_t)NQ * NH * HD * 4), *dpo = dev_of(NULL, (size_t)NQ * NH * HD * 4);
    /* windows: a query's first position inside the first tile, in a later tile, none */
    for (int wi = 0; wi < 3; wi++) {
        int win = (int[]){0, 45, 7}[wi];
        lb_attn_batch pa = {NQ, NH, NKV, HD, pq, p0, ppos, pbl, hv, att, MAXP, tmp, win};
        g_cpu->attention(g_pool, &pa);
        lb_attn_batch pb = {NQ, NH, NKV, HD, dpq, dpo, ppos, pbl, dv, NULL, MAXP, NULL, win};
        g_gpu->attention(NULL, &pb);
        to_host(p1, dpo, (size_t)NQ * NH * HD * 4);
        r = rel_err(p1, p0, (size_t)NQ * NH * HD);
        CHECK(r < 1e-4, "prompt attention (tiled) kv type %d window %d: %.3g relative", kvt, win, r);
    }
    dev_free(dpq), dev_free(dpo), free(pq), free(p0), free(p1);
    dev_free(dpool), dev_free(dk), dev_free(dvv), dev_free(dq), dev_free(dout);
    free(hpool), free(k), free(v), free(back);
}

/* ---- whole models --------------------------------------------------------------------------- */

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static lb_session *open_session_ctx(lb_model *m, lb_device d, int n_ctx) {
    lb_session_params sp = lb_session_default_params();
    sp.n_ctx = n_ctx;
    sp.device = d;
    lb_session *s = NULL;
    lb_error err = {0};
    CHECK(lb_session_new(m, &sp, &s, &err) == LB_OK, "%s", err.msg);
    return s;
}
static lb_session *open_session(lb_model *m, lb_device d) { return open_session_ctx(m, d, 128); }

/* Errors of the CPU and the GPU against the truth (NULL: the CPU is the truth). */
typedef struct errs { double cpu, gpu; } errs;

static errs errs_of(const float *cpu, const float *gpu, const float *truth, size_t n) {
    errs e = {0, rel_err(gpu, cpu, n)};
    if (truth) e.cpu = rel_err(cpu, truth, n), e.gpu = rel_err(gpu, truth, n);
    return e;
}

/* Quantized models quantize every matmul's input to Q8_0, a step function: float sums in another
 * order (any two backends) flip a few codes, and each flip moves the next layer's input by a whole
 * step, so the two backends drift apart to the size of that rounding (3e-3..1e-2 of the logits
 * seen on the H100) however exact each op is (each matches the CPU within 1e-3 above). There the
 * truth is the model with its weights dequantized to F32 on the CPU (no activation rounding), and
 * the GPU's error must be no worse than the CPU's: at most 1.5 times it (both are the same kind
 * of rounding noise, so their sizes scatter) plus 1e-4. A wrong kernel errs by far more. */
static int errs_ok(errs e, int quant) { return quant ? e.gpu <= 1.5 * e.cpu + 1e-4 : e.gpu < 1e-3; }

/* a 40-token prompt (all logits; cuBLAS for F16, Q8_0 and Q4_0 weights), then 64 greedy
 * tokens on each device; truth: NULL, or the F32-dequantized model (see errs_ok) */
static void test_model_vs_cpu(lb_model *m, lb_model *truth, const char *name) {
    int nv = lb_model_n_vocab(m), quant = truth != NULL;
    enum { NP = 40, NG = 64 };
    lb_session *c = open_session(m, LB_DEVICE_CPU), *g = open_session(m, LB_DEVICE_CUDA);
    lb_session *f = truth ? open_session(truth, LB_DEVICE_CPU) : NULL;
    if (!c || !g || (truth && !f)) {
        lb_session_free(c), lb_session_free(g), lb_session_free(f);
        return;
    }
    float *l0 = malloc((size_t)NP * nv * 4), *l1 = malloc((size_t)NP * nv * 4), *lt = malloc((size_t)NP * nv * 4);
    int32_t ids[NP];
    for (int i = 0; i < NP; i++) ids[i] = 1 + (i * 131 + 7) % (nv - 1);
    lb_error err = {0};
    CHECK(lb_session_eval(c, ids, NP, l0, 1, &err) == LB_OK, "%s", err.msg);
    CHECK(lb_session_eval(g, ids, NP, l1, 1, &err) == LB_OK, "%s", err.msg);
    if (f) CHECK(lb_session_eval(f, ids, NP, lt, 1, &err) == LB_OK, "%s", err.msg);
    errs p = errs_of(l0, l1, f ? lt : NULL, (size_t)NP * nv), worst = {0, 0};
    double drift = rel_err(l1, l0, (size_t)NP * nv), worst_drift = 0;
    CHECK(errs_ok(p, quant), "%s: prompt logits %.3g relative to the %s (CPU %.3g)", name, p.gpu, quant ? "truth" : "CPU", p.cpu);
    int a = argmax(l0 + (size_t)(NP - 1) * nv, nv), b = argmax(l1 + (size_t)(NP - 1) * nv, nv), same = 0;
    for (int i = 0; i < NG && a == b; i++, same++) {
        CHECK(lb_session_eval(c, &a, 1, l0, 0, &err) == LB_OK, "%s", err.msg);
        CHECK(lb_session_eval(g, &b, 1, l1, 0, &err) == LB_OK, "%s", err.msg);
        if (f) CHECK(lb_session_eval(f, &a, 1, lt, 0, &err) == LB_OK, "%s", err.msg);
        errs e = errs_of(l0, l1, f ? lt : NULL, (size_t)nv);
        double d = rel_err(l1, l0, (size_t)nv);
        if (e.gpu > worst.gpu) worst.gpu = e.gpu;
        if (e.cpu > worst.cpu) worst.cpu = e.cpu;
        if (d > worst_drift) worst_drift = d;
        a = argmax(l0, nv), b = argmax(l1, nv);
    }
    CHECK(same == NG, "%s: greedy ids agree for %d of %d tokens", name, same, NG);
    CHECK(errs_ok(worst, quant), "%s: decode logits up to %.3g relative to the %s (CPU %.3g)", name, worst.gpu,
          quant ? "truth" : "CPU", worst.cpu);
    printf("%s: GPU vs CPU prompt %.2g, decode up to %.2g; ", name, drift, worst_drift);
    if (quant) printf("vs the F32 truth: prompt GPU %.2g CPU %.2g, decode GPU %.2g CPU %.2g; ", p.gpu, p.cpu, worst.gpu, worst.cpu);
    printf("%d greedy ids equal\n", same);
    free(l0), free(l1), free(lt);
    lb_session_free(c), lb_session_free(g), lb_session_free(f);
}

/* 6 sequences of different lengths decoded together on the GPU equal each decoded alone there */
static void test_batched(lb_model *m, const char *name) {
    int nv = lb_model_n_vocab(m);
    enum { NS = 6, STEPS = 8 };
    lb_engine_params ep = lb_engine_default_params();
    ep.n_ctx = 128;
    ep.n_kv_tokens = NS * 128;
    ep.device = LB_DEVICE_CUDA;
    lb_engine *e = NULL;
    lb_error err = {0};
    CHECK(lb_engine_new(m, &ep, &e, &err) == LB_OK, "%s", err.msg);
    if (!e) return;
    float *lg = malloc((size_t)64 * nv * 4), *ref = malloc((size_t)nv * 4);
    int seq[NS], len[NS], next[NS], got[NS][STEPS];
    int32_t ids[NS][32];
    for (int s = 0; s < NS; s++) {
        len[s] = 2 + 3 * s;
        for (int i = 0; i < len[s]; i++) ids[s][i] = 1 + (i * 37 + s * 11) % (nv - 1);
        CHECK(lb_engine_seq_new(e, 0, &seq[s], &err) == LB_OK, "%s", err.msg);
        lb_batch_entry b[32];
        for (int i = 0; i < len[s]; i++) b[i] = (lb_batch_entry){seq[s], i, ids[s][i], i == len[s] - 1};
        CHECK(lb_engine_decode(e, b, (size_t)len[s], lg, &err) == LB_OK, "%s", err.msg);
        next[s] = argmax(lg, nv);
    }
    for (int k = 0; k < STEPS; k++) {
        lb_batch_entry b[NS];
        for (int s = 0; s < NS; s++) b[s] = (lb_batch_entry){seq[s], len[s] + k, next[s], 1};
        CHECK(lb_engine_decode(e, b, NS, lg, &err) == LB_OK, "%s", err.msg);
        for (int s = 0; s < NS; s++) got[s][k] = next[s], next[s] = argmax(lg + (size_t)s * nv, nv);
    }
    for (int s = 0; s < NS; s++) {
        lb_session *g = open_session(m, LB_DEVICE_CUDA);
        if (!g) break;
        CHECK(lb_session_eval(g, ids[s], (size_t)len[s], ref, 0, &err) == LB_OK, "%s", err.msg);
        int id = argmax(ref, nv), same = 1;
        for (int k = 0; k < STEPS; k++) {
            same &= id == got[s][k];
            CHECK(lb_session_eval(g, &id, 1, ref, 0, &err) == LB_OK, "%s", err.msg);
            id = argmax(ref, nv);
        }
        double r = rel_err(lg + (size_t)s * nv, ref, (size_t)nv);
        CHECK(same && id == next[s], "%s: batched sequence %d: greedy ids differ from the run alone", name, s);
        CHECK(r < 1e-3, "%s: batched sequence %d: logits %.3g relative to the run alone", name, s, r);
        lb_session_free(g);
    }
    free(lg), free(ref);
    lb_engine_free(e);
}

/* n tokens with or without the step's CUDA graphs (LOWBIT_CUDA_GRAPH, read at each step; main
 * turns them on for the whole test): the last one's logits */
static lb_status eval_graph(lb_session *s, int graph, const int32_t *ids, int n, float *logits, lb_error *err) {
    setenv("LOWBIT_CUDA_GRAPH", graph ? "1" : "0", 1);
    lb_status st = lb_session_eval(s, ids, (size_t)n, logits, 0, err);
    setenv("LOWBIT_CUDA_GRAPH", "1", 1);
    return st;
}

/* The graph replays the same launches, fused ones included, so its logits are the op-by-op
 * path's bit for bit: a prompt ending just short of the attention's first score capacity (256
 * positions), then greedy decode across it (a new graph is captured there); the graph must
 * carry nearly every step. */
static void test_graph(lb_model *m, const char *name) {
    int nv = lb_model_n_vocab(m);
    enum { NP = 240, NG = 32 };
    lb_session *e = open_session_ctx(m, LB_DEVICE_CUDA, 320), *g = open_session_ctx(m, LB_DEVICE_CUDA, 320);
    float *l0 = malloc((size_t)nv * 4), *l1 = malloc((size_t)nv * 4);
    if (!e || !g || !l0 || !l1) {
        lb_session_free(e), lb_session_free(g), free(l0), free(l1);
        return;
    }
    int32_t ids[NP];
    for (int i = 0; i < NP; i++) ids[i] = 1 + (i * 131 + 7) % (nv - 1);
    lb_error err = {0};
    CHECK(eval_graph(e, 0, ids, NP, l0, &err) == LB_OK, "%s", err.msg);
    CHECK(eval_graph(g, 1, ids, NP, l1, &err) == LB_OK, "%s", err.msg);
    int same = !memcmp(l0, l1, (size_t)nv * 4), steps = 0;
    lb_cu_graph_stats s0 = lb_cu_graph_get_stats();
    for (int i = 0; i < NG && same; i++, steps++) {
        int32_t id = argmax(l0, nv);
        CHECK(eval_graph(e, 0, &id, 1, l0, &err) == LB_OK, "%s", err.msg);
        CHECK(eval_graph(g, 1, &id, 1, l1, &err) == LB_OK, "%s", err.msg);
        same = !memcmp(l0, l1, (size_t)nv * 4);
    }
    lb_cu_graph_stats s1 = lb_cu_graph_get_stats();
    int replays = (int)(s1.replays - s0.replays), captures = (int)(s1.captures - s0.captures);
    CHECK(same, "%s: graph logits differ from the op-by-op path after %d decode steps", name, steps);
    CHECK(replays >= NG - 4 && captures >= 1, "%s: the graph ran %d of %d decode steps (%d captures)", name, replays, NG, captures);
    printf("%s: graph == op by op for %d decode steps (%d graph launches, %d captures)\n", name, steps, replays, captures);
    free(l0), free(l1);
    lb_session_free(e), lb_session_free(g);
}

static void test_model_file(const char *path, const char *truth_path, const char *name) {
    lb_model *m = NULL, *t = NULL;
    lb_error err = {0};
    if (lb_model_load(path, NULL, &m, &err) || (truth_path && lb_model_load(truth_path, NULL, &t, &err))) {
        CHECK(0, "%s: %s", path, err.msg);
        lb_model_free(m);
        return;
    }
    test_model_vs_cpu(m, t, name);
    test_batched(m, name);
    test_graph(m, name);
    lb_model_free(t);
    lb_model_free(m);
}

static lb_status quantize_to(const char *in, const char *out, const char *type, lb_error *err) {
    lb_quantize_params qp = lb_quantize_default_params();
    qp.type = type;
    qp.pure = 1;
    return lb_quantize_file(in, out, &qp, NULL, NULL, err);
}

static void test_synth(const char *preset) {
    char f16[256], q[256], f32[256];
    lb_error err = {0};
    snprintf(f16, sizeof f16, "/tmp/lb_cuda_%s_f16.gguf", preset);
    CHECK(lb_synth_write(preset, "f16", NULL, 7, f16, NULL, NULL, &err) == LB_OK, "%s", err.msg);
    test_model_file(f16, NULL, f16);
    static const char *types[] = {"q8_0", "q4_0"};
    for (int i = 0; i < 2; i++) {
        snprintf(q, sizeof q, "/tmp/lb_cuda_%s_%s.gguf", preset, types[i]);
        snprintf(f32, sizeof f32, "/tmp/lb_cuda_%s_%s_f32.gguf", preset, types[i]);
        /* the truth: the quantized weights dequantized exactly to F32 */
        if (quantize_to(f16, q, types[i], &err) || quantize_to(q, f32, "f32", &err)) {
            CHECK(0, "%s: %s", q, err.msg);
            continue;
        }
        test_model_file(q, f32, q);
        remove(q);
        remove(f32);
    }
    remove(f16);
}

int main(void) {
    lb_error err = {0};
    /* CPU and CUDA sessions share one loaded model here; a CPU engine would repack its Q4_0
     * matrices (quant/repack.h), which the CUDA backend does not read */
    setenv("LOWBIT_REPACK", "0", 1);
    /* every whole-model test through the step's CUDA graphs (off by default: cuda_graph.c);
     * test_graph compares them with the op-by-op path */
    setenv("LOWBIT_CUDA_GRAPH", "1", 1);
    /* the tiled prompt attention (off by default until this test has passed with it on a GPU)
     * for every prompt here, unless the caller chose (bench/cuda_device.sh reruns with 0) */
    setenv("LOWBIT_CUDA_ATTN", "1", 0);
    g_cpu = lb_backend_cpu();
    g_pool = lb_pool_new(1);
    if (lb_backend_cuda(&g_gpu, &err)) {
        CHECK(0, "%s", err.msg);
        return test_summary();
    }
    static const struct { lb_dtype t; const char *name; } types[] = {
        {LB_F32, "f32"}, {LB_F16, "f16"}, {LB_BF16, "bf16"}, {LB_Q8_0, "q8_0"}, {LB_Q4_0, "q4_0"},
        {LB_Q4_K, "q4_K"}, {LB_Q6_K, "q6_K"}};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        test_matmul(types[i].t, types[i].name, 67, 512);
        if (types[i].t <= LB_F16 || types[i].t == LB_BF16) test_matmul(types[i].t, types[i].name, 33, 100);
    }
    for (size_t i = 0; i < 5; i++) { /* the types of their own kernels, shapes of every K split */
        static const int64_t shapes[][2] = {{67, 512}, {45, 8224}, {1000, 1056}, {2051, 2048}, {300, 4096}};
        for (size_t j = 0; j < sizeof shapes / sizeof *shapes; j++) {
            if (j) test_matmul(types[i].t, types[i].name, shapes[j][0], shapes[j][1]);
            test_mv_bits(types[i].t, types[i].name, shapes[j][0], shapes[j][1]);
        }
        if (types[i].t <= LB_F16 || types[i].t == LB_BF16) test_mv_bits(types[i].t, types[i].name, 33, 100);
    }
    test_rows();
    test_attention(LB_KV_F32);
    test_attention(LB_KV_F16);
    test_attention(LB_KV_Q8_0);
    test_model_file(SHARED("models/stories260K-gguf/stories260K.gguf"), NULL, "stories260K");
    test_synth("tiny");
    /* a sliding window shorter than the prompt, starting mid-block: the CUDA kernels' mask
     * against the CPU's over a whole model (prompt, decode, batch, graphs) */
    const char *sw = "/tmp/lb_cuda_tiny_sw23.gguf";
    lb_synth_opts so = {0, 23};
    CHECK(lb_synth_write_ex("tiny", "f16", NULL, 7, &so, sw, NULL, NULL, &err) == LB_OK, "%s", err.msg);
    test_model_file(sw, NULL, "tiny, sliding window 23");
    remove(sw);
    test_synth("stories15m");
    lb_pool_free(g_pool);
    return test_summary();
}
