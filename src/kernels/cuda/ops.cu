// The element-wise and per-row ops, the KV store and attention over the paged cache. Each
// follows the CPU backend's arithmetic (src/kernels/backend_cpu.c) closely enough to agree
// within rounding: RMSNorm sums squares in double, softmax subtracts the maximum first.
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_kernels.h"

#define NT 256 // threads of the per-row kernels

template <typename T> static __device__ T block_reduce(T v, bool is_max) {
    __shared__ T sh[32];
    for (int o = 16; o > 0; o >>= 1) {
        T u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? (u > v ? u : v) : v + u;
    }
    int w = threadIdx.x / 32, lane = threadIdx.x % 32, nw = (blockDim.x + 31) / 32;
    __syncthreads(); // sh may still be read by a previous call
    if (!lane) sh[w] = v;
    __syncthreads();
    v = sh[0];
    for (int i = 1; i < nw; i++) v = is_max ? (sh[i] > v ? sh[i] : v) : v + sh[i];
    return v;
}

// One block a row. With add, x += add first (as lb_cu_add: the residual) and the sum of squares
// is of the new x; with xq, each warp's 32 consecutive outputs are one Q8_0 block of the
// quantized copy, made as k_quant_act makes it (matmul.cu), so the fused launch gives the bits
// of the separate ones.
static __global__ void k_rmsnorm(float *out, float *x, const float *add, const float *w, int n, float eps, int8_t *xq,
                                 float *xd) {
    float *xr = x + (size_t)blockIdx.x * n;
    float *o = out + (size_t)blockIdx.x * n;
    double ss = 0;
    if (add) {
        const float *ar = add + (size_t)blockIdx.x * n;
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            float v = xr[i] + ar[i];
            xr[i] = v;
            ss += (double)v * v;
        }
    } else {
        for (int i = threadIdx.x; i < n; i += blockDim.x) ss += (double)xr[i] * xr[i];
    }
    ss = block_reduce<double>(ss, false);
    float s = (float)(1.0 / sqrt(ss / (double)(n > 0 ? n : 1) + eps));
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = w ? (xr[i] * s) * w[i] : xr[i] * s;
        o[i] = v;
        if (!xq) continue;
        float a = fabsf(v);
        for (int m = 16; m > 0; m >>= 1) a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, m));
        float d = __half2float(__float2half_rn(a / 127)), id = d > 0 ? 1.0f / d : 0;
        float r = v * id;
        int q = r >= -127.0f ? (r > 127.0f ? 127 : __float2int_rn(r)) : -127;
        xq[(size_t)blockIdx.x * n + i] = (int8_t)q;
        if (i % 32 == 0) xd[(size_t)blockIdx.x * (n / 32) + i / 32] = d;
    }
}

extern "C" void lb_cu_add_rmsnorm(float *out, float *x, const float *add, const float *w, int n_tok, int n, float eps,
                                  int8_t *xq, float *xd, cudaStream_t s) {
    if (n_tok > 0) k_rmsnorm<<<n_tok, NT, 0, s>>>(out, x, add, w, n, eps, xq, xd);
}

static __global__ void k_rope(float *x, int n_heads, int hd, size_t row_stride, const float *cs_all, int neox) {
    int t = blockIdx.x, half = hd / 2;
    const float *cs = cs_all + (size_t)t * hd, *sn = cs + half;
    for (int j = threadIdx.x; j < n_heads * half; j += blockDim.x) {
        int h = j / half, i = j % half;
        float *v = x + (size_t)t * row_stride + (size_t)h * hd;
        int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        float x0 = v[a], x1 = v[b];
        v[a] = x0 * cs[i] - x1 * sn[i];
        v[b] = x0 * sn[i] + x1 * cs[i];
    }
}

extern "C" void lb_cu_rope(float *x, int n_tok, int n_heads, int hd, size_t row_stride, const float *cs, int neox,
                           cudaStream_t s) {
    if (n_tok > 0) k_rope<<<n_tok, NT, 0, s>>>(x, n_heads, hd, row_stride, cs, neox);
}

static __global__ void k_glu(float *g, const float *u, size_t n, int act) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = g[i];
    if (act == 1) {
        float r = v > 0 ? v : 0;
        g[i] = r * r * u[i];
    } else {
        g[i] = v / (1.0f + expf(-v)) * u[i];
    }
}

