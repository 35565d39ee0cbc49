/* Layer streaming over the mapped weights (see stream.h for the why). The compute side and the
 * prefetch thread share two ticket counters: head (the next unit the forward pass consumes)
 * and loaded (units before it are resident); the prefetcher runs while loaded < head + window,
 * so at most window units are resident and nothing queues without bound. Ticket t is unit
 * (t + shift) % n_units; a pass that stops early moves shift (a resync) instead of replaying. */
#include "mem/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/error.h"
#include "core/mapfile.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14; older kernels answer EINVAL and pages are touched */
#endif

typedef struct range {
    uintptr_t a, b; /* page-aligned [a, b) inside map */
    int map;
} range;

typedef struct unit {
    range *r;
    int n;
    uint64_t bytes;
} unit;

struct lb_stream {
    const lb_model *m;
    int n_units, window;
    unit *units;
    int *fds; /* per map; -1 for none */
    size_t page;
    uint64_t window_bytes;
    pthread_t th;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t head, loaded, gen;
    int shift, busy, stop, failed, need_resync;
    char msg[256];
};

/* -1: the fixed part; -2: the untied token embedding (rows only); else the unit. */
static int unit_of_tensor(const lb_model *m, const lb_tensor *t) {
    int L = m->cfg.n_layers;
    if (t == m->output) return L;
    if (t == m->tok_embd) return -2;
    const char *n = t->name;
    if (!n || strncmp(n, "blk.", 4)) return -1;
    char *end;
    long l = strtol(n + 4, &end, 10);
    return end != n + 4 && *end == '.' && l >= 0 && l < L ? (int)l : -1;
}

/* The map holding p (file or heap), or -1. */
static int map_index(const lb_model *m, const void *p) {
    for (size_t i = 0; i < m->n_maps; i++)
        if ((const unsigned char *)p >= m->maps[i].data && (const unsigned char *)p < m->maps[i].data + m->maps[i].size)
            return (int)i;
    return -1;
}

static int by_start(const void *x, const void *y) {
    const range *a = x, *b = y;
    return (a->a > b->a) - (a->a < b->a);
}

static void units_free(unit *u, int n) {
    for (int i = 0; u && i < n; i++) free(u[i].r);
    free(u);
}

/* Page-rounded ranges of every unit, sorted and merged; *fixed: the rest. NULL with why[] set
 * when a unit tensor is not in a file mapping or memory runs out. */
static unit *units_build(const lb_model *m, size_t page, int max_batch, uint64_t *fixed, char *why, size_t cap) {
    int n = m->cfg.n_layers + 1;
    unit *u = calloc((size_t)n, sizeof *u);
    if (!u || m->cfg.n_layers < 1) {
        snprintf(why, cap, u ? "the model has no layers to stream" : "out of memory");
        free(u);
        return NULL;
    }
    *fixed = 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const lb_tensor *t = &m->tensors[i];
        int k = unit_of_tensor(m, t), map = map_index(m, t->data);
        uint64_t rounded = (t->nbytes + page - 1) / page * page;
        if (map >= 0 && m->maps[map].heap) {
            snprintf(why, cap, "%s was restored into memory (a compressed .lbz): streaming needs weights read in place from the file",
                     m->maps[map].path);
            return units_free(u, n), NULL;
        }
        if (k == -2 && map >= 0) { /* a batch of row lookups before they are dropped */
            uint64_t rows = (uint64_t)max_batch * ((t->nbytes / (uint64_t)m->cfg.n_vocab + page - 1) / page + 1) * page;
            *fixed += rows < rounded ? rows : rounded;
        } else if (k < 0 || map < 0) { /* resident whatever the window: small, or converted at load */
            *fixed += rounded;
        }
        if (k < 0 || map < 0) continue;
        range *r = realloc(u[k].r, (size_t)(u[k].n + 1) * sizeof *r);
        if (!r) return snprintf(why, cap, "out of memory"), units_free(u, n), NULL;
        uintptr_t a = (uintptr_t)t->data;
        r[u[k].n++] = (range){a & ~(uintptr_t)(page - 1), (a + t->nbytes + page - 1) & ~(uintptr_t)(page - 1), map};
        u[k].r = r;
    }
    for (int k = 0; k < n; k++) {
        int w = 0;
        if (u[k].n > 1) qsort(u[k].r, (size_t)u[k].n, sizeof *u[k].r, by_start); /* a unit may be empty (no ranges: NULL) */
        for (int i = 0; i < u[k].n; i++) {
            if (w && u[k].r[w - 1].map == u[k].r[i].map && u[k].r[i].a <= u[k].r[w - 1].b) {
                if (u[k].r[i].b > u[k].r[w - 1].b) u[k].r[w - 1].b = u[k].r[i].b;
            } else {
                u[k].r[w++] = u[k].r[i];
            }
        }
        u[k].n = w;
        for (int i = 0; i < w; i++) u[k].bytes += u[k].r[i].b - u[k].r[i].a;
    }
    return u;
}

