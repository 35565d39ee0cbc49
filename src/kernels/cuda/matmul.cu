// Matrix-vector and small-batch products: one warp per weight row, each weight element loaded
// once into registers and used for every token of the launch (decode reads weights at memory
// speed only if nothing else does). The quantized types add int8 dot products (dp4a) per
// 32-element block, scaled by the two block scales, in the order the CPU kernels use.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_kernels.h"

#define WARPS 4

static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }

// One warp per 32-element block of one token: absmax, scale rounded to F16, round-half-even.
static __global__ void k_quant_act(const float *x, int k, int8_t *xq, float *xd) {
    int t = blockIdx.y, b = blockIdx.x * WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (b * 32 >= k) return;
    float v = x[(size_t)t * k + b * 32 + lane], a = fabsf(v);
    for (int o = 16; o > 0; o >>= 1) a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, o));
    float d = __half2float(__float2half_rn(a / 127)), id = d > 0 ? 1.0f / d : 0;
    float r = v * id;
    int q = r >= -127.0f ? (r > 127.0f ? 127 : __float2int_rn(r)) : -127;
    xq[(size_t)t * k + b * 32 + lane] = (int8_t)q;
    if (!lane) xd[(size_t)t * (k / 32) + b] = d;
}

template <int NT>
static __global__ void k_mv_q8_0(const int8_t *wq, const uint16_t *wd, const int8_t *xq, const float *xd, int rows, int k,
                          float *y) {
    int r = blockIdx.x * WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= rows) return;
    int nb = k / 32;
    float acc[NT] = {0};
#pragma unroll 4 // several independent weight loads in flight per lane
    for (int b = lane; b < nb; b += 32) {
        const int4 *wp = (const int4 *)(wq + (size_t)r * k + b * 32);
        int4 w0 = wp[0], w1 = wp[1];
        float dw = h2f(wd[(size_t)r * nb + b]);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const int4 *xp = (const int4 *)(xq + (size_t)t * k + b * 32);
            int4 x0 = xp[0], x1 = xp[1];
            int s = __dp4a(w0.x, x0.x, 0);
            s = __dp4a(w0.y, x0.y, s); s = __dp4a(w0.z, x0.z, s); s = __dp4a(w0.w, x0.w, s);
            s = __dp4a(w1.x, x1.x, s); s = __dp4a(w1.y, x1.y, s); s = __dp4a(w1.z, x1.z, s);
            s = __dp4a(w1.w, x1.w, s);
            acc[t] += dw * xd[(size_t)t * nb + b] * (float)s;
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        float v = warp_sum(acc[t]);
        if (!lane) y[(size_t)t * rows + r] = v;
    }
}

template <int NT>
static __global__ void k_mv_q4_0(const uint8_t *wq, const uint16_t *wd, const int8_t *xq, const float *xd, int rows, int k,
                          float *y) {
    int r = blockIdx.x * WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= rows) return;
    int nb = k / 32;
    float acc[NT] = {0};
#pragma unroll 4 // several independent weight loads in flight per lane
    for (int b = lane; b < nb; b += 32) {
        int4 w = *(const int4 *)(wq + (size_t)r * (k / 2) + b * 16);
        int wv[4] = {w.x, w.y, w.z, w.w}, lo[4], hi[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            lo[i] = wv[i] & 0x0F0F0F0F; // elements 4i..4i+3
            hi[i] = (wv[i] >> 4) & 0x0F0F0F0F; // elements 16+4i..
        }
        float dw = h2f(wd[(size_t)r * nb + b]);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const int4 *xp = (const int4 *)(xq + (size_t)t * k + b * 32); // two 16-byte loads, not eight
            int4 x0 = xp[0], x1 = xp[1];
            int xlo[4] = {x0.x, x0.y, x0.z, x0.w}, xhi[4] = {x1.x, x1.y, x1.z, x1.w};
            int s = 0, sx = 0;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int xa = xlo[i], xb = xhi[i];
                s = __dp4a(lo[i], xa, s);
                s = __dp4a(hi[i], xb, s);
                sx = __dp4a(0x01010101, xa, sx);
                sx = __dp4a(0x01010101, xb, sx);
            }
            acc[t] += dw * xd[(size_t)t * nb + b] * (float)(s - 8 * sx);
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        float v = warp_sum(acc[t]);
        if (!lane) y[(size_t)t * rows + r] = v;
    }
}

