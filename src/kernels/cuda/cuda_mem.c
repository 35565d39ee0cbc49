/* The CUDA backend's memory: which pointers are device buffers, the upload cache for host
 * constants, staging and scratch buffers that grow to the largest call seen. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_dev.h"

int lb_cu_reg_add(void *p, size_t n) {
    lb_cu_state *g = &lb_cu_g;
    if (g->n_reg == g->cap_reg) {
        size_t cap = g->cap_reg ? 2 * g->cap_reg : 32;
        void *r = realloc(g->reg, cap * sizeof *g->reg);
        if (!r) return 1;
        g->reg = r;
        g->cap_reg = cap;
    }
    g->reg[g->n_reg].p = p;
    g->reg[g->n_reg++].n = n;
    return 0;
}

void lb_cu_reg_del(void *p) {
    lb_cu_state *g = &lb_cu_g;
    for (size_t i = 0; i < g->n_reg; i++)
        if (g->reg[i].p == p) {
            g->reg[i] = g->reg[--g->n_reg];
            return;
        }
}

/* The forward pass holds a few dozen buffers: a scan is cheaper than a CUDA attribute query. */
int lb_cu_is_dev(const void *p) {
    const lb_cu_state *g = &lb_cu_g;
    uintptr_t a = (uintptr_t)p;
    for (size_t i = 0; i < g->n_reg; i++)
        if (a >= (uintptr_t)g->reg[i].p && a < (uintptr_t)g->reg[i].p + g->reg[i].n) return 1;
    return 0;
}

static size_t slot_of(const void *host, size_t cap) {
    uintptr_t h = (uintptr_t)host;
    h ^= h >> 17;
    h *= 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & (cap - 1);
}

lb_cu_up *lb_cu_up_find(const void *host) {
    lb_cu_state *g = &lb_cu_g;
    if (!g->cap_up) return NULL;
    for (size_t i = slot_of(host, g->cap_up);; i = (i + 1) & (g->cap_up - 1)) {
        if (g->up[i].host == host) return &g->up[i];
        if (!g->up[i].host) return NULL;
    }
}

static int up_grow(void) {
    lb_cu_state *g = &lb_cu_g;
    size_t cap = g->cap_up ? 2 * g->cap_up : 256;
    lb_cu_up *n = calloc(cap, sizeof *n), *old = g->up;
    if (!n) return 1;
    for (size_t i = 0; i < g->cap_up; i++) {
        if (!old[i].host) continue;
        size_t j = slot_of(old[i].host, cap);
        while (n[j].host) j = (j + 1) & (cap - 1);
        n[j] = old[i];
    }
    free(old);
    g->up = n;
    g->cap_up = cap;
    return 0;
}

lb_cu_up *lb_cu_up_insert(const void *host) {
    lb_cu_state *g = &lb_cu_g;
    if (2 * (g->n_up + 1) > g->cap_up && up_grow()) return NULL;
    size_t i = slot_of(host, g->cap_up);
    while (g->up[i].host) i = (i + 1) & (g->cap_up - 1);
    memset(&g->up[i], 0, sizeof g->up[i]);
    g->up[i].host = host;
    g->n_up++;
    return &g->up[i];
}

const float *lb_cu_const(const float *p, size_t bytes) {
    if (lb_cu_is_dev(p)) return p;
    lb_cu_up *u = lb_cu_up_find(p);
    if (u && u->bytes >= bytes) return u->q;
    if (u) { /* the same pointer seen with a longer length: upload the longer range */
        lb_cu_flush(); /* recorded ops may read the shorter copy */
        lb_cu_check(cudaFree(u->q));
        lb_cu_g.up_bytes -= u->bytes;
    } else if (!(u = lb_cu_up_insert(p))) {
        lb_cu_check(cudaErrorMemoryAllocation);
        return NULL;
    }
    u->kind = 0;
    u->bytes = 0;
    u->q = NULL;
    cudaError_t e = cudaMalloc(&u->q, bytes ? bytes : 1);
    if (e == cudaSuccess) e = cudaMemcpy(u->q, p, bytes, cudaMemcpyHostToDevice);
    lb_cu_check(e);
    if (e != cudaSuccess) return NULL;
    u->bytes = bytes;
    lb_cu_g.up_bytes += bytes;
    return u->q;
}