int lb_stream_sizes(const lb_model *m, int max_batch, uint64_t *unit_max, uint64_t *head, uint64_t *fixed, uint32_t *n_units,
                    char *why, size_t cap) {
    *unit_max = *head = *fixed = 0;
    *n_units = 0;
    uint64_t fx = 0;
    int n = m->cfg.n_layers + 1;
    *n_units = n > 1 ? (uint32_t)n : 0; /* considered, so that a refusal can say why */
    unit *u = units_build(m, (size_t)sysconf(_SC_PAGESIZE), max_batch, &fx, why, cap);
    if (!u) return 1;
    for (int k = 0; k + 1 < n; k++)
        if (u[k].bytes > *unit_max) *unit_max = u[k].bytes;
    *head = u[n - 1].bytes;
    units_free(u, n);
    if (!*unit_max) { /* every layer converted at load (a llama2.c file, say): nothing stays in the file */
        snprintf(why, cap, "the layers were converted at load into memory: streaming needs weights read in place from the file");
        return 1;
    }
    *fixed = fx;
    if (why && cap) why[0] = 0;
    return 0;
}

/* ---- residency ---------------------------------------------------------------------------- */

/* Reads unit k in: readahead over all its ranges first (the disk sees one large request
 * stream), then faults them into this process. */
static int populate(lb_stream *s, int k, char *msg, size_t cap) {
    const unit *u = &s->units[k];
    for (int i = 0; i < u->n; i++) madvise((void *)u->r[i].a, u->r[i].b - u->r[i].a, MADV_WILLNEED);
    for (int i = 0; i < u->n; i++) {
        const range *r = &u->r[i];
        if (!madvise((void *)r->a, r->b - r->a, MADV_POPULATE_READ)) continue;
        if (errno == EINVAL) { /* no MADV_POPULATE_READ: one read per page faults it in */
            volatile const unsigned char *p = (const unsigned char *)r->a;
            unsigned char sum = 0;
            for (uintptr_t o = 0; o < r->b - r->a; o += s->page) sum ^= p[o];
            (void)sum;
            continue;
        }
        const lb_mapfile *f = &s->m->maps[r->map];
        snprintf(msg, cap, "%s: reading %s of the weights at offset %llu failed: %s", f->path,
                 k < s->m->cfg.n_layers ? "a layer" : "the output head",
                 (unsigned long long)(r->a > (uintptr_t)f->data ? r->a - (uintptr_t)f->data : 0), strerror(errno));
        return 1;
    }
    return 0;
}

static void drop(lb_stream *s, uintptr_t a, uintptr_t b, int map) {
    const lb_mapfile *f = &s->m->maps[map];
    madvise((void *)a, b - a, MADV_DONTNEED);
    uintptr_t base = (uintptr_t)f->data;
    /* the page cache too: this model does not fit, its pages would only push others' out */
    if (s->fds[map] >= 0 && a >= base) posix_fadvise(s->fds[map], (off_t)(a - base), (off_t)(b - a), POSIX_FADV_DONTNEED);
}

static void drop_unit(lb_stream *s, int k) {
    const unit *u = &s->units[k];
    for (int i = 0; i < u->n; i++) drop(s, u->r[i].a, u->r[i].b, u->r[i].map);
}

/* ---- the prefetch thread ------------------------------------------------------------------ */

static int ticket_unit(const lb_stream *s, uint64_t t) { return (int)((t + (uint64_t)s->shift) % (uint64_t)s->n_units); }

static void *prefetch_main(void *arg) {
    lb_stream *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && (s->failed || s->loaded >= s->head + (uint64_t)s->window)) pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop) break;
        uint64_t t = s->loaded, gen = s->gen;
        int k = ticket_unit(s, t);
        char msg[sizeof s->msg] = "";
        s->busy = 1;
        pthread_mutex_unlock(&s->mu);
        int bad = populate(s, k, msg, sizeof msg);
        pthread_mutex_lock(&s->mu);
        s->busy = 0;
        if (gen == s->gen) { /* a resync meanwhile makes this read moot */
            if (bad) {
                s->failed = 1;
                memcpy(s->msg, msg, sizeof msg);
            } else {
                s->loaded = t + 1;
            }
        }
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

