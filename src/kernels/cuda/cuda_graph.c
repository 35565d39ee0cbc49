/* CUDA graphs for the decode step. At batch 1 a small model's step is a few hundred short
 * kernels, and launching them one by one costs more than running them; a graph launches the
 * whole step at once. The forward pass is not told where a step starts or ends, so the backend
 * finds out itself:
 *
 * - A step starts at the first embedding lookup (the forward pass's first op) after the last one
 *   ended. From then on the ops are recorded, not launched: each op's launch is one lb_cu_rec
 *   holding everything the launch reads (device pointers, sizes), and the small tables the host
 *   fills per step (token rows, RoPE cos/sin, KV slots, block tables) go into a parameter arena
 *   (pinned host memory mirrored in device memory, at offsets fixed by the order of the ops).
 * - The step ends at the product whose output is host memory (the logits). The arena is copied
 *   to the device in one transfer; if an earlier step recorded the same list byte for byte, its
 *   graph is launched: the same launches, reading this step's tables from the same addresses.
 *   A list seen twice in a row is captured into a graph (kept among the last GRAPHS) and launched;
 *   any other list is launched op by op, as without graphs.
 * - Anything the recording cannot defer (a scratch buffer that grows, cuBLAS for a long prompt,
 *   a buffer freed, a full list or arena) first launches what was recorded ("flush"), and the rest
 *   of the step runs op by op. Decode steps differ only when the context passes a multiple of
 *   the attention's score capacity (cu_attention rounds it), so a new graph is captured then.
 *
 * Equal lists launch equal work, so the graph gives the bits of the op-by-op path (test_cuda
 * checks it). Device memory must be read through the backend (as the forward pass does: the logits
 * product), since recorded ops have not run until the step ends.
 *
 * LOWBIT_CUDA_GRAPH=0 turns it off, 1 on; unset, GRAPH_DEFAULT decides (on since test_cuda passed
 * with it on an H100, 2026-12-07: 3911 passed, 0 failed, graph logits equal op by op). */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_dev.h"
#include "kernels/cuda/cuda_kernels.h"

#define LIST_MAX 4096             /* launches one step may record */
#define ARENA_BYTES ((size_t)1 << 20)
#define GRAPHS 8                  /* graphs kept: the server's batch sizes come and go */
#define ARENA_MEMO 4
#define GRAPH_DEFAULT 1

/* lists are hashed and compared as bytes: a record must have no padding */
_Static_assert(sizeof(lb_cu_kv) == 7 * 8 && sizeof(lb_cu_rec) == 48 + 6 * 8 + sizeof(lb_cu_kv), "lb_cu_rec has padding");

enum { IDLE, REC, EAGER };

typedef struct graph {
    lb_cu_rec *recs;
    size_t n;
    uint64_t hash, used; /* used: step count when last launched (the oldest is replaced) */
    cudaGraphExec_t exec;
} graph;

static struct {
    int mode, broken; /* broken: a capture failed once; no more graphs in this process */
    lb_cu_rec *list;
    size_t n;
    uint8_t *arena_host, *arena_dev;
    size_t arena_off;
    struct { size_t off, bytes; } memo[ARENA_MEMO];
    int memo_n, memo_next;
    graph g[GRAPHS];
    uint64_t steps, last_hash;
    size_t last_n;
    lb_cu_graph_stats stats;
} G;