static __global__ void k_add(float *y, const float *x, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += x[i];
}

static __global__ void k_scale(float *y, float a, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] *= a;
}

static unsigned blocks_for(size_t n) { return (unsigned)((n + NT - 1) / NT); }

extern "C" void lb_cu_glu(float *gate, const float *up, size_t n, int act, cudaStream_t s) {
    if (n) k_glu<<<blocks_for(n), NT, 0, s>>>(gate, up, n, act);
}
extern "C" void lb_cu_add(float *y, const float *x, size_t n, cudaStream_t s) {
    if (n) k_add<<<blocks_for(n), NT, 0, s>>>(y, x, n);
}
extern "C" void lb_cu_scale(float *y, float a, size_t n, cudaStream_t s) {
    if (n) k_scale<<<blocks_for(n), NT, 0, s>>>(y, a, n);
}

// ---- KV cache ---------------------------------------------------------------------------

// Q8_0 rows: 34-byte blocks (F16 scale, 32 int8), as the CPU's lb_block_q8_0.
static __device__ void store_elem(int type, const float *src, uint8_t *dst, int i, int n) {
    if (type == 2) {
        int lane = threadIdx.x % 32;
        float v = src[i], a = fabsf(v);
        for (int o = 16; o > 0; o >>= 1) a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, o));
        __half dh = __float2half_rn(a / 127);
        float d = __half2float(dh), id = d > 0 ? 1.0f / d : 0, r = v * id;
        int q = r >= -127.0f ? (r > 127.0f ? 127 : __float2int_rn(r)) : -127;
        uint8_t *blk = dst + (size_t)(i / 32) * 34;
        blk[2 + lane] = (uint8_t)(int8_t)q;
        if (!lane) {
            uint16_t hb = __half_as_ushort(dh);
            blk[0] = (uint8_t)(hb & 0xff);
            blk[1] = (uint8_t)(hb >> 8);
        }
    } else if (type == 1) {
        ((__half *)dst)[i] = __float2half_rn(src[i]);
    } else {
        ((float *)dst)[i] = src[i];
    }
}

// kv_dim is a multiple of 32 for Q8_0 (the engine checks head_dim), so whole warps share a block.
static __global__ void k_kv_store(lb_cu_kv kv, const float *k, const float *v, int kv_dim, const int32_t *slot) {
    int t = blockIdx.x;
    uint8_t *b = kv.base + (size_t)slot[2 * t] * kv.block_bytes + (size_t)slot[2 * t + 1] * kv.row_bytes;
    int n_round = (kv_dim + 31) / 32 * 32;
    for (int i = threadIdx.x; i < n_round; i += blockDim.x) {
        if (kv.kv_type == 2 || i < kv_dim) {
            store_elem(kv.kv_type, k + (size_t)t * kv_dim, b + kv.k_off, i, kv_dim);
            store_elem(kv.kv_type, v + (size_t)t * kv_dim, b + kv.v_off, i, kv_dim);
        }
    }
}

extern "C" void lb_cu_kv_store(const lb_cu_kv *kv, const float *k, const float *v, int n_tok, int kv_dim,
                               const int32_t *slot, cudaStream_t s) {
    if (n_tok > 0) k_kv_store<<<n_tok, NT, 0, s>>>(*kv, k, v, kv_dim, slot);
}

static __device__ float load_kv(int type, const uint8_t *row, int i) {
    if (type == 2) {
        const uint8_t *blk = row + (size_t)(i / 32) * 34;
        uint16_t hb = (uint16_t)(blk[0] | (blk[1] << 8));
        return __half2float(__ushort_as_half(hb)) * (float)(int8_t)blk[2 + i % 32];
    }
    if (type == 1) return __half2float(((const __half *)row)[i]);
    return ((const float *)row)[i];
}

#define ATT_POS 4 // positions a warp scores at once

// One block per (head, token) of tokens t0.. (the launch's slice of the batch): one warp per
// position for the scores (lanes split the head's elements, so a K row loads coalesced; ATT_POS
// positions at a time), softmax
// as the CPU does it (maximum first, then the sum), then G = blockDim / hd groups of threads each
// summing every G-th position of V into shared memory, added in group order. Shared memory: q,
// then the groups' partial sums.

