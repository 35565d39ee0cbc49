// Matrix-vector and small-batch products (decode) and the conversions of the prompt path. The
// register kernels load each weight element once and use it for every token of the launch
// (decode reads weights at memory speed only if nothing else does); the quantized types add
// int8 dot products (dp4a) per 32-element block, scaled by the two block scales, in the order
// the CPU kernels use.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_kernels.h"

#define WARPS 4

static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }

template <typename W> static __device__ __forceinline__ float ld(const W *p);
template <> __device__ __forceinline__ float ld<float>(const float *p) { return *p; }
template <> __device__ __forceinline__ float ld<__half>(const __half *p) { return __half2float(*p); }
template <> __device__ __forceinline__ float ld<__nv_bfloat16>(const __nv_bfloat16 *p) { return __bfloat162float(*p); }

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

extern "C" void lb_cu_quant_act(const float *x, int n_tok, int k, int8_t *xq, float *xd, cudaStream_t s) {
    dim3 g((k / 32 + WARPS - 1) / WARPS, n_tok);
    k_quant_act<<<g, 32 * WARPS, 0, s>>>(x, k, xq, xd);
}

// ---- matrix-vector products (decode and batches of up to LB_CU_MV_TOK tokens) ----------
//
// A row's K range is cut into units (16 bytes of float weights, or one 32-element block of
// Q8_0 / Q4_0); S warps share a row and lane j of them takes units j, j + 32S, j + 64S, ... in
// that order, then the warps' sums are added in warp order through shared memory. S comes from
// the shape alone (rows, units, SM count), never from the number of tokens, so a token's sum
// order along K is the same in a launch of 1 token or 8: batched == single, bitwise. A warp
// takes R rows at once so each activation load serves R rows (decode reads the activations
// from cache R times less), and each lane issues the loads of U units before using any, so
// enough bytes are in flight per SM for small products to reach the memory's bandwidth.

struct mv_args {
    const void *w;
    const uint16_t *wd;
    const float *x;
    const int8_t *xq;
    const float *xd;
    int rows, k;
    float *y;
};

// Float weights in 16-byte units (V elements), activations as float4.
template <typename W> struct unit_vec {
    enum { V = 16 / sizeof(W), U = 4 };
    typedef int4 raw;
    struct act { float v[V]; };
    static __device__ int units(int k) { return k / V; }
    static __device__ raw load(const mv_args &a, size_t r, int u) { return ((const int4 *)((const W *)a.w + r * a.k))[u]; }
    static __device__ act load_x(const mv_args &a, int t, int u) {
        act x;
        const float4 *p = (const float4 *)(a.x + (size_t)t * a.k + u * V);
#pragma unroll
        for (int j = 0; j < V / 4; j++) {
            float4 f = p[j];
            x.v[4 * j] = f.x, x.v[4 * j + 1] = f.y, x.v[4 * j + 2] = f.z, x.v[4 * j + 3] = f.w;
        }
        return x;
    }
    static __device__ void fma(const raw &w, const act &x, float &acc) {
        const W *e = (const W *)&w;
#pragma unroll
        for (int j = 0; j < V; j++) acc = fmaf(ld<W>(e + j), x.v[j], acc);
    }
};

// Float weights one element a unit: rows of k % V != 0 elements, or activations not 16-byte aligned.
template <typename W> struct unit_elem {
    enum { U = 4 };
    typedef W raw;
    typedef float act;
    static __device__ int units(int k) { return k; }
    static __device__ raw load(const mv_args &a, size_t r, int u) { return ((const W *)a.w)[r * a.k + u]; }
    static __device__ act load_x(const mv_args &a, int t, int u) { return a.x[(size_t)t * a.k + u]; }
    static __device__ void fma(const raw &w, const act &x, float &acc) { acc = fmaf(ld<W>(&w), x, acc); }
};

// Q8_0 / Q4_0 blocks against the Q8_0 activations: the integer dot product (dp4a), times both
// scales, added in block order as the CPU kernels do.
struct q_act {
    int4 lo, hi;
    float d;
};
static __device__ q_act load_q_act(const mv_args &a, int t, int u) {
    const int4 *p = (const int4 *)(a.xq + (size_t)t * a.k + u * 32);
    q_act x = {p[0], p[1], a.xd[(size_t)t * (a.k / 32) + u]};
    return x;
}