static void *scratch(int which, size_t bytes, int must) {
    lb_cu_state *g = &lb_cu_g;
    if (g->scratch_n[which] >= bytes) return g->scratch[which];
    size_t n = bytes < 4096 ? 4096 : bytes + bytes / 2;
    /* cudaFree waits for the kernels still reading the old buffer, once recorded ones are launched */
    lb_cu_flush();
    if (g->scratch[which]) lb_cu_check(cudaFree(g->scratch[which]));
    g->scratch[which] = NULL;
    g->scratch_n[which] = 0;
    cudaError_t e = cudaMalloc(&g->scratch[which], n);
    if (e != cudaSuccess && !must) { /* exactly what was asked, then nothing */
        cudaGetLastError();
        e = cudaMalloc(&g->scratch[which], n = bytes);
    }
    if (e != cudaSuccess) {
        if (must) lb_cu_check(e);
        else cudaGetLastError(); /* not sticky: the next status check must not see it */
        g->scratch[which] = NULL;
        return NULL;
    }
    g->scratch_n[which] = n;
    return g->scratch[which];
}

void *lb_cu_scratch(int which, size_t bytes) { return scratch(which, bytes, 1); }
void *lb_cu_scratch_try(int which, size_t bytes) { return scratch(which, bytes, 0); }

/* Staged tables go through a ring of pinned host memory mirrored by a ring of device memory at
 * the same offsets: the copy from pinned memory is asynchronous (from pageable memory it would
 * wait for the stream each time), and a slot is reused only after the stream has drained past
 * it, which the one synchronisation at each wrap guarantees. */
static int ring_fit(size_t bytes) {
    lb_cu_state *g = &lb_cu_g;
    size_t need = (bytes + 255) & ~(size_t)255;
    if (need <= g->ring_n && g->ring_off + need <= g->ring_n) return 1;
    lb_cu_check(cudaStreamSynchronize(g->stream));
    g->ring_off = 0;
    g->ring_gen++;
    if (need <= g->ring_n) return 1;
    size_t n = need < ((size_t)8 << 20) ? (size_t)8 << 20 : 2 * need;
    if (g->ring_host) cudaFreeHost(g->ring_host);
    if (g->ring_dev) cudaFree(g->ring_dev);
    g->ring_host = g->ring_dev = NULL;
    g->ring_n = 0;
    cudaError_t e = cudaHostAlloc(&g->ring_host, n, cudaHostAllocDefault);
    if (e == cudaSuccess) e = cudaMalloc(&g->ring_dev, n);
    lb_cu_check(e);
    if (e != cudaSuccess) return 0;
    g->ring_n = n;
    return 1;
}

/* host's bytes into the ring's next slot, copied to dst (NULL: the slot's device mirror) */
static const void *stage(void *dst, const void *host, size_t bytes) {
    lb_cu_state *g = &lb_cu_g;
    if (!ring_fit(bytes)) return NULL;
    uint8_t *h = (uint8_t *)g->ring_host + g->ring_off, *d = dst ? dst : (uint8_t *)g->ring_dev + g->ring_off;
    memcpy(h, host, bytes);
    lb_cu_check(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, g->stream));
    g->ring_off += (bytes + 255) & ~(size_t)255;
    return d;
}

#define MEMO_MAX 65536 /* bytes: larger tables (prompt chunks) are not worth comparing */

/* A slot of the ring holds what was staged there until the ring restarts, so a table equal to
 * a recent one (same generation, same bytes in pinned memory) is already on the device. */
