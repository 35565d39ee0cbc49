/* A stand-in for the CUDA runtime, cuBLAS and the backend's launchers (the .cu files of src/kernels/cuda), in
 * plain C on the CPU, so test_cuda runs the backend's host code where no GPU is: the upload
 * cache, staging, the step's recording, arena and graph replay (cuda_graph.c), the fusions'
 * bookkeeping. Device memory is host memory; the stream runs each launch at once, except while
 * capturing, where launches are kept as closures that a graph launch runs again. Calls the real
 * runtime refuses during a capture (synchronisation, frees, host copies) abort here, so a capture
 * that would fail on a GPU fails loudly. The kernels are simple loops, not the GPU's: this checks
 * the host logic, never the CUDA kernels. Built and run by tests/cuda/fake_cuda.sh. */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_kernels.h"

struct CUstream_st {
    int unused;
};
struct cublasContext {
    int unused;
};

enum { F_QA, F_MV, F_NORM, F_ROPE, F_GLU, F_ADD, F_SCALE, F_KVS, F_ATT, F_CPY };

/* one launch: its function and arguments */
typedef struct clo {
    int fn;
    const void *p[6];
    long long v[7];
    float f;
    size_t z;
    lb_cu_kv kv;
} clo;

struct CUgraph_st {
    int n;
    clo *c;
};
struct CUgraphExec_st {
    int n;
    clo *c;
};

static int capturing;
static clo *cap_list;
static int cap_n, cap_cap;

static void run(const clo *c);

static void submit(const clo *c) {
    if (!capturing) {
        run(c);
        return;
    }
    if (cap_n == cap_cap) {
        cap_cap = cap_cap ? 2 * cap_cap : 256;
        if (!(cap_list = realloc(cap_list, (size_t)cap_cap * sizeof *cap_list))) abort();
    }
    cap_list[cap_n++] = *c;
}

static clo closure(int fn) {
    clo c;
    memset(&c, 0, sizeof c);
    c.fn = fn;
    return c;
}

static float h2f(uint16_t h) { return lb_fp16_to_f32(h); }

/* Q8_0 of 32 values as the kernels make it: F16-rounded scale, round half to even */
static void quant_block(const float *v, int8_t *q, float *d) {
    float a = 0;
    for (int i = 0; i < 32; i++) a = fmaxf(a, fabsf(v[i]));
    float dd = h2f(lb_f32_to_fp16(a / 127)), id = dd > 0 ? 1.0f / dd : 0;
    for (int i = 0; i < 32; i++) {
        float r = v[i] * id;
        q[i] = (int8_t)(r >= -127.0f ? (r > 127.0f ? 127 : (int)nearbyintf(r)) : -127);
    }
    *d = dd;
}

static float weight_at(int type, const void *w, int64_t k, int64_t r, int64_t i) {
    const uint16_t *h = w;
    if (type == LB_CU_F32) return ((const float *)w)[r * k + i];
    return type == LB_CU_F16 ? h2f(h[r * k + i]) : lb_bf16_to_f32(h[r * k + i]);
}

static int quant_at(int type, const void *w, int64_t k, int64_t r, int64_t i) {
    if (type == LB_CU_Q8_0) return ((const int8_t *)w)[r * k + i];
    uint8_t by = ((const uint8_t *)w)[r * (k / 2) + i / 32 * 16 + i % 16];
    return (i % 32 < 16 ? by & 15 : by >> 4) - 8;
}

static void mv(const clo *c) {
    int type = (int)c->v[0], rows = (int)c->v[1], k = (int)c->v[2], n = (int)c->v[3];
    const float *x = c->p[2], *xd = c->p[4];
    const int8_t *xq = c->p[3];
    const uint16_t *wd = c->p[1];
    float *y = (float *)c->p[5];
    for (int t = 0; t < n; t++)
        for (int r = 0; r < rows; r++) {
            float acc = 0;
            if (type == LB_CU_Q8_0 || type == LB_CU_Q4_0) {
                for (int b = 0; b < k / 32; b++) {
                    int s = 0;
                    for (int i = b * 32; i < b * 32 + 32; i++)
                        s += quant_at(type, c->p[0], k, r, i) * xq[(size_t)t * k + i];
                    acc += h2f(wd[(size_t)r * (k / 32) + b]) * xd[(size_t)t * (k / 32) + b] * (float)s;
                }
            } else {
                for (int i = 0; i < k; i++) acc += weight_at(type, c->p[0], k, r, i) * x[(size_t)t * k + i];
            }
            y[(size_t)t * rows + r] = acc;
        }
}

