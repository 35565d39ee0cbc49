// Device memory bandwidth probe for bench/cuda_device.sh: a cudaMemcpy device-to-device
// (counted as read + write) and a read-only reduction kernel (what a decode step does to its
// weights), each the best of several runs over a buffer far larger than the L2 cache.
#include <cstdio>
#include <cuda_runtime.h>

__global__ void k_read(const int4 *p, size_t n, int *sink) {
    int acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int4 v = p[i];
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678) *sink = acc; // keeps the loads alive
}

int main() {
    const size_t bytes = (size_t)2 << 30;
    void *a, *b;
    int *sink;
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return fprintf(stderr, "no CUDA device\n"), 1;
    if (cudaMalloc(&a, bytes) || cudaMalloc(&b, bytes) || cudaMalloc(&sink, 4)) return fprintf(stderr, "cudaMalloc failed\n"), 1;
    cudaMemset(a, 1, bytes);
    cudaMemset(b, 0, bytes);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float best_copy = 1e30f, best_read = 1e30f, ms;
    for (int r = 0; r < 6; r++) {
        cudaEventRecord(e0);
        cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms, e0, e1);
        if (r && ms < best_copy) best_copy = ms;
        cudaEventRecord(e0);
        k_read<<<prop.multiProcessorCount * 8, 512>>>((const int4 *)a, bytes / 16, sink);
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms, e0, e1);
        if (r && ms < best_read) best_read = ms;
    }
    if (cudaGetLastError() != cudaSuccess) return fprintf(stderr, "CUDA error\n"), 1;
    printf("device: %s, %.1f GiB, %d SMs\n", prop.name, prop.totalGlobalMem / 1073741824.0, prop.multiProcessorCount);
    printf("memcpy D2D: %.1f GB/s (read + write of %zu MiB)\n", 2.0 * bytes / (best_copy * 1e-3) / 1e9, bytes >> 20);
    printf("read kernel: %.1f GB/s\n", bytes / (best_read * 1e-3) / 1e9);
    return 0;
}