struct unit_q8_0 {
    enum { U = 2 }; // two 16-byte loads a unit already
    struct raw { int4 lo, hi; uint16_t d; };
    typedef q_act act;
    static __device__ int units(int k) { return k / 32; }
    static __device__ raw load(const mv_args &a, size_t r, int u) {
        const int4 *p = (const int4 *)((const int8_t *)a.w + r * a.k + u * 32);
        raw w = {p[0], p[1], a.wd[r * (a.k / 32) + u]};
        return w;
    }
    static __device__ act load_x(const mv_args &a, int t, int u) { return load_q_act(a, t, u); }
    static __device__ void fma(const raw &w, const act &x, float &acc) {
        int s = __dp4a(w.lo.x, x.lo.x, 0);
        s = __dp4a(w.lo.y, x.lo.y, s), s = __dp4a(w.lo.z, x.lo.z, s), s = __dp4a(w.lo.w, x.lo.w, s);
        s = __dp4a(w.hi.x, x.hi.x, s), s = __dp4a(w.hi.y, x.hi.y, s), s = __dp4a(w.hi.z, x.hi.z, s);
        s = __dp4a(w.hi.w, x.hi.w, s);
        acc = fmaf(h2f(w.d) * x.d, (float)s, acc);
    }
};

// Q4_0: 16 bytes a block, low nibbles elements 0..15, high nibbles 16..31, stored minus 8.
struct unit_q4_0 {
    enum { U = 4 };
    struct raw { int4 q; uint16_t d; };
    typedef q_act act;
    static __device__ int units(int k) { return k / 32; }
    static __device__ raw load(const mv_args &a, size_t r, int u) {
        raw w = {((const int4 *)((const uint8_t *)a.w + r * (a.k / 2)))[u], a.wd[r * (a.k / 32) + u]};
        return w;
    }
    static __device__ act load_x(const mv_args &a, int t, int u) { return load_q_act(a, t, u); }
    static __device__ void fma(const raw &w, const act &x, float &acc) {
        const int wv[4] = {w.q.x, w.q.y, w.q.z, w.q.w}, xl[4] = {x.lo.x, x.lo.y, x.lo.z, x.lo.w},
                  xh[4] = {x.hi.x, x.hi.y, x.hi.z, x.hi.w};
        int s = 0, sx = 0;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            s = __dp4a(wv[i] & 0x0F0F0F0F, xl[i], s);
            s = __dp4a((wv[i] >> 4) & 0x0F0F0F0F, xh[i], s);
            sx = __dp4a(0x01010101, xl[i], sx);
            sx = __dp4a(0x01010101, xh[i], sx);
        }
        acc = fmaf(h2f(w.d) * x.d, (float)(s - 8 * sx), acc);
    }
};

#define MV_MAX_WARPS 8

// Block: G = warps / S groups of S warps, each group R consecutive rows.
template <class T, int NT, int R>
static __global__ void __launch_bounds__(32 * MV_MAX_WARPS) k_mv(mv_args a, int S) {
    __shared__ float red[MV_MAX_WARPS * R * NT];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, G = blockDim.x / 32 / S, g = warp / S;
    const int r0 = (blockIdx.x * G + g) * R, nu = T::units(a.k), step = 32 * S;
    size_t row[R];
#pragma unroll
    for (int i = 0; i < R; i++) row[i] = r0 + i < a.rows ? r0 + i : a.rows - 1; // past the end: loads, no store
    float acc[R][NT];
#pragma unroll
    for (int i = 0; i < R; i++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[i][t] = 0;
    for (int u0 = (warp % S) * 32 + lane; u0 < nu; u0 += T::U * step) {
        typename T::raw w[T::U][R];
#pragma unroll
        for (int j = 0; j < T::U; j++)
            if (u0 + j * step < nu)
#pragma unroll
                for (int i = 0; i < R; i++) w[j][i] = T::load(a, row[i], u0 + j * step);
#pragma unroll
        for (int j = 0; j < T::U; j++)
            if (u0 + j * step < nu)
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    typename T::act x = T::load_x(a, t, u0 + j * step);
#pragma unroll
                    for (int i = 0; i < R; i++) T::fma(w[j][i], x, acc[i][t]);
                }
    }
#pragma unroll
    for (int i = 0; i < R; i++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float v = warp_sum(acc[i][t]);
            if (lane) continue;
            if (S == 1 && r0 + i < a.rows) a.y[(size_t)t * a.rows + r0 + i] = v;
            else if (S > 1) red[(warp * R + i) * NT + t] = v;
        }
    if (S == 1) return;
    __syncthreads();
    for (int o = threadIdx.x; o < G * R * NT; o += blockDim.x) {
        int gg = o / (R * NT), i = o / NT % R, t = o % NT, r = (blockIdx.x * G + gg) * R + i;
        float v = red[(gg * S * R + i) * NT + t];
        for (int s = 1; s < S; s++) v += red[((gg * S + s) * R + i) * NT + t];
        if (r < a.rows) a.y[(size_t)t * a.rows + r] = v;
    }
}