static void norm(const clo *c) {
    float *out = (float *)c->p[0], *x = (float *)c->p[1], *xd = (float *)c->p[5];
    const float *add = c->p[2], *w = c->p[3];
    int8_t *xq = (int8_t *)c->p[4];
    int n_tok = (int)c->v[0], n = (int)c->v[1];
    for (int t = 0; t < n_tok; t++) {
        float *xr = x + (size_t)t * n, *o = out + (size_t)t * n;
        double ss = 0;
        for (int i = 0; i < n; i++) {
            if (add) xr[i] += add[(size_t)t * n + i];
            ss += (double)xr[i] * xr[i];
        }
        float s = (float)(1.0 / sqrt(ss / (double)(n > 0 ? n : 1) + c->f));
        for (int i = 0; i < n; i++) o[i] = w ? (xr[i] * s) * w[i] : xr[i] * s;
        for (int b = 0; xq && b < n / 32; b++)
            quant_block(o + b * 32, xq + (size_t)t * n + b * 32, xd + (size_t)t * (n / 32) + b);
    }
}

static void rope(const clo *c) {
    float *x = (float *)c->p[0];
    const float *all = c->p[1];
    int n_tok = (int)c->v[0], nh = (int)c->v[1], hd = (int)c->v[2], neox = (int)c->v[3], half = hd / 2;
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < half; i++) {
                const float *cs = all + (size_t)t * hd, *sn = cs + half;
                float *v = x + (size_t)t * c->z + (size_t)h * hd;
                int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
                float x0 = v[a], x1 = v[b];
                v[a] = x0 * cs[i] - x1 * sn[i];
                v[b] = x0 * sn[i] + x1 * cs[i];
            }
}

static void kv_store(const clo *c) {
    const lb_cu_kv *kv = &c->kv;
    const int32_t *slot = c->p[2];
    int n_tok = (int)c->v[0], kv_dim = (int)c->v[1];
    for (int t = 0; t < n_tok; t++) {
        uint8_t *row = kv->base + (size_t)slot[2 * t] * kv->block_bytes + (size_t)slot[2 * t + 1] * kv->row_bytes;
        for (int s = 0; s < 2; s++) {
            const float *src = (const float *)c->p[s] + (size_t)t * kv_dim;
            uint8_t *dst = row + (s ? kv->v_off : kv->k_off);
            for (int b = 0; kv->kv_type == 2 && b < kv_dim / 32; b++) { /* 34-byte blocks, as lb_block_q8_0 */
                int8_t q[32];
                float d;
                quant_block(src + b * 32, q, &d);
                uint16_t hb = lb_f32_to_fp16(d);
                memcpy(dst + b * 34, &hb, 2);
                memcpy(dst + b * 34 + 2, q, 32);
            }
            for (int i = 0; kv->kv_type == 1 && i < kv_dim; i++) ((uint16_t *)dst)[i] = lb_f32_to_fp16(src[i]);
            if (kv->kv_type == 0) memcpy(dst, src, (size_t)kv_dim * 4);
        }
    }
}

static float kv_at(const lb_cu_kv *kv, const uint8_t *row, int i) {
    if (kv->kv_type == 2) {
        const uint8_t *b = row + (size_t)(i / 32) * 34;
        return h2f((uint16_t)(b[0] | b[1] << 8)) * (float)(int8_t)b[2 + i % 32];
    }
    return kv->kv_type == 1 ? h2f(((const uint16_t *)row)[i]) : ((const float *)row)[i];
}

static const uint8_t *kv_row(const lb_cu_kv *kv, const int32_t *table, int p, size_t off, int kvh) {
    int bt = kv->block_tokens;
    return kv->base + (size_t)table[p / bt] * kv->block_bytes + off + (size_t)(p % bt) * kv->row_bytes +
           (size_t)kvh * kv->head_bytes;
}