void lb_stream_settle(lb_stream *s) {
    pthread_mutex_lock(&s->mu);
    while (!s->stop && !s->failed && (s->busy || s->loaded < s->head + (uint64_t)s->window)) pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

/* Restarts the window at unit k (under the lock): waits out a read in flight, drops every unit. */
static void resync(lb_stream *s, int k) {
    while (s->busy) pthread_cond_wait(&s->cv, &s->mu);
    s->gen++;
    for (int i = 0; i < s->n_units; i++) drop_unit(s, i);
    int at = ticket_unit(s, s->head);
    s->shift = (s->shift + k - at + s->n_units) % s->n_units;
    s->loaded = s->head;
    s->failed = s->need_resync = 0;
}

lb_status lb_stream_acquire(lb_stream *s, int k, lb_error *err) {
    if (k < 0 || k >= s->n_units) return lb_fail(err, LB_ERR_ARG, "stream: unit %d of %d", k, s->n_units);
    pthread_mutex_lock(&s->mu);
    if (s->need_resync || ticket_unit(s, s->head) != k) resync(s, k);
    pthread_cond_broadcast(&s->cv);
    while (!s->failed && s->loaded <= s->head) pthread_cond_wait(&s->cv, &s->mu);
    lb_status st = LB_OK;
    if (s->failed) {
        st = lb_fail(err, LB_ERR_IO, "%s", s->msg);
        s->need_resync = 1; /* the next pass starts over */
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

void lb_stream_release(lb_stream *s, int k) {
    if (k < 0 || k >= s->n_units) return;
    drop_unit(s, k);
    pthread_mutex_lock(&s->mu);
    if (ticket_unit(s, s->head) == k && s->loaded > s->head) s->head++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void lb_stream_drop_tensor(lb_stream *s, const lb_tensor *t) {
    int map = map_index(s->m, t->data);
    if (map < 0 || s->m->maps[map].heap) return;
    uintptr_t a = (uintptr_t)t->data, pg = (uintptr_t)s->page;
    drop(s, a & ~(pg - 1), (a + t->nbytes + pg - 1) & ~(pg - 1), map);
}

/* ---- lifetime ----------------------------------------------------------------------------- */

lb_status lb_stream_new(const lb_model *m, int window, lb_stream **out, lb_error *err) {
    *out = NULL;
    lb_stream *s = calloc(1, sizeof *s);
    if (!s) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    s->m = m;
    s->page = (size_t)sysconf(_SC_PAGESIZE);
    s->n_units = m->cfg.n_layers + 1;
    s->window = window < 1 ? 1 : window > s->n_units ? s->n_units : window;
    uint64_t fixed;
    char why[256] = "";
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->units = units_build(m, s->page, 1, &fixed, why, sizeof why);
    s->fds = malloc((m->n_maps ? m->n_maps : 1) * sizeof *s->fds);
    for (size_t i = 0; s->fds && i < m->n_maps; i++) s->fds[i] = -1;
    if (!s->units || !s->fds) {
        int nomem = s->units != NULL;
        lb_stream_free(s);
        return lb_fail(err, nomem ? LB_ERR_NOMEM : LB_ERR_UNSUPPORTED, "cannot stream the weights: %s", nomem ? "out of memory" : why);
    }
    for (size_t i = 0; i < m->n_maps; i++) {
        lb_status st = m->maps[i].heap ? LB_OK : lb_open_regular(m->maps[i].path, &s->fds[i], NULL, err);
        if (st) return lb_stream_free(s), st;
    }
    for (int k = 0; k < s->n_units; k++) { /* the most any window of consecutive units holds */
        uint64_t sum = 0;
        for (int i = 0; i < s->window; i++) sum += s->units[(k + i) % s->n_units].bytes;
        if (sum > s->window_bytes) s->window_bytes = sum;
    }
    /* what the load or an earlier session left resident goes first: the window is the budget */
    for (int k = 0; k < s->n_units; k++) drop_unit(s, k);
    if (pthread_create(&s->th, NULL, prefetch_main, s)) {
        lb_stream_free(s);
        return lb_fail(err, LB_ERR_NOMEM, "cannot start the weight prefetch thread");
    }
    s->started = 1;
    *out = s;
    return LB_OK;
}

void lb_stream_free(lb_stream *s) {
    if (!s) return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->th, NULL);
    }
    for (size_t i = 0; s->fds && i < s->m->n_maps; i++)
        if (s->fds[i] >= 0) close(s->fds[i]);
    free(s->fds);
    units_free(s->units, s->n_units);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

int lb_stream_window(const lb_stream *s) { return s->window; }
uint64_t lb_stream_window_bytes(const lb_stream *s) { return s->window_bytes; }