const void *lb_cu_stage(const void *host, size_t bytes) {
    lb_cu_state *g = &lb_cu_g;
    if (lb_cu_recording()) { /* the step's arena (cuda_graph.c); when full, op by op from here */
        const void *d = lb_cu_arena_put(host, bytes);
        if (d) return d;
        lb_cu_flush();
    }
    int n_memo = (int)(sizeof g->memo / sizeof *g->memo);
    for (int i = 0; bytes && bytes <= MEMO_MAX && i < n_memo; i++)
        if (g->memo[i].bytes == bytes && g->memo[i].gen == g->ring_gen &&
            !memcmp((const uint8_t *)g->ring_host + g->memo[i].off, host, bytes))
            return (const uint8_t *)g->ring_dev + g->memo[i].off;
    const uint8_t *d = stage(NULL, host, bytes);
    if (d && bytes && bytes <= MEMO_MAX) {
        int i = g->memo_next;
        g->memo_next = (i + 1) % n_memo;
        g->memo[i].off = (size_t)(d - (const uint8_t *)g->ring_dev);
        g->memo[i].bytes = bytes;
        g->memo[i].gen = g->ring_gen;
    }
    return d;
}
int lb_cu_stage_to(void *dst, const void *host, size_t bytes) {
    const void *d = lb_cu_recording() ? lb_cu_arena_put(host, bytes) : NULL;
    if (!d) {
        lb_cu_flush();
        return stage(dst, host, bytes) == NULL;
    }
    lb_cu_rec r;
    memset(&r, 0, sizeof r);
    r.op = LB_CU_OP_COPY, r.p[0] = dst, r.p[1] = d, r.z = bytes;
    lb_cu_submit(&r);
    return 0;
}

void *lb_cu_host_tmp(size_t bytes) {
    lb_cu_state *g = &lb_cu_g;
    if (g->host_tmp_n >= bytes) return g->host_tmp;
    void *p = realloc(g->host_tmp, bytes);
    if (!p) {
        lb_cu_check(cudaErrorMemoryAllocation);
        return NULL;
    }
    g->host_tmp = p;
    g->host_tmp_n = bytes;
    return p;
}

/* A device-to-host copy into pageable memory goes through the driver's own staging at a few
 * GB/s; into pinned memory it runs at the bus's speed (a 128k-vocabulary row of logits is
 * 0.5 MB a token), and the copy on to the caller's buffer is a plain memcpy. */
void *lb_cu_pinned_out(size_t bytes) {
    lb_cu_state *g = &lb_cu_g;
    if (g->pin_out_n >= bytes) return g->pin_out;
    if (g->pin_out) cudaFreeHost(g->pin_out);
    g->pin_out = NULL, g->pin_out_n = 0;
    if (cudaHostAlloc(&g->pin_out, bytes, cudaHostAllocDefault) != cudaSuccess) {
        cudaGetLastError(); /* not an error of the product: it copies to pageable memory instead */
        g->pin_out = NULL;
        return NULL;
    }
    g->pin_out_n = bytes;
    return g->pin_out;
}

/* Drops every upload: the host data they copy may be freed after this (a model unloaded). */
void lb_cu_forget(void) {
    lb_cu_state *g = &lb_cu_g;
    if (!g->ready) return;
    lb_cu_graph_forget(); /* graphs name the uploads */
    lb_cu_check(cudaStreamSynchronize(g->stream));
    for (size_t i = 0; i < g->cap_up; i++) {
        if (!g->up[i].host) continue;
        cudaFree(g->up[i].q);
        if (g->up[i].d) cudaFree(g->up[i].d);
    }
    free(g->up);
    g->up = NULL;
    g->n_up = g->cap_up = 0;
    g->up_bytes = 0;
    if (g->ring_host) cudaFreeHost(g->ring_host);
    if (g->ring_dev) cudaFree(g->ring_dev);
    g->ring_host = g->ring_dev = NULL;
    g->ring_n = g->ring_off = 0;
    g->ring_gen++;
    g->aq_x = NULL; /* the quantized activations go with the scratch */
    for (int i = 0; i < LB_CU_SCRATCH_N; i++) {
        if (g->scratch[i]) cudaFree(g->scratch[i]);
        g->scratch[i] = NULL;
        g->scratch_n[i] = 0;
    }
}
