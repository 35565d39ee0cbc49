// The element-wise and per-row ops, the KV store and attention over the paged cache. Each
// follows the CPU backend's arithmetic (src/kernels/backend_cpu.c) closely enough to agree
// within rounding: RMSNorm sums squares in double, softmax subtracts the maximum first.
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_kernels.h"

#define NT 256 // threads of the per-row kernels
#define NT_NORM 1024 // RMSNorm: one block a row, up to 16 elements a thread

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
// of the separate ones. A row is PER elements a thread, all loaded before any is used: decode
// has one row, one block, and a loop that stored before its next load (x, add and out may
// alias, as far as the compiler knows) waited a full memory latency per element and took
// 10-20 us a call on an H100 (LOWBIT_CUDA_PROFILE=ops).
template <int PER>
static __global__ void __launch_bounds__(NT_NORM) k_rmsnorm(float *out, float *x, const float *add, const float *w, int n,
                                                            float eps, int8_t *xq, float *xd) {
    float *xr = x + (size_t)blockIdx.x * n;
    float *o = out + (size_t)blockIdx.x * n;
    const float *ar = add ? add + (size_t)blockIdx.x * n : NULL;
    float v[PER], wv[PER];
    double ss = 0;
#pragma unroll
    for (int j = 0; j < PER; j++) {
        int i = threadIdx.x + j * NT_NORM;
        v[j] = i < n ? xr[i] : 0;
        wv[j] = i < n && w ? w[i] : 1;
        if (ar && i < n) v[j] += ar[i];
    }
#pragma unroll
    for (int j = 0; j < PER; j++) {
        int i = threadIdx.x + j * NT_NORM;
        if (ar && i < n) xr[i] = v[j];
        ss += (double)v[j] * v[j];
    }
    ss = block_reduce<double>(ss, false);
    float s = (float)(1.0 / sqrt(ss / (double)(n > 0 ? n : 1) + eps));
#pragma unroll
    for (int j = 0; j < PER; j++) {
        int i = threadIdx.x + j * NT_NORM;
        float r = w ? (v[j] * s) * wv[j] : v[j] * s;
        if (i < n) o[i] = r;
        if (!xq || j * NT_NORM >= n) continue; /* whole warps: n is a multiple of 32 with xq */
        float a = fabsf(r);
        for (int m = 16; m > 0; m >>= 1) a = fmaxf(a, __shfl_xor_sync(0xffffffffu, a, m));
        if (i >= n) continue;
        float d = __half2float(__float2half_rn(a / 127)), id = d > 0 ? 1.0f / d : 0;
        float rr = r * id;
        int q = rr >= -127.0f ? (rr > 127.0f ? 127 : __float2int_rn(rr)) : -127;
        xq[(size_t)blockIdx.x * n + i] = (int8_t)q;
        if (i % 32 == 0) xd[(size_t)blockIdx.x * (n / 32) + i / 32] = d;
    }
}

extern "C" void lb_cu_add_rmsnorm(float *out, float *x, const float *add, const float *w, int n_tok, int n, float eps,
                                  int8_t *xq, float *xd, cudaStream_t s) {
    if (n_tok <= 0) return;
    int per = (n + NT_NORM - 1) / NT_NORM;
    if (per <= 1) k_rmsnorm<1><<<n_tok, NT_NORM, 0, s>>>(out, x, add, w, n, eps, xq, xd);
    else if (per <= 2) k_rmsnorm<2><<<n_tok, NT_NORM, 0, s>>>(out, x, add, w, n, eps, xq, xd);
    else if (per <= 4) k_rmsnorm<4><<<n_tok, NT_NORM, 0, s>>>(out, x, add, w, n, eps, xq, xd);
    else if (per <= 8) k_rmsnorm<8><<<n_tok, NT_NORM, 0, s>>>(out, x, add, w, n, eps, xq, xd);
    else if (per <= 16) k_rmsnorm<16><<<n_tok, NT_NORM, 0, s>>>(out, x, add, w, n, eps, xq, xd);
    else k_rmsnorm<16><<<0, NT_NORM, 0, s>>>(out, x, add, w, n, eps, xq, xd); /* rows over 16384 values (no
        model has them): an invalid launch, which the next status check reports */
}