static void attention(const clo *c) {
    const lb_cu_kv *kv = &c->kv;
    const float *q = c->p[0];
    float *out = (float *)c->p[1];
    const int32_t *idx = c->p[2];
    int n_tok = (int)c->v[0], t0 = (int)c->v[1], n_run = (int)c->v[2], nh = (int)c->v[3], nkv = (int)c->v[4];
    int hd = (int)c->v[5], win = (int)c->v[6];
    for (int t = t0; t < t0 + n_run; t++)
        for (int h = 0; h < nh; h++) {
            int kvh = h / (nh / nkv), n_pos = idx[t] + 1, lo = lb_attn_first(idx[t], win);
            const int32_t *table = idx + 2 * n_tok + idx[n_tok + t];
            const float *qh = q + (size_t)t * nh * hd + (size_t)h * hd;
            float *sc = malloc((size_t)n_pos * sizeof(float)), mx = -INFINITY, sum = 0;
            if (!sc) abort();
            for (int p = 0; p < lo; p++) sc[p] = 0; /* outside the window: no weight */
            for (int p = lo; p < n_pos; p++) {
                const uint8_t *row = kv_row(kv, table, p, kv->k_off, kvh);
                float s = 0;
                for (int i = 0; i < hd; i++) s += qh[i] * kv_at(kv, row, i);
                sc[p] = s / sqrtf((float)hd);
                mx = fmaxf(mx, sc[p]);
            }
            for (int p = lo; p < n_pos; p++) sum += sc[p] = expf(sc[p] - mx);
            for (int i = 0; i < hd; i++) {
                float acc = 0;
                for (int p = lo; p < n_pos; p++) acc += sc[p] / sum * kv_at(kv, kv_row(kv, table, p, kv->v_off, kvh), i);
                out[(size_t)t * nh * hd + (size_t)h * hd + i] = acc;
            }
            free(sc);
        }
}

static void run(const clo *c) {
    float *y = (float *)c->p[0];
    const float *x = c->p[1];
    switch (c->fn) {
    case F_QA: {
        int n = (int)c->v[0], k = (int)c->v[1];
        for (int t = 0; t < n; t++)
            for (int b = 0; b < k / 32; b++)
                quant_block(x + (size_t)t * k + b * 32, (int8_t *)c->p[2] + (size_t)t * k + b * 32,
                            (float *)c->p[3] + (size_t)t * (k / 32) + b);
        break;
    }
    case F_MV: mv(c); break;
    case F_NORM: norm(c); break;
    case F_ROPE: rope(c); break;
    case F_GLU:
        for (size_t i = 0; i < c->z; i++) {
            float g = y[i], r = g > 0 ? g : 0;
            y[i] = c->v[0] == 1 ? r * r * x[i] : g / (1.0f + expf(-g)) * x[i];
        }
        break;
    case F_ADD:
        for (size_t i = 0; i < c->z; i++) y[i] += x[i];
        break;
    case F_SCALE:
        for (size_t i = 0; i < c->z; i++) y[i] *= c->f;
        break;
    case F_KVS: kv_store(c); break;
    case F_ATT: attention(c); break;
    case F_CPY: memmove(y, x, c->z); break;
    }
}

/* ---- the launchers (cuda_kernels.h) ---------------------------------------------------------- */

void lb_cu_quant_act(const float *x, int n_tok, int k, int8_t *xq, float *xd, cudaStream_t s) {
    clo c = closure(F_QA);
    c.p[1] = x, c.p[2] = xq, c.p[3] = xd, c.v[0] = n_tok, c.v[1] = k;
    submit(&c);
}

void lb_cu_mv(int type, const void *wq, const uint16_t *wd, const float *x, const int8_t *xq, const float *xd, int rows,
              int k, int n_tok, float *y, cudaStream_t s) {
    clo c = closure(F_MV);
    c.p[0] = wq, c.p[1] = wd, c.p[2] = x, c.p[3] = xq, c.p[4] = xd, c.p[5] = y;
    c.v[0] = type, c.v[1] = rows, c.v[2] = k, c.v[3] = n_tok;
    submit(&c);
}