void lb_cu_launch(const lb_cu_rec *r) {
    cudaStream_t s = lb_cu_g.stream;
    const int *i = r->i;
    switch (r->op) {
    case LB_CU_OP_NORM:
        lb_cu_add_rmsnorm((float *)r->p[0], (float *)r->p[1], r->p[2], r->p[3], i[0], i[1], r->f, (int8_t *)r->p[4],
                          (float *)r->p[5], s);
        break;
    case LB_CU_OP_ROPE: lb_cu_rope((float *)r->p[0], i[0], i[1], i[2], r->z, r->p[1], i[3], s); break;
    case LB_CU_OP_KV_STORE: lb_cu_kv_store(&r->kv, r->p[0], r->p[1], i[0], i[1], r->p[2], s); break;
    case LB_CU_OP_ATTN:
        lb_cu_attention(&r->kv, r->p[0], (float *)r->p[1], i[0], i[1], i[2], i[3], i[4], i[5], r->p[2], (float *)r->p[3],
                        i[6], i[7], s);
        break;
    case LB_CU_OP_ATTN_PREFILL:
        lb_cu_attention_prefill(&r->kv, r->p[0], (float *)r->p[1], i[0], i[1], i[2], i[3], i[4], i[5], r->p[2], i[7], s);
        break;
    case LB_CU_OP_GLU: lb_cu_glu((float *)r->p[0], r->p[1], r->z, i[0], s); break;
    case LB_CU_OP_ADD: lb_cu_add((float *)r->p[0], r->p[1], r->z, s); break;
    case LB_CU_OP_SCALE: lb_cu_scale((float *)r->p[0], r->f, r->z, s); break;
    case LB_CU_OP_COPY: lb_cu_check(cudaMemcpyAsync((void *)r->p[0], r->p[1], r->z, cudaMemcpyDeviceToDevice, s)); break;
    case LB_CU_OP_QUANT_ACT: lb_cu_quant_act(r->p[0], i[0], i[1], (int8_t *)r->p[1], (float *)r->p[2], s); break;
    case LB_CU_OP_MV:
        lb_cu_mv(i[0], r->p[0], r->p[1], r->p[2], r->p[3], r->p[4], i[1], i[2], i[3], (float *)r->p[5], s);
        break;
    }
}

static int enabled(void) {
    const char *e = getenv("LOWBIT_CUDA_GRAPH");
    return !G.broken && (lb_cu_prof_mode() == 2 || (e && *e ? strcmp(e, "0") != 0 : GRAPH_DEFAULT));
}

void lb_cu_step_begin(void) {
    if (G.mode != IDLE || !enabled()) return;
    lb_cu_prof_step_begin();
    if (!G.list && !(G.list = malloc(LIST_MAX * sizeof *G.list))) return;
    if (!G.arena_host) {
        void *h = NULL, *d = NULL;
        if (cudaHostAlloc(&h, ARENA_BYTES, cudaHostAllocDefault) != cudaSuccess || cudaMalloc(&d, ARENA_BYTES) != cudaSuccess) {
            cudaGetLastError(); /* no graphs then: not an error of the step */
            if (h) cudaFreeHost(h);
            G.broken = 1;
            return;
        }
        G.arena_host = h, G.arena_dev = d;
    }
    G.mode = REC;
    G.n = 0;
    G.arena_off = 0;
    G.memo_n = G.memo_next = 0;
}

static void copy_arena(void) {
    if (G.arena_off)
        lb_cu_check(cudaMemcpyAsync(G.arena_dev, G.arena_host, G.arena_off, cudaMemcpyHostToDevice, lb_cu_g.stream));
}

static void launch_all(void) {
    for (size_t k = 0; k < G.n; k++) lb_cu_launch(&G.list[k]);
}

/* a flush's launches, timed one by one when profiling (cuda_prof.c) */
static void launch_all_flush(void) {
    for (size_t k = 0; k < G.n; k++) lb_cu_prof_eager(&G.list[k]);
}

void lb_cu_flush(void) {
    if (G.mode != REC) return;
    copy_arena();
    launch_all_flush();
    G.stats.flushes++;
    G.mode = EAGER; /* the arena is in flight until the step's end synchronises */
}

int lb_cu_recording(void) { return G.mode == REC; }

const lb_cu_rec *lb_cu_last_rec(void) { return G.mode == REC && G.n ? &G.list[G.n - 1] : NULL; }

/* whole records by memcpy: struct assignment need not copy the (zeroed) padding the hash reads */
void lb_cu_replace_last(const lb_cu_rec *r) {
    if (G.mode == REC && G.n) memcpy(&G.list[G.n - 1], r, sizeof *r);
}

void lb_cu_submit(const lb_cu_rec *r) {
    if (G.mode != REC) {
        lb_cu_prof_eager(r);
        return;
    }
    if (G.n == LIST_MAX) {
        lb_cu_flush();
        lb_cu_prof_eager(r);
        return;
    }
    memcpy(&G.list[G.n++], r, sizeof *r);
}