// One thread a rotated pair; blocks over (pairs, tokens) so a decode step's heads run on many SMs.
static __global__ void k_rope(float *x, int n_heads, int hd, size_t row_stride, const float *cs_all, int neox) {
    int t = blockIdx.y, half = hd / 2, j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n_heads * half) return;
    const float *cs = cs_all + (size_t)t * hd, *sn = cs + half;
    int h = j / half, i = j % half;
    float *v = x + (size_t)t * row_stride + (size_t)h * hd;
    int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    float x0 = v[a], x1 = v[b], c = cs[i], sv = sn[i];
    v[a] = x0 * c - x1 * sv;
    v[b] = x0 * sv + x1 * c;
}

extern "C" void lb_cu_rope(float *x, int n_tok, int n_heads, int hd, size_t row_stride, const float *cs, int neox,
                           cudaStream_t s) {
    if (n_tok <= 0 || n_heads * (hd / 2) <= 0) return;
    dim3 g((unsigned)((n_heads * (hd / 2) + NT - 1) / NT), (unsigned)n_tok);
    k_rope<<<g, NT, 0, s>>>(x, n_heads, hd, row_stride, cs, neox);
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
// One element a thread, blocks over (elements, tokens): a loop of stores and loads that may
// alias waited a memory latency per element (one block a token took ~8 us at decode).
static __global__ void k_kv_store(lb_cu_kv kv, const float *k, const float *v, int kv_dim, const int32_t *slot) {
    int t = blockIdx.y, i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= kv_dim) return; /* kv_dim is a multiple of 32 for Q8_0: whole warps stay */
    uint8_t *b = kv.base + (size_t)slot[2 * t] * kv.block_bytes + (size_t)slot[2 * t + 1] * kv.row_bytes;
    store_elem(kv.kv_type, k + (size_t)t * kv_dim, b + kv.k_off, i, kv_dim);
    store_elem(kv.kv_type, v + (size_t)t * kv_dim, b + kv.v_off, i, kv_dim);
}