void lb_cu_add_rmsnorm(float *out, float *x, const float *add, const float *w, int n_tok, int n, float eps, int8_t *xq,
                       float *xd, cudaStream_t s) {
    clo c = closure(F_NORM);
    c.p[0] = out, c.p[1] = x, c.p[2] = add, c.p[3] = w, c.p[4] = xq, c.p[5] = xd;
    c.v[0] = n_tok, c.v[1] = n, c.f = eps;
    submit(&c);
}

void lb_cu_rope(float *x, int n_tok, int n_heads, int hd, size_t row_stride, const float *cs, int neox,
                cudaStream_t s) {
    clo c = closure(F_ROPE);
    c.p[0] = x, c.p[1] = cs, c.v[0] = n_tok, c.v[1] = n_heads, c.v[2] = hd, c.v[3] = neox, c.z = row_stride;
    submit(&c);
}

static void elementwise(int fn, float *y, const float *x, size_t n, float f, int act) {
    clo c = closure(fn);
    c.p[0] = y, c.p[1] = x, c.z = n, c.f = f, c.v[0] = act;
    submit(&c);
}
void lb_cu_glu(float *gate, const float *up, size_t n, int act, cudaStream_t s) {
    elementwise(F_GLU, gate, up, n, 0, act);
}
void lb_cu_add(float *y, const float *x, size_t n, cudaStream_t s) { elementwise(F_ADD, y, x, n, 0, 0); }
void lb_cu_scale(float *y, float a, size_t n, cudaStream_t s) { elementwise(F_SCALE, y, NULL, n, a, 0); }

void lb_cu_kv_store(const lb_cu_kv *kv, const float *k, const float *v, int n_tok, int kv_dim, const int32_t *slot,
                    cudaStream_t s) {
    clo c = closure(F_KVS);
    c.kv = *kv, c.p[0] = k, c.p[1] = v, c.p[2] = slot, c.v[0] = n_tok, c.v[1] = kv_dim;
    submit(&c);
}

void lb_cu_attention(const lb_cu_kv *kv, const float *q, float *out, int n_tok, int t0, int n_run, int n_heads,
                     int n_kv_heads, int hd, const int32_t *idx, float *scores, int max_pos, int window, cudaStream_t s) {
    clo c = closure(F_ATT);
    c.kv = *kv, c.p[0] = q, c.p[1] = out, c.p[2] = idx;
    c.v[0] = n_tok, c.v[1] = t0, c.v[2] = n_run, c.v[3] = n_heads, c.v[4] = n_kv_heads, c.v[5] = hd, c.v[6] = window;
    submit(&c);
}

/* the tiled prompt kernel computes what the per-token one does over the same tables */
int lb_cu_attention_prefill_ok(int hd) { return hd % 8 == 0 && hd <= 128; }
void lb_cu_attention_prefill(const lb_cu_kv *kv, const float *q, float *out, int n_tok, int t0, int n_run, int n_heads,
                             int n_kv_heads, int hd, const int32_t *idx, int window, cudaStream_t s) {
    lb_cu_attention(kv, q, out, n_tok, t0, n_run, n_heads, n_kv_heads, hd, idx, NULL, 0, window, s);
}

/* the prompt path (cuBLAS on F16 copies) runs op by op only: never during a capture */
void lb_cu_to_half(const float *x, uint16_t *out, size_t n, int bf16, cudaStream_t s) {
    if (capturing) abort();
    for (size_t i = 0; i < n; i++) out[i] = bf16 ? lb_f32_to_bf16(x[i]) : lb_f32_to_fp16(x[i]);
}

void lb_cu_quant_act_half(const float *x, int n_tok, int k, uint16_t *out, cudaStream_t s) {
    if (capturing) abort();
    for (size_t b = 0; b < (size_t)n_tok * (k / 32); b++) {
        int8_t q[32];
        float d;
        quant_block(x + b * 32, q, &d);
        for (int i = 0; i < 32; i++) out[b * 32 + i] = lb_f32_to_fp16(d * q[i]);
    }
}

void lb_cu_dequant_half(int type, const void *wq, const uint16_t *wd, size_t n, uint16_t *out, cudaStream_t s) {
    if (capturing) abort();
    for (size_t i = 0; i < n; i++)
        out[i] = lb_f32_to_fp16(h2f(wd[i / 32]) * (float)quant_at(type, wq, 32, (int64_t)(i / 32), (int64_t)(i % 32)));
}

