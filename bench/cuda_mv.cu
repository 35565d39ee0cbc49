// Weight bandwidth of the CUDA matrix-vector kernels alone (src/kernels/cuda/matmul.cu) on the
// products of synth llama-1b and llama-7b, for every launch shape lb_cu_mv_cfg takes: split S
// (warps sharing a row) x rows a warp R, at one token, and the shape lb_cu_mv picks (auto) at
// 1 and 8 tokens. Weights cycle through copies larger than the L2 cache, as a decode step reads
// each matrix once. Launched back to back on one stream: GPU time only, no host overhead.
// Build: nvcc -O3 -gencode arch=compute_90,code=sm_90 -Isrc -Iinclude bench/cuda_mv.cu
//        src/kernels/cuda/matmul.cu -o cuda_mv   (bench/cuda_device.sh does)
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_kernels.h"

static __global__ void k_fill(uint32_t *p, size_t n, uint32_t mask, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
        p[i] = h & mask;
    }
}

static void fill(void *p, size_t bytes, uint32_t mask) {
    k_fill<<<1024, 256>>>((uint32_t *)p, bytes / 4, mask, 12345u);
}

struct shape { int rows, k; const char *name; };
static const shape shapes[] = {
    {2048, 2048, "1b q/o"}, {512, 2048, "1b k/v"}, {8192, 2048, "1b gate/up"}, {2048, 8192, "1b down"},
    {128256, 2048, "1b output"}, {4096, 4096, "7b q/k/v/o"}, {11008, 4096, "7b gate/up"}, {4096, 11008, "7b down"},
    {32000, 4096, "7b output"}};

static size_t weight_bytes(int type, size_t n) { return type == LB_CU_F16 ? 2 * n : type == LB_CU_Q8_0 ? n : n / 2; }

// GB/s of weights for one launch shape, over `iters` launches cycling through the copies
static double time_cfg(int type, void **w, uint16_t **d, int copies, const float *x, const int8_t *xq, const float *xd,
                       const shape &s, int n_tok, int split, int rpw, float *y) {
    const int iters = 60;
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    for (int i = 0; i < 3; i++) lb_cu_mv_cfg(type, w[i % copies], d[i % copies], x, xq, xd, s.rows, s.k, n_tok, y, split, rpw, 0);
    cudaEventRecord(e0);
    for (int i = 0; i < iters; i++)
        lb_cu_mv_cfg(type, w[i % copies], d[i % copies], x, xq, xd, s.rows, s.k, n_tok, y, split, rpw, 0);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    cudaEventDestroy(e0), cudaEventDestroy(e1);
    double bytes = (double)weight_bytes(type, (size_t)s.rows * s.k) + (type != LB_CU_F16 ? s.rows * (s.k / 32) * 2.0 : 0);
    return bytes * iters / (ms * 1e-3) / 1e9;
}

int main() {
    static const struct { int type; const char *name; } types[] = {{LB_CU_F16, "f16"}, {LB_CU_Q8_0, "q8_0"}, {LB_CU_Q4_0, "q4_0"}};
    float *x, *xd, *y;
    int8_t *xq;
    if (cudaMalloc(&x, 8 * 11008 * 4) || cudaMalloc(&xd, 8 * 11008 / 32 * 4) || cudaMalloc(&xq, 8 * 11008) ||
        cudaMalloc(&y, (size_t)8 * 128256 * 4))
        return fprintf(stderr, "cudaMalloc failed\n"), 1;
    fill(x, 8 * 11008 * 4, 0x3effffffu); // floats in [0, 0.5)
    fill(xd, 8 * 11008 / 32 * 4, 0x3c7fffffu);
    fill(xq, 8 * 11008, 0x7f7f7f7fu);
    printf("GB/s of weights; auto = lb_cu_mv's shape; SxR = split x rows a warp at 1 token\n");
    printf("| type | product | rows x k | auto 1 tok | auto 8 tok |");
    static const int S[] = {1, 2, 4, 8}, R[] = {1, 2, 4};
    for (int si = 0; si < 4; si++)
        for (int ri = 0; ri < 3; ri++) printf(" %dx%d |", S[si], R[ri]);
    printf("\n");
    for (const auto &t : types)
        for (const auto &s : shapes) {
            size_t n = (size_t)s.rows * s.k, wb = weight_bytes(t.type, n), db = n / 32 * 2;
            int copies = (int)((((size_t)512 << 20) + wb - 1) / wb);
            if (copies > 64) copies = 64;
            void *w[64];
            uint16_t *d[64];
            for (int c = 0; c < copies; c++) {
                if (cudaMalloc(&w[c], wb) || cudaMalloc(&d[c], db)) return fprintf(stderr, "cudaMalloc failed\n"), 1;
                fill(w[c], wb, t.type == LB_CU_F16 ? 0x3bff3bffu : 0xffffffffu); // halves in [0, 1)
                fill(d[c], db, 0x1fff1fffu);
            }
            int auto_s = lb_cu_mv_split(t.type, x, s.rows, s.k);
            printf("| %s | %s | %dx%d | %.0f (S=%d) | %.0f |", t.name, s.name, s.rows, s.k,
                   time_cfg(t.type, w, d, copies, x, xq, xd, s, 1, auto_s, 2, y), auto_s,
                   time_cfg(t.type, w, d, copies, x, xq, xd, s, 8, auto_s, 1, y));
            for (int si = 0; si < 4; si++)
                for (int ri = 0; ri < 3; ri++) printf(" %.0f |", time_cfg(t.type, w, d, copies, x, xq, xd, s, 1, S[si], R[ri], y));
            printf("\n");
            fflush(stdout);
            for (int c = 0; c < copies; c++) cudaFree(w[c]), cudaFree(d[c]);
        }
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) return fprintf(stderr, "CUDA: %s\n", cudaGetErrorString(e)), 1;
    return 0;
}