extern "C" void lb_cu_kv_store(const lb_cu_kv *kv, const float *k, const float *v, int n_tok, int kv_dim,
                               const int32_t *slot, cudaStream_t s) {
    if (n_tok <= 0 || kv_dim <= 0) return;
    dim3 g((unsigned)((kv_dim + NT - 1) / NT), (unsigned)n_tok);
    k_kv_store<<<g, NT, 0, s>>>(*kv, k, v, kv_dim, slot);
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

// The first position a query at pos reads under a sliding window (0: none): lb_attn_first of
// kernels/backend.h, which device code cannot call.
static __device__ __forceinline__ int attn_first(int pos, int window) {
    return window > 0 && pos >= window ? pos - window + 1 : 0;
}

// One block per (head, token) of tokens t0.. (the launch's slice of the batch): one warp per
// position for the scores (lanes split the head's elements, so a K row loads coalesced; ATT_POS
// positions at a time), softmax
// as the CPU does it (maximum first, then the sum), then G = blockDim / hd groups of threads each
// summing every G-th position of V into shared memory, added in group order. Shared memory: q,
// then the groups' partial sums.

static __global__ void k_attention(lb_cu_kv kv, const float *q, float *out, int n_tok, int t0, int n_heads,
                                   int n_kv_heads, int hd, const int32_t *idx, float *scores, int max_pos, int window) {
    extern __shared__ float qs[];
    float *part = qs + hd;
    int h = blockIdx.x, t = t0 + blockIdx.y, kvh = h / (n_heads / n_kv_heads), bt = kv.block_tokens;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    int n_pos = idx[t] + 1, lo = attn_first(idx[t], window); // positions lo .. n_pos - 1
    const int32_t *table = idx + 2 * n_tok + idx[n_tok + t];
    const float *qh = q + (size_t)t * n_heads * hd + (size_t)h * hd;
    float *sc = scores + ((size_t)blockIdx.y * n_heads + h) * max_pos;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) qs[i] = qh[i];
    __syncthreads();
    float scale = rsqrtf((float)hd), mx = -INFINITY;
    size_t head = (size_t)kvh * kv.head_bytes;
    // ATT_POS positions a warp at once: their K rows load together before the reductions wait
    for (int p0 = lo + warp; p0 < n_pos; p0 += nw * ATT_POS) {
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
    for (int p = lo + threadIdx.x; p < n_pos; p += blockDim.x) {
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
            for (int p = lo + g; p < n_pos; p += G) {
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

// Prompts (many consecutive positions of one sequence): a block takes PF_Q queries of one head
// and walks the positions in tiles of PF_K, K and V rows of a tile loaded once into shared memory
// for all its queries (the per-token kernel above read every K and V row once per query), with
// the softmax kept online (running maximum and sum, the output rescaled when the maximum grows).
// Scores: thread (query tid / 8, positions tid % 8 + 8r); output: thread (query tid / 8, dims
// tid % 8 + 8j). Rows padded by one float so the threads of a warp read distinct banks.
#define PF_Q 32
#define PF_K 32
#define PF_THREADS 256
#define PF_MAX_HD 128

static __global__ void __launch_bounds__(PF_THREADS) k_attn_prefill(lb_cu_kv kv, const float *q, float *out, int n_tok,
                                                                    int t0, int n_run, int n_heads, int n_kv_heads,
                                                                    int hd, const int32_t *idx, int window) {
    extern __shared__ float sm[];
    const int ld = hd + 1, sld = PF_K + 1;
    float *Qs = sm, *Ks = Qs + PF_Q * ld, *Vs = Ks + PF_K * ld, *S = Vs + PF_K * hd;
    const int h = blockIdx.x, qb = blockIdx.y * PF_Q, tid = threadIdx.x, bt = kv.block_tokens;
    const int kvh = h / (n_heads / n_kv_heads), nq = min(PF_Q, n_run - qb), tq0 = t0 + qb;
    // one sequence, one table; each token's copy holds the blocks up to its own position, so
    // the block's last query's copy is the one that reaches every position the block reads
    const int32_t *table = idx + 2 * n_tok + idx[n_tok + tq0 + nq - 1];
    const int pos0 = idx[tq0], last = pos0 + nq - 1;            // query i is at position pos0 + i
    const size_t head = (size_t)kvh * kv.head_bytes;
    const float scale = rsqrtf((float)hd);
    for (int e = tid; e < PF_Q * hd; e += PF_THREADS) {
        int i = e / hd, d = e % hd;
        Qs[i * ld + d] = i < nq ? q[(size_t)(tq0 + i) * n_heads * hd + (size_t)h * hd + d] : 0;
    }
    const int oq = tid / 8, od = tid % 8, nd = hd / 8;
    float o[PF_MAX_HD / 8];
#pragma unroll
    for (int j = 0; j < PF_MAX_HD / 8; j++) o[j] = 0;
    float m = -INFINITY, l = 0;
    // tiles from the block's first query's first position: a window leaves earlier ones unread
    for (int p0 = attn_first(pos0, window); p0 <= last; p0 += PF_K) {
        __syncthreads(); // the previous tile's K, V and P are no longer read (and Q is written)
        const int np = min(PF_K, last + 1 - p0);
        for (int e = tid; e < np * hd; e += PF_THREADS) {
            int j = e / hd, d = e % hd, p = p0 + j;
            const uint8_t *row = kv.base + (size_t)table[p / bt] * kv.block_bytes + (size_t)(p % bt) * kv.row_bytes + head;
            Ks[j * ld + d] = load_kv(kv.kv_type, row + kv.k_off, d);
            Vs[j * hd + d] = load_kv(kv.kv_type, row + kv.v_off, d);
        }
        __syncthreads();
        float acc[PF_K / 8] = {0, 0, 0, 0};
        for (int d = 0; d < hd; d++) {
            float qv = Qs[oq * ld + d];
#pragma unroll
            for (int r = 0; r < PF_K / 8; r++) acc[r] += qv * Ks[(od + 8 * r) * ld + d];
        }
        // this query's row of the tile: its 8 threads hold 4 scores each (one warp holds 4 rows)
        float tmax = -INFINITY;
#pragma unroll
        for (int r = 0; r < PF_K / 8; r++) {
            int kj = od + 8 * r;
            int p = p0 + kj, qp = pos0 + oq;
            acc[r] = oq < nq && kj < np && p <= qp && p >= attn_first(qp, window) ? acc[r] * scale : -INFINITY;
            tmax = fmaxf(tmax, acc[r]);
        }
        for (int x = 4; x > 0; x >>= 1) tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, x));
        const float mn = fmaxf(m, tmax);
        const float corr = mn == -INFINITY ? 1 : expf(m - mn); // m = -inf: nothing summed yet, 0 * anything
        float psum = 0;
#pragma unroll
        for (int r = 0; r < PF_K / 8; r++) {
            float pv = mn == -INFINITY ? 0 : expf(acc[r] - mn);
            S[oq * sld + od + 8 * r] = pv;
            psum += pv;
        }
        for (int x = 4; x > 0; x >>= 1) psum += __shfl_xor_sync(0xffffffffu, psum, x);
        l = l * corr + psum;
        m = mn;
        __syncwarp(); // the row's P (written by the 8 threads of this warp) before it is read
#pragma unroll
        for (int j = 0; j < PF_MAX_HD / 8; j++) o[j] *= corr;
        for (int kj = 0; kj < np; kj++) {
            float pv = S[oq * sld + kj];
#pragma unroll
            for (int j = 0; j < PF_MAX_HD / 8; j++)
                if (j < nd) o[j] += pv * Vs[kj * hd + od + 8 * j];
        }
    }
    if (oq >= nq) return;
    const float inv = 1.0f / l;
    float *dst = out + (size_t)(tq0 + oq) * n_heads * hd + (size_t)h * hd;
#pragma unroll
    for (int j = 0; j < PF_MAX_HD / 8; j++)
        if (j < nd) dst[od + 8 * j] = o[j] * inv;
}

extern "C" int lb_cu_attention_prefill_ok(int hd) { return hd % 8 == 0 && hd <= PF_MAX_HD; }

extern "C" void lb_cu_attention_prefill(const lb_cu_kv *kv, const float *q, float *out, int n_tok, int t0, int n_run,
                                        int n_heads, int n_kv_heads, int hd, const int32_t *idx, int window, cudaStream_t s) {
    if (n_run <= 0) return;
    size_t sh = ((size_t)(PF_Q + PF_K) * (hd + 1) + (size_t)PF_K * hd + (size_t)PF_Q * (PF_K + 1)) * sizeof(float);
    static int raised;
    if (!raised && sh > 48 * 1024) { /* over the default limit of dynamic shared memory (hd 128: 53 KB) */
        cudaFuncSetAttribute(k_attn_prefill, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024);
        raised = 1;
    }
    dim3 g((unsigned)n_heads, (unsigned)((n_run + PF_Q - 1) / PF_Q));
    k_attn_prefill<<<g, PF_THREADS, sh, s>>>(*kv, q, out, n_tok, t0, n_run, n_heads, n_kv_heads, hd, idx, window);
}

#define ATT_THREADS 256 // decode has one block a head: 8 warps share its positions

extern "C" void lb_cu_attention(const lb_cu_kv *kv, const float *q, float *out, int n_tok, int t0, int n_run,
                                int n_heads, int n_kv_heads, int hd, const int32_t *idx, float *scores, int max_pos,
                                int window, cudaStream_t s) {
    if (n_run <= 0) return;
    dim3 g(n_heads, n_run);
    size_t sh = ((size_t)hd + ATT_THREADS) * sizeof(float);
    k_attention<<<g, ATT_THREADS, sh, s>>>(*kv, q, out, n_tok, t0, n_heads, n_kv_heads, hd, idx, scores, max_pos, window);
}

// cuda_prof.c: the GPU busy for about `us` microseconds (one thread reading the SM clock)
static __global__ void k_spin(long long cycles) {
    long long t0 = clock64();
    while (clock64() - t0 < cycles) {
    }
}

extern "C" void lb_cu_spin(int us, cudaStream_t s) {
    int khz = 1000000;
    cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, 0);
    k_spin<<<1, 1, 0, s>>>((long long)us * khz / 1000);
}