/* ---- the runtime and cuBLAS calls the backend makes ------------------------------------------ */

static struct CUstream_st g_stream;

cudaError_t cudaGetDeviceCount(int *n) { return *n = 1, cudaSuccess; }
cudaError_t cudaSetDevice(int d) { return cudaSuccess; }
cudaError_t cudaStreamCreate(cudaStream_t *s) { return *s = &g_stream, cudaSuccess; }
cudaError_t cudaMalloc(void **p, size_t n) {
    return (*p = calloc(1, n ? n : 1)) ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned flags) { return cudaMalloc(p, n); }
cudaError_t cudaFreeHost(void *p) { return free(p), cudaSuccess; }
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
const char *cudaGetErrorString(cudaError_t e) { return "error of the CUDA stand-in"; }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

cudaError_t cudaFree(void *p) {
    if (capturing) abort();
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *d, const void *s, size_t n, enum cudaMemcpyKind k) {
    if (capturing) abort();
    memmove(d, s, n);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, enum cudaMemcpyKind k, cudaStream_t st) {
    if (capturing && k != cudaMemcpyDeviceToDevice) abort(); /* the backend captures device copies only */
    clo c = closure(F_CPY);
    c.p[0] = d, c.p[1] = s, c.z = n;
    submit(&c);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    if (capturing) abort();
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int d) {
    memset(p, 0, sizeof *p);
    strcpy(p->name, "CUDA stand-in (tests/cuda/fake_cuda.c)");
    p->totalGlobalMem = (size_t)64 << 30;
    return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, enum cudaStreamCaptureMode m) {
    if (capturing) abort();
    capturing = 1;
    cap_n = 0;
    return cudaSuccess;
}

static clo *copy_of(const clo *c, int n) {
    clo *d = malloc((size_t)(n + 1) * sizeof *d);
    if (!d) abort();
    return memcpy(d, c, (size_t)n * sizeof *d);
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g) {
    capturing = 0;
    if (!(*g = malloc(sizeof **g))) abort();
    (*g)->n = cap_n, (*g)->c = copy_of(cap_list, cap_n);
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long flags) {
    if (!(*e = malloc(sizeof **e))) abort();
    (*e)->n = g->n, (*e)->c = copy_of(g->c, g->n);
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    free(g->c);
    free(g);
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
    free(e->c);
    free(e);
    return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
    if (capturing) abort();
    for (int i = 0; i < e->n; i++) run(&e->c[i]);
    return cudaSuccess;
}

/* events (cuda_prof.c's timing): the stand-in runs everything at once, so every time is zero */
cudaError_t cudaEventCreate(cudaEvent_t *e) { return *e = NULL, cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) { return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t e) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) { return *ms = 0, cudaSuccess; }
void lb_cu_spin(int us, cudaStream_t s) {}

cublasStatus_t cublasCreate_v2(cublasHandle_t *h) {
    static struct cublasContext ctx;
    *h = &ctx;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) { return CUBLAS_STATUS_SUCCESS; }

/* the one call the backend makes: C (n x m, column-major) = A^T B, A [m][k] and B [n][k] row-major */
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B, cudaDataType bt,
                            int ldb, const void *beta, void *C, cudaDataType ct, int ldc, cublasComputeType_t comp,
                            cublasGemmAlgo_t algo) {
    if (capturing) abort();
    const uint16_t *a = A, *b = B;
    float *c = C;
    int bf = at == CUDA_R_16BF;
    for (int t = 0; t < n; t++)
        for (int r = 0; r < m; r++) {
            float acc = 0;
            for (int i = 0; i < k; i++) {
                uint16_t wa = a[(size_t)r * lda + i], xb = b[(size_t)t * ldb + i];
                acc += (bf ? lb_bf16_to_f32(wa) : h2f(wa)) * (bf ? lb_bf16_to_f32(xb) : h2f(xb));
            }
            c[(size_t)t * ldc + r] = acc;
        }
    return CUBLAS_STATUS_SUCCESS;
}