static __global__ void k_attention(lb_cu_kv kv, const float *q, float *out, int n_tok, int t0, int n_heads,
                                   int n_kv_heads, int hd, const int32_t *idx, float *scores, int max_pos) {
    extern __shared__ float qs[];
    float *part = qs + hd;
    int h = blockIdx.x, t = t0 + blockIdx.y, kvh = h / (n_heads / n_kv_heads), bt = kv.block_tokens;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    int n_pos = idx[t] + 1;
    const int32_t *table = idx + 2 * n_tok + idx[n_tok + t];
    const float *qh = q + (size_t)t * n_heads * hd + (size_t)h * hd;
    float *sc = scores + ((size_t)blockIdx.y * n_heads + h) * max_pos;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) qs[i] = qh[i];
    __syncthreads();
    float scale = rsqrtf((float)hd), mx = -INFINITY;
    size_t head = (size_t)kvh * kv.head_bytes;
    // ATT_POS positions a warp at once: their K rows load together before the reductions wait
    for (int p0 = warp; p0 < n_pos; p0 += nw * ATT_POS) {
        float s[ATT_POS];
#pragma unroll
        for (int j = 0; j < ATT_POS; j++) {
            int p = p0 + j * nw;
            s[j] = 0;
            if (p >= n_pos) continue;
            const uint8_t *row = kv.base + (size_t)table[p / bt] * kv.block_bytes + kv.k_off + (size_t)(p % bt) * kv.row_bytes + head;
            for (int i = lane; i < hd; i += 32) s[j] += qs[i] * load_kv(kv.kv_type, row, i);
        }
#pragma unroll
        for (int j = 0; j < ATT_POS; j++) {
            for (int o = 16; o > 0; o >>= 1) s[j] += __shfl_xor_sync(0xffffffffu, s[j], o);
            int p = p0 + j * nw;
            if (p >= n_pos) continue;
            s[j] *= scale;
            if (!lane) sc[p] = s[j];
            mx = fmaxf(mx, s[j]);
        }
    }
    mx = block_reduce<float>(mx, true); // its barrier also makes sc visible to the whole block
    float sum = 0;
    for (int p = threadIdx.x; p < n_pos; p += blockDim.x) {
        float e = expf(sc[p] - mx);
        sc[p] = e;
        sum += e;
    }
    sum = block_reduce<float>(sum, false); // also orders the writes of sc before the reads below
    float inv = 1.0f / sum;
    int G = hd < (int)blockDim.x ? (int)blockDim.x / hd : 1;
    for (int i0 = 0; i0 < hd; i0 += blockDim.x) {
        int i = i0 + (int)threadIdx.x % hd, g = (int)threadIdx.x / hd;
        float acc = 0;
        if (g < G && i < hd)
#pragma unroll 4 // independent V loads in flight; the sum stays in position order
            for (int p = g; p < n_pos; p += G) {
                const uint8_t *row = kv.base + (size_t)table[p / bt] * kv.block_bytes + kv.v_off + (size_t)(p % bt) * kv.row_bytes + head;
                acc += sc[p] * inv * load_kv(kv.kv_type, row, i);
            }
        if (G == 1) {
            if (i < hd && threadIdx.x < (unsigned)hd) out[(size_t)t * n_heads * hd + (size_t)h * hd + i] = acc;
            continue;
        }
        if (g < G) part[threadIdx.x] = acc;
        __syncthreads();
        if ((int)threadIdx.x < hd) {
            float o = part[threadIdx.x];
            for (int j = 1; j < G; j++) o += part[j * hd + threadIdx.x];
            out[(size_t)t * n_heads * hd + (size_t)h * hd + threadIdx.x] = o;
        }
    }
}

#define ATT_THREADS 256 // decode has one block a head: 8 warps share its positions

extern "C" void lb_cu_attention(const lb_cu_kv *kv, const float *q, float *out, int n_tok, int t0, int n_run,
                                int n_heads, int n_kv_heads, int hd, const int32_t *idx, float *scores, int max_pos,
                                cudaStream_t s) {
    if (n_run <= 0) return;
    dim3 g(n_heads, n_run);
    size_t sh = ((size_t)hd + ATT_THREADS) * sizeof(float);
    k_attention<<<g, ATT_THREADS, sh, s>>>(*kv, q, out, n_tok, t0, n_heads, n_kv_heads, hd, idx, scores, max_pos);
}
