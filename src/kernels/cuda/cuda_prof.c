/* Where a decode step's time goes on the GPU, without a profiler on the machine
 * (LOWBIT_CUDA_PROFILE; the summary goes to stderr at exit):
 *
 * - "1" (graphs as usual): per step, the host's time from the step's first op to its launch
 *   (recording: the forward pass walking the layers), the GPU's time for the launched step
 *   (events around it) and the whole step until the logits are on the host. While a step is
 *   recorded the GPU idles, so host recording time adds to the step's.
 * - "ops": every recorded step is launched op by op behind a spin kernel that holds the GPU
 *   until all launches are queued, with an event between consecutive launches, so each op's
 *   GPU time is measured back to back (no host gaps). Ops are summed per kind and, for
 *   products, per (type, rows, k, tokens). Graphs are not used in this mode. Ops outside a
 *   recorded step (prompts: cuBLAS, the F16 conversions, long kernels) are timed one by one
 *   between events (host gaps between them are not counted).
 *
 * Timing only: the bits computed are those of the op-by-op path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cuda/cuda_dev.h"
#include "kernels/cuda/cuda_kernels.h"

#define BINS 256
#define SPIN_US 30000 /* enough for a few thousand launches to queue */

typedef struct bin {
    int op, type, rows, k, ntok;
    double us;
    uint64_t n;
} bin;

static struct {
    int mode; /* -1 unknown, 0 off, 1 steps, 2 ops */
    cudaEvent_t *ev;
    size_t n_ev;
    cudaEvent_t g0, g1;
    int g_pending;
    double t_begin, host_us, gpu_us, step_us, t_launch;
    uint64_t steps, timed;
    bin bins[BINS];
    int n_bins;
} P = {.mode = -1};

static void pending_sum(void);

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static const char *op_name(int op) {
    static const char *n[] = {"rmsnorm", "rope", "kv_store", "attention", "glu", "add", "scale", "copy", "quant_act", "matvec", "attn_prefill"};
    static const char *m[] = {"gemm", "dequant", "act_half", "readback"}; /* LB_CU_PROF_GEMM.. */
    if (op >= LB_CU_PROF_GEMM && op < LB_CU_PROF_GEMM + 4) return m[op - LB_CU_PROF_GEMM];
    return op >= 0 && op < (int)(sizeof n / sizeof *n) ? n[op] : "?";
}

static int cmp_us(const void *a, const void *b) {
    double d = ((const bin *)b)->us - ((const bin *)a)->us;
    return d > 0 ? 1 : d < 0 ? -1 : 0;
}

static void report(void) {
    uint64_t s = P.steps ? P.steps : 1;
    if (P.mode == 1) {
        uint64_t t = P.timed ? P.timed : 1;
        fprintf(stderr, "cuda profile: %llu steps; per step: host recording %.1f us, GPU %.1f us (%llu timed), whole %.1f us\n",
                (unsigned long long)P.steps, P.host_us / s, P.gpu_us / t, (unsigned long long)P.timed, P.step_us / s);
        return;
    }
    pending_sum();
    double total = 0;
    for (int i = 0; i < P.n_bins; i++) total += P.bins[i].us;
    qsort(P.bins, (size_t)P.n_bins, sizeof *P.bins, cmp_us);
    fprintf(stderr, "cuda profile (ops): %llu recorded steps, GPU %.1f us a step (ops outside steps, such as prompts, counted per step too)\n",
            (unsigned long long)P.steps, total / s);
    fprintf(stderr, "%-10s %5s %7s %6s %4s %9s %10s %6s\n", "op", "type", "rows", "k", "tok", "per step", "us a step", "share");
    for (int i = 0; i < P.n_bins; i++) {
        const bin *b = &P.bins[i];
        fprintf(stderr, "%-10s %5d %7d %6d %4d %9.1f %10.1f %5.1f%%\n", op_name(b->op), b->type, b->rows, b->k, b->ntok,
                (double)b->n / s, b->us / s, total > 0 ? 100 * b->us / total : 0);
    }
}

int lb_cu_prof_mode(void) {
    if (P.mode < 0) {
        const char *e = getenv("LOWBIT_CUDA_PROFILE");
        P.mode = !e || !*e || !strcmp(e, "0") ? 0 : !strcmp(e, "ops") ? 2 : 1;
        if (P.mode) atexit(report);
    }
    return P.mode;
}

void lb_cu_prof_step_begin(void) {
    if (lb_cu_prof_mode() == 2) pending_sum();
    if (P.mode != 1) return;
    if (P.g_pending) { /* the previous step's logits copy synchronised: its events are done */
        float ms = 0;
        if (cudaEventElapsedTime(&ms, P.g0, P.g1) == cudaSuccess) P.gpu_us += ms * 1e3, P.timed++;
        cudaGetLastError();
        P.g_pending = 0;
        P.step_us += now_us() - P.t_begin;
    }
    P.t_begin = now_us();
}