const void *lb_cu_arena_put(const void *host, size_t bytes) {
    if (G.mode != REC) return NULL;
    for (int k = 0; k < G.memo_n; k++) /* the same table for every layer: stored once */
        if (G.memo[k].bytes == bytes && !memcmp(G.arena_host + G.memo[k].off, host, bytes)) return G.arena_dev + G.memo[k].off;
    size_t need = (bytes + 255) & ~(size_t)255;
    if (need > ARENA_BYTES - G.arena_off) return NULL;
    memcpy(G.arena_host + G.arena_off, host, bytes);
    int k = G.memo_next;
    G.memo_next = (k + 1) % ARENA_MEMO;
    if (G.memo_n < ARENA_MEMO) G.memo_n++;
    G.memo[k].off = G.arena_off, G.memo[k].bytes = bytes;
    G.arena_off += need;
    return G.arena_dev + G.memo[k].off;
}

static uint64_t hash_of(const lb_cu_rec *r, size_t n) {
    const uint8_t *b = (const uint8_t *)r;
    uint64_t h = 1469598103934665603ull;
    for (size_t k = 0; k < n * sizeof *r; k += 8) {
        uint64_t w;
        memcpy(&w, b + k, 8);
        h = (h ^ w) * 1099511628211ull;
    }
    return h;
}

static graph *find(uint64_t h) {
    for (int k = 0; k < GRAPHS; k++)
        if (G.g[k].exec && G.g[k].hash == h && G.g[k].n == G.n && !memcmp(G.g[k].recs, G.list, G.n * sizeof *G.list))
            return &G.g[k];
    return NULL;
}

static void drop(graph *g) {
    if (g->exec) cudaGraphExecDestroy(g->exec);
    free(g->recs);
    memset(g, 0, sizeof *g);
}

/* The list captured into a graph; NULL (nothing launched, no error kept) when that fails. */
static graph *capture(uint64_t h) {
    cudaStream_t s = lb_cu_g.stream;
    cudaError_t kept = lb_cu_g.err;
    cudaGraph_t gr = NULL;
    cudaGraphExec_t ex = NULL;
    lb_cu_rec *copy = malloc(G.n * sizeof *copy);
    cudaError_t e = copy ? cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) : cudaErrorMemoryAllocation;
    if (e == cudaSuccess) {
        launch_all();
        e = cudaStreamEndCapture(s, &gr);
    }
    if (e == cudaSuccess) e = cudaGraphInstantiate(&ex, gr, 0);
    if (gr) cudaGraphDestroy(gr);
    if (e != cudaSuccess || lb_cu_g.err != kept) {
        cudaGetLastError();
        lb_cu_g.err = kept;
        if (ex) cudaGraphExecDestroy(ex);
        free(copy);
        G.broken = 1; /* op by op from now on */
        return NULL;
    }
    graph *g = &G.g[0];
    for (int k = 1; k < GRAPHS; k++)
        if (!G.g[k].exec || (g->exec && G.g[k].used < g->used)) g = &G.g[k];
    drop(g);
    memcpy(copy, G.list, G.n * sizeof *copy);
    g->recs = copy, g->n = G.n, g->hash = h, g->exec = ex;
    G.stats.captures++;
    return g;
}

void lb_cu_step_end(void) {
    int mode = G.mode;
    G.mode = IDLE;
    if (mode != REC || !G.n) return;
    G.steps++;
    copy_arena();
    if (lb_cu_prof_ops(G.list, G.n)) {
        G.stats.eager++;
        return;
    }
    lb_cu_prof_launch(1);
    uint64_t h = hash_of(G.list, G.n);
    graph *g = find(h);
    if (!g && h == G.last_hash && G.n == G.last_n) g = capture(h);
    G.last_hash = h, G.last_n = G.n;
    if (!g) {
        launch_all();
        G.stats.eager++;
    } else {
        g->used = G.steps;
        lb_cu_check(cudaGraphLaunch(g->exec, lb_cu_g.stream));
        G.stats.replays++;
    }
    lb_cu_prof_launch(0);
}

void lb_cu_graph_forget(void) {
    lb_cu_flush();
    G.mode = IDLE;
    for (int k = 0; k < GRAPHS; k++) drop(&G.g[k]);
    G.last_hash = 0, G.last_n = 0;
}

lb_cu_graph_stats lb_cu_graph_get_stats(void) { return G.stats; }