static int mv_sm_count(void) {
    static int n;
    if (!n && (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess || n < 1)) n = 1;
    return n;
}

// Float weights take 16-byte units where every row of w and x starts 16-byte aligned.
static int mv_vec(int type, const float *x, int k) {
    int v = type == LB_CU_F32 ? 4 : 8;
    return type == LB_CU_Q8_0 || type == LB_CU_Q4_0 || (k % v == 0 && !((uintptr_t)x & 15));
}

static int mv_units(int type, const float *x, int k) {
    if (type == LB_CU_Q8_0 || type == LB_CU_Q4_0) return k / 32;
    return mv_vec(type, x, k) ? k / (type == LB_CU_F32 ? 4 : 8) : k;
}

template <class T, int NT, int R> static void mv_launch(const mv_args &a, int S, cudaStream_t s) {
    int warps = S > 4 ? S : 4, rows_per_block = warps / S * R;
    k_mv<T, NT, R><<<(a.rows + rows_per_block - 1) / rows_per_block, 32 * warps, 0, s>>>(a, S);
}

template <int NT, int R> static void mv_type(int type, const mv_args &a, int S, cudaStream_t s) {
    int vec = mv_vec(type, a.x, a.k);
    switch (type) {
    case LB_CU_Q8_0: mv_launch<unit_q8_0, NT, R>(a, S, s); break;
    case LB_CU_Q4_0: mv_launch<unit_q4_0, NT, R>(a, S, s); break;
    case LB_CU_F16: vec ? mv_launch<unit_vec<__half>, NT, R>(a, S, s) : mv_launch<unit_elem<__half>, NT, R>(a, S, s); break;
    case LB_CU_BF16:
        vec ? mv_launch<unit_vec<__nv_bfloat16>, NT, R>(a, S, s) : mv_launch<unit_elem<__nv_bfloat16>, NT, R>(a, S, s);
        break;
    default: vec ? mv_launch<unit_vec<float>, NT, R>(a, S, s) : mv_launch<unit_elem<float>, NT, R>(a, S, s); break;
    }
}

// Decode (one token) takes MV_DEC_ROWS rows a warp; batches one row a warp (their activation
// loads are already shared by the weights of several tokens).
#define MV_DEC_ROWS 2
// warps per SM the split aims at (bench/cuda_mv.cu on the H100: 64 beats 32 by up to 10% on
// the 7B products, the same elsewhere), and the fewest units a lane keeps after it
#define MV_WARPS_PER_SM 64
#define MV_MIN_UNITS 2

extern "C" int lb_cu_mv_split(int type, const float *x, int rows, int k) {
    long nu = mv_units(type, x, k), target = (long)mv_sm_count() * MV_WARPS_PER_SM * MV_DEC_ROWS;
    int S = 1;
    while (S < MV_MAX_WARPS && (long)rows * S < target && nu >= (long)MV_MIN_UNITS * 32 * 2 * S) S *= 2;
    return S;
}

extern "C" void lb_cu_mv_cfg(int type, const void *wq, const uint16_t *wd, const float *x, const int8_t *xq,
                             const float *xd, int rows, int k, int n_tok, float *y, int split, int rows_per_warp,
                             cudaStream_t s) {
    mv_args a = {wq, wd, x, xq, xd, rows, k, y};
    if (n_tok == 1 && rows_per_warp == 4) return mv_type<1, 4>(type, a, split, s);
    if (n_tok == 1 && rows_per_warp == 2) return mv_type<1, 2>(type, a, split, s);
    if (n_tok == 2 && rows_per_warp == 2) return mv_type<2, 2>(type, a, split, s);
    switch (n_tok) {
    case 1: mv_type<1, 1>(type, a, split, s); break;
    case 2: mv_type<2, 1>(type, a, split, s); break;
    case 3: mv_type<3, 1>(type, a, split, s); break;
    case 4: mv_type<4, 1>(type, a, split, s); break;
    case 5: mv_type<5, 1>(type, a, split, s); break;
    case 6: mv_type<6, 1>(type, a, split, s); break;
    case 7: mv_type<7, 1>(type, a, split, s); break;
    default: mv_type<8, 1>(type, a, split, s); break;
    }
}

extern "C" void lb_cu_mv(int type, const void *wq, const uint16_t *wd, const float *x, const int8_t *xq,
                         const float *xd, int rows, int k, int n_tok, float *y, cudaStream_t s) {
    lb_cu_mv_cfg(type, wq, wd, x, xq, xd, rows, k, n_tok, y, lb_cu_mv_split(type, x, rows, k),
                 n_tok == 1 ? MV_DEC_ROWS : 1, s);
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