template <typename W> static __device__ __forceinline__ float ld(const W *p);
template <> __device__ __forceinline__ float ld<float>(const float *p) { return *p; }
template <> __device__ __forceinline__ float ld<__half>(const __half *p) { return __half2float(*p); }
template <> __device__ __forceinline__ float ld<__nv_bfloat16>(const __nv_bfloat16 *p) { return __bfloat162float(*p); }

// Float weights: 16-byte loads where rows are 16-byte aligned, element loads for the rest.
template <typename W, int NT>
static __global__ void k_mv_float(const W *w, const float *x, int rows, int k, float *y) {
    int r = blockIdx.x * WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= rows) return;
    const W *wr = w + (size_t)r * k;
    const int V = 16 / sizeof(W);
    float acc[NT] = {0};
    int kv = (k % V) || ((uintptr_t)x & 15) ? 0 : k; // the vector loops need aligned rows of w and x
#pragma unroll 4
    for (int i = lane * V; i < kv; i += 32 * V) {
        int4 raw = *(const int4 *)(wr + i);
        const W *e = (const W *)&raw;
        float wf[V];
#pragma unroll
        for (int j = 0; j < V; j++) wf[j] = ld<W>(e + j);
#pragma unroll
        for (int t = 0; t < NT; t++) { // x in 16-byte loads too: k % V == 0 keeps every row aligned
            const float4 *xp = (const float4 *)(x + (size_t)t * k + i);
#pragma unroll
            for (int j = 0; j < V / 4; j++) {
                float4 xv = xp[j];
                acc[t] += wf[4 * j] * xv.x;
                acc[t] += wf[4 * j + 1] * xv.y;
                acc[t] += wf[4 * j + 2] * xv.z;
                acc[t] += wf[4 * j + 3] * xv.w;
            }
        }
    }
    for (int i = kv + lane; i < k; i += 32) {
        float wf = ld<W>(wr + i);
#pragma unroll
        for (int t = 0; t < NT; t++) acc[t] += wf * x[(size_t)t * k + i];
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        float v = warp_sum(acc[t]);
        if (!lane) y[(size_t)t * rows + r] = v;
    }
}

template <int NT>
static void mv_n(int type, const void *wq, const uint16_t *wd, const float *x, const int8_t *xq, const float *xd,
                 int rows, int k, float *y, cudaStream_t s) {
    dim3 g((rows + WARPS - 1) / WARPS), b(32 * WARPS);
    switch (type) {
    case LB_CU_Q8_0: k_mv_q8_0<NT><<<g, b, 0, s>>>((const int8_t *)wq, wd, xq, xd, rows, k, y); break;
    case LB_CU_Q4_0: k_mv_q4_0<NT><<<g, b, 0, s>>>((const uint8_t *)wq, wd, xq, xd, rows, k, y); break;
    case LB_CU_F16: k_mv_float<__half, NT><<<g, b, 0, s>>>((const __half *)wq, x, rows, k, y); break;
    case LB_CU_BF16: k_mv_float<__nv_bfloat16, NT><<<g, b, 0, s>>>((const __nv_bfloat16 *)wq, x, rows, k, y); break;
    default: k_mv_float<float, NT><<<g, b, 0, s>>>((const float *)wq, x, rows, k, y); break;
    }
}

extern "C" void lb_cu_quant_act(const float *x, int n_tok, int k, int8_t *xq, float *xd, cudaStream_t s) {
    dim3 g((k / 32 + WARPS - 1) / WARPS, n_tok);
    k_quant_act<<<g, 32 * WARPS, 0, s>>>(x, k, xq, xd);
}