/* around the step's launch (graph or op by op) in mode 1 */
void lb_cu_prof_launch(int before) {
    if (P.mode != 1) return;
    if (!P.g0 && (cudaEventCreate(&P.g0) != cudaSuccess || cudaEventCreate(&P.g1) != cudaSuccess)) {
        cudaGetLastError();
        P.mode = 0;
        return;
    }
    if (before) {
        P.host_us += now_us() - P.t_begin;
        P.steps++;
        lb_cu_check(cudaEventRecord(P.g0, lb_cu_g.stream));
    } else {
        lb_cu_check(cudaEventRecord(P.g1, lb_cu_g.stream));
        P.g_pending = 1;
    }
}

/* a launch's bin: op, weight type, rows, k, tokens (each 0 or -1 where the op has none) */
static bin *bin_key(const int key[5]) {
    for (int i = 0; i < P.n_bins; i++) {
        bin *b = &P.bins[i];
        if (b->op == key[0] && b->type == key[1] && b->rows == key[2] && b->k == key[3] && b->ntok == key[4]) return b;
    }
    if (P.n_bins == BINS) return &P.bins[BINS - 1];
    bin *b = &P.bins[P.n_bins++];
    b->op = key[0], b->type = key[1], b->rows = key[2], b->k = key[3], b->ntok = key[4];
    return b;
}

static void key_of(const lb_cu_rec *r, int key[5]) {
    int mv = r->op == LB_CU_OP_MV, att = r->op == LB_CU_OP_ATTN || r->op == LB_CU_OP_ATTN_PREFILL;
    key[0] = r->op;
    key[1] = mv ? r->i[0] : -1;
    key[2] = mv ? r->i[1] : 0;
    key[3] = mv ? r->i[2] : r->op == LB_CU_OP_QUANT_ACT ? r->i[1] : 0;
    key[4] = mv ? r->i[3] : att ? r->i[2] : 0;
}

/* ops outside a recorded step (prompts: cuBLAS, conversions, long kernels) between two events
 * each, summed once PENDING pairs are queued and when the next step starts */
#define PENDING 1024
static struct {
    cudaEvent_t a[PENDING], b[PENDING];
    int key[PENDING][5];
    int n, made;
} Q;

static void pending_sum(void) {
    if (!Q.n) return;
    lb_cu_check(cudaEventSynchronize(Q.b[Q.n - 1]));
    for (int i = 0; i < Q.n; i++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, Q.a[i], Q.b[i]) != cudaSuccess) continue;
        bin *b = bin_key(Q.key[i]);
        b->us += ms * 1e3, b->n++;
    }
    cudaGetLastError();
    Q.n = 0;
}

int lb_cu_prof_mark(void) {
    if (lb_cu_prof_mode() != 2) return -1;
    if (Q.n == PENDING) pending_sum();
    for (; Q.made <= Q.n; Q.made++)
        if (cudaEventCreate(&Q.a[Q.made]) != cudaSuccess || cudaEventCreate(&Q.b[Q.made]) != cudaSuccess)
            return cudaGetLastError(), -1;
    lb_cu_check(cudaEventRecord(Q.a[Q.n], lb_cu_g.stream));
    return Q.n;
}

void lb_cu_prof_done(int slot, int op, int type, int rows, int k, int ntok) {
    if (slot < 0 || slot != Q.n) return;
    lb_cu_check(cudaEventRecord(Q.b[slot], lb_cu_g.stream));
    int key[5] = {op, type, rows, k, ntok};
    memcpy(Q.key[slot], key, sizeof key);
    Q.n++;
}

void lb_cu_prof_eager(const lb_cu_rec *r) {
    int slot = lb_cu_prof_mark();
    lb_cu_launch(r);
    if (slot < 0) return;
    int key[5];
    key_of(r, key);
    lb_cu_prof_done(slot, key[0], key[1], key[2], key[3], key[4]);
}

/* mode "ops": the list launched op by op, each op timed; 0 when not in that mode */
int lb_cu_prof_ops(const lb_cu_rec *list, size_t n) {
    if (lb_cu_prof_mode() != 2) return 0;
    if (P.n_ev < n + 1) {
        cudaEvent_t *ev = realloc(P.ev, (n + 1) * sizeof *ev);
        if (!ev) return 0;
        P.ev = ev;
        for (; P.n_ev < n + 1; P.n_ev++)
            if (cudaEventCreate(&P.ev[P.n_ev]) != cudaSuccess) return cudaGetLastError(), 0;
    }
    cudaStream_t s = lb_cu_g.stream;
    lb_cu_spin(SPIN_US, s);
    for (size_t k = 0; k < n; k++) {
        lb_cu_check(cudaEventRecord(P.ev[k], s));
        lb_cu_launch(&list[k]);
    }
    lb_cu_check(cudaEventRecord(P.ev[n], s));
    lb_cu_check(cudaEventSynchronize(P.ev[n]));
    for (size_t k = 0; k < n; k++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, P.ev[k], P.ev[k + 1]) != cudaSuccess) continue;
        int key[5];
        key_of(&list[k], key);
        bin *b = bin_key(key);
        b->us += ms * 1e3, b->n++;
    }
    P.steps++;
    return 1;
}
