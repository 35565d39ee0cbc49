#include "compress/pipeline.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

lb_status lb_pipe_worker_init(lb_pipe_worker *w, size_t scratch_cap, lb_error *err) {
    memset(w, 0, sizeof *w);
    lb_status s = lb_codec_ctx_new(&w->codec, err);
    if (s) return s;
    if (scratch_cap && !(w->scratch = malloc(scratch_cap))) {
        lb_pipe_worker_free(w);
        return lb_fail(err, LB_ERR_NOMEM, "cannot allocate %zu bytes of scratch", scratch_cap);
    }
    w->scratch_cap = scratch_cap;
    return LB_OK;
}

void lb_pipe_worker_free(lb_pipe_worker *w) {
    lb_codec_ctx_free(w->codec);
    free(w->scratch);
    memset(w, 0, sizeof *w);
}

typedef struct pipe {
    pthread_mutex_t mu;
    pthread_cond_t cv_done, cv_space;
    size_t n, next, written, n_slots;
    int stop;
    lb_pipe_slot *slots;
    lb_pipe_work_fn work;
    void *ctx;
} pipe_t;

typedef struct worker_arg {
    pipe_t *p;
    lb_pipe_worker w;
} worker_arg;

static void *worker_main(void *arg) {
    worker_arg *a = arg;
    pipe_t *p = a->p;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->next < p->n && p->next >= p->written + p->n_slots)
            pthread_cond_wait(&p->cv_space, &p->mu);
        if (p->stop || p->next >= p->n) break;
        size_t i = p->next++;
        pthread_mutex_unlock(&p->mu);
        lb_pipe_slot *s = &p->slots[i % p->n_slots];
        s->len = 0;
        s->st = p->work(p->ctx, &a->w, i, s, &s->err);
        pthread_mutex_lock(&p->mu);
        s->done = 1;
        pthread_cond_broadcast(&p->cv_done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

lb_status lb_pipe_run(size_t n_items, int n_threads, size_t slot_cap, size_t scratch_cap,
                      lb_pipe_work_fn work, lb_pipe_emit_fn emit, void *ctx, lb_error *err) {
    if (n_items == 0) return LB_OK;
    if (n_threads < 1) n_threads = 1;
    if ((size_t)n_threads > n_items) n_threads = (int)n_items;
    pipe_t p;
    memset(&p, 0, sizeof p);
    p.n = n_items;
    p.n_slots = 2 * (size_t)n_threads;
    p.work = work;
    p.ctx = ctx;
    lb_status st = LB_OK;
    worker_arg *args = calloc((size_t)n_threads, sizeof *args);
    pthread_t *tids = calloc((size_t)n_threads, sizeof *tids);
    p.slots = calloc(p.n_slots, sizeof *p.slots);
    if (!args || !tids || !p.slots) {
        st = lb_fail(err, LB_ERR_NOMEM, "cannot allocate the thread pool");
        goto out_free;
    }
    for (size_t i = 0; i < p.n_slots && slot_cap; i++) {
        if (!(p.slots[i].buf = malloc(slot_cap))) {
            st = lb_fail(err, LB_ERR_NOMEM, "cannot allocate %zu bytes per chunk buffer", slot_cap);
            goto out_free;
        }
        p.slots[i].cap = slot_cap;
    }
    for (int t = 0; t < n_threads; t++) {
        args[t].p = &p;
        if ((st = lb_pipe_worker_init(&args[t].w, scratch_cap, err))) goto out_free;
    }
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv_done, NULL);
    pthread_cond_init(&p.cv_space, NULL);
    int started = 0;
    for (; started < n_threads; started++)
        if (pthread_create(&tids[started], NULL, worker_main, &args[started]) != 0) break;
    if (started == 0) {
        st = lb_fail(err, LB_ERR_NOMEM, "cannot start worker threads");
    } else {
        for (size_t i = 0; i < n_items; i++) {
            lb_pipe_slot *s = &p.slots[i % p.n_slots];
            pthread_mutex_lock(&p.mu);
            while (!s->done) pthread_cond_wait(&p.cv_done, &p.mu);
            pthread_mutex_unlock(&p.mu);
            if (s->st) {
                st = s->st;
                if (err) *err = s->err;
                break;
            }
            if (emit && (st = emit(ctx, i, s, err))) break;
            pthread_mutex_lock(&p.mu);
            s->done = 0;
            p.written++;
            pthread_cond_broadcast(&p.cv_space);
            pthread_mutex_unlock(&p.mu);
        }
    }
    pthread_mutex_lock(&p.mu);
    p.stop = 1;
    pthread_cond_broadcast(&p.cv_space);
    pthread_mutex_unlock(&p.mu);
    for (int t = 0; t < started; t++) pthread_join(tids[t], NULL);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv_done);
    pthread_cond_destroy(&p.cv_space);
out_free:
    if (args)
        for (int t = 0; t < n_threads; t++) lb_pipe_worker_free(&args[t].w);
    if (p.slots)
        for (size_t i = 0; i < p.n_slots; i++) free(p.slots[i].buf);
    free(p.slots);
    free(args);
    free(tids);
    return st;
}