extern "C" void lb_cu_mv(int type, const void *wq, const uint16_t *wd, const float *x, const int8_t *xq,
                         const float *xd, int rows, int k, int n_tok, float *y, cudaStream_t s) {
    switch (n_tok) {
    case 1: mv_n<1>(type, wq, wd, x, xq, xd, rows, k, y, s); break;
    case 2: mv_n<2>(type, wq, wd, x, xq, xd, rows, k, y, s); break;
    case 3: mv_n<3>(type, wq, wd, x, xq, xd, rows, k, y, s); break;
    case 4: mv_n<4>(type, wq, wd, x, xq, xd, rows, k, y, s); break;
    case 5: mv_n<5>(type, wq, wd, x, xq, xd, rows, k, y, s); break;
    case 6: mv_n<6>(type, wq, wd, x, xq, xd, rows, k, y, s); break;
    case 7: mv_n<7>(type, wq, wd, x, xq, xd, rows, k, y, s); break;
    default: mv_n<8>(type, wq, wd, x, xq, xd, rows, k, y, s); break;
    }
}

static __global__ void k_to_half(const float *x, void *out, size_t n, int bf16) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (bf16) ((__nv_bfloat16 *)out)[i] = __float2bfloat16_rn(x[i]);
    else ((__half *)out)[i] = __float2half_rn(x[i]);
}

extern "C" void lb_cu_to_half(const float *x, uint16_t *out, size_t n, int bf16, cudaStream_t s) {
    if (n) k_to_half<<<(unsigned)((n + 255) / 256), 256, 0, s>>>(x, out, n, bf16);
}

// Prompts of quantized weights: activations quantized to Q8_0 exactly as k_quant_act does, then
// stored as F16 values d * q (within 2^-11 of the CPU's int8 codes times scale), so cuBLAS's F16
// product adds the same quantized activations the CPU kernels do.
static __global__ void k_quant_act_half(const float *x, int k, __half *out) {
    int t = blockIdx.y, b = blockIdx.x * WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (b * 32 >= k) return;
    size_t i = (size_t)t * k + b * 32 + lane;
    float v = x[i], a = fabsf(v);
    for (int o = 16; o > 0; o >>= 1) a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, o));
    float d = __half2float(__float2half_rn(a / 127)), id = d > 0 ? 1.0f / d : 0;
    float r = v * id;
    int q = r >= -127.0f ? (r > 127.0f ? 127 : __float2int_rn(r)) : -127;
    out[i] = __float2half_rn(d * (float)q);
}

extern "C" void lb_cu_quant_act_half(const float *x, int n_tok, int k, uint16_t *out, cudaStream_t s) {
    dim3 g((k / 32 + WARPS - 1) / WARPS, n_tok);
    k_quant_act_half<<<g, 32 * WARPS, 0, s>>>(x, k, (__half *)out);
}

// One thread per 8 consecutive elements (a quarter block): one 8-byte load of codes, one
// 16-byte store. Q4_0 quarter c holds low nibbles (c < 2) or high nibbles of bytes 8(c&1)...
static __global__ void k_dequant_half(int q4, const uint8_t *wq, const uint16_t *wd, size_t n8, __half *out) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n8) return;
    size_t b = i / 4;
    int c = (int)(i % 4);
    float d = h2f(wd[b]);
    uint2 raw = *(const uint2 *)(wq + (q4 ? b * 16 + (c & 1) * 8 : b * 32 + c * 8));
    const uint8_t *by = (const uint8_t *)&raw;
    __align__(16) __half h[8];
#pragma unroll
    for (int j = 0; j < 8; j++) {
        int q = q4 ? (c < 2 ? by[j] & 15 : by[j] >> 4) - 8 : (int)(int8_t)by[j];
        h[j] = __float2half_rn(d * (float)q);
    }
    *(int4 *)(out + i * 8) = *(const int4 *)h;
}

extern "C" void lb_cu_dequant_half(int type, const void *wq, const uint16_t *wd, size_t n, uint16_t *out,
                                   cudaStream_t s) {
    size_t n8 = n / 8;
    if (n8) k_dequant_half<<<(unsigned)((n8 + 255) / 256), 256, 0, s>>>(type == LB_CU_Q4_0, (const uint8_t *)wq, wd, n8, (__half *)out);
}
